"""Deterministic two-class demo data: real JPEG and PNG files plus a few broken ones.

The classes are procedural textures that differ in texture statistics, not in colour, so
even a randomly initialised frozen InceptionV3 separates them:

  * `stripes/`: oriented sinusoidal or square-wave gratings (period 4-12 px, any angle),
    two random colours at least 100 grey levels apart, covering the whole image;
  * `blobs/`: 3-12 filled circles (radius 8-50 px) in random colours on a plain random
    background, so most of the image is flat.

Both get the same Gaussian pixel noise (sigma 6). Sizes are random in 120-260 px per side;
the format is JPEG (quality 80-95) or PNG with probability 1/2 each. Every image comes from
its own generator seeded by (seed, class, index), so the same seed gives byte-identical
files, and a larger `per_class` only adds files.

Deliberately broken files (`BROKEN_FILES`, with the reason ingestion gives each):

  * `blobs/broken-empty.jpg`: zero bytes -> `empty-file`
  * `blobs/broken-text.jpg`: a line of text under an image extension -> `not-an-image`
  * `stripes/broken-truncated.png`: the first 40% of a real PNG -> `truncated`
  * `stripes/.DS_Store`: macOS litter, ignored silently (no manifest row)

    >>> summary = write_demo_data("demo", per_class=200, seed=0)
    >>> summary["good"], summary["broken"], summary["classes"]
    (400, 3, ['blobs', 'stripes'])
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from inception_retrain.plumbing.files import atomic_write

CLASSES = ("blobs", "stripes")
BROKEN_FILES = {
    "blobs/broken-empty.jpg": "empty-file",
    "blobs/broken-text.jpg": "not-an-image",
    "stripes/broken-truncated.png": "truncated",
}
IGNORED_FILES = ("stripes/.DS_Store",)
MARKER = ".demo-data.json"  # written last: its presence means the folder is complete
NOISE_SIGMA = 6.0


def _contrasting_colour(rng: np.random.Generator, other: np.ndarray, min_gap: float) -> np.ndarray:
    """A random RGB colour whose grey level differs from `other`'s by at least `min_gap`."""
    weights = np.array([0.299, 0.587, 0.114])
    while True:
        colour = rng.integers(0, 256, 3).astype(np.float64)
        if abs(colour @ weights - other @ weights) >= min_gap:
            return colour


def _size(rng: np.random.Generator) -> tuple[int, int]:
    width, height = rng.integers(120, 261, 2)
    return int(width), int(height)


def draw_stripes(rng: np.random.Generator) -> np.ndarray:
    """An oriented grating in two contrasting colours, as float RGB (H, W, 3)."""
    width, height = _size(rng)
    angle = rng.uniform(0, np.pi)
    period = rng.uniform(4, 12)
    phase = rng.uniform(0, 2 * np.pi)
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    wave = np.sin(2 * np.pi * (x * np.cos(angle) + y * np.sin(angle)) / period + phase)
    if rng.random() < 0.3:
        wave = np.sign(wave)  # square wave: hard edges instead of smooth ramps
    mix = (0.5 + 0.5 * wave)[..., None]
    first = rng.integers(0, 256, 3).astype(np.float64)
    second = _contrasting_colour(rng, first, min_gap=100)
    return first * (1 - mix) + second * mix


def draw_blobs(rng: np.random.Generator) -> np.ndarray:
    """Filled circles on a plain background, as float RGB (H, W, 3)."""
    width, height = _size(rng)
    background = rng.integers(0, 256, 3)
    image = Image.new("RGB", (width, height), tuple(int(c) for c in background))
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(3, 13))):
        radius = int(rng.integers(8, 51))
        cx, cy = int(rng.integers(0, width)), int(rng.integers(0, height))
        colour = _contrasting_colour(rng, background.astype(np.float64), min_gap=60)
        box = (cx - radius, cy - radius, cx + radius, cy + radius)
        draw.ellipse(box, fill=tuple(int(c) for c in colour))
    return np.asarray(image, dtype=np.float64)


def encode_noisy(pixels: np.ndarray, rng: np.random.Generator) -> tuple[bytes, str]:
    """Add noise, quantise, and encode as JPEG or PNG; returns (bytes, extension)."""
    noisy = pixels + rng.normal(0.0, NOISE_SIGMA, pixels.shape)
    image = Image.fromarray(np.clip(noisy + 0.5, 0, 255).astype(np.uint8), "RGB")
    buffer = io.BytesIO()
    if rng.random() < 0.5:
        image.save(buffer, "JPEG", quality=int(rng.integers(80, 96)))
        return buffer.getvalue(), "jpg"
    image.save(buffer, "PNG", compress_level=6)
    return buffer.getvalue(), "png"


def demo_image(class_name: str, index: int, seed: int = 0) -> tuple[bytes, str]:
    """The encoded bytes and extension of demo image `index` of `class_name`."""
    class_index = CLASSES.index(class_name)
    rng = np.random.default_rng([seed, class_index, index])
    pixels = draw_stripes(rng) if class_name == "stripes" else draw_blobs(rng)
    return encode_noisy(pixels, rng)


def _broken_files(seed: int) -> dict[str, bytes]:
    png = b""
    index = 0
    while not png:  # the first demo stripes image that happens to be a PNG
        data, ext = demo_image("stripes", 10_000 + index, seed)
        png = data if ext == "png" else b""
        index += 1
    return {
        "blobs/broken-empty.jpg": b"",
        "blobs/broken-text.jpg": b"this is a text file, not a JPEG\n",
        "stripes/broken-truncated.png": png[: int(len(png) * 0.4)],
    }


def write_demo_data(directory: str | os.PathLike[str], per_class: int = 200, seed: int = 0) -> dict:
    """Write the demo folder; returns a summary (`good`, `broken`, `ignored`, `classes`, ...).

    Files are (re)written in place with the same bytes for the same seed; files from an
    earlier call with a larger `per_class` are left alone.
    """
    if per_class < 1:
        raise ValueError("per_class must be at least 1")
    directory = Path(directory)
    formats = {"jpg": 0, "png": 0}
    for class_name in CLASSES:
        for index in range(per_class):
            data, ext = demo_image(class_name, index, seed)
            formats[ext] += 1
            atomic_write(directory / class_name / f"{class_name}-{index:04d}.{ext}", data)
    for relative, data in _broken_files(seed).items():
        atomic_write(directory / relative, data)
    for relative in IGNORED_FILES:
        atomic_write(directory / relative, b"\x00\x00\x00\x01Bud1\x00\x00\x10\x00")
    summary = {
        "classes": list(CLASSES),
        "per_class": per_class,
        "seed": seed,
        "good": per_class * len(CLASSES),
        "formats": formats,
        "broken": len(BROKEN_FILES),
        "broken_files": dict(BROKEN_FILES),
        "ignored": len(IGNORED_FILES),
    }
    # The marker holds no path, so the same seed gives the same bytes in any folder.
    atomic_write(
        directory / MARKER, (json.dumps(summary, indent=2, sort_keys=True) + "\n").encode()
    )
    return {**summary, "directory": str(directory)}


DEMO_SOURCE = "demo"  # the `--data` value that names this dataset
DEMO_FOLDER = "demo-data"  # where a run generates it: WORKDIR/demo-data


def ensure_demo_data(
    directory: str | os.PathLike[str], per_class: int = 200, seed: int = 0
) -> Path:
    """Generate the demo folder unless a complete one (its marker file) is already there."""
    directory = Path(directory)
    if not (directory / MARKER).is_file():
        write_demo_data(directory, per_class=per_class, seed=seed)
    return directory
