"""The contrast transfer function (CTF) of a transmission electron microscope.

Phase shift of the weak-phase-object approximation, with the relativistic wavelength::

    chi(k) = pi * lambda * dz * k^2 - (pi / 2) * Cs * lambda^3 * k^4 + phi + asin(A)
    CTF(k) = sin(chi(k)) * exp(-B k^2 / 4)

``k`` in 1/Å, ``dz`` the defocus in Å (underfocus positive), ``Cs`` in Å, ``phi`` the
phase-plate shift, ``A`` the amplitude contrast fraction. The sign is RELION's: the CTF is
positive at low frequency for underfocus, so a positive-density projection keeps its
low-resolution contrast after :func:`apply_ctf`. Astigmatism follows RELION too:
``dz(alpha) = (du + dv)/2 + (du - dv)/2 * cos(2 (alpha - angle))`` with ``alpha`` the
frequency's azimuth counter-clockwise from +x.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import scipy.fft as sfft
from numpy.typing import ArrayLike, NDArray

from emkit.errors import InputError, MismatchError, ShapeError

__all__ = ["apply_ctf", "ctf_2d", "electron_wavelength_A", "phase_flip"]

Layout = Literal["fft", "rfft", "centered"]
Defocus = float | tuple[float, float, float] | Sequence[float]


def electron_wavelength_A(voltage_kV: float) -> float:
    """Relativistic electron wavelength in Å for an accelerating voltage in kV.

    ``lambda = h / sqrt(2 m0 e V (1 + e V / (2 m0 c^2)))``; 0.0197 Å at 300 kV.
    """
    if voltage_kV <= 0:
        raise InputError(f"voltage_kV must be positive, got {voltage_kV}")
    h = 6.62607015e-34
    m0 = 9.1093837015e-31
    e = 1.602176634e-19
    c = 299792458.0
    v = voltage_kV * 1e3
    return float(h / np.sqrt(2 * m0 * e * v * (1 + e * v / (2 * m0 * c**2))) * 1e10)


def _defocus_triplet(defocus_A: Defocus) -> tuple[float, float, float]:
    d = np.atleast_1d(np.asarray(defocus_A, dtype=np.float64))
    if d.shape == (1,):
        return float(d[0]), float(d[0]), 0.0
    if d.shape == (3,):
        return float(d[0]), float(d[1]), float(d[2])
    raise InputError(
        f"defocus_A must be one value or (du, dv, angle_deg), got shape {d.shape}"
    )


def _frequencies(
    shape: tuple[int, int], pixel_size_A: float, layout: Layout
) -> tuple[NDArray[np.floating], NDArray[np.floating]]:
    ny, nx = shape
    fy = np.fft.fftfreq(ny, d=pixel_size_A)
    if layout == "rfft":
        fx = np.fft.rfftfreq(nx, d=pixel_size_A)
    else:
        fx = np.fft.fftfreq(nx, d=pixel_size_A)
    if layout == "centered":
        fy, fx = np.fft.fftshift(fy), np.fft.fftshift(fx)
    elif layout not in ("fft", "rfft"):
        raise InputError(f"unknown layout {layout!r}; use 'fft', 'rfft' or 'centered'")
    return fy[:, None], fx[None, :]


def ctf_2d(
    shape: tuple[int, int],
    *,
    pixel_size_A: float,
    defocus_A: Defocus,
    voltage_kV: float = 300.0,
    cs_mm: float = 2.7,
    amplitude_contrast: float = 0.1,
    phase_shift_deg: float = 0.0,
    bfactor_A2: float = 0.0,
    layout: Layout = "fft",
) -> NDArray[np.float32]:
    """The CTF sampled on the Fourier grid of an image.

    Parameters
    ----------
    shape : (int, int)
        Image shape ``(y, x)`` in pixels.
    pixel_size_A : float
        Pixel size in Å.
    defocus_A : float or (du, dv, angle_deg)
        Defocus in Å, underfocus positive; or astigmatic defocus along the major and minor
        axes and the major axis angle in degrees from +x (RELION's rlnDefocusU/V/Angle).
    voltage_kV, cs_mm, amplitude_contrast, phase_shift_deg : float
        Microscope: accelerating voltage (kV), spherical aberration (mm), amplitude
        contrast fraction (0..1), phase-plate shift (degrees).
    bfactor_A2 : float
        Envelope ``exp(-B k^2 / 4)`` in Å² (0: none).
    layout : {"fft", "rfft", "centered"}
        ``"fft"``: ``(y, x)`` in numpy FFT order (DC at ``[0, 0]``); ``"rfft"``:
        ``(y, x//2 + 1)`` for ``rfft2``; ``"centered"``: DC at ``(y//2, x//2)``.

    Returns
    -------
    ndarray, float32
        Shape ``(y, x)`` (``(y, x//2 + 1)`` for ``"rfft"``).
    """
    if pixel_size_A <= 0:
        raise InputError(f"pixel_size_A must be positive, got {pixel_size_A}")
    if not 0.0 <= amplitude_contrast < 1.0:
        raise InputError(f"amplitude_contrast must be in [0, 1), got {amplitude_contrast}")
    if len(shape) != 2 or min(shape) < 1:
        raise ShapeError(f"shape must be (y, x) with positive sizes, got {tuple(shape)}")
    du, dv, angle_deg = _defocus_triplet(defocus_A)
    lam = electron_wavelength_A(voltage_kV)
    cs_A = cs_mm * 1e7
    fy, fx = _frequencies((int(shape[0]), int(shape[1])), pixel_size_A, layout)
    k2 = fx**2 + fy**2
    if du == dv:
        dz: NDArray[np.float64] | float = du
    else:
        alpha = np.arctan2(fy, fx)
        dz = 0.5 * (du + dv) + 0.5 * (du - dv) * np.cos(2.0 * (alpha - np.deg2rad(angle_deg)))
    chi = (
        np.pi * lam * dz * k2
        - 0.5 * np.pi * cs_A * lam**3 * k2**2
        + np.deg2rad(phase_shift_deg)
        + np.arcsin(amplitude_contrast)
    )
    ctf = np.sin(chi)
    if bfactor_A2:
        ctf = ctf * np.exp(-bfactor_A2 * k2 / 4.0)
    return np.asarray(ctf, dtype=np.float32)


def _per_image_defocus(defocus_A: Defocus | NDArray[np.floating], n: int) -> list[Defocus]:
    """One defocus per image: an ndarray of shape (n,) or (n, 3) is per image, else shared."""
    if isinstance(defocus_A, np.ndarray) and (
        defocus_A.ndim == 2 or (defocus_A.ndim == 1 and defocus_A.shape[0] == n and n != 1)
    ):
        if defocus_A.shape[0] != n:
            raise MismatchError(
                f"{defocus_A.shape[0]} defocus values for {n} images; give one per image"
            )
        return [tuple(float(v) for v in np.atleast_1d(row)) for row in defocus_A]
    return [defocus_A] * n  # type: ignore[list-item]


def _filter_images(
    images: ArrayLike,
    defocus_A: Defocus | NDArray[np.floating],
    flip: bool,
    params: dict[str, float],
) -> NDArray[np.floating]:
    arr = np.asarray(images)
    if arr.dtype not in (np.float32, np.float64):
        arr = arr.astype(np.float64)
    if arr.ndim not in (2, 3):
        raise ShapeError(f"expected an image (y, x) or a stack (n, y, x), got shape {arr.shape}")
    stack = arr[None] if arr.ndim == 2 else arr
    ny, nx = stack.shape[1:]
    out = np.empty_like(stack)
    cache: dict[Defocus, NDArray[np.float32]] = {}
    for i, dz in enumerate(_per_image_defocus(defocus_A, stack.shape[0])):
        key = tuple(np.atleast_1d(np.asarray(dz, dtype=np.float64)).tolist())
        if key not in cache:
            c = ctf_2d((ny, nx), defocus_A=dz, layout="rfft", **params)
            cache[key] = np.sign(c) if flip else c
        spec = sfft.rfft2(stack[i])
        out[i] = sfft.irfft2(spec * cache[key], s=(ny, nx))
    return out[0] if arr.ndim == 2 else out


def apply_ctf(
    images: ArrayLike,
    *,
    pixel_size_A: float,
    defocus_A: Defocus | NDArray[np.floating],
    voltage_kV: float = 300.0,
    cs_mm: float = 2.7,
    amplitude_contrast: float = 0.1,
    phase_shift_deg: float = 0.0,
    bfactor_A2: float = 0.0,
) -> NDArray[np.floating]:
    """Multiply images by the CTF in Fourier space (what the microscope does).

    Parameters
    ----------
    images : array_like, shape (y, x) or (n, y, x)
        One image or a stack.
    defocus_A : float, (du, dv, angle_deg), or ndarray of shape (n,) or (n, 3)
        Shared by all images, or (as a numpy array with one row per image) per image.
    Other parameters as :func:`ctf_2d`.

    Returns
    -------
    ndarray
        Same shape; float32 for float32 input.
    """
    params = dict(
        pixel_size_A=pixel_size_A, voltage_kV=voltage_kV, cs_mm=cs_mm,
        amplitude_contrast=amplitude_contrast, phase_shift_deg=phase_shift_deg,
        bfactor_A2=bfactor_A2,
    )
    return _filter_images(images, defocus_A, False, params)


def phase_flip(
    images: ArrayLike,
    *,
    pixel_size_A: float,
    defocus_A: Defocus | NDArray[np.floating],
    voltage_kV: float = 300.0,
    cs_mm: float = 2.7,
    amplitude_contrast: float = 0.1,
    phase_shift_deg: float = 0.0,
) -> NDArray[np.floating]:
    """Correct the CTF's sign: multiply each image's spectrum by ``sign(CTF)``.

    Same parameters as :func:`apply_ctf` (no B-factor: it does not change the sign).
    """
    params = dict(
        pixel_size_A=pixel_size_A, voltage_kV=voltage_kV, cs_mm=cs_mm,
        amplitude_contrast=amplitude_contrast, phase_shift_deg=phase_shift_deg,
    )
    return _filter_images(images, defocus_A, True, params)
