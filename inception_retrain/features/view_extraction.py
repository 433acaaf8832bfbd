"""Which augmented views an extraction must compute, and what it reports about them.

With K = `per_image` > 0 views, every ok train image of the manifest needs views 1..K
under `policy` (view 0 is its original row). `check_views`, called by the extraction's
set-up with the cache's write lock held, removes stray temporary files from the policy's view
folder (`view_cache`), refreshes its policy.json, verifies its parts like the originals'
(`feature_parts.check_parts`, remembered in its own verified.json) and lists the missing
(content id, view) keys as view jobs, an image's jobs one after another, in manifest order.
Validation and test images never get views.

    >>> found, jobs, views = check_views(cache_dir, rows, 4, policy)  # None without views
    >>> found.wanted, found.missing
    (128, 32)      # e.g. K raised from 3 to 4 on 32 train images: only view 4 is missing
"""

from __future__ import annotations

from dataclasses import fields

from pydantic import BaseModel

from inception_retrain.data.manifest import ImageRows
from inception_retrain.features import feature_cache, view_cache
from inception_retrain.features.augmentation import AugmentPolicy
from inception_retrain.features.feature_cache import CachedViews
from inception_retrain.features.feature_parts import check_parts
from inception_retrain.plumbing import storage

MAX_LISTED_SKIPS = 100


class ViewsFound(BaseModel):
    """What an extraction found in the policy's view folder before computing anything."""

    views_dir: str  # a local folder or a URI
    per_image: int  # K
    wanted: int  # view rows the train split needs: train images x K
    missing: int  # of those, not cached
    quarantined: list[str]  # unreadable view parts moved aside
    stray: int  # temporary files of killed writers removed

    def report(self, computed: int, skipped: list[str], policy: AugmentPolicy) -> dict:
        """extract.json's `views` section once the missing views are computed."""
        rows, size = feature_cache.cache_size(self.views_dir)
        return {
            "views_dir": self.views_dir,
            **policy.record(),
            "per_image": self.per_image,
            "wanted": self.wanted,
            "computed": computed,
            "reused": self.wanted - self.missing,
            "skipped_images": len(skipped),
            "skipped_content_ids": skipped[:MAX_LISTED_SKIPS],
            "quarantined": len(self.quarantined),
            "quarantined_parts": self.quarantined,
            "stray_temp_files_removed": self.stray,
            "cached_rows": rows,
            "bytes_on_disk": size,
        }


def check_views(
    cache_dir, rows: ImageRows, per_image: int, policy: AugmentPolicy
) -> tuple[ViewsFound, ImageRows, list[int]] | None:
    """(what was found, the missing views as image rows, their view indices) for the train
    rows among `rows`; None when `per_image` is 0. Call with the cache's write lock held."""
    if not per_image:
        return None
    views_dir = view_cache.views_dir_for(cache_dir, policy.fingerprint())
    stray = feature_cache.remove_temp_files(views_dir)
    view_cache.record_view_use(views_dir, policy)
    check = check_parts(views_dir, feature_cache.read_verified(views_dir))
    feature_cache.write_verified(views_dir, check.verified)
    train = rows.where([split == "train" for split in rows.splits])
    keep, views = [], []
    for position, cid in enumerate(train.content_ids):
        missing = [v for v in range(1, per_image + 1) if (cid, v) not in check.cached]
        keep += [position] * len(missing)
        views += missing
    columns = [getattr(train, field.name) for field in fields(train)]
    jobs = ImageRows(*([column[p] for p in keep] for column in columns))
    found = ViewsFound(
        views_dir=str(views_dir),
        per_image=per_image,
        wanted=len(train) * per_image,
        missing=len(jobs),
        quarantined=[str(p) for p in check.quarantined],
        stray=stray,
    )
    return found, jobs, views


def cached_views(section: dict | None) -> CachedViews | None:
    """The `CachedViews` of extract.json's `views` section (None: no views)."""
    if not section:
        return None
    return CachedViews(
        views_dir=storage.location(section["views_dir"]),
        policy=AugmentPolicy.model_validate(section["policy"]),
        policy_fingerprint=section["fingerprint"],
        per_image=section["per_image"],
        computed=section["computed"],
        reused=section["reused"],
    )
