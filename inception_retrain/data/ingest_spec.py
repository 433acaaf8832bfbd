"""`IngestSpec`: what the ingest stage reads and how it judges and splits it, as plain data.

    >>> spec = IngestSpec(source="/data/flowers", workdir="/data/work")
    >>> spec.split_fractions, spec.max_pixels, spec.min_image_size
    ((0.8, 0.1, 0.1), 40000000, 32)

`source` is a `--data` value: `demo` (generated under `workdir`), a folder (a path or
`s3://bucket/prefix`) or `tfds:NAME[?data_dir=DIR]` (materialised under `workdir`).
`split_fractions` are the train/validation/test shares of a folder without split folders.
Images with more than `max_pixels` pixels, or a short side below `min_image_size`, are
skipped.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from inception_retrain.data.images import DEFAULT_MAX_PIXELS, DEFAULT_MIN_SIZE


class IngestSpec(BaseModel):
    """The source, where generated data go, the split shares and the image limits."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    source: str
    workdir: Path
    split_fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
    max_pixels: int = Field(DEFAULT_MAX_PIXELS, ge=1)
    min_image_size: int = Field(DEFAULT_MIN_SIZE, ge=1)
