"""The view folders of a feature cache: `<cache folder>/views/<policy fingerprint>/`.

Augmented views (`augmentation`) are cached beside the originals, one folder per
augmentation policy, inside the backbone's cache folder (so a new backbone never reuses
them, and pruning a cache removes its views with it):

    <cache>/views/<policy fingerprint>/
        policy.json      the policy, its fingerprint, `created` and `last_used`
        verified.json    as in the cache folder (`feature_cache.read_verified`)
        part-*.parquet   view parts (`feature_parts`: the part format plus a `view` column)

A view row is keyed by (content id, view index) inside its policy's folder, so raising K
adds parts for the new view indices only, and a policy change writes into a new folder and
leaves the old one as it was. The old one stays until `cache prune` (`prune_views`): in every
cache that is kept, it removes the view folders of all but the `keep_latest` most recently
used policies (by `last_used` in policy.json, which every extraction with views refreshes)
and those in `keep`, each only while nobody reads or writes the cache (the cache folder's
own locks, `feature_cache.removable`), renamed away first like a cache.

The view folders use the cache folder's locks (`feature_cache.writing` / `adding` /
`reading`); a remote cache has none, and is never pruned by this tool.

    >>> views_dir = views_dir_for(cache_dir, policy.fingerprint())
    >>> record_view_use(views_dir, policy)
    >>> list_views(cache_dir)                 # [{"fingerprint", "rows", "bytes", ...}]
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
from datetime import UTC, datetime
from pathlib import Path

from inception_retrain.features import feature_cache
from inception_retrain.features.augmentation import AugmentPolicy
from inception_retrain.plumbing import storage
from inception_retrain.plumbing.errors import DataError

log = logging.getLogger(__name__)

VIEWS_DIR = "views"
POLICY_KIND, POLICY_VERSION, POLICY_JSON = "view-policy", 1, "policy.json"


def views_dir_for(cache_dir, policy_fingerprint: str) -> Path | str:
    """The folder of the views of one policy in the cache folder `cache_dir`."""
    return storage.join(cache_dir, VIEWS_DIR, policy_fingerprint)


def record_view_use(views_dir, policy: AugmentPolicy) -> dict:
    """Create or refresh policy.json (keeps `created`, sets `last_used` to now)."""
    path = storage.join(views_dir, POLICY_JSON)
    now = datetime.now(UTC).isoformat(timespec="microseconds")  # orders two uses in a second
    try:
        created = feature_cache.read_json(path, POLICY_KIND, POLICY_VERSION).get("created")
    except DataError:
        created = None
    info = {**policy.record(), "created": created or now, "last_used": now}
    feature_cache.write_json(path, POLICY_KIND, POLICY_VERSION, info)
    return info


def list_views(cache_dir: Path) -> list[dict]:
    """The view folders of a local cache folder, most recently used first."""
    root = Path(cache_dir) / VIEWS_DIR
    if not root.is_dir():
        return []
    found = []
    for views_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        try:
            info = feature_cache.read_json(views_dir / POLICY_JSON, POLICY_KIND, POLICY_VERSION)
        except DataError:
            info = {}
        rows, size = feature_cache.cache_size(views_dir)
        found.append(
            {
                "fingerprint": views_dir.name,
                "path": str(views_dir),
                "cache": Path(cache_dir).name,
                "rows": rows,
                "bytes": size,
                "policy": info.get("policy", {}),
                "created": info.get("created", ""),
                "last_used": info.get("last_used", ""),
            }
        )
    return sorted(found, key=lambda v: v["last_used"], reverse=True)


def view_totals(cache_dir: Path) -> tuple[int, int, int]:
    """(policies, view rows, bytes) over a local cache folder's views."""
    views = list_views(cache_dir)
    return len(views), sum(v["rows"] for v in views), sum(v["bytes"] for v in views)


def prune_views(
    workdir: Path,
    keep: list[str] | None = None,
    keep_latest: int = 1,
    dry_run: bool = False,
    skip_caches: set[str] | frozenset[str] = frozenset(),
) -> list[dict]:
    """In every cache under WORKDIR/cache (but those in `skip_caches`: say, pruned whole),
    remove the views of all policies but the `keep_latest` most recently used and those in
    `keep` (policy fingerprints); a cache in use is left alone. Returns the view folders
    removed (or that would be, with `dry_run`)."""
    root = feature_cache.cache_root(workdir)
    if not root.is_dir():
        return []
    removed = []
    for cache_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if cache_dir.name in skip_caches:
            continue
        views = list_views(cache_dir)
        kept = set(keep or []) | {v["fingerprint"] for v in views[: max(keep_latest, 0)]}
        doomed = [v for v in views if v["fingerprint"] not in kept]
        if not doomed or dry_run:
            removed += doomed
            continue
        try:
            with feature_cache.removable(cache_dir) as free:
                if not free:
                    log.warning("cache %s is in use; its views are not pruned", cache_dir.name)
                    continue
                trash = []
                for views_dir in doomed:
                    path = Path(views_dir["path"])
                    trash.append(path.parent / f".trash-{path.name}-{secrets.token_hex(3)}")
                    os.replace(path, trash[-1])
        except DataError:  # the cache was pruned meanwhile
            continue
        for path in trash:
            shutil.rmtree(path, ignore_errors=True)
        removed += doomed
    return removed
