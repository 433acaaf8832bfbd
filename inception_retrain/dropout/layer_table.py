"""The dropout report's first screen: a one-sentence answer, then a row per layer (the frozen
backbone, then each head layer in order) and a column per question, each cell with its
measured number:

  * forward pass: does the layer's output change with training on vs off (F1)?
  * gradients: does its weights' gradient change with a fixed Dropout mask vs none (F2, and
    C6 inside a fine-tuned block)?
  * weights at inference: what of Dropout is left in the weights used at inference (F3:
    the frozen variables after real fit steps; F4: Dropout is the identity at inference)?

Layers are named as a person knows them (Flatten, Dense(512), Dropout(0.2), Dense(1)), never
by their Keras names.

    sentence = answer_sentence(m)
    rows = layer_rows(m)   # [{"layer": "Frozen backbone ...", "forward pass": ..., ...}]
"""

from __future__ import annotations

from inception_retrain.dropout.measurements import Measurements

COLUMNS = ("layer", "forward pass", "gradients", "weights at inference")


def _g(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}g}"


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.3g}%"


def layer_name(m: Measurements, layer: str, shape: list[int] | None = None) -> str:
    """How a person names a head layer: Flatten, Dense(512), Dropout(0.2), Dense(1)."""
    if layer.startswith("flatten"):
        return "Flatten"
    if layer.startswith("hidden"):
        return m.context.dense(layer)
    dropout = next((d for d in m.forward.dropouts if d.layer == layer), None)
    if dropout is not None:
        return f"Dropout({dropout.rate:g})"
    if layer.startswith("dropout"):
        return "Dropout"
    return f"Dense({shape[-1]})" if shape else "the output layer"


def names(m: Measurements) -> dict[str, str]:
    """Keras name -> person's name, for every head layer (and 'layer/kernel' variables)."""
    mapping = {r.layer: layer_name(m, r.layer, r.shape) for r in m.forward.head_layers}
    for v in m.backward.variables:
        layer, _, part = v.variable.partition("/")
        mapping[v.variable] = f"{mapping.get(layer, layer)} {part}".strip()
    return mapping


def _forward(m: Measurements, row) -> str:
    dropout = next((d for d in m.forward.dropouts if d.layer == row.layer), None)
    if dropout is not None:
        scale = dropout.scaling
        return (
            f"zeroes {_pct(dropout.dropped_fraction_mean)} of its {dropout.units} inputs per "
            f"sample, the rest ×{_g(scale.ratio_max, 5)} (expected ×{_g(scale.expected_factor)})"
        )
    if not row.changed:
        return f"unchanged (max |Δ| {_g(row.max_abs_delta)})"
    return f"changed: {_pct(row.fraction_changed)} of values, max |Δ| {_g(row.max_abs_delta)}"


def _gradients(m: Measurements, row) -> str:
    b = m.backward
    kernels = [v for v in b.variables if v.layer == row.layer and v.variable.endswith("kernel")]
    dropped = [d for d in b.dropped_columns if d.dropout == row.layer]
    if dropped:
        d = dropped[0]
        return (
            f"no weights; the {d.dropped_units_total} dropped units pass no gradient "
            f"(max |g| {_g(d.max_abs_gradient_dropped_kernel_columns)})"
        )
    if not kernels:
        if row.layer.startswith("flatten"):
            return (
                "no weights; the gradient it passes back to the features changes by "
                f"{_pct(b.feature_gradient.relative_change)}"
            )
        return "no weights"
    text = f"kernel's gradient changes by {_pct(kernels[0].relative_change)}"
    silent = [d for d in b.dropped_columns if d.dense == row.layer]
    if silent:
        text += (
            f"; a unit dropped for the whole sample gets 0 (max |g| "
            f"{_g(silent[0].max_abs_gradient_dropped_kernel_columns)})"
        )
    return text


def _inference(m: Measurements, row) -> str:
    identity = m.inference.dropout_identity
    if row.layer in identity:
        return f"none; the identity at inference (max |out − in| {_g(identity[row.layer])})"
    if row.layer.startswith("flatten"):
        return "no weights"
    largest = max(identity.values(), default=0.0)
    return (
        f"used as trained, not rescaled (Dropout's max |out − in| {_g(largest)}); two "
        f"inference passes differ by {_g(m.inference.deterministic_max_abs_delta)}"
    )


def _backbone(m: Measurements) -> dict:
    f, frozen, reach = m.forward, m.frozen, m.backbone_reach
    largest = max((r.max_abs_delta for r in f.layers if r.kind != "head"), default=0.0)
    gradients = (
        f"none: {m.backward.frozen.backbone_trainable_variables} trainable variables"
        if m.backward.frozen is not None
        else "none: frozen"
    )
    if reach is not None and reach.trainable:
        gradients = (
            f"{reach.changed} of {reach.trainable} trainable layers of "
            f"{', '.join(reach.blocks)} change (median {_pct(reach.median_relative_change)})"
        )
    kept = frozen.backbone_frozen_variables or frozen.backbone_variables
    name = "Fine-tuned backbone" if m.context.fine_tuned else "Frozen backbone"
    return {
        "layer": f"{name} (InceptionV3 to {m.context.layer}, {f.n_backbone_layers} layers)",
        "forward pass": f"{f.backbone_layers_changed} of {f.n_backbone_layers} layers change "
        f"(max |Δ| {_g(largest)})",
        "gradients": gradients,
        "weights at inference": f"{frozen.backbone_variables_changed} of {kept} frozen "
        f"variables changed by {frozen.fit_steps} fit steps",
    }


def layer_rows(m: Measurements) -> list[dict]:
    """The first screen's table: the backbone, then each head layer, in model order."""
    rows = [_backbone(m)]
    for row in m.forward.head_layers:
        rows.append(
            {
                "layer": layer_name(m, row.layer, row.shape),
                "forward pass": _forward(m, row),
                "gradients": _gradients(m, row),
                "weights at inference": _inference(m, row),
            }
        )
    return rows


def answer_sentence(m: Measurements) -> str:
    """The question answered in one sentence, with its numbers."""
    f, b, c = m.forward, m.backward, m.context
    main = f.main
    named = names(m)
    zeroed = [named.get(d.dense, c.dense(d.dense)) for d in b.dropped_columns]
    after = [
        named[r.layer] for r in f.head_layers if r.changed and r.layer not in named_dropouts(m)
    ]
    changes = [v.relative_change for v in b.variables if v.variable.endswith("kernel")]
    trained = [named[r.layer] for r in f.head_layers if r.layer.startswith("hidden")]
    trained += [named[r.layer] for r in f.head_layers[-1:]]
    backbone = (
        "the frozen backbone is untouched"
        if f.backbone_layers_changed == 0 and m.frozen.backbone_variables_changed == 0
        else f"{f.backbone_layers_changed} backbone layers change"
    )
    reach = m.backbone_reach
    if reach is not None and reach.trainable:
        backbone = (
            f"in the backbone only the fine-tuned {', '.join(reach.blocks)} is reached, through "
            f"its gradients ({reach.changed} of {reach.trainable} layers)"
        )
    spread = f" (by {_pct(min(changes))} to {_pct(max(changes))})" if changes else ""
    return (
        f"Only the head: in training, {named.get(main.layer, 'Dropout')} zeroes "
        f"{_pct(main.dropped_fraction_mean)} of {' and '.join(zeroed) or 'its inputs'}'s "
        f"outputs per sample, which changes the output of {' and '.join(after) or 'no layer'} "
        f"after it and the gradients of {', '.join(trained)}{spread}; {backbone}, and at "
        "inference Dropout is the identity "
        f"(max |out − in| {_g(max(m.inference.dropout_identity.values(), default=0.0))})."
    )


def named_dropouts(m: Measurements) -> set[str]:
    return {d.layer for d in m.forward.dropouts}
