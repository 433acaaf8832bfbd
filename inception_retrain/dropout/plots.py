"""Figures of the dropout-impact measurements (`figures.new_figure`, PNG files).

Each function draws one measurement (the typed values of `measurements.py`) and returns a
matplotlib figure; `save_all` writes them as `dropout_<name>.png` in the run folder and
returns {name: path}. Missing data (no test errors, a config without seeds) draws an honest,
mostly empty panel rather than failing.

  * sweep_summary: per config, every seed's accuracy as a point, the mean with its 95% t
    interval, the majority-class line, degenerate trainings marked; validation and test
    share one axis;
  * sweep_comparisons: every paired comparison's mean difference and 95% interval against
    its threshold (the one rule: above supports, below refutes, across is inconclusive);
  * gradient_changes: per variable, how much its gradient changes with dropout on and with
    rate 1, relative to dropout off (raw norms would hide it);
  * forward_layers, mask_steps, mask_histogram, mc_uncertainty, sweep_curves.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from inception_retrain.dropout.claims import Entry
from inception_retrain.dropout.effects import label
from inception_retrain.dropout.measurements import Measurements
from inception_retrain.evaluation.figures import new_figure, save_png


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
    names = [m.context.dense(row.layer) for row in tail]
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
    """Per variable: ||g - g_off|| / ||g_off|| with dropout on (a fixed mask) and with rate 1."""
    rows = m.backward.variables
    fig, axes = new_figure(7.5, 3.6)
    ax = axes[0]
    x = np.arange(len(rows))
    on = [100 * row.relative_change for row in rows]
    one = [100 * row.relative_change_rate_1 for row in rows]
    ax.bar(x - 0.2, on, width=0.4, label="dropout on (one fixed mask)", color="tab:blue")
    ax.bar(x + 0.2, one, width=0.4, label="Dropout(rate=1)", color="tab:orange")
    for i, row in enumerate(rows):
        if row.norm_rate_1 == 0.0:
            ax.text(i + 0.2, one[i], "all 0", ha="center", va="bottom", fontsize=7)
    names = [f"{m.context.dense(r.layer)}/{r.variable.split('/')[-1]}" for r in rows]
    ax.set_xticks(x, names, rotation=30, fontsize=8)
    ax.set_ylabel("gradient change vs dropout off (%)")
    ax.set_title("how much each gradient changes with dropout (0% = unaffected)", fontsize=9)
    ax.legend(fontsize=8)
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
    """Per config, every seed's validation accuracy by epoch; the restored best epoch dotted."""
    configs = m.sweep.configs
    fig, axes = new_figure(3.3 * max(len(configs), 1), 3.2, columns=max(len(configs), 1))
    for ax, row in zip(axes, configs, strict=False):
        for run in row.runs:
            curve = run.history.get("val_accuracy") or run.history.get("accuracy", [])
            epochs = np.arange(1, len(curve) + 1)
            (line,) = ax.plot(epochs, curve, lw=1.2, alpha=0.8, label=f"seed {run.seed}")
            if curve:
                ax.plot(
                    [run.best_epoch], [curve[run.best_epoch - 1]], "o", color=line.get_color(), ms=4
                )
        ax.set_title(label(row, m.context.hidden_units), fontsize=7)
        ax.set_xlabel("epoch (dot: best, restored)")
        if ax is not axes[0]:
            ax.sharey(axes[0])
    axes[0].set_ylabel(f"{m.sweep.selection_split} accuracy")
    axes[0].legend(fontsize=7)
    return fig


def short_label(row, units) -> str:
    """A config's name on two short lines, for tick labels."""
    if row.placement == "none":
        return "no dropout"
    where = f"Dense({units[1]})" if row.placement == "after_dense2" else "both Dense"
    return f"{row.rate:g} after\n{where}"


def sweep_summary(m: Measurements):
    """Accuracy per config: seeds as points, mean and 95% t interval, majority-class line;
    validation and test on one shared axis; the train - test gap beside them."""
    s = m.sweep
    splits = list(dict.fromkeys([s.selection_split, s.evaluation_split]))
    fig, axes = new_figure(4.0 * (len(splits) + 1), 3.8, columns=len(splits) + 1)
    names = [short_label(row, m.context.hidden_units) for row in s.configs]
    lowest = min(
        [
            *s.majority_accuracy.values(),
            *(
                r.scores[k].accuracy
                for row in s.configs
                for r in row.runs
                for k in splits
                if k in r.scores
            ),
        ],
        default=0.5,
    )
    x = np.arange(len(s.configs))
    for ax, split in zip(axes, splits, strict=False):
        for i, row in enumerate(s.configs):
            runs = [r for r in row.runs if split in r.scores]
            offsets = np.linspace(-0.15, 0.15, max(len(runs), 1))
            for offset, run in zip(offsets, runs, strict=False):
                bad = run.degenerate(s.selection_split)
                ax.plot(
                    i + offset,
                    run.scores[split].accuracy,
                    "x" if bad else "o",
                    color="tab:red" if bad else "0.45",
                    ms=5,
                )
            stat = getattr(row, f"{split}_accuracy")
            if stat is not None and stat.mean is not None:
                low = stat.mean - stat.low if stat.low is not None else 0
                high = stat.high - stat.mean if stat.high is not None else 0
                ax.errorbar(
                    i + 0.3,
                    stat.mean,
                    yerr=[[low], [high]],
                    fmt="D",
                    color="black",
                    capsize=4,
                    ms=5,
                )
        majority = s.majority_accuracy.get(split)
        if majority is not None:
            ax.axhline(
                majority, color="tab:red", ls="--", lw=1, label=f"majority class {majority:.3f}"
            )
        ax.set_xticks(x, names, fontsize=7)
        ax.set_ylabel(f"{split} accuracy")
        ax.set_title(f"{split}: seeds (x = degenerate), mean and 95% CI", fontsize=9)
        ax.legend(fontsize=7, loc="lower right")
        if ax is not axes[0]:
            ax.sharey(axes[0])
    axes[0].set_ylim(max(lowest - 0.05, 0.0), 1.02)  # accuracy is at most 1
    ax = axes[len(splits)]
    for i, row in enumerate(s.configs):
        gaps = row.gap(s.evaluation_split)
        offsets = np.linspace(-0.15, 0.15, max(len(gaps), 1))
        for offset, run in zip(offsets, [r for r in row.runs if r.seed in gaps], strict=False):
            bad = run.degenerate(s.selection_split)
            ax.plot(
                i + offset,
                gaps[run.seed],
                "x" if bad else "o",
                color="tab:red" if bad else "0.45",
                ms=5,
            )
        stat = row.gap_accuracy
        if stat is not None and stat.low is not None:
            ax.errorbar(
                i + 0.3,
                stat.mean,
                yerr=[[stat.mean - stat.low], [stat.high - stat.mean]],
                fmt="D",
                color="black",
                capsize=4,
                ms=5,
            )
    ax.axhline(0.0, color="0.6", lw=1)
    ax.set_xticks(x, names, fontsize=7)
    ax.set_ylabel(f"train - {s.evaluation_split} accuracy")
    ax.set_title("overfitting gap: seeds, mean and 95% CI", fontsize=9)
    return fig


def sweep_comparisons(m: Measurements, entries: list[Entry]):
    """Every paired comparison: mean difference and 95% CI against its threshold."""
    rows = [(e.id, c) for e in entries for f in e.findings for c in f.comparisons]
    fig, axes = new_figure(8.0, 0.5 + 0.45 * max(len(rows), 1))
    ax = axes[0]
    for y, (claim, c) in enumerate(reversed(rows)):
        colour = "0.6" if (c.blocked or not c.deciding) else "black"
        if c.mean is not None and c.low is not None:
            ax.errorbar(
                c.mean,
                y,
                xerr=[[c.mean - c.low], [c.high - c.mean]],
                fmt="o",
                color=colour,
                capsize=3,
            )
        elif c.mean is not None:
            ax.plot(c.mean, y, "o", color=colour)
        ax.plot([c.threshold] * 2, [y - 0.35, y + 0.35], color="tab:red", lw=2)
        note = " (cannot decide)" if c.blocked else ("" if c.deciding else " (context)")
        ax.text(
            1.01,
            y,
            f"{claim}: {c.outcome}{note}",
            transform=ax.get_yaxis_transform(),
            va="center",
            fontsize=7,
        )
    ax.set_yticks(
        range(len(rows)), [f"{c.a} - {c.b}\n({c.metric})" for _, c in reversed(rows)], fontsize=6
    )
    ax.axvline(0.0, color="0.8", lw=1)
    ax.set_xlabel("paired difference over seeds, mean and 95% CI (red: the claim's threshold)")
    return fig


def save_all(run_dir: Path, m: Measurements, entries: list[Entry]) -> dict[str, Path]:
    """Draw every figure and write `dropout_<name>.png`; returns {name: path}."""
    drawings = {
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
