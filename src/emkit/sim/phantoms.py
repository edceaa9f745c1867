"""Analytic 3D phantoms: the Shepp-Logan head and random ellipsoids.

Both are sums of uniform ellipsoids sampled at voxel centres on a normalised grid: along each
axis of length ``n`` the voxel centres sit at ``(2 i + 1) / n - 1``, i.e. the volume spans
``[-1, 1]`` and the grid is symmetric about 0.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import DTypeLike, NDArray
from scipy import ndimage

from emkit.errors import InputError, ShapeError
from emkit.geometry import random_rotations

__all__ = ["SHEPP_LOGAN_3D_TABLE", "random_ellipsoids", "shepp_logan_3d"]

# The 3D Shepp-Logan head phantom with the "modified" (higher-contrast) intensities of
# P. Toft, "The Radon Transform: Theory and Implementation", PhD thesis, DTU 1996, pp. 199-200,
# in the 3D form of the ellipsoid table of A. C. Kak and M. Slaney, "Principles of
# Computerized Tomographic Imaging", IEEE Press 1988 (as also used by M. Schabel's phantom3d).
# Columns: intensity A (added inside the ellipsoid), semi-axes (a, b, c) along (x, y, z),
# centre (x0, y0, z0), and Euler angles (phi, theta, psi) in degrees (z-x-z; theta is 0 for
# every row, so each ellipsoid is only turned in the x-y plane, by phi + psi).
SHEPP_LOGAN_3D_TABLE: tuple[tuple[float, ...], ...] = (
    (1.0, 0.6900, 0.920, 0.810, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0),
    (-0.8, 0.6624, 0.874, 0.780, 0.0, -0.0184, 0.0, 0.0, 0.0, 0.0),
    (-0.2, 0.1100, 0.310, 0.220, 0.22, 0.0, 0.0, -18.0, 0.0, 10.0),
    (-0.2, 0.1600, 0.410, 0.280, -0.22, 0.0, 0.0, 18.0, 0.0, 10.0),
    (0.1, 0.2100, 0.250, 0.410, 0.0, 0.35, -0.15, 0.0, 0.0, 0.0),
    (0.1, 0.0460, 0.046, 0.050, 0.0, 0.1, 0.25, 0.0, 0.0, 0.0),
    (0.1, 0.0460, 0.046, 0.050, 0.0, -0.1, 0.25, 0.0, 0.0, 0.0),
    (0.1, 0.0460, 0.023, 0.050, -0.08, -0.605, 0.0, 0.0, 0.0, 0.0),
    (0.1, 0.0230, 0.023, 0.020, 0.0, -0.606, 0.0, 0.0, 0.0, 0.0),
    (0.1, 0.0230, 0.046, 0.020, 0.06, -0.605, 0.0, 0.0, 0.0, 0.0),
)


def _check_shape(shape: Sequence[int]) -> tuple[int, int, int]:
    try:
        dims = tuple(int(s) for s in shape)
    except (TypeError, ValueError):
        raise ShapeError(f"shape must be 3 positive integers (z, y, x), got {shape!r}") from None
    if len(dims) != 3 or min(dims) < 1:
        raise ShapeError(f"shape must be 3 positive integers (z, y, x), got {shape!r}")
    return (dims[0], dims[1], dims[2])


def _normalised_axis(n: int) -> NDArray[np.float64]:
    return (2.0 * np.arange(n) + 1.0) / n - 1.0


def _zxz_frame(phi_deg: float, theta_deg: float, psi_deg: float) -> NDArray[np.float64]:
    """Rows are the ellipsoid's axes in (x, y, z): r_body = M @ (r - centre)."""
    phi, theta, psi = np.deg2rad([phi_deg, theta_deg, psi_deg])

    def rz(a: float) -> NDArray[np.float64]:
        c, s = np.cos(a), np.sin(a)
        return np.array([[c, s, 0.0], [-s, c, 0.0], [0.0, 0.0, 1.0]])

    def rx(a: float) -> NDArray[np.float64]:
        c, s = np.cos(a), np.sin(a)
        return np.array([[1.0, 0.0, 0.0], [0.0, c, s], [0.0, -s, c]])

    return rz(psi) @ rx(theta) @ rz(phi)


def _add_ellipsoid(
    volume: NDArray[np.float64],
    axes_zyx: tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]],
    intensity: float,
    semi_axes_xyz: NDArray[np.float64],
    centre_xyz: NDArray[np.float64],
    frame: NDArray[np.float64],
) -> None:
    """Add ``intensity`` inside one ellipsoid, touching only its bounding box."""
    reach = float(np.max(semi_axes_xyz))
    zc, yc, xc = axes_zyx
    slices = []
    for coords, c in zip((zc, yc, xc), centre_xyz[::-1]):
        inside = np.nonzero(np.abs(coords - c) <= reach + 1e-12)[0]
        if inside.size == 0:
            return
        slices.append(slice(int(inside[0]), int(inside[-1]) + 1))
    z = zc[slices[0]][:, None, None] - centre_xyz[2]
    y = yc[slices[1]][None, :, None] - centre_xyz[1]
    x = xc[slices[2]][None, None, :] - centre_xyz[0]
    inside_sum = np.zeros(np.broadcast_shapes(z.shape, y.shape, x.shape))
    for k in range(3):
        body = frame[k, 0] * x + frame[k, 1] * y + frame[k, 2] * z
        inside_sum = inside_sum + (body / semi_axes_xyz[k]) ** 2
    volume[slices[0], slices[1], slices[2]] += intensity * (inside_sum <= 1.0)


def shepp_logan_3d(shape: Sequence[int], *, dtype: DTypeLike = np.float32) -> NDArray:
    """The 3D Shepp-Logan head phantom (modified, high-contrast intensities).

    Ten ellipsoids from :data:`SHEPP_LOGAN_3D_TABLE` (Kak & Slaney's 3D table with Toft's
    modified intensities), sampled at voxel centres on the normalised grid ``[-1, 1]`` along
    each axis. Values: 1 in the skull, 0.2 in the brain, 0 in the ventricles, 0.3-0.4 in the
    small features.

    Parameters
    ----------
    shape : (int, int, int)
        Volume shape ``(z, y, x)``; anisotropic shapes stretch the phantom.
    dtype : dtype
        Output dtype (float32 by default).

    Returns
    -------
    ndarray, shape ``shape``
        Values in ``[0, 1]``.

    Examples
    --------
    >>> vol = shepp_logan_3d((64, 64, 64))
    >>> vol.shape, float(vol.max())
    ((64, 64, 64), 1.0)
    """
    dims = _check_shape(shape)
    axes_zyx = (_normalised_axis(dims[0]), _normalised_axis(dims[1]), _normalised_axis(dims[2]))
    volume = np.zeros(dims, dtype=np.float64)
    for row in SHEPP_LOGAN_3D_TABLE:
        intensity, a, b, c, x0, y0, z0, phi, theta, psi = row
        _add_ellipsoid(
            volume,
            axes_zyx,
            intensity,
            np.array([a, b, c]),
            np.array([x0, y0, z0]),
            _zxz_frame(phi, theta, psi),
        )
    # 1 - 0.8 - 0.2 leaves rounding noise around 0 in the ventricles
    return np.clip(np.round(volume, 12), 0.0, 1.0).astype(dtype)


def random_ellipsoids(
    shape: Sequence[int],
    *,
    seed: int,
    n_ellipsoids: int = 64,
    min_semi_axis: float = 0.03,
    max_semi_axis: float = 0.5,
    smooth_sigma: float = 0.0,
    dtype: DTypeLike = np.float32,
) -> NDArray:
    """Random overlapping ellipsoids with random orientations and intensities.

    A phantom with texture at many scales for tomography tests: semi-axes are log-uniform in
    ``[min_semi_axis, max_semi_axis]`` (fractions of the half-width of the volume), so there
    are both large blobs and small features; orientations are uniform on SO(3); intensities
    are uniform in ``[0.2, 1]``, a quarter of them negative (holes). Centres are uniform in
    the central ``[-0.7, 0.7]`` of each normalised axis. The sum is clipped at 0, optionally
    smoothed, and scaled to a maximum of 1.

    Parameters
    ----------
    shape : (int, int, int)
        Volume shape ``(z, y, x)``.
    seed : int
        Same seed, same phantom.
    n_ellipsoids : int
        Number of ellipsoids.
    min_semi_axis, max_semi_axis : float
        Range of semi-axes, as fractions of the half-width of each axis (0 < min <= max).
    smooth_sigma : float
        Standard deviation of a Gaussian blur in voxels (0 = sharp edges).
    dtype : dtype
        Output dtype (float32 by default).

    Returns
    -------
    ndarray, shape ``shape``
        Values in ``[0, 1]``.
    """
    dims = _check_shape(shape)
    if isinstance(n_ellipsoids, bool) or int(n_ellipsoids) != n_ellipsoids or n_ellipsoids < 1:
        raise InputError(f"n_ellipsoids must be a positive integer, got {n_ellipsoids!r}")
    if not 0 < min_semi_axis <= max_semi_axis:
        raise InputError(
            f"need 0 < min_semi_axis <= max_semi_axis, got {min_semi_axis} and {max_semi_axis}"
        )
    if smooth_sigma < 0:
        raise InputError(f"smooth_sigma must be >= 0, got {smooth_sigma}")
    n = int(n_ellipsoids)
    rng = np.random.default_rng(seed)
    semi = np.exp(rng.uniform(np.log(min_semi_axis), np.log(max_semi_axis), size=(n, 3)))
    centres = rng.uniform(-0.7, 0.7, size=(n, 3))
    intensity = rng.uniform(0.2, 1.0, size=n) * np.where(rng.random(n) < 0.25, -1.0, 1.0)
    frames = random_rotations(n, seed=int(rng.integers(2**31)))
    axes_zyx = (_normalised_axis(dims[0]), _normalised_axis(dims[1]), _normalised_axis(dims[2]))
    volume = np.zeros(dims, dtype=np.float64)
    for i in range(n):
        _add_ellipsoid(volume, axes_zyx, float(intensity[i]), semi[i], centres[i], frames[i])
    volume = np.maximum(volume, 0.0)
    if smooth_sigma > 0:
        volume = ndimage.gaussian_filter(volume, smooth_sigma)
    peak = volume.max()
    if peak > 0:
        volume /= peak
    return volume.astype(dtype)
