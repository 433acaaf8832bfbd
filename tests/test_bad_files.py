"""Ingestion and prediction find the same files and give bad ones the same reasons.

One folder holds every kind of bad file a user trips over (zero bytes, text named .jpg, cut
and garbled images, a 1x1 and a 20x40 image, a file that is not an image type, a link to
nothing, a loop of file links, a folder link back into the tree) next to good images. Ingest
skips and counts each one with its reason; `predict` on the same folder writes one error row
per bad file with the same reason, and a row for every file ingest saw.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from PIL import Image

from inception_retrain.config import RetrainConfig
from inception_retrain.data.ingest import PLACEMENT_REASONS, ingest


def png(size: tuple[int, int], seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


def bad_folder(root: Path) -> dict[str, str]:
    """Good images in two classes and one bad file of each kind; {relative path: reason}."""
    for seed, label in enumerate(("cats", "dogs")):
        (root / label).mkdir(parents=True)
        for i in range(3):
            (root / label / f"{label}-{i}.png").write_bytes(png((48, 40), 10 * seed + i))
    whole = png((64, 64), 50)
    garbled = bytearray(png((64, 64), 60))
    start = garbled.find(b"IDAT") + 54
    garbled[start : start + 40] = bytes(b ^ 0xFF for b in garbled[start : start + 40])
    files = {
        "cats/empty.jpg": (b"", "empty-file"),
        "cats/words.jpg": (b"I am not a JPEG\n", "not-an-image"),
        "cats/cut.png": (whole[: len(whole) // 2], "truncated"),
        "cats/garbled.png": (bytes(garbled), "corrupt"),
        "dogs/one-pixel.png": (png((1, 1), 7), "too-small"),
        "dogs/thin.png": (png((20, 40), 8), "too-small"),
        "dogs/notes.txt": (b"notes\n", "unsupported-extension"),
    }
    for name, (data, _) in files.items():
        (root / name).write_bytes(data)
    reasons = {name: reason for name, (_, reason) in files.items()}
    os.symlink(root / "cats" / "gone.png", root / "cats" / "dangling.png")
    os.symlink(root / "dogs" / "loop-b.jpg", root / "dogs" / "loop-a.jpg")
    os.symlink(root / "dogs" / "loop-a.jpg", root / "dogs" / "loop-b.jpg")
    os.symlink(root / "dogs", root / "dogs" / "again")  # a folder link back into the tree
    reasons.update(
        {
            "cats/dangling.png": "unreadable",
            "dogs/loop-a.jpg": "unreadable",
            "dogs/loop-b.jpg": "unreadable",
            "dogs/again": "unreadable",
        }
    )
    return reasons


def test_ingest_and_predict_agree_on_every_bad_file(tmp_path, tiny_version):
    from inception_retrain.registry.predict import predict_files

    root = tmp_path / "inbox"
    reasons = bad_folder(root)
    manifest = ingest(
        RetrainConfig(data=str(root), workdir=tmp_path / "work").ingest, tmp_path / "run"
    )
    ingested = {
        str(Path(row["uri"]).relative_to(root)): row["reason"]
        for row in pq.read_table(manifest.path).to_pylist()
    }
    assert {name: r for name, r in ingested.items() if r} == reasons
    assert manifest.counts["skipped"] == len(reasons) and manifest.counts["ok"] == 6

    output = tmp_path / "predictions.csv"
    summary = predict_files(tiny_version.path, [root], output)
    with open(output, newline="") as handle:
        rows = list(csv.DictReader(handle))
    predicted = {str(Path(row["path"]).relative_to(root)): row["error"] for row in rows}
    assert len(rows) == len(predicted) == summary["n_files"]  # one row per file
    assert predicted == {name: r for name, r in ingested.items() if r not in PLACEMENT_REASONS}
    assert summary["n_failed"] == len(reasons) and summary["n_ok"] == 6
    details = {str(Path(row["path"]).relative_to(root)): row["detail"] for row in rows}
    assert details["dogs/again"] == "symbolic link loop"
    assert "symbolic links" in details["dogs/loop-a.jpg"]  # ELOOP, as the OS says it
    assert details["dogs/one-pixel.png"] == "1x1, short side below 32 px"
