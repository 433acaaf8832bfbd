"""Demo data (determinism, formats, separability, broken files) and the command line:
`inception-retrain demo-data` and the one-line usage errors of `inception-retrain run`."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from inception_retrain.data.demo_data import (
    BROKEN_FILES,
    IGNORED_FILES,
    ensure_demo_data,
    write_demo_data,
)

CLI = Path(sys.executable).parent / "inception-retrain"


def _digests(directory: Path) -> dict[str, str]:
    return {
        str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


def _mean_gradient(path: Path) -> float:
    """Mean gradient magnitude of the grey image: high for stripes, low for flat blobs."""
    grey = np.asarray(Image.open(path).convert("L"), dtype=np.float64)
    dy = np.diff(grey, axis=0)[:, :-1]
    dx = np.diff(grey, axis=1)[:-1, :]
    return float(np.hypot(dx, dy).mean())


def test_same_seed_gives_byte_identical_files_and_another_seed_does_not(tmp_path):
    first = write_demo_data(tmp_path / "a", per_class=12, seed=5)
    write_demo_data(tmp_path / "b", per_class=12, seed=5)
    write_demo_data(tmp_path / "c", per_class=12, seed=6)
    digests_a, digests_b = _digests(tmp_path / "a"), _digests(tmp_path / "b")
    assert digests_a == digests_b
    images = [k for k in digests_a if k.split("/")[-1].startswith(("stripes-", "blobs-"))]
    assert len(images) == first["good"] == 24
    changed = sum(digests_a[k] != _digests(tmp_path / "c").get(k) for k in images)
    assert changed == len(images)


def test_demo_folder_holds_real_jpeg_and_png_of_varied_sizes(small_demo_dir):
    formats, sizes = {}, set()
    for class_name in ("blobs", "stripes"):
        files = sorted((small_demo_dir / class_name).glob(f"{class_name}-*"))
        assert len(files) == 24
        for path in files:
            with Image.open(path) as image:
                image.load()
                expected = {".jpg": "JPEG", ".png": "PNG"}[path.suffix]
                assert image.format == expected and image.mode == "RGB"
                formats[image.format] = formats.get(image.format, 0) + 1
                sizes.add(image.size)
                assert all(120 <= side <= 260 for side in image.size)
    assert formats["JPEG"] >= 12 and formats["PNG"] >= 12  # roughly half each
    assert len(sizes) > 40


def test_classes_differ_strongly_in_texture_statistics(small_demo_dir):
    stripes = [_mean_gradient(p) for p in (small_demo_dir / "stripes").glob("stripes-*")]
    blobs = [_mean_gradient(p) for p in (small_demo_dir / "blobs").glob("blobs-*")]
    # Perfectly separable by one threshold, with a wide margin.
    assert min(stripes) > 1.05 * max(blobs), (min(stripes), max(blobs))
    assert np.median(stripes) > 2.5 * np.median(blobs)


def test_broken_files_are_what_the_summary_documents(tmp_path):
    summary = write_demo_data(tmp_path / "d", per_class=10, seed=0)
    assert summary["broken"] == len(BROKEN_FILES) == 3
    assert summary["classes"] == ["blobs", "stripes"]
    directory = tmp_path / "d"
    assert (directory / "blobs/broken-empty.jpg").stat().st_size == 0
    assert (directory / "blobs/broken-text.jpg").read_bytes().startswith(b"this is a text")
    truncated = (directory / "stripes/broken-truncated.png").read_bytes()
    assert truncated.startswith(b"\x89PNG") and len(truncated) > 100
    with pytest.raises(OSError, match="truncated"):
        Image.open(directory / "stripes/broken-truncated.png").load()
    assert all((directory / name).is_file() for name in IGNORED_FILES)


def test_larger_per_class_only_adds_files(tmp_path):
    write_demo_data(tmp_path / "small", per_class=10, seed=2)
    write_demo_data(tmp_path / "large", per_class=14, seed=2)
    small, large = _digests(tmp_path / "small"), _digests(tmp_path / "large")
    shared = [k for k in small if not k.startswith(".")]
    assert all(small[k] == large[k] for k in shared)
    assert len([k for k in large if "-001" in k]) == 8  # indices 10..13 of both classes


def test_ensure_demo_data_generates_once(tmp_path):
    directory = ensure_demo_data(tmp_path / "demo", per_class=10, seed=0)
    marker = directory / ".demo-data.json"
    stamp = marker.stat().st_mtime_ns
    (directory / "blobs" / "blobs-0000.png").unlink(missing_ok=True)
    (directory / "blobs" / "blobs-0000.jpg").unlink(missing_ok=True)
    ensure_demo_data(directory, per_class=10, seed=0)  # complete folder: left alone
    assert marker.stat().st_mtime_ns == stamp
    assert not list((directory / "blobs").glob("blobs-0000.*"))


# --- command line ------------------------------------------------------------------------


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(CLI), *args], capture_output=True, text=True, timeout=120, cwd=cwd)


def test_demo_data_command_writes_a_deterministic_folder(tmp_path):
    first = _cli("demo-data", str(tmp_path / "x"), "--per-class", "10", "--seed", "3", cwd=tmp_path)
    second = _cli(
        "demo-data", str(tmp_path / "y"), "--per-class", "10", "--seed", "3", cwd=tmp_path
    )
    assert first.returncode == 0 and second.returncode == 0, first.stderr
    assert "wrote 20 images and 3 broken files" in first.stdout
    assert _digests(tmp_path / "x") == _digests(tmp_path / "y")
    assert len(list((tmp_path / "x" / "stripes").glob("stripes-*"))) == 10


@pytest.mark.parametrize(
    ("option", "value", "mentions"),
    [
        ("--image-size", "50", "--image-size"),
        ("--weights", "nope.h5", "--weights: weights file not found"),
        ("--data", "/missing/folder", "--data: data folder not found"),
        ("--dropout-rate", "2", "--dropout-rate"),
    ],
)
def test_bad_run_option_is_one_line_with_exit_code_2(tmp_path, option, value, mentions):
    result = _cli("run", option, value, "--workdir", str(tmp_path / "w"), cwd=tmp_path)
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and mentions in lines[0]
    assert "Traceback" not in result.stderr + result.stdout
    assert not (tmp_path / "w" / "runs").exists()  # rejected before any run starts
