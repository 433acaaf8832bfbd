"""F1, the forward pass: which layers' outputs does Dropout change, and how?

`measure_forward` runs one model over EVERY layer (frozen backbone, then the trained head) on
a real image batch twice, with training=True and training=False, and compares each layer's
output: max |delta| and the fraction of values that differ. It also replays the mask each
Dropout drew (see `chain.py`) to check that zeros appear exactly where the mask says, and
that kept values are the inputs times exactly 1/(1 - rate).

`measure_fit_masks` trains a copy of the head for one real `fit` epoch on cached features and
records each Dropout's RNG state at the start of every step, then replays every step's mask:
a new mask per step and per sample (not one per epoch), dropped counts per sample against
Binomial(units, rate).

    forward = measure_forward(backbone, layers, images, cached_features)
    forward.touched               # e.g. ["dropout", "predictions"]
    masks = measure_fit_masks(layers, features, labels, n_classes, batch_size=32)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from inception_retrain.dropout import chain

EXCERPT_ROWS, EXCERPT_UNITS = 16, 64


@dataclass
class LayerChange:
    """One layer's output with training=True against training=False."""

    layer: str
    kind: str  # chain.KIND_BACKBONE or chain.KIND_HEAD
    shape: list[int]
    max_abs_delta: float
    fraction_changed: float
    changed: bool


@dataclass
class Scaling:
    """Kept, non-zero values of a Dropout's output against input x (1 / (1 - rate))."""

    expected_factor: float
    kept_values_checked: int
    ratio_min: float
    ratio_max: float
    max_relative_deviation: float
    fraction_bitwise_equal_to_float32_product: float


@dataclass
class DropoutCheck:
    """One Dropout's replayed mask against its real output."""

    layer: str
    rate: float
    units: int
    dropped_per_sample: list[int]
    dropped_fraction_mean: float
    already_zero_before_dropout_per_sample: list[int]
    mask_mismatches_on_active_units: int
    scaling: Scaling


@dataclass
class CacheAgreement:
    """The backbone loaded now against the run's cached features."""

    max_abs_delta: float
    max_abs_feature: float
    within_float16_rounding: bool


@dataclass
class Forward:
    """F1: every layer of the full model, training on against off."""

    images: int
    layers: list[LayerChange]
    n_layers: int
    n_backbone_layers: int
    touched: list[str]  # layers whose output changed, in model order
    first_dropout: str
    unchanged_before_first_dropout: bool
    changed_from_first_dropout_on: bool
    backbone_layers_changed: int
    dropouts: list[DropoutCheck]
    backbone_vs_cache: CacheAgreement | None = None

    @property
    def main(self) -> DropoutCheck:
        """The Dropout the question is about: the last one, right before the output layer."""
        return self.dropouts[-1]

    @property
    def head_layers(self) -> list[LayerChange]:
        return [row for row in self.layers if row.kind == chain.KIND_HEAD]

    def layers_from(self, name: str) -> list[str]:
        names = [row.layer for row in self.layers]
        return names[names.index(name) :]


@dataclass
class MaskHistogram:
    dropped: list[int]  # units dropped per sample (values seen)
    samples: list[int]  # how many samples dropped that many
    binomial_expected_samples: list[float]


@dataclass
class FitMasks:
    """Masks of the last Dropout over every step of one real fit epoch."""

    layer: str
    rate: float
    units: int
    steps: int
    samples: int
    distinct_step_masks: int
    consecutive_step_pairs: int
    identical_consecutive_steps: int
    fraction_changed_between_steps: float | None
    expected_fraction_changed_between_steps: float
    samples_sharing_a_mask_within_a_step: int
    dropped_mean: float
    dropped_std: float
    dropped_min: int
    dropped_max: int
    expected_mean: float
    expected_std: float
    excerpt: list[list[list[int]]]  # keep-masks of the first steps (samples x units)
    histogram: MaskHistogram

    @property
    def fresh_per_step(self) -> bool:
        return self.consecutive_step_pairs > 0 and self.identical_consecutive_steps == 0

    @property
    def fresh_per_sample(self) -> bool:
        return self.samples_sharing_a_mask_within_a_step == 0


def compare_outputs(train_outputs, infer_outputs, names, kinds) -> list[LayerChange]:
    """One row per layer: shape, max |delta| and fraction of values changed."""
    rows = []
    for name, kind, a, b in zip(names, kinds, train_outputs, infer_outputs, strict=True):
        a, b = np.asarray(a), np.asarray(b)
        differs = a != b
        rows.append(
            LayerChange(
                layer=name,
                kind=kind,
                shape=list(a.shape[1:]),
                max_abs_delta=float(np.max(np.abs(a - b))) if a.size else 0.0,
                fraction_changed=float(differs.mean()) if a.size else 0.0,
                changed=bool(differs.any()),
            )
        )
    return rows


def scaling_check(
    inputs: np.ndarray, outputs: np.ndarray, keep: np.ndarray, rate: float
) -> Scaling:
    """Kept, non-zero values: is output == input * (1/(1 - rate))?"""
    kept = keep & (inputs != 0)
    factor = 1.0 / (1.0 - rate)
    x = inputs[kept].astype(np.float64)
    y = outputs[kept].astype(np.float64)
    ratio = y / x if x.size else np.array([factor])
    exact = outputs[kept] == inputs[kept] * np.float32(factor)
    return Scaling(
        expected_factor=factor,
        kept_values_checked=int(x.size),
        ratio_min=float(ratio.min()),
        ratio_max=float(ratio.max()),
        max_relative_deviation=float(np.max(np.abs(ratio / factor - 1.0))),
        fraction_bitwise_equal_to_float32_product=float(exact.mean()) if x.size else 1.0,
    )


def _dropout_analysis(name, rate, inputs, outputs, keep) -> DropoutCheck:
    active = inputs != 0  # ReLU zeros show nothing: dropped or not, they stay 0
    units = int(np.prod(inputs.shape[1:]))
    mismatched = active & ((outputs != 0) != keep)
    dropped = (~keep).reshape(len(keep), -1).sum(axis=1)
    return DropoutCheck(
        layer=name,
        rate=float(rate),
        units=units,
        dropped_per_sample=dropped.astype(int).tolist(),
        dropped_fraction_mean=float(dropped.mean() / units),
        already_zero_before_dropout_per_sample=(~active)
        .reshape(len(keep), -1)
        .sum(axis=1)
        .astype(int)
        .tolist(),
        mask_mismatches_on_active_units=int(mismatched.sum()),
        scaling=scaling_check(inputs, outputs, keep, rate),
    )


def measure_forward(backbone, layers, images, cached_features=None) -> Forward:
    """Compare every layer's output with training=True vs training=False on `images`."""
    model, names, kinds = chain.full_model(backbone, layers)
    states = chain.snapshot(layers)
    train_out = [np.asarray(t) for t in model(images, training=True)]
    infer_out = [np.asarray(t) for t in model(images, training=False)]
    rows = compare_outputs(train_out, infer_out, names, kinds)

    head_start = kinds.index(chain.KIND_HEAD)
    dropouts = []
    for offset, layer in enumerate(layers):
        if chain.is_dropout(layer):
            index = head_start + offset
            keep = chain.keep_mask(layer, train_out[index - 1].shape, states[layer.name])
            dropouts.append(
                _dropout_analysis(
                    layer.name, layer.rate, train_out[index - 1], train_out[index], keep
                )
            )
    first = min(head_start + i for i, layer in enumerate(layers) if chain.is_dropout(layer))
    agreement = None
    if cached_features is not None:
        agreement = _cache_agreement(train_out[head_start - 1], cached_features)
    return Forward(
        images=int(len(images)),
        layers=rows,
        n_layers=len(rows),
        n_backbone_layers=head_start,
        touched=[row.layer for row in rows if row.changed],
        first_dropout=names[first],
        unchanged_before_first_dropout=not any(row.changed for row in rows[:first]),
        changed_from_first_dropout_on=all(row.changed for row in rows[first:]),
        backbone_layers_changed=sum(row.changed for row in rows[:head_start]),
        dropouts=dropouts,
        backbone_vs_cache=agreement,
    )


def _cache_agreement(features: np.ndarray, cached: np.ndarray) -> CacheAgreement:
    """Does the backbone loaded now reproduce the run's cached features (stored as float16)?"""
    features = features.reshape(cached.shape).astype(np.float32)
    delta = np.abs(features - cached)
    # float16 keeps 11 significant bits: rounding moves a value by at most |x| * 2**-11.
    bound = np.abs(features) * 2.0**-10 + 1e-6
    return CacheAgreement(
        max_abs_delta=float(delta.max()) if delta.size else 0.0,
        max_abs_feature=float(np.abs(features).max()) if features.size else 0.0,
        within_float16_rounding=bool(np.all(delta <= bound)),
    )


def mask_recorder(dropouts):
    """A Keras callback recording each Dropout's RNG state at the start of every step."""
    import keras

    class MaskRecorder(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.states: list[dict[str, np.ndarray]] = []

        def on_train_batch_begin(self, batch, logs=None):
            self.states.append(chain.snapshot(dropouts))

    return MaskRecorder()


def binomial_pmf(n: int, p: float, k: np.ndarray) -> np.ndarray:
    k = np.asarray(k, dtype=np.int64)
    log = (
        np.array([math.lgamma(n + 1) - math.lgamma(v + 1) - math.lgamma(n - v + 1) for v in k])
        + k * math.log(max(p, 1e-300))
        + (n - k) * math.log(max(1.0 - p, 1e-300))
    )
    return np.exp(log)


def measure_fit_masks(
    layers,
    features: np.ndarray,
    labels: np.ndarray,
    n_classes: int,
    batch_size: int,
    learning_rate: float = 1e-4,
    max_rows: int = 256,
    seed: int = 0,
) -> FitMasks:
    """Masks of every step of one real `fit` epoch of a copy of the head (last Dropout)."""
    import keras

    from inception_retrain.training.head import compile_head

    rows = min(len(features), max_rows)
    features, labels = features[:rows], labels[:rows]
    inputs = keras.Input(shape=features.shape[1:], name="features")
    outputs = chain.run_chain(layers, inputs, dropout_on=False)[-1]
    model = chain.copy_head(keras.Model(inputs, outputs))
    dropouts = chain.dropout_layers(chain.head_layers(model))
    layer = dropouts[-1]
    units = int(np.prod(layer.input.shape[1:]))
    compile_head(model, n_classes, learning_rate)
    recorder = mask_recorder(dropouts)
    keras.utils.set_random_seed(seed)
    model.fit(
        features,
        chain.loss_targets(labels, n_classes),
        batch_size=batch_size,
        epochs=1,
        shuffle=True,
        verbose=0,
        callbacks=[recorder],
    )
    sizes = [min(batch_size, rows - start) for start in range(0, rows, batch_size)]
    masks = [
        chain.keep_mask(layer, (size, units), state[layer.name])
        for size, state in zip(sizes, recorder.states, strict=True)
    ]
    return _mask_statistics(masks, layer.rate, units, layer.name)


def _mask_statistics(masks: list[np.ndarray], rate: float, units: int, name: str) -> FitMasks:
    dropped = np.concatenate([(~m).sum(axis=1) for m in masks])
    step_pairs = [(a, b) for a, b in zip(masks, masks[1:], strict=False) if a.shape == b.shape]
    changed_between_steps = [float((a != b).mean()) for a, b in step_pairs]
    identical_rows, row_pairs = 0, 0
    for mask in masks:
        unique = np.unique(mask, axis=0)
        identical_rows += len(mask) - len(unique)
        row_pairs += len(mask) * (len(mask) - 1) // 2
    values, counts = np.unique(dropped, return_counts=True)
    return FitMasks(
        layer=name,
        rate=float(rate),
        units=units,
        steps=len(masks),
        samples=int(dropped.size),
        distinct_step_masks=len({m.tobytes() for m in masks}),
        consecutive_step_pairs=len(step_pairs),
        identical_consecutive_steps=sum(v == 0.0 for v in changed_between_steps),
        fraction_changed_between_steps=float(np.mean(changed_between_steps))
        if changed_between_steps
        else None,
        expected_fraction_changed_between_steps=2 * rate * (1 - rate),
        samples_sharing_a_mask_within_a_step=int(identical_rows),
        dropped_mean=float(dropped.mean()),
        dropped_std=float(dropped.std()),
        dropped_min=int(dropped.min()),
        dropped_max=int(dropped.max()),
        expected_mean=units * rate,
        expected_std=math.sqrt(units * rate * (1 - rate)),
        # keep-masks of the first steps, first samples and units, for the report's picture
        excerpt=[m[:EXCERPT_ROWS, :EXCERPT_UNITS].astype(int).tolist() for m in masks[:3]],
        histogram=MaskHistogram(
            dropped=values.astype(int).tolist(),
            samples=counts.astype(int).tolist(),
            binomial_expected_samples=(binomial_pmf(units, rate, values) * dropped.size)
            .round(3)
            .tolist(),
        ),
    )
