"""The cache changes speed, not results: the seed's way and the cached way train the same head.

The seed's way: its own code (frozen InceptionV3 cut at mixed7, Flatten -> Dense(512) ->
Dense(1024) -> Dropout(0.2) -> Dense(1, sigmoid), RMSprop(1e-4), binary cross-entropy) in
`fit` on 32 real JPEGs decoded and preprocessed by `tasks.preprocess.image_dataset`. The
cached way: `fit_head` (the same training as `train_head`, see test_train.py) on the
backbone's float32 features of the same images, written to and read back from a Parquet cache
part. Same initial head weights (copied), same per-epoch order (`epoch_order`), same dropout
seed. Run twice:
  * the seed's model compiled with the pipeline's optimizer (`FusedRMSprop`, Keras's RMSprop
    with its update fused by XLA): only the cache differs between the two ways, and per-epoch
    losses and all final weights must be bit-identical;
  * the seed's model exactly as the seed compiles it, with Keras's own RMSprop: the two
    updates round differently in the last bit (FMA), so the test asserts rtol 1e-5 on losses
    and rtol 1e-5/atol 1e-7 on weights (measured here: losses within 2e-7 relative,
    weights within 1.2e-8).

What had to be true for that, measured while writing this test (2-core x86, TF 2.21 CPU):
  * Frozen backbone output does not depend on how it is computed: batch of 8 vs 32, eager
    call vs traced graph vs `predict`, and `training=True` vs `False` all gave max |diff| 0.0
    (frozen BatchNorm runs in inference mode even inside `fit`). So features cached in any
    batching equal what the full model computes inside `fit`.
  * The dropout masks must come from the same RNG stream. Keras 3 Dropout draws from its own
    `SeedGenerator`, state [seed, step] advanced once per training step, so equal seeds
    give equal masks in both models. The seed's `Dropout(0.2)` has no seed: Keras then
    draws one from Python's `random` when the layer is built, so it depends on everything
    built before it; here the seed's model gets build_head's explicit dropout seed
    (seed + 3). A different dropout seed changes losses by ~5e-4 relative (see the control
    below), far outside the tolerance, so the test would catch a mask mismatch.
  * Features must be float32: the default float16 cache changed losses by ~1e-5 relative and
    weights by up to ~5e-4 after 3 epochs (speed and size, not exactness, is what float16
    buys; it is a separate, documented trade-off).
  * No XLA for the model: Keras' `jit_compile="auto"` is off on CPU-only machines and with op
    determinism, and both ways run the same kernels on the same batch shapes, so there is no
    float reassociation to tolerate. Only the optimizer's elementwise update is compiled by
    XLA, the same way in both.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from inception_retrain.features import feature_parts as feature_cache
from inception_retrain.features.preprocess import image_dataset
from inception_retrain.plumbing.schemas import parquet_metadata
from inception_retrain.training.fit import deterministic, fit_head
from inception_retrain.training.head_spec import HeadSpec
from inception_retrain.training.training_data import epoch_order, load_split

N_IMAGES = 32
IMAGE_SIZE = 150
BATCH = 8
EPOCHS = 3
SEED = 5
DROPOUT = 0.2


def write_jpegs(folder, n: int) -> tuple[list[str], np.ndarray]:
    """Two classes of real JPEG files: horizontal vs vertical stripes, random colours/noise."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    paths, labels = [], []
    for i in range(n):
        label = i % 2
        period = rng.integers(6, 16)
        coords = np.arange(IMAGE_SIZE)
        wave = (np.sin(2 * np.pi * coords / period) > 0).astype(np.float32)
        stripes = wave[:, None] if label == 0 else wave[None, :]
        stripes = np.broadcast_to(stripes, (IMAGE_SIZE, IMAGE_SIZE))
        low, high = rng.uniform(0, 255, size=(2, 3))
        pixels = (
            low + stripes[..., None] * (high - low) + rng.normal(0, 8, (IMAGE_SIZE,) * 2 + (3,))
        )
        path = folder / f"{i:03d}.jpg"
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path, quality=90)
        paths.append(str(path))
        labels.append(label)
    return paths, np.array(labels, dtype=np.int32)


def seed_model(backbone, dropout_seed: int, optimizer: str = "keras"):
    """The seed's code: frozen InceptionV3 to mixed7, then its head, compiled as it is
    (`optimizer="pipeline"`: with the pipeline's fused RMSprop instead of Keras's)."""
    import keras
    from keras import layers

    from inception_retrain.training.fused_rmsprop import FusedRMSprop

    for layer in backbone.layers:
        layer.trainable = False
    x = layers.Flatten()(backbone.output)
    x = layers.Dense(512, activation="relu")(x)
    x = layers.Dense(1024, activation="relu")(x)
    x = layers.Dropout(DROPOUT, seed=dropout_seed)(x)
    x = layers.Dense(1, activation="sigmoid")(x)
    model = keras.Model(backbone.input, x)
    rmsprop = FusedRMSprop if optimizer == "pipeline" else keras.optimizers.RMSprop
    model.compile(
        optimizer=rmsprop(learning_rate=1e-4),
        loss="binary_crossentropy",
        metrics=["accuracy"],
    )
    return model


def head_layer_weights(model) -> list[np.ndarray]:
    """The trainable head's weights of the seed's model, in build_head's order."""
    dense = [layer for layer in model.layers if layer.__class__.__name__ == "Dense"]
    return [w for layer in dense for w in layer.get_weights()]


def train_seed_way(
    backbone, images, labels, dropout_seed: int, initial=None, epochs=EPOCHS, optimizer="keras"
):
    """Fit the seed's model epoch by epoch in `epoch_order`.

    Returns (per-epoch losses, initial head weights, trained head weights).
    """
    with deterministic(SEED):
        full = seed_model(backbone, dropout_seed, optimizer)
        if initial is not None:
            dense = [layer for layer in full.layers if layer.__class__.__name__ == "Dense"]
            for index, layer in enumerate(dense):
                layer.set_weights(initial[2 * index : 2 * index + 2])
        before = head_layer_weights(full)
        losses = []
        for epoch in range(epochs):
            order = epoch_order(len(labels), SEED, epoch)  # the order fit_head uses
            logs = full.fit(
                images[order],
                labels[order],
                batch_size=BATCH,
                epochs=epoch + 1,
                initial_epoch=epoch,
                shuffle=False,
                verbose=0,
            ).history
            losses.append(logs["loss"][-1])
    return losses, before, head_layer_weights(full)


@pytest.fixture(scope="module")
def images_and_features(tmp_path_factory):
    from inception_retrain.features.backbone import inference_function, load_backbone

    folder = tmp_path_factory.mktemp("equivalence")
    paths, labels = write_jpegs(folder / "images", N_IMAGES)
    images = np.concatenate([b.numpy() for b in image_dataset(paths, IMAGE_SIZE, BATCH)])
    backbone = load_backbone("random:1", "mixed7", IMAGE_SIZE)
    infer = inference_function(backbone)
    features = np.concatenate(
        [infer(images[i : i + BATCH]).numpy() for i in range(0, N_IMAGES, BATCH)]
    )
    return folder, labels, images, backbone, features


@pytest.mark.parametrize("seed_optimizer", ["pipeline", "keras"])
def test_training_on_cached_features_equals_the_seeds_end_to_end_training(
    images_and_features, seed_optimizer
):
    folder, labels, images, backbone, features = images_and_features

    # The cached way reads the real cache: a float32 Parquet part, joined with a manifest
    # (ids follow the image order, so load_split's content-id order is the image order).
    ids = [f"{i:064x}" for i in range(N_IMAGES)]
    cache_dir = folder / f"cache-{seed_optimizer}"
    schema = feature_cache.feature_schema(features.shape[1:], "float32", {})
    feature_cache.write_part(cache_dir, schema, ids, labels, ["train"] * N_IMAGES, features)
    manifest_path = write_manifest(folder / f"manifest-{seed_optimizer}.parquet", ids, labels)
    cached_ids, cached, cached_labels = load_split(cache_dir, manifest_path, "train")
    assert cached_ids == ids and np.array_equal(cached_labels, labels)
    assert np.array_equal(cached, features)  # float32 storage is lossless

    # The seed's way: the full model in fit on preprocessed images, backbone frozen.
    full_losses, initial, trained_full = train_seed_way(
        backbone,
        images,
        labels,
        dropout_seed=SEED + 3,  # build_head's dropout seed
        optimizer=seed_optimizer,
    )
    assert not backbone.trainable_weights

    spec = HeadSpec(hidden_units=(512, 1024), dropout_rate=DROPOUT, learning_rate=1e-4)
    head, result = fit_head(
        (cached, cached_labels),
        None,
        spec=spec,
        seed=SEED,
        epochs=EPOCHS,
        batch_size=BATCH,
        initial_weights=initial,
    )
    history = result.history

    weights = list(zip(head.get_weights(), trained_full, initial, strict=True))
    worst = max(float(np.abs(cached_way - seed_way).max()) for cached_way, seed_way, _ in weights)
    print(f"{seed_optimizer}: losses {history['loss']} vs {full_losses}, max |dw| {worst:.2e}")
    for _, seed_way, before in weights:
        assert not np.allclose(seed_way, before, rtol=1e-5, atol=1e-7)  # the head did train
    if seed_optimizer == "pipeline":  # the same update both ways: only the cache differs
        assert history["loss"] == full_losses
        for cached_way, seed_way, _ in weights:
            np.testing.assert_array_equal(cached_way, seed_way)
        return
    np.testing.assert_allclose(history["loss"], full_losses, rtol=1e-5, atol=1e-6)
    for cached_way, seed_way, _ in weights:
        np.testing.assert_allclose(cached_way, seed_way, rtol=1e-5, atol=1e-7)

    # Control: these tolerances do see a different dropout mask stream.
    other_losses, _, _ = train_seed_way(backbone, images, labels, SEED + 4, initial, epochs=1)
    print("first-epoch loss, cached way vs other dropout seed:", history["loss"][0], other_losses)
    assert not np.allclose(history["loss"][:1], other_losses, rtol=1e-5, atol=1e-6)


def write_manifest(path, ids, labels):
    import pyarrow as pa
    import pyarrow.parquet as pq

    n = len(ids)
    pq.write_table(
        pa.table(
            {
                "content_id": ids,
                "uri": [f"/images/{i}.jpg" for i in ids],
                "label": [f"c{label}" for label in labels],
                "label_index": pa.array(labels, pa.int32()),
                "split": ["train"] * n,
                "width": pa.array([IMAGE_SIZE] * n, pa.int32()),
                "height": pa.array([IMAGE_SIZE] * n, pa.int32()),
                "format": ["JPEG"] * n,
                "status": ["ok"] * n,
                "reason": [""] * n,
            }
        ).replace_schema_metadata(
            parquet_metadata("manifest", 2, {"class_names": ["c0", "c1"], "source": "test"})
        ),
        path,
    )
    return path
