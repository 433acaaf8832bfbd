"""A run folder, `WORKDIR/runs/<run-id>/`: everything about one run, and how it ended.

Run ids sort by start time (UTC): `20260101-120000-3fa2b1`. This module owns the files that
say what a run is and where it stands; each stage owns the files it writes there
(manifest.parquet, extract.json, head.keras, evaluation.json, ...).

    config.json     the run's RetrainConfig and its Prefect flow run id
    status.json     running | completed | failed | killed, with the message, pid and times
    failure.json    why a failed run failed (and failure.md, for people)

    >>> run_dir = new_run_dir(workdir)
    >>> write_config(run_dir, config, flow_run_id)
    >>> write_status(run_dir, "running")
"""

from __future__ import annotations

import os
import secrets
import socket
from datetime import UTC, datetime
from pathlib import Path

from inception_retrain.config import RetrainConfig
from inception_retrain.errors import DataError
from inception_retrain.files import atomic_write
from inception_retrain.schemas import read_document, write_document

CONFIG_KIND, CONFIG_VERSION, CONFIG_FILE = "run-config", 1, "config.json"
STATUS_KIND, STATUS_VERSION, STATUS_FILE = "run-status", 1, "status.json"
FAILURE_KIND, FAILURE_VERSION, FAILURE_FILE = "run-failure", 1, "failure.json"
STATES = ("running", "completed", "failed", "killed")


def runs_dir(workdir: str | os.PathLike[str]) -> Path:
    return Path(workdir) / "runs"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def new_run_dir(workdir: str | os.PathLike[str]) -> Path:
    """Create `WORKDIR/runs/<run-id>/`."""
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    run_dir = runs_dir(workdir) / f"{stamp}-{secrets.token_hex(3)}"
    run_dir.mkdir(parents=True, exist_ok=False)
    return run_dir


def write_config(run_dir: Path, config: RetrainConfig, flow_run_id: str | None) -> Path:
    payload = {"flow_run_id": flow_run_id, "config": config.model_dump(mode="json")}
    return write_document(Path(run_dir) / CONFIG_FILE, CONFIG_KIND, CONFIG_VERSION, payload)


def read_config(run_dir: Path) -> tuple[dict, str | None]:
    """(the run's config as recorded, its flow run id)."""
    document = read_document(Path(run_dir) / CONFIG_FILE, CONFIG_KIND, CONFIG_VERSION)
    return document["config"], document.get("flow_run_id")


def write_status(run_dir: Path, state: str, message: str = "") -> Path:
    """Record where the run stands (`state` is one of STATES)."""
    if state not in STATES:
        raise ValueError(f"unknown run state {state!r}")
    path = Path(run_dir) / STATUS_FILE
    try:
        started = read_document(path, STATUS_KIND, STATUS_VERSION).get("started")
    except DataError:
        started = None
    status = {
        "state": state,
        "message": message,
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": started or _now(),
        "updated": _now(),
    }
    return write_document(path, STATUS_KIND, STATUS_VERSION, status)


def read_status(run_dir: Path) -> dict | None:
    """status.json of a run, or None when it has none (a run from before status files)."""
    try:
        return read_document(Path(run_dir) / STATUS_FILE, STATUS_KIND, STATUS_VERSION)
    except DataError:
        return None


def write_failure(run_dir: Path, flow_run_id: str | None, state: str, message: str) -> None:
    """failure.json and failure.md: why the run failed."""
    record = {"flow_run_id": flow_run_id, "state": state, "message": message}
    write_document(Path(run_dir) / FAILURE_FILE, FAILURE_KIND, FAILURE_VERSION, record)
    atomic_write(
        Path(run_dir) / "failure.md",
        f"# Run failed\n\n- flow run: `{flow_run_id}`\n- state: {state}\n\n**Cause:** {message}\n",
    )


def run_dir_for_flow_run(workdir: str | os.PathLike[str], flow_run_id) -> Path | None:
    """The run folder whose config.json names `flow_run_id` (newest first)."""
    runs = runs_dir(workdir)
    if flow_run_id is None or not runs.is_dir():
        return None
    for run_dir in sorted(runs.iterdir(), reverse=True):
        try:
            _, recorded = read_config(run_dir)
        except (DataError, KeyError):
            continue
        if recorded == str(flow_run_id):
            return run_dir
    return None
