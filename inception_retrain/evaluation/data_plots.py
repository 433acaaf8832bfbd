"""The data report's plots: class balance, image properties, null distributions, thumbnails.

Each function draws one PNG into the run folder (`figures.new_figure`, `figures.save_png`)
and returns its file name, or None when there is nothing to draw. The data come from the
manifests (`data.contract.Comparison`) and the checks (`data.distribution_tests.Check`); only
`most_shifted_thumbnails` opens image files, the few it shows.

    >>> class_balance_plot(run_dir, comparison)      # 'data_classes.png'
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from inception_retrain.data.contract import Comparison, property_values
from inception_retrain.data.distribution_tests import TESTED, Check
from inception_retrain.data.images import load_rgb
from inception_retrain.evaluation.figures import new_figure, save_png

REFERENCE_COLOUR, NEW_COLOUR, OBSERVED_COLOUR = "#4477aa", "#ee7733", "#cc3311"
NUMERIC = ("short-side", "aspect-ratio", "brightness")
CATEGORICAL = ("format", "mode")
THUMBNAIL_PX = 112


def _groups(comparison: Comparison):
    """[(label, rows, colour)]: reference and new, or this run's images without reference."""
    if comparison.reference is None:
        return [(f"this run ({len(comparison.current)})", comparison.current, NEW_COLOUR)]
    return [
        (f"reference ({len(comparison.reference)})", comparison.reference, REFERENCE_COLOUR),
        (f"new ({len(comparison.new)})", comparison.new, NEW_COLOUR),
    ]


def class_balance_plot(run_dir: Path, comparison: Comparison) -> str | None:
    """Bars of each class's share of the reference images and of the new ones."""
    groups = _groups(comparison)
    classes = sorted({label for _, rows, _ in groups for label in rows.rows.labels})
    if not classes:
        return None
    fig, (axes,) = new_figure(max(5.0, 1.1 * len(classes) + 2), 3.6)
    width = 0.8 / len(groups)
    positions = np.arange(len(classes))
    for k, (label, rows, colour) in enumerate(groups):
        counts = Counter(rows.rows.labels)
        total = max(len(rows), 1)
        shares = [counts[c] / total for c in classes]
        bars = axes.bar(positions + k * width, shares, width, label=label, color=colour)
        axes.bar_label(bars, labels=[str(counts[c]) for c in classes], fontsize=8)
    axes.set_xticks(positions + width * (len(groups) - 1) / 2, classes)
    axes.set_ylabel("share of images")
    axes.set_title("Class balance")
    axes.legend(fontsize=8)
    save_png(fig, Path(run_dir) / "data_classes.png")
    return "data_classes.png"


def properties_plot(run_dir: Path, comparison: Comparison) -> str | None:
    """Histograms of short side, aspect ratio and brightness; bars of format and mode."""
    groups = _groups(comparison)
    fig, axes = new_figure(15, 3.2, columns=5)
    drawn = False
    for ax, name in zip(axes, (*NUMERIC, *CATEGORICAL), strict=True):
        series = [(label, property_values(rows, name), colour) for label, rows, colour in groups]
        series = [(label, values, colour) for label, values, colour in series if values]
        ax.set_title(name)
        if not series:
            ax.text(0.5, 0.5, "not recorded", ha="center", va="center", transform=ax.transAxes)
            continue
        drawn = True
        if name in NUMERIC:
            everything = np.concatenate([np.asarray(v, np.float64) for _, v, _ in series])
            bins = np.histogram_bin_edges(everything, bins=min(30, max(5, len(everything) // 8)))
            for label, values, colour in series:
                ax.hist(values, bins=bins, density=True, alpha=0.55, color=colour, label=label)
        else:
            categories = sorted({str(v) for _, values, _ in series for v in values})
            width = 0.8 / len(series)
            for k, (label, values, colour) in enumerate(series):
                counts = Counter(str(v) for v in values)
                shares = [counts[c] / len(values) for c in categories]
                ax.bar(
                    np.arange(len(categories)) + k * width, shares, width, color=colour, label=label
                )
            ax.set_xticks(np.arange(len(categories)) + width * (len(series) - 1) / 2, categories)
        ax.legend(fontsize=7)
    if not drawn:
        return None
    save_png(fig, Path(run_dir) / "data_properties.png")
    return "data_properties.png"


def null_distributions_plot(run_dir: Path, checks: list[Check]) -> str | None:
    """Each tested statistical check: the permutation distribution of its statistic under
    "no change", with the observed value marked."""
    tested = [c for c in checks if c.statistical and c.status == TESTED and c.null is not None]
    if not tested:
        return None
    columns = min(3, len(tested))
    rows = -(-len(tested) // columns)
    fig, axes = new_figure(4.6 * columns, 2.9 * rows, rows=rows, columns=columns)
    for ax, check in zip(axes, tested, strict=False):
        ax.hist(check.null, bins=40, color="#999999", label=f"{check.permutations} permutations")
        ax.axvline(check.statistic, color=OBSERVED_COLOUR, linewidth=2, label="observed")
        adjusted = "n/a" if check.p_adjusted is None else f"{check.p_adjusted:.3g}"
        flag = " FLAGGED" if check.flagged else ""
        ax.set_title(f"{check.name}: p={check.p_value:.3g}, Holm {adjusted}{flag}", fontsize=9)
        ax.legend(fontsize=7)
    for ax in axes[len(tested) :]:
        ax.set_axis_off()
    save_png(fig, Path(run_dir) / "data_null.png")
    return "data_null.png"


def most_shifted_thumbnails(run_dir: Path, shifted: list[dict]) -> str | None:
    """Thumbnails of the new images with the highest drift scores, each titled with its
    score and label (an image that cannot be read any more is shown as a note)."""
    if not shifted:
        return None
    columns = min(6, len(shifted))
    rows = -(-len(shifted) // columns)
    fig, axes = new_figure(2.0 * columns, 2.3 * rows, rows=rows, columns=columns)
    for ax, item in zip(axes, shifted, strict=False):
        ax.set_axis_off()
        ax.set_title(f"{item['score']:.3g} · {item['label']}", fontsize=8)
        try:
            from PIL import Image

            image = Image.fromarray(load_rgb(item["uri"]))
            image.thumbnail((THUMBNAIL_PX, THUMBNAIL_PX))
            ax.imshow(np.asarray(image))
        except Exception as error:  # a vanished file must not fail the report
            ax.text(0.5, 0.5, f"unreadable:\n{type(error).__name__}", ha="center", va="center")
    for ax in axes[len(shifted) :]:
        ax.set_axis_off()
    save_png(fig, Path(run_dir) / "data_shifted.png")
    return "data_shifted.png"
