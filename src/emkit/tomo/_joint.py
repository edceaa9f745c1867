"""Joint alignment and reconstruction (FLARA, done right).

Minimises over the volume ``u`` and one 2D shift ``s_i`` per projection::

    1/2 sum_i || M_i (A_i u + c_i - T(s_i) b_i) ||^2  +  lam * TV(u)

on the data less a robust background per projection (its median) and divided by their
standard deviation, so that neither a constant added to the data nor its scale changes
anything; ``c_i`` is one more offset per projection, solved exactly after every volume
step (the background of a slab is not zero where the median says). At the coarser
levels of the coarse-to-fine schedule the TV weight is ``lam (finest / f)^2``
(``coarse_lam_power``). ``T(s) b`` resamples the *original* image ``b`` with shift
``s`` (never an already shifted image, so interpolation blur does not accumulate) and
``M_i`` keeps the pixels that the shift brings from inside the field of view (and a user
mask).

The volume step is Chambolle-Pock's primal-dual algorithm with ``K = [A / ||A||; grad]``, so
``||K||^2 <= 1 + 12`` and the steps ``tau = sigma = 0.99 / ||K||`` satisfy
``tau sigma ||K||^2 < 1``; the extrapolated iterate ``u_bar`` is kept apart from ``u`` (two
defects of the original FLARA code: a wrong primal step and ``u_bar`` overwriting ``u``).
After a few primal-dual steps each shift gets one Gauss-Newton (Lucas-Kanade) step on its
masked residual, using the gradient of the model projection ``A_i u``. The shifts that only
translate the specimen (``y0`` and ``x0 cos t + z0 sin t``, see
:func:`emkit.tomo.remove_gauge`) are projected out after every step: the gauge. All of
this runs coarse-to-fine over binning levels, starting each level from a CGLS
reconstruction with the current shifts.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from emkit.errors import FileFormatError, InputError, MismatchError, with_path
from emkit.tomo._prealign import check_tilt_series
from emkit.tomo._reconstruct import (
    binning_centre_offset,
    central_crop_for_binning,
    reconstruct_cgls,
)
from emkit.tomo._transform import (
    remove_background,
    remove_gauge,
    transform_images,
    validity_masks,
)

log = logging.getLogger(__name__)

# 2: the fingerprint hashes the whole series, the mask and the start; 3: the state is in
# units of the background-free data's spread and holds the per-projection offsets; 4: the
# shift step low-passes by >= 1 level pixel and rotated-in corners are masked; 5: the shifts
# are found in a box of box_fraction of the thickness; 6: coarser levels have a weaker TV
# term (coarse_lam_power) and the coarsest level 60 iterations by default
_CHECKPOINT_VERSION = 6
_FILL_ITERATIONS = 5  # outer iterations over the whole thickness after a thinner box
_COARSEST_ITERATIONS = 60  # default outer iterations at the first level
_FINER_ITERATIONS = 10  # and at each level after it
# Gaussian sigma (voxels of the level) of the volume the tilt-axis derivative is taken from
_AXIS_VOLUME_SMOOTHING_VOX = 2.0


@dataclass
class JointAlignment:
    """Result of :func:`align_joint`.

    Attributes
    ----------
    shifts_px : ndarray, shape (n, 2)
        ``(dy, dx)`` alignment shifts in unbinned pixels (rigid gauge removed).
    volume : ndarray, shape (nz, ny, nx), float32
        TV-regularised reconstruction at the last (finest) level, density per unbinned
        pixel of path length; ``nz = thickness // binning_levels[-1]``.
    history : list of dict
        One entry per outer iteration: ``level`` (binning), ``iteration``,
        ``data_residual`` (``1/2 ||M (A u + c - T(s) b)||^2``), ``tv`` (``TV(u)``) and
        ``objective`` (their sum with the level's TV weight, ``lam`` at the finest
        level), all in units of the background-free data
        (divided by its standard deviation, so they compare across data sets);
        ``residual_fraction`` (``||M r||^2 / ||M b||^2``: the part of the data the model
        does not explain), ``relative_change`` (of the objective since the previous
        iteration of the same level; NaN at a level's first), ``max_shift_change_px``
        (unbinned pixels); with ``measure_tilt_axis``, ``tilt_axis_step_deg`` (NaN but at
        the last iteration of each level). After an alignment in a box thinner than the
        thickness (``box_fraction``), 5 more records with ``whole_thickness`` = 1: the
        volume over the whole thickness, shifts fixed (``iteration`` counts from 0 again).
    tilt_axis_angle_deg : float
        The in-plane tilt-axis angle the stack was rotated by (as given).
    binning : int
        Binning of ``volume`` (the last level).
    """

    shifts_px: np.ndarray
    volume: np.ndarray
    history: list[dict[str, float]] = field(default_factory=list)
    tilt_axis_angle_deg: float = 0.0
    binning: int = 1


def _bin(stack: np.ndarray, factor: int) -> np.ndarray:
    if factor == 1:
        return np.ascontiguousarray(stack, dtype=np.float32)
    from emkit.ops import bin_image

    cropped = central_crop_for_binning(stack, factor)
    return np.ascontiguousarray(bin_image(cropped, factor), dtype=np.float32)


def _bin_mask(mask: np.ndarray, factor: int) -> np.ndarray:
    if factor == 1:
        return mask.astype(bool)
    return _bin(mask.astype(np.float32), factor) > 0.999


def _upsample(volume: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """Linear interpolation of a binned volume onto a finer grid (block centres aligned)."""
    from scipy import ndimage

    if tuple(volume.shape) == tuple(shape):
        return np.asarray(volume, dtype=np.float32)
    factors = [o / i for o, i in zip(shape, volume.shape)]
    # Output voxel j sits at input position (j + 0.5) / f - 0.5 (centres of binned blocks).
    coords = np.meshgrid(
        *[(np.arange(n) + 0.5) / f - 0.5 for n, f in zip(shape, factors)], indexing="ij"
    )
    return ndimage.map_coordinates(volume, coords, order=1, mode="nearest").astype(np.float32)


def _shift_step(
    model: np.ndarray,
    residual: np.ndarray,
    masks: np.ndarray,
    *,
    max_step: float,
    smooth_px: float = 0.0,
    min_pixels: int = 16,
) -> np.ndarray:
    """One Gauss-Newton step per image: ``delta = H^-1 sum M g r`` with ``g = grad(model)``.

    ``residual = T(s) b - A u``; ``T(s + delta) b ~ T(s) b - delta . grad``, so the step that
    best cancels the residual solves the 2x2 normal equations.
    """
    model, residual, m = _smoothed(model, residual, masks, smooth_px)
    gy, gx = np.gradient(model, axis=(1, 2))
    hyy, hxx, hxy, det = _shift_hessian(m, gy, gx)
    ry = np.asarray(np.sum(m * gy * residual, axis=(1, 2), dtype=np.float64))
    rx = np.asarray(np.sum(m * gx * residual, axis=(1, 2), dtype=np.float64))
    step = np.zeros((len(model), 2))
    ok = (det > 0) & (m.sum(axis=(1, 2)) >= min_pixels)
    step[ok, 0] = (hxx[ok] * ry[ok] - hxy[ok] * rx[ok]) / det[ok]
    step[ok, 1] = (hyy[ok] * rx[ok] - hxy[ok] * ry[ok]) / det[ok]
    norm = np.linalg.norm(step, axis=1)
    too_big = norm > max_step
    step[too_big] *= (max_step / norm[too_big])[:, None]
    return step


def _smoothed(
    model: np.ndarray, residual: np.ndarray, masks: np.ndarray, smooth_px: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Model, masked residual and mask (float) low-passed by ``smooth_px`` (sigma): a step
    on low-passed images does not align noise."""
    m = masks.astype(np.float32)
    if smooth_px > 0.1:
        from scipy import ndimage

        sigma = (0.0, smooth_px, smooth_px)
        model = ndimage.gaussian_filter(model, sigma)
        residual = ndimage.gaussian_filter(residual * m, sigma)
        m = (ndimage.gaussian_filter(m, sigma) > 0.999).astype(np.float32)
    return model, residual, m


def _shift_hessian(
    m: np.ndarray, gy: np.ndarray, gx: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per image the damped 2x2 Gauss-Newton matrix of a shift: ``hyy, hxx, hxy, det``."""
    hyy = np.asarray(np.sum(m * gy * gy, axis=(1, 2), dtype=np.float64))
    hxx = np.asarray(np.sum(m * gx * gx, axis=(1, 2), dtype=np.float64))
    hxy = np.asarray(np.sum(m * gx * gy, axis=(1, 2), dtype=np.float64))
    # A little Levenberg damping keeps nearly featureless images (tiny H) from jumping.
    damp = 1e-3 * (hyy + hxx) / 2 + 1e-12
    hyy, hxx = hyy + damp, hxx + damp
    return hyy, hxx, hxy, hyy * hxx - hxy * hxy


def _rotation_derivative(images: np.ndarray) -> np.ndarray:
    """``d/d(angle)`` of turning each (y, x) plane of ``images`` about its centre, per
    degree: ``(x gy - y gx) pi / 180``. For projections this is the derivative of
    ``transform_images(images, 0, tilt_axis_angle_deg=angle)`` (checked against finite
    differences in the tests)."""
    from emkit.tomo._transform import image_center

    gy, gx = np.gradient(images, axis=(1, 2))
    cy, cx = image_center(images.shape)[-2:]
    y = (np.arange(images.shape[1], dtype=np.float32) - np.float32(cy))[:, None]
    x = (np.arange(images.shape[2], dtype=np.float32) - np.float32(cx))[None, :]
    return (x * gy - y * gx) * np.float32(np.pi / 180.0)


def _axis_derivative(model: np.ndarray, volume: np.ndarray, projector: Any) -> np.ndarray:
    """How the residual changes per degree when the images AND the volume are turned
    together about the beam axis.

    Turning the images alone is nearly what turning the volume about z does (exactly so
    at tilt 0), so the volume would absorb most of a wrong angle and a step on the images
    alone would crawl. Turning both leaves only what no volume can explain: the
    difference grows with the tilt (``x (1/cos t - 1)`` and ``z tan t`` across the axis,
    ``y (1 - cos t)`` along it).
    """
    import torch

    turned = _rotation_derivative(volume)
    model_change = projector.forward(torch.from_numpy(turned).to(projector.device,
                                                                 projector.dtype))
    return _rotation_derivative(model) - np.asarray(model_change.cpu().numpy(), np.float32)


def _axis_step(
    model: np.ndarray,
    residual: np.ndarray,
    masks: np.ndarray,
    derivative: np.ndarray,
    *,
    smooth_px: float = 0.0,
    min_pixels: int = 16,
) -> float:
    """The Gauss-Newton step of the common in-plane tilt-axis angle, in degrees.

    Every image ``i`` has the residual ``r_i = T(s_i, a) b_i - A_i u``; turning images and
    volume by ``d`` degrees and shifting each image by ``e_i`` changes it to about
    ``r_i + d j_i - J_i e_i`` (``j`` from :func:`_axis_derivative`, ``J = grad`` of the
    model). The shifts are eliminated per image (Schur complement), so the angle step is
    the part of the residual that no per-image shift explains.
    """
    _, derivative, _ = _smoothed(model, derivative, masks, smooth_px)
    model, residual, m = _smoothed(model, residual, masks, smooth_px)
    gy, gx = np.gradient(model, axis=(1, 2))
    g = derivative
    hyy, hxx, hxy, det = _shift_hessian(m, gy, gx)
    ok = (det > 0) & (m.sum(axis=(1, 2)) >= min_pixels)
    if not ok.any():
        return float("nan")  # nothing to measure: not "no step"

    def image_sums(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.asarray(np.sum(m * a * b, axis=(1, 2), dtype=np.float64))[ok]

    cy, cx = image_sums(gy, g), image_sums(gx, g)
    fy, fx = image_sums(gy, residual), image_sums(gx, residual)
    hyy, hxx, hxy, det = hyy[ok], hxx[ok], hxy[ok], det[ok]
    # c^T H^-1 c and c^T H^-1 f per image (H^-1 = [[hxx, -hxy], [-hxy, hyy]] / det)
    c_hinv_c = (hxx * cy * cy - 2 * hxy * cy * cx + hyy * cx * cx) / det
    c_hinv_f = (hxx * cy * fy - hxy * (cy * fx + cx * fy) + hyy * cx * fx) / det
    curvature = float(np.sum(image_sums(g, g) - c_hinv_c))
    if not curvature > 0:
        return float("nan")
    return float(np.sum(c_hinv_f - image_sums(g, residual))) / curvature


def _offset_step(residual: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """The per-projection constant that best cancels the masked residual (its masked mean)."""
    count = masks.sum(axis=(1, 2), dtype=np.float64)
    total = np.sum(residual * masks, axis=(1, 2), dtype=np.float64)
    return np.where(count > 0, total / np.maximum(count, 1), 0.0)


class _Workspace:
    """Buffers for the in-place primal-dual step (allocating per step costs more than the
    arithmetic at these sizes)."""

    def __init__(self, shape: tuple[int, int, int], device: Any, dtype: Any) -> None:
        import torch

        self.grad = torch.empty((3, *shape), device=device, dtype=dtype)
        self.div = torch.empty(shape, device=device, dtype=dtype)


def _primal_dual_step(
    projector: Any,
    u: Any,
    u_bar: Any,
    p: Any,
    q: Any,
    work: _Workspace,
    b: Any,
    m: Any,
    sigma_p: Any,
    sigma_q: float,
    tau: Any,
    lam: float,
) -> None:
    """One Chambolle-Pock step for ``1/2 ||M (A u - b)||^2 + lam TV(u)``, in place.

    ``u`` becomes ``u_new`` and ``u_bar`` the extrapolation ``2 u_new - u_old``, kept apart.
    """
    from emkit.ops import divergence_3d, gradient_3d, project_l2_ball

    # Data dual: prox of the conjugate of 1/2 ||M (. - b)||^2, zero off the mask.
    residual = projector.forward(u_bar)
    residual.sub_(b).mul_(sigma_p)
    p.add_(residual).div_(1.0 + sigma_p).mul_(m)
    # TV dual: ascent, then pointwise projection onto the ball of radius lam (for lam = 0
    # the ball is the point 0, where q stays; projecting would divide 0 by 0).
    if lam > 0:
        q.add_(gradient_3d(u_bar, out=work.grad), alpha=sigma_q)
        project_l2_ball(q, lam, out=q)
    # Primal descent: u_new = u - tau (A^T p - div q); u_bar = 2 u_new - u = u_new - step.
    step = projector.adjoint(p)
    step.sub_(divergence_3d(q, out=work.div)).mul_(tau)
    u.sub_(step)
    u_bar.copy_(u).sub_(step)


class _Level:
    """State of one binning level: binned data, projector, masks, primal-dual variables."""

    def __init__(
        self,
        stack: np.ndarray,
        angles: np.ndarray,
        factor: int,
        thickness: int,
        user_masks: np.ndarray | None,
        device: str | None,
        fov: np.ndarray | None = None,
    ) -> None:
        import torch

        from emkit.ops import SingleAxisProjector

        self.factor = factor
        # Binned data divided by the factor: the density then has the same scale at every
        # level (see emkit.tomo.reconstruct).
        self.data = _bin(stack, factor) / np.float32(factor)
        self.centre_offset = binning_centre_offset(stack.shape, factor)
        n, ny, nx = self.data.shape
        self.shape = (max(1, thickness // factor), ny, nx)
        self.user_masks = None if user_masks is None else _bin_mask(user_masks, factor)
        # The raw field of view after the start rotation (None: not rotated): the corners
        # it filled are no data.
        self.fov = None if fov is None else _bin(fov.astype(np.float32), factor)
        self.projector = SingleAxisProjector(self.shape, angles, device=device)
        self.device = self.projector.device
        self.torch = torch

    def resample(self, shifts_px: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Original binned data shifted by ``shifts_px`` (unbinned) and their masks."""
        # Cropping an odd number of pixels before binning moves the binned centre (the
        # tilt axis of the projector) by half a pixel; shift the data back onto it.
        s = (shifts_px + self.centre_offset) / self.factor
        shifted = transform_images(self.data, s, order=3)
        masks = validity_masks(self.data.shape, s, margin_px=1.0)
        if self.fov is not None:
            masks &= transform_images(self.fov, s, order=1, fill=0.0) > 0.999
        if self.user_masks is not None:
            masks &= self.user_masks
        return shifted, masks


def _fingerprint(**params: Any) -> str:
    return json.dumps(params, sort_keys=True, default=str)


def _digest(array: np.ndarray | None) -> str | None:
    """A short content hash of ``array`` (None stays None)."""
    if array is None:
        return None
    data = np.ascontiguousarray(array)
    return hashlib.sha256(data.data.cast("B")).hexdigest()[:16]


def _fingerprint_differences(saved: str, wanted: str) -> list[str]:
    """Names of the inputs/parameters in which two fingerprints differ."""
    try:
        old, new = json.loads(saved), json.loads(wanted)
    except ValueError:
        return []
    return sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))


def _save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    from emkit.io import atomic_output

    # immediate: a checkpoint must survive the interrupted run it exists for
    with atomic_output(path, immediate=True) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **state)


def _load_checkpoint(path: Path, fingerprint: str) -> dict[str, Any]:
    try:
        with np.load(path, allow_pickle=False) as z:
            state = {k: z[k] for k in z.files}
    except MemoryError:
        raise
    # A cut or damaged .npz raises zipfile.BadZipFile, zlib.error, even tokenize errors
    # from a garbled array header: all of them mean the checkpoint cannot be used.
    except Exception as error:
        raise FileFormatError(
            with_path(path, f"cannot read this checkpoint ({error}); delete it to start over")
        ) from None
    saved = str(state.get("fingerprint"))
    if int(state.get("version", -1)) != _CHECKPOINT_VERSION or saved != fingerprint:
        differ = _fingerprint_differences(saved, fingerprint)
        which = f" (different: {', '.join(differ)})" if differ else ""
        raise MismatchError(
            with_path(
                path,
                f"this checkpoint is from a run with other inputs or parameters{which}; "
                "run without --resume or delete it",
            )
        )
    return state


def _check_arguments(
    stack: np.ndarray,
    tilt_angles_deg: np.ndarray,
    *,
    thickness: int,
    initial_shifts_px: np.ndarray | None,
    lam: float,
    iterations: int | Sequence[int] | None,
    binning_levels: Sequence[int],
    masks: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray, list[int], list[int], np.ndarray]:
    """The checked ``stack, angles``, the levels, the iterations per level and a copy of
    the initial shifts (zeros if none)."""
    stack, angles = check_tilt_series(stack, tilt_angles_deg)
    n = len(stack)
    levels = [int(f) for f in binning_levels]
    if not levels or min(levels) < 1:
        raise InputError(f"binning levels must be positive integers, got {binning_levels}")
    if iterations is None:
        per_level = [_COARSEST_ITERATIONS] + [_FINER_ITERATIONS] * (len(levels) - 1)
    elif isinstance(iterations, (int, np.integer)):
        per_level = [int(iterations)] * len(levels)
    else:
        per_level = [int(k) for k in iterations]
    if len(per_level) != len(levels):
        raise InputError(
            f"{len(per_level)} iteration counts for {len(levels)} binning levels; give one "
            "number or one per level"
        )
    if thickness // max(levels) < 1:
        raise InputError(f"thickness {thickness} is thinner than the coarsest binning")
    if lam < 0:
        raise InputError(f"lam must be >= 0, got {lam}")
    shifts = (
        np.zeros((n, 2))
        if initial_shifts_px is None
        else np.array(initial_shifts_px, dtype=np.float64, copy=True)
    )
    if shifts.shape != (n, 2):
        raise MismatchError(f"{shifts.shape[0]} initial shifts for {n} images")
    if masks is not None and masks.shape != stack.shape:
        raise MismatchError(f"masks of shape {masks.shape} for a stack of shape {stack.shape}")
    return stack, angles, levels, per_level, shifts


def _prepare_data(
    stack: np.ndarray,
    angles: np.ndarray,
    shifts: np.ndarray,
    tilt_axis_angle_deg: float,
    gauge: str,
) -> tuple[np.ndarray, float, np.ndarray | None, np.ndarray]:
    """The background-free stack turned onto the y axis, its scale, the field of view
    of the turn (None: not turned) and the shifts without their gauge."""
    n = len(stack)
    # Background-free and in units of the data's spread, before the rotation fills the
    # corners: nothing below depends on a constant offset or the intensity scale.
    stack, _, scale = remove_background(stack)
    fov = None
    if tilt_axis_angle_deg:
        fov = validity_masks(stack.shape, np.zeros((n, 2)),
                             tilt_axis_angle_deg=tilt_axis_angle_deg, margin_px=0.0)
        stack = transform_images(stack, np.zeros((n, 2)), tilt_axis_angle_deg=tilt_axis_angle_deg)
    if gauge not in ("rigid", "offset"):
        raise InputError(f"gauge must be 'rigid' or 'offset', got {gauge!r}")
    shifts = remove_gauge(shifts, angles, gauge=gauge)
    return stack, scale, fov, shifts


@dataclass
class _Settings:
    """What stays fixed over a run of :func:`align_joint` (the names of its arguments)."""

    stack: np.ndarray  # background-free and turned onto the y axis
    angles: np.ndarray
    fov: np.ndarray | None
    scale: float
    masks: np.ndarray | None
    thickness: int  # of the alignment box (see box_fraction); full_thickness the output's
    full_thickness: int
    lam: float
    coarse_lam_power: float
    levels: list[int]
    per_level: list[int]
    inner_iterations: int
    cg_iterations: int
    update_shifts: bool
    preconditioned: bool
    max_step_px: float
    shift_smoothing_px: float
    gauge: str
    tolerance_px: float
    measure_tilt_axis: bool
    tilt_axis_angle_deg: float
    device: str | None
    callback: Callable[[dict[str, Any], np.ndarray, np.ndarray], None] | None
    ckpt_path: Path | None
    fingerprint: str = ""  # see _run_fingerprint


def _run_fingerprint(cfg: _Settings, lam: float, shifts: np.ndarray) -> str:
    """Everything that shapes the result (``lam`` as given, ``shifts`` the gauge-free
    initial ones): a checkpoint from other inputs is refused on resume."""
    return _fingerprint(
        shape=cfg.stack.shape,
        angles=np.round(cfg.angles, 6).tolist(),
        tilt_series=_digest(cfg.stack),
        mask=_digest(cfg.masks),
        initial_shifts=_digest(np.round(shifts, 6)),
        max_step_px=cfg.max_step_px,
        shift_smoothing_px=cfg.shift_smoothing_px,
        tolerance_px=cfg.tolerance_px,
        thickness=cfg.thickness,
        full_thickness=cfg.full_thickness,
        lam=lam,
        coarse_lam_power=cfg.coarse_lam_power,
        iterations=cfg.per_level,
        inner=cfg.inner_iterations,
        cg=cfg.cg_iterations,
        levels=cfg.levels,
        update_shifts=cfg.update_shifts,
        preconditioned=cfg.preconditioned,
        gauge=cfg.gauge,
        axis=cfg.tilt_axis_angle_deg,
    )


@dataclass
class _Progress:
    """What the outer iterations carry on (and a checkpoint holds)."""

    shifts: np.ndarray
    # One offset per projection (unbinned data units): the data less their median are not
    # zero where there is no specimen in a slab; solved exactly after every volume step.
    offsets: np.ndarray
    history: list[dict[str, float]] = field(default_factory=list)
    volume: np.ndarray = field(default_factory=lambda: np.zeros(1, dtype=np.float32))
    start_level: int = 0
    start_iter: int = 0
    # The loaded checkpoint until the level it resumes is set up.
    state: dict[str, Any] | None = None


def _start_progress(
    shifts: np.ndarray, levels: list[int], fingerprint: str, ckpt_path: Path | None,
    resume: bool,
) -> _Progress:
    """Where the run starts: at the beginning, or where the checkpoint says on ``resume``."""
    run = _Progress(shifts=shifts, offsets=np.zeros(len(shifts)))
    if resume and ckpt_path is not None and ckpt_path.exists():
        state = _load_checkpoint(ckpt_path, fingerprint)
        run.state = state
        run.start_level, run.start_iter = int(state["level_index"]), int(state["next_iteration"])
        run.shifts = np.asarray(state["shifts_px"], dtype=np.float64)
        run.offsets = np.asarray(state["offsets"], dtype=np.float64)
        run.history = json.loads(str(state["history"]))
        log.info("resuming at level %d iteration %d", levels[run.start_level], run.start_iter)
    elif resume:
        log.warning("no checkpoint at %s to resume from; starting from the beginning", ckpt_path)
    return run


def _progress_bar(show: bool, per_level: list[int], run: _Progress) -> Any:
    """A tqdm bar advanced to where the run starts (None if not ``show``)."""
    if not show:
        return None
    from tqdm import tqdm

    bar = tqdm(total=sum(per_level), desc="align", unit="it")
    bar.update(sum(per_level[:run.start_level]) + run.start_iter)
    return bar


@dataclass
class _LevelState:
    """One level under way: its data, primal-dual variables and step sizes."""

    level: _Level
    data: np.ndarray  # the level's data resampled with the current shifts
    mask: np.ndarray
    u: Any
    u_bar: Any
    p: Any
    q: Any
    sigma_p: Any
    sigma_q: Any
    tau: Any
    work: _Workspace
    previous: float = float("nan")  # the objective of the level's previous iteration


def _step_sizes(level: _Level, preconditioned: bool) -> tuple[Any, Any, Any]:
    """The primal-dual steps ``sigma_p`` (data dual), ``sigma_q`` (TV dual) and ``tau``."""
    import torch

    from emkit.ops import GRADIENT_NORM_3D

    tdev, tdtype = level.device, level.projector.dtype
    if preconditioned:
        # Diagonal preconditioning (Pock & Chambolle 2011, alpha = 1): sigma = 1 / row
        # sums and tau = 1 / column sums of |K| for K = [A; grad]; this guarantees
        # convergence and makes the data part of each step as effective as SIRT's.
        ray = torch.from_numpy(level.projector.ray_sums()[:, None, :]).to(tdev, tdtype)
        sigma_p: Any = 1.0 / torch.clamp(ray, min=1e-3)
        sigma_q = 0.5
        cols = torch.from_numpy(level.projector.voxel_sums()[:, None, :]).to(tdev, tdtype)
        tau: Any = 1.0 / (cols + 2.0 * len(level.shape))
    else:
        # Scalar steps from the computed operator norm: L^2 = ||A||^2 + ||grad||^2 and
        # tau = sigma = 0.99 / L, so tau sigma L^2 < 1.
        lipschitz = float(np.sqrt(level.projector.operator_norm() ** 2 + GRADIENT_NORM_3D**2))
        sigma_p = sigma_q = tau = 0.99 / lipschitz
    return sigma_p, sigma_q, tau


def _start_level(
    cfg: _Settings, run: _Progress, li: int, *, continue_volume: bool = False
) -> tuple[_LevelState, int]:
    """Set up level ``li``: its steps and start volume (CGLS, the previous level's volume
    or the checkpoint's iterates; ``continue_volume``: ``run.volume`` even at level 0).
    Returns it and its first iteration."""
    import torch

    level = _Level(cfg.stack, cfg.angles, cfg.levels[li], cfg.thickness, cfg.masks, cfg.device,
                   cfg.fov)
    tdev, tdtype = level.device, level.projector.dtype
    sigma_p, sigma_q, tau = _step_sizes(level, cfg.preconditioned)
    data, mask = level.resample(run.shifts)
    state = run.state
    if state is not None and li == run.start_level and run.start_iter > 0:
        u = torch.from_numpy(state["u"]).to(tdev, tdtype)
        u_bar = torch.from_numpy(state["u_bar"]).to(tdev, tdtype)
        p = torch.from_numpy(state["p"]).to(tdev, tdtype)
        q = torch.from_numpy(state["q"]).to(tdev, tdtype)
        first = run.start_iter
    else:
        if state is not None and li == run.start_level and state["u"].ndim == 3:
            # Resuming at a level boundary: the checkpoint holds the finished level's
            # volume, which an uninterrupted run would upsample here.
            run.volume = np.asarray(state["u"], dtype=np.float32)
        if (li == 0 and not continue_volume) or run.volume.ndim != 3:
            u0 = reconstruct_cgls(
                data,
                cfg.angles,
                thickness=level.shape[0],
                iterations=cfg.cg_iterations,
                masks=mask,
                device=cfg.device,
            )
        else:
            # Continue from the previous level's (regularised) volume: a fresh CGLS
            # start would be noisier and cost the level its first iterations.
            u0 = _upsample(run.volume, level.shape)
        u = torch.from_numpy(u0).to(tdev, tdtype)
        u_bar = u.clone()
        p = torch.zeros(level.data.shape, device=tdev, dtype=tdtype)
        q = torch.zeros((3, *level.shape), device=tdev, dtype=tdtype)
        first = 0
    work = _Workspace(level.shape, tdev, tdtype)
    return _LevelState(level, data, mask, u, u_bar, p, q, sigma_p, sigma_q, tau, work), first


def _level_lam(cfg: _Settings, factor: int) -> float:
    """The TV weight at a level: ``lam`` at the finest, ``lam (finest / factor) **
    coarse_lam_power`` at coarser ones (binning averages the noise away there)."""
    return float(cfg.lam * (min(cfg.levels) / factor) ** cfg.coarse_lam_power)


def _volume_steps(cfg: _Settings, ls: _LevelState, level_offsets: np.ndarray) -> None:
    """The primal-dual volume steps of one outer iteration, on the data less the offsets."""
    import torch

    level = ls.level
    tdev, tdtype = level.device, level.projector.dtype
    b = torch.from_numpy(ls.data - level_offsets).to(tdev, tdtype)
    m = torch.from_numpy(ls.mask).to(tdev, tdtype)
    for _ in range(cfg.inner_iterations):
        _primal_dual_step(
            level.projector, ls.u, ls.u_bar, ls.p, ls.q, ls.work, b, m, ls.sigma_p, ls.sigma_q,
            ls.tau, _level_lam(cfg, level.factor),
        )


def _model_and_residual(
    run: _Progress, ls: _LevelState, level_offsets: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The model projections ``A u`` and the residual after the offset step (which updates
    ``run.offsets``)."""
    level = ls.level
    model = np.asarray(level.projector.forward(ls.u).cpu().numpy(), dtype=np.float32)
    residual = ls.data - level_offsets - model
    offset_step = _offset_step(residual, ls.mask)
    run.offsets += offset_step * level.factor
    residual -= offset_step.astype(np.float32)[:, None, None]
    return model, residual


def _measured_axis_step(
    cfg: _Settings, ls: _LevelState, model: np.ndarray, residual: np.ndarray
) -> float:
    """The tilt-axis step that the residual asks for (see :func:`_axis_step`)."""
    from scipy import ndimage

    level = ls.level
    # The derivative, and the model the shifts are eliminated with, come from the volume
    # smoothed by _AXIS_VOLUME_SMOOTHING_VOX: the unregularised volume fits part of the
    # noise, and a derivative taken from it scatters the step's zero (256^2, SNR 0.5, ten
    # noise realisations of one series: 0.86 deg RMS unsmoothed, 0.34 smoothed by 2
    # voxels; noise-free 0.01 deg). The residual stays that of the fitted volume.
    volume = ndimage.gaussian_filter(ls.u.cpu().numpy(), _AXIS_VOLUME_SMOOTHING_VOX)
    smooth_model = np.asarray(
        level.projector.forward(level.torch.from_numpy(volume).to(level.device,
                                                                  level.projector.dtype))
        .cpu().numpy(), dtype=np.float32)
    derivative = _axis_derivative(smooth_model, volume, level.projector)
    # low-passed by at least one pixel of the level: the noise the volume has
    # fitted otherwise biases the step (by up to a degree at SNR 0.5)
    return _axis_step(smooth_model, residual, ls.mask, derivative,
                      smooth_px=max(1.0, cfg.shift_smoothing_px / level.factor))


def _update_shifts(
    cfg: _Settings, run: _Progress, ls: _LevelState, model: np.ndarray, residual: np.ndarray
) -> float:
    """One shift step (gauge removed) and the data resampled with the new shifts. Returns
    the largest shift change in unbinned pixels."""
    level = ls.level
    delta = (
        _shift_step(
            model,
            residual,
            ls.mask,
            max_step=cfg.max_step_px,
            # at least one pixel of the level: the TV volume's own errors
            # (lost contrast, flattened edges) otherwise read as misalignment
            # and large slabs swing by pixels between iterations
            smooth_px=max(1.0, cfg.shift_smoothing_px / level.factor),
        )
        * level.factor
    )
    new_shifts = remove_gauge(run.shifts + delta, cfg.angles, gauge=cfg.gauge)
    change = float(np.max(np.abs(new_shifts - run.shifts)))
    run.shifts = new_shifts
    ls.data, ls.mask = level.resample(run.shifts)
    return change


def _outer_iteration(
    cfg: _Settings, run: _Progress, ls: _LevelState, k: int, last: bool
) -> dict[str, float]:
    """Iteration ``k`` of a level (``last``: its last one): volume steps, offsets, the
    measures, the axis and shift steps. Returns its history record."""
    from emkit.ops import tv_norm

    level = ls.level
    level_offsets = (run.offsets / level.factor).astype(np.float32)[:, None, None]
    _volume_steps(cfg, ls, level_offsets)
    model, residual = _model_and_residual(run, ls, level_offsets)
    data_residual = 0.5 * float(np.sum((residual * ls.mask).astype(np.float64) ** 2))
    signal = float(np.sum(((ls.data - level_offsets) * ls.mask).astype(np.float64) ** 2))
    tv = float(tv_norm(ls.u))
    objective = data_residual + _level_lam(cfg, level.factor) * tv
    relative = (objective - ls.previous) / abs(ls.previous) if ls.previous else float("nan")
    ls.previous = objective
    change = 0.0
    axis_step = float("nan")
    if cfg.measure_tilt_axis and last:
        axis_step = _measured_axis_step(cfg, ls, model, residual)
    if cfg.update_shifts:
        change = _update_shifts(cfg, run, ls, model, residual)
    record = {
        "level": float(level.factor),
        "iteration": float(k),
        "data_residual": data_residual,
        "tv": tv,
        "objective": objective,
        "residual_fraction": 2 * data_residual / signal if signal > 0 else float("nan"),
        "relative_change": relative,
        "max_shift_change_px": change,
    }
    if cfg.measure_tilt_axis:
        record["tilt_axis_step_deg"] = axis_step
    return record


def _checkpoint_arrays(
    cfg: _Settings, run: _Progress, level_index: int, next_iteration: int, u_bar: np.ndarray,
    p: np.ndarray, q: np.ndarray,
) -> dict[str, Any]:
    """The arrays of a checkpoint (``u`` is ``run.volume``)."""
    return {
        "version": np.array(_CHECKPOINT_VERSION),
        "fingerprint": np.array(cfg.fingerprint),
        "level_index": np.array(level_index),
        "next_iteration": np.array(next_iteration),
        "shifts_px": run.shifts,
        "offsets": run.offsets,
        "u": run.volume,
        "u_bar": u_bar,
        "p": p,
        "q": q,
        "history": np.array(json.dumps(run.history)),
    }


def _finish_iteration(
    cfg: _Settings, run: _Progress, ls: _LevelState, li: int, k: int, record: dict[str, float],
    bar: Any,
) -> None:
    """Record iteration ``k`` of level ``li``: history, log, callback, bar, checkpoint."""
    level = ls.level
    change, data_residual = record["max_shift_change_px"], record["data_residual"]
    run.history.append(record)
    log.info(
        "bin %d it %d: objective change %.3g, residual %.4g of the data, max shift "
        "change %.3f px", level.factor, k, record["relative_change"], record["residual_fraction"],
        change,
    )
    run.volume = ls.u.cpu().numpy()
    if cfg.callback is not None:
        cfg.callback(record, run.shifts.copy(), run.volume * np.float32(cfg.scale))
    if bar is not None:
        bar.update(1)
        bar.set_postfix(bin=level.factor, res=f"{data_residual:.3g}", ds=f"{change:.3f}")
    if cfg.ckpt_path is not None:
        _save_checkpoint(
            cfg.ckpt_path,
            _checkpoint_arrays(cfg, run, li, k + 1, ls.u_bar.cpu().numpy(), ls.p.cpu().numpy(),
                               ls.q.cpu().numpy()),
        )


def _box_thickness(thickness: int, box_fraction: float, levels: list[int]) -> int:
    """The alignment box: ``box_fraction`` of ``thickness``, cut evenly at the top and
    bottom of the finest level's grid (so the box stays centred), never thinner than one
    slice of the coarsest level."""
    finest = levels[-1]
    slices = thickness // finest
    cut = 2 * int(round(slices * (1.0 - box_fraction) / 2.0))
    if cut <= 0:
        return thickness
    least = -(-max(levels) // finest)  # finest-level slices that give the coarsest one
    least += (slices - least) % 2  # an even cut keeps the box centred
    return min(thickness, max(slices - cut, least) * finest)


def _fill_thickness(cfg: _Settings, run: _Progress, carried: list[Any], bar: Any) -> None:
    """The volume over the whole thickness with the final shifts fixed: the primal-dual
    iteration of the alignment box's last level run on for ``_FILL_ITERATIONS`` outer
    iterations (their history records carry ``whole_thickness``), its volume and its
    ``carried`` extrapolated volume and TV dual padded with zeros above and below, its data
    dual kept. ``carried`` (``[u_bar, q, p]``; empty: the duals start afresh) is emptied
    here, so the box's arrays go as soon as they are padded."""
    from dataclasses import replace

    fill = replace(cfg, thickness=cfg.full_thickness, levels=[cfg.levels[-1]],
                   per_level=[_FILL_ITERATIONS], update_shifts=False,
                   measure_tilt_axis=False, ckpt_path=None)
    slices = max(1, cfg.full_thickness // cfg.levels[-1])
    pad = slices - run.volume.shape[0]
    z_pad = (pad // 2, pad - pad // 2)
    run.volume = np.pad(run.volume, (z_pad, (0, 0), (0, 0)))
    run.state = None
    ls, _ = _start_level(fill, run, 0, continue_volume=True)
    if carried:
        pad_z = ls.level.torch.nn.functional.pad
        ls.u_bar = pad_z(carried.pop(0), (0, 0, 0, 0, *z_pad))
        ls.q = pad_z(carried.pop(0), (0, 0, 0, 0, *z_pad))
        ls.p = carried.pop(0)
    for k in range(_FILL_ITERATIONS):
        record = _outer_iteration(fill, run, ls, k, last=k == _FILL_ITERATIONS - 1)
        record["whole_thickness"] = 1.0
        _finish_iteration(fill, run, ls, 0, k, record, bar)
    _finish_level(fill, run, ls, 0)


def _finish_level(cfg: _Settings, run: _Progress, ls: _LevelState, li: int) -> None:
    """Keep the level's volume and, before a next level, checkpoint that this one is done."""
    run.volume = ls.u.cpu().numpy()
    run.state = None
    if cfg.ckpt_path is not None and li + 1 < len(cfg.levels):
        # Record that this level is done, with its volume: the next level starts from it.
        none = np.zeros(1, np.float32)
        _save_checkpoint(cfg.ckpt_path, _checkpoint_arrays(cfg, run, li + 1, 0, none, none, none))


def align_joint(
    stack: np.ndarray,
    tilt_angles_deg: np.ndarray,
    *,
    thickness: int,
    initial_shifts_px: np.ndarray | None = None,
    box_fraction: float = 1.0,
    lam: float = 1.0,
    coarse_lam_power: float = 2.0,
    iterations: int | Sequence[int] | None = None,
    inner_iterations: int = 10,
    cg_iterations: int = 10,
    binning_levels: Sequence[int] = (4, 2, 1),
    tilt_axis_angle_deg: float = 0.0,
    masks: np.ndarray | None = None,
    update_shifts: bool = True,
    preconditioned: bool = True,
    max_step_px: float = 1.0,
    shift_smoothing_px: float = 1.0,
    gauge: str = "rigid",
    tolerance_px: float = 0.0,
    measure_tilt_axis: bool = False,
    device: str | None = None,
    callback: Callable[[dict[str, Any], np.ndarray, np.ndarray], None] | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
    resume: bool = False,
    progress: bool = False,
) -> JointAlignment:
    """Jointly refine per-projection shifts and a TV-regularised reconstruction.

    Parameters
    ----------
    stack : ndarray, shape (n, y, x)
        Raw tilt series (bright = dense; invert EM images first), tilt axis along y (or at
        ``tilt_axis_angle_deg``).
    tilt_angles_deg : ndarray, shape (n,)
        Tilt angles in degrees.
    thickness : int
        Tomogram thickness in unbinned pixels.
    initial_shifts_px : ndarray, shape (n, 2), optional
        Starting ``(dy, dx)`` shifts in unbinned pixels (e.g. from :func:`prealign`).
    box_fraction : float
        The shifts are found with a volume box this fraction of ``thickness`` (cut evenly
        at the top and bottom); the volume is then refined over the whole thickness with
        the shifts fixed (5 outer iterations at the last level beyond ``iterations``,
        marked ``whole_thickness`` in the history). Not with ``update_shifts=False`` or
        ``measure_tilt_axis``, which use the whole thickness throughout. 1 (the default)
        aligns in the whole box: with the converged coarse level (``iterations``,
        ``coarse_lam_power``) a box of 0.8 was worse on one of four 256^2 slabs (0.68 vs
        0.20 px) and no better on the others (docs/tomo.md); a box thicker than the
        specimen doubled the error.
    lam : float
        TV weight, in units of the stack's standard deviation (so it does not depend on the
        intensity scale): the data are first made background-free and divided by their
        standard deviation ``s`` (:func:`emkit.tomo.remove_background`) and the objective
        is ``1/2 ||M (A u + c - T(s) b)||^2 + lam TV(u)`` with one offset ``c_i`` per
        projection. A constant added to the data changes nothing. This is the weight at
        the finest level; see ``coarse_lam_power``.
    coarse_lam_power : float
        A coarser level of binning ``f`` has the TV weight ``lam (finest / f) **
        coarse_lam_power`` (0: ``lam`` at every level). Binning averages the noise away,
        and a full TV weight there drags the shifts: measured on a 256^2 slab at SNR 0.5
        (docs/tomo.md), the shift error at bin 4 swung between 0.35 and 2.2 px over 40
        iterations with ``lam`` 1 and settled at 0.17 px with 0.1.
    iterations : int or sequence of int, optional
        Outer iterations (primal-dual steps + one shift step) per level, or one number per
        level (default: 60 at the first, coarsest level, where the shifts move most and an
        iteration costs least, and 10 at the others).
    inner_iterations : int
        Primal-dual volume steps per outer iteration.
    cg_iterations : int
        CGLS iterations of the starting reconstruction at each level.
    binning_levels : sequence of int
        Coarse-to-fine binning factors, e.g. ``(4, 2, 1)``.
    tilt_axis_angle_deg : float
        In-plane tilt-axis angle of the raw images; the stack is rotated once at the start.
    masks : ndarray of bool, shape (n, y, x), optional
        Pixels to use in the data term (e.g. excluding a grid bar or a gold bead); combined
        with the field-of-view masks of the current shifts.
    update_shifts : bool
        False keeps the shifts fixed (a TV reconstruction with the same schedule, e.g. to
        compare with a reconstruction from known shifts).
    preconditioned : bool
        Diagonal step sizes from the row and column sums of ``K`` (Pock & Chambolle 2011;
        default, much faster) instead of scalar steps ``0.99 / L`` from the computed
        operator norm ``L = sqrt(||A||^2 + ||grad||^2)``. Both satisfy the convergence
        condition.
    max_step_px : float
        Largest shift change per outer iteration, in pixels of the current level.
    shift_smoothing_px : float
        Gaussian low-pass (sigma, unbinned pixels) of model and residual for the shift
        step, and never less than one pixel of the current level; at fine levels it keeps
        the shifts from fitting the noise, at coarse ones from following the TV volume's
        own errors.
    gauge : {"rigid", "offset"}
        Shift patterns projected out after every step (see :func:`remove_gauge`):
        ``"rigid"`` those of a translated specimen (exactly what the data cannot see),
        ``"offset"`` only the mean shift.
    tolerance_px : float
        Go to the next level once the largest shift change (unbinned pixels) falls below this.
    measure_tilt_axis : bool
        At the last iteration of each level, record ``tilt_axis_step_deg``: the
        Gauss-Newton step of the in-plane tilt-axis angle that the residual asks for,
        with the per-image shifts eliminated and the volume turned along, on images
        low-passed by at least one pixel of the level (see
        :func:`emkit.tomo.search_tilt_axis`, which finds the angle where it is zero). Its
        sign says which way the axis is off; its size is shrunk by what the volume has
        absorbed of the error.
    device : str, optional
        Torch device of the projector and the primal-dual updates (None: CUDA if present).
    callback : callable, optional
        ``callback(record, shifts_px, volume)`` after every outer iteration (``record`` as in
        :attr:`JointAlignment.history`; ``volume`` at the current level).
    checkpoint : path-like, optional
        Save the state here (``.npz``, atomically) after every outer iteration.
    resume : bool
        Continue from ``checkpoint`` if it exists (same inputs and parameters required).
    progress : bool
        Show a progress bar.

    Returns
    -------
    JointAlignment

    Examples
    --------
    >>> pre = prealign(stack, angles)                                       # doctest: +SKIP
    >>> joint = align_joint(stack, angles, thickness=64,
    ...                     initial_shifts_px=pre.shifts_px)                # doctest: +SKIP
    """
    stack, angles, levels, per_level, shifts = _check_arguments(
        stack, tilt_angles_deg, thickness=thickness, initial_shifts_px=initial_shifts_px,
        lam=lam, iterations=iterations, binning_levels=binning_levels, masks=masks,
    )
    if not 0.0 < box_fraction <= 1.0:
        raise InputError(f"box_fraction must be in (0, 1], got {box_fraction}")
    if not coarse_lam_power >= 0.0:
        raise InputError(f"coarse_lam_power must be >= 0, got {coarse_lam_power}")
    stack, scale, fov, shifts = _prepare_data(stack, angles, shifts, tilt_axis_angle_deg, gauge)
    # the box is for finding shifts: a reconstruction from fixed shifts or an axis
    # measurement uses the whole thickness
    box = (_box_thickness(thickness, box_fraction, levels)
           if update_shifts and not measure_tilt_axis else thickness)
    cfg = _Settings(
        stack=stack, angles=angles, fov=fov, scale=scale, masks=masks, thickness=box,
        full_thickness=int(thickness), lam=float(lam), coarse_lam_power=float(coarse_lam_power),
        levels=levels, per_level=per_level,
        inner_iterations=inner_iterations, cg_iterations=cg_iterations,
        update_shifts=update_shifts, preconditioned=preconditioned,
        max_step_px=max_step_px, shift_smoothing_px=shift_smoothing_px, gauge=gauge,
        tolerance_px=tolerance_px, measure_tilt_axis=measure_tilt_axis,
        tilt_axis_angle_deg=tilt_axis_angle_deg, device=device, callback=callback,
        ckpt_path=None if checkpoint is None else Path(checkpoint),
    )
    cfg.fingerprint = _run_fingerprint(cfg, lam, shifts)
    run = _start_progress(shifts, levels, cfg.fingerprint, cfg.ckpt_path, resume)
    fills = _FILL_ITERATIONS if box < thickness else 0
    bar = _progress_bar(progress, [*per_level, fills], run)

    ls = None
    for li in range(run.start_level, len(levels)):
        ls, first = _start_level(cfg, run, li)
        for k in range(first, per_level[li]):
            record = _outer_iteration(cfg, run, ls, k, last=k == per_level[li] - 1)
            _finish_iteration(cfg, run, ls, li, k, record, bar)
            if update_shifts and tolerance_px > 0 and record["max_shift_change_px"] < tolerance_px:
                break
        _finish_level(cfg, run, ls, li)
    if fills:
        # only what the fill carries on stays (the box level's data and projector go)
        carried = [] if ls is None else [ls.u_bar, ls.q, ls.p]
        ls = None
        _fill_thickness(cfg, run, carried, bar)
    if bar is not None:
        bar.close()
    return JointAlignment(
        shifts_px=run.shifts,
        volume=np.asarray(run.volume, dtype=np.float32) * np.float32(scale),
        history=run.history,
        tilt_axis_angle_deg=float(tilt_axis_angle_deg),
        binning=levels[-1],
    )
