"""Tomogram reconstruction from an aligned tilt series: WBP, SIRT and CGLS.

All three use :class:`emkit.ops.SingleAxisProjector` (GPU when torch sees one). The volume
is ``(nz, ny, nx)`` with the tilt axis along y through the centre of the x-z plane; a
projection ``(ny, nx)`` at tilt ``t`` sees voxel ``(z, x)`` at detector position
``(x - cx) cos t + (z - cz) sin t + cx`` (IMOD's convention).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np

from emkit.errors import InputError
from emkit.tomo._prealign import check_tilt_series
from emkit.tomo._transform import transform_images

log = logging.getLogger(__name__)

METHODS = ("wbp", "sirt", "cgls")


def _projector(shape: tuple[int, int, int], angles: np.ndarray, device: str | None) -> Any:
    from emkit.ops import SingleAxisProjector

    return SingleAxisProjector(shape, angles, device=device)


def angular_weights(tilt_angles_deg: np.ndarray) -> np.ndarray:
    """Angle (radians) each projection stands for: half the gap to each neighbour.

    The ends get the same half-gap on their outer side, so evenly spaced angles all get
    their step. Used to weight the back-projection of WBP for uneven tilt schemes.
    """
    angles = np.deg2rad(np.asarray(tilt_angles_deg, dtype=np.float64))
    order = np.argsort(angles)
    sorted_angles = angles[order]
    gaps = np.diff(sorted_angles)
    if len(gaps) == 0:
        return np.full(len(angles), np.pi)
    left = np.concatenate([[gaps[0]], gaps])
    right = np.concatenate([gaps, [gaps[-1]]])
    weights = np.empty(len(angles))
    weights[order] = 0.5 * (left + right)
    return weights


def reconstruct_wbp(
    projections: np.ndarray,
    tilt_angles_deg: np.ndarray,
    *,
    thickness: int,
    window: str = "hann",
    cutoff: float = 1.0,
    device: str | None = None,
) -> np.ndarray:
    """Weighted (filtered) back-projection.

    Parameters
    ----------
    projections : ndarray, shape (n, ny, nx)
        Aligned tilt series (tilt axis along y, at the centre column).
    tilt_angles_deg : ndarray, shape (n,)
        Tilt angles in degrees.
    thickness : int
        Number of z slices ``nz`` of the tomogram (pixels).
    window, cutoff : str, float
        Apodisation of the ramp filter and its cut-off as a fraction of Nyquist (a low-pass,
        see :func:`emkit.ops.ramp_filter`).
    device : str, optional
        Torch device of the projector (None: CUDA when available).

    Returns
    -------
    ndarray, shape (thickness, ny, nx), float32
        Density in the units of the projections per pixel of path length.
    """
    from emkit.ops import ramp_filter

    projections = np.asarray(projections, dtype=np.float32)
    n, ny, nx = projections.shape
    filtered = ramp_filter(projections, window=window, cutoff=cutoff)  # type: ignore[arg-type]
    filtered *= angular_weights(tilt_angles_deg).astype(np.float32)[:, None, None]
    projector = _projector((int(thickness), ny, nx), tilt_angles_deg, device)
    return np.asarray(projector.adjoint(filtered), dtype=np.float32)


def reconstruct_sirt(
    projections: np.ndarray,
    tilt_angles_deg: np.ndarray,
    *,
    thickness: int,
    iterations: int = 50,
    masks: np.ndarray | None = None,
    nonnegative: bool = False,
    device: str | None = None,
    callback: Callable[[int, np.ndarray], None] | None = None,
) -> np.ndarray:
    """Simultaneous iterative reconstruction (SIRT) with optional per-pixel data masks.

    ``u <- u + C A^T R M (b - A u)`` with ``R`` the inverse ray lengths and ``C`` the inverse
    voxel sums, which converges to the (masked, weighted) least-squares solution.

    Parameters
    ----------
    projections : ndarray, shape (n, ny, nx)
        Aligned tilt series.
    tilt_angles_deg : ndarray, shape (n,)
        Tilt angles in degrees.
    thickness : int
        Number of z slices.
    iterations : int
        Number of SIRT iterations.
    masks : ndarray of bool, shape (n, ny, nx), optional
        Pixels to use (e.g. the validity masks of an alignment); others are ignored.
    nonnegative : bool
        Clip negative densities after every iteration.
    device : str, optional
        Torch device of the projector.
    callback : callable, optional
        ``callback(iteration, volume)`` after each iteration.

    Returns
    -------
    ndarray, shape (thickness, ny, nx), float32
    """
    b = np.asarray(projections, dtype=np.float32)
    n, ny, nx = b.shape
    projector = _projector((int(thickness), ny, nx), tilt_angles_deg, device)
    ray = projector.ray_sums()[:, None, :]
    inv_ray = np.where(ray > 1e-6, 1.0 / np.maximum(ray, 1e-6), 0.0).astype(np.float32)
    weight = inv_ray if masks is None else inv_ray * masks.astype(np.float32)
    if masks is None:
        colsum = projector.voxel_sums()[:, None, :]
    else:
        colsum = projector.adjoint(masks.astype(np.float32))
    inv_col = np.where(colsum > 1e-6, 1.0 / np.maximum(colsum, 1e-6), 0.0).astype(np.float32)
    u = np.zeros((int(thickness), ny, nx), dtype=np.float32)
    for k in range(iterations):
        residual = (b - projector.forward(u)) * weight
        u += inv_col * projector.adjoint(residual)
        if nonnegative:
            np.maximum(u, 0, out=u)
        if callback is not None:
            callback(k, u)
    return u


def reconstruct_cgls(
    projections: np.ndarray,
    tilt_angles_deg: np.ndarray,
    *,
    thickness: int,
    iterations: int = 20,
    masks: np.ndarray | None = None,
    initial: np.ndarray | None = None,
    scale: float = 1.0,
    device: str | None = None,
    callback: Callable[[int, np.ndarray], None] | None = None,
) -> np.ndarray:
    """Conjugate-gradient least squares: minimise ``||M (s A u - b)||^2`` over the volume.

    Early stopping (``iterations``) is the regulariser: few iterations give a smooth
    tomogram, many fit the noise.

    Parameters
    ----------
    projections : ndarray, shape (n, ny, nx)
        Aligned tilt series.
    tilt_angles_deg : ndarray, shape (n,)
        Tilt angles in degrees.
    thickness : int
        Number of z slices.
    iterations : int
        Number of CG iterations.
    masks : ndarray of bool, shape (n, ny, nx), optional
        Pixels to use; others are ignored.
    initial : ndarray, shape (thickness, ny, nx), optional
        Start volume (default zeros).
    scale : float
        Path length of one voxel in detector pixels, ``s`` above (the binning factor when
        the volume is binned relative to a density scale kept across levels).
    device : str, optional
        Torch device of the projector.
    callback : callable, optional
        ``callback(iteration, volume)`` after each iteration.

    Returns
    -------
    ndarray, shape (thickness, ny, nx), float32
    """
    b = np.asarray(projections, dtype=np.float32)
    n, ny, nx = b.shape
    projector = _projector((int(thickness), ny, nx), tilt_angles_deg, device)
    m = None if masks is None else masks.astype(np.float32)

    def forward(u: np.ndarray) -> np.ndarray:
        p = projector.forward(u) * np.float32(scale)
        return p if m is None else p * m

    def adjoint(p: np.ndarray) -> np.ndarray:
        if m is not None:
            p = p * m
        return projector.adjoint(p) * np.float32(scale)

    if initial is None:
        u = np.zeros((int(thickness), ny, nx), dtype=np.float32)
        r = b if m is None else b * m
    else:
        u = np.asarray(initial, dtype=np.float32).copy()
        r = (b if m is None else b * m) - forward(u)
    r = r.astype(np.float64)
    s = adjoint(r.astype(np.float32)).astype(np.float64)
    d = s.copy()
    gamma = float(np.vdot(s, s))
    for k in range(iterations):
        if gamma <= 0:
            break
        q = forward(d.astype(np.float32)).astype(np.float64)
        qq = float(np.vdot(q, q))
        if qq <= 0:
            break
        alpha = gamma / qq
        u += (alpha * d).astype(np.float32)
        r -= alpha * q
        s = adjoint(r.astype(np.float32)).astype(np.float64)
        gamma_new = float(np.vdot(s, s))
        d = s + (gamma_new / gamma) * d
        gamma = gamma_new
        if callback is not None:
            callback(k, u)
    return u


def central_crop_for_binning(stack: np.ndarray, factor: int) -> np.ndarray:
    """Crop the image sides of a stack ``(n, y, x)`` to multiples of ``factor``, centred."""
    if factor == 1:
        return stack
    _, ny, nx = stack.shape
    ry, rx = ny % factor, nx % factor
    return stack[:, ry // 2 : ny - (ry - ry // 2), rx // 2 : nx - (rx - rx // 2)]


def binning_centre_offset(shape: tuple[int, ...], factor: int) -> np.ndarray:
    """``(dy, dx)`` in unbinned pixels from the image centre to the centre of the cropped,
    binned image (-0.5 where an odd number of pixels is cropped, else 0).

    Shifting the images by this before binning keeps the tilt axis on the binned
    image's centre.
    """
    ny, nx = shape[-2:]
    ry, rx = ny % factor, nx % factor
    return np.array([ry // 2 - ry / 2.0, rx // 2 - rx / 2.0])


def reconstruction_shifts(
    shifts_px: np.ndarray | None,
    tilt_angles_deg: np.ndarray,
    stack_shape: tuple[int, ...],
    *,
    binning: int,
    z_offset_px: float,
) -> np.ndarray:
    """The shifts ``(n, 2)`` applied before binning: the alignment, the slab offset and the
    binning-centre correction (unbinned pixels)."""
    n = stack_shape[0]
    shifts = np.zeros((n, 2)) if shifts_px is None else np.array(shifts_px, dtype=np.float64)
    if z_offset_px:
        # A slab centred at z0 projects shifted by z0 sin(t); undo that so the slab is central.
        shifts[:, 1] -= z_offset_px * np.sin(np.deg2rad(tilt_angles_deg))
    if binning > 1:
        # Keep the tilt axis on the centre of the cropped, binned images.
        shifts = shifts + binning_centre_offset(stack_shape, binning)
    return shifts


def reconstruct(
    stack: np.ndarray,
    tilt_angles_deg: np.ndarray,
    *,
    method: str = "wbp",
    thickness: int,
    binning: int = 1,
    shifts_px: np.ndarray | None = None,
    tilt_axis_angle_deg: float = 0.0,
    iterations: int | None = None,
    cutoff: float = 1.0,
    window: str = "hann",
    z_offset_px: float = 0.0,
    y_range: tuple[int, int] | None = None,
    use_masks: bool = True,
    subtract_background: bool = True,
    device: str | None = None,
    callback: Callable[[int, np.ndarray], None] | None = None,
) -> np.ndarray:
    """Align (optionally), bin and reconstruct a tilt series.

    Each image first loses its median (:func:`emkit.tomo.projection_background`), so a
    constant added to the data does not change the tomogram and vacuum reconstructs as 0.

    Parameters
    ----------
    stack : ndarray, shape (n, y, x)
        Raw (or already aligned) tilt series.
    tilt_angles_deg : ndarray, shape (n,)
        Tilt angles in degrees.
    method : {"wbp", "sirt", "cgls"}
        Weighted back-projection, SIRT or CG least squares.
    thickness : int
        Tomogram thickness in *unbinned* pixels (the output has ``thickness // binning``
        slices).
    binning : int
        Bin the aligned images by this factor first (the voxel size grows by it).
    shifts_px : ndarray, shape (n, 2), optional
        ``(dy, dx)`` alignment shifts in unbinned pixels (see :mod:`emkit.tomo`).
    tilt_axis_angle_deg : float
        In-plane tilt-axis angle of the raw images (rotated onto y before reconstructing).
    iterations : int, optional
        SIRT / CGLS iterations (defaults 50 / 20).
    cutoff, window : float, str
        WBP low-pass (fraction of Nyquist) and ramp apodisation.
    z_offset_px : float
        Centre the slab this many unbinned pixels above (+z) the tilt axis.
    y_range : (int, int), optional
        Reconstruct only binned rows ``y_range[0] : y_range[1]`` (slices along the axis).
    use_masks : bool
        SIRT/CGLS ignore pixels that the alignment brought in from outside the field of view.
    subtract_background : bool
        Subtract each image's median first (default); False reconstructs the values as given.
    device : str, optional
        Torch device (None: CUDA when available).
    callback : callable, optional
        ``callback(iteration, volume)`` for the iterative methods.

    Returns
    -------
    ndarray, shape (thickness // binning, ny', nx // binning), float32
    """
    stack, angles = check_tilt_series(stack, tilt_angles_deg)
    if method not in METHODS:
        raise InputError(f"unknown reconstruction method {method!r}; choose one of {METHODS}")
    if subtract_background:
        from emkit.tomo._transform import projection_background

        stack = stack - projection_background(stack)[:, None, None].astype(np.float32)
    if binning < 1:
        raise InputError(f"binning must be >= 1, got {binning}")
    nz = int(thickness) // binning
    if nz < 1:
        raise InputError(f"thickness {thickness} is less than one binned voxel ({binning} px)")
    shifts = reconstruction_shifts(
        shifts_px, angles, stack.shape, binning=binning, z_offset_px=z_offset_px
    )
    masks = None
    if np.any(shifts != 0) or tilt_axis_angle_deg:
        aligned = transform_images(stack, shifts, tilt_axis_angle_deg=tilt_axis_angle_deg)
        if use_masks and method != "wbp":
            from emkit.tomo._transform import validity_masks

            masks = validity_masks(
                stack.shape, shifts, tilt_axis_angle_deg=tilt_axis_angle_deg
            )
    else:
        aligned = stack
    if binning > 1:
        from emkit.ops import bin_image

        aligned = bin_image(central_crop_for_binning(aligned, binning), binning)
        if masks is not None:
            cropped = central_crop_for_binning(masks.astype(np.float32), binning)
            masks = bin_image(cropped, binning) > 0.999
    if y_range is not None:
        y0, y1 = (int(v) for v in y_range)
        if not 0 <= y0 < y1 <= aligned.shape[1]:
            raise InputError(
                f"y range {y0}:{y1} is outside the {aligned.shape[1]} (binned) rows"
            )
        aligned = aligned[:, y0:y1]
        masks = None if masks is None else masks[:, y0:y1]
    aligned = np.ascontiguousarray(aligned, dtype=np.float32)
    # Line integrals of a binned volume run over binned voxels; divide by the binning so that
    # the density per unbinned pixel of path comes out the same at every binning.
    if binning > 1:
        aligned /= np.float32(binning)
    if method == "wbp":
        return reconstruct_wbp(
            aligned, angles, thickness=nz, window=window, cutoff=cutoff, device=device
        )
    if method == "sirt":
        return reconstruct_sirt(
            aligned,
            angles,
            thickness=nz,
            iterations=50 if iterations is None else iterations,
            masks=masks,
            device=device,
            callback=callback,
        )
    return reconstruct_cgls(
        aligned,
        angles,
        thickness=nz,
        iterations=20 if iterations is None else iterations,
        masks=masks,
        device=device,
        callback=callback,
    )
