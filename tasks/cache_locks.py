"""The feature cache's two locks: `flock`s on files inside a cache folder.

* `.lock`, exclusive (`writing`): one extraction at a time adds parts to a cache.
* `.in-use`, shared (`reading`): any number of stages read a cache (training, evaluation, the
  dropout report) while no one removes it.

`cache prune` removes a cache only while it holds both exclusively (`removable`, without
waiting), so it never deletes features that a running stage is reading or writing. An flock
belongs to an open file and goes away with the process, however the process ends: a killed
run never leaves a cache locked.

    >>> with reading(cache_dir):
    ...     features = load_split(cache_dir, manifest_path, "train")
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from inception_retrain.errors import DataError

WRITE_LOCK = ".lock"
READ_LOCK = ".in-use"


@contextmanager
def _flock(cache_dir: Path, name: str, operation: int, wait: bool, create: bool) -> Iterator[bool]:
    """Hold `cache_dir/name` locked; yields False (at once) if `wait` is False and it is taken.

    A prune may move the folder away before or while this waits; then the folder is made
    again and locked (`create`: writers) or the caller gets a DataError (its features are
    gone)."""
    lock_path = Path(cache_dir) / name
    while True:
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        except FileNotFoundError:
            fd = None
        if fd is not None:
            try:
                fcntl.flock(fd, operation | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                os.close(fd)
                yield False
                return
            try:
                if os.stat(lock_path).st_ino == os.fstat(fd).st_ino:
                    break
            except FileNotFoundError:
                pass
            os.close(fd)
        if not create:
            raise _pruned(cache_dir)
        Path(cache_dir).mkdir(parents=True, exist_ok=True)
    try:
        yield True
    finally:
        os.close(fd)


def _pruned(cache_dir: Path) -> DataError:
    return DataError(f"feature cache {cache_dir} is gone (pruned?): run extraction again")


def writing(cache_dir: Path, wait: bool = True):
    """The extraction lock, exclusive; creates the cache folder. Yields whether it is held."""
    return _flock(cache_dir, WRITE_LOCK, fcntl.LOCK_EX, wait, create=True)


@contextmanager
def reading(cache_dir: Path) -> Iterator[None]:
    """Keep the cache from being pruned while the block reads it (shared, waits for a prune
    in progress). A missing or pruned cache is a DataError."""
    if not Path(cache_dir).is_dir():
        raise _pruned(cache_dir)
    with _flock(cache_dir, READ_LOCK, fcntl.LOCK_SH, wait=True, create=False):
        yield


@contextmanager
def removable(cache_dir: Path) -> Iterator[bool]:
    """Both locks exclusively, without waiting: yields False if anyone reads or writes.
    A folder already gone is a DataError."""
    with ExitStack() as stack:
        for name in (WRITE_LOCK, READ_LOCK):
            lock = _flock(cache_dir, name, fcntl.LOCK_EX, wait=False, create=False)
            if not stack.enter_context(lock):
                yield False
                return
        yield True


def in_use(cache_dir: Path) -> bool:
    """Whether a stage reads or writes the cache right now (a probe of `removable`)."""
    try:
        with removable(cache_dir) as free:
            return not free
    except DataError:  # pruned meanwhile: nobody uses it
        return False
