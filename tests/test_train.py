"""Head training on a real Parquet feature cache (written with feature_parts.write_part)
and a real manifest.parquet: determinism, streaming vs in-memory, device selection, resuming,
3 classes, dropout placement, no validation split, early stopping.

Features are small synthetic maps (class-dependent means plus noise) so each training takes a
second or two; the real backbone is exercised in test_equivalence.py.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import keras
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from inception_retrain.config import RetrainConfig
from inception_retrain.data.manifest import Manifest, read_image_rows
from inception_retrain.features import feature_parts
from inception_retrain.features.backbone_spec import BackboneSpec
from inception_retrain.features.feature_cache import FeatureCache
from inception_retrain.plumbing.errors import DeviceError
from inception_retrain.plumbing.schemas import parquet_metadata, read_document
from inception_retrain.training.device import select_device
from inception_retrain.training.fit import fit, fit_head, new_head
from inception_retrain.training.head_spec import HeadSpec
from inception_retrain.training.train import train_head
from inception_retrain.training.training_data import (
    IN_MEMORY,
    STREAMING,
    load_split,
    load_training_data,
)

SMALL = (2, 2, 8)


def write_dataset(
    root: Path,
    counts: dict[str, int],
    *,
    feature_shape=SMALL,
    n_classes: int = 2,
    seed: int = 0,
    rows_per_part: int = 16,
    flip_validation: bool = False,
    dtype: str = "float32",
) -> tuple[Manifest, FeatureCache]:
    """A manifest.parquet plus a feature cache for `counts` rows per split.

    Class k's features are noise around a random pattern of its own, so a head can learn them.
    Parts are written in content-id order. `flip_validation` gives validation rows the
    features of another class (validation loss then rises as training fits the train set).
    """
    rng = np.random.default_rng(seed)
    patterns = rng.normal(size=(n_classes, *feature_shape)).astype(np.float32)
    rows = []
    for split, count in counts.items():
        for i in range(count):
            label = i % n_classes
            shown = (label + 1) % n_classes if flip_validation and split == "validation" else label
            values = patterns[shown] + rng.normal(scale=0.7, size=feature_shape)
            content_id = hashlib.sha256(f"{seed}-{split}-{i}".encode()).hexdigest()
            rows.append((content_id, label, split, values.astype(np.float32)))
    rows.sort(key=lambda row: row[0])
    class_names = [f"class{k}" for k in range(n_classes)]

    manifest_path = root / "manifest.parquet"
    manifest_table = pa.table(
        {
            "content_id": [r[0] for r in rows],
            "uri": [str(root / f"{r[0]}.jpg") for r in rows],
            "label": [class_names[r[1]] for r in rows],
            "label_index": pa.array([r[1] for r in rows], pa.int32()),
            "split": [r[2] for r in rows],
            "width": pa.array([150] * len(rows), pa.int32()),
            "height": pa.array([150] * len(rows), pa.int32()),
            "format": ["JPEG"] * len(rows),
            "status": ["ok"] * len(rows),
            "reason": [""] * len(rows),
        }
    ).replace_schema_metadata(
        parquet_metadata("manifest", 2, {"class_names": class_names, "source": "test"})
    )
    root.mkdir(parents=True, exist_ok=True)
    pq.write_table(manifest_table, manifest_path)

    cache_dir = root / "cache" / "fp"
    schema = feature_parts.feature_schema(feature_shape, dtype, {"test": True})
    for start in range(0, len(rows), rows_per_part):
        chunk = rows[start : start + rows_per_part]
        feature_parts.write_part(
            cache_dir,
            schema,
            [r[0] for r in chunk],
            [r[1] for r in chunk],
            [r[2] for r in chunk],
            np.stack([r[3] for r in chunk]),
        )
    fingerprint = hashlib.sha256(repr(sorted(r[:3] for r in rows)).encode()).hexdigest()
    manifest = Manifest(
        path=manifest_path, fingerprint=fingerprint, class_names=class_names, counts=counts
    )
    cache = FeatureCache(
        cache_dir=cache_dir,
        backbone=BackboneSpec(),
        backbone_fingerprint="fp",
        manifest_fingerprint=fingerprint,
        feature_shape=feature_shape,
        dtype=dtype,
        computed=len(rows),
        reused=0,
        report_path=root / "extract.json",
    )
    return manifest, cache


HEAD = HeadSpec(hidden_units=(16, 32), learning_rate=1e-3)


def config(tmp_path: Path, **overrides) -> RetrainConfig:
    values = dict(
        workdir=tmp_path, head=HEAD, epochs=4, batch_size=8, patience=0, device="cpu", seed=3
    )
    values.update(overrides)
    return RetrainConfig(**values)


def split_rows(manifest: Manifest, split: str) -> dict[str, int]:
    return read_image_rows(manifest.path, split).label_of()


def history_of(path: Path) -> dict:
    return read_document(path, "training-history", 1)


def head_weights(path: Path) -> list[np.ndarray]:
    return keras.saving.load_model(path).get_weights()


def tensorboard_scalars(folder: Path, tag: str) -> list[float]:
    """The values TensorBoard would plot for `tag`, read back from the event files."""
    import tensorflow as tf

    values = []
    for events in sorted(folder.glob("events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(str(events)):
            for value in event.summary.value:
                if value.tag == tag:
                    assert value.metadata.plugin_data.plugin_name == "scalars"
                    values.append(float(tf.make_ndarray(value.tensor)))
    return values


def assert_identical(first: list[np.ndarray], second: list[np.ndarray]) -> None:
    assert len(first) == len(second)
    for a, b in zip(first, second, strict=True):
        assert a.shape == b.shape and np.array_equal(a, b)


@pytest.fixture(scope="module")
def binary(tmp_path_factory):
    root = tmp_path_factory.mktemp("binary")
    return write_dataset(root, {"train": 48, "validation": 16, "test": 8})


def test_two_runs_with_one_seed_give_identical_weights(binary, tmp_path):
    manifest, cache = binary
    first = train_head(manifest, cache, config(tmp_path).training, tmp_path / "a")
    second = train_head(manifest, cache, config(tmp_path).training, tmp_path / "b")
    other_seed = train_head(manifest, cache, config(tmp_path, seed=4).training, tmp_path / "c")

    assert_identical(head_weights(first.head_path), head_weights(second.head_path))
    assert first.fingerprint == second.fingerprint != other_seed.fingerprint
    differing = head_weights(other_seed.head_path)
    assert not all(
        np.array_equal(a, b) for a, b in zip(head_weights(first.head_path), differing, strict=True)
    )

    history = history_of(first.history_path)
    repeated = history_of(second.history_path)
    for key in ("loss", "accuracy", "val_loss", "val_accuracy", "best_epoch"):
        assert history[key] == repeated[key]
    assert history["epochs_run"] == 4 and len(history["loss"]) == 4
    assert len(history["val_loss"]) == 4 and len(history["val_accuracy"]) == 4
    assert history["device"] == first.device == "cpu"
    assert history["data_mode"] == IN_MEMORY
    assert history["loss"][-1] < history["loss"][0]
    assert 1 <= history["best_epoch"] <= 4
    assert tensorboard_scalars(tmp_path / "a" / "tensorboard" / "train", "epoch_loss") == [
        pytest.approx(value, rel=1e-6) for value in history["loss"]
    ]
    validation_logs = tmp_path / "a" / "tensorboard" / "validation"
    assert len(tensorboard_scalars(validation_logs, "epoch_accuracy")) == 4
    assert not list((tmp_path / "a" / "checkpoints").glob("*"))  # cleared when complete


def test_fit_head_is_the_same_training_as_train_head(binary, tmp_path):
    """The sweep's array function reproduces the stage bit for bit from the same arrays."""
    manifest, cache = binary
    # fit_head trains on the arrays as given: the stage without its standardisation
    # (tests/test_standardize.py covers the standardised stage and its folding).
    spec = config(tmp_path, standardize_features=False).training
    trained = train_head(manifest, cache, spec, tmp_path / "run")
    _, x, y = load_split(cache.cache_dir, manifest.path, "train")
    _, xv, yv = load_split(cache.cache_dir, manifest.path, "validation")
    model, result = fit_head((x, y), (xv, yv), spec=HEAD, seed=3, epochs=4, batch_size=8)
    assert_identical(model.get_weights(), head_weights(trained.head_path))
    recorded = history_of(trained.history_path)
    history = result.history
    assert history["loss"] == recorded["loss"] and history["val_loss"] == recorded["val_loss"]


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_streaming_equals_in_memory_for_the_same_order(tmp_path, dtype):
    """Parts are stored in content-id order, so unshuffled streaming visits the rows in the
    in-memory order: the whole data path (Parquet decode, batching, float16 -> float32 in
    TF instead of NumPy) must not change a bit."""
    manifest, cache = write_dataset(tmp_path, {"train": 48, "validation": 16}, dtype=dtype)
    weights = {}
    for mode in (IN_MEMORY, STREAMING):
        data = load_training_data(
            cache.cache_dir,
            split_rows(manifest, "train"),
            split_rows(manifest, "validation"),
            batch_size=8,
            seed=0,
            memory_budget_mb=1,
            mode=mode,
            shuffle=False,
        )
        assert data.mode == mode
        keras.utils.set_random_seed(0)
        model = new_head(SMALL, 2, HEAD, seed=0)
        fit(model, data.train, data.validation, epochs=3, patience=0)
        weights[mode] = model.get_weights()
    assert_identical(weights[IN_MEMORY], weights[STREAMING])


def test_streaming_shuffle_is_bounded_complete_and_trains_as_well(tmp_path):
    """Over budget (1 MiB, 96 rows of 16 KiB) the data streams through a buffer smaller than
    the split; each epoch still visits every row exactly once, in a seed-determined order,
    and training reaches the in-memory run's quality."""
    manifest, cache = write_dataset(
        tmp_path / "data", {"train": 96, "validation": 32}, feature_shape=(8, 8, 64)
    )
    data = load_training_data(
        cache.cache_dir,
        split_rows(manifest, "train"),
        split_rows(manifest, "validation"),
        batch_size=8,
        seed=1,
        memory_budget_mb=1,
    )
    assert data.mode == STREAMING
    assert data.train.buffer_rows < data.train.n == 96
    _, x, _ = load_split(cache.cache_dir, manifest.path, "train")

    def epoch_rows(epoch: int) -> np.ndarray:
        data.train.epoch = epoch  # as fit.EpochOrder sets it
        return np.concatenate([b[0].numpy() for b in data.train.dataset()])

    epoch0, epoch1, again0 = epoch_rows(0), epoch_rows(1), epoch_rows(0)
    key = lambda rows: sorted(map(bytes, rows.reshape(len(rows), -1)))  # noqa: E731
    assert key(epoch0) == key(x) == key(epoch1)  # every row exactly once
    assert np.array_equal(epoch0, again0) and not np.array_equal(epoch0, epoch1)

    runs = {}
    for budget in (1, 64):
        cfg = config(tmp_path, memory_budget_mb=budget, epochs=5)
        trained = train_head(manifest, cache, cfg.training, tmp_path / f"run-{budget}")
        runs[budget] = history_of(trained.history_path)
    assert runs[1]["data_mode"] == STREAMING and runs[64]["data_mode"] == IN_MEMORY
    assert runs[1]["val_accuracy"][-1] >= 0.8 and runs[64]["val_accuracy"][-1] >= 0.8
    assert abs(runs[1]["val_loss"][-1] - runs[64]["val_loss"][-1]) < 0.05
    assert runs[1]["val_loss"][-1] < 0.5 * runs[1]["val_loss"][0] or runs[1]["loss"][-1] < 0.1


def test_device_gpu_without_a_gpu_is_a_clear_error(binary, tmp_path):
    with pytest.raises(DeviceError, match="no GPU"):
        select_device("gpu", mixed_precision=False)
    with pytest.raises(DeviceError, match="mixed precision needs a GPU"):
        select_device("cpu", mixed_precision=True)
    assert select_device("auto", mixed_precision=True) == "cpu"  # warns, trains in float32
    assert keras.mixed_precision.global_policy().name == "float32"

    manifest, cache = binary
    with pytest.raises(DeviceError):
        train_head(manifest, cache, config(tmp_path, device="gpu").training, tmp_path / "run")
    assert not (tmp_path / "run" / "head.keras").exists()


class Interrupt(Exception):
    pass


class InterruptAtEpoch(keras.callbacks.Callback):
    """Crash in the middle of an epoch, after the weights of that epoch have moved."""

    def __init__(self, epoch: int):
        super().__init__()
        self.epoch = epoch
        self._current_epoch = -1

    def on_train_batch_end(self, batch, logs=None):
        if self._current_epoch == self.epoch and batch == 2:
            raise Interrupt(f"killed in epoch {self.epoch}")

    def on_epoch_begin(self, epoch, logs=None):
        self._current_epoch = epoch


@pytest.mark.parametrize("patience", [0, 2])
def test_interrupted_training_resumes_and_ends_like_an_uninterrupted_one(tmp_path, patience):
    # flip_validation makes val_loss rise, so with patience early stopping is in play too
    manifest, cache = write_dataset(
        tmp_path / "data", {"train": 48, "validation": 16}, flip_validation=patience > 0
    )
    cfg = config(tmp_path, epochs=6, patience=patience)
    reference = train_head(manifest, cache, cfg.training, tmp_path / "reference")

    run_dir = tmp_path / "interrupted"
    with pytest.raises(Interrupt):
        train_head(
            manifest,
            cache,
            cfg.training,
            run_dir,
            callbacks=[InterruptAtEpoch(2)],
            checkpoint_every_s=0,
        )
    state = read_document(run_dir / "checkpoints" / "state.json", "training-checkpoint", 1)
    assert state["epochs_done"] == 2 and len(state["history"]["loss"]) == 2
    assert not (run_dir / "head.keras").exists()

    resumed = train_head(manifest, cache, cfg.training, run_dir)
    history = history_of(resumed.history_path)
    expected = history_of(reference.history_path)
    assert history["resumed_from_epoch"] == 2
    for key in ("loss", "accuracy", "val_loss", "val_accuracy", "best_epoch", "epochs_run"):
        assert history[key] == expected[key], key
    assert_identical(head_weights(resumed.head_path), head_weights(reference.head_path))
    if patience:
        assert expected["stopped_early"] and expected["epochs_run"] < 6


def test_early_stopping_restores_the_best_epoch(tmp_path):
    manifest, cache = write_dataset(
        tmp_path / "data", {"train": 48, "validation": 16}, flip_validation=True
    )
    spec = config(tmp_path, epochs=8, patience=2, standardize_features=False).training
    trained = train_head(manifest, cache, spec, tmp_path / "r")  # raw features, like fit_head
    history = history_of(trained.history_path)
    best = history["best_epoch"]
    assert history["stopped_early"] and history["epochs_run"] == best + 2
    assert history["val_loss"][best - 1] == min(history["val_loss"])

    _, x, y = load_split(cache.cache_dir, manifest.path, "train")
    model, _ = fit_head((x, y), None, spec=HEAD, seed=3, epochs=best, batch_size=8)
    assert_identical(model.get_weights(), head_weights(trained.head_path))


def test_three_classes_use_softmax_and_learn(tmp_path):
    manifest, cache = write_dataset(tmp_path / "data", {"train": 60, "validation": 30}, n_classes=3)
    trained = train_head(manifest, cache, config(tmp_path, epochs=6).training, tmp_path / "run")
    model = keras.saving.load_model(trained.head_path)
    assert model.output_shape == (None, 3)
    assert model.get_layer("predictions").activation.__name__ == "softmax"
    history = history_of(trained.history_path)
    assert history["head"]["loss"] == "sparse_categorical_crossentropy"
    _, xv, yv = load_split(cache.cache_dir, manifest.path, "validation")
    probabilities = model.predict(xv, verbose=0)
    assert np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    assert (probabilities.argmax(axis=1) == yv).mean() >= 0.8  # chance is 1/3


@pytest.mark.parametrize(("placement", "dropouts"), [("after_both", 2), ("none", 0)])
def test_dropout_placement_from_config(binary, tmp_path, placement, dropouts):
    manifest, cache = binary
    head = HEAD.with_dropout(0.5, placement)
    cfg = config(tmp_path, head=head, epochs=1)
    model = keras.saving.load_model(
        train_head(manifest, cache, cfg.training, tmp_path / "r").head_path
    )
    found = [layer for layer in model.layers if isinstance(layer, keras.layers.Dropout)]
    assert len(found) == dropouts
    assert all(layer.rate == 0.5 for layer in found)
    if placement == "after_both":
        assert [layer.name for layer in found] == ["dropout_1", "dropout"]


def test_a_split_without_validation_images_trains_and_says_so(tmp_path):
    manifest, cache = write_dataset(tmp_path / "data", {"train": 32, "test": 8})
    trained = train_head(manifest, cache, config(tmp_path, patience=2).training, tmp_path / "run")
    history = history_of(trained.history_path)
    assert history["n_validation"] == 0 and history["val_loss"] == []
    assert history["early_stopping"] is False and history["epochs_run"] == 4
    assert any("no validation images" in note for note in history["notes"])
    assert trained.head_path.is_file()


def test_the_prefect_task_retries_only_unexpected_failures():
    from prefect.states import Failed

    from inception_retrain.tasks.runtime import retry_unless_expected
    from inception_retrain.tasks.train import train_task

    assert train_task.name == "train" and train_task.timeout_seconds > 0
    assert train_task.retries == 1
    assert not retry_unless_expected(None, None, Failed(data=DeviceError("no GPU")))
    assert retry_unless_expected(None, None, Failed(data=RuntimeError("OOM")))


def test_under_mixed_precision_the_head_outputs_float32():
    from inception_retrain.training.head import build_head

    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = build_head(SMALL, 2, HeadSpec(hidden_units=(4, 8)))
        probabilities = model(np.ones((2, *SMALL), np.float32))
    finally:
        keras.mixed_precision.set_global_policy(previous)
    assert model.get_layer("hidden_2").compute_dtype == "float16"
    assert model.get_layer("predictions").compute_dtype == "float32"
    assert probabilities.dtype == "float32"
