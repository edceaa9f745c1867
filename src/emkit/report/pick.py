"""Figures for the pick workflow: scores per class, picks over tomogram slices."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from emkit.report._figure import new_figure, save_png

__all__ = ["plot_pick_scores", "plot_picks", "plot_training_curves"]

_METRICS = ("precision", "recall", "f1", "f_beta4")


def plot_pick_scores(
    path: str | os.PathLike[str],
    scores: Mapping[str, Sequence[Mapping[str, Any]]],
    *,
    class_names: Mapping[int, str] | None = None,
) -> Path:
    """Bars of precision, recall, F1 and F-beta 4 per class and overall, per method.

    Parameters
    ----------
    scores : mapping
        Method name -> :attr:`emkit.pick.PickScores.rows` (one method or several to compare).
    class_names : mapping, optional
        Class number -> name for the labels.
    """
    methods = list(scores)
    fig, axes = new_figure(1, len(_METRICS), figsize=(3.6 * len(_METRICS), 3.6),
                           squeeze=False, layout="constrained")
    width = 0.8 / max(1, len(methods))
    for ax, metric in zip(axes[0], _METRICS):
        for m, method in enumerate(methods):
            rows = scores[method]
            labels = [str(r["class"]) if r["class"] == "all" or class_names is None
                      else class_names.get(int(r["class"]), str(r["class"])) for r in rows]
            x = np.arange(len(rows)) + (m - (len(methods) - 1) / 2) * width
            ax.bar(x, [float(r[metric]) for r in rows], width, label=method)
            ax.set_xticks(np.arange(len(rows)), labels, rotation=30, fontsize=8)
        ax.set_ylim(0, 1.05)
        ax.set_title(metric.replace("_beta4", "-beta (4)"))
        ax.grid(axis="y", alpha=0.3)
    if len(methods) > 1:
        axes[0][0].legend(fontsize=8)
    return save_png(fig, path, dpi=100)


def plot_picks(
    path: str | os.PathLike[str], tomogram: np.ndarray, picks_zyx: np.ndarray,
    *, truth_zyx: np.ndarray | None = None, n_slices: int = 3, half_thickness: float = 3.0,
) -> Path:
    """A few z slices of the tomogram with the picks (red +) and the truth (green o)."""
    nz = tomogram.shape[0]
    zs = np.linspace(nz * 0.25, nz * 0.75, n_slices).round().astype(int)
    fig, axes = new_figure(1, n_slices, figsize=(4.2 * n_slices, 4.4), squeeze=False,
                           layout="constrained")
    for ax, z in zip(axes[0], zs):
        image = tomogram[z]
        lo, hi = np.percentile(image, [1, 99])
        ax.imshow(image, cmap="gray", vmin=lo, vmax=hi)
        if truth_zyx is not None and len(truth_zyx):
            near = np.abs(truth_zyx[:, 0] - z) <= half_thickness
            ax.scatter(truth_zyx[near, 2], truth_zyx[near, 1], s=40, facecolors="none",
                       edgecolors="lime", linewidths=1)
        near = np.abs(picks_zyx[:, 0] - z) <= half_thickness if len(picks_zyx) else []
        if len(picks_zyx):
            ax.scatter(picks_zyx[near, 2], picks_zyx[near, 1], s=25, marker="+", c="red")
        ax.set_title(f"z = {z}")
        ax.set_axis_off()
    return save_png(fig, path, dpi=90)


def plot_training_curves(path: str | os.PathLike[str], rows: Sequence[Mapping[str, float]]
                         ) -> Path:
    """Training and validation losses against step."""
    fig, ax = new_figure(1, 1, figsize=(6, 4), layout="constrained")
    steps = [r["step"] for r in rows]
    for key in sorted({k for r in rows for k in r if k.startswith(("train_", "val_"))}):
        ax.plot(steps, [r.get(key, np.nan) for r in rows], label=key,
                ls="-" if key.startswith("val_") else "--")
    ax.set_xlabel("step")
    ax.set_yscale("log")
    ax.legend(fontsize=8)
    return save_png(fig, path, dpi=100)
