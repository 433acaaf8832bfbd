"""Figures of the dropout-impact measurements (`figures.new_figure`, PNG files).

Each function takes the measurement dict it draws and returns a matplotlib figure; `save_all`
writes them as `dropout_<name>.png` in the run folder and returns {name: path}. Missing data
(e.g. no test errors) draws an honest, mostly empty panel rather than failing.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from inception_retrain.figures import new_figure, save_png

PLACEMENT_STYLE = {"after_dense2": "-", "after_both": "--", "none": ":"}


def _figure(width: float = 7.0, height: float = 3.6, columns: int = 1):
    """(figure, [[axes...]]) with one row of `columns` axes."""
    fig, axes = new_figure(width, height, columns=columns)
    return fig, [axes]


def forward_layers(forward: dict):
    """Fraction of values changed per layer, training=True vs False: every layer in model
    order (left), and the head with the last backbone layers by name (right)."""
    fig, axes = _figure(11.0, 3.6, columns=2)
    rows = forward["layers"]
    fractions = np.array([row["fraction_changed"] for row in rows])
    backbone = np.array([row["kind"] != "head" for row in rows])
    x = np.arange(len(rows))
    ax = axes[0][0]
    ax.scatter(x[backbone], fractions[backbone], s=6, color="0.55", label="frozen backbone layer")
    ax.scatter(x[~backbone], fractions[~backbone], s=26, color="tab:red", label="head layer")
    ax.set_xlabel("layer (model order)")
    ax.set_ylabel("fraction of values changed")
    ax.set_ylim(-0.05, 1.05)
    ax.set_title(f"all {len(rows)} layers, {forward['images']} real images", fontsize=9)
    ax.legend(loc="upper left", fontsize=8)
    ax = axes[0][1]
    tail = rows[max(forward["n_backbone_layers"] - 3, 0) :]
    colours = ["0.55" if row["kind"] != "head" else "tab:red" for row in tail]
    ax.bar(range(len(tail)), [row["fraction_changed"] for row in tail], color=colours)
    for i, row in enumerate(tail):
        if not row["changed"]:
            ax.text(i, 0.01, "identical", rotation=90, ha="center", va="bottom", fontsize=7)
    ax.set_xticks(range(len(tail)), [row["layer"] for row in tail], rotation=35, fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_title("end of the backbone and the head", fontsize=9)
    return fig


def mask_histogram(fit_masks: dict):
    """Dropped units per sample against Binomial(units, rate)."""
    fig, axes = _figure(6.0, 3.4)
    ax = axes[0][0]
    hist = fit_masks["histogram"]
    ax.bar(
        hist["dropped"],
        hist["samples"],
        width=1.0,
        color="tab:blue",
        alpha=0.6,
        label=f"observed ({fit_masks['samples']} samples, {fit_masks['steps']} fit steps)",
    )
    units, rate, n = fit_masks["units"], fit_masks["rate"], fit_masks["samples"]
    from inception_retrain.dropout.forward import binomial_pmf

    mean, std = units * rate, fit_masks["expected_std"]
    k = np.arange(max(int(mean - 4 * std), 0), min(int(mean + 4 * std) + 2, units + 1))
    ax.plot(k, binomial_pmf(units, rate, k) * n, color="black", label=f"Binomial({units}, {rate})")
    ax.set_xlabel(f"units of {fit_masks['layer']}'s input dropped per sample")
    ax.set_ylabel("samples")
    ax.legend(fontsize=8)
    return fig


def mask_steps(fit_masks: dict):
    """Keep-masks of the first fit steps: rows are samples, columns units (white = kept)."""
    excerpts = fit_masks["excerpt"]
    fig, axes = _figure(3.4 * len(excerpts), 2.8, columns=len(excerpts))
    for step, (ax, mask) in enumerate(zip(axes[0], excerpts, strict=True)):
        ax.imshow(np.array(mask), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(f"fit step {step + 1} (black = dropped)", fontsize=9)
        ax.set_xlabel(f"unit of {fit_masks['layer']}'s input")
    axes[0][0].set_ylabel("sample in the batch")
    return fig


def gradient_norms(backward: dict):
    """Per-variable gradient norms: dropout on (fixed mask), off, and rate 1."""
    fig, axes = _figure(7.5, 3.6)
    ax = axes[0][0]
    rows = backward["variables"]
    x = np.arange(len(rows))
    floor = 1e-12  # zero norms drawn at the floor of the log axis
    for offset, (key, label) in enumerate(
        (
            ("norm_with_dropout", "dropout on"),
            ("norm_without_dropout", "dropout off"),
            ("norm_rate_1", "rate 1"),
        )
    ):
        values = np.maximum([row[key] for row in rows], floor)
        ax.bar(x + (offset - 1) * 0.27, values, width=0.27, label=label)
        for i, row in enumerate(rows):
            if row[key] == 0.0:
                ax.text(i + (offset - 1) * 0.27, floor * 3, "0", ha="center", fontsize=8)
    ax.set_yscale("log")
    ax.set_xticks(x, [row["variable"] for row in rows], rotation=30, fontsize=8)
    ax.set_ylabel("gradient norm (0 drawn at 1e-12)")
    ax.legend(fontsize=8)
    return fig


def mc_uncertainty(inference: dict):
    """MC-dropout std of the predicted class's probability, correct vs misclassified."""
    fig, axes = _figure(6.0, 3.4)
    ax = axes[0][0]
    rows = inference["per_image"]
    correct = [row["std"] for row in rows if not row["error"]]
    wrong = [row["std"] for row in rows if row["error"]]
    bins = np.linspace(0, max([row["std"] for row in rows] + [1e-6]), 21)
    ax.hist(correct, bins=bins, alpha=0.6, label=f"correct ({len(correct)})")
    ax.hist(wrong, bins=bins, alpha=0.6, label=f"misclassified ({len(wrong)})")
    auroc = inference["auroc_std"]
    ax.set_title(
        f"{inference['passes']} MC passes; AUROC(std -> error) = "
        f"{'n/a' if auroc is None else f'{auroc:.3f}'}",
        fontsize=9,
    )
    ax.set_xlabel("std over passes of the predicted class's probability")
    ax.set_ylabel("images")
    ax.legend(fontsize=8)
    return fig


def sweep_curves(summary: dict):
    """Mean learning curves per config: train (thin) and validation (thick) accuracy."""
    placements = list(dict.fromkeys(row["placement"] for row in summary["configs"]))
    fig, axes = _figure(4.0 * len(placements), 3.4, columns=len(placements))
    for ax, placement in zip(axes[0], placements, strict=True):
        for row in summary["configs"]:
            if row["placement"] != placement:
                continue
            curves = row["curves"]
            epochs = np.arange(1, len(curves["accuracy"]) + 1)
            (line,) = ax.plot(epochs, curves["accuracy"], lw=1, alpha=0.6)
            if "val_accuracy" in curves:
                ax.plot(
                    epochs,
                    curves["val_accuracy"],
                    lw=2.2,
                    color=line.get_color(),
                    label=f"rate {row['rate']}",
                )
        ax.set_title(placement, fontsize=9)
        ax.set_xlabel("epoch")
        ax.set_ylabel("accuracy (thin: train, thick: validation)")
        ax.legend(fontsize=7)
    return fig


def sweep_summary(summary: dict):
    """Selection-split accuracy and train-selection gap vs rate, per placement (mean +- std)."""
    fig, axes = _figure(9.0, 3.4, columns=2)
    split = summary["selection_split"]
    for ax, key, label in (
        (axes[0][0], f"{split}_accuracy", f"{split} accuracy"),
        (axes[0][1], "gap_accuracy", f"train - {split} accuracy gap"),
    ):
        for placement, style in PLACEMENT_STYLE.items():
            rows = sorted(
                (row for row in summary["configs"] if row["placement"] == placement),
                key=lambda row: row["rate"],
            )
            if placement == "none" and rows:
                stat = rows[0][key]
                ax.axhline(stat["mean"], color="black", ls=":", label="no dropout")
                continue
            if rows:
                ax.errorbar(
                    [r["rate"] for r in rows],
                    [r[key]["mean"] for r in rows],
                    yerr=[r[key]["std"] or 0 for r in rows],
                    ls=style,
                    marker="o",
                    capsize=3,
                    label=placement,
                )
        ax.set_xlabel("dropout rate")
        ax.set_ylabel(label)
        ax.legend(fontsize=8)
    return fig


def save_all(run_dir: Path, measurements: dict) -> dict[str, Path]:
    """Draw every figure and write `dropout_<name>.png`; returns {name: path}."""
    drawings = {
        "forward_layers": lambda: forward_layers(measurements["forward"]),
        "mask_histogram": lambda: mask_histogram(measurements["fit_masks"]),
        "mask_steps": lambda: mask_steps(measurements["fit_masks"]),
        "gradient_norms": lambda: gradient_norms(measurements["backward"]),
        "mc_uncertainty": lambda: mc_uncertainty(measurements["inference"]),
        "sweep_curves": lambda: sweep_curves(measurements["sweep"]),
        "sweep_summary": lambda: sweep_summary(measurements["sweep"]),
    }
    paths = {}
    for name, draw in drawings.items():
        paths[name] = save_png(draw(), Path(run_dir) / f"dropout_{name}.png")
    return paths
