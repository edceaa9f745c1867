"""Coarse translation alignment of a tilt series by stretched neighbour cross-correlation.

Neighbouring tilts see the specimen almost alike; the higher tilt is foreshortened along x
(perpendicular to the tilt axis) by ``cos(t_i) / cos(t_ref)``, so it is stretched back by
the inverse factor before correlating. The walk starts at the lowest tilt and goes outward;
each reference is the original image resampled with its own (already found) shift, so
interpolation blur does not accumulate.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from emkit.errors import InputError, MismatchError, NonFiniteError, ShapeError
from emkit.tomo._axis import wrap_axis_deg
from emkit.tomo._correlate import bandpass_filter, correlation_peak
from emkit.tomo._transform import image_center, remove_gauge, transform_images, validity_masks

log = logging.getLogger(__name__)


@dataclass
class Prealignment:
    """Result of :func:`prealign`.

    Attributes
    ----------
    shifts_px : ndarray, shape (n, 2)
        ``(dy, dx)`` alignment shifts in unbinned pixels, applied after the rotation by
        ``tilt_axis_angle_deg``; rigid gauge removed (y has mean zero, x no part
        ``x0 cos t + z0 sin t``; see :func:`emkit.tomo.remove_gauge`).
    tilt_axis_angle_deg : float
        In-plane tilt-axis angle of the raw images (0 = along y).
    masks : ndarray of bool, shape (n, y, x)
        Pixels of each aligned image that come from inside the raw field of view.
    peaks : ndarray, shape (n,)
        Normalised correlation peak of each image with its reference (1 for the start image);
        low values flag images that did not match (blank, over-exposed, ...).
    """

    shifts_px: np.ndarray
    tilt_axis_angle_deg: float
    masks: np.ndarray
    peaks: np.ndarray


def check_tilt_series(
    stack: np.ndarray, tilt_angles_deg: np.ndarray, *, path: object = None
) -> tuple[np.ndarray, np.ndarray]:
    """Validate a tilt series and its angles; return float32 stack and float64 angles.

    Raises
    ------
    ShapeError, MismatchError, NonFiniteError, InputError
        With a one-line message naming ``path`` (when given) and the fix.
    """
    from emkit.errors import with_path

    stack = np.asarray(stack)
    angles = np.asarray(tilt_angles_deg, dtype=np.float64).ravel()
    where = None if path is None else str(path)
    if stack.ndim != 3:
        raise ShapeError(
            with_path(where, f"expected a tilt series (n, y, x), got an array of shape "
                      f"{stack.shape}")
        )
    if len(angles) != stack.shape[0]:
        raise MismatchError(
            with_path(where, f"{len(angles)} tilt angles but the stack has {stack.shape[0]} "
                      "images; give one angle per image")
        )
    if stack.shape[0] < 3:
        raise InputError(
            with_path(where, f"only {stack.shape[0]} tilt images; alignment and "
                      "reconstruction need at least 3")
        )
    if min(stack.shape[1:]) < 8:
        raise ShapeError(with_path(where, f"images of {stack.shape[1:]} pixels are too small"))
    if not np.all(np.isfinite(angles)):
        raise NonFiniteError(with_path(where, "tilt angles contain NaN or infinity"))
    if np.any(np.abs(angles) >= 90):
        raise InputError(with_path(where, "tilt angles must lie strictly between -90 and 90 "
                                   "degrees"))
    stack = stack.astype(np.float32, copy=False)
    if not np.all(np.isfinite(stack)):
        bad = int(np.count_nonzero(~np.isfinite(stack)))
        raise NonFiniteError(
            with_path(where, f"{bad} pixels are NaN or infinite; fix or remove those images")
        )
    return stack, angles


def bin_stack(stack: np.ndarray, factor: int) -> np.ndarray:
    """Average ``factor x factor`` pixel blocks of every image (edges cropped)."""
    if factor == 1:
        return np.asarray(stack, dtype=np.float32)
    from emkit.ops import bin_image

    return np.asarray(bin_image(np.asarray(stack, dtype=np.float32), factor), dtype=np.float32)


def _taper(images: np.ndarray, width_px: int) -> np.ndarray:
    from emkit.ops import taper_edges

    return np.asarray(taper_edges(images, width_px), dtype=np.float32)


def _normalise(image: np.ndarray) -> np.ndarray:
    image = image - image.mean()
    std = image.std()
    return image / std if std > 0 else image


def soft_window(mask: np.ndarray, width_px: float) -> np.ndarray:
    """A window that is 1 inside ``mask`` and falls to 0 over ``width_px`` at its border.

    Parameters
    ----------
    mask : ndarray of bool, shape (y, x)
        Valid pixels (e.g. the common field of view of two shifted images).
    width_px : float
        Width of the raised-cosine edge in pixels.

    Returns
    -------
    ndarray, shape (y, x), float32
    """
    padded = np.pad(mask, 1, constant_values=False)
    distance = ndimage.distance_transform_edt(padded)[1:-1, 1:-1]
    ramp = np.clip(distance / max(width_px, 1e-6), 0.0, 1.0)
    return (0.5 - 0.5 * np.cos(np.pi * ramp)).astype(np.float32)


def _apply_window(image: np.ndarray, window: np.ndarray) -> np.ndarray:
    total = float(window.sum())
    mean = float((image * window).sum() / total) if total > 0 else 0.0
    return (image - mean) * window


def stretch_x(image: np.ndarray, factor: float) -> np.ndarray:
    """Magnify an image along x by ``factor`` about the tilt axis (image centre column)."""
    if factor == 1.0:
        return image.astype(np.float32, copy=True)
    cx = image_center(image.shape)[1]
    # output(y, x) = input(y, cx + (x - cx) / factor)
    return ndimage.affine_transform(
        image,
        np.array([1.0, 1.0 / factor]),
        offset=np.array([0.0, cx - cx / factor]),
        order=1,
        mode="constant",
        cval=float(image.mean()),
    ).astype(np.float32)


def _walk_order(angles: np.ndarray) -> list[tuple[int, int]]:
    """(target, reference) pairs walking outward from the lowest tilt, in angle order."""
    order = np.argsort(angles, kind="stable")
    start = int(np.argmin(np.abs(angles[order])))
    pairs = [(int(order[k]), int(order[k - 1])) for k in range(start + 1, len(order))]
    pairs += [(int(order[k]), int(order[k + 1])) for k in range(start - 1, -1, -1)]
    return pairs


def prealign(
    stack: np.ndarray,
    tilt_angles_deg: np.ndarray,
    *,
    binning: int = 1,
    tilt_axis_angle_deg: float | str = 0.0,
    max_shift_px: float | None = None,
    lowpass: float = 0.15,
    highpass: float = 0.01,
    taper_fraction: float = 0.1,
    refine_iterations: int = 3,
    neighbours: int = 3,
    network_passes: int = 1,
    progress: bool = False,
) -> Prealignment:
    """Coarse translation alignment by cross-correlating stretched neighbouring tilts.

    Parameters
    ----------
    stack : ndarray, shape (n, y, x)
        Raw tilt series, tilt axis along y (or at ``tilt_axis_angle_deg``).
    tilt_angles_deg : ndarray, shape (n,)
        Tilt angle of each image in degrees (any order).
    binning : int
        Correlate images binned by this factor (faster, less noise); shifts are returned
        in unbinned pixels.
    tilt_axis_angle_deg : float or "auto"
        In-plane angle of the tilt axis in the raw images (see
        :func:`emkit.geometry.tilt_axis_rotation_xy`); ``"auto"`` estimates it with
        :func:`estimate_tilt_axis`. Images are rotated so the axis is along y first.
    max_shift_px : float, optional
        Largest shift between neighbours to search (unbinned pixels); default a quarter of
        the smaller image side.
    lowpass, highpass : float
        Band-pass of the correlation in cycles per (binned) pixel.
    taper_fraction : float
        Width of the cosine edge taper as a fraction of the image side.
    refine_iterations : int
        Re-correlations after shifting the image onto its reference (removes the bias of
        the edge taper towards zero shift).
    neighbours, network_passes : int
        After the walk, every image is also correlated with its ``neighbours`` next tilts
        on each side and all shifts are re-solved by least squares from these pairs
        (``network_passes`` times): the longer baselines keep pair errors from adding up
        along the walk. ``network_passes=0`` keeps the plain walk.
    progress : bool
        Show a progress bar.

    Returns
    -------
    Prealignment
        Shifts (rigid gauge removed), tilt-axis angle, validity masks and correlation peaks.

    Examples
    --------
    >>> result = prealign(stack, angles, binning=2)            # doctest: +SKIP
    >>> aligned = transform_images(stack, result.shifts_px)    # doctest: +SKIP
    """
    stack, angles = check_tilt_series(stack, tilt_angles_deg)
    if binning < 1:
        raise InputError(f"binning must be >= 1, got {binning}")
    if tilt_axis_angle_deg == "auto":
        axis_deg = estimate_tilt_axis(stack, angles, binning=max(binning, 1))
    else:
        axis_deg = float(tilt_axis_angle_deg)
    n = len(stack)
    work = stack
    if axis_deg != 0.0:
        work = transform_images(stack, np.zeros((n, 2)), tilt_axis_angle_deg=axis_deg, order=1)
    binned = bin_stack(work, binning)
    binned = np.stack([_normalise(im) for im in binned])
    _, ny, nx = binned.shape
    if max_shift_px is None:
        max_shift = min(ny, nx) / 4.0
    else:
        max_shift = max_shift_px / binning
    width = max(2, int(round(taper_fraction * min(ny, nx))))
    filt = bandpass_filter((ny, nx), lowpass=lowpass, highpass=highpass)
    cos = np.cos(np.deg2rad(angles))
    shifts = np.zeros((n, 2))
    peaks = np.ones(n)
    pairs = _walk_order(angles)
    iterator = pairs
    if progress:
        from tqdm import tqdm

        iterator = tqdm(pairs, desc="prealign", unit="image")
    for target, ref in iterator:
        ref_image = binned[ref]
        if np.any(shifts[ref] != 0):
            ref_image = transform_images(ref_image[None], shifts[ref][None], order=3)[0]
        factor = float(cos[ref] / cos[target])
        moving = stretch_x(binned[target], factor)
        p, peak = correlation_peak(
            _taper(ref_image[None], width)[0],
            _taper(moving[None], width)[0],
            filt=filt,
            max_shift_px=(max_shift, max_shift * factor),
        )
        # Stretching about the axis scales an x shift by the same factor.
        shift = np.array([p[0], p[1] / factor])
        # Two biases remain: a window fixed in the image frame pulls the peak towards zero
        # shift, and the stretch above was about the image centre, not about the tilt axis
        # (which sits at the centre only once the image is shifted). So shift the raw image
        # by the estimate, stretch it about the centre, and re-correlate inside one soft
        # window over the common field of view until the correction vanishes.
        for _ in range(refine_iterations):
            shifts[target] = shift
            correction, peak = _pair_correction(
                binned, shifts, ref, target, factor, filt, width, max_shift_px=2.0
            )
            shift = shift + correction
            # Converged when the correlation peak (stretched pixels) no longer moves.
            if max(abs(correction[0]), abs(correction[1] * factor)) < 0.01:
                break
        shifts[target] = shift
        peaks[target] = peak
        log.debug("tilt %.1f: shift %s peak %.3f", angles[target], shifts[target], peak)
    for _ in range(network_passes):
        shifts = _network_refine(
            binned, angles, shifts, neighbours=neighbours, filt=filt, width=width
        )
    shifts = remove_gauge(shifts * binning, angles, gauge="rigid")
    masks = validity_masks(stack.shape, shifts, tilt_axis_angle_deg=axis_deg)
    return Prealignment(
        shifts_px=shifts, tilt_axis_angle_deg=axis_deg, masks=masks, peaks=peaks
    )


def _pair_correction(
    images: np.ndarray,
    shifts: np.ndarray,
    ref: int,
    target: int,
    factor: float,
    filt: np.ndarray,
    width: int,
    *,
    max_shift_px: float = 3.0,
) -> tuple[np.ndarray, float]:
    """Residual ``(dy, dx)`` of ``shift[target] - shift[ref]`` and the correlation peak, from
    one windowed correlation of the shifted, stretched target with the shifted reference."""
    _, ny, nx = images.shape
    reference = transform_images(images[ref][None], shifts[ref][None], order=3)[0]
    moving = stretch_x(
        transform_images(images[target][None], shifts[target][None], order=3)[0], factor
    )
    valid_ref = validity_masks((1, ny, nx), shifts[ref][None], margin_px=0.5)[0]
    valid = validity_masks((1, ny, nx), shifts[target][None], margin_px=0.5)[0]
    valid = stretch_x(valid.astype(np.float32), factor) > 0.999
    window = soft_window(valid_ref & valid, width)
    dp, peak = correlation_peak(
        _apply_window(reference, window),
        _apply_window(moving, window),
        filt=filt,
        max_shift_px=max_shift_px,
    )
    return np.array([dp[0], dp[1] / factor]), peak


def _network_refine(
    images: np.ndarray,
    angles: np.ndarray,
    shifts: np.ndarray,
    *,
    neighbours: int,
    filt: np.ndarray,
    width: int,
) -> np.ndarray:
    """Least-squares shifts from correlations of each image with its next few tilts."""
    order = np.argsort(angles, kind="stable")
    cos = np.cos(np.deg2rad(angles))
    n = len(angles)
    rows: list[tuple[int, int]] = []
    observed: list[np.ndarray] = []
    for a in range(n):
        for b in range(a + 1, min(n, a + 1 + neighbours)):
            i, j = int(order[a]), int(order[b])
            # Stretch the higher tilt onto the lower one.
            ref, target = (i, j) if cos[i] >= cos[j] else (j, i)
            correction, _ = _pair_correction(
                images, shifts, ref, target, float(cos[ref] / cos[target]), filt, width
            )
            rows.append((ref, target))
            observed.append(shifts[target] - shifts[ref] + correction)
    # Solve s_target - s_ref = observed for all pairs, with the mean shift fixed at its
    # current value (the equations only see differences).
    design = np.zeros((len(rows) + 1, n))
    for k, (ref, target) in enumerate(rows):
        design[k, target], design[k, ref] = 1.0, -1.0
    design[-1] = 1.0 / n
    rhs = np.vstack([np.asarray(observed), shifts.mean(axis=0)[None]])
    solution, *_ = np.linalg.lstsq(design, rhs, rcond=None)
    return np.asarray(solution, dtype=np.float64)


def estimate_tilt_axis(
    stack: np.ndarray,
    tilt_angles_deg: np.ndarray,
    *,
    binning: int = 1,
    search_deg: tuple[float, float] = (-90.0, 90.0),
    step_deg: float = 2.0,
    tolerance_deg: float = 0.05,
    max_size_px: int = 160,
) -> float:
    """Estimate the in-plane tilt-axis angle from the common line of all projections.

    Projecting an image onto the tilt axis gives the projection of the specimen onto that
    line, which does not change with tilt. For each trial angle the images are rotated so
    the trial axis is along y and summed along x; the score is the mean normalised
    correlation of each profile with the lowest tilt's (each allowed a y shift). The best
    angle on a ``step_deg`` grid is refined by golden-section search.

    Parameters
    ----------
    stack : ndarray, shape (n, y, x)
        Raw tilt series.
    tilt_angles_deg : ndarray, shape (n,)
        Tilt angles (degrees), used to pair neighbours.
    binning : int
        Work on images binned by at least this factor (also binned down to about
        ``max_size_px``).
    search_deg : (float, float)
        Range of axis angles to try (degrees). Angles differing by 180 are the same axis.
    step_deg, tolerance_deg : float
        Grid step of the coarse search and precision of the refinement (degrees).
    max_size_px : int
        Bin further until the larger image side is at most this.

    Returns
    -------
    float
        Tilt-axis angle in degrees, measured from +y towards -x.
    """
    stack, angles = check_tilt_series(stack, tilt_angles_deg)
    factor = max(binning, int(np.ceil(max(stack.shape[1:]) / max_size_px)))
    images = bin_stack(stack, factor)
    images = np.stack([_normalise(im) for im in images])
    n, ny, nx = images.shape
    # Only a centred disc is used, so that every trial rotation sees the same area.
    radius = 0.5 * min(ny, nx) - 1
    cy, cx = image_center(images.shape)
    yy, xx = np.mgrid[:ny, :nx]
    disc = ((yy - cy) ** 2 + (xx - cx) ** 2) <= radius**2
    images = images * disc
    # Compare every image with the lowest tilt: neighbours look alike for any trial angle,
    # distant tilts only along the true axis.
    reference = int(np.argmin(np.abs(angles)))
    pairs = [(reference, i) for i in range(n) if i != reference]
    max_lag = max(2, ny // 4)
    lag_filter = None

    def score(axis_deg: float) -> float:
        nonlocal lag_filter
        rotated = transform_images(
            images, np.zeros((n, 2)), tilt_axis_angle_deg=axis_deg, order=1, fill=0.0
        )
        profiles = rotated.sum(axis=2)
        # Band-pass: the broad envelope of the specimen is alike at every trial angle.
        profiles = ndimage.gaussian_filter1d(profiles, 1.0, axis=1) - ndimage.gaussian_filter1d(
            profiles, ny / 16.0, axis=1
        )
        total = 0.0
        for a, b in pairs:
            pa, pb = profiles[a], profiles[b]
            denom = np.sqrt(np.sum(pa**2) * np.sum(pb**2))
            if denom == 0:
                continue
            cc = np.correlate(pa, pb, mode="full")[ny - 1 - max_lag : ny + max_lag]
            total += float(cc.max() / denom)
        return total / max(len(pairs), 1)

    grid = np.arange(search_deg[0], search_deg[1] + 1e-9, step_deg)
    scores = np.array([score(a) for a in grid])
    best = int(np.argmax(scores))
    lo = grid[best] - step_deg
    hi = grid[best] + step_deg
    golden = (np.sqrt(5) - 1) / 2
    c = hi - golden * (hi - lo)
    d = lo + golden * (hi - lo)
    fc, fd = score(c), score(d)
    while hi - lo > tolerance_deg:
        if fc > fd:
            hi, d, fd = d, c, fc
            c = hi - golden * (hi - lo)
            fc = score(c)
        else:
            lo, c, fc = c, d, fd
            d = lo + golden * (hi - lo)
            fd = score(d)
    axis = 0.5 * (lo + hi)
    # Report in (-90, 90]: an axis and its opposite direction are the same line.
    axis = wrap_axis_deg(axis)
    log.info("estimated tilt-axis angle %.2f deg", axis)
    return float(axis)
