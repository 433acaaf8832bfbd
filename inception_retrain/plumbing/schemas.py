"""Schema versions of the on-disk artifacts: every JSON and Parquet artifact names its kind
and the version of its layout, so a reader refuses, in one line, a file it cannot read.

JSON documents carry `"schema": "inception-retrain/<kind>"` and `"schema_version": N` at the
top level; Parquet files carry the same two keys in the JSON of their schema metadata under
`METADATA_KEY`. Each artifact's owner module holds its kind and version:

    >>> write_document(run_dir / "ingest.json", INGEST, 1, counts)
    >>> counts = read_document(run_dir / "ingest.json", INGEST, 1)
    >>> table = table.replace_schema_metadata(parquet_metadata(MANIFEST, 2, {"source": "demo"}))
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from inception_retrain.plumbing.errors import DataError
from inception_retrain.plumbing.files import read_json, write_json

PREFIX = "inception-retrain/"
METADATA_KEY = b"inception_retrain"


def stamp(kind: str, version: int) -> dict[str, Any]:
    return {"schema": PREFIX + kind, "schema_version": int(version)}


def check(found: dict, kind: str, version: int, where: str | os.PathLike[str]) -> dict:
    """`found` if it is `kind` at `version`, else a one-line DataError naming `where`."""
    expected = stamp(kind, version)
    got = {key: found.get(key) for key in expected} if isinstance(found, dict) else {}
    if got != expected:
        raise DataError(
            f"{where} is not a {kind} file of schema version {version} (found "
            f"{got.get('schema') or 'no schema'} v{got.get('schema_version') or '?'}): "
            "written by another version of inception-retrain, run again to rebuild it"
        )
    return found


def write_document(path: str | os.PathLike[str], kind: str, version: int, payload: dict) -> Path:
    """`payload` as a JSON document of `kind`, written atomically."""
    return write_json(path, {**stamp(kind, version), **payload})


def read_document(path: str | os.PathLike[str], kind: str, version: int) -> dict:
    """The payload of the document at `path` (without its schema keys); DataError if it is
    missing, unreadable, or of another kind or version."""
    try:
        found = read_json(path)
    except FileNotFoundError:
        raise DataError(f"{path} not found") from None
    except (OSError, ValueError) as error:
        raise DataError(f"{path} is unreadable: {error}") from None
    check(found, kind, version, path)
    return {key: value for key, value in found.items() if key not in ("schema", "schema_version")}


def parquet_metadata(kind: str, version: int, payload: dict) -> dict[bytes, bytes]:
    """Schema metadata for a Parquet artifact of `kind` (merge into the schema's metadata)."""
    return {METADATA_KEY: json.dumps({**stamp(kind, version), **payload}).encode()}


def read_parquet_metadata(schema, kind: str, version: int, where) -> dict:
    """The project metadata of a pyarrow schema, checked to be `kind` at `version`."""
    raw = (schema.metadata or {}).get(METADATA_KEY)
    try:
        found = json.loads(raw) if raw else {}
    except ValueError:
        found = {}
    return check(found, kind, version, where)
