"""Which earlier data a run's data checks compare with (`data.data_reference.DataReference`).

1. The champion's training data: the run folder its version was exported from (the
   version's metrics.json lineage: `run_dir`, `backbone_fingerprint`), with that run's
   manifest.
2. Before any champion exists (or when the champion's run folder is gone: the reference's
   `note` says so), the newest earlier run of the workdir whose data was accepted: its
   status.json records data checks that did not block, or, for a run from before data
   checks, it completed. Its backbone fingerprint comes from its extract.json (None when
   it extracted nothing).
3. Otherwise none: the first run, whose checks compare with nothing (status
   "no-reference") but still apply the contract's own minimum per class.

  >>> find_reference(workdir, run_dir).describe()
  'champion v0003 (run 20261206-020000-3fa2b1)'
"""

from __future__ import annotations

import os
from pathlib import Path

from inception_retrain.data.data_reference import DataReference
from inception_retrain.data.manifest import FILE_NAME as MANIFEST_FILE
from inception_retrain.features.extraction import REPORT_FILE, read_extract_report
from inception_retrain.plumbing.errors import DataError
from inception_retrain.plumbing.schemas import read_document
from inception_retrain.registry import versions
from inception_retrain.runs import run_folder


def _champion_reference(workdir: Path) -> tuple[DataReference | None, str]:
    models = versions.models_dir(workdir)
    champion, _ = versions.read_champion(models)
    if champion is None:
        return None, ""
    version = champion["version"]
    try:
        recorded = read_document(
            models / version / versions.METRICS_FILE,
            versions.METRICS_KIND,
            versions.METRICS_VERSION,
        )
        lineage = recorded["lineage"]
        run_dir = Path(lineage["run_dir"])
    except (DataError, KeyError, TypeError):
        return None, f"the champion {version} records no training run"
    if not (run_dir / MANIFEST_FILE).is_file():
        return None, f"the champion {version}'s run folder {run_dir} is gone"
    reference = DataReference(
        run_dir=run_dir,
        manifest_path=run_dir / MANIFEST_FILE,
        backbone_fingerprint=lineage.get("backbone_fingerprint"),
        role="champion",
        version=version,
    )
    return reference, ""


def _accepted(run_dir: Path) -> bool:
    status = run_folder.read_status(run_dir) or {}
    checks = status.get("data_checks")
    if checks is not None:
        return not checks.get("blocked")
    return status.get("state") == "completed"


def _backbone_fingerprint(run_dir: Path) -> str | None:
    if not (run_dir / REPORT_FILE).is_file():
        return None
    try:
        return read_extract_report(run_dir).backbone_fingerprint
    except (DataError, KeyError, TypeError):
        return None


def find_reference(workdir: str | os.PathLike[str], run_dir: Path) -> DataReference | None:
    """The reference of the run in `run_dir` (see the module docstring), or None."""
    workdir, run_dir = Path(workdir), Path(run_dir)
    reference, note = _champion_reference(workdir)
    if reference is not None:
        return reference
    for earlier in reversed(run_folder.list_run_dirs(workdir)):
        if earlier.name >= run_dir.name or not (earlier / MANIFEST_FILE).is_file():
            continue
        if _accepted(earlier):
            return DataReference(
                run_dir=earlier,
                manifest_path=earlier / MANIFEST_FILE,
                backbone_fingerprint=_backbone_fingerprint(earlier),
                role="previous-run",
                note=note,
            )
    return None
