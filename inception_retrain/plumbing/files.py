"""Writing files so that a crash never leaves a partial one, and hashing their content.

Every file this project writes goes through `atomic_file`: the bytes go to a temporary file
in the same folder, are fsynced, and the temporary file is renamed over the target (rename is
atomic on POSIX within one file system). A reader sees the old file or the new one, never a
mix, and a killed writer leaves at most a hidden `.<name>.*.tmp` file behind. A full disk
(ENOSPC, or a quota's EDQUOT) removes the temporary file and raises a one-line
`DiskFullError` naming the folder and its free space (`disk_full_error`); writers that are
not ours (Keras saving a model) are mapped to it with `is_disk_full`.

    >>> write_json(run_dir / "ingest.json", {"ok": 398})
    >>> with atomic_file(path) as handle:
    ...     pq.write_table(table, handle)
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from inception_retrain.plumbing.errors import DiskFullError

_CHUNK = 1 << 20
TEMP_SUFFIX = ".tmp"


def read_umask() -> int:
    """The process umask, read without changing it (os.umask would, for every thread)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    return 0o022


UMASK = read_umask()
_FULL = (errno.ENOSPC, errno.EDQUOT)


def is_disk_full(error: BaseException | None) -> bool:
    """Whether `error`, or an error it came from, is a full disk (pyarrow and TensorFlow
    re-raise it as their own errors, with the message inside)."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OSError) and error.errno in _FULL:
            return True
        if "No space left on device" in str(error) or "Disk quota exceeded" in str(error):
            return True
        error = error.__cause__ or error.__context__
    return False


def disk_full_error(folder: str | os.PathLike[str]) -> DiskFullError:
    """The one line for a full disk under `folder`."""
    folder = Path(folder)
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    try:
        free = f", {shutil.disk_usage(existing).free / 1e6:.1f} MB free"
    except OSError:
        free = ""
    return DiskFullError(
        f"no space left on the device of {folder}{free}: free some space there (or point "
        "--workdir / --feature-cache elsewhere) and run again; what was written is kept"
    )


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike[str]) -> Iterator[IO[bytes]]:
    """A binary handle whose content becomes `path` when the block ends without an error."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_SUFFIX)
    try:
        os.fchmod(fd, 0o666 & ~UMASK)  # mkstemp makes 0600; give the usual file mode
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as error:
        Path(tmp).unlink(missing_ok=True)
        if is_disk_full(error) and not isinstance(error, DiskFullError):
            raise disk_full_error(path.parent) from error
        raise


def atomic_write(path: str | os.PathLike[str], data: bytes | str) -> Path:
    """Write `data` (text is UTF-8) to `path` atomically; returns the path."""
    with atomic_file(path) as handle:
        handle.write(data.encode("utf-8") if isinstance(data, str) else data)
    return Path(path)


def write_json(path: str | os.PathLike[str], obj: Any) -> Path:
    """`obj` as indented, key-sorted JSON, written atomically."""
    return atomic_write(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def read_json(path: str | os.PathLike[str]) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_json(value: Any) -> str:
    """sha256 of `value` as canonical JSON (sorted keys): a fingerprint of plain data."""
    return sha256_bytes(json.dumps(value, sort_keys=True, default=str).encode())


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """Make a rename inside `path` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
