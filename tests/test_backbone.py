"""The frozen backbone: weights sources, the training-flag premise, errors, fingerprint."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from inception_retrain.features.backbone import (
    BACKBONE_LAYERS,
    UnknownLayerError,
    backbone_fingerprint,
    load_backbone,
    weights_digest,
)
from inception_retrain.features.weights import parse_weights
from inception_retrain.plumbing.errors import WeightsError


def _images(n: int, size: int = 150, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, (n, size, size, 3)).astype(np.float32)


def test_frozen_backbone_ignores_the_training_flag():
    """The premise of caching: frozen BatchNorm runs in inference mode even with training=True."""
    backbone = load_backbone("random:0", "mixed7", 150)
    assert backbone.output_shape == (None, 7, 7, 768)
    assert all(not layer.trainable for layer in backbone.layers)
    assert not backbone.trainable_weights
    x = _images(4)
    inference = backbone(x, training=False).numpy()
    training = backbone(x, training=True).numpy()
    assert np.abs(training - inference).max() == 0.0
    assert np.abs(inference).max() > 0  # not a degenerate all-zero output

    # The control: unfrozen, BatchNorm uses batch statistics and the output changes.
    for layer in backbone.layers:
        layer.trainable = True
    unfrozen = backbone(x, training=True).numpy()
    assert np.abs(unfrozen - inference).max() > 1e-3


def test_random_weights_are_bit_identical_across_processes():
    here = weights_digest(load_backbone("random:3", "mixed2", 75))
    code = (
        "from inception_retrain.features.backbone import load_backbone, weights_digest;"
        "print(weights_digest(load_backbone('random:3', 'mixed2', 75)))"
    )
    there = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300
    ).stdout.split()[-1]
    assert there == here
    assert weights_digest(load_backbone("random:4", "mixed2", 75)) != here


def test_weights_file_loads_the_saved_weights(random_weights_file):
    """The seed's load_weights(path) path: the file holds random:7, so contents must match."""
    from_file = load_backbone(str(random_weights_file), "mixed7", 150)
    from_seed = load_backbone("random:7", "mixed7", 150)
    assert weights_digest(from_file) == weights_digest(from_seed)
    assert weights_digest(from_file) != weights_digest(load_backbone("random:0", "mixed7", 150))
    fp_file, inputs_file = backbone_fingerprint(from_file, str(random_weights_file), "mixed7", 150)
    fp_seed, inputs_seed = backbone_fingerprint(from_seed, "random:7", "mixed7", 150)
    assert inputs_file["weights_sha256"] == inputs_seed["weights_sha256"]
    assert (inputs_file["weights_source"], inputs_seed["weights_source"]) == ("file", "random")
    assert fp_file != fp_seed


def test_legacy_keras2_h5_file_loads(tmp_path):
    """Keras's own ImageNet file is a Keras 2 `.h5`; the same loader must read that format."""
    import h5py
    from keras.src.legacy.saving import legacy_h5_format

    from inception_retrain.features.backbone import _full_model

    path = tmp_path / "legacy_notop.h5"
    with h5py.File(path, "w") as handle:
        legacy_h5_format.save_weights_to_hdf5_group(handle, _full_model("random:5", 150))
    loaded = load_backbone(str(path), "mixed7", 150)
    assert weights_digest(loaded) == weights_digest(load_backbone("random:5", "mixed7", 150))


@pytest.mark.parametrize("case", ["missing", "garbage", "truncated", "other-model", "legacy-other"])
def test_bad_weights_files_are_clear_errors(tmp_path, random_weights_file, case):
    import h5py
    import keras
    from keras.src.legacy.saving import legacy_h5_format

    path = tmp_path / "bad.weights.h5"
    if case == "garbage":
        path.write_bytes(b"definitely not an HDF5 file\n" * 40)
    elif case == "truncated":
        data = random_weights_file.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif case == "other-model":
        small = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
        small.save_weights(str(path))
    elif case == "legacy-other":
        path = tmp_path / "bad.h5"
        small = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
        with h5py.File(path, "w") as handle:
            legacy_h5_format.save_weights_to_hdf5_group(handle, small)
    with pytest.raises(WeightsError) as error:
        load_backbone(str(path), "mixed7", 150)
    message = str(error.value)
    assert str(path) in message
    assert "\n" not in message
    expected = "not found" if case == "missing" else "does not fit InceptionV3"
    assert expected in message


def test_unknown_layer_lists_the_valid_ones():
    with pytest.raises(UnknownLayerError) as error:
        load_backbone("random:0", "mixed77", 150)
    message = str(error.value)
    assert "mixed77" in message
    assert all(name in message for name in BACKBONE_LAYERS)


def test_fingerprint_covers_its_inputs():
    backbone = load_backbone("random:0", "mixed2", 75)
    base, inputs = backbone_fingerprint(backbone, "random:0", "mixed2", 75)
    assert backbone_fingerprint(backbone, "random:0", "mixed2", 75)[0] == base  # deterministic
    assert inputs["layer"] == "mixed2" and inputs["image_size"] == 75
    assert inputs["feature_shape"] == list(backbone.output_shape[1:])
    changed = [
        backbone_fingerprint(backbone, "random:0", "mixed2", 75, "float32")[0],
        backbone_fingerprint(backbone, "random:0", "mixed3", 75)[0],
        backbone_fingerprint(backbone, "random:0", "mixed2", 76)[0],
        backbone_fingerprint(backbone, "imagenet", "mixed2", 75)[0],
    ]
    assert base not in changed and len(set(changed)) == len(changed)
    # Content, not the seed label: other weights, same label -> other fingerprint.
    other = load_backbone("random:1", "mixed2", 75)
    assert backbone_fingerprint(other, "random:0", "mixed2", 75)[0] != base


def test_random_weights_are_labelled_random():
    def describe(weights: str) -> str:
        return parse_weights(weights).description

    assert "RANDOM" in describe("random:3") and "3" in describe("random:3")
    assert "RANDOM" in describe("random")
    assert "RANDOM" not in describe("imagenet")
    assert "RANDOM" not in describe("/models/w.h5")
