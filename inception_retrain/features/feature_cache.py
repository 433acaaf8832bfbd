"""A feature cache folder, `<cache root>/<backbone-fingerprint>/`: its lifecycle and locks.

One folder per backbone fingerprint (weights content, layer, image size, preprocessing,
stored dtype and part format: `inception_retrain.features.backbone.backbone_fingerprint`). The cache
root is WORKDIR/cache, or `RetrainConfig.feature_cache`: another folder, `file://` or an
object-store prefix such as `s3://bucket/features` (`inception_retrain.plumbing.storage`). Inside:

    backbone.json    what the fingerprint stands for, `created` and `last_used`
    verified.json    the parts the last extraction verified, by name and stamp, so the next
                     one reads only new or rewritten parts in full (`feature_parts.check_parts`)
    part-*.parquet   the features (`inception_retrain.features.feature_parts` owns their format)
    .lock, .in-use   the locks below (local folders only)

Locks (`locks.file_lock`), on a local folder:
  * `.lock`, exclusive (`writing`): an extraction's set-up (removing stray temporary files,
    checking parts) or a whole single-process extraction;
  * `.lock`, shared (`adding`): shards of a distributed extraction adding parts side by side
    (each part's name comes from its content ids, so two writers of one shard write the same
    file, never two copies of its rows);
  * `.in-use`, shared (`reading`): any number of stages read the cache (training, evaluation,
    the dropout report) while nobody removes it.

`prune_caches` removes a cache only while it holds both exclusively (`removable`, without
waiting), so it never deletes features a running stage reads or writes; it renames the folder
away first, so an interrupted removal never leaves half a cache under its fingerprint. A
reader that finds its cache gone gets a one-line DataError.

A cache on an object store has no locks (the store has no `flock`): every lock above is a
no-op there. Writers stay safe without them, because parts are content-named and appear
whole; `cache ls` and `cache prune` list and prune only WORKDIR/cache, so a remote cache is
never pruned by this tool, in use or not: remove one with the store's own tools.

    >>> with reading(cache.cache_dir):
    ...     ids, x, y = feature_parts.load_rows(cache.cache_dir, wanted)
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, nullcontext
from datetime import UTC, datetime
from pathlib import Path

import pyarrow.parquet as pq
from pydantic import BaseModel

from inception_retrain.features.augmentation import AugmentPolicy
from inception_retrain.features.backbone_spec import BackboneSpec
from inception_retrain.features.feature_parts import TEMP_GLOB, parts
from inception_retrain.plumbing import storage
from inception_retrain.plumbing.errors import DataError
from inception_retrain.plumbing.locks import file_lock
from inception_retrain.plumbing.schemas import check, read_document, stamp, write_document
from inception_retrain.plumbing.storage import Location

log = logging.getLogger(__name__)

BACKBONE_KIND, BACKBONE_VERSION, BACKBONE_JSON = "feature-cache", 1, "backbone.json"
VERIFIED_KIND, VERIFIED_VERSION, VERIFIED_JSON = "verified-parts", 1, "verified.json"
WRITE_LOCK = ".lock"
READ_LOCK = ".in-use"


class CachedViews(BaseModel):
    """The augmented views of a cache's train images under one policy (`view_cache`), as
    the extraction stage hands them on, with what this run did to them."""

    views_dir: Location
    policy: AugmentPolicy
    policy_fingerprint: str
    per_image: int  # K: views 1..K of every train image (view 0 is the original)
    computed: int  # view rows computed in this run
    reused: int  # view rows already cached


class FeatureCache(BaseModel):
    """A feature cache as the extraction stage hands it on, with what this run did to it.
    `backbone` is what made its features: later stages rebuild that backbone from it."""

    cache_dir: Location
    backbone: BackboneSpec
    backbone_fingerprint: str
    manifest_fingerprint: str
    feature_shape: tuple[int, ...]
    dtype: str
    computed: int  # images whose features were computed in this run
    reused: int  # images already cached under this fingerprint
    report_path: Path  # extract.json in the run folder
    views: CachedViews | None = None  # augmented views of the train split (--augment-views)


def cache_root(workdir: str | os.PathLike[str]) -> Path:
    return Path(workdir) / "cache"


def cache_dir_for(
    workdir: str | os.PathLike[str], fingerprint: str, root: str | os.PathLike[str] | None = None
) -> Path | str:
    """The cache folder of `fingerprint`: under `root` if given (a local folder or a URI),
    else under WORKDIR/cache."""
    return storage.join(root if root is not None else cache_root(workdir), fingerprint)


# --- locks -------------------------------------------------------------------------------------


def _pruned(cache_dir: Path) -> DataError:
    return DataError(f"feature cache {cache_dir} is gone (pruned?): run extraction again")


def writing(cache_dir, wait: bool = True):
    """The extraction lock, exclusive; creates the cache folder. Yields whether it is held
    (always True for a remote cache, which has no locks)."""
    if storage.is_remote(cache_dir):
        return nullcontext(True)
    return file_lock(storage.location(cache_dir) / WRITE_LOCK, wait=wait)


def adding(cache_dir):
    """The lock of a shard adding parts: shared with other shards, exclusive of `writing`
    (set-up and prune). Creates the folder; a no-op on a remote cache."""
    if storage.is_remote(cache_dir):
        return nullcontext(True)
    return file_lock(storage.location(cache_dir) / WRITE_LOCK, shared=True)


@contextmanager
def reading(cache_dir) -> Iterator[None]:
    """Keep the cache from being pruned while the block reads it (shared, waits for a prune
    in progress). A missing or pruned cache is a DataError. No lock on a remote cache."""
    if storage.is_remote(cache_dir):
        yield
        return
    cache_dir = storage.location(cache_dir)
    if not Path(cache_dir).is_dir():
        raise _pruned(cache_dir)
    try:
        with file_lock(Path(cache_dir) / READ_LOCK, shared=True, create=False):
            yield
    except FileNotFoundError:
        raise _pruned(cache_dir) from None


@contextmanager
def removable(cache_dir: Path) -> Iterator[bool]:
    """Both locks exclusively, without waiting: yields False if anyone reads or writes.
    A folder already gone is a DataError."""
    try:
        with ExitStack() as stack:
            for name in (WRITE_LOCK, READ_LOCK):
                lock = file_lock(Path(cache_dir) / name, wait=False, create=False)
                if not stack.enter_context(lock):
                    yield False
                    return
            yield True
    except FileNotFoundError:
        raise _pruned(cache_dir) from None


def in_use(cache_dir: Path) -> bool:
    """Whether a stage reads or writes the cache right now (a probe of `removable`)."""
    try:
        with removable(cache_dir) as free:
            return not free
    except DataError:  # pruned meanwhile: nobody uses it
        return False


# --- bookkeeping ---------------------------------------------------------------------------


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def read_json(path, kind: str, version: int) -> dict:
    """A JSON document of a cache folder, local or remote (DataError if missing or bad)."""
    if not storage.is_remote(path):
        return read_document(path, kind, version)
    try:
        found = json.loads(storage.read_bytes(path))
    except (FileNotFoundError, ValueError):
        raise DataError(f"{path} not found or unreadable") from None
    return check(found, kind, version, path)


def write_json(path, kind: str, version: int, payload: dict) -> None:
    """Write a JSON document of a cache folder whole, local or remote."""
    if storage.is_remote(path):
        document = {**stamp(kind, version), **payload}
        storage.write_bytes(path, json.dumps(document, indent=2, sort_keys=True).encode())
    else:
        write_document(path, kind, version, payload)


def read_verified(cache_dir) -> dict[str, str]:
    """Part name -> stamp of the parts the last check verified ({} if none or unreadable)."""
    try:
        path = storage.join(cache_dir, VERIFIED_JSON)
        return dict(read_json(path, VERIFIED_KIND, VERIFIED_VERSION)["parts"])
    except (DataError, KeyError, TypeError):
        return {}


def write_verified(cache_dir, verified: dict[str, str]) -> None:
    """Remember what a check verified (call with the write lock held)."""
    payload = {"parts": verified}
    write_json(storage.join(cache_dir, VERIFIED_JSON), VERIFIED_KIND, VERIFIED_VERSION, payload)


def record_use(cache_dir, fingerprint: str, inputs: dict, description: str) -> dict:
    """Create or refresh backbone.json (keeps `created`, sets `last_used` to now)."""
    import keras
    import tensorflow as tf

    path = storage.join(cache_dir, BACKBONE_JSON)
    try:
        created = read_json(path, BACKBONE_KIND, BACKBONE_VERSION).get("created")
    except DataError:
        created = None
    info = {
        "fingerprint": fingerprint,
        "inputs": inputs,
        "weights_description": description,
        "feature_shape": inputs["feature_shape"],
        "dtype": inputs["feature_dtype"],
        "created": created or _now(),
        "last_used": _now(),
        "versions": {"tensorflow": tf.__version__, "keras": keras.__version__},
    }
    write_json(path, BACKBONE_KIND, BACKBONE_VERSION, info)
    return info


def remove_temp_files(cache_dir) -> int:
    """Delete temporary parts left by killed writers (call with the write lock held). An
    object store has none: an upload is visible only once complete."""
    if storage.is_remote(cache_dir):
        return 0
    stray = list(storage.location(cache_dir).glob(TEMP_GLOB))
    for path in stray:
        path.unlink(missing_ok=True)
    return len(stray)


def remove_idle_temp_files(cache_dir: Path) -> list[tuple[Path, int]]:
    """Temporary parts left by killed writers of a local cache that no extraction is writing
    now (probes the write lock, which shards hold shared, without waiting); returns
    [(path, bytes)] removed."""
    try:
        with file_lock(Path(cache_dir) / WRITE_LOCK, wait=False, create=False) as free:
            if not free:
                return []
            removed = []
            for path in Path(cache_dir).glob(TEMP_GLOB):
                try:
                    size = path.stat().st_size
                    path.unlink()
                except OSError:
                    continue
                removed.append((path, size))
            return removed
    except FileNotFoundError:  # pruned meanwhile
        return []


def cache_size(cache_dir) -> tuple[int, int]:
    """(rows, bytes) over the readable parts, from Parquet footers only (cheap)."""
    rows = size = 0
    for part in parts(cache_dir):
        try:
            with storage.open_input(part) as handle:
                rows += pq.read_metadata(handle).num_rows
            size += storage.size(part)
        except Exception:  # unreadable: check_parts will quarantine it on the next run
            continue
    return rows, size


# --- listing and pruning ------------------------------------------------------------------


def list_caches(workdir: Path) -> list[dict]:
    """One dict per cache folder, most recently used first."""
    root = cache_root(workdir)
    if not root.is_dir():
        return []
    caches = []
    for cache_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        try:
            info = read_document(cache_dir / BACKBONE_JSON, BACKBONE_KIND, BACKBONE_VERSION)
        except DataError:
            info = {}
        images, size = cache_size(cache_dir)
        inputs = info.get("inputs", {})
        caches.append(
            {
                "fingerprint": cache_dir.name,
                "path": str(cache_dir),
                "images": images,
                "bytes": size,
                "dtype": info.get("dtype", "?"),
                "layer": inputs.get("layer", "?"),
                "image_size": inputs.get("image_size"),
                "weights_description": info.get("weights_description", "unknown"),
                "created": info.get("created", ""),
                "last_used": info.get("last_used", ""),
                "in_use": in_use(cache_dir),
            }
        )
    return sorted(caches, key=lambda c: c["last_used"], reverse=True)


def prune_caches(
    workdir: Path,
    keep: list[str] | None = None,
    keep_latest: int = 1,
    dry_run: bool = False,
) -> list[dict]:
    """Remove every cache except the `keep_latest` most recently used and those in `keep`.

    A cache in use is left alone (see module docstring). Returns the caches removed (or,
    with `dry_run`, that would be removed).
    """
    caches = list_caches(workdir)
    kept = set(keep or []) | {c["fingerprint"] for c in caches[: max(keep_latest, 0)]}
    removed = []
    for cache in caches:
        if cache["fingerprint"] in kept:
            continue
        if dry_run:
            removed.append(cache)
            continue
        cache_dir = Path(cache["path"])
        try:
            with removable(cache_dir) as free:
                if not free:
                    log.warning("cache %s is in use; not pruned", cache["fingerprint"])
                    continue
                trash = cache_dir.parent / f".trash-{cache_dir.name}-{secrets.token_hex(3)}"
                os.replace(cache_dir, trash)
        except DataError:  # another prune removed it meanwhile
            continue
        shutil.rmtree(trash, ignore_errors=True)
        removed.append(cache)
    return removed
