"""Standardised features (`training.standardize`): the statistics, the fold into Dense(512),
and the training stage's head trained on standardised features but saved as the plain one.
"""

from __future__ import annotations

import numpy as np
import pytest
from synthetic_features import splits_of, write_cache

from inception_retrain.training.fit import fit_head, new_head
from inception_retrain.training.head import load_head, save_head
from inception_retrain.training.head_spec import HeadSpec
from inception_retrain.training.standardize import MAX_GAIN, feature_statistics, fold_into_dense


def common_mode(rng, n, shape=(3, 3, 8)):
    """Non-negative, mostly shared features, like the random-weight mixed7 ones."""
    offset = rng.normal(size=shape) + 1.5
    return np.maximum(offset + 0.3 * rng.normal(size=(n, *shape)), 0).astype(np.float32)


def test_statistics_per_feature_streamed_or_whole():
    rng = np.random.default_rng(0)
    x = common_mode(rng, 700)
    x[:, 0, 0, 0] = 2.5  # constant over the images: scale 0, so it contributes nothing
    mean, scale = feature_statistics(x)
    np.testing.assert_allclose(mean, x.mean(axis=0), rtol=1e-6, atol=1e-6)
    sd = x.std(axis=0)
    spread = np.sqrt((sd[sd > 0] ** 2).mean())  # one common spread: the features' RMS sd
    # a feature that barely varies is scaled up at most MAX_GAIN times (two of them here)
    floored = np.maximum(sd, spread / MAX_GAIN)
    assert ((sd > 0) & (sd < spread / MAX_GAIN)).sum() == 2
    np.testing.assert_allclose(scale[sd > 0], spread / floored[sd > 0], rtol=1e-4)
    assert scale[0, 0, 0] == 0.0 and scale.max() <= MAX_GAIN * (1 + 1e-6)
    standardised = (x - mean) * scale
    np.testing.assert_allclose(
        standardised.std(axis=0)[sd > 0], np.minimum(spread, MAX_GAIN * sd)[sd > 0], rtol=1e-3
    )
    streamed = feature_statistics(iter(np.array_split(x.astype(np.float16), 7)))
    np.testing.assert_allclose(
        streamed[0], x.astype(np.float16).astype(np.float32).mean(0), atol=1e-5
    )
    rows = np.arange(0, 700, 3)
    np.testing.assert_allclose(
        feature_statistics(x, rows)[0], x[rows].mean(0), rtol=1e-6, atol=1e-6
    )
    with pytest.raises(ValueError):
        feature_statistics(iter([]))


def test_the_fold_gives_the_plain_head_the_same_function(tmp_path):
    rng = np.random.default_rng(1)
    x = common_mode(rng, 64)
    statistics = feature_statistics(x)
    spec = HeadSpec(hidden_units=(16, 8))
    model = new_head(x.shape[1:], 2, spec, seed=0, statistics=statistics)
    for weight in model.trainable_weights:  # not the initial weights: biases non-zero too
        weight.assign(weight.numpy() + 0.1 * rng.normal(size=weight.shape).astype(np.float32))
    save_head(model, spec, 2, 0, tmp_path / "head.keras")
    saved = load_head(tmp_path / "head.keras")
    assert [layer.name for layer in saved.layers] == [
        "features",
        "flatten",
        "hidden_1",
        "hidden_2",
        "dropout",
        "predictions",
    ]  # the seed's head: no standardisation layer
    np.testing.assert_allclose(saved(x).numpy(), model(x).numpy(), rtol=1e-4, atol=1e-6)
    kernel, bias = rng.normal(size=(4, 3)), rng.normal(size=3)
    mean, scale = np.array([1.0, 2.0, 0.5, 3.0]), np.array([2.0, 0.0, 1.0, 0.5])
    folded_kernel, folded_bias = fold_into_dense(kernel, bias, mean, scale)
    raw = rng.normal(size=(5, 4))
    np.testing.assert_allclose(
        raw @ folded_kernel + folded_bias, ((raw - mean) * scale) @ kernel + bias, rtol=1e-5
    )


def test_the_training_stage_trains_on_standardised_features_and_saves_the_plain_head(tmp_path):
    from inception_retrain.data.manifest import open_manifest
    from inception_retrain.features.backbone_spec import BackboneSpec
    from inception_retrain.features.feature_cache import FeatureCache
    from inception_retrain.training.train import train_head
    from inception_retrain.training.training_data import load_split
    from inception_retrain.training.training_spec import TrainingSpec

    rng = np.random.default_rng(2)
    x = common_mode(rng, 120)
    y = (x[:, 0, 0, :2].sum(axis=1) > np.median(x[:, 0, 0, :2].sum(axis=1))).astype(int)
    cache_dir, manifest_path = write_cache(tmp_path / "work", x, y, splits_of(80, 20, 20))
    manifest = open_manifest(manifest_path)
    cache = FeatureCache(
        cache_dir=cache_dir,
        backbone=BackboneSpec(weights="random:0", layer="mixed7", image_size=75),
        backbone_fingerprint="0123456789abcdef",
        manifest_fingerprint=manifest.fingerprint,
        feature_shape=x.shape[1:],
        dtype="float32",
        computed=0,
        reused=len(y),
        report_path=tmp_path / "extract.json",
    )
    head_spec = HeadSpec(hidden_units=(16, 16), learning_rate=1e-3)
    spec = TrainingSpec(head=head_spec, epochs=2, batch_size=16, patience=0, standardize=True)
    trained = train_head(manifest, cache, spec, tmp_path / "run")
    saved = load_head(trained.head_path)
    assert "standardize" not in [layer.name for layer in saved.layers]

    splits = {s: load_split(cache_dir, manifest_path, s)[1:] for s in ("train", "validation")}
    mean, scale = feature_statistics(splits["train"][0])
    model, _ = fit_head(
        ((splits["train"][0] - mean) * scale, splits["train"][1]),
        ((splits["validation"][0] - mean) * scale, splits["validation"][1]),
        spec=head_spec,
        seed=0,
        epochs=2,
        batch_size=16,
        patience=0,
    )
    raw = splits["validation"][0]
    np.testing.assert_allclose(
        saved(raw).numpy(), model((raw - mean) * scale).numpy(), rtol=1e-3, atol=1e-5
    )
