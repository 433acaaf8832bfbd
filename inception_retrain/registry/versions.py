"""The model registry's storage: versions under `WORKDIR/models/<version>/` and the champion.

  * A version folder (`v0001-20250101T120000Z`, numbered, sortable) becomes visible only by
    renaming a complete staging folder (`publish_version`), so a visible version is complete.
    It holds model.keras, saved_model/, labels.json, metrics.json and model_card.md
    (`inception_retrain.registry.export` writes them).
  * `models/champion.json` {version, score, metric, time, ...} names the champion. It is
    replaced atomically, after the version folder exists, so a crash at any moment leaves the
    old pointer or the new one, never neither (`write_champion`). Each pointer written is
    then appended to `models/champion-history.jsonl`, so that a damaged pointer can be
    recovered from it (`registry.champion_gate`).
  * `resolve_model(workdir, "champion" | VERSION)` -> the version folder.

Writers serialise on a lock of `models/.lock` (`registry_lock`). Which model deserves to be
champion is `inception_retrain.registry.promotion`'s question, not this module's.

Retention: a version is published only when it is promoted (the retrain flow's default), and
`prune_versions(models, keep=N)` removes all but the champion and the newest N versions
(`inception-retrain models prune`). A removed version is renamed to a hidden `.trash-*`
folder first, so it is never seen half-deleted. Staging folders and temporary files of a
killed export are removed by the next run (`remove_leftovers`, called by
`inception_retrain.runs.workdir.recover` while it holds the workdir's run lock, which tells that
no export is alive).

    staging = new_staging(models_dir(workdir))     # fill it, then:
    version_dir = publish_version(staging, models_dir(workdir))
    resolve_model("workdir", "champion")           # -> workdir/models/v0003-...
    prune_versions(models_dir(workdir), keep=3)    # [{"version": ..., "bytes": ...}, ...]
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel

from inception_retrain.plumbing.errors import DataError, PipelineError
from inception_retrain.plumbing.files import TEMP_SUFFIX, UMASK, fsync_dir
from inception_retrain.plumbing.locks import file_lock
from inception_retrain.plumbing.schemas import read_document, stamp, write_document

CHAMPION_KIND, CHAMPION_VERSION, CHAMPION_FILE = "champion", 1, "champion.json"
HISTORY_FILE = "champion-history.jsonl"  # every pointer written, one JSON document a line
# A version's metrics.json (written by `export`): its test metrics and lineage.
METRICS_KIND, METRICS_VERSION, METRICS_FILE = "model-metrics", 1, "metrics.json"
REQUIRED_FILES = ("model.keras", "labels.json", "metrics.json", "model_card.md")
VERSION_PATTERN = re.compile(r"^v(\d+)-")
STAGING_PREFIX = ".staging-"
TRASH_PREFIX = ".trash-"


class ModelNotFoundError(PipelineError):
    """No champion yet, or no such version."""


class ModelVersion(BaseModel):
    """An exported model under `WORKDIR/models/<version>/`, and whether it became champion."""

    version: str
    path: Path
    promoted: bool
    score: float | None
    champion_score: float | None


# --- versions ---------------------------------------------------------------------------------


def models_dir(workdir: str | os.PathLike[str]) -> Path:
    return Path(workdir) / "models"


def is_complete(version_dir: Path) -> bool:
    version_dir = Path(version_dir)
    return all((version_dir / name).is_file() for name in REQUIRED_FILES)


def list_versions(models: Path) -> list[str]:
    """Visible versions, oldest first (staging folders are hidden and never listed)."""
    if not Path(models).is_dir():
        return []
    names = [p.name for p in Path(models).iterdir() if p.is_dir() and VERSION_PATTERN.match(p.name)]
    return sorted(names, key=lambda n: int(VERSION_PATTERN.match(n).group(1)))


@contextlib.contextmanager
def registry_lock(models: Path):
    """Exclusive lock over version numbering and the champion pointer (released on crash)."""
    with file_lock(Path(models) / ".lock"):
        yield


def new_staging(models: Path) -> Path:
    """A new hidden folder to write a version into before `publish_version`."""
    Path(models).mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=models))


def publish_version(staging: Path, models: Path) -> Path:
    """Rename a complete staging folder to the next version name; returns the version folder."""
    # Temp folders and files are created owner-only; a served model must be readable by
    # other users (e.g. a TF Serving container), so apply the usual umask-based modes.
    mask = UMASK
    os.chmod(staging, 0o777 & ~mask)
    for root, folders, files in os.walk(staging):
        for name in folders:
            os.chmod(Path(root) / name, 0o777 & ~mask)
        for name in files:
            path = Path(root) / name
            os.chmod(path, 0o666 & ~mask)
            with open(path, "rb") as handle:  # durable before visible
                os.fsync(handle.fileno())
    with registry_lock(models):
        versions = list_versions(models)
        number = int(VERSION_PATTERN.match(versions[-1]).group(1)) + 1 if versions else 1
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        target = Path(models) / f"v{number:04d}-{stamp}"
        os.rename(staging, target)
        fsync_dir(models)
    return target


def _size(path: Path) -> int:
    if not path.is_dir():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def _delete(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def remove_leftovers(models: Path) -> list[tuple[Path, int]]:
    """Remove staging folders, trash and temporary files (e.g. of the champion pointer):
    everything hidden but the lock. Only for a caller that knows no export or promotion is
    alive (see module docstring). Returns [(path, bytes)] of what it removed."""
    models = Path(models)
    if not models.is_dir():
        return []
    removed = []
    with registry_lock(models):
        for path in sorted(models.glob(".*")):
            stale = path.name.startswith((STAGING_PREFIX, TRASH_PREFIX)) or (
                path.is_file() and path.name.endswith(TEMP_SUFFIX)
            )
            if not stale:
                continue
            with contextlib.suppress(OSError):
                size = _size(path)
                _delete(path)
                removed.append((path, size))
    return removed


def _pointer_version(models: Path) -> str | None:
    """The version champion.json names (complete or not), None without a pointer."""
    pointer = Path(models) / CHAMPION_FILE
    if not pointer.exists():
        return None
    try:
        return str(read_document(pointer, CHAMPION_KIND, CHAMPION_VERSION)["version"])
    except (DataError, KeyError, TypeError):
        raise PipelineError(f"{pointer} is unreadable: not pruning until it is fixed") from None


def list_version_info(models: Path) -> list[dict]:
    """[{version, path, bytes, champion, created, run, metrics}] of the visible versions,
    oldest first: `metrics` are the test metrics, `created` and `run` the export's time and
    source run (from its metrics.json; empty if that is unreadable)."""
    champion = _pointer_version(models)
    rows = []
    for name in list_versions(models):
        try:
            recorded = read_document(
                Path(models) / name / METRICS_FILE, METRICS_KIND, METRICS_VERSION
            )
        except DataError:
            recorded = {}
        lineage = recorded.get("lineage") or {}
        rows.append(
            {
                "version": name,
                "path": Path(models) / name,
                "bytes": _size(Path(models) / name),
                "champion": name == champion,
                "created": lineage.get("created", ""),
                "run": Path(lineage["run_dir"]).name if lineage.get("run_dir") else "",
                "metrics": recorded.get("metrics") or {},
            }
        )
    return rows


def prune_versions(models: Path, keep: int, dry_run: bool = False) -> list[dict]:
    """Remove every version but the champion and the newest `keep`; returns the removed ones
    (with `dry_run`, those it would remove) as `list_version_info` rows."""
    if keep < 0:
        raise ValueError("keep must be >= 0")
    if not Path(models).is_dir():
        return []
    removed = []
    with registry_lock(models):
        versions = list_version_info(models)
        kept = {v["version"] for v in versions[len(versions) - keep :]} if keep else set()
        for info in versions:
            if info["champion"] or info["version"] in kept:
                continue
            if not dry_run:
                trash = Path(models) / f"{TRASH_PREFIX}{info['version']}-{secrets.token_hex(3)}"
                os.rename(info["path"], trash)
                shutil.rmtree(trash, ignore_errors=True)
            removed.append(info)
        if removed and not dry_run:
            fsync_dir(models)
    return removed


def read_champion(models: Path) -> tuple[dict | None, str]:
    """(pointer, "") or (None, why there is no usable champion)."""
    pointer = Path(models) / CHAMPION_FILE
    if not pointer.exists():
        return None, "no champion yet"
    try:
        champion = read_document(pointer, CHAMPION_KIND, CHAMPION_VERSION)
        version_dir = Path(models) / champion["version"]
    except (DataError, KeyError, TypeError):
        return None, f"{pointer} is unreadable"
    if not is_complete(version_dir):
        return None, f"champion folder {version_dir} is missing or incomplete"
    return champion, ""


def resolve_model(workdir: str | os.PathLike[str], name: str = "champion") -> Path:
    """The folder of model `name` ("champion" or a version name) under WORKDIR/models."""
    models = models_dir(workdir)
    if name == "champion":
        champion, why = read_champion(models)
        if champion is None:
            raise ModelNotFoundError(f"no champion model in {models} ({why}): run a retrain first")
        return models / champion["version"]
    version_dir = models / name
    if not VERSION_PATTERN.match(name) or not is_complete(version_dir):
        known = ", ".join(list_versions(models)[-5:]) or "none"
        raise ModelNotFoundError(f"no model version '{name}' in {models} (latest: {known})")
    return version_dir


def write_champion(models: Path, pointer: dict) -> Path:
    """Replace the champion pointer atomically, then append it to the champion history
    (call with `registry_lock` held). A crash between the two leaves the history one
    champion behind: recovering from it then picks the previous champion, never a model
    that was not one."""
    path = write_document(Path(models) / CHAMPION_FILE, CHAMPION_KIND, CHAMPION_VERSION, pointer)
    line = json.dumps({**stamp(CHAMPION_KIND, CHAMPION_VERSION), **pointer}, sort_keys=True)
    with open(Path(models) / HISTORY_FILE, "a", encoding="utf-8") as history:
        history.write(line + "\n")
        history.flush()
        os.fsync(history.fileno())
    return path
