"""Thousands of tiny heads trained at once in NumPy: the calibration's "real tiny trainings".

Each model is the product's head, shrunk: Flatten -> Dense(h1, relu) -> [Dropout p1] ->
Dense(h2, relu) -> [Dropout p2] -> Dense(1, sigmoid), trained the way Keras trains the real
one: binary cross-entropy on logits (Keras 3's route for a sigmoid output), RMSprop exactly as
`keras.optimizers.RMSprop` (rho 0.9, epsilon 1e-7 inside the square root, no momentum),
Glorot-uniform kernels and zero biases, batches of 32 in a fresh order every epoch with a
smaller last batch, inverted dropout (kept where uniform >= rate, scaled by 1 / (1 - rate)),
and the sweep's fixed epoch budget. Ported from the calibration study (docs/evidence.md),
where one model replayed through real Keras matched to 6e-8; vectorised so that a
calibration of 200 repetitions takes minutes, not days.

All M models advance together as stacked arrays (M, batch, features), each reading its own
training rows of its own feature set. Randomness is drawn per *slot*: models sharing a slot
share their initial weights, batch order and dropout uniforms, which is how the sweep pairs
configs (the same seed for every config of a repeat and fold). One `numpy.random.Generator`
drives everything, so a run is deterministic.

    result = train(Jobs(data, labels, train_rows, slots, p1, p2), X, Y, epochs=15, rng=rng)
    z = logits(result, X, data, held_out_rows)            # (M, n) inference-mode logits
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BATCH = 32
RMS_RHO = 0.9
RMS_EPS = 1e-7


@dataclass
class Jobs:
    """What to train: M models; `train` is (M, n) row indices, -1 padded at the end."""

    data: np.ndarray  # (M,) which feature set X[data[m]] the model reads
    labels: np.ndarray  # (M,) which label vector Y[labels[m]]
    train: np.ndarray  # (M, n_train) rows, -1 padded
    slot: np.ndarray  # (M,) randomness slot: equal slots, equal draws
    p1: np.ndarray  # (M,) dropout rate after the first hidden layer (0 = none)
    p2: np.ndarray  # (M,) dropout rate after the second hidden layer (0 = none)
    lr: float = 3e-3


def _glorot(rng, lead, fan_in, fan_out):
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, size=(*lead, fan_in, fan_out)).astype(np.float32)


def _forward(params, x, m1=None, m2=None):
    w1, b1, w2, b2, w3, b3 = params
    z1 = np.matmul(x, w1) + b1[:, None, :]
    a1 = np.maximum(z1, 0)
    if m1 is not None:
        a1 = a1 * m1
    z2 = np.matmul(a1, w2) + b2[:, None, :]
    a2 = np.maximum(z2, 0)
    if m2 is not None:
        a2 = a2 * m2
    return z1, a1, z2, a2, np.matmul(a2, w3)[..., 0] + b3[:, None]


def train(jobs: Jobs, X, Y, epochs: int, rng: np.random.Generator, hidden=(16, 32)) -> list:
    """Train every model for `epochs` epochs; returns its parameters, stacked over models."""
    m_count = len(jobs.data)
    features = X.shape[-1]
    h1, h2 = hidden
    slots, slot_of = np.unique(jobs.slot, return_inverse=True)
    n_valid = (jobs.train >= 0).sum(1)
    per_slot = np.zeros(len(slots), int)
    per_slot[slot_of] = n_valid
    if not np.all(per_slot[slot_of] == n_valid):
        raise ValueError("models of one slot need equal training sizes")
    width = jobs.train.shape[1]
    params = [
        _glorot(rng, (len(slots),), features, h1)[slot_of],
        np.zeros((m_count, h1), np.float32),
        _glorot(rng, (len(slots),), h1, h2)[slot_of],
        np.zeros((m_count, h2), np.float32),
        _glorot(rng, (len(slots),), h2, 1)[slot_of],
        np.zeros(m_count, np.float32),
    ]
    velocity = [np.zeros_like(p) for p in params]
    p1, p2 = jobs.p1.astype(np.float32), jobs.p2.astype(np.float32)
    keep1, keep2 = (1 / (1 - p1)).astype(np.float32), (1 / (1 - p2)).astype(np.float32)
    rows = np.arange(m_count)[:, None]
    padding = np.arange(width)[None, :] >= per_slot[:, None]
    for _ in range(epochs):
        keys = rng.random((len(slots), width))
        keys[padding] = np.inf
        order = np.argsort(keys, axis=1, kind="stable")
        order[padding] = -1
        order = order[slot_of]
        for start in range(0, width, BATCH):
            position = order[:, start : start + BATCH]
            ok = position >= 0
            index = np.where(ok, jobs.train[rows, np.maximum(position, 0)], 0)
            ok &= index >= 0
            xb = X[jobs.data[:, None], index]
            yb = Y[jobs.labels[:, None], index].astype(np.float32)
            size = position.shape[1]
            m1 = m2 = None
            if np.any(p1 > 0):
                u = rng.random((len(slots), size, h1), dtype=np.float32)[slot_of]
                m1 = (u >= p1[:, None, None]) * keep1[:, None, None]
            if np.any(p2 > 0):
                u = rng.random((len(slots), size, h2), dtype=np.float32)[slot_of]
                m2 = (u >= p2[:, None, None]) * keep2[:, None, None]
            z1, a1, z2, a2, z3 = _forward(params, xb, m1, m2)
            weight = ok / np.maximum(ok.sum(1, keepdims=True), 1)
            g3 = ((1 / (1 + np.exp(-z3)) - yb) * weight).astype(np.float32)
            da2 = g3[:, :, None] * params[4][:, None, :, 0]
            if m2 is not None:
                da2 = da2 * m2
            dz2 = da2 * (z2 > 0)
            da1 = np.matmul(dz2, params[2].transpose(0, 2, 1))
            if m1 is not None:
                da1 = da1 * m1
            dz1 = da1 * (z1 > 0)
            grads = [
                np.matmul(xb.transpose(0, 2, 1), dz1),
                dz1.sum(1),
                np.matmul(a1.transpose(0, 2, 1), dz2),
                dz2.sum(1),
                np.einsum("mbh,mb->mh", a2, g3)[..., None],
                g3.sum(1),
            ]
            for p, v, g in zip(params, velocity, grads, strict=True):
                v *= RMS_RHO
                v += (1 - RMS_RHO) * g * g
                p -= jobs.lr * g / np.sqrt(v + RMS_EPS)
    return params


def logits(params, X, data, index, chunk: int = 2048) -> np.ndarray:
    """Inference-mode logits (M, n) of each model on its own rows X[data[m], index[m]]."""
    out = np.empty(index.shape, np.float32)
    for start in range(0, len(data), chunk):
        end = min(len(data), start + chunk)
        part = [p[start:end] for p in params]
        out[start:end] = _forward(part, X[data[start:end, None], np.maximum(index[start:end], 0)])[
            -1
        ]
    return out


def logits_shared(params, population, which, chunk: int = 256) -> np.ndarray:
    """Inference-mode logits (M, n) of each model on a shared set population[which[m]]."""
    out = np.empty((len(which), population.shape[1]), np.float32)
    for start in range(0, len(which), chunk):
        end = min(len(which), start + chunk)
        part = [p[start:end] for p in params]
        out[start:end] = _forward(part, population[which[start:end]])[-1]
    return out


def probabilities(z: np.ndarray) -> np.ndarray:
    """(..., 2) class probabilities of sigmoid logits, as the product's head gives them."""
    p = 1 / (1 + np.exp(-z.astype(np.float64)))
    return np.stack([1 - p, p], axis=-1)
