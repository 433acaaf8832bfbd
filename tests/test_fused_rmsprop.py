"""FusedRMSprop is Keras's RMSprop: the same updates to float rounding, on any model."""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from inception_retrain.training.fused_rmsprop import FusedRMSprop


def train(optimizer, steps: int = 6, seed: int = 0, units: int = 48):
    """A small Dense model trained `steps` full-batch steps; returns (before, after) weights."""
    import keras

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(64, 30)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.float32)
    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [keras.Input((30,)), keras.layers.Dense(units, activation="relu"), keras.layers.Dense(1)]
    )
    model.compile(optimizer=optimizer, loss="mse")
    before = [w.copy() for w in model.get_weights()]
    model.fit(x, y, batch_size=64, epochs=steps, shuffle=False, verbose=0)
    return before, model.get_weights()


def test_updates_match_keras_rmsprop_to_rounding():
    import keras

    before, fused = train(FusedRMSprop(learning_rate=1e-2))
    _, stock = train(keras.optimizers.RMSprop(learning_rate=1e-2))
    for start, a, b in zip(before, fused, stock, strict=True):
        assert np.abs(a - start).max() > 1e-3  # it trained
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    # and the tolerance sees a different learning rate
    _, slower = train(keras.optimizers.RMSprop(learning_rate=9e-3))
    pairs = zip(fused, slower, strict=True)
    assert not all(np.allclose(a, b, rtol=1e-5, atol=1e-7) for a, b in pairs)


@pytest.mark.parametrize("options", [{"momentum": 0.9}, {"centered": True}])
def test_momentum_and_centered_use_keras_own_update(options):
    import keras

    _, fused = train(FusedRMSprop(learning_rate=1e-2, **options))
    _, stock = train(keras.optimizers.RMSprop(learning_rate=1e-2, **options))
    for a, b in zip(fused, stock, strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_second_model_of_the_same_shapes_trains_after_the_first_is_gone():
    """The compiled update is shared across optimizers; it must not hold the first model's
    variables (a traced function that captured them fails once they are deleted)."""
    first = train(FusedRMSprop(learning_rate=1e-2), seed=1)
    del first
    gc.collect()
    before, after = train(FusedRMSprop(learning_rate=1e-2), seed=2)
    assert all(np.abs(a - b).max() > 1e-3 for a, b in zip(before, after, strict=True))


RSS_SCRIPT = """
import gc, json
import numpy as np
from inception_retrain.training.head import build_head, compile_head

def rss_mib():
    status = open("/proc/self/status").read()
    return int(status.split("VmRSS:")[1].split()[0]) / 1024

x = np.ones((32, 7, 7, 768), np.float32)
y = np.zeros((32,), np.int32)
readings = []
for seed in range(5):
    model = compile_head(build_head((7, 7, 768), 2, seed=seed), 2, 1e-4)  # the seed's, 19.8 M
    model.fit(x, y, batch_size=32, epochs=1, verbose=0)
    del model
    gc.collect()
    readings.append(rss_mib())
print(json.dumps(readings))
"""


def test_training_head_after_head_does_not_keep_the_old_ones_in_memory():
    """The dropout sweep trains 21 heads in one process. Keras's own update route kept each
    trained head's weights and slots (about 160 MB for the seed's head) alive for good."""
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run(
        [sys.executable, "-c", RSS_SCRIPT], capture_output=True, text=True, env=env, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    readings = json.loads(done.stdout.strip().splitlines()[-1])
    print("RSS after each head (MiB):", readings)
    assert readings[-1] - readings[1] < 120  # 3 more heads; the leak added about 500 MB
