"""Fourier shell (ring) correlation and the resolution where it crosses a threshold."""

from __future__ import annotations

import math

import numpy as np
import scipy.fft as sfft
from numpy.typing import ArrayLike, NDArray

from emkit.errors import InputError, MismatchError, NonFiniteError, ShapeError

__all__ = ["fourier_shell_correlation", "fsc_resolution"]


def fourier_shell_correlation(
    map1: ArrayLike,
    map2: ArrayLike,
    *,
    voxel_size_A: float = 1.0,
    mask: ArrayLike | None = None,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Correlation of two maps in shells of equal spatial frequency.

    ``FSC(s) = Re sum F1 conj(F2) / sqrt(sum |F1|^2 sum |F2|^2)`` over the Fourier
    coefficients whose radius rounds to shell ``s`` (in units of ``1 / N``, ``N`` the
    smallest edge), for ``s = 0 .. N // 2`` (Nyquist). Works for volumes ``(z, y, x)``
    (FSC) and images ``(y, x)`` (FRC). Both halves of the Hermitian spectrum are counted.

    Parameters
    ----------
    map1, map2 : array_like, same shape, 2D or 3D
        The two (half-)maps.
    voxel_size_A : float
        Voxel size in Å (sets the frequency unit).
    mask : array_like, optional
        Real-space mask (same shape, soft edges advised) applied to both maps first.

    Returns
    -------
    freq_invA : ndarray, shape (N // 2 + 1,), float64
        Shell frequencies in 1/Å (``s / (N * voxel_size_A)``).
    fsc : ndarray, shape (N // 2 + 1,), float64
        Correlation per shell (0 where a shell has no signal in either map).
    """
    a = np.asarray(map1, dtype=np.float64)
    b = np.asarray(map2, dtype=np.float64)
    if a.shape != b.shape:
        raise MismatchError(f"maps have different shapes {a.shape} and {b.shape}")
    if a.ndim not in (2, 3) or min(a.shape) < 2:
        raise ShapeError(f"expected 2D or 3D maps with sizes >= 2, got shape {a.shape}")
    if voxel_size_A <= 0:
        raise InputError(f"voxel_size_A must be positive, got {voxel_size_A}")
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        raise NonFiniteError("maps contain NaN or infinite values")
    if mask is not None:
        m = np.asarray(mask, dtype=np.float64)
        if m.shape != a.shape:
            raise MismatchError(f"mask shape {m.shape} differs from the maps' {a.shape}")
        a, b = a * m, b * m
    f1 = sfft.rfftn(a, workers=-1)
    f2 = sfft.rfftn(b, workers=-1)
    n = min(a.shape)
    grids = [np.fft.fftfreq(s) for s in a.shape[:-1]] + [np.fft.rfftfreq(a.shape[-1])]
    mesh = np.meshgrid(*grids, indexing="ij", sparse=True)
    radius = np.sqrt(sum(g**2 for g in mesh)) * n
    shell = np.rint(radius).astype(np.int64)
    # rfft stores half the spectrum: columns other than DC (and Nyquist for even sizes)
    # stand for two coefficients each.
    nx = a.shape[-1]
    weight = np.full(nx // 2 + 1, 2.0)
    weight[0] = 1.0
    if nx % 2 == 0:
        weight[-1] = 1.0
    w = np.broadcast_to(weight, f1.shape)
    n_shells = n // 2 + 1
    shell = np.broadcast_to(shell, f1.shape)
    keep = shell < n_shells
    idx, ww = shell[keep], w[keep]
    g1, g2 = f1[keep], f2[keep]
    cross = np.bincount(idx, ww * (g1 * np.conj(g2)).real, minlength=n_shells)
    p1 = np.bincount(idx, ww * np.abs(g1) ** 2, minlength=n_shells)
    p2 = np.bincount(idx, ww * np.abs(g2) ** 2, minlength=n_shells)
    denom = np.sqrt(p1 * p2)
    fsc = np.divide(cross, denom, out=np.zeros(n_shells), where=denom > 0)
    freq = np.arange(n_shells) / (n * voxel_size_A)
    return freq, fsc


def fsc_resolution(
    freq_invA: ArrayLike, fsc: ArrayLike, threshold: float = 0.143
) -> float:
    """Resolution in Å where the FSC first falls below ``threshold``.

    The crossing between the last shell at or above the threshold and the first below it is
    interpolated linearly in frequency; the DC shell is ignored.

    Parameters
    ----------
    freq_invA, fsc : array_like, shape (n_shells,)
        From :func:`fourier_shell_correlation`.
    threshold : float
        0.143 (gold-standard half maps), 0.5, ...

    Returns
    -------
    float
        ``1 / f_cross`` in Å; the Nyquist resolution ``1 / freq[-1]`` when the FSC never
        falls below the threshold; ``inf`` when it is already below at the first shell.
    """
    f = np.asarray(freq_invA, dtype=np.float64)
    c = np.asarray(fsc, dtype=np.float64)
    if f.shape != c.shape or f.ndim != 1 or f.size < 2:
        raise ShapeError(f"freq and fsc must be 1D of the same length >= 2, got {f.shape}, "
                         f"{c.shape}")
    c = np.where(np.isfinite(c), c, -np.inf)
    below = np.nonzero(c[1:] < threshold)[0]
    if below.size == 0:
        return float(1.0 / f[-1])
    i = int(below[0]) + 1  # first shell below the threshold
    if i == 1:
        return math.inf
    c0, c1 = c[i - 1], c[i]
    t = (c0 - threshold) / (c0 - c1) if np.isfinite(c1) and c0 != c1 else 0.0
    f_cross = f[i - 1] + t * (f[i] - f[i - 1])
    return float(1.0 / f_cross) if f_cross > 0 else math.inf
