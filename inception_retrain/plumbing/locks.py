"""`file_lock`: the one advisory lock of the project, an `flock` on a file.

An flock belongs to an open file and is released when the process ends, however it ends, so
a killed run never leaves anything locked. Users: the feature cache (one writer, many readers,
a prune that needs both), the model registry, and the one-run-per-workdir lock.

    >>> with file_lock(workdir / ".run.lock", wait=False) as held:
    ...     if not held:
    ...         raise BusyError("another run is using this workdir")
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def file_lock(
    path: str | os.PathLike[str], *, shared: bool = False, wait: bool = True, create: bool = True
) -> Iterator[bool]:
    """Hold `path` locked (shared or exclusive) for the block; yields whether it is held.

    With `wait=False` a lock someone else holds yields False at once. The lock file is made
    if missing; with `create=False` its folder is not, and a missing folder raises
    FileNotFoundError. If the file is renamed or removed while this waits (a prune moving
    its folder away), the lock is taken again on whatever `path` now is.
    """
    path = Path(path)
    operation = (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | (0 if wait else fcntl.LOCK_NB)
    while True:
        if create:
            path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, operation)
        except BlockingIOError:
            os.close(fd)
            yield False
            return
        try:
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(fd)
    try:
        yield True
    finally:
        os.close(fd)


def is_locked(path: str | os.PathLike[str]) -> bool:
    """Whether some process holds `path` locked right now (a probe; a missing file is free)."""
    if not Path(path).exists():
        return False
    with file_lock(path, wait=False, create=False) as held:
        return not held
