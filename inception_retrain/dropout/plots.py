"""Figures of the dropout-impact measurements (`figures.new_figure`, PNG files).

Each function draws one measurement (the typed values of `measurements.py`) and returns a
matplotlib figure; `save_all` writes them as `dropout_<name>.png` in the run folder and
returns {name: path}. Missing data (no test errors, a config without seeds) draws an honest,
mostly empty panel rather than failing.

  * sweep_summary: per config, the cross-fitted accuracy with its Wilson interval against the
    majority class, the Brier score, and every training's train - held-out gap (degenerate
    trainings marked);
  * effect_<claim> (C1, C2, C4, F4, F5): the paired per-image differences of each deciding
    comparison (per training for a gap or an AUROC), and their estimate with the 95% and 90%
    intervals against the margin band;
  * sweep_comparisons: every deciding comparison in units of its margin, with both intervals;
  * gradient_changes: per variable, how much its gradient changes with dropout on and with
    rate 1, relative to dropout off (raw norms would hide it);
  * forward_layers, mask_steps, mask_histogram, mc_uncertainty, sweep_curves.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from inception_retrain.dropout.claims import Entry
from inception_retrain.dropout.effects import label
from inception_retrain.dropout.layer_table import layer_name, names
from inception_retrain.dropout.measurements import Measurements
from inception_retrain.evaluation.figures import new_figure, save_png

CLIP_PERCENT = 300.0  # taller bars are cut at this height and labelled with their value


def forward_layers(m: Measurements):
    """Fraction of values changed per layer, training=True vs False: every layer in model
    order (left), and the head with the last backbone layers by name (right)."""
    forward = m.forward
    fig, axes = new_figure(11.0, 3.6, columns=2)
    rows = forward.layers
    fractions = np.array([row.fraction_changed for row in rows])
    backbone = np.array([row.kind != "head" for row in rows])
    x = np.arange(len(rows))
    ax = axes[0]
    ax.scatter(x[backbone], fractions[backbone], s=6, color="0.55", label="frozen backbone layer")
    ax.scatter(x[~backbone], fractions[~backbone], s=26, color="tab:red", label="head layer")
    ax.set_xlabel("layer (model order)")
    ax.set_ylabel("fraction of values changed")
    ax.set_ylim(-0.05, 1.05)
    ax.set_title(f"all {len(rows)} layers, {forward.images} real images", fontsize=9)
    ax.legend(loc="upper left", fontsize=8)
    ax = axes[1]
    tail = rows[max(forward.n_backbone_layers - 3, 0) :]
    colours = ["0.55" if row.kind != "head" else "tab:red" for row in tail]
    ax.bar(range(len(tail)), [row.fraction_changed for row in tail], color=colours)
    for i, row in enumerate(tail):
        if not row.changed:
            ax.text(i, 0.01, "identical", rotation=90, ha="center", va="bottom", fontsize=7)
    names = [
        layer_name(m, row.layer, row.shape) if row.kind == "head" else row.layer for row in tail
    ]
    ax.set_xticks(range(len(tail)), names, rotation=35, fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_title("end of the backbone and the head", fontsize=9)
    return fig


def mask_histogram(m: Measurements):
    """Dropped units per sample against Binomial(units, rate)."""
    from inception_retrain.dropout.forward import binomial_pmf

    masks = m.fit_masks
    fig, axes = new_figure(6.0, 3.4)
    ax = axes[0]
    hist = masks.histogram
    ax.bar(
        hist.dropped,
        hist.samples,
        width=1.0,
        color="tab:blue",
        alpha=0.6,
        label=f"observed ({masks.samples} samples, {masks.steps} fit steps)",
    )
    units, rate, n = masks.units, masks.rate, masks.samples
    mean, std = units * rate, masks.expected_std
    k = np.arange(max(int(mean - 4 * std), 0), min(int(mean + 4 * std) + 2, units + 1))
    ax.plot(k, binomial_pmf(units, rate, k) * n, color="black", label=f"Binomial({units}, {rate})")
    ax.set_xlabel(f"units of {m.context.dense('hidden_2')}'s output dropped per sample")
    ax.set_ylabel("samples")
    ax.legend(fontsize=8)
    return fig


def mask_steps(m: Measurements):
    """Keep-masks of the first fit steps: rows are samples, columns units (white = kept)."""
    excerpts = m.fit_masks.excerpt
    fig, axes = new_figure(3.4 * len(excerpts), 2.8, columns=len(excerpts))
    for step, (ax, mask) in enumerate(zip(axes, excerpts, strict=True)):
        ax.imshow(np.array(mask), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(f"fit step {step + 1} (black = dropped)", fontsize=9)
        ax.set_xlabel(f"unit of {m.context.dense('hidden_2')}'s output")
    axes[0].set_ylabel("sample in the batch")
    return fig


def gradient_changes(m: Measurements):
    """Per variable, against dropout off: how much one fixed mask changes the gradient
    (||g - g_off|| / ||g_off||, left), and the gradient's size with rate 1 (||g|| / ||g_off||,
    right: a variable that gets no gradient is a bar of height 0)."""
    rows = m.backward.variables
    named = names(m)
    fig, axes = new_figure(11.0, 3.6, columns=2)
    x = np.arange(len(rows))
    labels = [named.get(r.variable, r.variable) for r in rows]
    ax = axes[0]
    ax.bar(x, [100 * row.relative_change for row in rows], color="tab:blue")
    ax.set_ylim(bottom=0)
    ax.set_ylabel("change vs dropout off (%)")
    ax.set_title("one fixed mask: how much each gradient changes (0% = unaffected)", fontsize=9)
    ax = axes[1]
    size = np.array(
        [
            100 * r.norm_rate_1 / r.norm_without_dropout if r.norm_without_dropout else 0.0
            for r in rows
        ]
    )
    top = min(max(float(size.max(initial=0.0)), 100.0), CLIP_PERCENT) * 1.1
    ax.bar(x, np.minimum(size, top), color="tab:orange")
    for i, value in enumerate(size):
        text = "0: none" if value == 0.0 else f"{value:.0f}%"
        text += " (bar cut)" if value > top else ""
        y = 0.0 if value == 0.0 else min(value, top)
        ax.text(i, y, text, ha="center", va="bottom", fontsize=7)
    ax.set_ylim(0, top * 1.08)
    ax.set_ylabel("gradient size vs dropout off (%)")
    ax.set_title("Dropout(rate=1): what is left of each gradient", fontsize=9)
    for ax in axes:
        ax.set_xticks(x, labels, rotation=30, fontsize=8)
    return fig


def mc_uncertainty(m: Measurements):
    """MC-dropout std of the predicted class's probability, correct vs misclassified."""
    inference = m.inference
    fig, axes = new_figure(6.0, 3.4)
    ax = axes[0]
    rows = inference.per_image
    correct = [row.std for row in rows if not row.error]
    wrong = [row.std for row in rows if row.error]
    bins = np.linspace(0, max([row.std for row in rows] + [1e-6]), 21)
    ax.hist(correct, bins=bins, alpha=0.6, label=f"correct ({len(correct)})")
    ax.hist(wrong, bins=bins, alpha=0.6, label=f"misclassified ({len(wrong)})")
    test = inference.uncertainty
    shown = "n/a" if test.auroc is None else test.interval.text()
    ax.set_title(
        f"{inference.passes} MC passes; AUROC(std -> error) = {shown}, "
        f"p = {'n/a' if test.p_value is None else f'{test.p_value:.3g}'}",
        fontsize=9,
    )
    ax.set_xlabel("std over passes of the predicted class's probability")
    ax.set_ylabel("images")
    ax.legend(fontsize=8)
    return fig


def sweep_curves(m: Measurements):
    """Per config, the held-out fold's accuracy by epoch: every training thin, their mean
    thick. A common plateau before the last epoch says the fixed budget was long enough."""
    s = m.sweep
    fig, axes = new_figure(3.3 * max(len(s.configs), 1), 3.2, columns=max(len(s.configs), 1))
    for ax, row in zip(axes, s.configs, strict=False):
        for run in s.runs(row):
            curve = run.history.get("val_accuracy", [])
            ax.plot(np.arange(1, len(curve) + 1), curve, lw=0.6, alpha=0.35, color="0.5")
        mean = row.curve_accuracy
        ax.plot(np.arange(1, len(mean) + 1), mean, lw=2, color="tab:blue", label="mean")
        ax.axhline(s.majority_accuracy, color="tab:red", ls="--", lw=1, label="majority class")
        ax.set_title(label(row, m.context.hidden_units), fontsize=7)
        ax.set_xlabel("epoch")
        ax.set_ylim(max(min(s.majority_accuracy, *mean, 1.0) - 0.1, 0.0), 1.02)
        if ax is not axes[0]:
            ax.sharey(axes[0])
    axes[0].set_ylabel("held-out fold accuracy")
    axes[0].legend(fontsize=7, loc="lower right")
    return fig


def short_label(row, units) -> str:
    """A config's name on two short lines, for tick labels."""
    if row.placement == "none":
        return "no dropout"
    where = f"Dense({units[1]})" if row.placement == "after_dense2" else "both Dense"
    return f"{row.rate:g} after\n{where}"


def sweep_summary(m: Measurements):
    """Per config: out-of-fold accuracy with its Wilson 95% interval (in [0, 1]) against the
    majority class, the mean Brier score, and each training's train - held-out gap."""
    s = m.sweep
    fig, axes = new_figure(12.0, 3.8, columns=3)
    names = [short_label(row, m.context.hidden_units) for row in s.configs]
    x = np.arange(len(s.configs))
    ax = axes[0]
    for i, row in enumerate(s.configs):
        ax.errorbar(
            i,
            row.accuracy,
            yerr=[[row.accuracy - row.accuracy_low], [row.accuracy_high - row.accuracy]],
            fmt="D",
            color="black" if row.beats_majority else "0.6",
            capsize=4,
        )
    ax.axhline(
        s.majority_accuracy,
        color="tab:red",
        ls="--",
        lw=1,
        label=f"majority class {s.majority_accuracy:.3f}",
    )
    ax.set_ylim(max(min(s.majority_accuracy, *(r.accuracy_low for r in s.configs)) - 0.05, 0), 1.0)
    ax.set_ylabel("out-of-fold accuracy")
    ax.set_title(f"{s.repeats}x{s.folds} cross-fit, {s.plan.n} images: 95% Wilson CI", fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    ax = axes[1]
    ax.bar(x, [row.brier for row in s.configs], color="tab:blue", alpha=0.7)
    ax.set_ylabel("mean Brier score (lower is better)")
    ax.set_title("out-of-fold Brier score", fontsize=9)
    ax = axes[2]
    for i, row in enumerate(s.configs):
        gaps = s.gaps(row).ravel()
        bad = np.array(
            [run.degenerate for run in sorted(s.runs(row), key=lambda r: (r.repeat, r.fold))]
        )
        offsets = np.linspace(-0.2, 0.2, max(len(gaps), 1))
        ax.scatter(i + offsets[~bad], gaps[~bad], s=10, color="0.4")
        ax.scatter(i + offsets[bad], gaps[bad], s=18, marker="x", color="tab:red")
        ax.plot([i - 0.3, i + 0.3], [row.gap, row.gap], color="black", lw=2)
    ax.axhline(0.0, color="0.6", lw=1)
    ax.set_ylabel("train - held-out accuracy")
    ax.set_title("overfitting gap per training (x = degenerate)", fontsize=9)
    for ax in axes:
        ax.set_xticks(x, names, fontsize=7)
    return fig


def _interval_panel(ax, c) -> None:
    """Estimate, 95% (thick) and 90% (thin) intervals against the margin band and 0."""
    ax.axvspan(-c.margin, c.margin, color="tab:green", alpha=0.15, label=f"±{c.margin:g} margin")
    ax.axvline(0.0, color="0.5", lw=1)
    if c.difference is not None and c.low is not None:
        ax.plot([c.low, c.high], [0, 0], color="black", lw=4, solid_capstyle="butt", label="95% CI")
        ax.plot([c.low90, c.high90], [0, 0], color="tab:orange", lw=1.5, label="90% CI")
        ax.plot(c.difference, 0, "o", color="black")
    span = max(2 * c.margin, abs(c.low or 0), abs(c.high or 0)) * 1.3
    ax.set_xlim(-span, span)
    ax.set_yticks([])
    ax.set_xlabel(c.unit, fontsize=8)
    ax.set_title(f"{c.verdict} ({c.design})", fontsize=9)
    ax.legend(fontsize=7, loc="upper left")


def effect_comparisons(m: Measurements, finding):
    """One effect claim: for each deciding comparison, the paired per-image differences (per
    training for a gap or an AUROC), and their estimate with its intervals and the margin."""
    rows = [c for c in finding.comparisons if c.deciding] or finding.comparisons[:1]
    fig, axes = new_figure(10.0, 0.4 + 2.6 * max(len(rows), 1), rows=max(len(rows), 1), columns=2)
    if not rows:
        axes[0].text(0.5, 0.5, finding.reason or "nothing compared", ha="center", fontsize=9)
        return fig
    for i, c in enumerate(rows):
        left, right = axes[2 * i], axes[2 * i + 1]
        values = np.asarray(c.per_image, dtype=float)
        unit = "image (mean over repeats)"
        if not len(values):
            values = np.asarray(c.per_fold, dtype=float).ravel()
            values = values[np.isfinite(values)]
            unit = "training (repeat, fold)"
        if len(values):
            bins = min(41, max(5, len(np.unique(values))))
            left.hist(values, bins=bins, color="0.5")
            left.set_yscale("symlog", linthresh=1.0)  # most images differ by about 0
            left.axvspan(-c.margin, c.margin, color="tab:green", alpha=0.15)
            left.axvline(0.0, color="0.3", lw=1)
            if c.difference is not None:
                left.axvline(c.difference, color="black", lw=2, label=f"mean {c.difference:+.4f}")
                left.legend(fontsize=7)
        left.set_title(f"B = {c.b}\nA = {c.a}", fontsize=8, loc="left")
        left.set_xlabel(f"{c.unit}: {len(values)} paired differences, one per {unit}", fontsize=8)
        left.set_ylabel("count")
        _interval_panel(right, c)
    return fig


def sweep_comparisons(m: Measurements, entries: list[Entry]):
    """Every deciding comparison: difference, 95% and 90% intervals, and the margin band."""
    rows = [(e.id, c) for e in entries for f in e.findings for c in f.comparisons if c.deciding]
    fig, axes = new_figure(8.0, 0.5 + 0.45 * max(len(rows), 1))
    ax = axes[0]
    for y, (claim, c) in enumerate(reversed(rows)):
        scale = c.margin or 1.0  # in margins, so every score shares the axis
        ax.fill_between([-1, 1], y - 0.35, y + 0.35, color="tab:green", alpha=0.12)
        if c.difference is not None and c.low is not None:
            ax.plot([c.low / scale, c.high / scale], [y, y], color="black", lw=2)
            ax.plot(
                [c.low90 / scale, c.high90 / scale], [y, y], color="tab:orange", lw=4, alpha=0.6
            )
            ax.plot(c.difference / scale, y, "o", color="black")
        ax.text(
            1.01,
            y,
            f"{claim}: {c.verdict}",
            transform=ax.get_yaxis_transform(),
            va="center",
            fontsize=7,
        )
    ax.set_yticks(
        range(len(rows)),
        [f"{c.b} vs {c.a}\n({c.metric}, ±{c.margin:g})" for _, c in reversed(rows)],
        fontsize=6,
    )
    ax.axvline(0.0, color="0.6", lw=1)
    ax.set_xlabel("B's advantage in margins (green: inside ±margin); black 95% CI, orange 90% CI")
    return fig


EFFECT_CLAIMS = ("C1", "C2", "C4", "F4", "F5")


def save_all(run_dir: Path, m: Measurements, entries: list[Entry]) -> dict[str, Path]:
    """Draw every figure and write `dropout_<name>.png`; returns {name: path}."""
    effects = {
        f"effect_{e.id}": finding
        for e in entries
        if e.id in EFFECT_CLAIMS
        for finding in e.findings
        if finding.kind == "effect"
    }
    drawings = {
        **{name: (lambda f=f: effect_comparisons(m, f)) for name, f in effects.items()},
        "forward_layers": lambda: forward_layers(m),
        "mask_histogram": lambda: mask_histogram(m),
        "mask_steps": lambda: mask_steps(m),
        "gradient_changes": lambda: gradient_changes(m),
        "mc_uncertainty": lambda: mc_uncertainty(m),
        "sweep_curves": lambda: sweep_curves(m),
        "sweep_summary": lambda: sweep_summary(m),
        "sweep_comparisons": lambda: sweep_comparisons(m, entries),
    }
    return {
        name: save_png(draw(), Path(run_dir) / f"dropout_{name}.png")
        for name, draw in drawings.items()
    }
