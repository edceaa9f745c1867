"""A synthetic whole cell for soft X-ray tomography, with organelle labels as ground truth.

The cell is built from smooth random shapes (every seed a different cell): a plasma
membrane around the cytoplasm, a nucleus with its envelope and nucleoli, mitochondria as
curved, branched tubes, lipid droplets, and unlabelled distractors (vesicles with a dark
lumen and a bright rim, dense vesicles, ER-like sheets). Each compartment has a linear
absorption coefficient of the water window (about 520 eV) in µm^-1, relative to the ice
that fills the rest of the volume (flat-field normalised against ice).

Imaging is the shared single-axis projector (tilt axis y) over +-65 deg, a Gaussian
zone-plate blur, Poisson photon noise on the transmitted intensity, and weighted
back-projection, so the tomogram carries the real missing-wedge artefacts (elongation and
streaks along z, shape-dependent contrast).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage

from emkit.errors import InputError

__all__ = ["CELL_CLASS_NAMES", "WATER_WINDOW_ABSORPTION_PER_UM", "SimulatedCell", "simulate_cell"]

#: Label value -> class name of :func:`simulate_cell`'s label volume.
CELL_CLASS_NAMES = ("outside", "cytoplasm", "nucleus", "mitochondria", "lipid droplets")

#: Linear absorption coefficients (µm^-1) near 520 eV, from the ranges reported for cryo
#: soft X-ray tomograms of mammalian and yeast cells (ice ~0.11, cytoplasm 0.2-0.3,
#: nucleus ~0.3, nucleoli ~0.4, mitochondria 0.3-0.4, lipid droplets 0.5-0.8).
WATER_WINDOW_ABSORPTION_PER_UM = {
    "ice": 0.109,
    "cytoplasm": 0.24,
    "membrane": 0.36,
    "nucleus": 0.29,
    "nucleolus": 0.38,
    "mitochondria": 0.37,
    "lipid droplets": 0.62,
    "vesicle lumen": 0.15,
    "dense vesicle": 0.42,
    "er": 0.33,
}


@dataclass
class SimulatedCell:
    """A simulated soft X-ray tomogram of a cell and its ground truth.

    Attributes
    ----------
    tomogram : ndarray, shape (nz, ny, nx), float32
        The reconstruction (WBP), linear absorption relative to ice in µm^-1.
    labels : ndarray, shape (nz, ny, nx), uint8
        0 outside, 1 cytoplasm, 2 nucleus, 3 mitochondria, 4 lipid droplets
        (:data:`CELL_CLASS_NAMES`); distractors are labelled cytoplasm.
    absorption_per_um : ndarray, shape (nz, ny, nx), float32
        The true absorption relative to ice (µm^-1).
    voxel_size_A : float
    tilt_angles_deg : ndarray, shape (n,)
    info : dict
        Parameters of the simulation (for run records).
    """

    tomogram: np.ndarray
    labels: np.ndarray
    absorption_per_um: np.ndarray
    voxel_size_A: float
    tilt_angles_deg: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)


def _smooth_noise(
    shape: tuple[int, ...], scale_px: float, rng: np.random.Generator
) -> np.ndarray:
    """Zero-mean, unit-variance random field with features about ``scale_px`` across."""
    from scipy import fft as sfft

    white = rng.normal(size=shape).astype(np.float32)
    spectrum = sfft.rfftn(white, workers=-1)
    freqs = [np.fft.fftfreq(n) for n in shape[:-1]] + [np.fft.rfftfreq(shape[-1])]
    k2 = sum(
        (f**2).reshape([-1 if i == j else 1 for j in range(len(shape))])
        for i, f in enumerate(freqs)
    )
    # A Gaussian low-pass whose 1/e width matches features ``scale_px`` across.
    spectrum *= np.exp(-((np.pi * scale_px / 2) ** 2) * k2).astype(np.float32)
    out = sfft.irfftn(spectrum, s=shape, workers=-1).astype(np.float32)
    out = out - out.mean()
    return (out / max(float(out.std()), 1e-6)).astype(np.float32)


def _ellipsoid_radius(
    shape: tuple[int, int, int], centre: np.ndarray, semi_axes: np.ndarray, angle: float
) -> np.ndarray:
    """Normalised ellipsoidal radius (1 on the surface), rotated by ``angle`` in xy."""
    z, y, x = (np.arange(n, dtype=np.float32) - c for n, c in zip(shape, centre))
    c, s = np.float32(np.cos(angle)), np.float32(np.sin(angle))
    u = x[None, None, :] * c + y[None, :, None] * s
    v = -x[None, None, :] * s + y[None, :, None] * c
    return np.sqrt(
        (z[:, None, None] / semi_axes[0]) ** 2 + (v / semi_axes[1]) ** 2 + (u / semi_axes[2]) ** 2
    )


def _stamp_balls(
    target: np.ndarray, centres: np.ndarray, radii: np.ndarray, value: Any
) -> None:
    """Set ``target`` to ``value`` inside balls (voxel units, ``(z, y, x)`` centres)."""
    for centre, radius in zip(centres, radii):
        lo = np.maximum(np.floor(centre - radius).astype(int), 0)
        hi = np.minimum(np.ceil(centre + radius).astype(int) + 1, target.shape)
        if np.any(hi <= lo):
            continue
        grid = np.ogrid[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
        d2 = sum((g - c) ** 2 for g, c in zip(grid, centre))
        target[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]][d2 <= radius**2] = value


def _random_points(
    room: np.ndarray, n: int, rng: np.random.Generator
) -> np.ndarray:
    """``n`` random voxel positions where ``room`` is True (fewer if there are fewer)."""
    candidates = np.flatnonzero(room)
    if candidates.size == 0 or n <= 0:
        return np.zeros((0, 3))
    chosen = rng.choice(candidates, size=min(n, candidates.size), replace=False)
    return np.stack(np.unravel_index(chosen, room.shape), axis=1).astype(np.float64)


def _tube_walk(
    start: np.ndarray, radius: float, length: int, clearance: np.ndarray,
    rng: np.random.Generator,
) -> list[np.ndarray]:
    """Points of a smoothly curving tube that stays where ``clearance`` exceeds its radius."""
    direction = rng.normal(size=3)
    direction[0] *= 0.5  # cells are flatter in z: tubes run mostly in-plane
    direction /= np.linalg.norm(direction)
    points = [start]
    position = start.copy()
    for _ in range(length):
        for _attempt in range(6):
            turn = direction + rng.normal(scale=0.25, size=3)
            turn /= np.linalg.norm(turn)
            nxt = position + turn
            idx = tuple(np.clip(np.round(nxt).astype(int), 0, np.array(clearance.shape) - 1))
            if clearance[idx] > radius + 0.5:
                break
        else:
            break
        direction, position = turn, nxt
        points.append(position.copy())
    return points


def _mitochondria(
    clearance: np.ndarray, n: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Centres and radii of the balls that make up ``n`` branched tubes."""
    centres: list[np.ndarray] = []
    radii: list[float] = []
    starts = _random_points(clearance > 6.0, n, rng)
    for start in starts:
        radius = float(rng.uniform(3.2, 4.8))
        tube = _tube_walk(start, radius, int(rng.integers(18, 55)), clearance, rng)
        branches = [tube]
        if len(tube) > 12 and rng.random() < 0.6:  # a branch from somewhere along the tube
            origin = tube[int(rng.integers(4, len(tube) - 4))]
            branches.append(_tube_walk(origin, radius * 0.85, int(rng.integers(8, 25)),
                                       clearance, rng))
        for k, branch in enumerate(branches):
            r = radius if k == 0 else radius * 0.85
            centres.extend(branch)
            radii.extend(r * (1 + 0.08 * np.sin(np.arange(len(branch)) / 3.0)))
    if not centres:
        return np.zeros((0, 3)), np.zeros(0)
    return np.asarray(centres), np.asarray(radii)


def _cell_geometry(
    shape: tuple[int, int, int], rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Masks of the cell and the nucleus, and the depth inside the cell (voxels)."""
    size = np.array(shape, dtype=np.float32)
    centre = (size - 1) / 2 + rng.uniform(-0.03, 0.03, 3) * size
    semi = size * np.array([rng.uniform(0.41, 0.46), rng.uniform(0.39, 0.46),
                            rng.uniform(0.39, 0.46)], dtype=np.float32)
    wobble = _smooth_noise(shape, max(shape) / 4, rng)
    cell = _ellipsoid_radius(shape, centre, semi, rng.uniform(0, np.pi)) + 0.07 * wobble < 1.0
    depth = ndimage.distance_transform_edt(cell).astype(np.float32)
    # nucleus: a fifth to a third of the cell volume, as in lymphocytes and yeast
    n_semi = semi * np.array([rng.uniform(0.6, 0.72), rng.uniform(0.5, 0.62),
                              rng.uniform(0.5, 0.62)], dtype=np.float32)
    offset = rng.uniform(-1, 1, 3) * (semi - n_semi) * 0.4
    offset[0] *= 0.2
    n_wobble = _smooth_noise(shape, max(shape) / 6, rng)
    nucleus = (_ellipsoid_radius(shape, centre + offset, n_semi, rng.uniform(0, np.pi))
               + 0.06 * n_wobble < 1.0) & (depth > 4)
    return cell, nucleus, depth


def _check_shape(shape: tuple[int, int, int]) -> tuple[int, int, int]:
    out = tuple(int(s) for s in shape)
    if len(out) != 3 or min(out) < 24:
        raise InputError(f"a cell needs a shape (nz, ny, nx) of at least 24 voxels each, "
                         f"got {shape}")
    return out


def _organelles(
    shape: tuple[int, int, int], rng: np.random.Generator, *, n_mitochondria: int,
    n_lipid_droplets: int, n_vesicles: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Absorption relative to ice (µm^-1, float32) and labels (uint8) of one random cell."""
    mu = WATER_WINDOW_ABSORPTION_PER_UM
    ice = mu["ice"]
    cell, nucleus, depth = _cell_geometry(shape, rng)
    labels = np.zeros(shape, np.uint8)
    labels[cell] = 1
    labels[nucleus] = 2
    absorption = np.zeros(shape, np.float32)
    texture = _smooth_noise(shape, 3.0, rng)
    absorption[cell] = mu["cytoplasm"] - ice + 0.02 * texture[cell]
    absorption[nucleus] = mu["nucleus"] - ice + 0.015 * texture[nucleus]
    n_depth = ndimage.distance_transform_edt(nucleus).astype(np.float32)
    _stamp_balls(absorption, _random_points(n_depth > 6, int(rng.integers(1, 4)), rng),
                 rng.uniform(3.0, 5.5, 3), mu["nucleolus"] - ice)
    envelope = nucleus & (n_depth <= 1.5)
    absorption[envelope] = mu["membrane"] - ice
    absorption[cell & (depth <= 1.5)] = mu["membrane"] - ice
    # Room for organelles: inside the cell, clear of the membrane and the nucleus.
    outside_nucleus = ndimage.distance_transform_edt(~nucleus).astype(np.float32)
    clearance = np.minimum(depth - 2.0, outside_nucleus - 2.0)
    mito = np.zeros(shape, bool)
    centres, radii = _mitochondria(clearance, n_mitochondria, rng)
    _stamp_balls(mito, centres, radii, True)
    labels[mito] = 3
    absorption[mito] = mu["mitochondria"] - ice + 0.02 * texture[mito]
    free = np.minimum(clearance, ndimage.distance_transform_edt(~mito).astype(np.float32) - 1)
    droplets = np.zeros(shape, bool)
    d_radii = rng.uniform(3.0, 6.5, n_lipid_droplets)
    for centre, radius in zip(_random_points(free > 4.5, n_lipid_droplets, rng), d_radii):
        room = float(free[tuple(centre.astype(int))]) - 1
        _stamp_balls(droplets, centre[None], np.array([min(radius, room)]), True)
    labels[droplets] = 4
    absorption[droplets] = mu["lipid droplets"] - ice
    free = np.minimum(free, ndimage.distance_transform_edt(~droplets).astype(np.float32) - 1)
    _distractors(absorption, free, rng, n_vesicles=n_vesicles)
    return absorption, labels


def _distractors(
    absorption: np.ndarray, free: np.ndarray, rng: np.random.Generator, *, n_vesicles: int
) -> None:
    """Unlabelled look-alikes, drawn into ``absorption`` where ``free`` leaves room."""
    mu = WATER_WINDOW_ABSORPTION_PER_UM
    ice = mu["ice"]
    shape = absorption.shape
    # ER-like sheets: thin shells along level sets of a smooth field, in patches.
    level = _smooth_noise(shape, 10.0, rng)
    patches = _smooth_noise(shape, 24.0, rng) > 0.3
    sheets = (np.abs(level) < 0.07) & patches & (free > 1.0)
    absorption[sheets] = mu["er"] - ice
    points = _random_points(free > 4.0, n_vesicles, rng)
    for centre in points:
        room = float(free[tuple(centre.astype(int))])
        radius = float(rng.uniform(2.0, min(5.0, max(room - 1, 2.1))))
        if rng.random() < 0.6:  # a vesicle: bright rim around a dark lumen
            _stamp_balls(absorption, centre[None], np.array([radius]), mu["membrane"] - ice)
            _stamp_balls(absorption, centre[None], np.array([radius - 1.2]),
                         mu["vesicle lumen"] - ice)
        else:  # a dense vesicle, darker than a lipid droplet
            _stamp_balls(absorption, centre[None], np.array([min(radius, 3.0)]),
                         mu["dense vesicle"] - ice)


def _image_and_reconstruct(
    absorption: np.ndarray, angles: np.ndarray, *, voxel_size_A: float, blur_px: float,
    photons_per_pixel: float, rng: np.random.Generator,
) -> np.ndarray:
    """Project, blur, add photon noise, take the log and reconstruct by WBP (µm^-1)."""
    from emkit.ops import SingleAxisProjector, ramp_filter

    voxel_um = voxel_size_A * 1e-4
    projector = SingleAxisProjector(absorption.shape, angles, device="cpu")
    optical_depth = np.asarray(projector.forward(absorption), np.float32) * np.float32(voxel_um)
    if blur_px > 0:
        optical_depth = ndimage.gaussian_filter(optical_depth, (0, blur_px, blur_px))
    counts = rng.poisson(photons_per_pixel * np.exp(-optical_depth.astype(np.float64)))
    measured = -np.log(np.maximum(counts, 1) / photons_per_pixel).astype(np.float32)
    filtered = ramp_filter(measured, window="hann")
    step = np.deg2rad(np.gradient(np.sort(angles))) if len(angles) > 1 else np.array([np.pi])
    filtered *= step.astype(np.float32)[np.argsort(np.argsort(angles))][:, None, None]
    volume = np.asarray(projector.adjoint(filtered), np.float32)
    return volume / np.float32(voxel_um)


def simulate_cell(
    shape: tuple[int, int, int] = (96, 192, 192),
    *,
    voxel_size_A: float = 300.0,
    tilt_range_deg: tuple[float, float] = (-65.0, 65.0),
    tilt_step_deg: float = 2.0,
    blur_px: float = 1.0,
    photons_per_pixel: float = 3000.0,
    n_mitochondria: int | None = None,
    n_lipid_droplets: int | None = None,
    n_vesicles: int | None = None,
    seed: int = 0,
) -> SimulatedCell:
    """Simulate a soft X-ray tomogram of a whole cell with organelle labels.

    Parameters
    ----------
    shape : (nz, ny, nx)
        Tomogram size in voxels (each at least 24).
    voxel_size_A : float
        Voxel size in Å (300 Å = 30 nm, typical of cryo-SXT with a 25-40 nm zone plate).
    tilt_range_deg, tilt_step_deg : (float, float), float
        Tilt range and step in degrees (+-65 deg leaves a 50 deg missing wedge).
    blur_px : float
        Standard deviation of the Gaussian zone-plate blur on the detector (pixels).
    photons_per_pixel : float
        Incident photons per detector pixel and image (lower: noisier).
    n_mitochondria, n_lipid_droplets, n_vesicles : int, optional
        Numbers of organelles (default: random, scaled with the cell size).
    seed : int
        Same seed, same cell and noise.

    Returns
    -------
    SimulatedCell

    Examples
    --------
    >>> cell = simulate_cell((32, 64, 64), seed=1)
    >>> cell.tomogram.shape, sorted(set(cell.labels.ravel().tolist()))[:3]
    ((32, 64, 64), [0, 1, 2])
    """
    shape = _check_shape(shape)
    if not voxel_size_A > 0 or not photons_per_pixel > 0 or blur_px < 0 or tilt_step_deg <= 0:
        raise InputError("voxel size, photons per pixel and tilt step must be positive and "
                         "blur non-negative")
    lo, hi = float(tilt_range_deg[0]), float(tilt_range_deg[1])
    if not -90 < lo < hi < 90:
        raise InputError(f"tilt range must satisfy -90 < first < last < 90, got ({lo}, {hi})")
    angles = np.arange(lo, hi + 1e-6 * tilt_step_deg, tilt_step_deg)
    rng = np.random.default_rng(seed)
    scale = np.prod(shape) / (96 * 192 * 192)
    counts = {
        "n_mitochondria": n_mitochondria if n_mitochondria is not None
        else int(rng.integers(22, 32) * scale) + 1,
        "n_lipid_droplets": n_lipid_droplets if n_lipid_droplets is not None
        else int(rng.integers(25, 40) * scale) + 1,
        "n_vesicles": n_vesicles if n_vesicles is not None
        else int(rng.integers(40, 60) * scale) + 1,
    }
    absorption, labels = _organelles(shape, rng, **counts)
    tomogram = _image_and_reconstruct(
        absorption, angles, voxel_size_A=voxel_size_A, blur_px=blur_px,
        photons_per_pixel=photons_per_pixel, rng=rng,
    )
    info = {"shape_zyx": list(shape), "voxel_size_A": voxel_size_A,
            "tilt_range_deg": [lo, hi], "tilt_step_deg": tilt_step_deg, "blur_px": blur_px,
            "photons_per_pixel": photons_per_pixel, "seed": seed, **counts,
            "class_names": list(CELL_CLASS_NAMES)}
    return SimulatedCell(tomogram, labels, absorption, float(voxel_size_A), angles, info)
