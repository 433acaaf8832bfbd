"""`SliceSpec`: which slices of the test split the sliced evaluation measures.

    >>> spec = SliceSpec(csv="/data/slices.csv", size_edges=(128, 256, 512))
    >>> size_bucket(200, spec.size_edges), size_bucket(90, spec.size_edges)
    ('128-255px', '<128px')

Built-in slices: every class, every source folder (`data.ingest.source_folder`), every image
format, and every size bucket of the short side (`size_edges`, in pixels). User slices come
from `csv`: a CSV file with a header and the columns `content_id` and `slice` (a content id
may sit in several user slices, one row each; ids not listed are in none).
"""

from __future__ import annotations

import csv
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator


class SliceSpec(BaseModel):
    """The user's slice file and the short-side edges of the size buckets."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    csv: Path | None = None
    size_edges: tuple[int, ...] = Field((128, 256, 512), min_length=1)

    @field_validator("size_edges")
    @classmethod
    def _increasing(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        return increasing_edges(value)


def increasing_edges(edges):
    """`edges`, or ValueError unless they are positive and increasing."""
    if any(b <= a for a, b in zip(edges, edges[1:], strict=False)) or min(edges) < 1:
        raise ValueError("size edges must be positive and increasing")
    return edges


def check_slices_header(path: Path) -> None:
    """ValueError unless `path` is a readable CSV whose header has content_id and slice, so
    a wrong file is refused when the run starts, not after training."""
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            header = next(csv.reader(handle), [])
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"cannot read the slices file {path}: {error}") from None
    missing = {"content_id", "slice"} - {name.strip() for name in header}
    if missing:
        raise ValueError(
            f"slices file {path} lacks the column(s) {', '.join(sorted(missing))} "
            "(expected a header: content_id,slice)"
        )


def size_bucket(short_side: int, edges: tuple[int, ...]) -> str:
    """'<E0px', 'E0-(E1-1)px', ..., '>=Enpx': the bucket of a short side."""
    if short_side < edges[0]:
        return f"<{edges[0]}px"
    for low, high in zip(edges, edges[1:], strict=False):
        if short_side < high:
            return f"{low}-{high - 1}px"
    return f">={edges[-1]}px"
