"""The model registry's storage: versions under `WORKDIR/models/<version>/` and the champion.

  * A version folder (`v0001-20250101T120000Z`, numbered, sortable) becomes visible only by
    renaming a complete staging folder (`publish_version`), so a visible version is complete.
    It holds model.keras, saved_model/, labels.json, metrics.json and model_card.md
    (`inception_retrain.export` writes them).
  * `models/champion.json` {version, score, metric, time, ...} names the champion. It is
    replaced atomically, after the version folder exists, so a crash at any moment leaves the
    old pointer or the new one, never neither (`write_champion`).
  * `resolve_model(workdir, "champion" | VERSION)` -> the version folder.

Writers serialise on a lock of `models/.lock` (`registry_lock`). Which model deserves to be
champion is `inception_retrain.promotion`'s question, not this module's.

    staging = new_staging(models_dir(workdir))     # fill it, then:
    version_dir = publish_version(staging, models_dir(workdir))
    resolve_model("workdir", "champion")           # -> workdir/models/v0003-...
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel

from inception_retrain.errors import DataError, PipelineError
from inception_retrain.files import UMASK, fsync_dir
from inception_retrain.locks import file_lock
from inception_retrain.schemas import read_document, write_document

CHAMPION_KIND, CHAMPION_VERSION, CHAMPION_FILE = "champion", 1, "champion.json"
REQUIRED_FILES = ("model.keras", "labels.json", "metrics.json", "model_card.md")
VERSION_PATTERN = re.compile(r"^v(\d+)-")
STAGING_PREFIX = ".staging-"


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
        _remove_abandoned(models)
        versions = list_versions(models)
        number = int(VERSION_PATTERN.match(versions[-1]).group(1)) + 1 if versions else 1
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        target = Path(models) / f"v{number:04d}-{stamp}"
        os.rename(staging, target)
        fsync_dir(models)
    return target


def _remove_abandoned(models: Path, older_than_s: float = 6 * 3600) -> None:
    """Staging folders and pointer temp files left by killed processes (old ones only: a
    running export's staging folder is young)."""
    now = time.time()
    for path in Path(models).glob(".*"):
        stale = path.name.startswith((STAGING_PREFIX, f".{CHAMPION_FILE}."))
        with contextlib.suppress(OSError):
            if not stale or now - path.stat().st_mtime <= older_than_s:
                continue
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()


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
    """Replace the champion pointer atomically (call with `registry_lock` held)."""
    return write_document(Path(models) / CHAMPION_FILE, CHAMPION_KIND, CHAMPION_VERSION, pointer)
