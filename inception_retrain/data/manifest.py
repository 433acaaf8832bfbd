"""The manifest: `manifest.parquet` in a run folder, one row per input file, ok or skipped.

This module owns the file: its schema and version, its writer, its typed readers and its
fingerprints. No other module opens it.

Columns: content_id (sha256 of the bytes), uri, label, label_index, split (train,
validation, test), width, height, format, status (ok | skipped), reason (why skipped), and,
since schema version 3, what the data checks compare: mode (Pillow's mode before conversion
to RGB), brightness (mean luma, 0-255) and source (the image's source folder, `ingest`). The
schema metadata holds the class names and the source. Among ok rows a content id is unique.

Version 2 manifests (written before the data checks) are still read: every reader here gets
the columns both versions have, and `read_properties` gives the new ones as None there, so a
champion's old manifest is compared on what it holds and the rest says "not comparable".
Any other version is refused in one line.

Fingerprints:
  * the manifest's: sha256 over the sorted (content_id, label_index, split) of the ok rows;
    it names what a training sees, not where the files are;
  * a split's (`split_fingerprint`): sha256 over the sorted `content_id:label_index` of its
    ok rows; the test split's decides whether two models' scores are comparable.

    >>> manifest = write_manifest(run_dir / "manifest.parquet", rows, class_names, "demo", counts)
    >>> test = read_image_rows(manifest.path, split="test")
    >>> test.content_ids[:1], test.label_indices[:1]
    (['3f2a...'], [1])
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel

from inception_retrain.plumbing.errors import DataError
from inception_retrain.plumbing.files import atomic_file, sha256_bytes
from inception_retrain.plumbing.schemas import parquet_metadata, read_parquet_metadata

KIND = "manifest"
VERSION = 3
READABLE_VERSIONS = (3, 2)  # 2: without mode, brightness and source
FILE_NAME = "manifest.parquet"
SPLITS = ("train", "validation", "test")

SCHEMA = pa.schema(
    [
        pa.field("content_id", pa.string()),
        pa.field("uri", pa.string(), nullable=False),
        pa.field("label", pa.string()),
        pa.field("label_index", pa.int32()),
        pa.field("split", pa.string()),
        pa.field("width", pa.int32()),
        pa.field("height", pa.int32()),
        pa.field("format", pa.string()),
        pa.field("status", pa.string(), nullable=False),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("mode", pa.string()),
        pa.field("brightness", pa.float32()),
        pa.field("source", pa.string()),
    ]
)
PROPERTY_COLUMNS = ("width", "height", "format", "mode", "brightness", "source")


@dataclass
class ManifestRow:
    """One input file: where it is, what its folders say, and what validation found."""

    uri: str
    label: str | None = None
    label_index: int | None = None
    split: str | None = None
    content_id: str | None = None
    width: int | None = None
    height: int | None = None
    format: str | None = None
    mode: str | None = None
    brightness: float | None = None
    source: str | None = None  # the source folder (`ingest.source_folder`)
    reason: str = ""  # empty: ok
    detail: str = ""  # not stored in the manifest; ingest writes it to skipped.csv

    @property
    def ok(self) -> bool:
        return not self.reason


class Manifest(BaseModel):
    """The manifest of a run, as stages hand it on: its path and what it stands for."""

    path: Path
    fingerprint: str
    class_names: list[str]
    counts: dict  # ingest.json's content

    @property
    def n_classes(self) -> int:
        return len(self.class_names)


@dataclass
class ImageRows:
    """Ok rows of a manifest, in manifest order, one per content id (columns as lists)."""

    content_ids: list[str] = field(default_factory=list)
    uris: list[str] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    label_indices: list[int] = field(default_factory=list)
    splits: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.content_ids)

    def where(self, keep: Sequence[bool]) -> ImageRows:
        """The rows whose `keep` is true."""
        columns = [getattr(self, f.name) for f in fields(self)]
        return ImageRows(*([v for v, k in zip(c, keep, strict=True) if k] for c in columns))

    def label_of(self) -> dict[str, int]:
        """content id -> label index."""
        return dict(zip(self.content_ids, self.label_indices, strict=True))


def keys_fingerprint(keys: Iterable[tuple[str, int, str]]) -> str:
    """sha256 over sorted (content_id, label_index, split) keys (the manifest fingerprint)."""
    digest = hashlib.sha256()
    for content_id, label_index, split in sorted(keys):
        digest.update(f"{content_id}\t{label_index}\t{split}\n".encode())
    return digest.hexdigest()


def write_manifest(
    path: Path, rows: Sequence[ManifestRow], class_names: list[str], source: str, counts: dict
) -> Manifest:
    """Write `rows` atomically; returns the Manifest handle."""
    columns = {
        name: [getattr(r, name) for r in rows]
        for name in ("content_id", "uri", "label", "label_index", "split", "width", "height")
    }
    columns["format"] = [r.format for r in rows]
    columns["status"] = ["ok" if r.ok else "skipped" for r in rows]
    columns["reason"] = [r.reason for r in rows]
    columns["mode"] = [r.mode for r in rows]
    columns["brightness"] = [r.brightness for r in rows]
    columns["source"] = [r.source for r in rows]
    metadata = parquet_metadata(KIND, VERSION, {"class_names": class_names, "source": source})
    table = pa.table(columns, schema=SCHEMA.with_metadata(metadata))
    with atomic_file(path) as handle:
        pq.write_table(table, handle, compression="zstd")
    ok_keys = ((r.content_id, r.label_index, r.split) for r in rows if r.ok)
    return Manifest(
        path=path, fingerprint=keys_fingerprint(ok_keys), class_names=class_names, counts=counts
    )


def _checked_metadata(schema: pa.Schema, path) -> dict:
    """The manifest's metadata if its version is one of READABLE_VERSIONS, else the one-line
    DataError that names the current version."""
    try:
        return read_parquet_metadata(schema, KIND, VERSION, path)
    except DataError as current:
        for version in READABLE_VERSIONS[1:]:
            try:
                return read_parquet_metadata(schema, KIND, version, path)
            except DataError:
                continue
        raise current from None


def _read(path: Path, columns: list[str], split: str | None = None) -> pa.Table:
    try:
        schema = pq.read_schema(path)
    except (OSError, pa.ArrowException) as error:
        raise DataError(f"cannot read the manifest {path}: {error}") from None
    _checked_metadata(schema, path)
    filters = [("status", "=", "ok")] + ([("split", "=", split)] if split else [])
    present = [c for c in columns if c in schema.names]
    return pq.read_table(path, columns=present, filters=filters)


def read_metadata(path: Path) -> dict:
    """{class_names, source} of a manifest file (and its `schema_version`)."""
    return _checked_metadata(pq.read_schema(path), path)


@dataclass
class ImageProperties:
    """Ok rows of a manifest with what the data checks compare, in manifest order, one per
    content id. Columns a version 2 manifest lacks (mode, brightness, source) are None per
    row; `version` says which it was."""

    rows: ImageRows
    width: list[int]
    height: list[int]
    format: list[str | None]
    mode: list[str | None]
    brightness: list[float | None]
    source: list[str | None]
    version: int

    def __len__(self) -> int:
        return len(self.rows)

    def where(self, keep: Sequence[bool]) -> ImageProperties:
        """The rows whose `keep` is true."""
        keep = list(keep)
        columns = {
            name: [v for v, k in zip(getattr(self, name), keep, strict=True) if k]
            for name in PROPERTY_COLUMNS
        }
        return ImageProperties(rows=self.rows.where(keep), version=self.version, **columns)

    def has(self, column: str) -> bool:
        """Whether the manifest recorded `column` (a version 2 manifest has no mode,
        brightness or source)."""
        return self.version >= 3 or column in ("width", "height", "format")


def read_properties(path: Path, split: str | None = None) -> ImageProperties:
    """The ok rows (of one split, or all) with their image properties (see ImageProperties)."""
    path = Path(path)
    names = ["content_id", "uri", "label", "label_index", "split", *PROPERTY_COLUMNS]
    table = _read(path, names, split)
    version = int(read_metadata(path)["schema_version"])
    columns = {
        name: table.column(name).to_pylist() if name in table.column_names else None
        for name in names
    }
    properties = ImageProperties(
        rows=ImageRows(),
        version=version,
        **{name: [] for name in PROPERTY_COLUMNS},
    )
    seen: set[str] = set()
    for i, cid in enumerate(columns["content_id"]):
        if cid in seen:
            continue
        seen.add(cid)
        rows = properties.rows
        rows.content_ids.append(cid)
        rows.uris.append(columns["uri"][i])
        rows.labels.append(columns["label"][i])
        rows.label_indices.append(int(columns["label_index"][i]))
        rows.splits.append(columns["split"][i])
        for name in PROPERTY_COLUMNS:
            values = columns[name]
            value = values[i] if values is not None else None
            if name == "brightness" and value is not None and not math.isfinite(value):
                value = None
            getattr(properties, name).append(value)
    return properties


def read_image_rows(path: Path, split: str | None = None) -> ImageRows:
    """The ok rows (of one split, or all), in manifest order, each content id once."""
    table = _read(
        Path(path), ["content_id", "uri", "label", "label_index", "split", "status"], split
    )
    rows = ImageRows()
    seen: set[str] = set()
    for cid, uri, label, index, row_split in zip(
        *(table.column(c).to_pylist() for c in ("content_id", "uri", "label", "label_index")),
        table.column("split").to_pylist(),
        strict=True,
    ):
        if cid in seen:  # the manifest promises unique ok ids; never count one twice anyway
            continue
        seen.add(cid)
        rows.content_ids.append(cid)
        rows.uris.append(uri)
        rows.labels.append(label)
        rows.label_indices.append(int(index))
        rows.splits.append(row_split)
    return rows


def split_fingerprint(path: Path, split: str = "test") -> str:
    """Identity of one split: which images, with which labels."""
    rows = read_image_rows(path, split)
    lines = sorted(f"{c}:{i}" for c, i in zip(rows.content_ids, rows.label_indices, strict=True))
    return sha256_bytes("\n".join(lines).encode())


def split_class_counts(path: Path) -> tuple[list[dict], int]:
    """(one row per split with its ok images per class and in total, skipped files)."""
    table = pq.read_table(path, columns=["label", "split", "status"])
    rows = table.to_pylist()
    counts = Counter((r["split"], r["label"]) for r in rows if r["status"] == "ok")
    per_split = []
    for split in SPLITS:
        row = {"split": split, **{label: n for (s, label), n in counts.items() if s == split}}
        row["total"] = sum(n for (s, _), n in counts.items() if s == split)
        per_split.append(row)
    return per_split, sum(r["status"] != "ok" for r in rows)


def open_manifest(path: Path, counts: dict | None = None) -> Manifest:
    """The Manifest handle of an existing file (for re-running a stage on a finished run)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path} not found")
    rows = read_image_rows(path)
    keys = zip(rows.content_ids, rows.label_indices, rows.splits, strict=True)
    return Manifest(
        path=path,
        fingerprint=keys_fingerprint(keys),
        class_names=read_metadata(path)["class_names"],
        counts=counts or {},
    )
