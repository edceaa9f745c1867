"""Figures for the segment workflow: training curves, per-slice scores, error overlays, meshes."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from emkit.report._figure import new_figure, save_png

__all__ = ["plot_error_overlays", "plot_meshes", "plot_slice_scores", "plot_training_curves"]

# One colour per label value (0 is drawn grey), tab10-like, as RGB in 0..1.
_COLOURS = np.array([
    [0.6, 0.6, 0.6], [0.17, 0.63, 0.17], [0.55, 0.34, 0.29], [0.84, 0.15, 0.16],
    [0.09, 0.75, 0.81], [0.58, 0.4, 0.74], [1.0, 0.5, 0.05], [0.89, 0.47, 0.76],
    [0.74, 0.74, 0.13], [0.12, 0.47, 0.71],
])


def _colour(label: int) -> np.ndarray:
    return _COLOURS[int(label) % len(_COLOURS)]


def plot_training_curves(
    path: str | os.PathLike[str], rows: Sequence[Mapping[str, float]]
) -> Path:
    """Training and validation losses (and validation Dice) against step, one PNG.

    Parameters
    ----------
    rows : sequence of mappings
        :attr:`emkit.nn.TrainingHistory.rows` (``step``, ``train_*``, ``val_*``).
    """
    fig, (ax_loss, ax_dice) = new_figure(1, 2, figsize=(11, 4))
    steps = [r["step"] for r in rows]
    keys = sorted({k for r in rows for k in r if k.startswith(("train_", "val_"))})
    for key in keys:
        if key == "val_dice":
            continue
        values = [r.get(key, np.nan) for r in rows]
        ax_loss.plot(steps, values, "-o", ms=3, label=key.replace("_", " "))
    ax_loss.set_xlabel("step")
    ax_loss.set_ylabel("loss")
    ax_loss.set_yscale("log")
    ax_loss.legend(fontsize=8)
    ax_loss.set_title("losses", fontsize=10)
    if any("val_dice" in r for r in rows):
        ax_dice.plot(steps, [r.get("val_dice", np.nan) for r in rows], "-o", ms=3)
        best = int(np.nanargmax([r.get("val_dice", np.nan) for r in rows]))
        ax_dice.axvline(steps[best], color="0.6", ls="--", lw=1)
    ax_dice.set_xlabel("step")
    ax_dice.set_ylabel("mean Dice (held-out pixels)")
    ax_dice.set_ylim(0, 1)
    ax_dice.set_title("validation", fontsize=10)
    fig.tight_layout()
    return save_png(fig, path, dpi=110)


def plot_slice_scores(
    path: str | os.PathLike[str],
    dice: Mapping[str, np.ndarray],
    class_names: Sequence[str],
    *,
    accuracy: Mapping[str, np.ndarray] | None = None,
    labelled_slices: Sequence[int] = (),
) -> Path:
    """Dice of every foreground class per z slice (one panel per class), per method.

    Parameters
    ----------
    dice : mapping method name -> ndarray, shape (nz, n_classes)
        From :func:`emkit.segment.per_slice_scores`.
    class_names : sequence of str
    accuracy : mapping method name -> ndarray, shape (nz,), optional
        Pixel accuracy per slice, drawn in a last panel.
    labelled_slices : sequence of int
        Marked with dashed lines (the training slices).
    """
    n_classes = len(class_names)
    panels = list(range(1, n_classes)) + (["accuracy"] if accuracy else [])
    ncols = min(3, len(panels))
    nrows = -(-len(panels) // ncols)
    fig, axes = new_figure(nrows, ncols, figsize=(4.2 * ncols, 3.2 * nrows), squeeze=False)
    for ax, panel in zip(axes.flat, panels):
        series = accuracy if panel == "accuracy" else dice
        assert series is not None
        for method, values in series.items():
            y = values if panel == "accuracy" else values[:, int(panel)]
            ax.plot(np.arange(len(y)), y, lw=1.2, label=method)
        for z in labelled_slices:
            ax.axvline(z, color="0.5", ls="--", lw=0.8)
        title = "pixel accuracy" if panel == "accuracy" else f"Dice: {class_names[int(panel)]}"
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("z slice")
        ax.set_ylim(0, 1.02)
    for ax in list(axes.flat)[len(panels):]:
        ax.set_axis_off()
    axes.flat[0].legend(fontsize=8)
    fig.tight_layout()
    return save_png(fig, path, dpi=110)


def _grey(image: np.ndarray) -> np.ndarray:
    lo, hi = np.percentile(image, [1, 99])
    scaled = np.clip((image - lo) / (hi - lo if hi > lo else 1.0), 0, 1)
    return np.repeat(scaled[..., None], 3, axis=-1)


def plot_error_overlays(
    path: str | os.PathLike[str],
    tomogram: np.ndarray,
    predicted: np.ndarray,
    truth: np.ndarray,
    *,
    slices: Sequence[int],
    class_names: Sequence[str],
    classes: Sequence[int] | None = None,
) -> Path:
    """False-colour error maps of chosen z slices: one row per slice, one column per class.

    True positives are drawn in yellow, false positives in magenta and false negatives in
    cyan over the grey tomogram slice (as in the deep-SXT paper's figures); the first
    column shows the predicted labels.
    """
    chosen = [c for c in (classes or range(1, len(class_names)))]
    fig, axes = new_figure(len(slices), len(chosen) + 1,
                           figsize=(2.8 * (len(chosen) + 1), 2.9 * len(slices)), squeeze=False)
    for row, z in enumerate(slices):
        grey = _grey(np.asarray(tomogram[z], dtype=np.float32))
        labels_rgb = 0.5 * grey + 0.5 * _COLOURS[np.asarray(predicted[z]) % len(_COLOURS)]
        axes[row, 0].imshow(labels_rgb)
        axes[row, 0].set_title(f"z {z}: predicted labels", fontsize=9)
        for col, c in enumerate(chosen, start=1):
            p, t = predicted[z] == c, truth[z] == c
            image = grey * 0.7
            image[p & t] = [1.0, 0.9, 0.1]
            image[p & ~t] = [1.0, 0.1, 0.9]
            image[~p & t] = [0.1, 0.9, 1.0]
            axes[row, col].imshow(image)
            denominator = p.sum() + t.sum()
            dice = 2 * (p & t).sum() / denominator if denominator else float("nan")
            axes[row, col].set_title(f"{class_names[c]} (Dice {dice:.2f})", fontsize=9)
    for ax in axes.flat:
        ax.set_axis_off()
    fig.suptitle("yellow: correct, magenta: false positive, cyan: false negative", fontsize=9)
    fig.tight_layout()
    return save_png(fig, path, dpi=100)


def plot_meshes(
    path: str | os.PathLike[str], meshes: Sequence[Any], *, max_faces: int = 60_000,
    skip_labels: Sequence[int] = (1,),
) -> Path:
    """A 3D preview of meshes from :func:`emkit.segment.mesh_labels` (matplotlib, PNG).

    Each label has its colour; the cell body (label 1 by default, ``skip_labels``) is left
    out so the organelles inside show. Faces are subsampled to ``max_faces`` in all.
    """
    from matplotlib.figure import Figure
    from mpl_toolkits.mplot3d.art3d import Poly3DCollection

    shown = [m for m in meshes if m.label not in skip_labels] or list(meshes)
    fig = Figure(figsize=(7, 6))
    ax = fig.add_subplot(projection="3d")
    total = sum(len(m.faces) for m in shown) or 1
    rng = np.random.default_rng(0)
    lo, hi = np.full(3, np.inf), np.full(3, -np.inf)
    for m in shown:
        keep = max(1, int(len(m.faces) * min(1.0, max_faces / total)))
        faces = m.faces if keep >= len(m.faces) else m.faces[rng.choice(len(m.faces), keep,
                                                                        replace=False)]
        xyz = m.vertices_zyx_A[:, ::-1] / 1e4  # µm
        ax.add_collection3d(Poly3DCollection(xyz[faces], facecolor=_colour(m.label),
                                             edgecolor="none", alpha=0.9))
        lo, hi = np.minimum(lo, xyz.min(axis=0)), np.maximum(hi, xyz.max(axis=0))
    if np.all(np.isfinite(lo)):
        ax.set_xlim(lo[0], hi[0])
        ax.set_ylim(lo[1], hi[1])
        ax.set_zlim(lo[2], hi[2])
        ax.set_box_aspect(np.maximum(hi - lo, 1e-9))
    ax.set_xlabel("x (µm)")
    ax.set_ylabel("y (µm)")
    ax.set_zlabel("z (µm)")
    names = {m.label: m.class_name for m in shown}
    handles = [_legend_patch(_colour(k), n) for k, n in sorted(names.items())]
    ax.legend(handles=handles, fontsize=8, loc="upper left")
    return save_png(fig, path, dpi=110)


def _legend_patch(colour: np.ndarray, name: str) -> Any:
    from matplotlib.patches import Patch

    rgb = (float(colour[0]), float(colour[1]), float(colour[2]))
    return Patch(facecolor=rgb, label=name)
