"""A folder whose disk fills up, for tests: a real small tmpfs where this process may mount
one (root, and a kernel or container that allows it), else ENOSPC injected at the write
layer. Either way a write past the limit fails as a full disk does:
OSError(28, 'No space left on device').

    with full_disk(tmp_path / "small", 2_000_000, monkeypatch) as disk:
        ...                        # writes under disk.folder fail after about 2 MB
        disk.grow(50_000_000)      # space freed: writes go through again

The injection wraps files opened for binary writing under the folder (`open`, `io.open`,
`os.fdopen`: what `atomic_file`, pyarrow's Python files and Keras's zip writer use) so that
they share one byte budget, make a short write at its end and then raise ENOSPC. Writers in
C++ (TensorFlow's SavedModel, h5py) are not wrapped: where they must fail, use the tmpfs.
"""

from __future__ import annotations

import builtins
import contextlib
import errno
import io
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path


def _mount(folder: Path, size_bytes: int, remount: bool = False) -> bool:
    options = f"{'remount,' if remount else ''}size={size_bytes}"
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True
    )
    return done.returncode == 0


class _Budget:
    def __init__(self, left: int):
        self.left = left


class _LimitedFile(io.RawIOBase):
    def __init__(self, raw, budget: _Budget):
        self._raw, self._budget = raw, budget

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        size = len(memoryview(data))
        if size > self._budget.left:
            allowed = max(self._budget.left, 0)
            if allowed:  # a short write, as write(2) makes when the disk fills
                self._budget.left = 0
                return self._raw.write(memoryview(data)[:allowed])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self._budget.left -= size
        return self._raw.write(data)

    def fileno(self) -> int:
        return self._raw.fileno()

    def close(self) -> None:
        self._raw.close()
        super().close()


@dataclass
class FullDisk:
    folder: Path
    how: str  # "tmpfs" or "injected"
    _budget: _Budget | None = None

    def grow(self, more_bytes: int) -> None:
        """Free space: about `more_bytes` more fit from now on."""
        if self.how == "tmpfs":
            size = os.statvfs(self.folder)
            total = size.f_blocks * size.f_frsize
            assert _mount(self.folder, total + more_bytes, remount=True), "remount failed"
        else:
            self._budget.left += more_bytes


@contextlib.contextmanager
def _injected(folder: Path, free_bytes: int, monkeypatch):
    budget = _Budget(free_bytes)
    real_open, real_fdopen = builtins.open, os.fdopen

    def writes_bytes(mode: str) -> bool:
        return "b" in mode and any(c in mode for c in "wax+")

    def wrap(raw, buffering):
        limited = _LimitedFile(raw, budget)
        return io.BufferedWriter(limited, 1 << 16) if buffering != 0 else limited

    def fake_open(file, mode="r", buffering=-1, *args, **kwargs):
        if (
            writes_bytes(mode)
            and isinstance(file, str | os.PathLike)
            and Path(file).absolute().is_relative_to(folder)
        ):
            return wrap(real_open(file, mode, 0, *args, **kwargs), buffering)
        return real_open(file, mode, buffering, *args, **kwargs)

    def fake_fdopen(fd, mode="r", buffering=-1, *args, **kwargs):
        path = Path(os.readlink(f"/proc/self/fd/{fd}"))
        if writes_bytes(mode) and path.is_relative_to(folder):
            return wrap(real_fdopen(fd, mode, 0, *args, **kwargs), buffering)
        return real_fdopen(fd, mode, buffering, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", fake_open)
    monkeypatch.setattr(io, "open", fake_open)
    monkeypatch.setattr(os, "fdopen", fake_fdopen)
    try:
        yield budget
    finally:
        monkeypatch.undo()


@contextlib.contextmanager
def full_disk(
    folder: Path,
    free_bytes: int,
    monkeypatch,
    prefill=None,
    prefill_bytes: int = 0,
    prefer_tmpfs: bool = True,
):
    """A folder with about `free_bytes` left once `prefill(folder)` (which writes about
    `prefill_bytes`, e.g. a champion model) has run (see module docstring)."""
    folder = Path(folder).absolute()
    folder.mkdir(parents=True, exist_ok=True)
    if prefer_tmpfs and _mount(folder, prefill_bytes + free_bytes):
        try:
            if prefill is not None:
                prefill(folder)
            yield FullDisk(folder, "tmpfs")
        finally:
            subprocess.run(["umount", "-l", str(folder)], check=False)
        return
    if prefill is not None:
        prefill(folder)
    with _injected(folder, free_bytes, monkeypatch) as budget:
        yield FullDisk(folder, "injected", budget)
