"""Random and deterministic sampling of rotations and directions."""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

from emkit.errors import InputError
from emkit.geometry._rotations import (
    _canonical_quaternion,
    euler_zyz_to_matrix,
    quaternion_to_matrix,
)

__all__ = ["fibonacci_sphere", "random_quaternions", "random_rotations", "so3_grid"]


def _check_count(n: int, name: str) -> int:
    if isinstance(n, bool) or int(n) != n or n < 1:
        raise InputError(f"{name} must be a positive integer, got {n!r}")
    return int(n)


def random_quaternions(n: int, *, seed: int) -> NDArray[np.float64]:
    """Unit quaternions ``(w, x, y, z)`` drawn uniformly (Haar measure) on SO(3).

    A normalised 4D standard-normal vector is uniform on the 3-sphere, and the 3-sphere
    double-covers SO(3) with its Haar measure.

    Parameters
    ----------
    n : int
        Number of quaternions.
    seed : int
        Seed of :func:`numpy.random.default_rng`; same seed, same quaternions.

    Returns
    -------
    ndarray, shape (n, 4), float64
        Canonical (``w >= 0``) unit quaternions.
    """
    n = _check_count(n, "n")
    rng = np.random.default_rng(seed)
    q = rng.standard_normal((n, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    return _canonical_quaternion(q)


def random_rotations(n: int, *, seed: int) -> NDArray[np.float64]:
    """Rotation matrices drawn uniformly (Haar measure) on SO(3).

    Parameters
    ----------
    n : int
        Number of rotations.
    seed : int
        Seed; same seed, same rotations (the matrices of ``random_quaternions(n, seed=seed)``).

    Returns
    -------
    ndarray, shape (n, 3, 3), float64
        Matrices acting on ``(x, y, z)``.

    Examples
    --------
    >>> R = random_rotations(4, seed=0)
    >>> np.allclose(R @ R.transpose(0, 2, 1), np.eye(3))
    True
    """
    return quaternion_to_matrix(random_quaternions(n, seed=seed))


def fibonacci_sphere(n: int) -> NDArray[np.float64]:
    """``n`` nearly evenly spread unit vectors ``(x, y, z)`` on the sphere (golden spiral).

    Point ``i`` has ``z = 1 - (2 i + 1) / n`` and longitude ``i`` times the golden angle, so
    every point covers the same area ``4 pi / n``.

    Parameters
    ----------
    n : int
        Number of points.

    Returns
    -------
    ndarray, shape (n, 3), float64
        Unit vectors in ``(x, y, z)`` order.
    """
    n = _check_count(n, "n")
    i = np.arange(n, dtype=np.float64)
    z = 1.0 - (2.0 * i + 1.0) / n
    r = np.sqrt(np.maximum(1.0 - z * z, 0.0))
    golden_angle = math.pi * (3.0 - math.sqrt(5.0))
    phi = golden_angle * i
    return np.stack([r * np.cos(phi), r * np.sin(phi), z], axis=-1)


def so3_grid(n_approx: int) -> NDArray[np.float64]:
    """A deterministic, nearly uniform grid of about ``n_approx`` rotations for exhaustive search.

    Viewing directions come from :func:`fibonacci_sphere` and each is combined with evenly
    spaced in-plane angles ``psi``. The two counts are balanced so that the spacing between
    directions (``sqrt(4 pi / n_dirs)`` radians) equals the in-plane step, which gives
    ``n_dirs = (n_approx^2 / pi)^(1/3)``. The direction ``d`` of each matrix is its projection
    direction in RELION's sense (``A[2, :] == d``; see :mod:`emkit.geometry`).

    Parameters
    ----------
    n_approx : int
        Wanted number of rotations; the grid has ``n_dirs * n_psi`` of them, within a few
        percent of ``n_approx``.

    Returns
    -------
    ndarray, shape (n, 3, 3), float64
        Rotation matrices (RELION convention), ordered direction-major, psi-minor.
    """
    n_approx = _check_count(n_approx, "n_approx")
    n_dirs = max(1, round((n_approx**2 / math.pi) ** (1.0 / 3.0)))
    n_psi = max(1, round(n_approx / n_dirs))
    dirs = fibonacci_sphere(n_dirs)
    rot = np.rad2deg(np.arctan2(dirs[:, 1], dirs[:, 0]))
    tilt = np.rad2deg(np.arccos(np.clip(dirs[:, 2], -1.0, 1.0)))
    psi = np.arange(n_psi, dtype=np.float64) * (360.0 / n_psi)
    euler = np.empty((n_dirs, n_psi, 3), dtype=np.float64)
    euler[..., 0] = rot[:, None]
    euler[..., 1] = tilt[:, None]
    euler[..., 2] = psi[None, :]
    return euler_zyz_to_matrix(euler.reshape(-1, 3))
