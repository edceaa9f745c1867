"""Figures without pyplot: no global state, no backend switch, safe in notebooks and workers."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from emkit.io._atomic import atomic_output


def new_figure(nrows: int = 1, ncols: int = 1, **kwargs: Any) -> tuple[Any, Any]:
    """Return ``(figure, axes)`` like ``pyplot.subplots`` but detached from pyplot.

    The figure renders with the Agg canvas whatever backend the user's session has, and is
    freed by the garbage collector (no ``plt.close`` needed).
    """
    from matplotlib.figure import Figure

    subplot_keys = ("sharex", "sharey", "squeeze", "width_ratios", "height_ratios")
    subplot_kwargs = {k: kwargs.pop(k) for k in subplot_keys if k in kwargs}
    fig = Figure(**kwargs)
    return fig, fig.subplots(nrows, ncols, **subplot_kwargs)


def save_png(fig: Any, path: str | os.PathLike[str], **savefig_kwargs: Any) -> Path:
    """Write ``fig`` to ``path`` as PNG, atomically (temporary name, then rename)."""
    out = Path(path)
    with atomic_output(out) as tmp:
        fig.savefig(tmp, format="png", **savefig_kwargs)
    return out
