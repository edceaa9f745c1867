"""Damaged serial sections with a known displacement field (folds and cracks).

A fold or a crack splits a section into two pieces of tissue that moved differently while
the section was cut and mounted. This module makes such a damaged neighbour from any
section image, with the true displacement field, so a registration can be scored by its
endpoint error.

The model, in the fixed image's frame: a smooth curve splits the fixed image into two
sides. Each side is carried into the moving image by its own affine transform. Where the
two moved sides overlap, the tissue is doubled and looks dark: a *fold*. Where neither
covers the moving image, there is no tissue: a *crack* (a bright gap). Either band is the
defect mask of the moving image.

Field convention (as everywhere in emkit): ``field`` has shape ``(2, H, W)``, float32; for
each pixel ``(y, x)`` of the fixed image, ``(dy, dx)`` is the displacement to its position
in the moving image, so that ``warped[y, x] = moving[y + dy, x + dx]``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from scipy import ndimage

from emkit.errors import InputError, ShapeError

__all__ = [
    "DamagedSection",
    "section_texture",
    "simulate_damaged_section",
    "smooth_random_field",
]


@dataclass
class DamagedSection:
    """A simulated damaged neighbour of a section image, with its ground truth.

    Attributes
    ----------
    moving : ndarray, shape (H, W)
        The damaged section, same dtype as the input image.
    defect_mask : ndarray of bool, shape (H, W)
        True where the moving image shows the fold or the crack (moving frame).
    true_field : ndarray of float32, shape (2, H, W)
        ``(dy, dx)`` in pixels from each fixed pixel to its position in ``moving``.
        Finite everywhere; use ``true_valid`` to know where it means something.
    true_valid : ndarray of bool, shape (H, W)
        Fixed pixels whose tissue is visible in ``moving``: inside the image and outside
        the defect.
    defect_mask_fixed : ndarray of bool, shape (H, W)
        The defect seen from the fixed frame: fixed pixels whose counterpart lies in the
        (one-pixel grown) defect band.
    params : dict
        The side affines (2x3, moving ``(x, y)`` -> fixed ``(x, y)``) and the curve, for
        the record.
    """

    moving: np.ndarray
    defect_mask: np.ndarray
    true_field: np.ndarray
    true_valid: np.ndarray
    defect_mask_fixed: np.ndarray
    params: dict[str, Any] = field(default_factory=dict)


def section_texture(
    shape: tuple[int, int] = (512, 512),
    *,
    seed: int = 0,
    cell_size_px: float = 28.0,
    dtype: type = np.uint8,
) -> np.ndarray:
    """A cell-like EM texture: irregular cells with dark membranes, organelles and noise.

    It stands in for a real section (tests and the demo must run without downloads) and
    has features at several scales, so keypoint detectors find plenty of matches.

    Parameters
    ----------
    shape : (int, int)
        Image size ``(H, W)`` in pixels.
    seed : int
        Random seed; the same seed gives the same image.
    cell_size_px : float
        Typical cell diameter in pixels.
    dtype : numpy dtype
        ``uint8`` (0-255), ``uint16`` (0-65535) or a float type (0-1).

    Returns
    -------
    ndarray, shape (H, W)
        The texture, in ``dtype``.

    Examples
    --------
    >>> image = section_texture((256, 256), seed=1)
    >>> image.shape, image.dtype
    ((256, 256), dtype('uint8'))
    """
    h, w = (int(shape[0]), int(shape[1]))
    if h < 16 or w < 16:
        raise ShapeError(f"texture shape {shape} too small; give at least 16x16 pixels")
    rng = np.random.default_rng(seed)
    # Voronoi cells on a smoothly warped grid, so that cells are irregular, not polygons.
    n_cells = max(4, int(h * w / cell_size_px**2))
    seeds = np.zeros((h, w), bool)
    seeds[rng.integers(0, h, n_cells), rng.integers(0, w, n_cells)] = True
    warp_sigma = cell_size_px
    wy = ndimage.gaussian_filter(rng.standard_normal((h, w)), warp_sigma)
    wx = ndimage.gaussian_filter(rng.standard_normal((h, w)), warp_sigma)
    scale = 0.35 * cell_size_px / max(float(np.abs(wy).max()), float(np.abs(wx).max()), 1e-12)
    yy, xx = np.mgrid[0:h, 0:w]
    iy = np.clip(np.rint(yy + scale * wy), 0, h - 1).astype(np.intp)
    ix = np.clip(np.rint(xx + scale * wx), 0, w - 1).astype(np.intp)
    _, (ny, nx) = ndimage.distance_transform_edt(~seeds, return_indices=True)
    labels = (ny * w + nx)[iy, ix]
    boundary = np.zeros((h, w), bool)
    boundary[:-1] |= labels[:-1] != labels[1:]
    boundary[:, :-1] |= labels[:, :-1] != labels[:, 1:]
    membranes = ndimage.gaussian_filter(boundary.astype(np.float32), 1.0)
    membranes /= max(float(membranes.max()), 1e-6)
    # Cell interiors of different grey, organelles as dark blobs, smooth and fine noise.
    _, inverse = np.unique(labels, return_inverse=True)
    grey = rng.uniform(0.45, 0.85, inverse.max() + 1)[inverse.reshape(h, w)]
    blobs = np.zeros((h, w), np.float32)
    n_blobs = max(1, int(h * w / (3.0 * cell_size_px) ** 2))
    blobs[rng.integers(0, h, n_blobs), rng.integers(0, w, n_blobs)] = 1.0
    blobs = ndimage.gaussian_filter(blobs, cell_size_px / 8.0)
    blobs /= max(float(blobs.max()), 1e-6)
    smooth = ndimage.gaussian_filter(rng.standard_normal((h, w)), cell_size_px / 2.0)
    smooth /= max(float(np.abs(smooth).max()), 1e-6)
    image = (
        grey
        - 0.55 * membranes
        - 0.45 * np.clip(blobs * 2.0, 0, 1)
        + 0.08 * smooth
        + 0.03 * rng.standard_normal((h, w))
    )
    image = (image - image.min()) / max(float(np.ptp(image)), 1e-6)
    return _to_dtype(image.astype(np.float32), np.dtype(dtype))


def simulate_damaged_section(
    fixed: np.ndarray,
    *,
    kind: Literal["fold", "crack"] = "fold",
    seed: int = 0,
    band_px: tuple[float, float] = (10.0, 24.0),
    shift_px: float = 6.0,
    rotation_deg: float = 1.5,
    shear: float = 0.01,
    noise: float = 0.02,
    elastic_px: float = 0.0,
    elastic_length_px: float | None = None,
) -> DamagedSection:
    """Make a damaged neighbour of ``fixed`` with a fold or a crack and its true field.

    Parameters
    ----------
    fixed : ndarray, shape (H, W)
        The (undamaged) reference section: uint8, uint16 or float.
    kind : {"fold", "crack"}
        A fold (the two sides pushed over each other: a dark band of doubled tissue) or a
        crack (the sides pulled apart: a bright gap with no tissue).
    seed : int
        Random seed; the same seed gives the same section.
    band_px : (float, float)
        Range of the defect band's width in pixels (drawn per section).
    shift_px : float
        Typical displacement of each side in pixels (global shift plus a different
        shift per side).
    rotation_deg : float
        Typical rotation in degrees: a global one plus a different one per side.
    shear : float
        Typical shear (dimensionless) per side.
    noise : float
        Standard deviation of added Gaussian noise, as a fraction of the intensity range.
    elastic_px : float
        Largest displacement in pixels of a smooth non-affine warp that each side gets on
        top of its affine (each side its own field, see :func:`smooth_random_field`);
        0 (default): affine sides only.
    elastic_length_px : float, optional
        Correlation length of that warp in pixels (default: a quarter of the shorter
        image side).

    Returns
    -------
    DamagedSection
        The moving image (dtype of ``fixed``), its defect mask, the true field
        ``(2, H, W)`` float32 in the fixed frame and where that field is valid.

    Raises
    ------
    ShapeError
        If ``fixed`` is not a 2D image of at least 64x64 pixels.
    InputError
        If ``kind`` is unknown or ``elastic_px`` is negative.

    Examples
    --------
    >>> fixed = section_texture((256, 256), seed=0)
    >>> damaged = simulate_damaged_section(fixed, kind="crack", seed=3)
    >>> damaged.true_field.shape
    (2, 256, 256)
    """
    fixed = np.asarray(fixed)
    _check_damage_options(fixed, kind, elastic_px)
    rng = np.random.default_rng(seed)
    h, w = fixed.shape
    length, elastic = _side_warps(seed, (h, w), elastic_px, elastic_length_px)
    centre = np.array([(w - 1) / 2.0, (h - 1) / 2.0])
    curve = _draw_curve(rng, (h, w), centre)
    band, b_side, elastic = _side_affines(
        rng,
        curve,
        elastic,
        (h, w),
        centre,
        kind=kind,
        band_px=band_px,
        shift_px=shift_px,
        rotation_deg=rotation_deg,
        shear=shear,
    )
    moving, defect = _render_moving(fixed, curve, b_side, elastic, rng, kind=kind, noise=noise)
    true_field, true_valid, defect_fixed = _true_field(curve, b_side, elastic, defect)
    params = {
        "kind": kind,
        "seed": seed,
        "band_px": float(band),
        "elastic_px": float(elastic_px),
        "elastic_length_px": float(length) if elastic_px > 0 else None,
        "side_affines_xy": [b[:2].tolist() for b in b_side],
        "curve": {
            "through_xy": curve.through.tolist(),
            "normal_xy": curve.normal.tolist(),
            "wave_amplitude_px": float(curve.wave_amp),
            "wave_length_px": float(curve.wave_len),
            "wave_phase_rad": float(curve.wave_phase),
        },
    }
    return DamagedSection(
        moving=_to_dtype(moving.astype(np.float32), fixed.dtype, like=fixed),
        defect_mask=defect,
        true_field=true_field,
        true_valid=true_valid,
        defect_mask_fixed=defect_fixed,
        params=params,
    )


def _check_damage_options(fixed: np.ndarray, kind: str, elastic_px: float) -> None:
    """The errors :func:`simulate_damaged_section` raises for its inputs."""
    if fixed.ndim != 2 or min(fixed.shape) < 64:
        raise ShapeError(f"need a 2D image of at least 64x64 pixels, got shape {fixed.shape}")
    if kind not in ("fold", "crack"):
        raise InputError(f"unknown defect kind {kind!r}; use 'fold' or 'crack'")
    if not np.isfinite(elastic_px) or elastic_px < 0:
        raise InputError(f"elastic_px must be >= 0, got {elastic_px}")


def _side_warps(
    seed: int,
    shape: tuple[int, int],
    elastic_px: float,
    elastic_length_px: float | None,
) -> tuple[float, list[np.ndarray | None]]:
    """The correlation length and each side's smooth non-affine warp (None when
    ``elastic_px`` is 0)."""
    h, w = shape
    # Drawn from their own generator so that elastic_px = 0 leaves every other draw as it was.
    elastic_rng = np.random.default_rng([seed, 7])
    length = float(elastic_length_px) if elastic_length_px else 0.25 * min(h, w)
    elastic = [
        smooth_random_field((h, w), elastic_px, length, elastic_rng) if elastic_px > 0 else None
        for _ in range(2)
    ]
    return length, elastic


@dataclass
class _Curve:
    """The fold line in the fixed frame: a wavy curve through ``through``."""

    through: np.ndarray
    normal: np.ndarray
    tangent: np.ndarray
    wave_amp: float
    wave_len: float
    wave_phase: float

    def side(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Signed distance-like value of points ``(x, y)``: negative on side 1, >= 0 on side 2."""
        dx, dy = x - self.through[0], y - self.through[1]
        t = dx * self.tangent[0] + dy * self.tangent[1]
        return (
            dx * self.normal[0]
            + dy * self.normal[1]
            + self.wave_amp * np.sin(2 * np.pi * t / self.wave_len + self.wave_phase)
        )


def _draw_curve(rng: np.random.Generator, shape: tuple[int, int], centre: np.ndarray) -> _Curve:
    """The fold line in the fixed frame: a wavy curve through the central part of the image."""
    h, w = shape
    angle = rng.uniform(0.0, np.pi)
    normal = np.array([np.cos(angle), np.sin(angle)])
    tangent = np.array([-normal[1], normal[0]])
    through = centre + rng.uniform(-0.15, 0.15, 2) * np.array([w, h])
    wave_amp = rng.uniform(0.02, 0.06) * min(h, w)
    wave_len = rng.uniform(0.8, 1.6) * max(h, w)
    wave_phase = rng.uniform(0, 2 * np.pi)
    return _Curve(through, normal, tangent, wave_amp, wave_len, wave_phase)


def _side_affines(
    rng: np.random.Generator,
    curve: _Curve,
    elastic: list[np.ndarray | None],
    shape: tuple[int, int],
    centre: np.ndarray,
    *,
    kind: str,
    band_px: tuple[float, float],
    shift_px: float,
    rotation_deg: float,
    shear: float,
) -> tuple[float, list[np.ndarray], list[np.ndarray | None]]:
    """The band width and each side's affine (3x3, moving -> fixed ``(x, y)``), with the
    side warps, damped until the band is open along all of the visible curve."""
    h, w = shape
    through, normal, tangent = curve.through, curve.normal, curve.tangent
    # Global affine (moving -> fixed) shared by both sides, then a different one per side.
    glob = _affine(
        rotation_rad=np.deg2rad(rng.uniform(-1, 1) * rotation_deg),
        shear=rng.uniform(-1, 1) * shear,
        scale=1.0 + rng.uniform(-0.01, 0.01),
        shift=rng.uniform(-1, 1, 2) * shift_px,
        about=centre,
    )
    band = rng.uniform(*band_px)
    # A fold pushes the sides over each other (tissue doubled), a crack pulls them apart.
    # Each side also turns and shears a little about a common point on the curve; that
    # changes the band's width along the curve, so it is scaled down until the band is at
    # least a few pixels wide along all of the curve's visible length.
    direction = 1.0 if kind == "fold" else -1.0
    pivot = through + tangent * rng.uniform(-0.2, 0.2) * max(h, w)
    rotations = rng.uniform(-1, 1, 2) * rotation_deg
    shears = rng.uniform(-1, 1, 2) * shear
    along = rng.uniform(-1, 1, 2) * shift_px
    t_curve = np.linspace(-1.0, 1.0, 401) * np.hypot(h, w)
    points = through[:, None] + tangent[:, None] * t_curve[None, :]
    visible = (points[0] >= 0) & (points[0] <= w - 1) & (points[1] >= 0) & (points[1] <= h - 1)
    points = points[:, visible]
    b_side: list[np.ndarray] = []
    for _ in range(20):
        b_side = []
        for i, sign in enumerate((-1.0, 1.0)):
            local = _affine(
                rotation_rad=np.deg2rad(rotations[i]),
                shear=shears[i],
                scale=1.0,
                shift=sign * direction * 0.5 * band * normal + along[i] * tangent,
                about=pivot,
            )
            b_side.append(glob @ local)
        # Width of the band where the curve is: separation of the two sides' moving
        # positions across the curve, positive for overlap (fold), negative for a gap.
        p1 = _invert_side(b_side[0], elastic[0], points)
        p2 = _invert_side(b_side[1], elastic[1], points)
        width = direction * (normal @ (p1 - p2))
        if points.shape[1] == 0 or width.min() >= min(4.0, 0.5 * band):
            break
        rotations *= 0.7
        shears *= 0.7
        if elastic[0] is not None and elastic[1] is not None:
            # Pull the two sides' warps towards their mean: they differ less across the curve.
            mean = 0.5 * (elastic[0] + elastic[1])
            elastic = [mean + 0.7 * (e - mean) for e in elastic]
    return band, b_side, elastic


def _render_moving(
    fixed: np.ndarray,
    curve: _Curve,
    b_side: list[np.ndarray],
    elastic: list[np.ndarray | None],
    rng: np.random.Generator,
    *,
    kind: str,
    noise: float,
) -> tuple[np.ndarray, np.ndarray]:
    """The moving image (float, before conversion to the input dtype) and its defect mask
    (grown by one pixel)."""
    import cv2

    h, w = fixed.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    mapped = []
    for b, e in zip(b_side, elastic):
        fx = (b[0, 0] * xx + b[0, 1] * yy + b[0, 2]).astype(np.float32)
        fy = (b[1, 0] * xx + b[1, 1] * yy + b[1, 2]).astype(np.float32)
        if e is not None:
            fy += e[0]
            fx += e[1]
        mapped.append((fx, fy))
    phi1 = curve.side(*mapped[0])
    phi2 = curve.side(*mapped[1])
    covers = [phi1 < 0, phi2 >= 0]
    both = covers[0] & covers[1]
    neither = ~covers[0] & ~covers[1]

    image = _to_unit(fixed)
    sampled = [
        # Beyond the fixed image the tissue goes on (mirrored): a neighbouring section is
        # not cut off where the fixed image ends.
        cv2.remap(image, fx, fy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
        for fx, fy in mapped
    ]
    moving = np.where(covers[0], sampled[0], sampled[1])
    if kind == "fold":
        defect = both
        # Doubled tissue: darker and flatter than either layer alone.
        doubled = 0.25 * (sampled[0] + sampled[1]) * 0.5 + 0.05
        moving = np.where(both, doubled, moving)
    else:
        defect = neither
        bright = float(np.percentile(image, 99.0))
        moving = np.where(neither, bright, moving)
    gain = 1.0 + rng.uniform(-0.05, 0.05)
    moving = moving * gain + rng.uniform(-0.03, 0.03)
    moving = moving + noise * rng.standard_normal(moving.shape)
    # Bilinear reads beside the band blend in band values; count one pixel more as defect.
    defect = ndimage.binary_dilation(defect, iterations=1)
    return moving, defect


def _true_field(
    curve: _Curve,
    b_side: list[np.ndarray],
    elastic: list[np.ndarray | None],
    defect: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(true_field, true_valid, defect_mask_fixed)`` of a damaged section."""
    h, w = defect.shape
    # True field: each fixed pixel goes with its side's affine, inverted.
    fyy, fxx = np.mgrid[0:h, 0:w].astype(np.float64)
    side2 = curve.side(fxx, fyy) >= 0
    true_field = np.empty((2, h, w), np.float32)
    px = np.empty((h, w))
    py = np.empty((h, w))
    for side, b, e in ((~side2, b_side[0], elastic[0]), (side2, b_side[1], elastic[1])):
        sx, sy = _invert_side(b, e, np.vstack([fxx[side], fyy[side]]))
        px[side] = sx
        py[side] = sy
    true_field[0] = py - fyy
    true_field[1] = px - fxx
    inside = (px >= 0) & (px <= w - 1) & (py >= 0) & (py <= h - 1)
    iy = np.clip(np.rint(py), 0, h - 1).astype(np.intp)
    ix = np.clip(np.rint(px), 0, w - 1).astype(np.intp)
    dilated = ndimage.binary_dilation(defect, iterations=1)
    defect_fixed = inside & dilated[iy, ix]
    true_valid = inside & ~defect_fixed
    return true_field, true_valid, defect_fixed


def smooth_random_field(
    shape: tuple[int, int],
    amplitude_px: float,
    length_px: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """A smooth random displacement field ``(2, H, W)`` float32 (``(dy, dx)`` in pixels).

    Gaussian-filtered white noise (filter sigma ``length_px / 2``, drawn on a coarse grid
    and upsampled bicubically, so large images stay cheap), scaled so that the largest
    displacement length over the image is ``amplitude_px``.
    """
    import cv2

    h, w = int(shape[0]), int(shape[1])
    step = max(1, int(length_px // 8))
    ch, cw = -(-h // step) + 1, -(-w // step) + 1
    sigma = max(0.5 * length_px / step, 0.5)
    coarse = np.stack(
        [
            ndimage.gaussian_filter(rng.standard_normal((ch, cw)), sigma, mode="wrap")
            for _ in range(2)
        ]
    ).astype(np.float32)
    out = np.stack(
        [
            cv2.resize(c, (cw * step, ch * step), interpolation=cv2.INTER_CUBIC)[:h, :w]
            for c in coarse
        ]
    )
    top = float(np.sqrt((out**2).sum(axis=0)).max())
    return (out * (amplitude_px / max(top, 1e-12))).astype(np.float32)


def _invert_side(b: np.ndarray, elastic: np.ndarray | None, points_xy: np.ndarray) -> np.ndarray:
    """Moving ``(x, y)`` of fixed points ``(2, n)`` for one side: solve ``b(q) + e(q) = p``.

    ``e`` is sampled bilinearly in the moving frame; fixed-point iteration converges
    because the warp's gradient is far below 1.
    """
    inv = np.linalg.inv(b)
    points = np.asarray(points_xy, dtype=np.float64)
    if elastic is None:
        return inv[:2, :2] @ points + inv[:2, 2:3]
    q = inv[:2, :2] @ points + inv[:2, 2:3]
    for _ in range(12):
        coords = np.vstack([q[1], q[0]])
        ey = ndimage.map_coordinates(elastic[0], coords, order=1, mode="nearest")
        ex_ = ndimage.map_coordinates(elastic[1], coords, order=1, mode="nearest")
        q = inv[:2, :2] @ (points - np.vstack([ex_, ey])) + inv[:2, 2:3]
    return q


def _affine(
    *, rotation_rad: float, shear: float, scale: float, shift: np.ndarray, about: np.ndarray
) -> np.ndarray:
    """3x3 affine in ``(x, y)``: rotate, shear and scale about ``about``, then shift."""
    c, s = np.cos(rotation_rad), np.sin(rotation_rad)
    linear = scale * np.array([[c, -s], [s, c]]) @ np.array([[1.0, shear], [0.0, 1.0]])
    out = np.eye(3)
    out[:2, :2] = linear
    out[:2, 2] = about - linear @ about + np.asarray(shift, float)
    return out


def _to_unit(image: np.ndarray) -> np.ndarray:
    """Image as float32 in [0, 1] (integers by their dtype's range, floats by min-max)."""
    if np.issubdtype(image.dtype, np.integer):
        return (image.astype(np.float32) / float(np.iinfo(image.dtype).max)).astype(np.float32)
    lo, hi = float(np.min(image)), float(np.max(image))
    return ((image.astype(np.float32) - lo) / max(hi - lo, 1e-12)).astype(np.float32)


def _to_dtype(unit: np.ndarray, dtype: np.dtype, *, like: np.ndarray | None = None) -> np.ndarray:
    """Inverse of :func:`_to_unit`: float in [0, 1] back to ``dtype``."""
    unit = np.clip(unit, 0.0, 1.0)
    if np.issubdtype(dtype, np.integer):
        top = float(np.iinfo(dtype).max)
        return np.rint(unit * top).astype(dtype)
    if like is not None:
        lo, hi = float(np.min(like)), float(np.max(like))
        return (lo + unit * (hi - lo)).astype(dtype)
    return unit.astype(dtype)
