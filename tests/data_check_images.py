"""Real image files for the data checks' known answers: the demo's two texture classes, and
the shifts a new camera or a new texture brings.

  * `write_images(folder, class_name, indices, look)` writes encoded JPEG/PNG files the way
    the demo does (`demo_data`: noise sigma 6, half JPEG, half PNG), in one of these looks:
      - "demo": exactly `demo_data.demo_image` (the reference's generator);
      - "dim": the same drawing at half brightness, before noise and encoding (a darker
        camera);
      - "texture": another texture for each class (blobs -> filled rectangles, stripes ->
        crossed gratings, "plaid");
      - "checker" / "rings": textures neither demo class has (rotated checkerboards /
        concentric rings);
      - "dark" / "bright": either demo texture (by the index's parity) at 30% contrast, near
        black / near white: a source folder whose classes differ by exposure, not texture;
      - "warm" / "cool": either demo texture (by parity) tinted red / blue: classes that
        differ by colour, which a random-weights backbone separates in a few epochs.
  * Each image comes from its own generator seeded by (look, class, index): the same call
    writes the same bytes.

    >>> write_images(tmp / "new" / "blobs", "blobs", range(100, 120), "dim")
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from inception_retrain.data import demo_data
from inception_retrain.data.demo_data import CLASSES, _contrasting_colour, _size


def _boxes(rng: np.random.Generator) -> np.ndarray:
    width, height = _size(rng)
    background = rng.integers(0, 256, 3)
    image = Image.new("RGB", (width, height), tuple(int(c) for c in background))
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(3, 13))):
        half_w, half_h = int(rng.integers(8, 51)), int(rng.integers(8, 51))
        cx, cy = int(rng.integers(0, width)), int(rng.integers(0, height))
        colour = _contrasting_colour(rng, background.astype(np.float64), min_gap=60)
        draw.rectangle(
            (cx - half_w, cy - half_h, cx + half_w, cy + half_h),
            fill=tuple(int(c) for c in colour),
        )
    return np.asarray(image, dtype=np.float64)


def _two_colours(rng: np.random.Generator, mix: np.ndarray) -> np.ndarray:
    first = rng.integers(0, 256, 3).astype(np.float64)
    second = _contrasting_colour(rng, first, min_gap=100)
    return first * (1 - mix[..., None]) + second * mix[..., None]


def _plaid(rng: np.random.Generator) -> np.ndarray:
    width, height = _size(rng)
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    angle = rng.uniform(0, np.pi)
    waves = []
    for a in (angle, angle + rng.uniform(np.pi / 3, 2 * np.pi / 3)):
        period, phase = rng.uniform(4, 12), rng.uniform(0, 2 * np.pi)
        waves.append(np.sin(2 * np.pi * (x * np.cos(a) + y * np.sin(a)) / period + phase))
    return _two_colours(rng, 0.5 + 0.25 * (waves[0] + waves[1]))


def _checker(rng: np.random.Generator) -> np.ndarray:
    width, height = _size(rng)
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    angle, square = rng.uniform(0, np.pi / 2), rng.uniform(10, 30)
    u = (x * np.cos(angle) + y * np.sin(angle)) / square
    v = (-x * np.sin(angle) + y * np.cos(angle)) / square
    return _two_colours(rng, (np.floor(u) + np.floor(v)) % 2)


def _rings(rng: np.random.Generator) -> np.ndarray:
    width, height = _size(rng)
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    cx, cy = rng.uniform(0, width), rng.uniform(0, height)
    period = rng.uniform(3, 6)
    radius = np.hypot(x - cx, y - cy)
    return _two_colours(rng, 0.5 + 0.5 * np.sign(np.sin(2 * np.pi * radius / period)))


def image_bytes(class_name: str, index: int, look: str = "demo") -> tuple[bytes, str]:
    """(encoded bytes, extension) of image `index` of `class_name` in `look`."""
    if look == "demo":
        return demo_data.demo_image(class_name, index, seed=0)
    rng = np.random.default_rng([zlib.crc32(look.encode()), CLASSES.index(class_name), index])
    stripes = class_name == "stripes"
    if look == "dim":
        pixels = demo_data.draw_stripes(rng) if stripes else demo_data.draw_blobs(rng)
        pixels = pixels * 0.5
    elif look == "texture":
        pixels = _plaid(rng) if stripes else _boxes(rng)
    elif look in ("checker", "rings"):
        pixels = _checker(rng) if look == "checker" else _rings(rng)
    elif look in ("warm", "cool"):
        pixels = demo_data.draw_stripes(rng) if index % 2 else demo_data.draw_blobs(rng)
        tint = (1.0, 0.55, 0.45) if look == "warm" else (0.45, 0.55, 1.0)
        pixels = pixels * np.asarray(tint)
    elif look in ("dark", "bright"):
        pixels = demo_data.draw_stripes(rng) if index % 2 else demo_data.draw_blobs(rng)
        pixels = pixels * 0.3 if look == "dark" else 255.0 - (255.0 - pixels) * 0.3
    else:
        raise ValueError(look)
    return demo_data.encode_noisy(pixels, rng)


def write_images(
    folder: Path, class_name: str, indices: Iterable[int], look: str = "demo", name: str = ""
) -> list[Path]:
    """Write images `indices` of `class_name` in `look` into `folder`; returns their paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in indices:
        data, ext = image_bytes(class_name, index, look)
        path = folder / f"{name or look}-{class_name}-{index:04d}.{ext}"
        path.write_bytes(data)
        paths.append(path)
    return paths
