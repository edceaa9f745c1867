"""Simulated single-particle images with known orientations, shifts and CTF.

Conventions are RELION's (see :mod:`emkit.geometry`): a map ``(n, n, n)`` rotates about voxel
``n // 2``, image ``i`` is the integral along the beam of the map turned by
``A_i = euler_zyz_to_matrix(euler_deg[i])``, its centre is pixel ``L // 2`` and its content
is displaced by ``+origin`` (``rlnOriginX/YAngst`` / pixel size), so RELION (and
:mod:`emkit.spa`) shifts the image by ``-origin`` to centre the particle.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from emkit.errors import InputError, ShapeError

__all__ = ["SimulatedParticles", "centre_in_box", "project_centred", "simulate_particles"]


@dataclass
class SimulatedParticles:
    """Particle images and their ground truth.

    Attributes
    ----------
    images : ndarray, shape (n, L, L), float32
        The particle stack ``(n, y, x)``: projections, shifted, CTF-filtered, noisy.
    euler_deg : ndarray, shape (n, 3)
        True RELION angles ``(rot, tilt, psi)`` in degrees.
    rotations : ndarray, shape (n, 3, 3)
        The same as matrices (:func:`emkit.geometry.euler_zyz_to_matrix`).
    shifts_px : ndarray, shape (n, 2)
        True origin offsets ``(y, x)`` in pixels (content displaced by ``+shift``).
    defocus_A : ndarray, shape (n,) or None
        Defocus per image in Å (None: no CTF).
    volume : ndarray, shape (L, L, L), float32
        The map that was projected (centre voxel ``L // 2``).
    pixel_size_A : float
        Pixel size in Å.
    noise_sigma : float
        Standard deviation of the added Gaussian noise (0: none).
    info : dict
        Parameters, for run records.
    """

    images: np.ndarray
    euler_deg: np.ndarray
    rotations: np.ndarray
    shifts_px: np.ndarray
    defocus_A: np.ndarray | None
    volume: np.ndarray
    pixel_size_A: float
    noise_sigma: float = 0.0
    info: dict[str, Any] = field(default_factory=dict)


def centre_in_box(volume: np.ndarray, box_size: int) -> np.ndarray:
    """Pad or crop a ``(z, y, x)`` map to a cube of ``box_size`` keeping voxel ``n // 2``.

    Each axis's centre voxel ``s // 2`` lands on ``box_size // 2`` (zeros outside).

    Parameters
    ----------
    volume : ndarray, shape (nz, ny, nx)
    box_size : int

    Returns
    -------
    ndarray, shape (box_size, box_size, box_size), float32
    """
    vol = np.asarray(volume, dtype=np.float32)
    if vol.ndim != 3:
        raise ShapeError(f"the map must be a volume (z, y, x), got shape {vol.shape}")
    out = np.zeros((box_size,) * 3, dtype=np.float32)
    src, dst = [], []
    for s in vol.shape:
        off = box_size // 2 - s // 2  # destination index of source index 0
        a, b = max(0, -off), min(s, box_size - off)
        src.append(slice(a, b))
        dst.append(slice(a + off, b + off))
    out[tuple(dst)] = vol[tuple(src)]
    return out


def project_centred(
    volume: Any,
    rotations: Any,
    *,
    shifts_px: Any = None,
    method: str = "fourier",
) -> np.ndarray:
    """Project a cubic map with RELION's centres (voxel and pixel ``L // 2``).

    :func:`emkit.ops.project_3d` turns about ``(L - 1) / 2``; for an even ``L`` the map is
    given one zero slab at the end of each axis (centre ``L / 2``), projected on
    ``(L + 1)^2`` pixels and cropped back to ``L^2``, so no interpolation is added.

    Parameters
    ----------
    volume : ndarray, shape (L, L, L)
    rotations : ndarray, shape (n, 3, 3)
        RELION matrices.
    shifts_px : ndarray, shape (n, 2), optional
        ``(dy, dx)``: the content moves by ``+shift``.
    method : {"fourier", "real"}
        As :func:`emkit.ops.project_3d`.

    Returns
    -------
    ndarray, shape (n, L, L), float32
    """
    from emkit.ops import project_3d

    vol = np.asarray(volume, dtype=np.float32)
    n = vol.shape[0]
    if vol.ndim != 3 or len(set(vol.shape)) != 1:
        raise ShapeError(f"the map must be a cube (L, L, L), got shape {vol.shape}")
    if n % 2 == 0:
        vol = np.pad(vol, ((0, 1), (0, 1), (0, 1)))
    images = project_3d(vol, np.asarray(rotations, dtype=np.float32), shifts_px=shifts_px,
                        method=method)  # type: ignore[arg-type]
    return np.ascontiguousarray(images[:, :n, :n], dtype=np.float32)


def _random_orientations(
    n: int, rng: np.random.Generator, tilt_range_deg: tuple[float, float]
) -> np.ndarray:
    """RELION matrices uniform on SO(3), kept only where tilt lies in ``tilt_range_deg``."""
    from emkit.geometry import quaternion_to_matrix

    lo, hi = tilt_range_deg
    if not 0.0 <= lo < hi <= 180.0:
        raise InputError(f"tilt range must satisfy 0 <= lo < hi <= 180 deg, got {lo}, {hi}")
    chosen: list[np.ndarray] = []
    have = 0
    while have < n:
        q = rng.standard_normal((max(2 * (n - have), 64), 4))
        mats = quaternion_to_matrix(q)
        tilt = np.rad2deg(np.arccos(np.clip(mats[:, 2, 2], -1.0, 1.0)))
        keep = mats[(tilt >= lo) & (tilt <= hi)]
        chosen.append(keep)
        have += len(keep)
    return np.concatenate(chosen)[:n]


def _add_ctf(
    images: np.ndarray, rng: np.random.Generator, pixel_size_A: float,
    defocus_range_A: tuple[float, float] | None,
) -> tuple[np.ndarray, np.ndarray | None]:
    if defocus_range_A is None:
        return images, None
    from emkit.ops import apply_ctf

    lo, hi = defocus_range_A
    if not 0 < lo <= hi:
        raise InputError(f"defocus range must satisfy 0 < lo <= hi Å, got {lo}, {hi}")
    defocus = rng.uniform(lo, hi, size=len(images))
    filtered = apply_ctf(images, pixel_size_A=pixel_size_A, defocus_A=defocus)
    return np.asarray(filtered, dtype=np.float32), defocus


def simulate_particles(
    volume: np.ndarray,
    n: int,
    *,
    pixel_size_A: float,
    seed: int,
    snr: float | None = None,
    max_shift_px: float = 0.0,
    defocus_range_A: tuple[float, float] | None = None,
    tilt_range_deg: tuple[float, float] = (0.0, 180.0),
    method: str = "fourier",
) -> SimulatedParticles:
    """Project a map at random orientations, shift, apply a CTF and add noise.

    Parameters
    ----------
    volume : ndarray, shape (L, L, L)
        The map ``(z, y, x)``, centre voxel ``L // 2`` (see :func:`centre_in_box`).
    n : int
        Number of particles (>= 2).
    pixel_size_A : float
        Pixel size in Å (only for the CTF and the result).
    seed : int
        Same seed, same particles.
    snr : float, optional
        Signal-to-noise ratio: variance of the clean images over the whole stack divided
        by the variance of the white Gaussian noise (None: no noise).
    max_shift_px : float
        Shifts drawn uniformly in a disc of this radius (pixels).
    defocus_range_A : (float, float), optional
        Defocus drawn uniformly in this range, Å (None: no CTF). 300 kV, Cs 2.7 mm, 10 %
        amplitude contrast.
    tilt_range_deg : (float, float)
        Restrict the viewing directions to tilts in this range (default the whole sphere);
        orientations are otherwise uniform on SO(3).
    method : {"fourier", "real"}
        Projector method (:func:`emkit.ops.project_3d`).

    Returns
    -------
    SimulatedParticles
    """
    from emkit.geometry import matrix_to_euler_zyz

    vol = np.asarray(volume, dtype=np.float32)
    if isinstance(n, bool) or int(n) != n or n < 2:
        raise InputError(f"n must be an integer >= 2 particles, got {n!r}")
    if snr is not None and not (np.isfinite(snr) and snr > 0):
        raise InputError(f"snr must be a positive number, got {snr}")
    if not (np.isfinite(max_shift_px) and 0 <= max_shift_px < vol.shape[-1] / 4):
        raise InputError(f"max_shift_px must be in [0, L/4), got {max_shift_px}")
    rng = np.random.default_rng(seed)
    rotations = _random_orientations(int(n), rng, tilt_range_deg)
    radius = max_shift_px * np.sqrt(rng.uniform(0, 1, n))
    angle = rng.uniform(0, 2 * np.pi, n)
    shifts = np.stack([radius * np.sin(angle), radius * np.cos(angle)], axis=1)
    images = project_centred(vol, rotations, shifts_px=shifts, method=method)
    images, defocus = _add_ctf(images, rng, pixel_size_A, defocus_range_A)
    sigma = 0.0
    if snr is not None:
        sigma = float(np.sqrt(images.var() / snr))
        images = images + rng.normal(0.0, sigma, images.shape).astype(np.float32)
    info = {"n": int(n), "seed": seed, "snr": snr, "max_shift_px": max_shift_px,
            "defocus_range_A": defocus_range_A, "tilt_range_deg": list(tilt_range_deg),
            "box": int(vol.shape[-1]), "pixel_size_A": pixel_size_A}
    return SimulatedParticles(
        images=np.asarray(images, dtype=np.float32), euler_deg=matrix_to_euler_zyz(rotations),
        rotations=rotations, shifts_px=shifts, defocus_A=defocus, volume=vol,
        pixel_size_A=float(pixel_size_A), noise_sigma=sigma, info=info,
    )
