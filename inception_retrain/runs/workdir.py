"""The workdir as runs share it: one run at a time, and what runs that died left behind.

`WORKDIR/.run.lock` is an flock (`locks.file_lock`) that a run holds for its whole life
(`run_lock`); `.run.holder.json` beside it names the holding process. A second run on the
same workdir waits for it, saying which run it waits for, or refuses at once with
`wait=False` (a `BusyError`). So two runs never train, publish or promote the same thing
twice: the second starts after the first, and reuses its feature cache and sweep results.
The lock is re-entrant within a process: the CLI takes it before Prefect starts, and the
retrain flow it then runs takes it again (as a deployment run, the flow alone takes it).

Whoever holds the lock knows that no other run is alive, so before it starts, a run calls
`recover(workdir)`, which
  * marks run folders that say running but whose process is gone as killed
    (`run_folder.run_state`);
  * removes what only a dead process could have been writing: models/.staging-* (an export
    killed halfway, about 110 MB each), the registry's temporary and trash files
    (`registry.remove_leftovers`), cache/.trash-* (an interrupted prune), temporary parts of
    caches no extraction is writing, and, in killed runs' folders, temporary files and the
    training checkpoints (a new run never resumes another run's checkpoint).
Liveness is told by locks, never by age: a leftover is removed on the next run however young
it is, and nothing a live process writes is touched however old it is.

    >>> with run_lock(workdir, wait=True, on_wait=print):
    ...     removed = recover(workdir)        # [(path, bytes), ...]
    ...     ...                               # the run
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from inception_retrain.features import feature_cache
from inception_retrain.plumbing.errors import BusyError
from inception_retrain.plumbing.files import TEMP_SUFFIX, read_json, write_json
from inception_retrain.plumbing.locks import file_lock
from inception_retrain.registry import versions as registry
from inception_retrain.runs import run_folder

log = logging.getLogger(__name__)

LOCK_FILE = ".run.lock"
HOLDER_FILE = ".run.holder.json"  # who holds the lock (pid, host, since), for the waiting line
TRASH_PREFIX = ".trash-"
CHECKPOINTS = "checkpoints"  # training.py's folder in a run folder

_held: dict[Path, int] = {}  # lock files this process holds -> depth of nesting


def lock_path(workdir: str | os.PathLike[str]) -> Path:
    return Path(workdir).absolute() / LOCK_FILE


def describe_holder(workdir: str | os.PathLike[str]) -> str:
    """'run <id> (pid N, started T)' for the live run of `workdir`, or the process that holds
    the lock before its run folder exists ('another run (pid N on HOST, since T)')."""
    for run_dir in reversed(run_folder.list_run_dirs(workdir)):
        status = run_folder.read_status(run_dir)
        if status and status["state"] == "running" and run_folder.is_alive(run_dir):
            return f"run {run_dir.name} (pid {status['pid']}, started {status['started']})"
    try:
        holder = read_json(Path(workdir) / HOLDER_FILE)
        return f"another run (pid {holder['pid']} on {holder['host']}, since {holder['since']})"
    except (OSError, ValueError, KeyError, TypeError):
        return "another run"


def _record_holder(workdir: str | os.PathLike[str]) -> None:
    since = datetime.now(UTC).isoformat(timespec="seconds")
    write_json(
        Path(workdir) / HOLDER_FILE,
        {"pid": os.getpid(), "host": socket.gethostname(), "since": since},
    )


@contextmanager
def _holding(path: Path) -> Iterator[None]:
    _held[path] = _held.get(path, 0) + 1
    try:
        yield
    finally:
        _held[path] -= 1
        if not _held[path]:
            del _held[path]


@contextmanager
def run_lock(
    workdir: str | os.PathLike[str],
    *,
    wait: bool = True,
    on_wait: Callable[[str], None] | None = None,
) -> Iterator[None]:
    """Hold the workdir's run lock for the block (see module docstring).

    Busy: with `wait`, `on_wait` gets one line saying what this waits for, then this waits;
    without, a BusyError. Creates the workdir if needed.
    """
    path = lock_path(workdir)
    if path in _held:
        with _holding(path):
            yield
        return
    with file_lock(path, wait=False) as held:
        if held:
            _record_holder(workdir)
            with _holding(path):
                yield
            return
    holder = describe_holder(workdir)
    if not wait:
        raise BusyError(f"{holder} is using the workdir {Path(workdir).absolute()}; try later")
    if on_wait is not None:
        on_wait(f"waiting for {holder} to finish: it is using the workdir {workdir}")
    with file_lock(path), _holding(path):
        _record_holder(workdir)
        yield


def holds_run_lock(workdir: str | os.PathLike[str]) -> bool:
    """Whether this process holds `workdir`'s run lock."""
    return lock_path(workdir) in _held


# --- leftovers ---------------------------------------------------------------------------------


def size_of(path: Path) -> int:
    """Bytes of a file, or of every file under a folder (0 if it vanished)."""
    if path.is_file() or path.is_symlink():
        try:
            return path.lstat().st_size
        except OSError:
            return 0
    total = 0
    for folder, _, names in os.walk(path):
        for name in names:
            try:
                total += os.lstat(os.path.join(folder, name)).st_size
            except OSError:
                continue
    return total


def _remove(path: Path) -> int:
    size = size_of(path)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
    return size


def _killed_run_leftovers(run_dir: Path) -> list[Path]:
    """Temporary files and checkpoints in the folder of a run that was killed."""
    found = [p for p in run_dir.rglob(f".*{TEMP_SUFFIX}") if p.is_file()]
    checkpoints = run_dir / CHECKPOINTS
    return found + ([checkpoints] if checkpoints.is_dir() else [])


def recover(workdir: str | os.PathLike[str]) -> list[tuple[Path, int]]:
    """Mark killed runs and remove leftovers of dead processes; call with `run_lock` held.

    Returns [(path, bytes)] of what it removed.
    """
    if not holds_run_lock(workdir):
        raise RuntimeError("recover() needs the workdir's run lock")
    removed: list[tuple[Path, int]] = []
    for run_dir in run_folder.list_run_dirs(workdir):
        status = run_folder.run_state(run_dir)
        if status is not None and status["state"] == "killed":
            removed += [(path, _remove(path)) for path in _killed_run_leftovers(run_dir)]
    removed += registry.remove_leftovers(registry.models_dir(workdir))
    cache_root = feature_cache.cache_root(workdir)
    if cache_root.is_dir():
        for path in sorted(cache_root.iterdir()):
            if path.name.startswith(TRASH_PREFIX):  # a prune's rename, not yet deleted
                removed.append((path, _remove(path)))
            elif path.is_dir() and not path.name.startswith("."):
                removed += feature_cache.remove_idle_temp_files(path)
    for path, size in removed:
        log.info("removed %s (%.1f MB), left by a run that is no longer alive", path, size / 1e6)
    return removed


# --- listing -------------------------------------------------------------------------------------
