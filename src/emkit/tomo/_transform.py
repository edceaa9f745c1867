"""Resample tilt images with per-image shifts (and an in-plane rotation), and validity masks.

The one shift convention of :mod:`emkit.tomo`: ``shifts_px[i] = (dy, dx)`` is the translation
that *aligns* raw image ``i``::

    aligned[i](y, x) = raw[i](y - dy, x - dx)

which is the translation part ``(DY, DX)`` of an IMOD ``.xf`` line. With an in-plane rotation
``A`` (2x2, acting on ``(x, y)`` about the image centre ``c``) the full IMOD mapping is
``r_aligned = A (r_raw - c) + c + d``.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from emkit.errors import InputError, ShapeError
from emkit.geometry import tilt_axis_rotation_xy


def image_center(shape: tuple[int, ...]) -> np.ndarray:
    """Centre ``(cy, cx)`` in pixel-index coordinates of images of ``shape`` ``(..., ny, nx)``.

    Pixel ``j`` covers ``[j - 0.5, j + 0.5]``, so the centre is ``(n - 1) / 2`` (IMOD's
    ``n / 2`` in its pixel-edge coordinates). The tilt axis runs through it.
    """
    ny, nx = shape[-2:]
    return np.array([(ny - 1) / 2.0, (nx - 1) / 2.0])


def _check_shifts(stack: np.ndarray, shifts_px: np.ndarray) -> np.ndarray:
    shifts = np.asarray(shifts_px, dtype=np.float64)
    if stack.ndim != 3:
        raise ShapeError(f"expected an image stack (n, y, x), got shape {stack.shape}")
    if shifts.shape != (stack.shape[0], 2):
        raise ShapeError(
            f"expected {stack.shape[0]} shifts (dy, dx), got an array of shape {shifts.shape}"
        )
    return shifts


def shift_images(
    stack: np.ndarray,
    shifts_px: np.ndarray,
    *,
    order: int = 3,
    fill: str | float = "mean",
) -> np.ndarray:
    """Translate every image of a stack by its own sub-pixel shift.

    Parameters
    ----------
    stack : ndarray, shape (n, y, x)
        Raw images.
    shifts_px : ndarray, shape (n, 2)
        ``(dy, dx)`` in pixels; ``out[i](y, x) = stack[i](y - dy, x - dx)``.
    order : int
        Spline order of the interpolation (1 linear, 3 cubic).
    fill : "mean" or float
        Value for pixels that come from outside the field of view; ``"mean"`` uses each
        image's own mean (no artificial edge for filters and back-projection).

    Returns
    -------
    ndarray, shape (n, y, x), float32
    """
    return transform_images(stack, shifts_px, order=order, fill=fill)


def transform_images(
    stack: np.ndarray,
    shifts_px: np.ndarray,
    *,
    tilt_axis_angle_deg: float | np.ndarray = 0.0,
    order: int = 3,
    fill: str | float = "mean",
) -> np.ndarray:
    """Rotate each image so the tilt axis lies along y, then translate it by its shift.

    Parameters
    ----------
    stack : ndarray, shape (n, y, x)
        Raw images.
    shifts_px : ndarray, shape (n, 2)
        ``(dy, dx)`` in pixels, applied after the rotation (IMOD ``.xf`` order).
    tilt_axis_angle_deg : float or ndarray of shape (n,)
        Tilt-axis angle of the raw images (see
        :func:`emkit.geometry.tilt_axis_rotation_xy`); 0 means no rotation.
    order : int
        Spline order of the interpolation.
    fill : "mean" or float
        Value outside the field of view.

    Returns
    -------
    ndarray, shape (n, y, x), float32
        The aligned stack.
    """
    stack = np.asarray(stack)
    shifts = _check_shifts(stack, shifts_px)
    angles = np.broadcast_to(np.asarray(tilt_axis_angle_deg, dtype=np.float64), (len(stack),))
    center = image_center(stack.shape)
    out = np.empty(stack.shape, dtype=np.float32)
    for i, image in enumerate(stack):
        image = image.astype(np.float32, copy=False)
        cval = float(image.mean()) if fill == "mean" else float(fill)
        if angles[i] == 0.0:
            # Integer shifts are exact and much faster than spline interpolation.
            if np.all(shifts[i] == np.round(shifts[i])):
                out[i] = _integer_shift(image, shifts[i].astype(int), cval)
            else:
                out[i] = ndimage.shift(
                    image, shifts[i], order=order, mode="constant", cval=cval, prefilter=order > 1
                )
            continue
        matrix, offset = _affine_yx(tilt_axis_rotation_xy(angles[i]), shifts[i], center)
        out[i] = ndimage.affine_transform(
            image, matrix, offset=offset, order=order, mode="constant", cval=cval
        )
    return out


def _integer_shift(image: np.ndarray, shift: np.ndarray, cval: float) -> np.ndarray:
    out = np.full_like(image, cval)
    dy, dx = int(shift[0]), int(shift[1])
    ny, nx = image.shape
    if abs(dy) >= ny or abs(dx) >= nx:
        return out
    out[max(dy, 0) : ny + min(dy, 0), max(dx, 0) : nx + min(dx, 0)] = image[
        max(-dy, 0) : ny + min(-dy, 0), max(-dx, 0) : nx + min(-dx, 0)
    ]
    return out


def _affine_yx(
    a_xy: np.ndarray, shift_yx: np.ndarray, center_yx: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``ndimage.affine_transform`` matrix and offset for ``r_ali = A (r - c) + c + d``."""
    # Swap (x, y) -> (y, x) ordering of both rows and columns.
    a_yx = a_xy[::-1, ::-1]
    inv = np.linalg.inv(a_yx)
    offset = center_yx - inv @ (center_yx + shift_yx)
    return inv, offset


def validity_masks(
    shape: tuple[int, int, int],
    shifts_px: np.ndarray,
    *,
    tilt_axis_angle_deg: float | np.ndarray = 0.0,
    margin_px: float = 1.0,
    rows: tuple[int, int] | None = None,
) -> np.ndarray:
    """Pixels of each aligned image whose source lies inside the raw field of view.

    Parameters
    ----------
    shape : (n, ny, nx)
        Shape of the stack.
    shifts_px : ndarray, shape (n, 2)
        ``(dy, dx)`` alignment shifts in pixels.
    tilt_axis_angle_deg : float or ndarray of shape (n,)
        Tilt-axis angle of the raw images.
    margin_px : float
        Also drop pixels closer than this to the raw border (interpolation needs neighbours).
    rows : (int, int), optional
        Only aligned rows ``start:stop`` (a slab of a streamed reconstruction).

    Returns
    -------
    ndarray of bool, shape (n, ny, nx), or (n, stop - start, nx) with ``rows``
        True where the aligned pixel is real data.
    """
    n, ny, nx = shape
    shifts = _check_shifts(np.empty((n, 1, 1)), shifts_px)
    angles = np.broadcast_to(np.asarray(tilt_axis_angle_deg, dtype=np.float64), (n,))
    center = image_center(shape)
    y0, y1 = (0, ny) if rows is None else rows
    yy, xx = np.meshgrid(np.arange(y0, y1, dtype=np.float64), np.arange(nx), indexing="ij")
    coords = np.stack([yy.ravel(), xx.ravel()])
    masks = np.empty((n, y1 - y0, nx), dtype=bool)
    for i in range(n):
        matrix, offset = _affine_yx(tilt_axis_rotation_xy(angles[i]), shifts[i], center)
        src = matrix @ coords + offset[:, None]
        inside = (
            (src[0] >= margin_px - 0.5)
            & (src[0] <= ny - 0.5 - margin_px)
            & (src[1] >= margin_px - 0.5)
            & (src[1] <= nx - 0.5 - margin_px)
        )
        masks[i] = inside.reshape(y1 - y0, nx)
    return masks


def remove_gauge(
    shifts_px: np.ndarray, tilt_angles_deg: np.ndarray, *, gauge: str = "offset"
) -> np.ndarray:
    """Remove the part of a shift series that a tilt series cannot determine.

    Parameters
    ----------
    shifts_px : ndarray, shape (n, 2)
        ``(dy, dx)`` shifts (or shift errors) in pixels.
    tilt_angles_deg : ndarray, shape (n,)
        Tilt angles in degrees.
    gauge : {"offset", "rigid"}
        ``"offset"`` subtracts the mean shift (a common translation of every image).
        ``"rigid"`` removes exactly the shifts that a translated specimen makes: a move by
        ``(y0, x0, z0)`` shifts image ``i`` by ``(y0, x0 cos t_i + z0 sin t_i)``, which only
        moves the tomogram and is invisible in the data. So y loses its mean and x its
        least-squares fit by ``cos t`` and ``sin t``; a constant x shift is *not* removed,
        because it moves the tilt axis, which the data do determine.

    Returns
    -------
    ndarray, shape (n, 2)
    """
    shifts = np.asarray(shifts_px, dtype=np.float64)
    out = shifts - shifts.mean(axis=0)
    if gauge == "offset":
        return out
    if gauge != "rigid":
        raise InputError(f"gauge must be 'offset' or 'rigid', not {gauge!r}")
    t = np.deg2rad(np.asarray(tilt_angles_deg, dtype=np.float64))
    basis = np.stack([np.cos(t), np.sin(t)], axis=1)
    coef, *_ = np.linalg.lstsq(basis, shifts[:, 1], rcond=None)
    out[:, 1] = shifts[:, 1] - basis @ coef
    return out


def shift_rmse(
    estimated_px: np.ndarray,
    true_px: np.ndarray,
    tilt_angles_deg: np.ndarray | None = None,
    *,
    gauge: str = "offset",
) -> float:
    """Root-mean-square error of 2D shifts (pixels) after removing the undetermined gauge.

    Parameters
    ----------
    estimated_px, true_px : ndarray, shape (n, 2)
        ``(dy, dx)`` alignment shifts in pixels.
    tilt_angles_deg : ndarray, shape (n,), optional
        Needed for ``gauge="rigid"``.
    gauge : {"offset", "rigid"}
        See :func:`remove_gauge`.

    Returns
    -------
    float
        ``sqrt(mean_i |e_i|^2)`` with ``e`` the error after gauge removal (pixels).
    """
    error = np.asarray(estimated_px, dtype=np.float64) - np.asarray(true_px, dtype=np.float64)
    if gauge == "rigid" and tilt_angles_deg is None:
        raise InputError("gauge='rigid' needs the tilt angles")
    angles = np.zeros(len(error)) if tilt_angles_deg is None else tilt_angles_deg
    error = remove_gauge(error, angles, gauge=gauge)
    return float(np.sqrt(np.mean(np.sum(error**2, axis=1))))


def projection_background(stack: np.ndarray) -> np.ndarray:
    """A robust background level per image: its median (float64, shape ``(n,)``).

    Adding a constant ``C`` to the data adds exactly ``C`` to it, so subtracting it makes
    alignment and reconstruction independent of any constant offset (uint16 counts stored
    as int16 minus 32768, a detector pedestal, the ``I0`` of a log). Where the specimen
    covers less than half the field (a particle in vacuum, a HAADF series) it is the
    vacuum level; in a slab it is a level inside the specimen, which the joint alignment
    refines further as one unknown offset per projection.

    Parameters
    ----------
    stack : ndarray, shape (n, y, x)

    Returns
    -------
    ndarray, shape (n,)
    """
    if stack.ndim != 3:
        raise ShapeError(f"expected an image stack (n, y, x), got shape {stack.shape}")
    flat = stack.reshape(len(stack), -1)
    step = max(1, flat.shape[1] // 262144)  # at most ~256 k values per image
    return np.median(np.asarray(flat[:, ::step], dtype=np.float64), axis=1)


def remove_background(stack: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """``(stack - background) / scale`` as float32, the background and the scale.

    ``background`` is :func:`projection_background`; ``scale`` the standard deviation of
    the background-free stack (1 for a constant stack), so the result is in units of the
    data's own spread: objectives computed on it compare across data sets.
    """
    background = projection_background(stack)
    centred = np.asarray(stack, dtype=np.float32) - background[:, None, None].astype(np.float32)
    scale = float(np.std(centred, dtype=np.float64)) or 1.0
    centred /= np.float32(scale)
    return centred, background, scale
