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
own locks, `feature_cache.removal`), removed like a cache, local or on an object store.

The view folders use the cache folder's locks (`feature_cache.writing` / `adding` /
`reading`: flocks locally, leases on an object store).

    >>> views_dir = views_dir_for(cache_dir, policy.fingerprint())
    >>> record_view_use(views_dir, policy)
    >>> list_views(cache_dir)                 # [{"fingerprint", "rows", "bytes", ...}]
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path

from inception_retrain.features import feature_cache
from inception_retrain.features.augmentation import AugmentPolicy
from inception_retrain.plumbing import storage
from inception_retrain.plumbing.errors import DataError
from inception_retrain.plumbing.s3_lease import LeaseLost

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


def list_views(cache_dir) -> list[dict]:
    """The view folders of a cache folder (local or remote), most recently used first."""
    found = []
    for views_dir in storage.list_folders(storage.join(cache_dir, VIEWS_DIR)):
        if storage.name(views_dir).startswith("."):
            continue
        try:
            path = storage.join(views_dir, POLICY_JSON)
            info = feature_cache.read_json(path, POLICY_KIND, POLICY_VERSION)
        except DataError:
            info = {}
        rows, size = feature_cache.cache_size(views_dir)
        found.append(
            {
                "fingerprint": storage.name(views_dir),
                "path": str(views_dir),
                "cache": storage.name(cache_dir),
                "rows": rows,
                "bytes": size,
                "policy": info.get("policy", {}),
                "created": info.get("created", ""),
                "last_used": info.get("last_used", ""),
            }
        )
    return sorted(found, key=lambda v: v["last_used"], reverse=True)


def view_totals(cache_dir) -> tuple[int, int, int]:
    """(policies, view rows, bytes) over a cache folder's views."""
    views = list_views(cache_dir)
    return len(views), sum(v["rows"] for v in views), sum(v["bytes"] for v in views)


def prune_views(
    workdir: Path,
    keep: list[str] | None = None,
    keep_latest: int = 1,
    dry_run: bool = False,
    skip_caches: set[str] | frozenset[str] = frozenset(),
    root=None,
) -> list[dict]:
    """In every cache under `root` (default WORKDIR/cache; a folder or an object-store
    prefix), but those in `skip_caches` (say, pruned whole), remove the views of all
    policies but the `keep_latest` most recently used and those in `keep` (policy
    fingerprints); a cache in use is left alone. Returns the view folders removed (or that
    would be, with `dry_run`)."""
    root = storage.location(root) if root is not None else feature_cache.cache_root(workdir)
    removed = []
    for cache_dir in storage.list_folders(root):
        name = storage.name(cache_dir)
        if name.startswith(".") or name in skip_caches:
            continue
        views = list_views(cache_dir)
        kept = set(keep or []) | {v["fingerprint"] for v in views[: max(keep_latest, 0)]}
        doomed = [v for v in views if v["fingerprint"] not in kept]
        if not doomed or dry_run:
            removed += doomed
            continue
        try:
            with feature_cache.removal(cache_dir) as held:
                if held is None:
                    log.warning("cache %s is in use; its views are not pruned", name)
                    continue
                for views_dir in doomed:
                    held.remove(views_dir["path"])
        except DataError:  # the cache was pruned meanwhile
            continue
        except LeaseLost as error:  # paused past its TTL: someone else may act now
            log.warning("cache %s: prune stopped: %s", name, error)
            continue
        removed += doomed
    return removed
