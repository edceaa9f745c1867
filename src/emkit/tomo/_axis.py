"""The in-plane tilt-axis angle, found where the joint-alignment model stops asking to turn.

For a trial angle ``a`` the series is pre-aligned and jointly aligned at one coarse level
(:func:`emkit.tomo.align_joint` with ``measure_tilt_axis=True``, no TV term) and the
Gauss-Newton step of the common axis angle is read off the final residual:
``F(a)``. Turning images and volume together is what that step measures, so the volume
cannot absorb the error the way it absorbs a turn of the images alone; what remains grows
with the tilt (see :func:`emkit.tomo._joint._axis_derivative`). ``F`` has the sign of
``truth - a`` over tens of degrees, so the root is bracketed by steps that double from the
start and then found by regula falsi (Illinois). The size of ``F`` is shrunk by what the
volume still absorbs, so only its zero is used, never its value as a step.

The bracket is found at a coarse level (images of about 32 pixels, 10 iterations per trial);
the root is then found again from there at the finest level the noise allows (images of
about 64 pixels when the data's fine detail is mostly signal, else the coarse level) with
60 iterations per trial. Both matter, measured on simulations (docs/tomo.md): a model that
is too coarse or not converged biases the zero by up to 0.6 degree even without noise, and a
level where noise dominates biases it by up to a degree, because the volume fits the noise.

Why not the residual itself: turning an image by an angle interpolates it, which low-passes
its noise by an amount that depends on the angle; at SNR 0.5 the residual falls steadily
towards the angles that smooth most and its minimum is degrees from the truth. Why no TV
term: the TV-regularised volume's own errors correlate with the axis derivative and move
the zero by about 0.5 degree even without noise. The step's derivative is instead taken from
the fitted volume smoothed by 2 voxels (see :func:`emkit.tomo._joint._measured_axis_step`),
which keeps the fit unbiased and halves the scatter of the zero over noise realisations.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from emkit.errors import InputError

__all__ = ["TiltAxisSearch", "detail_ratio", "fine_binning_for", "search_tilt_axis"]

log = logging.getLogger(__name__)

_TARGET_BINNED_PX = 32  # the coarse level: images binned to about this many pixels
_FINE_BINNED_PX = 64  # the finest level the refinement uses
# The refinement runs at the fine level only when the variance that survives a further 2x
# binning there is at least this many times the variance that the binning removes (white
# noise at SNR 0.5: 11 at 4x4 binning, 3 at 2x2, measured to bias the zero by up to 1 deg).
_MIN_DETAIL_RATIO = 6.0


@dataclass
class TiltAxisSearch:
    """Result of :func:`search_tilt_axis`.

    Attributes
    ----------
    angle_deg : float
        The tilt-axis angle found, within 90 degrees of the start (an axis and its
        opposite direction fit the data equally well).
    start_deg : float
    binning : int
        The coarse level the bracket was found at.
    evaluations : list of (float, float)
        Every trial angle (degrees) with the axis step the data asked for there, at the
        coarse level and then at the fine one.
    fine_binning : int
        The level the root was refined at (0: no refinement ran, or it found no root and
        the coarse one stands).
    coarse_angle_deg : float
        The root found at the coarse level, where the refinement started.
    converged : bool
        False when no sign change was found within ``max_offset_deg`` of the start, or the
        coarse level had too few valid pixels to measure (the start is then returned).
    """

    angle_deg: float
    start_deg: float
    binning: int
    evaluations: list[tuple[float, float]] = field(default_factory=list)
    converged: bool = True
    fine_binning: int = 0
    coarse_angle_deg: float = float("nan")


def wrap_axis_deg(angle_deg: float) -> float:
    """The same tilt-axis line as an angle in (-90, 90] degrees."""
    wrapped = (float(angle_deg) + 90.0) % 180.0 - 90.0
    return 90.0 if wrapped == -90.0 else wrapped


class _NoMeasurement(Exception):
    """The coarse level could not measure the axis step at ``angle_deg``."""

    def __init__(self, angle_deg: float) -> None:
        super().__init__(angle_deg)
        self.angle_deg = float(angle_deg)


def _default_binning(
    shape: tuple[int, ...], thickness: int, target_px: int = _TARGET_BINNED_PX
) -> int:
    factor = max(1, int(round(min(shape[1:]) / target_px)))
    while factor > 1 and thickness // factor < 4:
        factor -= 1
    return factor


def detail_ratio(stack: np.ndarray, factor: int) -> float:
    """Variance of the images binned ``2 factor`` over the variance that the last 2x
    binning removed from the images binned ``factor``: large where the detail at that level
    is mostly smooth signal, about 1/3 + SNR_binned for white noise."""
    from emkit.ops import bin_image
    from emkit.tomo._reconstruct import central_crop_for_binning

    def variance(level: int) -> float:
        binned = bin_image(central_crop_for_binning(stack, 2 * factor), level)
        flat = binned.reshape(len(binned), -1)
        return float(np.mean(np.var(flat, axis=1)))

    fine, coarse = variance(factor), variance(2 * factor)
    removed = fine - coarse
    return float("inf") if removed <= 0 else coarse / removed


def fine_binning_for(stack: np.ndarray, thickness: int, coarse: int) -> int:
    """The level the root is refined at: images of about 64 pixels when their fine detail
    is mostly signal (:func:`detail_ratio`), else the coarse level."""
    factor = _default_binning(stack.shape, thickness, _FINE_BINNED_PX)
    if factor >= coarse:
        return coarse
    ratio = detail_ratio(stack, factor)
    chosen = factor if ratio >= _MIN_DETAIL_RATIO else coarse
    log.info("tilt-axis refinement at bin %d (detail ratio at bin %d: %.1f)", chosen, factor,
             ratio)
    return chosen


def _axis_step_at(
    stack: np.ndarray, angles: np.ndarray, angle_deg: float, *, thickness: int, binning: int,
    iterations: int, masks: np.ndarray | None, device: str | None,
) -> float:
    """``F(angle)``: pre-align at the angle, align jointly at one level, read the step."""
    from emkit.tomo._joint import align_joint
    from emkit.tomo._prealign import prealign

    pre = prealign(stack, angles, binning=max(1, binning // 2), tilt_axis_angle_deg=angle_deg)
    joint = align_joint(
        stack, angles, thickness=thickness, initial_shifts_px=pre.shifts_px, lam=0.0,
        iterations=iterations, binning_levels=(binning,), tilt_axis_angle_deg=angle_deg,
        masks=masks, device=device, measure_tilt_axis=True, box_fraction=1.0,
    )
    step = float(joint.history[-1]["tilt_axis_step_deg"])
    log.info("tilt axis %.3f deg: the data ask to turn by %+.4f", angle_deg, step)
    return step


def search_tilt_axis(
    stack: np.ndarray,
    tilt_angles_deg: np.ndarray,
    *,
    thickness: int,
    start_deg: float,
    binning: int | None = None,
    iterations: int = 10,
    tolerance_deg: float = 0.05,
    bracket_step_deg: float = 2.0,
    max_offset_deg: float = 45.0,
    max_evaluations: int = 20,
    fine_binning: int | None = None,
    fine_iterations: int = 60,
    masks: np.ndarray | None = None,
    device: str | None = None,
) -> TiltAxisSearch:
    """Find the in-plane tilt-axis angle from a start that may be tens of degrees off.

    Parameters
    ----------
    stack : ndarray, shape (n, y, x)
        Raw tilt series (bright = dense), as for :func:`emkit.tomo.align_joint`.
    tilt_angles_deg : ndarray, shape (n,)
    thickness : int
        Specimen thickness in unbinned pixels.
    start_deg : float
        Where to start (e.g. :func:`emkit.tomo.estimate_tilt_axis`, or the microscope's).
    binning : int, optional
        The coarse level (default: images binned to about 32 pixels, keeping at least 4
        slices of thickness).
    iterations : int
        Joint-alignment iterations per trial angle at the coarse level.
    tolerance_deg : float
        Stop when the bracket's new end moves less than this (coarse level; the refinement
        stops at ``tolerance_deg / 2.5``).
    bracket_step_deg : float
        First step away from the start; it doubles until the sign of the step changes.
    max_offset_deg : float
        Give up (and return the start, with a warning) beyond this distance.
    max_evaluations : int
        Trial angles at the coarse level (the refinement has as many of its own).
    fine_binning : int, optional
        The level the coarse root is refined at (default: :func:`fine_binning_for`); 0 skips
        the refinement.
    fine_iterations : int
        Joint-alignment iterations per trial angle of the refinement.
    masks, device
        As for :func:`emkit.tomo.align_joint`.

    Returns
    -------
    TiltAxisSearch
    """
    stack = np.asarray(stack)
    _check_search(stack, tolerance_deg, bracket_step_deg, max_offset_deg, iterations,
                  max_evaluations)
    if fine_iterations < 1 or (fine_binning is not None and fine_binning < 0):
        raise InputError("fine_iterations must be >= 1 and fine_binning >= 0")
    factor = _default_binning(stack.shape, thickness) if binning is None else int(binning)
    evaluations: list[tuple[float, float]] = []

    def at_level(level: int, its: int) -> Callable[[float], float]:
        def f(angle: float) -> float:
            value = _axis_step_at(stack, tilt_angles_deg, angle, thickness=thickness,
                                  binning=level, iterations=its, masks=masks, device=device)
            evaluations.append((float(angle), value))
            if not np.isfinite(value):
                raise _NoMeasurement(angle)
            return value

        return f

    result = TiltAxisSearch(float(start_deg), float(start_deg), factor, evaluations)
    angle = _find_root(at_level(factor, iterations), float(start_deg), bracket_step_deg,
                       max_offset_deg, tolerance_deg, max_evaluations, factor)
    if angle is None:
        result.converged = False
        return result
    result.coarse_angle_deg = angle
    fine = fine_binning_for(stack, thickness, factor) if fine_binning is None else fine_binning
    if fine > 0:
        # From the coarse root: a small first step, and no further than the bracket was wide.
        refined = _find_root(at_level(int(fine), fine_iterations), angle,
                             bracket_step_deg / 4, max(1.0, 2 * bracket_step_deg),
                             tolerance_deg / 2.5, max_evaluations, int(fine))
        if refined is not None:  # else the coarse root stands (a warning said why)
            result.fine_binning, angle = int(fine), refined
    # the same line, on the start's side: a start of 85 finds 92.9, not -87.1
    result.angle_deg = float(start_deg) + wrap_axis_deg(angle - float(start_deg))
    log.info("tilt-axis search: %.3f deg from a start at %.3f deg (%d trial angles at bin %d, "
             "refined at bin %d)", result.angle_deg, start_deg, len(evaluations), factor,
             result.fine_binning)
    return result


def _find_root(
    f: Callable[[float], float], start_deg: float, step_deg: float, max_offset_deg: float,
    tolerance_deg: float, max_evaluations: int, level: int,
) -> float | None:
    """Bracket the zero of ``f`` from ``start_deg`` and find it; None (with a warning) when
    no sign change lies within ``max_offset_deg`` or the level cannot measure."""
    calls = 0

    def counted(angle: float) -> float:
        nonlocal calls
        calls += 1
        return f(angle)

    try:
        bracket = _bracket(counted, start_deg, step_deg, max_offset_deg)
        if bracket is None:
            log.warning("tilt-axis search (bin %d): the data ask to turn the same way up to "
                        "%g deg from %.2f deg; keeping that angle", level, max_offset_deg,
                        start_deg)
            return None
        return _illinois(counted, *bracket, tolerance_deg, max_evaluations - calls)
    except _NoMeasurement as failed:
        log.warning("tilt-axis search: at %.2f deg the level (bin %d) has too few valid "
                    "pixels to measure the axis; keeping %.2f deg", failed.angle_deg, level,
                    start_deg)
        return None


def _check_search(
    stack: np.ndarray, tolerance_deg: float, bracket_step_deg: float, max_offset_deg: float,
    iterations: int, max_evaluations: int,
) -> None:
    if stack.ndim != 3:
        raise InputError(f"the tilt series must be a stack (n, y, x), got shape {stack.shape}")
    if tolerance_deg <= 0 or bracket_step_deg <= 0 or max_offset_deg <= 0:
        raise InputError("tolerance_deg, bracket_step_deg and max_offset_deg must be > 0")
    if iterations < 1 or max_evaluations < 2:
        raise InputError("iterations must be >= 1 and max_evaluations >= 2")


def _bracket(
    f: Callable[[float], float], start: float, step: float, max_offset: float
) -> tuple[float, float, float, float] | None:
    """``(a, fa, b, fb)`` with ``fa`` and ``fb`` of opposite signs (or ``fa == 0``), or None."""
    a, fa = start, f(start)
    if fa == 0:
        return a, fa, a, fa
    direction = float(np.sign(fa))
    while True:
        if abs(a - start) >= max_offset:
            return None
        # the last trial sits at the limit itself
        b = start + direction * min(abs(a - start) + step, max_offset)
        fb = f(b)
        if np.sign(fb) != direction:
            return a, fa, b, fb
        a, fa, step = b, fb, 2 * step


def _illinois(
    f: Callable[[float], float], a: float, fa: float, b: float, fb: float, tolerance: float,
    budget: int,
) -> float:
    """Regula falsi with the Illinois modification on a sign-changing bracket ``[a, b]``."""
    if fa == 0 or a == b:
        return a
    if fb == 0:
        return b
    c, side = b, 0
    for _ in range(budget):
        previous = c
        c = (fa * b - fb * a) / (fa - fb)
        fc = f(c)
        if fc == 0 or abs(c - previous) < tolerance or abs(b - a) < tolerance:
            return float(c)
        if np.sign(fc) == np.sign(fb):
            b, fb = c, fc
            if side == -1:
                fa /= 2
            side = -1
        else:
            a, fa = c, fc
            if side == 1:
                fb /= 2
            side = 1
    return float(c)
