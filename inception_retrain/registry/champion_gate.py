"""The champion a challenger must beat, even when the registry is damaged: never promote by default.

`versions.read_champion` answers "is there a usable champion?" for serving, and says None
both when there has never been one and when `champion.json` is damaged. For promotion those
differ: only the first may let a model through as the "first champion". Here:

  * no `champion.json`: no champion yet, and the first model with a defined score becomes
    champion (`first_champion`: a model whose score is undefined on its test split is never
    promoted, not even as the first);
  * a readable pointer to a complete version: that champion;
  * a pointer that is unreadable, or names a version that is missing or incomplete: the
    registry is damaged. The champion is recovered from `champion-history.jsonl` (every
    pointer ever written, appended after it): the latest entry whose version is complete.
    Under the registry lock (`repair=True`) the pointer is rewritten to it. If nothing can
    be recovered, `ChampionUnknownError` refuses in one line: no challenger is promoted.

    champion, why = current_champion(models)              # decide (reads only)
    champion, why = current_champion(models, repair=True)  # record, under registry_lock
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from inception_retrain.plumbing.errors import PipelineError
from inception_retrain.registry import versions

log = logging.getLogger(__name__)


class ChampionUnknownError(PipelineError):
    """The champion pointer is damaged and no champion can be recovered."""


def _history(models: Path) -> list[dict]:
    """The pointers of champion-history.jsonl, oldest first (unreadable lines skipped: a
    crash may have cut the last one short)."""
    path = Path(models) / versions.HISTORY_FILE
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return []
    entries = []
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and isinstance(entry.get("version"), str):
            entries.append(entry)
    return entries


def recover(models: Path) -> dict | None:
    """The latest champion of the history whose version folder is complete, or None."""
    for entry in reversed(_history(models)):
        name = entry["version"]
        if versions.VERSION_PATTERN.match(name) and versions.is_complete(Path(models) / name):
            return {k: v for k, v in entry.items() if k not in ("schema", "schema_version")}
    return None


def current_champion(models: Path, repair: bool = False) -> tuple[dict | None, str]:
    """(the champion's pointer, "") or (None, "no champion yet"); a damaged pointer is
    recovered (and with `repair`, rewritten: hold the registry lock) or refused with
    ChampionUnknownError (see module docstring)."""
    models = Path(models)
    if not (models / versions.CHAMPION_FILE).exists():
        return None, "no champion yet"
    champion, damage = versions.read_champion(models)
    if champion is not None:
        return champion, ""
    recovered = recover(models)
    if recovered is None:
        raise ChampionUnknownError(
            f"{damage}, and {versions.HISTORY_FILE} names no complete version: refusing to "
            "promote a model without a champion to compare it with; restore champion.json "
            "(or remove it to let the next model become the first champion)"
        )
    name, source = recovered["version"], versions.HISTORY_FILE
    log.warning("%s: the champion is %s, recovered from %s", damage, name, source)
    if repair:
        versions.write_champion(models, {**recovered, "recovered_from": damage})
    return recovered, ""


def first_champion(score: float | None, why: str) -> tuple[bool, str]:
    """(promote?, reason) for a model when there is no champion yet."""
    if score is None:
        return False, f"its score is undefined on this test split: not the first champion ({why})"
    return True, f"first champion ({why})"
