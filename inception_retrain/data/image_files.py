"""`find_files`: the one way this project finds input files, for ingestion and prediction.

A folder is walked recursively in sorted order. Hidden files and folders (a leading dot),
`.DS_Store`, `Thumbs.db`, `ehthumbs.db`, `desktop.ini`, AppleDouble `._*` files and
`__MACOSX` folders are ignored: they get no row and are only counted. Everything else is a
candidate, whatever its extension: the validator (`inception_retrain.data.images.examine`) gives
non-images their reason, so ingest and predict report the same files the same way. A folder
that cannot be read becomes a problem row (`unreadable`). Symbolic links to folders are
followed, each real folder once: a link back into a folder already walked is a problem row
(`unreadable`, "symbolic link loop"), never an endless walk. A file link that leads nowhere
or loops is a candidate whose check fails as `unreadable`. A path given as a file is a
candidate as it is. An object-store prefix (`s3://bucket/photos`, see `storage`) is listed
recursively with the same rules for names; its files are URIs (str). `has_file` walks a
folder the same way and stops at the first match (the preflight's "does this class folder
hold any image file?").

    >>> found = find_files([Path("photos")])
    >>> found.files[:2], found.unreadable, found.ignored
    ([PosixPath('photos/cats/a.jpg'), PosixPath('photos/cats/b.png')], [], 3)
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from inception_retrain.plumbing import storage

IGNORED_NAMES = {".ds_store", "thumbs.db", "ehthumbs.db", "desktop.ini"}
IGNORED_FOLDERS = {"__macosx"}


def is_ignored(name: str) -> bool:
    """Hidden files, AppleDouble files and the OS's own index files."""
    return name.startswith(".") or name.lower() in IGNORED_NAMES


@dataclass
class FoundFiles:
    files: list[Path | str] = field(default_factory=list)  # str: a URI
    unreadable: list[tuple[str, str]] = field(default_factory=list)  # (folder, why)
    ignored: int = 0


def find_files(paths: Iterable[str | os.PathLike[str]]) -> FoundFiles:
    """Candidate files under `paths` (see module docstring), in a stable order."""
    found = FoundFiles()
    for given in paths:
        if storage.is_remote(given):
            _list_remote(str(storage.location(given)), found)
            continue
        path = Path(given)
        if path.is_dir():
            found.files.extend(iter_files(path, found))
        else:
            found.files.append(path)
    return found


def _list_remote(uri: str, found: FoundFiles) -> None:
    try:
        files = storage.find_files(uri)
    except (OSError, storage.StorageError) as error:
        found.unreadable.append((uri, str(error)))
        return
    for file in files:
        names = file[len(uri) :].strip("/").split("/")
        hidden = any(n.startswith(".") or n.lower() in IGNORED_FOLDERS for n in names[:-1])
        if hidden or is_ignored(names[-1]):
            found.ignored += 1
        else:
            found.files.append(file)


def has_file(root: str | os.PathLike[str], suffixes: tuple[str, ...]) -> bool:
    """Whether the folder `root` holds a candidate file with one of `suffixes` (lower case);
    stops walking at the first one."""
    return any(path.suffix.lower() in suffixes for path in iter_files(Path(root)))


def iter_files(root: Path, found: FoundFiles | None = None) -> Iterator[Path]:
    """The candidate files under the folder `root`, lazily, in `find_files`'s order; folders
    that cannot be read and ignored names are recorded in `found` when one is given."""
    found = found if found is not None else FoundFiles()

    def on_error(error: OSError) -> None:
        found.unreadable.append((str(error.filename), error.strerror or str(error)))

    seen: set[tuple[int, int]] = set()
    for folder, dirs, names in os.walk(root, onerror=on_error, followlinks=True):
        try:
            info = os.stat(folder)
        except OSError as error:
            on_error(error)
            dirs[:] = []
            continue
        if (info.st_dev, info.st_ino) in seen:
            found.unreadable.append((folder, "symbolic link loop"))
            dirs[:] = []
            continue
        seen.add((info.st_dev, info.st_ino))
        kept = [d for d in dirs if not d.startswith(".") and d.lower() not in IGNORED_FOLDERS]
        found.ignored += len(dirs) - len(kept)
        dirs[:] = sorted(kept)
        for name in sorted(names):
            if is_ignored(name):
                found.ignored += 1
            else:
                yield Path(folder) / name
