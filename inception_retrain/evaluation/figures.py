"""Matplotlib figures for every report: one set-up, the object API, PNG files.

`new_figure` builds a `matplotlib.figure.Figure` directly (no pyplot, so no global backend
or figure registry: figures are freed with their last reference and never shown), laid out
with "constrained" layout. `save_png` writes it atomically.

    >>> fig, axes = new_figure(9, 3.5, columns=2)
    >>> axes[0].plot([1, 2], [3, 4])
    >>> save_png(fig, run_dir / "learning_curves.png")
"""

from __future__ import annotations

import os
from pathlib import Path

from inception_retrain.plumbing.files import atomic_file

DPI = 100


def new_figure(width: float = 5.0, height: float = 4.0, rows: int = 1, columns: int = 1):
    """(figure, flat list of its axes)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    axes = fig.subplots(rows, columns, squeeze=False).ravel().tolist()
    return fig, axes


def save_png(fig, path: str | os.PathLike[str]) -> Path:
    """Write `fig` as a PNG file, atomically."""
    with atomic_file(path) as handle:
        fig.savefig(handle, format="png")
    return Path(path)
