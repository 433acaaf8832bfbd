"""Retention of the sweep result cache: `WORKDIR/sweeps/<data-key>/` folders, listed and pruned.

Each folder's `key.json` (written by `sweep_store.SweepStore.for_spec`) records the backbone
fingerprint of the feature cache its trainings ran on. A result is only reused with that
cache, so once the cache is gone its sweep folder is dead weight: `cache prune` removes
the sweep folders of the caches it removes and of caches already gone (`prune_sweeps`).

Only the folder and its key.json are read here, never the results (their format belongs to
`sweep_store`). A folder without a readable key.json is left alone: it may be being created.
A removed folder is renamed to a hidden `.trash-*` first, so it is never seen half-deleted.

    >>> prune_sweeps(workdir, removed_fingerprints={"3fa2b1c4d5e6f708"})
    [{'path': ..., 'backbone_fingerprint': '3fa2b1c4d5e6f708', 'results': 21, 'bytes': 43210}]
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Iterable
from pathlib import Path

from inception_retrain.dropout.sweep_store import KEY_FILE
from inception_retrain.features.feature_cache import cache_dir_for
from inception_retrain.plumbing.files import read_json

SWEEPS = "sweeps"
TRASH_PREFIX = ".trash-"


def sweeps_root(workdir: str | os.PathLike[str]) -> Path:
    return Path(workdir) / SWEEPS


def list_sweep_folders(workdir: str | os.PathLike[str]) -> list[dict]:
    """[{path, backbone_fingerprint (None if key.json is unreadable), results, bytes}]."""
    root = sweeps_root(workdir)
    if not root.is_dir():
        return []
    folders = []
    for path in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        try:
            fingerprint = read_json(path / KEY_FILE)["backbone_fingerprint"]
        except (OSError, ValueError, KeyError, TypeError):
            fingerprint = None
        files = [f for f in path.iterdir() if f.is_file()]
        folders.append(
            {
                "path": path,
                "backbone_fingerprint": fingerprint,
                "results": sum(f.suffix == ".json" and f.name != KEY_FILE for f in files),
                "bytes": sum(f.stat().st_size for f in files),
            }
        )
    return folders


def prune_sweeps(
    workdir: str | os.PathLike[str],
    removed_fingerprints: Iterable[str] = (),
    dry_run: bool = False,
    only_removed: bool = False,
) -> list[dict]:
    """Remove the sweep folders whose feature cache is in `removed_fingerprints` or gone
    from WORKDIR/cache (unless `only_removed`: after pruning another cache root, whose
    caches WORKDIR/cache never held); returns them (with `dry_run`, those it would remove)
    as `list_sweep_folders` rows."""
    removed_fingerprints = set(removed_fingerprints)
    removed = []
    for folder in list_sweep_folders(workdir):
        fingerprint = folder["backbone_fingerprint"]
        if fingerprint is None:
            continue
        cache_gone = not only_removed and not cache_dir_for(workdir, fingerprint).is_dir()
        if not cache_gone and fingerprint not in removed_fingerprints:
            continue
        if not dry_run:
            path = folder["path"]
            trash = path.parent / f"{TRASH_PREFIX}{path.name}-{secrets.token_hex(3)}"
            try:
                os.replace(path, trash)
            except FileNotFoundError:  # another prune took it
                continue
            shutil.rmtree(trash, ignore_errors=True)
        removed.append(folder)
    return removed
