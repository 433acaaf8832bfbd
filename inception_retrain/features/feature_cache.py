"""A feature cache folder, `<cache root>/<backbone-fingerprint>/`: its lifecycle and locks.

One folder per backbone fingerprint (weights content, layer, image size, preprocessing,
stored dtype and part format: `inception_retrain.features.backbone.backbone_fingerprint`). The cache
root is WORKDIR/cache, or `RetrainConfig.feature_cache`: another folder, `file://` or an
object-store prefix such as `s3://bucket/features` (`inception_retrain.plumbing.storage`). Inside:

    backbone.json    what the fingerprint stands for, `created` and `last_used`
    verified.json    the parts the last extraction verified, by name and stamp, so the next
                     one reads only new or rewritten parts in full (`feature_parts.check_parts`)
    part-*.parquet   the features (`inception_retrain.features.feature_parts` owns their format)
    .lock, .in-use   the locks below, on a local folder (flocks)
    .lease, .in-use/ the same locks on an object store (leases, `plumbing.s3_lease`)

Locks, on a local folder (`locks.file_lock`):
  * `.lock`, exclusive (`writing`): an extraction's set-up (removing stray temporary files,
    checking parts) or a whole single-process extraction;
  * `.lock`, shared (`adding`): shards of a distributed extraction adding parts side by side
    (each part's name comes from its content ids, so two writers of one shard write the same
    file, never two copies of its rows);
  * `.in-use`, shared (`reading`): any number of stages read the cache (training, evaluation,
    the dropout report) while nobody removes it.

The same locks on an object store (`s3://`), where there is no flock: leases, objects taken
with conditional writes and renewed by their holder (`plumbing.s3_lease`: expiry judged on
the store's clock, so machines with skewed clocks still agree):
  * `.lease`, exclusive (`writing`, purpose "write"; prune, purpose "prune"): one set-up or
    single-process extraction at a time across every machine that shares the bucket, the
    others wait; a holder that dies frees it after its TTL (`LEASE_TTL_S`);
  * `.in-use/<job>`, one per job (`reading`, `adding`): a job first writes its own lease, then
    reads `.lease`; a prune first takes `.lease`, then lists `.in-use/`. With the store's
    strong read-after-write consistency at least one of them sees the other, so a prune never
    removes a cache that a job registered for, and a job never starts on a cache being
    pruned (it fails with a one-line DataError instead). A job that dies stops renewing, and
    its lease no longer counts once its TTL has passed.
  The first lock of a process on a bucket checks that the store enforces conditional writes
  (some S3-compatible stores ignore them): if not, a one-line ConfigError.

`prune_caches` removes a cache, local or remote (`cache prune --feature-cache ROOT`), only
while nobody reads or writes it (`removal`, without waiting), so it never deletes features a
running stage reads or writes. A local cache is renamed away first, so an interrupted removal
never leaves half a cache under its fingerprint; on an object store, where nothing can be
renamed, backbone.json goes first (a reader then finds the cache gone) and the prune lease
last, so an interrupted prune is finished by the next one. A reader that finds its cache gone
gets a one-line DataError.

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
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pyarrow.parquet as pq
from pydantic import BaseModel

from inception_retrain.features.augmentation import AugmentPolicy
from inception_retrain.features.backbone_spec import BackboneSpec
from inception_retrain.features.feature_parts import TEMP_GLOB, parts
from inception_retrain.plumbing import s3_lease, storage
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

LEASE = ".lease"  # an object store's exclusive lease (`WRITE_LOCK`'s counterpart)
IN_USE_DIR = ".in-use"  # an object store's shared leases, one per job (`READ_LOCK`'s)
LEASE_TTL_S = s3_lease.TTL_S  # a dead holder's lease counts for this long (renewed at 1/3)
LEASE_SKEW_S = s3_lease.SKEW_S  # allowance for clock rates, 1 s time stamps and latency


def _pruned(cache_dir) -> DataError:
    return DataError(f"feature cache {cache_dir} is gone (pruned?): run extraction again")


def _lease(cache_dir, purpose: str) -> s3_lease.S3Lease:
    return s3_lease.S3Lease(
        str(storage.join(cache_dir, LEASE)),
        purpose=purpose,
        ttl_s=LEASE_TTL_S,
        skew_s=LEASE_SKEW_S,
    )


@contextmanager
def _remote_writing(cache_dir, wait: bool) -> Iterator[bool]:
    s3_lease.check_conditional_writes(str(cache_dir))
    lease = _lease(cache_dir, "write")
    try:
        lease.acquire(timeout_s=None if wait else 0.0, on_wait=log.warning)
    except s3_lease.LeaseHeld:
        yield False
        return
    try:
        yield True
    finally:
        lease.release()


def _pruning(cache_dir) -> bool:
    """Whether an unexpired prune lease holds a remote cache now."""
    stat, body = s3_lease.read_lease(str(storage.join(cache_dir, LEASE)))
    return (
        stat is not None
        and body.get("purpose") == "prune"
        and s3_lease.expired(stat, LEASE_SKEW_S) is not True
    )


@contextmanager
def _registered(cache_dir, purpose: str) -> Iterator[None]:
    """A job's shared lease on a remote cache for the block (see module docstring)."""
    s3_lease.check_conditional_writes(str(cache_dir))
    job = f"{purpose}-{secrets.token_hex(8)}"
    lease = s3_lease.S3Lease(
        str(storage.join(cache_dir, IN_USE_DIR, job)),
        purpose=purpose,
        ttl_s=LEASE_TTL_S,
        skew_s=LEASE_SKEW_S,
    ).acquire()
    try:
        if _pruning(cache_dir):  # written first, read second: a prune sees us or we see it
            raise DataError(f"feature cache {cache_dir} is being pruned: run extraction again")
        yield
    finally:
        lease.release()


def writing(cache_dir, wait: bool = True):
    """The extraction lock, exclusive; creates a local cache folder. Yields whether it is
    held (with `wait=False`, False if someone else holds it)."""
    if storage.is_remote(cache_dir):
        return _remote_writing(storage.location(cache_dir), wait)
    return file_lock(storage.location(cache_dir) / WRITE_LOCK, wait=wait)


def adding(cache_dir):
    """The lock of a shard adding parts: shared with other shards, exclusive of `writing`
    (set-up and prune). Creates a local folder; on an object store, a job's lease that only
    a prune excludes (parts are content-named: writers never conflict there)."""
    if storage.is_remote(cache_dir):
        return _registered(storage.location(cache_dir), "add")
    return file_lock(storage.location(cache_dir) / WRITE_LOCK, shared=True)


@contextmanager
def reading(cache_dir) -> Iterator[None]:
    """Keep the cache from being pruned while the block reads it (shared; locally it waits
    for a prune in progress). A missing, pruned or remote cache being pruned is a DataError."""
    cache_dir = storage.location(cache_dir)
    if isinstance(cache_dir, str):
        if not storage.exists(storage.join(cache_dir, BACKBONE_JSON)):
            raise _pruned(cache_dir)
        with _registered(cache_dir, "read"):
            if not storage.exists(storage.join(cache_dir, BACKBONE_JSON)):
                raise _pruned(cache_dir)  # a prune finished between the two looks
            yield
        return
    if not Path(cache_dir).is_dir():
        raise _pruned(cache_dir)
    try:
        with file_lock(Path(cache_dir) / READ_LOCK, shared=True, create=False):
            yield
    except FileNotFoundError:
        raise _pruned(cache_dir) from None


@contextmanager
def removable(cache_dir: Path) -> Iterator[bool]:
    """Both locks of a local cache exclusively, without waiting: yields False if anyone reads
    or writes. A folder already gone is a DataError."""
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


class Removal:
    """What `removal` yields: removes folders of a cache nobody reads or writes."""

    def __init__(self, cache_dir, lease: s3_lease.S3Lease | None):
        self.cache_dir, self.lease = cache_dir, lease
        self.trash: list[Path] = []

    def remove(self, folder) -> None:
        """Remove `folder` (the cache folder itself, or one inside it). Locally it is renamed
        away now and deleted when the block ends; on an object store its objects are
        deleted now, backbone.json first, while the prune lease is still ours."""
        folder = storage.location(folder)
        if self.lease is None:
            self.trash.append(folder.parent / f".trash-{folder.name}-{secrets.token_hex(3)}")
            os.replace(folder, self.trash[-1])
            return
        whole = folder == self.cache_dir
        if whole:
            self.lease.assert_held()
            storage.remove(storage.join(folder, BACKBONE_JSON))
        self.lease.assert_held()
        storage.remove_tree(folder, keep=(LEASE,) if whole else ())


@contextmanager
def removal(cache_dir) -> Iterator[Removal | None]:
    """Hold a cache so that the block may remove it or its views: None if anyone reads or
    writes it (never waits). Locally both flocks exclusively; on an object store the
    exclusive lease with purpose "prune", and no live job lease. A local folder already gone
    is a DataError."""
    cache_dir = storage.location(cache_dir)
    if isinstance(cache_dir, Path):
        held = Removal(cache_dir, None)
        with removable(cache_dir) as free:
            yield held if free else None
        for path in held.trash:
            shutil.rmtree(path, ignore_errors=True)
        return
    s3_lease.check_conditional_writes(cache_dir)
    lease = _lease(cache_dir, "prune")
    if not lease.try_acquire():
        yield None
        return
    try:
        in_use_dir = str(storage.join(cache_dir, IN_USE_DIR))
        if s3_lease.live_leases(in_use_dir, LEASE_SKEW_S):
            yield None
            return
        lease.start_renewing()
        yield Removal(cache_dir, lease)
    finally:
        lease.release()


def in_use(cache_dir) -> bool:
    """Whether a stage reads or writes the cache right now (a probe that writes nothing)."""
    cache_dir = storage.location(cache_dir)
    if isinstance(cache_dir, str):
        stat, _ = s3_lease.read_lease(str(storage.join(cache_dir, LEASE)))
        if stat is not None and s3_lease.expired(stat, LEASE_SKEW_S) is not True:
            return True
        in_use_dir = str(storage.join(cache_dir, IN_USE_DIR))
        return bool(s3_lease.live_leases(in_use_dir, LEASE_SKEW_S))
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


def list_caches(workdir: Path, root=None) -> list[dict]:
    """One dict per cache folder under `root` (default WORKDIR/cache; a folder or an
    object-store prefix), most recently used first."""
    root = storage.location(root) if root is not None else cache_root(workdir)
    caches = []
    for cache_dir in storage.list_folders(root):
        name = storage.name(cache_dir)
        if name.startswith("."):
            continue
        try:
            info = read_json(
                storage.join(cache_dir, BACKBONE_JSON), BACKBONE_KIND, BACKBONE_VERSION
            )
        except DataError:
            info = {}
        images, size = cache_size(cache_dir)
        inputs = info.get("inputs", {})
        caches.append(
            {
                "fingerprint": name,
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
    root=None,
) -> list[dict]:
    """Remove every cache under `root` (default WORKDIR/cache; a folder or an object-store
    prefix) except the `keep_latest` most recently used and those in `keep`.

    A cache in use is left alone (see module docstring). Returns the caches removed (or,
    with `dry_run`, that would be removed).
    """
    caches = list_caches(workdir, root)
    kept = set(keep or []) | {c["fingerprint"] for c in caches[: max(keep_latest, 0)]}
    removed = []
    for cache in caches:
        if cache["fingerprint"] in kept:
            continue
        if dry_run:
            removed.append(cache)
            continue
        try:
            with removal(cache["path"]) as held:
                if held is None:
                    log.warning("cache %s is in use; not pruned", cache["fingerprint"])
                    continue
                held.remove(cache["path"])
        except DataError:  # another prune removed it meanwhile
            continue
        except s3_lease.LeaseLost as error:  # paused past its TTL: someone else may act now
            log.warning("cache %s: prune stopped: %s", cache["fingerprint"], error)
            continue
        removed.append(cache)
    return removed
