"""The format of the feature cache's Parquet parts: writing, checking and reading them.

A part holds the frozen backbone's features of some images, one row per image: columns
content_id, label_index, split and features, one fixed-size binary value per row holding the
`prod(feature_shape)` float16 or float32 values (little-endian) with the channel axis first:
a (7, 7, 768) feature map is stored as (768, 7, 7). The schema metadata records kind, schema
version, feature shape, dtype, that layout and the backbone fingerprint. A reader views a
batch of rows as one NumPy array without copying (`np.frombuffer` over Arrow's data buffer,
then the axes moved back: a view). Measured against the fixed-size list of version 1 on the
same features (bench/extract.py --formats, docs/benchmarks.md): reading a row costs about 0.09
CPU-ms instead of 0.16, writing 0.16 instead of 0.68, and it stores 0.25 x raw float32
instead of 0.29. Channels first is what makes it smaller: ReLU outputs are zero in runs along
a channel's spatial positions (some channels everywhere), and there zstd finds those runs;
Parquet's BYTE_STREAM_SPLIT did as well (0.23) but made reading 2.6x slower.

Parts live in a cache folder, a local folder or an object-store prefix (`storage`);
`inception_retrain.features.feature_cache` owns the folder, this module what is inside a part:

    part-<first>-<key>.parquet   the smallest content id and a hash of all the ids the
                                 part was written for
    quarantine/          parts that failed to read, set aside and never trusted

View parts (augmented views, `inception_retrain.features.augmentation`) are parts of their own, in a
folder of their own per augmentation policy (`feature_cache.views_dir_for`: `views/<policy
fingerprint>/` inside the cache folder). They have this format plus one column, `view`
(int16, 1..K: view 0 is the original, which stays in the original parts, bit for bit as
before), and the policy and its fingerprint in the schema metadata (`views`). A view row's
key is (content id, view); an original row's key is its content id (`row_keys`), and a view
part's name is `part_name` of its keys as "<content id>:<view>". Original parts are
untouched by views, so VERSION stays 2 and every reader of originals reads exactly what it
read before; the functions below that take a folder work on a view folder too, with keys in
place of content ids.

A part's name is a function of its content ids (`part_name`), so a retried or duplicated
shard writes the same file again instead of a second copy of its rows: no id is ever cached
twice. A part becomes visible only whole (`storage.write_bytes`: a local temp file renamed, or
one object upload), so a killed writer leaves no partial part. Readers treat the set of
content ids over all readable parts as "cached". Labels and splits in the cache are
informational: readers take them from the manifest, given as `wanted` (content id -> label).

    >>> write_part(cache_dir, feature_schema((7, 7, 768), "float16", meta), ids, labels, splits, x)
    >>> check = check_parts(cache_dir, verified)    # .cached, .quarantined, .verified
    >>> ids, features, labels = load_rows(cache_dir, wanted)
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from inception_retrain.plumbing import storage
from inception_retrain.plumbing.files import TEMP_SUFFIX
from inception_retrain.plumbing.schemas import parquet_metadata, read_parquet_metadata

KIND = "feature-part"
# Part of the backbone fingerprint: a new format never reuses old parts. 2: one fixed-size
# binary value per row, channels first (1 was a fixed-size list of floats), content-named.
VERSION = 2
LAYOUT = "channels-first"
VIEW_COLUMN = "view"  # only in view parts
PART_GLOB = "part-*.parquet"
TEMP_GLOB = f".part-*.parquet.*{TEMP_SUFFIX}"  # left by a writer killed before its rename
Location = str | os.PathLike[str]


def feature_schema(
    feature_shape: Sequence[int], dtype: str, metadata: dict, views: dict | None = None
) -> pa.Schema:
    """The schema of a part; with `views` (the policy: {"fingerprint", "policy"}) that of a
    view part, which adds the `view` column and records the policy."""
    width = int(np.prod(feature_shape)) * np.dtype(dtype).itemsize
    fields = [
        pa.field("content_id", pa.string(), nullable=False),
        pa.field("label_index", pa.int32(), nullable=False),
        pa.field("split", pa.string(), nullable=False),
        pa.field("features", pa.binary(width), nullable=False),
    ]
    meta = {"feature_shape": list(feature_shape), "dtype": dtype, "layout": LAYOUT, **metadata}
    if views is not None:
        fields.insert(1, pa.field(VIEW_COLUMN, pa.int16(), nullable=False))
        meta["views"] = views
    return pa.schema(fields, metadata=parquet_metadata(KIND, VERSION, meta))


def is_view_schema(schema: pa.Schema) -> bool:
    return VIEW_COLUMN in schema.names


def view_key_text(content_id: str, view: int) -> str:
    return f"{content_id}:{view}"


def row_keys(content_ids: Sequence[str], views: Sequence[int] | None = None) -> list:
    """Rows' keys: content ids, or (content id, view) pairs for view rows."""
    if views is None:
        return list(content_ids)
    return [(cid, int(view)) for cid, view in zip(content_ids, views, strict=True)]


def _table_keys(table: pa.Table | pa.RecordBatch) -> list:
    ids = table.column("content_id").to_pylist()
    if VIEW_COLUMN not in table.schema.names:
        return ids
    return row_keys(ids, table.column(VIEW_COLUMN).to_pylist())


def _key_columns(schema: pa.Schema) -> list[str]:
    return ["content_id", VIEW_COLUMN] if is_view_schema(schema) else ["content_id"]


def schema_metadata(schema: pa.Schema, where="a feature part") -> dict:
    """The project metadata of a part's schema (feature_shape, dtype, fingerprint, ...)."""
    return read_parquet_metadata(schema, KIND, VERSION, where)


def part_name(content_ids: Sequence[str], views: Sequence[int] | None = None) -> str:
    """The file name of the part written for `content_ids` (in any order): the smallest id
    first, so parts list in content-id order when each holds a run of sorted ids, then a
    hash of all of them (of "<id>:<view>" for the rows of a view part)."""
    names = content_ids if views is None else list(map(view_key_text, content_ids, views))
    digest = hashlib.sha256("\n".join(sorted(names)).encode()).hexdigest()
    return f"part-{min(content_ids)[:16]}-{digest[:16]}.parquet"


def encode_features(features: np.ndarray, dtype: str) -> pa.FixedSizeBinaryArray:
    """One fixed-size binary value per row of `features` (n, *feature_shape): the values as
    `dtype`, little-endian, channel (last) axis first."""
    features = np.asarray(features)
    channels = features.shape[-1]
    positions = int(np.prod(features.shape[1:-1]))
    values = features.reshape(len(features), positions, channels)
    stored = np.ascontiguousarray(
        values.transpose(0, 2, 1), dtype=np.dtype(dtype).newbyteorder("<")
    )  # (n, channels, positions)
    width = stored.itemsize * channels * positions
    return pa.FixedSizeBinaryArray.from_buffers(
        pa.binary(width), len(stored), [None, pa.py_buffer(stored)]
    )


def decode_features(
    column: pa.Array | pa.ChunkedArray, dtype: str, feature_shape: Sequence[int]
) -> np.ndarray:
    """(n, *feature_shape) values of a features column: a read-only view of Arrow's buffer,
    no copy (a chunked column is first joined into one buffer, which copies)."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    width = column.type.byte_width
    dtype = np.dtype(dtype).newbyteorder("<")
    values = np.frombuffer(
        column.buffers()[1],
        dtype,
        count=len(column) * width // dtype.itemsize,
        offset=column.offset * width,
    )
    channels = feature_shape[-1]
    stored = values.reshape(len(column), channels, -1)  # (n, channels, positions)
    return stored.transpose(0, 2, 1).reshape(len(column), *feature_shape)


def write_part(
    cache_dir: Location,
    schema: pa.Schema,
    content_ids: Sequence[str],
    label_indices: Sequence[int],
    splits: Sequence[str],
    features: np.ndarray,
    compression: str = "zstd",
    name: str | None = None,
    views: Sequence[int] | None = None,
) -> Location:
    """Write one part whole (see module docstring); returns its location.

    `views` (one per row) is required by a view part's schema and refused by any other.
    `name` defaults to `part_name(content_ids, views)`; a shard passes the name of the rows
    it was given, so a retry that skips a changed file still replaces its earlier part."""
    metadata = schema_metadata(schema)
    dtype, shape = metadata["dtype"], tuple(metadata["feature_shape"])
    if (views is not None) != is_view_schema(schema):
        raise ValueError("views are given for a view part's schema, and only for it")
    features = np.asarray(features).reshape(len(content_ids), *shape)
    columns = {
        "content_id": pa.array(list(content_ids), pa.string()),
        "label_index": pa.array(np.asarray(label_indices, dtype=np.int32)),
        "split": pa.array(list(splits), pa.string()),
        "features": encode_features(features, dtype),
    }
    if views is not None:
        columns[VIEW_COLUMN] = pa.array(np.asarray(views, dtype=np.int16))
    table = pa.table(columns, schema=schema)
    buffer = pa.BufferOutputStream()  # Arrow's growable buffer: no copy to hand it over
    # No dictionary for the features (same size, faster both ways: measured in bench/).
    # Page checksums let check_parts catch flipped bytes that zstd alone might decode into
    # wrong floats.
    pq.write_table(
        table,
        buffer,
        compression=compression,
        use_dictionary=["content_id", "split"],
        write_page_checksum=True,
    )
    target = storage.join(cache_dir, name or part_name(content_ids, views))
    return storage.write_bytes(target, memoryview(buffer.getvalue()))


def parts(cache_dir: Location) -> list:
    return storage.list_files(cache_dir, PART_GLOB)


def _source(part: Location):
    """What pyarrow reads a whole part from: the local path, or the object in memory (one
    request instead of one per page)."""
    loc = storage.location(part)
    return str(loc) if not storage.is_remote(loc) else pa.BufferReader(storage.read_bytes(loc))


def quarantine(part: Location) -> Location:
    """Move an unreadable part aside so it is recomputed, never trusted."""
    target = storage.join(storage.parent(part), "quarantine", storage.name(part))
    storage.rename(part, target)
    return target


@dataclass
class PartsCheck:
    """What `check_parts` found."""

    cached: set  # keys (content ids; (content id, view) in a view folder) of trusted parts
    quarantined: list  # parts moved aside
    verified: dict[str, str]  # part name -> stamp, for every trusted part (remember these)
    read_fully: int  # parts decoded and verified in full by this check (trusted or not)


def check_parts(cache_dir: Location, verified: Mapping[str, str] | None = None) -> PartsCheck:
    """Verify the parts; quarantine unreadable ones.

    A part is trusted only if its data pages decode, its page checksums match and its row
    count matches its metadata. A part listed in `verified` (what an earlier check
    returned) with the same stamp (`storage.stamps`: size and modification time, or S3's
    ETag) has not been written since it passed, so only its ids are read: a check costs the
    new parts, not the whole cache. Any write to a part changes its stamp.
    """
    verified = dict(verified or {})
    now = storage.stamps(cache_dir, PART_GLOB)
    found = PartsCheck(set(), [], {}, 0)
    for part in parts(cache_dir):
        name = storage.name(part)
        stamp = now.get(name)
        try:
            if stamp is not None and verified.get(name) == stamp:
                keys = _read_keys(part)  # footer and the key columns only
            else:
                found.read_fully += 1
                file = pq.ParquetFile(_source(part), page_checksum_verification=True)
                table = file.read()
                if table.num_rows != file.metadata.num_rows:
                    raise ValueError("row count mismatch")
                schema_metadata(table.schema, part)
                table.column("features").combine_chunks().validate(full=True)
                keys = _table_keys(table)
        except Exception:  # any decoding problem means the part cannot be trusted
            found.quarantined.append(quarantine(part))
            continue
        found.cached.update(keys)
        if stamp is not None:
            found.verified[name] = stamp
    return found


def read_metadata(cache_dir: Location) -> dict:
    """Schema metadata of the cache (feature_shape, dtype, fingerprint inputs)."""
    for part in parts(cache_dir):
        try:
            with storage.open_input(part) as handle:  # the footer only
                return schema_metadata(pq.read_schema(handle), part)
        except Exception:
            continue
    raise FileNotFoundError(f"no readable feature parts in {cache_dir}")


def _read_keys(part: Location) -> list:
    with storage.open_input(part) as handle:  # the footer and the key columns' pages
        schema = pq.read_schema(handle)
        return _table_keys(pq.read_table(handle, columns=_key_columns(schema)))


def cached_ids(cache_dir: Location) -> set:
    """Keys in the readable parts: content ids ((content id, view) pairs in a view folder).
    Footers and the key columns only: cheap."""
    cached: set = set()
    for part in parts(cache_dir):
        cached.update(_read_keys(part))
    return cached


def iter_rows(
    cache_dir: Location,
    wanted: Mapping,
    batch_rows: int = 1024,
    dtype=np.float32,
    part_order: Sequence[int] | None = None,
) -> Iterator[tuple[list, np.ndarray, np.ndarray]]:
    """Stream (keys, features (n, *shape), labels) of the `wanted` rows.

    `wanted` maps a row's key (a content id; (content id, view) in a view folder) -> label
    index (from the manifest, which decides labels and splits); cached rows not in it are
    skipped, each key comes once. Memory is bounded by `batch_rows`. Order: part (sorted,
    or `part_order`, a permutation of their indices), then row. `dtype=None` keeps the
    stored dtype (a float16 cache stays float16: half the bytes), and then a batch whose
    rows are all wanted is a read-only view of the decoded Parquet page data, not a copy.
    """
    files = parts(cache_dir)
    files = files if part_order is None else [files[i] for i in part_order]
    return iter_part_rows(files, wanted, read_metadata(cache_dir), batch_rows, dtype)


def iter_part_rows(
    files: Sequence[Location],
    wanted: Mapping,
    metadata: Mapping,
    batch_rows: int = 1024,
    dtype=np.float32,
) -> Iterator[tuple[list, np.ndarray, np.ndarray]]:
    """`iter_rows` over the given part files in their order, original and view parts
    alike (`wanted` may hold both kinds of key); `metadata` gives shape and stored dtype."""
    shape, stored = tuple(metadata["feature_shape"]), metadata["dtype"]
    seen: set = set()
    for part in files:
        parquet = pq.ParquetFile(_source(part))
        for batch in parquet.iter_batches(batch_size=batch_rows):
            keys = _table_keys(batch)
            keep = [i for i, key in enumerate(keys) if key in wanted and key not in seen]
            if not keep:
                continue
            values = decode_features(batch.column("features"), stored, shape)
            if len(keep) < len(keys):
                values = values[keep]
            if dtype is not None:
                values = values.astype(dtype, copy=False)
            kept = keys if len(keep) == len(keys) else [keys[i] for i in keep]
            seen.update(kept)
            labels = np.array([wanted[key] for key in kept], dtype=np.int32)
            yield kept, values, labels


def load_rows(cache_dir: Location, wanted: Mapping) -> tuple[list, np.ndarray, np.ndarray]:
    """The `wanted` rows in memory, sorted by key (content id, then view: a stable,
    data-independent order).

    Returns (keys, features float32 (N, *shape), labels int32 (N,)).
    """
    ids: list = []
    chunks: list[np.ndarray] = []
    labels: list[np.ndarray] = []
    for batch_ids, values, batch_labels in iter_rows(cache_dir, wanted):
        ids.extend(batch_ids)
        chunks.append(values)
        labels.append(batch_labels)
    if not ids:
        shape = tuple(read_metadata(cache_dir)["feature_shape"])
        return [], np.zeros((0, *shape), np.float32), np.zeros((0,), np.int32)
    order = sorted(range(len(ids)), key=ids.__getitem__)
    features = np.concatenate(chunks)[order]
    return [ids[i] for i in order], features, np.concatenate(labels)[order]
