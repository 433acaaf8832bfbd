"""`ExtractionSpec`: what the extraction stage computes and where it caches it, as plain data.

    >>> spec = ExtractionSpec(backbone=BackboneSpec(), cache_root="workdir/cache")
    >>> spec.feature_dtype, spec.batch_size, spec.views
    ('float16', 32, 0)

`cache_root` is the folder (or `s3://` prefix) that holds one cache folder per backbone
fingerprint. `views` > 0 also caches that many augmented views of every train image, drawn
from `augment` (`augmentation.AugmentPolicy`). `shard_rows` is the manifest rows per shard
when the extraction is spread over a Dask cluster.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from inception_retrain.features.augmentation import MAX_VIEWS, AugmentPolicy
from inception_retrain.features.backbone_spec import BackboneSpec
from inception_retrain.plumbing.storage import Location

FeatureDtype = Literal["float16", "float32"]


class ExtractionSpec(BaseModel):
    """Backbone, cache location, storage type, batching and views of an extraction."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    backbone: BackboneSpec
    cache_root: Location
    feature_dtype: FeatureDtype = "float16"
    batch_size: int = Field(32, ge=1)
    shard_rows: int = Field(256, ge=1)
    views: int = Field(0, ge=0, le=MAX_VIEWS)
    augment: AugmentPolicy = Field(default_factory=AugmentPolicy)
