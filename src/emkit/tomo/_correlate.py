"""Band-pass cross-correlation of two images with a sub-pixel peak (upsampled DFT)."""

from __future__ import annotations

import numpy as np


def bandpass_filter(
    shape: tuple[int, int], *, lowpass: float = 0.25, highpass: float = 0.01
) -> np.ndarray:
    """Gaussian band-pass in the frequency domain for ``np.fft.rfft2`` spectra.

    Parameters
    ----------
    shape : (ny, nx)
        Image shape.
    lowpass, highpass : float
        Gaussian widths in cycles per pixel (0.5 is Nyquist); ``highpass`` removes the
        slowly varying background that dominates an unfiltered correlation.

    Returns
    -------
    ndarray, shape (ny, nx // 2 + 1), float64
    """
    fy = np.fft.fftfreq(shape[0])[:, None]
    fx = np.fft.rfftfreq(shape[1])[None, :]
    f2 = fy**2 + fx**2
    filt = np.exp(-f2 / (2 * lowpass**2))
    if highpass > 0:
        filt = filt * (1 - np.exp(-f2 / (2 * highpass**2)))
    return filt


def correlation_peak(
    reference: np.ndarray,
    moving: np.ndarray,
    *,
    filt: np.ndarray | None = None,
    max_shift_px: float | tuple[float, float] | None = None,
    upsample: int = 20,
) -> tuple[np.ndarray, float]:
    """Find the shift ``p`` (sub-pixel) for which ``moving`` translated by ``p`` best matches
    ``reference``: ``reference(r) ~ moving(r - p)``.

    Parameters
    ----------
    reference, moving : ndarray, shape (ny, nx)
        Images of the same shape (already tapered at the edges, mean removed).
    filt : ndarray, shape (ny, nx // 2 + 1), optional
        Filter applied to the cross-power spectrum (see :func:`bandpass_filter`).
    max_shift_px : float or (float, float), optional
        Search only ``|p_y| <= max_y`` and ``|p_x| <= max_x`` pixels; the sub-pixel
        refinement stays inside that window too.
    upsample : int
        Refine the peak on a grid of ``1 / upsample`` pixel by a local matrix DFT.

    Returns
    -------
    shift : ndarray, shape (2,)
        ``(dy, dx)`` in pixels.
    peak : float
        Correlation at the peak, normalised by the filtered image energies (about 1 for
        identical images).
    """
    ny, nx = reference.shape
    fa = np.fft.rfft2(reference)
    fb = np.fft.rfft2(moving)
    cross = fa * np.conj(fb)
    if filt is not None:
        cross = cross * filt
    cc = np.fft.irfft2(cross, s=(ny, nx))
    lag_y = np.fft.fftfreq(ny, 1.0 / ny)
    lag_x = np.fft.fftfreq(nx, 1.0 / nx)
    limit = np.array([np.inf, np.inf])
    if max_shift_px is not None:
        limit = np.broadcast_to(np.asarray(max_shift_px, dtype=np.float64), (2,)).copy()
        allowed = (np.abs(lag_y)[:, None] <= limit[0]) & (np.abs(lag_x)[None, :] <= limit[1])
        cc = np.where(allowed, cc, -np.inf)
    iy, ix = np.unravel_index(int(np.argmax(cc)), cc.shape)
    coarse = np.array([lag_y[iy], lag_x[ix]])
    shift = (
        _refine_peak(cross, coarse, (ny, nx), upsample, limit) if upsample > 1 else coarse
    )
    # Parseval for rfft spectra: every column but the first (and Nyquist) counts twice.
    weight = np.full(fa.shape[1], 2.0)
    weight[0] = 1.0
    if nx % 2 == 0:
        weight[-1] = 1.0
    root = np.ones_like(weight) if filt is None else np.sqrt(np.abs(filt))
    energy_a = np.sum(np.abs(fa * root) ** 2 * weight)
    energy_b = np.sum(np.abs(fb * root) ** 2 * weight)
    norm = np.sqrt(energy_a * energy_b) / (ny * nx)
    peak = float(cc[iy, ix] / norm) if norm > 0 else 0.0
    return shift, peak


def _refine_peak(
    cross_rfft: np.ndarray,
    coarse: np.ndarray,
    shape: tuple[int, int],
    upsample: int,
    limit: np.ndarray,
) -> np.ndarray:
    """Evaluate the correlation on a fine grid around ``coarse`` by a matrix DFT.

    Only grid points with ``|shift| <= limit`` (per axis) compete, and the result is
    clipped to the limit, so the refinement never leaves the search window.
    """
    ny, nx = shape
    # Rebuild the full spectrum so that the matrix DFT below is a plain 2D inverse DFT.
    full = np.zeros((ny, nx), dtype=complex)
    full[:, : cross_rfft.shape[1]] = cross_rfft
    kx_neg = np.arange(1, nx - cross_rfft.shape[1] + 1)
    if len(kx_neg):
        # Hermitian symmetry: X[ky, -kx] = conj(X[-ky, kx]).
        src = cross_rfft[:, kx_neg]
        full[:, nx - kx_neg] = np.conj(src[(-np.arange(ny)) % ny])
    half = 1.5
    grid = np.arange(-half * upsample, half * upsample + 1) / upsample
    fy = np.fft.fftfreq(ny)
    fx = np.fft.fftfreq(nx)
    ky = np.exp(2j * np.pi * np.outer(coarse[0] + grid, fy))
    kx = np.exp(2j * np.pi * np.outer(fx, coarse[1] + grid))
    fine = np.real(ky @ full @ kx)
    inside_y = np.abs(coarse[0] + grid) <= limit[0] + 1e-9
    inside_x = np.abs(coarse[1] + grid) <= limit[1] + 1e-9
    fine = np.where(inside_y[:, None] & inside_x[None, :], fine, -np.inf)
    jy, jx = np.unravel_index(int(np.argmax(fine)), fine.shape)
    dy, dx = _parabolic(fine, int(jy), int(jx))
    shift = coarse + np.array([grid[jy] + dy / upsample, grid[jx] + dx / upsample])
    return np.clip(shift, -limit, limit)


def _parabolic(values: np.ndarray, iy: int, ix: int) -> tuple[float, float]:
    """Sub-grid offset of a maximum from a 3-point parabola along each axis."""
    out = []
    for axis, idx in ((0, iy), (1, ix)):
        n = values.shape[axis]
        if idx == 0 or idx == n - 1:
            out.append(0.0)
            continue
        if axis == 0:
            a, b, c = values[idx - 1, ix], values[idx, ix], values[idx + 1, ix]
        else:
            a, b, c = values[iy, idx - 1], values[iy, idx], values[iy, idx + 1]
        denom = a - 2 * b + c
        # A neighbour outside the search window (-inf) gives no parabola.
        ok = np.isfinite(a) and np.isfinite(c) and denom < 0
        out.append(float(0.5 * (a - c) / denom) if ok else 0.0)
    return out[0], out[1]
