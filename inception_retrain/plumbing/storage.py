"""Where shared files live: a local path, `file://PATH`, or `s3://bucket/prefix`.

Images, backbone weights and the feature cache may live at such a location, so that a Dask
worker on another machine needs nothing local; run folders and the model registry always
stay in the run's local workdir. This module is the one place that turns a location into
file-system calls, through one abstraction: an fsspec file system (`LocalFileSystem` for a
path, `s3fs` for `s3://`), so the rest of the library passes locations around and never
imports fsspec, and no call here branches on local or remote but the two that must.

    >>> loc = location("s3://features/team-a")      # a str for a remote location
    >>> join(loc, "0123abcd", "part-x.parquet")
    's3://features/team-a/0123abcd/part-x.parquet'
    >>> location("file:///data/cache"), location("workdir/cache")   # local: an absolute Path
    (PosixPath('/data/cache'), PosixPath('/home/me/workdir/cache'))
    >>> write_bytes(join(loc, "a.bin"), b"...")     # atomic: the object or file appears whole
    >>> check_reachable("s3://features/team-a")     # StorageError (one line) if it is not

Semantics:
  * A local location is a `Path` (absolute), a remote one a `str` URI; `Location` is that type
    for pydantic fields. Code outside this project sometimes wraps a location in `Path`, which
    turns `s3://b/k` into `s3:/b/k`; `location` restores that form, so such a wrapper loses
    nothing.
  * Writes are atomic, and this is one of the two places local and remote differ: a local
    file goes through `files.atomic_file` (temp file + rename; fsspec's local `pipe_file`
    writes in place), an object is uploaded in one request (or one multipart upload), and S3
    makes it visible only once complete. So a killed writer never leaves a partial part.
  * `stamps` is the other: it names a file's version by size and mtime locally, by size and
    ETag on S3 (from the listing itself), so change detection needs no request per object.
  * Credentials and endpoints come only from the object-store client's standard environment
    and configuration (for S3: `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY`, `AWS_PROFILE`,
    `~/.aws/config`, instance roles; `AWS_ENDPOINT_URL_S3` or `AWS_ENDPOINT_URL` for an
    S3-compatible server such as MinIO), never from the config file, and never in a report.
  * An unreachable bucket, bad credentials or an endpoint that refuses or never answers is a
    `StorageError` (one line naming the fix) from `check_reachable`, which the run calls
    before any work starts (`s3_probe`: one request, short time-outs); any other failure of
    a remote call is one too.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

from pydantic import BeforeValidator

from inception_retrain.plumbing.errors import ConfigError
from inception_retrain.plumbing.files import atomic_write

REMOTE_SCHEMES = ("s3",)
_URI = re.compile(r"^([a-z][a-z0-9+.-]*)://(.*)$")
_PATH_MANGLED = re.compile(r"^(s3):/([^/].*)$")  # what Path("s3://b/k") prints as


class StorageError(ConfigError):
    """A location cannot be reached or used (no bucket, no credentials, not a folder)."""


def location(value: str | os.PathLike[str]) -> Path | str:
    """The canonical form of a location: an absolute `Path` if local, else a URI `str`."""
    text = os.fspath(value)
    if mangled := _PATH_MANGLED.match(text):
        text = f"{mangled.group(1)}://{mangled.group(2)}"
    if match := _URI.match(text):
        scheme, rest = match.groups()
        if scheme == "file":
            return Path(rest or "/").absolute()
        if scheme not in REMOTE_SCHEMES:
            raise StorageError(f"unsupported location {text!r}: use a path, file:// or s3://")
        if not rest.strip("/"):
            raise StorageError(f"{text!r} names no bucket")
        return f"{scheme}://{rest.rstrip('/')}"
    return Path(text).expanduser().absolute()


# A location as a pydantic field: a local Path or a remote URI str, canonical.
Location = Annotated[Path | str, BeforeValidator(location)]


def looks_like_uri(text: str) -> bool:
    """Whether `text` is written as a URI (`scheme://...`), supported or not."""
    return bool(_URI.match(text) or _PATH_MANGLED.match(text))


def is_remote(value: str | os.PathLike[str]) -> bool:
    return isinstance(location(value), str)


def join(base: str | os.PathLike[str], *names: str) -> Path | str:
    base = location(base)
    return base.joinpath(*names) if isinstance(base, Path) else posixpath.join(base, *names)


def name(value: str | os.PathLike[str]) -> str:
    return posixpath.basename(str(location(value)))


def parent(value: str | os.PathLike[str]) -> Path | str:
    loc = location(value)
    return loc.parent if isinstance(loc, Path) else posixpath.dirname(loc)


# --- the one file-system abstraction ------------------------------------------------------


def _filesystem(value: str | os.PathLike[str]):
    """(fsspec file system, path inside it, location) of a location. Instances are cached by
    fsspec, so a worker process keeps one connection pool per store."""
    import fsspec.core

    loc = location(value)
    fs, path = fsspec.core.url_to_fs(str(loc))
    return fs, path, loc


def remote_filesystem(value: str | os.PathLike[str]):
    """(fsspec file system, "bucket/key" path) of a remote location, for the object-store
    modules of plumbing (`s3_objects`) whose requests fsspec has no call for (conditional
    writes, the server's clock); the same cached instance every other call here uses."""
    fs, path, loc = _filesystem(value)
    if isinstance(loc, Path):
        raise StorageError(f"{loc} is not an object-store location")
    return fs, path


def remove_tree(value: str | os.PathLike[str], keep: tuple[str, ...] = ()) -> int:
    """Remove every file under a folder or prefix, but the names in `keep` (relative to it);
    returns how many were removed. Locally the emptied folders go too."""
    fs, path, loc = _filesystem(value)
    kept = {posixpath.join(path, name) for name in keep}
    with _one_line(loc):
        try:
            found = [key for key in fs.find(path) if key not in kept]
        except FileNotFoundError:
            return 0
        if found:
            fs.rm(found)
        if isinstance(loc, Path) and not kept:
            shutil.rmtree(loc, ignore_errors=True)
    return len(found)


def list_folders(value: str | os.PathLike[str]) -> list[Path | str]:
    """The sub-folders (prefixes, on an object store) directly under `value`, by name."""
    fs, path, loc = _filesystem(value)
    with _one_line(loc):
        try:
            listed = fs.ls(path, detail=True, **({"refresh": True} if isinstance(loc, str) else {}))
        except FileNotFoundError:
            return []
    found = [_as_location(loc, info["name"]) for info in listed if info.get("type") == "directory"]
    return sorted(found, key=lambda p: posixpath.basename(str(p)))


def _as_location(like: Path | str, path: str) -> Path | str:
    """A path the file system returned, as a location of the same kind as `like`."""
    return Path(path) if isinstance(like, Path) else f"{like.split('://')[0]}://{path}"


def _reason(error: BaseException) -> str:
    text = str(error).strip()
    return f"{type(error).__name__}: {text.splitlines()[0][:300]}" if text else type(error).__name__


@contextlib.contextmanager
def _one_line(loc: Path | str) -> Iterator[None]:
    """Failures of a remote store (credentials, network, no bucket) become a StorageError,
    since they are the user's to fix; a missing file stays a FileNotFoundError, and local
    errors stay what they are."""
    try:
        yield
    except FileNotFoundError:
        raise
    except Exception as error:
        if isinstance(loc, Path) or isinstance(error, StorageError):
            raise
        raise StorageError(f"cannot use {loc}: {_reason(error)}") from None


def _glob(folder: str | os.PathLike[str], pattern: str, detail: bool = False):
    fs, path, loc = _filesystem(folder)
    with _one_line(loc):
        try:
            return fs, loc, fs.glob(posixpath.join(path, pattern), refresh=True, detail=detail)
        except FileNotFoundError:
            return fs, loc, {} if detail else []


def list_files(folder: str | os.PathLike[str], pattern: str) -> list[Path | str]:
    """Files directly in `folder` whose name matches the glob `pattern`, sorted by name."""
    _, loc, found = _glob(folder, pattern)
    return sorted((_as_location(loc, p) for p in found), key=lambda p: posixpath.basename(str(p)))


def stamps(folder: str | os.PathLike[str], pattern: str) -> dict[str, str]:
    """Name -> a stamp that changes whenever the file is written again, for the files of
    `list_files(folder, pattern)`: "size:mtime_ns" locally, "size:ETag" on S3."""
    fs, loc, listed = _glob(folder, pattern, detail=True)
    if isinstance(loc, Path):  # mtime to the nanosecond: fsspec's local info rounds it
        found = {}
        for key in listed:
            with contextlib.suppress(FileNotFoundError):  # removed meanwhile
                info = os.stat(key)
                found[posixpath.basename(key)] = f"{info.st_size}:{info.st_mtime_ns}"
        return found
    return {
        posixpath.basename(
            key
        ): f"{info.get('size')}:{info.get('ETag') or info.get('LastModified')}"
        for key, info in listed.items()
    }


def find_files(folder: str | os.PathLike[str]) -> list[Path | str]:
    """Every file under `folder`, recursively, sorted by key (a missing folder: none)."""
    fs, path, loc = _filesystem(folder)
    with _one_line(loc):
        try:
            found = fs.find(path, refresh=True) if isinstance(loc, str) else fs.find(path)
        except FileNotFoundError:
            return []
    return sorted(_as_location(loc, key) for key in found)


def exists(value: str | os.PathLike[str]) -> bool:
    fs, path, loc = _filesystem(value)
    with _one_line(loc):
        return fs.exists(path)


def size(value: str | os.PathLike[str]) -> int:
    fs, path, loc = _filesystem(value)
    with _one_line(loc):
        return int(fs.size(path))


def open_input(value: str | os.PathLike[str]):
    """A binary file object for reading (seekable: Parquet reads only a file's footer)."""
    fs, path, loc = _filesystem(value)
    with _one_line(loc):
        return fs.open(path, "rb")


def read_bytes(value: str | os.PathLike[str]) -> bytes:
    """The whole content of a file or object (FileNotFoundError if there is none)."""
    fs, path, loc = _filesystem(value)
    with _one_line(loc):
        return fs.cat_file(path)


def write_bytes(value: str | os.PathLike[str], data: bytes | memoryview) -> Path | str:
    """Write `data` atomically (see module docstring); returns the location."""
    fs, path, loc = _filesystem(value)
    if isinstance(loc, Path):
        return atomic_write(loc, data)
    with _one_line(loc):
        fs.pipe_file(path, bytes(data))
    return loc


def remove(value: str | os.PathLike[str]) -> None:
    fs, path, loc = _filesystem(value)
    with _one_line(loc), contextlib.suppress(FileNotFoundError):
        fs.rm_file(path)


def rename(source: str | os.PathLike[str], target: str | os.PathLike[str]) -> None:
    """Move a file (local: an atomic rename; remote: a copy, then a delete)."""
    fs, source_path, loc = _filesystem(source)
    _, target_path, _ = _filesystem(target)
    with _one_line(loc):
        fs.makedirs(posixpath.dirname(target_path), exist_ok=True)
        fs.mv(source_path, target_path)


def check_reachable(value: str | os.PathLike[str], what: str = "location") -> Path | str:
    """Fail in one line that names the fix, before any work, if a remote location cannot be
    listed (no bucket, bad or no credentials, an endpoint that refuses or never answers):
    one request with short time-outs (`s3_probe`). Local locations need nothing here."""
    loc = location(value)
    if isinstance(loc, Path):
        return loc
    from inception_retrain.plumbing.s3_probe import probe

    if (why := probe(loc, what)) is not None:
        raise StorageError(why)
    return loc


_LOCAL_COPIES: dict[str, Path] = {}


def local_copy(value: str | os.PathLike[str]) -> Path:
    """A local file with the content of `value`: itself if local, else a copy downloaded once
    per process (Keras reads weights from a local file only). The copy keeps the name, since
    Keras picks the weights format from the suffix."""
    loc = location(value)
    if isinstance(loc, Path):
        return loc
    if loc not in _LOCAL_COPIES or not _LOCAL_COPIES[loc].is_file():
        folder = Path(tempfile.mkdtemp(prefix="inception-retrain-"))
        try:
            data = read_bytes(loc)
        except FileNotFoundError:
            raise StorageError(f"{loc} not found") from None
        _LOCAL_COPIES[loc] = atomic_write(folder / name(loc), data)
    return _LOCAL_COPIES[loc]
