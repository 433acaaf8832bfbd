"""A folder of scanned-looking document pages in two classes, built offline (no download).

    python bench/scanned_images.py OUT [--per-class 200]

`letters/`: pages of running prose in a serif face; `forms/`: ruled tables of short entries in
a sans face. Each page is rendered with the system's DejaVu fonts, then goes through what a
flatbed scan does to paper: a slight skew, the paper's tone and an uneven lamp (a light
gradient), a little blur, sensor noise and speckle, and JPEG compression at a random quality;
pages come out 300-500 px on their long side, portrait or landscape. Deterministic per
(seed, index). Used by bench/sweep.py --data to measure the sweep's degenerate trainings on
data other than the demo's textures (issue 20, item 4).
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

FONTS = Path("/usr/share/fonts/truetype/dejavu")
WORDS = (
    "the",
    "of",
    "and",
    "to",
    "in",
    "is",
    "was",
    "that",
    "for",
    "on",
    "with",
    "as",
    "by",
    "at",
    "from",
    "this",
    "be",
    "are",
    "have",
    "it",
    "an",
    "which",
    "or",
    "were",
    "their",
    "has",
    "been",
    "its",
    "one",
    "more",
    "after",
    "also",
    "new",
    "other",
    "some",
    "into",
    "first",
    "two",
    "time",
    "report",
    "letter",
    "account",
    "meeting",
    "office",
    "board",
    "member",
    "notice",
    "request",
    "payment",
    "order",
    "committee",
    "annual",
    "review",
    "service",
    "county",
    "district",
    "school",
    "church",
    "market",
    "river",
    "station",
)


def _font(name: str, size: int):
    try:
        return ImageFont.truetype(str(FONTS / name), size)
    except OSError:  # no DejaVu on this machine: Pillow's own bitmap font
        return ImageFont.load_default()


def letter(rng, width: int, height: int) -> Image.Image:
    page = Image.new("L", (width, height), 255)
    draw = ImageDraw.Draw(page)
    size = int(rng.integers(11, 16))
    font = _font("DejaVuSerif.ttf", size)
    y = int(rng.integers(20, 40))
    while y < height - 30:
        if rng.random() < 0.12:  # a paragraph break
            y += size
            continue
        words = " ".join(rng.choice(WORDS, size=int(rng.integers(6, 12))))
        indent = 40 if rng.random() < 0.1 else 24
        draw.text((indent, y), words, fill=int(rng.integers(10, 60)), font=font)
        y += int(size * 1.5)
    return page


def form(rng, width: int, height: int) -> Image.Image:
    page = Image.new("L", (width, height), 255)
    draw = ImageDraw.Draw(page)
    size = int(rng.integers(10, 14))
    font = _font("DejaVuSans.ttf", size)
    columns = int(rng.integers(3, 6))
    row_height = int(size * rng.uniform(1.8, 2.6))
    left, top = int(rng.integers(15, 30)), int(rng.integers(30, 60))
    right = width - int(rng.integers(15, 30))
    draw.text((left, top - size - 8), " ".join(rng.choice(WORDS, size=3)).upper(), font=font)
    edges = np.linspace(left, right, columns + 1).astype(int)
    y = top
    while y + row_height < height - 20:
        draw.line([(left, y), (right, y)], fill=40, width=1)
        for x0 in edges[:-1]:
            entry = str(rng.choice(WORDS)) if rng.random() < 0.6 else f"{rng.integers(1, 9999)}"
            draw.text((x0 + 4, y + 3), entry, fill=int(rng.integers(10, 60)), font=font)
        y += row_height
    draw.line([(left, y), (right, y)], fill=40, width=1)
    for x in edges:
        draw.line([(x, top), (x, y)], fill=40, width=1)
    return page


def scan(rng, page: Image.Image) -> bytes:
    """What a flatbed scanner does to a page; JPEG bytes."""
    page = page.rotate(float(rng.uniform(-2.5, 2.5)), resample=Image.BICUBIC, fillcolor=255)
    pixels = np.asarray(page, np.float32)
    h, w = pixels.shape
    gradient = np.linspace(0, 1, w)[None, :] * rng.uniform(-25, 25) + np.linspace(0, 1, h)[
        :, None
    ] * rng.uniform(-25, 25)
    tone = rng.uniform(225, 250)  # off-white paper
    pixels = pixels * tone / 255 + gradient
    pixels = np.asarray(
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).filter(
            ImageFilter.GaussianBlur(float(rng.uniform(0.3, 1.0)))
        ),
        np.float32,
    )
    pixels += rng.normal(0, rng.uniform(2, 7), pixels.shape)
    speckle = rng.random(pixels.shape) < rng.uniform(0.0005, 0.003)
    pixels[speckle] = rng.uniform(0, 80)
    grey = np.clip(pixels, 0, 255).astype(np.uint8)
    rgb = np.stack([grey, grey, np.clip(grey.astype(int) - 4, 0, 255).astype(np.uint8)], -1)
    buffer = io.BytesIO()
    Image.fromarray(rgb, "RGB").save(buffer, "JPEG", quality=int(rng.integers(60, 90)))
    return buffer.getvalue()


def write_scanned_images(folder: Path, per_class: int = 200, seed: int = 0) -> Path:
    """`folder/letters/*.jpg` and `folder/forms/*.jpg`, `per_class` each."""
    for label, draw in (("letters", letter), ("forms", form)):
        (folder / label).mkdir(parents=True, exist_ok=True)
        for index in range(per_class):
            rng = np.random.default_rng([seed, index, label == "forms"])
            long_side = int(rng.integers(300, 501))
            short_side = int(long_side * rng.uniform(0.7, 0.78))
            width, height = (
                (short_side, long_side) if rng.random() < 0.8 else (long_side, short_side)
            )
            (folder / label / f"{label}-{index:04d}.jpg").write_bytes(
                scan(rng, draw(rng, width, height))
            )
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--per-class", type=int, default=200)
    args = parser.parse_args()
    write_scanned_images(args.out, args.per_class)
    print(f"wrote {2 * args.per_class} pages to {args.out}")


if __name__ == "__main__":
    main()
