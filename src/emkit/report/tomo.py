"""Figures for the tomo workflow: per-iteration progress, slices, shift errors (PNG)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from emkit.report._figure import new_figure, save_png

__all__ = ["plot_iteration", "plot_shift_errors", "plot_slices"]


def _show(ax: Any, image: np.ndarray, title: str) -> None:
    lo, hi = np.percentile(image, [1, 99])
    ax.imshow(image, cmap="gray", vmin=lo, vmax=hi if hi > lo else lo + 1)
    ax.set_title(title, fontsize=9)
    ax.set_axis_off()


def plot_iteration(
    path: str | os.PathLike[str],
    volume: np.ndarray,
    shifts_px: np.ndarray,
    tilt_angles_deg: np.ndarray,
    *,
    record: Mapping[str, float] | None = None,
    true_shifts_px: np.ndarray | None = None,
) -> Path:
    """One PNG of a joint-alignment iteration: central xy and xz slices, shift curves.

    Parameters
    ----------
    path : path-like
        Output ``.png``.
    volume : ndarray, shape (z, y, x)
        Current reconstruction.
    shifts_px : ndarray, shape (n, 2)
        Current ``(dy, dx)`` shifts (unbinned pixels).
    tilt_angles_deg : ndarray, shape (n,)
    record : mapping, optional
        Iteration record (level, iteration, data_residual, tv, max_shift_change_px).
    true_shifts_px : ndarray, shape (n, 2), optional
        Ground truth to draw for comparison (simulations).
    """
    fig, axes = new_figure(1, 3, figsize=(13, 4))
    nz, ny, _ = volume.shape
    _show(axes[0], volume[nz // 2], "central xy slice")
    _show(axes[1], volume[:, ny // 2], "central xz slice")
    order = np.argsort(tilt_angles_deg)
    ax = axes[2]
    ax.plot(tilt_angles_deg[order], shifts_px[order, 1], "-", label="dx")
    ax.plot(tilt_angles_deg[order], shifts_px[order, 0], "-", label="dy")
    if true_shifts_px is not None:
        from emkit.tomo import remove_gauge

        truth = remove_gauge(true_shifts_px, tilt_angles_deg, gauge="rigid")
        ax.plot(tilt_angles_deg[order], truth[order, 1], "k:", label="true dx")
        ax.plot(tilt_angles_deg[order], truth[order, 0], "k--", label="true dy")
    ax.set_xlabel("tilt angle (deg)")
    ax.set_ylabel("shift (px)")
    ax.legend(fontsize=8)
    if record is not None:
        what = ("whole thickness, shifts fixed" if record.get("whole_thickness") else
                f"max shift change {record['max_shift_change_px']:.3f} px")
        fig.suptitle(
            f"bin {int(record['level'])} iteration {int(record['iteration'])}: residual "
            f"{record['data_residual']:.4g}, TV {record['tv']:.4g}, {what}",
            fontsize=10,
        )
    fig.tight_layout()
    return save_png(fig, path, dpi=100)


def plot_slices(
    path: str | os.PathLike[str], volumes: Mapping[str, np.ndarray], *, axis: str = "xy"
) -> Path:
    """Central slices of several volumes side by side (e.g. truth, before, after).

    Parameters
    ----------
    path : path-like
        Output ``.png``.
    volumes : mapping of title -> ndarray, shape (z, y, x)
    axis : {"xy", "xz"}
        Which central slice: constant z (``xy``) or constant y (``xz``).
    """
    rows = ["xy", "xz"] if axis == "both" else [axis]
    nz, ny, nx = next(iter(volumes.values())).shape
    # Row heights follow the slices' aspect, so a thin xz slice leaves no empty band.
    heights = [ny / nx if which == "xy" else max(nz / nx, 0.15) for which in rows]
    width = 3.2 * len(volumes)
    fig, axes = new_figure(
        len(rows),
        len(volumes),
        figsize=(width, 3.2 * sum(heights) + 0.45 * len(rows)),
        height_ratios=heights,
    )
    axes = np.atleast_2d(axes).reshape(len(rows), len(volumes))
    for r, which in enumerate(rows):
        for c, (title, vol) in enumerate(volumes.items()):
            image = vol[vol.shape[0] // 2] if which == "xy" else vol[:, vol.shape[1] // 2]
            _show(axes[r, c], image, f"{title} ({which})")
    fig.tight_layout()
    return save_png(fig, path, dpi=100)


def plot_shift_errors(
    path: str | os.PathLike[str],
    tilt_angles_deg: np.ndarray,
    estimates: Mapping[str, np.ndarray],
    true_shifts_px: np.ndarray,
) -> Path:
    """Shift error per tilt (rigid gauge removed) for several estimates.

    Parameters
    ----------
    path : path-like
        Output ``.png``.
    tilt_angles_deg : ndarray, shape (n,)
    estimates : mapping of name -> ndarray, shape (n, 2)
        ``(dy, dx)`` shifts in pixels.
    true_shifts_px : ndarray, shape (n, 2)
    """
    from emkit.tomo import remove_gauge, shift_rmse

    fig, axes = new_figure(1, 2, figsize=(10, 3.6), sharey=True)
    order = np.argsort(tilt_angles_deg)
    for name, est in estimates.items():
        err = remove_gauge(est - true_shifts_px, tilt_angles_deg, gauge="rigid")
        rmse = shift_rmse(est, true_shifts_px, tilt_angles_deg, gauge="rigid")
        for k, comp in enumerate(("dy", "dx")):
            axes[k].plot(
                tilt_angles_deg[order], err[order, k], ".-", label=f"{name} (RMSE {rmse:.2f} px)"
            )
            axes[k].set_title(f"{comp} error (px)", fontsize=10)
            axes[k].set_xlabel("tilt angle (deg)")
    axes[0].axhline(0, color="k", lw=0.5)
    axes[1].axhline(0, color="k", lw=0.5)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    return save_png(fig, path, dpi=100)
