"""Materialise a tensorflow-datasets dataset as image files, so ingestion treats it as a folder.

`tfds:NAME[?data_dir=DIR]` goes through the real tfds code path: `tfds.builder(NAME,
data_dir=DIR)`, `download_and_prepare()`, then `as_dataset(split, decoders={image:
SkipDecoding()})`, which yields the ORIGINAL encoded bytes (no decode/re-encode, so content
ids are the dataset's own files). Each example is written once to

    WORKDIR/sources/tfds/<name>/<split>/<label>/<content-id>.<ext>

Split names map to train/validation/test (`validation`, `valid`, `val`, `dev` -> validation);
other splits (e.g. `unlabeled`) are left out. A dataset with only `train` gets hash-based
validation/test splits at ingestion. Label folder names come from the ClassLabel feature.

Idempotent: an example whose file exists is not rewritten, and a finished materialisation
leaves `.materialised.json` (the dataset's full name), so later runs skip even the
iteration. Delete the folder to rebuild it.

Only the download is worth retrying: it fails with `TfdsDownloadError`, a `DownloadError`
(the Prefect task layer retries those).

    >>> root = materialise_tfds("tfds:beans", Path("workdir"))
    >>> sorted(p.name for p in root.iterdir())
    ['test', 'train', 'validation']
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from urllib.parse import parse_qs

from inception_retrain.plumbing.errors import DataError, DownloadError
from inception_retrain.plumbing.files import atomic_write, sha256_bytes, write_json

PREFIX = "tfds:"
MARKER = ".materialised.json"
SPLIT_NAMES = {
    "train": "train",
    "validation": "validation",
    "valid": "validation",
    "val": "validation",
    "dev": "validation",
    "test": "test",
}
_MAGIC = (
    (b"\xff\xd8\xff", "jpg"),
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"GIF87a", "gif"),
    (b"GIF89a", "gif"),
    (b"BM", "bmp"),
)


class TfdsDownloadError(DownloadError):
    """Downloading or preparing the dataset failed (often transient: worth a retry)."""


def parse_tfds_source(source: str) -> tuple[str, str | None]:
    """`tfds:NAME[?data_dir=DIR]` -> (NAME, DIR or None)."""
    if not source.startswith(PREFIX):
        raise DataError(f"not a tfds source: {source!r} (expected tfds:NAME[?data_dir=DIR])")
    name, _, query = source[len(PREFIX) :].partition("?")
    options = parse_qs(query, keep_blank_values=True)
    unknown = sorted(set(options) - {"data_dir"})
    if not name or unknown:
        raise DataError(f"bad tfds source {source!r}: expected tfds:NAME[?data_dir=DIR]")
    data_dir = options.get("data_dir", [None])[-1] or None
    return name, data_dir


def _safe_name(name: str) -> str:
    """A folder name for a dataset or label (`cats_vs_dogs:4.0.1` -> `cats_vs_dogs_4.0.1`)."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._")
    return cleaned or "unnamed"


def extension_for(data: bytes) -> str:
    """File extension from the encoded bytes' magic number (`bin` if not a known format)."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    for magic, ext in _MAGIC:
        if data.startswith(magic):
            return ext
    return "bin"  # written anyway: ingestion reports it as skipped, with a reason


def _feature_keys(info, name: str) -> tuple[str, str]:
    """(image feature, label feature): supervised keys if present, else the first of each."""
    import tensorflow_datasets as tfds

    features = info.features
    keys = info.supervised_keys if isinstance(info.supervised_keys, tuple) else None
    if keys and len(keys) == 2 and all(isinstance(k, str) for k in keys):
        image_key, label_key = keys
    else:
        image_key = next((k for k, f in features.items() if isinstance(f, tfds.features.Image)), "")
        label_key = next(
            (k for k, f in features.items() if isinstance(f, tfds.features.ClassLabel)), ""
        )
    if image_key not in features or not isinstance(features[image_key], tfds.features.Image):
        raise DataError(f"tfds:{name} has no Image feature to train on")
    if label_key not in features or not isinstance(features[label_key], tfds.features.ClassLabel):
        raise DataError(f"tfds:{name} has no ClassLabel feature to use as labels")
    return image_key, label_key


def _write_once(path: Path, data: bytes) -> bool:
    """Write `data` to `path` unless it exists; True if written."""
    if path.exists():
        return False
    atomic_write(path, data)
    return True


def materialise_tfds(source: str, workdir: str | os.PathLike[str]) -> Path:
    """Write the dataset's examples under WORKDIR/sources/tfds/<name>/; returns that folder."""
    import tensorflow_datasets as tfds

    name, data_dir = parse_tfds_source(source)
    root = Path(workdir).absolute() / "sources" / "tfds" / _safe_name(name)
    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError:
        raise DataError(
            f"unknown tensorflow-datasets name {name!r} "
            "(see https://www.tensorflow.org/datasets/catalog)"
        ) from None
    full_name = builder.info.full_name
    marker = root / MARKER
    if marker.is_file() and json.loads(marker.read_text()).get("full_name") == full_name:
        return root

    try:
        builder.download_and_prepare()
    except Exception as error:  # network, disk, checksum: reported in one line, retried
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise TfdsDownloadError(f"could not download/prepare tfds:{name}: {first_line}") from error

    image_key, label_key = _feature_keys(builder.info, name)
    label_names = [_safe_name(n) for n in builder.info.features[label_key].names]
    # After download_and_prepare the split names are known; only tfds's code-only mock
    # (no metadata files) leaves them empty, and then 'train' is the one sure split.
    splits = list(builder.info.splits) or ["train"]
    report = {"full_name": full_name, "splits": {}, "left_out_splits": [], "written": 0}
    for split in splits:
        target = SPLIT_NAMES.get(split.lower())
        if target is None:
            report["left_out_splits"].append(split)
            continue
        dataset = builder.as_dataset(
            split=split, decoders={image_key: tfds.decode.SkipDecoding()}, shuffle_files=False
        )
        count = 0
        for example in tfds.as_numpy(dataset):
            label = int(example[label_key])
            if not 0 <= label < len(label_names):
                continue  # unlabeled example (-1)
            data = bytes(example[image_key])
            folder = root / target / label_names[label]
            written = _write_once(folder / f"{sha256_bytes(data)}.{extension_for(data)}", data)
            report["written"] += int(written)
            count += 1
        report["splits"][split] = count
    write_json(marker, report)
    return root
