"""Fail fast: bad input is refused by the CLI in one line, before Prefect starts, writing nothing.

The table below runs more than 30 bad inputs (workdirs, data folders, parameters, weights
files, tfds names) through the real `inception-retrain run` in a subprocess. For each one:
exit code 2, one `error:` line on stderr naming the problem, no traceback, no Prefect, and
nothing new in the workdir (a missing one is not even created). How fast: bench/refusal.py
measures it (a wall-clock limit here would depend on the machine's load).

The weights-file check reads the HDF5 without building InceptionV3; it is checked here
against Keras's own model (the layout it encodes) and against Keras's loader (files it
accepts load, files it refuses do not).
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

CLI = Path(sys.executable).parent / "inception-retrain"


def image(path: Path, size: tuple[int, int] = (48, 40), seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    path.write_bytes(buffer.getvalue())
    return path


def text(path: Path, content: str = "not an image\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content)
    return path


# --- weights files: preflight agrees with Keras ------------------------------------------------


@pytest.fixture(scope="module")
def inception():
    """Keras's InceptionV3 (include_top=False), as the backbone builds it (random weights)."""
    from inception_retrain.features.backbone import _full_model

    return _full_model("random:3", 75)


@pytest.fixture(scope="module")
def weights_files(tmp_path_factory, inception) -> dict[str, Path]:
    """InceptionV3 weights in every format Keras reads, and damaged copies of them."""
    import h5py
    import keras
    from keras.src.legacy.saving import legacy_h5_format

    folder = tmp_path_factory.mktemp("weights")
    model = inception
    files = {
        "keras3": folder / "good.weights.h5",
        "legacy": folder / "good.h5",
        "archive": folder / "good.keras",
    }
    model.save_weights(files["keras3"])
    with h5py.File(files["legacy"], "w") as handle:
        legacy_h5_format.save_weights_to_hdf5_group(handle, model)
    model.save(files["archive"])
    deflated = files["deflated-archive"] = folder / "deflated.keras"
    with (
        zipfile.ZipFile(files["archive"]) as source,
        zipfile.ZipFile(deflated, "w", zipfile.ZIP_DEFLATED) as target,
    ):
        for info in source.infolist():
            target.writestr(info.filename, source.read(info.filename))

    def damaged(name: str, source: Path, dataset: str, shape) -> Path:
        path = folder / f"{name}{''.join(source.suffixes)}"
        shutil.copy(source, path)
        with h5py.File(path, "r+") as handle:
            del handle[dataset]
            handle.create_dataset(dataset, data=np.zeros(shape, np.float32))
        files[name] = path
        return path

    damaged("keras3-conv-shape", files["keras3"], "layers/conv2d_5/vars/0", (1, 1, 192, 65))
    damaged("keras3-bn-shape", files["keras3"], "layers/batch_normalization_40/vars/2", (7,))
    with h5py.File(files["legacy"], "r") as handle:
        names = [n.decode() if isinstance(n, bytes) else n for n in handle.attrs["layer_names"]]
        conv = next(n for n in names if n.startswith("conv2d") and n != names[1])
        (weight,) = handle[conv].attrs["weight_names"]
        weight = weight.decode() if isinstance(weight, bytes) else weight
    damaged("legacy-shape", files["legacy"], f"{conv}/{weight}", (3, 3, 3, 3))
    files["other-model"] = folder / "dense.weights.h5"
    keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)]).save_weights(files["other-model"])
    files["legacy-other-model"] = folder / "dense.h5"
    with h5py.File(files["legacy-other-model"], "w") as handle:
        dense = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
        legacy_h5_format.save_weights_to_hdf5_group(handle, dense)
    return files


def test_the_written_layout_is_keras_inception_v3(inception):
    from inception_retrain.features.weights_file import CONV_KERNELS, LAYER_ORDER

    with_weights = [layer for layer in inception.layers if layer.weights]
    kinds = {"Conv2D": "c", "BatchNormalization": "b"}
    assert "".join(kinds[type(layer).__name__] for layer in with_weights) == LAYER_ORDER
    convs = [layer for layer in with_weights if type(layer).__name__ == "Conv2D"]
    assert tuple(tuple(c.kernel.shape) for c in convs) == CONV_KERNELS
    norms = [layer for layer in with_weights if type(layer).__name__ == "BatchNormalization"]
    assert [[tuple(w.shape) for w in n.weights] for n in norms] == [
        [(k[3],)] * 3 for k in CONV_KERNELS
    ]


@pytest.mark.parametrize(
    ("name", "fits"),
    [
        ("keras3", True),
        ("legacy", True),
        ("archive", True),
        ("deflated-archive", True),
        ("keras3-conv-shape", False),
        ("keras3-bn-shape", False),
        ("legacy-shape", False),
        ("other-model", False),
        ("legacy-other-model", False),
    ],
)
def test_weights_check_agrees_with_keras(weights_files, name, fits):
    from inception_retrain.features.backbone import load_backbone
    from inception_retrain.features.weights_file import check_weights_file
    from inception_retrain.plumbing.errors import WeightsError

    path = weights_files[name]
    if fits:
        check_weights_file(path)
    else:
        with pytest.raises(WeightsError, match="does not fit InceptionV3") as refused:
            check_weights_file(path)
        assert str(path) in str(refused.value) and "\n" not in str(refused.value)
    if name in ("keras3", "deflated-archive", "other-model", "legacy-other-model"):
        return  # Keras's loader on these: test_backbone.py, or the same bytes as "archive"
    if fits:  # Keras's own loader takes it
        load_backbone(str(path), "mixed7", 75)
    else:
        with pytest.raises(WeightsError):
            load_backbone(str(path), "mixed7", 75)


# --- the bad-input table through the CLI -------------------------------------------------------


def two_classes(root: Path) -> Path:
    for i, label in enumerate(("cats", "dogs")):
        for j in range(3):
            image(root / label / f"{label}-{j}.png", seed=10 * i + j)
    return root


def build_case(name: str, tmp: Path, weights: dict[str, Path]) -> tuple[list[str], str, Path]:
    """(run options, text the error must contain, workdir) for one bad input."""
    good = two_classes(tmp / "good")
    work = tmp / "work"  # does not exist: must not be created
    data = tmp / "data"
    base = ["--data", str(good), "--workdir", str(work)]

    if name == "workdir-is-a-file":
        work = text(tmp / "work-file")
        return ["--data", str(good), "--workdir", str(work)], "is not a folder", work
    if name == "workdir-under-a-file":
        parent = text(tmp / "plain-file")
        return ["--data", str(good), "--workdir", str(parent / "w")], "is not a folder", parent
    if name in ("workdir-runs-is-a-file", "workdir-models-is-a-file", "workdir-cache-is-a-file"):
        work.mkdir()
        (work / "sweeps").mkdir()
        text(work / name.split("-")[1])
        return base, f"{work / name.split('-')[1]} is not a folder", work
    if name == "workdir-dangling-link":
        os.symlink(tmp / "nowhere" / "w", tmp / "link")
        return ["--data", str(good), "--workdir", str(tmp / "link")], "symbolic link", tmp / "link"
    if name == "workdir-link-to-a-file":
        os.symlink(text(tmp / "target"), tmp / "link")
        return ["--data", str(good), "--workdir", str(tmp / "link")], "not a folder", tmp / "link"

    options = ["--data", str(data), "--workdir", str(work)]
    if name == "data-empty-folder":
        data.mkdir()
        return options, "no class folders with image files", work
    if name == "data-one-class":
        image(data / "cats" / "a.png")
        image(data / "cats" / "b.png", seed=1)
        return options, "need at least 2 classes with image files", work
    if name == "data-files-without-class-folders":
        image(data / "a.png")
        image(data / "b.png", seed=1)
        return options, "no class folders with image files", work
    if name == "data-classes-without-images":
        text(data / "cats" / "notes.txt")
        text(data / "dogs" / "readme.md")
        return options, "no class folders with image files", work
    if name == "data-second-class-only-hidden-files":
        image(data / "cats" / "a.png")
        image(data / "dogs" / ".hidden.png", seed=1)
        text(data / "dogs" / "Thumbs.db")
        return options, "need at least 2 classes", work
    if name == "data-empty-test-folder":
        two_classes(data / "train")
        (data / "test" / "cats").mkdir(parents=True)
        return options, "the test split would be empty", work
    if name == "data-test-folder-without-images":
        two_classes(data / "train")
        text(data / "test" / "cats" / "a.txt")
        return options, "the test split would be empty", work
    if name == "data-no-train-folder":
        two_classes(data / "test")
        two_classes(data / "validation")
        return options, "no training images", work
    if name == "data-split-folders-no-test-share":
        two_classes(data / "train")
        return [*options, "--split-fractions", "0.9,0.1,0"], "test split would be empty", work
    if name == "data-no-test-share":
        return [*base, "--split-fractions", "1,0,0"], "the test split would be empty", work
    if name == "demo-no-test-share":
        return ["--workdir", str(work), "--split-fractions", "0.8,0.2,0"], "test split", work
    if name == "data-missing":
        return options, "data folder not found", work
    if name == "data-is-a-file":
        return ["--data", str(text(tmp / "x.jpg")), "--workdir", str(work)], "--data", work

    parameters = {
        "hidden-units-word": (["--hidden-units", "abc"], "--hidden-units: expected 2"),
        "hidden-units-not-int": (["--hidden-units", "16,x"], "--hidden-units"),
        "hidden-units-zero": (["--hidden-units", "0,8"], "hidden units must be >= 1"),
        "epochs-zero": (["--epochs", "0"], "--epochs"),
        "dropout-rate-one": (["--dropout-rate", "1.0"], "--dropout-rate"),
        "dropout-rate-negative": (["--dropout-rate", "-0.1"], "--dropout-rate"),
        "image-size-small": (["--image-size", "50"], "--image-size"),
        "split-fractions-sum": (["--split-fractions", "0.5,0.6,0.1"], "--split-fractions"),
        "split-fractions-words": (["--split-fractions", "a,b,c"], "--split-fractions"),
        "split-fractions-two": (["--split-fractions", "0.5,0.5"], "expected 3"),
        "layer-unknown": (["--layer", "mixed11"], "unknown backbone layer 'mixed11'"),
        "feature-dtype": (["--feature-dtype", "float64"], "--feature-dtype"),
        "sweep-rate-one": (["--sweep-rates", "0,1"], "--sweep-rates"),
        "placement": (["--dropout-placement", "sideways"], "--dropout-placement"),
        "batch-size-zero": (["--batch-size", "0"], "--batch-size"),
        "promotion-metric": (["--promotion-metric", "luck"], "--promotion-metric"),
        "unknown-option": (["--colour", "blue"], "--colour"),
        "min-image-size-zero": (["--min-image-size", "0"], "--min-image-size"),
        "weights-random-word": (["--weights", "random:seven"], "random:SEED"),
        "weights-missing": (["--weights", str(tmp / "none.h5")], "weights file not found"),
        "weights-suffix": (["--weights", str(text(tmp / "w.bin"))], "Keras reads weights"),
        "weights-not-hdf5": (["--weights", str(text(tmp / "w.h5"))], "is not an HDF5 file"),
        "tfds-unknown": (["--data", "tfds:no_such_dataset_xyz"], "unknown tensorflow-datasets"),
        "tfds-bad-syntax": (["--data", "tfds:beans?split=1"], "bad tfds source"),
        "tfds-empty-name": (["--data", "tfds:"], "bad tfds source"),
    }
    if name in parameters:
        extra, expected = parameters[name]
        return [*base, *extra], expected, work
    if name.startswith("weights-file-"):
        kind = name.removeprefix("weights-file-")
        if kind == "truncated":
            source = weights["keras3"]
            path = tmp / "truncated.weights.h5"
            path.write_bytes(source.read_bytes()[: source.stat().st_size // 2])
        else:
            path = weights[kind]
        return [*base, "--weights", str(path)], str(path), work
    raise KeyError(name)


CASES = [
    "workdir-is-a-file",
    "workdir-under-a-file",
    "workdir-runs-is-a-file",
    "workdir-models-is-a-file",
    "workdir-cache-is-a-file",
    "workdir-dangling-link",
    "workdir-link-to-a-file",
    "data-empty-folder",
    "data-one-class",
    "data-files-without-class-folders",
    "data-classes-without-images",
    "data-second-class-only-hidden-files",
    "data-empty-test-folder",
    "data-test-folder-without-images",
    "data-no-train-folder",
    "data-split-folders-no-test-share",
    "data-no-test-share",
    "demo-no-test-share",
    "data-missing",
    "data-is-a-file",
    "hidden-units-word",
    "hidden-units-not-int",
    "hidden-units-zero",
    "epochs-zero",
    "dropout-rate-one",
    "dropout-rate-negative",
    "image-size-small",
    "split-fractions-sum",
    "split-fractions-words",
    "split-fractions-two",
    "layer-unknown",
    "feature-dtype",
    "sweep-rate-one",
    "placement",
    "batch-size-zero",
    "promotion-metric",
    "unknown-option",
    "min-image-size-zero",
    "weights-random-word",
    "weights-missing",
    "weights-suffix",
    "weights-not-hdf5",
    "weights-file-other-model",
    "weights-file-legacy-other-model",
    "weights-file-keras3-conv-shape",
    "weights-file-legacy-shape",
    "weights-file-truncated",
    "tfds-unknown",
    "tfds-bad-syntax",
    "tfds-empty-name",
]


def snapshot(path: Path) -> dict[str, tuple] | None:
    """Every entry under `path` with its type, size and mtime (None if `path` is absent)."""
    if not (path.exists() or path.is_symlink()):
        return None
    if not path.is_dir():
        info = path.lstat()
        return {".": (info.st_mode, info.st_size, info.st_mtime_ns)}
    entries = {}
    for entry in [path, *sorted(path.rglob("*"))]:
        info = entry.lstat()
        entries[str(entry.relative_to(path))] = (info.st_mode, info.st_size, info.st_mtime_ns)
    return entries


def test_the_table_has_more_than_30_cases():
    assert len(CASES) == len(set(CASES)) >= 30


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_refused_in_one_line_writing_nothing(case, tmp_path, weights_files):
    options, expected, workdir = build_case(case, tmp_path, weights_files)
    before = snapshot(workdir)
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run(
        [str(CLI), "run", *options],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert done.returncode == 2, (done.stdout, done.stderr)
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    assert expected in lines[0]
    assert "Traceback" not in done.stderr + done.stdout
    assert snapshot(workdir) == before  # nothing written, nothing created
    assert "prefect" not in done.stderr.lower()  # refused before Prefect started
