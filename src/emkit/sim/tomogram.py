"""Crowded cryo-ET tomograms of several particle species, with ground truth for picking.

The specimen: density templates (the built-in PDB-derived maps or any map, e.g. from
:func:`emkit.sim.density_from_pdb`) at the tomogram's voxel size, randomly rotated and
placed without overlaps (random sequential addition, as :func:`emkit.sim.place_particles`,
whose renderer this module shares), part of them clustered on both faces of a curved
membrane-like sheet; distractors: the membrane (a lipid bilayer, two dense leaflets),
gold beads (dense balls, ten times a protein's peak density) and an ice-thickness
gradient along x.

Imaging: the shared single-axis projector (tilt axis y, IMOD geometry) over the tilt
range, the contrast transfer function of an underfocused microscope, Gaussian noise at a
given SNR per projection (variance of the particles' CTF-filtered projections over the
noise variance, so distractors do not inflate it), CTF phase flipping and weighted
back-projection. So the tomogram carries the real missing wedge (elongation along z,
streaks). Written in the cryo-ET contrast convention: protein dark (negative).

Ground truth: centres (voxel index coordinates ``(z, y, x)``), class and rotation of each
particle, and an instance label map (particle ``i`` is label ``i + 1`` wherever its own
rotated template exceeds ``label_level`` of its peak; 0 elsewhere).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage

from emkit.errors import InputError
from emkit.io import Volume
from emkit.sim._placement import _render, _template_arrays, _template_radius

__all__ = ["DEFAULT_TOMOGRAM_TEMPLATES", "SimulatedTomogram", "simulate_tomogram"]

#: Three built-in species of similar size (radii about 40, 49 and 62 Å at 10 Å voxels).
DEFAULT_TOMOGRAM_TEMPLATES = ("1ake", "3enl", "6flr")

_GOLD_RADIUS_A = 50.0  # 10 nm fiducial beads
_GOLD_DENSITY = 10.0  # times the mean template peak
_MEMBRANE_DENSITY = 0.6  # leaflet density, times the mean template peak
_LEAFLET_SEPARATION_A = 35.0
_LEAFLET_SIGMA_A = 7.0
_CANDIDATES = 256


@dataclass
class SimulatedTomogram:
    """A simulated crowded cryo-ET tomogram and its ground truth.

    Attributes
    ----------
    tomogram : ndarray, shape (nz, ny, nx), float32
        The reconstruction (protein dark), noisy, with the missing wedge.
    density : ndarray, shape (nz, ny, nx), float32
        The noise-free specimen (particles, membrane, beads, ice gradient; protein positive).
    instance_labels : ndarray, shape (nz, ny, nx), int32
        0 background, ``i + 1`` inside particle ``i``.
    centres_zyx : ndarray, shape (n, 3), float64
        Particle centres in voxel index coordinates ``(z, y, x)``.
    class_ids : ndarray, shape (n,), int64
        Class of each particle, 1-based (``class_names[class_ids[i] - 1]``).
    rotations : ndarray, shape (n, 3, 3)
        Rotation of each particle on ``(x, y, z)`` (RELION sense; see
        :class:`emkit.sim.PlacedParticles`).
    on_membrane : ndarray, shape (n,), bool
        Whether the particle sits on the membrane.
    class_names : list of str
    radii_A : list of float
        Radius of each class in Å (farthest voxel above 2 % of the template's peak).
    tilt_series : ndarray, shape (n_tilts, ny, nx), float32
        The noisy, CTF-filtered projections (before phase flipping).
    tilt_angles_deg : ndarray, shape (n_tilts,)
    voxel_size_A : float
    info : dict
        Parameters of the simulation (for run records).
    """

    tomogram: np.ndarray
    density: np.ndarray
    instance_labels: np.ndarray
    centres_zyx: np.ndarray
    class_ids: np.ndarray
    rotations: np.ndarray
    on_membrane: np.ndarray
    class_names: list[str]
    radii_A: list[float]
    tilt_series: np.ndarray
    tilt_angles_deg: np.ndarray
    voxel_size_A: float
    info: dict[str, Any] = field(default_factory=dict)


def _load_templates(
    templates: Sequence[str | Volume | np.ndarray], voxel_size_A: float
) -> tuple[list[np.ndarray], list[str]]:
    from emkit.sim.templates import _resample_centred, density_template
    from emkit.sim.tiltseries import _crop_template

    arrays, names = [], []
    for k, t in enumerate(templates):
        if isinstance(t, str):
            data = density_template(t, voxel_size_A=voxel_size_A).data
            names.append(t.lower())
        elif isinstance(t, Volume):
            data = t.data
            if t.voxel_size is not None and abs(t.voxel_size[0] - voxel_size_A) > 1e-3:
                data = _resample_centred(np.asarray(data, np.float32), t.voxel_size[0],
                                         voxel_size_A)
            names.append(f"class{k + 1}" if t.path is None else t.path.stem)
        else:
            data = np.asarray(t)
            names.append(f"class{k + 1}")
        arrays.append(np.maximum(np.asarray(data, np.float32), 0))
    arrays = [_crop_template(a) for a in _template_arrays(arrays)]
    return arrays, names


def _membrane_surface(
    shape: tuple[int, int, int], rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Height ``z(y, x)`` of a gently curved sheet and its unit normals ``(3, ny, nx)``."""
    nz, ny, nx = shape
    wavelength = rng.uniform(1.0, 2.0) * max(ny, nx)
    amplitude = rng.uniform(0.05, 0.12) * nz
    phase, tilt = rng.uniform(0, 2 * np.pi), rng.uniform(-0.08, 0.08)
    y, x = np.mgrid[0:ny, 0:nx].astype(np.float64)
    height = (nz - 1) / 2 + amplitude * np.sin(2 * np.pi * x / wavelength + phase) + tilt * (
        y - ny / 2)
    dz_dy, dz_dx = np.gradient(height)
    normal = np.stack([np.ones_like(height), -dz_dy, -dz_dx])
    return height, normal / np.linalg.norm(normal, axis=0)


def _membrane_density(
    shape: tuple[int, int, int], height: np.ndarray, normal: np.ndarray, voxel_size_A: float
) -> np.ndarray:
    """Two Gaussian leaflets about the sheet (signed distance ~ (z - height) * n_z)."""
    z = np.arange(shape[0], dtype=np.float64)[:, None, None]
    distance_A = (z - height[None]) * normal[0][None] * voxel_size_A
    half = _LEAFLET_SEPARATION_A / 2
    leaflets = sum(np.exp(-0.5 * ((distance_A - s) / _LEAFLET_SIGMA_A) ** 2) for s in (-half, half))
    return leaflets.astype(np.float32)


@dataclass
class _Placement:
    centres: list[np.ndarray] = field(default_factory=list)
    radii: list[float] = field(default_factory=list)
    classes: list[int] = field(default_factory=list)  # 0 = gold bead
    on_membrane: list[bool] = field(default_factory=list)

    def free(self, candidates: np.ndarray, radius: float) -> np.ndarray:
        if not self.centres:
            return np.ones(len(candidates), dtype=bool)
        placed = np.asarray(self.centres)
        need = np.asarray(self.radii) + radius
        dist = np.linalg.norm(candidates[:, None, :] - placed[None], axis=2)
        return np.all(dist >= need, axis=1)


def _candidates(
    shape: tuple[int, int, int], radius: float, rng: np.random.Generator,
    membrane: tuple[np.ndarray, np.ndarray] | None, on_membrane: bool, clearance: float,
) -> np.ndarray:
    """Candidate centres: uniform away from the membrane, or on either face of it."""
    dims = np.array(shape, dtype=np.float64)
    low = np.full(3, radius)
    high = dims - 1.0 - low
    if membrane is None or not on_membrane:
        cand = rng.uniform(low, high, size=(_CANDIDATES, 3))
        if membrane is not None:
            height = membrane[0][cand[:, 1].astype(int), cand[:, 2].astype(int)]
            cand = cand[np.abs(cand[:, 0] - height) >= radius + clearance]
        return cand
    height, normal = membrane
    yx = rng.uniform(low[1:], high[1:], size=(_CANDIDATES, 2))
    iy, ix = yx[:, 0].astype(int), yx[:, 1].astype(int)
    side = rng.choice([-1.0, 1.0], size=_CANDIDATES)
    base = np.stack([height[iy, ix], yx[:, 0], yx[:, 1]], axis=1)
    cand = base + (side * (radius + clearance))[:, None] * normal[:, iy, ix].T
    inside = np.all((cand >= low) & (cand <= high), axis=1)
    return cand[inside]


def _place(
    shape: tuple[int, int, int], radii: np.ndarray, rng: np.random.Generator, *,
    volume_fraction: float, membrane_fraction: float, n_gold: int, gold_radius: float,
    membrane: tuple[np.ndarray, np.ndarray] | None, clearance: float,
) -> _Placement:
    """Random sequential addition of gold beads, then particles until the fraction is met."""
    placement = _Placement()
    for _ in range(n_gold):
        for _try in range(20):
            cand = _candidates(shape, gold_radius, rng, membrane, False, clearance)
            ok = placement.free(cand, gold_radius)
            if ok.any():
                placement.centres.append(cand[int(np.argmax(ok))])
                placement.radii.append(gold_radius)
                placement.classes.append(0)
                placement.on_membrane.append(False)
                break
    wanted = volume_fraction * float(np.prod(shape))
    filled, failures = 0.0, 0
    while filled < wanted and failures < 30:
        k = int(rng.integers(len(radii)))
        on_mem = membrane is not None and rng.random() < membrane_fraction
        cand = _candidates(shape, float(radii[k]), rng, membrane, on_mem, clearance)
        ok = placement.free(cand, float(radii[k])) if len(cand) else np.zeros(0, bool)
        if not ok.any():
            failures += 1
            continue
        failures = 0
        placement.centres.append(cand[int(np.argmax(ok))])
        placement.radii.append(float(radii[k]))
        placement.classes.append(k + 1)
        placement.on_membrane.append(bool(on_mem))
        filled += 4.0 / 3.0 * math.pi * float(radii[k]) ** 3
    return placement


def _render_particles(
    shape: tuple[int, int, int], arrays: list[np.ndarray], centres: np.ndarray,
    classes: np.ndarray, rotations: np.ndarray, label_level: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Sum of the rotated templates and the instance label map."""
    density = np.zeros(shape, dtype=np.float32)
    labels = np.zeros(shape, dtype=np.int32)
    for i, (centre, k, rot) in enumerate(zip(centres, classes, rotations)):
        template = arrays[int(k) - 1]
        size = int(max(template.shape)) + 3
        start = np.floor(centre).astype(np.int64) - size // 2
        local = np.zeros((size + 2,) * 3, dtype=np.float32)
        _render(local, template, centre - start + 1, rot, 1)
        lo = np.maximum(start - 1, 0)
        hi = np.minimum(start - 1 + size + 2, shape)
        src = tuple(slice(int(a - s + 1), int(b - s + 1)) for a, b, s in zip(lo, hi, start))
        dst = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
        patch = local[src]
        density[dst] += patch
        inside = (patch > label_level * float(template.max())) & (labels[dst] == 0)
        labels[dst][inside] = i + 1
    return density, labels


def _image_and_reconstruct(
    particles: np.ndarray, rest: np.ndarray, angles: np.ndarray, *, voxel_size_A: float,
    snr: float | None, defocus_um: float | None, voltage_kV: float, rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Project, CTF, noise at ``snr`` (per projection, of the particles), flip, WBP."""
    from emkit.ops import SingleAxisProjector, apply_ctf, phase_flip, ramp_filter

    projector = SingleAxisProjector(particles.shape, angles, device="cpu")
    signal = np.asarray(projector.forward(particles), np.float32)
    clutter = np.asarray(projector.forward(rest), np.float32)
    optics = dict(pixel_size_A=voxel_size_A, voltage_kV=voltage_kV)
    if defocus_um is not None:
        signal = np.asarray(apply_ctf(signal, defocus_A=defocus_um * 1e4, **optics), np.float32)
        clutter = np.asarray(apply_ctf(clutter, defocus_A=defocus_um * 1e4, **optics),
                             np.float32)
    stack = signal + clutter
    if snr is not None:
        sigma = math.sqrt(float(signal.var()) / snr)
        stack += rng.normal(0.0, sigma, stack.shape).astype(np.float32)
    corrected = stack
    if defocus_um is not None:
        corrected = np.asarray(phase_flip(stack, defocus_A=defocus_um * 1e4, **optics),
                               np.float32)
    filtered = ramp_filter(corrected, window="hann")
    step = np.deg2rad(np.gradient(np.sort(angles))) if len(angles) > 1 else np.array([np.pi])
    filtered *= step.astype(np.float32)[np.argsort(np.argsort(angles))][:, None, None]
    volume = np.asarray(projector.adjoint(filtered), np.float32)
    # phase flipping leaves the amplitude-contrast sign: make protein dark, as cryo-ET shows it
    return -volume, stack


def _check_parameters(
    shape: Sequence[int], voxel_size_A: float, volume_fraction: float,
    membrane_fraction: float, n_gold: int, tilt_range_deg: tuple[float, float],
    tilt_step_deg: float, snr: float | None,
) -> tuple[tuple[int, int, int], np.ndarray]:
    dims = tuple(int(s) for s in shape)
    if len(dims) != 3 or min(dims) < 16:
        raise InputError(f"shape must be 3 sizes (nz, ny, nx) of at least 16, got {shape}")
    if not (voxel_size_A > 0 and math.isfinite(voxel_size_A)):
        raise InputError(f"voxel_size_A must be a positive number, got {voxel_size_A}")
    if not 0 <= volume_fraction < 0.5:
        raise InputError(f"volume_fraction must be in [0, 0.5), got {volume_fraction}")
    if not 0 <= membrane_fraction <= 1 or n_gold < 0:
        raise InputError("membrane_fraction must be in [0, 1] and n_gold >= 0")
    if snr is not None and not snr > 0:
        raise InputError(f"snr must be positive, got {snr}")
    lo, hi = float(tilt_range_deg[0]), float(tilt_range_deg[1])
    if not -90 < lo < hi < 90 or not tilt_step_deg > 0:
        raise InputError(f"tilt range must satisfy -90 < first < last < 90 with a positive "
                         f"step, got ({lo}, {hi}) step {tilt_step_deg}")
    angles = np.arange(lo, hi + 1e-6 * tilt_step_deg, tilt_step_deg)
    if len(angles) < 3:
        raise InputError(f"{len(angles)} tilts; give a range and step with at least 3 tilts")
    return (dims[0], dims[1], dims[2]), angles


def simulate_tomogram(
    shape: Sequence[int] = (64, 160, 160),
    *,
    voxel_size_A: float = 10.0,
    templates: Sequence[str | Volume | np.ndarray] = DEFAULT_TOMOGRAM_TEMPLATES,
    volume_fraction: float = 0.12,
    membrane: bool = True,
    membrane_fraction: float = 0.25,
    n_gold: int = 3,
    ice_gradient: float = 0.3,
    tilt_range_deg: tuple[float, float] = (-60.0, 60.0),
    tilt_step_deg: float = 3.0,
    snr: float | None = 0.01,
    defocus_um: float | None = 3.0,
    voltage_kV: float = 300.0,
    label_level: float = 0.1,
    seed: int = 0,
) -> SimulatedTomogram:
    """Simulate a crowded cryo-ET tomogram of several particle species with ground truth.

    Parameters
    ----------
    shape : (nz, ny, nx)
        Tomogram size in voxels (each at least 16).
    voxel_size_A : float
        Voxel size in Å; templates are resampled to it.
    templates : sequence of str, Volume or ndarray
        One per species: a built-in template name (:func:`emkit.sim.list_density_templates`),
        a :class:`~emkit.io.Volume` (resampled from its voxel size) or a ``(z, y, x)`` map
        already at ``voxel_size_A``. Class ``k + 1`` is ``templates[k]``.
    volume_fraction : float
        Fraction of the volume the particles' bounding spheres fill (crowding), < 0.5.
    membrane : bool
        Add a curved lipid-bilayer sheet through the middle of the slab.
    membrane_fraction : float
        Fraction of the particles placed on the membrane's faces (with ``membrane``).
    n_gold : int
        Gold beads (10 nm).
    ice_gradient : float
        Ice density change across x, as a fraction of the mean template peak.
    tilt_range_deg, tilt_step_deg : (float, float), float
        Tilt range and step in degrees (+-60 leaves a 60-degree missing wedge).
    snr : float or None
        Variance of the particles' projections over the noise variance, per projection;
        None for no noise.
    defocus_um : float or None
        Underfocus in µm for the CTF (then phase-flipped before reconstruction); None: no
        CTF.
    voltage_kV : float
    label_level : float
        A voxel belongs to a particle's instance label where its rotated template exceeds
        this fraction of the template's peak.
    seed : int
        Same seed, same tomogram and ground truth.

    Returns
    -------
    SimulatedTomogram

    Examples
    --------
    >>> sim = simulate_tomogram((32, 64, 64), seed=1, n_gold=0)
    >>> sim.tomogram.shape, int(sim.instance_labels.max()) == len(sim.centres_zyx)
    ((32, 64, 64), True)
    """
    from emkit.geometry import random_rotations

    dims, angles = _check_parameters(shape, voxel_size_A, volume_fraction, membrane_fraction,
                                      n_gold, tilt_range_deg, tilt_step_deg, snr)
    if not 0 < label_level < 1:
        raise InputError(f"label_level must be between 0 and 1, got {label_level}")
    arrays, names = _load_templates(templates, voxel_size_A)
    radii = np.array([_template_radius(a) for a in arrays])
    if np.any(2 * radii + 2 > min(dims)):
        raise InputError(f"a template of radius {radii.max() * voxel_size_A:.0f} Å does not "
                         f"fit a tomogram of {dims} voxels; use a thicker tomogram")
    rng = np.random.default_rng(seed)
    sheet = _membrane_surface(dims, rng) if membrane else None
    clearance = (_LEAFLET_SEPARATION_A / 2 + 2 * _LEAFLET_SIGMA_A) / voxel_size_A
    gold_radius = _GOLD_RADIUS_A / voxel_size_A
    placement = _place(dims, radii, rng, volume_fraction=volume_fraction,
                       membrane_fraction=membrane_fraction, n_gold=n_gold,
                       gold_radius=gold_radius, membrane=sheet, clearance=clearance)
    classes_all = np.asarray(placement.classes, dtype=np.int64)
    centres_all = np.asarray(placement.centres, dtype=np.float64).reshape(-1, 3)
    is_particle = classes_all > 0
    centres, classes = centres_all[is_particle], classes_all[is_particle]
    n = len(centres)
    rotations = (random_rotations(n, seed=int(rng.integers(2**31))) if n
                 else np.zeros((0, 3, 3)))
    particles, labels = _render_particles(dims, arrays, centres, classes, rotations, label_level)
    peak = float(np.mean([a.max() for a in arrays]))
    rest = np.zeros(dims, dtype=np.float32)
    if sheet is not None:
        rest += _MEMBRANE_DENSITY * peak * _membrane_density(dims, sheet[0], sheet[1],
                                                             voxel_size_A)
    grid = np.indices(dims, dtype=np.float32) if n_gold else None
    for centre in centres_all[~is_particle]:
        assert grid is not None
        r2 = sum((grid[a] - np.float32(centre[a])) ** 2 for a in range(3))
        rest += _GOLD_DENSITY * peak * (r2 <= gold_radius**2)
    rest = ndimage.gaussian_filter(rest, 0.5)
    rest += ice_gradient * peak * (np.linspace(-0.5, 0.5, dims[2], dtype=np.float32))[None, None]
    tomogram, tilt_series = _image_and_reconstruct(
        particles, rest, angles, voxel_size_A=voxel_size_A, snr=snr, defocus_um=defocus_um,
        voltage_kV=voltage_kV, rng=rng)
    info = {"shape_zyx": list(dims), "voxel_size_A": voxel_size_A, "class_names": names,
            "radii_A": [round(float(r) * voxel_size_A, 2) for r in radii],
            "n_particles": int(n), "n_gold": int((~is_particle).sum()),
            "volume_fraction": volume_fraction, "membrane": membrane,
            "membrane_fraction": membrane_fraction, "ice_gradient": ice_gradient,
            "tilt_range_deg": [float(angles[0]), float(angles[-1])],
            "tilt_step_deg": tilt_step_deg, "snr": snr, "defocus_um": defocus_um,
            "voltage_kV": voltage_kV, "label_level": label_level, "seed": seed}
    return SimulatedTomogram(
        tomogram=tomogram, density=particles + rest, instance_labels=labels,
        centres_zyx=centres, class_ids=classes, rotations=rotations,
        on_membrane=np.asarray(placement.on_membrane, bool)[is_particle], class_names=names,
        radii_A=[float(r) * voxel_size_A for r in radii], tilt_series=tilt_series,
        tilt_angles_deg=angles, voxel_size_A=float(voxel_size_A), info=info)
