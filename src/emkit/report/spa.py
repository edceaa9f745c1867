"""Figures for the spa workflow: orientation-error histogram and FSC curve."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from emkit.report._figure import new_figure, save_png

__all__ = ["plot_fsc", "plot_orientation_errors"]


def plot_orientation_errors(
    path: str | os.PathLike[str], errors_deg: Mapping[str, np.ndarray], *, title: str = ""
) -> Path:
    """Histogram of orientation errors (degrees), one series per stage (e.g. fit, refined).

    Parameters
    ----------
    errors_deg : mapping of str to ndarray, shape (n,)
        Per-image geodesic errors after the global alignment, in degrees.
    """
    fig, ax = new_figure(figsize=(6, 4))
    top = max(float(np.percentile(e, 99)) for e in errors_deg.values()) if errors_deg else 1.0
    bins = np.linspace(0.0, max(top, 1e-3) * 1.05, 50)
    for label, errors in errors_deg.items():
        e = np.asarray(errors)
        ax.hist(np.clip(e, 0, bins[-1]), bins=bins, alpha=0.6,
                label=f"{label}: mean {e.mean():.2f}, median {np.median(e):.2f} deg")
    ax.set_xlabel("orientation error (deg)")
    ax.set_ylabel("particles")
    ax.legend(fontsize=8)
    ax.set_title(title or "orientation error after global alignment", fontsize=10)
    fig.tight_layout()
    return save_png(fig, path, dpi=110)


def plot_fsc(
    path: str | os.PathLike[str], freq_invA: np.ndarray, fsc: np.ndarray, *,
    resolution_05_A: float | None = None, resolution_0143_A: float | None = None,
    title: str = "",
) -> Path:
    """FSC between half-maps against spatial frequency, with the 0.5 and 0.143 lines."""
    fig, ax = new_figure(figsize=(6, 4))
    ax.plot(freq_invA, fsc, "-o", ms=3, color="C0")
    for level, res in ((0.5, resolution_05_A), (0.143, resolution_0143_A)):
        label = f"{level}" + (f": {res:.1f} Å" if res is not None and np.isfinite(res) else "")
        ax.axhline(level, color="0.5", ls="--", lw=1)
        ax.text(freq_invA[-1], level + 0.02, label, ha="right", fontsize=8)
    ax.set_xlabel("spatial frequency (1/Å)")
    ax.set_ylabel("FSC")
    ax.set_ylim(-0.1, 1.05)
    ax.set_title(title or "Fourier shell correlation of the half-maps", fontsize=10)
    fig.tight_layout()
    return save_png(fig, path, dpi=110)
