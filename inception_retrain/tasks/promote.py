"""Stage `promote`: should the run's model be champion (`inception_retrain.registry.promotion`)?

`decide-promotion` compares it with the champion on the same test split, before anything is
published; `promote` makes a published version champion when the decision (re-checked under
the registry's lock) says so, and records the decision in promotion.json.
"""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from inception_retrain.registry.promotion import decide_promotion, record_promotion

decide_promotion_task = task(decide_promotion, name="decide-promotion", cache_policy=NO_CACHE)
promote_task = task(record_promotion, name="promote", cache_policy=NO_CACHE)
