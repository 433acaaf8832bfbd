"""A run folder, `WORKDIR/runs/<run-id>/`: everything about one run, and how it ended.

Run ids sort by start time (UTC): `20260101-120000-3fa2b1`. This module owns the files that
say what a run is and where it stands; each stage owns the files it writes there
(manifest.parquet, extract.json, head.keras, evaluation.json, ...).

    config.json     the run's settings (its RetrainConfig, as JSON) and its Prefect flow run id
    status.json     running | completed | failed | killed, with the message, pid, times and,
                    once known, the data checks' outcome (anomalies, drift, blocked:
                    `evaluation.data_report.summary`), the test metrics (headline) and the
                    promotion (decision, version, metric, score): what `runs ls` shows
                    without opening more
    failure.json    why a failed or killed run ended (and failure.md, for people)
    .running.lock   held (flock) by the run's process while it runs (`running`)

A killed process writes nothing, so a run is alive only while its lock is held: a run whose
status says running while nobody holds the lock was killed (or its machine stopped), and the
next command that looks (`run_state`: `runs ls`, the next run) marks it `killed`.

    >>> run_dir = new_run_dir(workdir)
    >>> with running(run_dir):
    ...     write_config(run_dir, config.model_dump(mode="json"), flow_run_id)
    ...     write_status(run_dir, "running")
    >>> run_state(run_dir)["state"]           # after a kill -9 of that process
    'killed'
"""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from inception_retrain.plumbing.errors import DataError
from inception_retrain.plumbing.files import atomic_write
from inception_retrain.plumbing.locks import file_lock, is_locked
from inception_retrain.plumbing.schemas import read_document, write_document

CONFIG_KIND, CONFIG_VERSION, CONFIG_FILE = "run-config", 1, "config.json"
STATUS_KIND, STATUS_VERSION, STATUS_FILE = "run-status", 1, "status.json"
FAILURE_KIND, FAILURE_VERSION, FAILURE_FILE = "run-failure", 1, "failure.json"
STATES = ("running", "completed", "failed", "killed")
ALIVE_LOCK = ".running.lock"
KILLED_MESSAGE = "its process ended without recording an outcome (killed, or the machine stopped)"
# What a finished run holds for a stage to run again (each owned by its stage's module:
# runs/finished_run.py reads them; tests/test_dropout_report.py checks the names agree).
FINISHED_FILES = (CONFIG_FILE, "manifest.parquet", "extract.json", "head.keras", "history.json")


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


def write_config(run_dir: Path, settings: dict, flow_run_id: str | None) -> Path:
    """config.json: the run's settings (a config as JSON-able values) and flow run id."""
    payload = {"flow_run_id": flow_run_id, "config": settings}
    return write_document(Path(run_dir) / CONFIG_FILE, CONFIG_KIND, CONFIG_VERSION, payload)


def check_finished(run_dir: Path) -> Path:
    """`run_dir` if it is a finished run's folder, else a one-line DataError saying why (it
    does not exist, is not a folder, or lacks some of `FINISHED_FILES`). Reads nothing."""
    run_dir = Path(run_dir)
    if not run_dir.exists():
        raise DataError(f"run folder {run_dir} does not exist")
    if not run_dir.is_dir():
        raise DataError(f"{run_dir} is not a folder (give a run folder, WORKDIR/runs/<id>/)")
    missing = [name for name in FINISHED_FILES if not (run_dir / name).is_file()]
    if missing:
        raise DataError(f"{run_dir} lacks {', '.join(missing)}: not a finished run folder")
    return run_dir


def read_config(run_dir: Path) -> tuple[dict, str | None]:
    """(the run's config as recorded, its flow run id)."""
    document = read_document(Path(run_dir) / CONFIG_FILE, CONFIG_KIND, CONFIG_VERSION)
    return document["config"], document.get("flow_run_id")


@contextmanager
def running(run_dir: Path) -> Iterator[None]:
    """Hold the run's liveness lock for the block: the run is alive while it is held."""
    with file_lock(Path(run_dir) / ALIVE_LOCK):
        yield


def is_alive(run_dir: Path) -> bool:
    """Whether a process holds the run's liveness lock right now."""
    return is_locked(Path(run_dir) / ALIVE_LOCK)


def write_status(
    run_dir: Path,
    state: str,
    message: str = "",
    promotion: dict | None = None,
    metrics: dict | None = None,
    data_checks: dict | None = None,
) -> Path:
    """Record where the run stands (`state` is one of STATES), as this process; `promotion`,
    `metrics` and `data_checks`, once given, are kept by later writes."""
    if state not in STATES:
        raise ValueError(f"unknown run state {state!r}")
    path = Path(run_dir) / STATUS_FILE
    previous = read_status(run_dir) or {}
    status = {
        "state": state,
        "message": message,
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": previous.get("started") or _now(),
        "updated": _now(),
    }
    kept = (("promotion", promotion), ("metrics", metrics), ("data_checks", data_checks))
    for key, value in kept:
        if value is not None or key in previous:
            status[key] = value if value is not None else previous[key]
    return write_document(path, STATUS_KIND, STATUS_VERSION, status)


def read_status(run_dir: Path) -> dict | None:
    """status.json of a run, or None when it has none (a run from before status files)."""
    try:
        return read_document(Path(run_dir) / STATUS_FILE, STATUS_KIND, STATUS_VERSION)
    except DataError:
        return None


def run_state(run_dir: Path) -> dict | None:
    """status.json, where a run that says running but whose process is gone is first marked
    killed (status.json, failure.json and failure.md are written then)."""
    status = read_status(run_dir)
    if status is None or status["state"] != "running" or is_alive(run_dir):
        return status
    status = read_status(run_dir)  # read after the probe: a run that just ended says so
    if status is None or status["state"] != "running":
        return status
    killed = {**status, "state": "killed", "message": KILLED_MESSAGE, "updated": _now()}
    write_document(Path(run_dir) / STATUS_FILE, STATUS_KIND, STATUS_VERSION, killed)
    try:
        _, flow_run_id = read_config(run_dir)
    except (DataError, KeyError):
        flow_run_id = None
    write_failure(run_dir, flow_run_id, "Killed", KILLED_MESSAGE)
    return killed


def list_run_dirs(workdir: str | os.PathLike[str]) -> list[Path]:
    """Run folders under WORKDIR/runs, oldest first."""
    runs = runs_dir(workdir)
    if not runs.is_dir():
        return []
    return sorted(p for p in runs.iterdir() if p.is_dir() and not p.name.startswith("."))


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
