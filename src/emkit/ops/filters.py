"""Fourier filters for tomography and alignment: ramp (for WBP), Gaussian low-pass,
edge tapering, binning.

All functions take numpy arrays, keep float32 as float32 (other inputs become float64
unless stated) and never modify their input.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import scipy.fft as sfft
from numpy.typing import ArrayLike, NDArray

from emkit.errors import InputError, ShapeError

__all__ = [
    "bin_image",
    "bin_volume",
    "lowpass_gaussian",
    "ramp_filter",
    "ramp_filter_response",
    "taper_edges",
]

RampWindow = Literal["ram-lak", "shepp-logan", "cosine", "hann"]
_WINDOWS = ("ram-lak", "shepp-logan", "cosine", "hann")


def _float_array(x: ArrayLike) -> NDArray[np.floating]:
    arr = np.asarray(x)
    if arr.dtype == np.float32 or arr.dtype == np.float64:
        return arr
    return arr.astype(np.float64)


def ramp_filter_response(
    n_padded: int, *, window: RampWindow = "ram-lak", cutoff: float = 1.0
) -> NDArray[np.float64]:
    """The ramp filter's frequency response on an ``rfft`` grid of ``n_padded`` samples.

    The response is the Fourier transform of the spatially discretised ramp (Kak & Slaney,
    eq. 61: ``h[0] = 1/4``, ``h[k] = -1/(pi k)^2`` for odd ``k``, 0 for even ``k``), so that
    the DC term is (nearly) zero and a weighted back-projection has no offset. It equals
    ``|f|`` (cycles per pixel, 0.5 at Nyquist) away from DC, multiplied by the window.

    Parameters
    ----------
    n_padded : int
        Length of the (zero-padded) signal.
    window : {"ram-lak", "shepp-logan", "cosine", "hann"}
        Apodisation: none, ``sinc``, ``cos`` or Hann, each reaching its end at ``cutoff``.
    cutoff : float
        Highest frequency kept, as a fraction of Nyquist (0 < cutoff <= 1).

    Returns
    -------
    ndarray, shape (n_padded // 2 + 1,), float64
    """
    if window not in _WINDOWS:
        raise InputError(f"unknown ramp window {window!r}; use one of {', '.join(_WINDOWS)}")
    if not 0.0 < cutoff <= 1.0:
        raise InputError(f"cutoff must be in (0, 1] (fraction of Nyquist), got {cutoff}")
    k = np.abs(np.rint(np.fft.fftfreq(n_padded) * n_padded).astype(np.int64))  # circular lag
    h = np.zeros(n_padded, dtype=np.float64)
    h[0] = 0.25
    odd = k % 2 == 1
    h[odd] = -1.0 / (np.pi * k[odd]) ** 2
    response = np.real(np.fft.rfft(h))
    nu = np.fft.rfftfreq(n_padded) / 0.5  # fraction of Nyquist
    x = nu / cutoff
    if window == "shepp-logan":
        response *= np.sinc(x / 2.0)  # np.sinc(t) = sin(pi t) / (pi t)
    elif window == "cosine":
        response *= np.cos(np.pi * x / 2.0)
    elif window == "hann":
        response *= 0.5 * (1.0 + np.cos(np.pi * x))
    response[x > 1.0] = 0.0
    return response


def ramp_filter(
    projections: ArrayLike,
    *,
    window: RampWindow = "ram-lak",
    cutoff: float = 1.0,
    axis: int = -1,
) -> NDArray[np.floating]:
    """Ramp-filter projections along the detector axis (the "F" of filtered back-projection).

    Each line along ``axis`` is zero-padded to at least twice its length (the next fast FFT
    size) so the circular convolution does not wrap, filtered with
    :func:`ramp_filter_response`, and cropped back. The filter is ``|f|`` in cycles per
    pixel, so for ``n`` projections evenly spread over 180° the filtered back-projection
    ``(pi / n) * A.T @ ramp_filter(p)`` approximates the inverse Radon transform (scale the
    sum of projections by ``pi / n_tilts`` for a limited range, per radian covered).

    Parameters
    ----------
    projections : array_like, shape (n, y, x) or any
        Projections ``(n_tilts, y, detector)``; any array works, filtered along ``axis``.
    window : {"ram-lak", "shepp-logan", "cosine", "hann"}
        Apodisation window (see :func:`ramp_filter_response`).
    cutoff : float
        Fraction of Nyquist above which everything is removed.
    axis : int
        The detector axis (default last, i.e. image x).

    Returns
    -------
    ndarray
        Same shape; float32 for float32 input.
    """
    arr = _float_array(projections)
    if arr.ndim == 0 or arr.shape[axis] < 1:
        raise ShapeError(f"cannot ramp-filter an array of shape {arr.shape} along axis {axis}")
    n = arr.shape[axis]
    n_pad = sfft.next_fast_len(max(64, 2 * n), real=True)
    response = ramp_filter_response(n_pad, window=window, cutoff=cutoff).astype(arr.dtype)
    moved = np.moveaxis(arr, axis, -1)
    spec = sfft.rfft(moved, n=n_pad, axis=-1, workers=-1)
    spec *= response
    out = sfft.irfft(spec, n=n_pad, axis=-1, workers=-1)[..., :n]
    return np.ascontiguousarray(np.moveaxis(out, -1, axis).astype(arr.dtype, copy=False))


def _radial_frequency(shape: tuple[int, ...]) -> NDArray[np.float64]:
    """``|f|`` in cycles per pixel on the rfftn grid of ``shape`` (last axis halved)."""
    grids = [np.fft.fftfreq(n) for n in shape[:-1]] + [np.fft.rfftfreq(shape[-1])]
    mesh = np.meshgrid(*grids, indexing="ij", sparse=True)
    return np.sqrt(sum(g**2 for g in mesh))


def lowpass_gaussian(
    array: ArrayLike,
    *,
    cutoff: float,
    sigma: float,
    ndim: int = 2,
) -> NDArray[np.floating]:
    """IMOD-style low-pass: pass below ``cutoff``, Gaussian fall-off of width ``sigma`` above.

    The response is 1 for radial frequency ``f <= cutoff`` and
    ``exp(-(f - cutoff)^2 / (2 sigma^2))`` beyond (IMOD's ``radius2``/``sigma2`` pair, in
    cycles per pixel, 0.5 = Nyquist). With ``cutoff = 0`` it is a Gaussian low-pass.

    Parameters
    ----------
    array : array_like
        Images ``(n, y, x)`` / ``(y, x)`` (``ndim=2``) or volumes ``(z, y, x)`` (``ndim=3``);
        the filter acts on the last ``ndim`` axes.
    cutoff, sigma : float
        In cycles per pixel (``sigma > 0``).
    ndim : int
        Number of trailing axes filtered (2 or 3).

    Returns
    -------
    ndarray
        Same shape; float32 for float32 input.
    """
    arr = _float_array(array)
    if ndim not in (1, 2, 3) or arr.ndim < ndim:
        raise ShapeError(f"cannot filter the last {ndim} axes of an array of shape {arr.shape}")
    if sigma <= 0 or cutoff < 0:
        raise InputError(f"need sigma > 0 and cutoff >= 0 (cycles/pixel), got {sigma}, {cutoff}")
    axes = tuple(range(arr.ndim - ndim, arr.ndim))
    shape = arr.shape[-ndim:]
    f = _radial_frequency(shape)
    response = np.where(f <= cutoff, 1.0, np.exp(-((f - cutoff) ** 2) / (2.0 * sigma**2)))
    spec = sfft.rfftn(arr, axes=axes, workers=-1)
    spec *= response.astype(arr.dtype)
    out = sfft.irfftn(spec, s=shape, axes=axes, workers=-1)
    return out.astype(arr.dtype, copy=False)


def taper_edges(image: ArrayLike, width_px: int) -> NDArray[np.floating]:
    """Blend the border of each image smoothly (cosine) into the image mean.

    Cross-correlating images with hard edges gives a strong spurious peak at zero shift;
    tapering removes it. Pixels ``width_px`` or more from every edge are unchanged.

    Parameters
    ----------
    image : array_like, shape (y, x) or (n, y, x)
        One image or a stack (each image tapered towards its own mean).
    width_px : int
        Width of the tapered border in pixels (0 returns a copy).

    Returns
    -------
    ndarray
        Same shape; float32 for float32 input.
    """
    arr = _float_array(image)
    if arr.ndim not in (2, 3):
        raise ShapeError(f"expected an image (y, x) or a stack (n, y, x), got shape {arr.shape}")
    if width_px < 0:
        raise InputError(f"width_px must be >= 0, got {width_px}")
    if width_px == 0:
        return arr.copy()

    def ramp(n: int) -> NDArray[np.float64]:
        d = np.minimum(np.arange(n), np.arange(n)[::-1]).astype(np.float64)
        return np.where(d < width_px, 0.5 * (1.0 - np.cos(np.pi * (d + 0.5) / width_px)), 1.0)

    weight = ramp(arr.shape[-2])[:, None] * ramp(arr.shape[-1])[None, :]
    mean = arr.mean(axis=(-2, -1), keepdims=True)
    # written as a correction so that the untouched interior stays bit-identical
    return (arr - (arr - mean) * (1.0 - weight).astype(arr.dtype)).astype(arr.dtype, copy=False)


def _bin_last(arr: NDArray[np.floating], factor: int, ndim: int) -> NDArray[np.floating]:
    if factor < 1:
        raise InputError(f"binning factor must be a positive integer, got {factor}")
    if factor == 1:
        return arr.copy()
    lead = arr.shape[: arr.ndim - ndim]
    sizes = [s // factor for s in arr.shape[arr.ndim - ndim :]]
    if min(sizes) < 1:
        raise ShapeError(f"array of shape {arr.shape} is smaller than the binning factor {factor}")
    index: tuple[Any, ...] = (Ellipsis, *[slice(0, s * factor) for s in sizes])
    crop = arr[index]
    shape: list[int] = list(lead)
    for s in sizes:
        shape += [s, factor]
    blocks = crop.reshape(shape)
    block_axes = tuple(len(lead) + 2 * i + 1 for i in range(ndim))
    return blocks.mean(axis=block_axes, dtype=np.float64).astype(arr.dtype, copy=False)


def bin_image(image: ArrayLike, factor: int) -> NDArray[np.floating]:
    """Average ``factor x factor`` pixel blocks of an image ``(y, x)`` or stack ``(n, y, x)``.

    The remainder rows/columns that do not fill a block are dropped (cropped at the end),
    so pixel ``i`` of the result covers input pixels ``i*factor ... i*factor + factor - 1``
    and the pixel size grows by ``factor``.
    """
    arr = _float_array(image)
    if arr.ndim not in (2, 3):
        raise ShapeError(f"expected an image (y, x) or a stack (n, y, x), got shape {arr.shape}")
    return _bin_last(arr, int(factor), 2)


def bin_volume(volume: ArrayLike, factor: int) -> NDArray[np.floating]:
    """Average ``factor^3`` voxel blocks of a volume ``(z, y, x)`` (remainder cropped)."""
    arr = _float_array(volume)
    if arr.ndim != 3:
        raise ShapeError(f"expected a volume (z, y, x), got shape {arr.shape}")
    return _bin_last(arr, int(factor), 3)
