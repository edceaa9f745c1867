"""Figures for section registration: two-colour overlays and a displacement-field plot.

An overlay shows the fixed image in magenta and the warped moving image in green: where
they agree the tissue is grey, where they disagree it is coloured.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from emkit.io._atomic import atomic_output
from emkit.report._figure import new_figure, save_png

__all__ = ["overlay_image", "save_overlay", "save_field_figure", "save_stack_report"]


def _unit(image: np.ndarray, valid: np.ndarray | None) -> np.ndarray:
    """Scale to [0, 1] by the 1-99 percentiles of the valid pixels."""
    data = image.astype(np.float32)
    sample = data[valid] if valid is not None and valid.any() else data.ravel()
    lo, hi = np.percentile(sample, [1.0, 99.0])
    return np.clip((data - lo) / max(float(hi - lo), 1e-6), 0.0, 1.0)


def overlay_image(
    fixed: np.ndarray, warped: np.ndarray, *, valid: np.ndarray | None = None
) -> np.ndarray:
    """Fixed in magenta, warped in green, as one RGB image.

    Parameters
    ----------
    fixed, warped : ndarray, shape (H, W)
        Any real dtype.
    valid : ndarray of bool, shape (H, W), optional
        Pixels without data (defect, outside) are shown dark blue.

    Returns
    -------
    ndarray of uint8, shape (H, W, 3)
        RGB.
    """
    f = _unit(fixed, valid)
    m = _unit(warped, valid)
    rgb = np.stack([f, m, f], axis=-1)
    if valid is not None:
        rgb[~valid] = (0.0, 0.0, 0.35)
    return np.rint(rgb * 255).astype(np.uint8)


def save_overlay(
    path: str | os.PathLike[str],
    fixed: np.ndarray,
    warped: np.ndarray,
    *,
    valid: np.ndarray | None = None,
    max_size: int = 2048,
) -> Path:
    """Write :func:`overlay_image` as a PNG (reduced so the long side is <= ``max_size``).

    A key in the top-left corner says which colour is which: a person opening the PNG
    on its own should not have to know the convention.
    """
    import cv2

    rgb = overlay_image(fixed, warped, valid=valid)
    scale = min(1.0, max_size / max(rgb.shape[:2]))
    if scale < 1.0:
        rgb = cv2.resize(rgb, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    _draw_key(rgb, [("fixed", (255, 0, 255)), ("warped", (0, 255, 0)), ("agree", (255, 255, 255))])
    with atomic_output(path) as tmp:
        if not cv2.imwrite(str(tmp), rgb[..., ::-1]):
            raise OSError(f"{path}: could not write the overlay PNG")
    return Path(path)


def _draw_key(rgb: np.ndarray, entries: list[tuple[str, tuple[int, int, int]]]) -> None:
    """Draw coloured labels on a dark box in the top-left corner of an RGB image, in place."""
    import cv2

    height = rgb.shape[0]
    font_scale = max(0.4, height / 1400)
    thickness = max(1, round(font_scale * 1.5))
    line = round(28 * font_scale)
    width = round(130 * font_scale)
    box = rgb[: line * len(entries) + line // 2, : width + line // 2]
    box[...] = box // 4
    for i, (label, colour) in enumerate(entries):
        cv2.putText(
            rgb,
            label,
            (line // 3, line * (i + 1)),
            cv2.FONT_HERSHEY_SIMPLEX,
            font_scale,
            colour,
            thickness,
            cv2.LINE_AA,
        )


def save_field_figure(
    path: str | os.PathLike[str],
    field: np.ndarray,
    *,
    valid: np.ndarray | None = None,
    title: str = "displacement field",
) -> Path:
    """Plot the field's magnitude with a sparse quiver on top and write it as a PNG.

    Parameters
    ----------
    field : ndarray of float32, shape (2, H, W)
        ``(dy, dx)`` in pixels per fixed pixel.
    valid : ndarray of bool, shape (H, W), optional
        Pixels without data are left blank.
    """
    _, h, w = field.shape
    magnitude = np.hypot(field[0], field[1])
    shown = np.where(valid, magnitude, np.nan) if valid is not None else magnitude
    step = max(1, max(h, w) // 24)
    ys, xs = np.mgrid[step // 2 : h : step, step // 2 : w : step]
    fig, ax = new_figure(figsize=(6, 6 * h / w + 0.5), dpi=120)
    im = ax.imshow(shown, cmap="viridis")
    ax.quiver(xs, ys, field[1][ys, xs], field[0][ys, xs], color="white", angles="xy")
    fig.colorbar(im, ax=ax, label="|displacement| (px)", shrink=0.8)
    ax.set_title(title)
    ax.set_axis_off()
    save_png(fig, path, bbox_inches="tight")
    return Path(path)


def save_stack_report(
    folder: str | os.PathLike[str],
    thumbnails: dict[int, tuple[np.ndarray, np.ndarray]],
    residual_px: np.ndarray | None,
) -> Path:
    """A stack's report: one overlay thumbnail per section and a per-section residual plot.

    ``overlay_NNNN.png`` shows aligned section ``N - 1`` (magenta) over section ``N``
    (green); ``residuals.png`` plots, per section, the RMS misfit of the global solution
    to the pairs that touch it (damaged sections, which follow their anchor, have none;
    ``residual_px`` None, as for a chained stack: no plot).
    Sections whose overlays are grey where both have tissue line up.
    """
    from emkit.io import make_output_folder

    out = make_output_folder(folder)
    order = sorted(thumbnails)
    for prev, cur in zip(order[:-1], order[1:]):
        a, va = thumbnails[prev]
        b, vb = thumbnails[cur]
        save_overlay(out / f"overlay_{cur:04d}.png", a, b, valid=va & vb, max_size=1024)
    if residual_px is None:
        return out  # chaining: no global solution, no misfit to plot
    residual = np.asarray(residual_px, dtype=float)
    fig, ax = new_figure(figsize=(7, 3.2), dpi=120)
    index = np.arange(residual.size)
    ax.plot(index, residual, "o-", ms=3, color="#1f77b4", label="residual (RMS, px)")
    damaged = np.flatnonzero(~np.isfinite(residual))
    for i in damaged:
        ax.axvline(i, color="#d62728", alpha=0.3, lw=1)
    if damaged.size:
        ax.plot([], [], color="#d62728", alpha=0.5, label="damaged (anchored)")
    ax.set_xlabel("section")
    ax.set_ylabel("pair misfit (px)")
    ax.set_title("global relaxation: misfit to the pair fields per section")
    ax.set_ylim(bottom=0)
    ax.legend(loc="upper right", fontsize=8)
    save_png(fig, out / "residuals.png", bbox_inches="tight")
    return out
