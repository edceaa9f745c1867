"""Central slices in a padded 3D spectrum: insertion (direct Fourier inversion) and extraction.

Conventions are RELION's: a map of box ``L`` has its centre at voxel ``L // 2``, an image
its centre at pixel ``L // 2``; image ``i`` with RELION matrix ``A_i`` is the slice
``F_map(A_i.T k)`` of the map's spectrum (``k = (kx, ky, 0)``), and its content is displaced
by ``+shift`` (so its spectrum is multiplied by ``exp(+2 pi i k.shift)`` to centre it).

Spectra live on a centred grid of ``P = pad * L`` points per axis (DC at index ``P // 2``),
sampled with trilinear interpolation; insertion scatters with the same weights, so
extraction and insertion are adjoint. Frequencies are kept below the image Nyquist
(``|k| < 1/2`` cycle per pixel), so no sample touches the unpaired edge of the grid.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from emkit.ops.ctf import Layout

__all__ = ["Optics"]

# Points inserted per chunk (images x frequencies): bounds the index and weight arrays.
_POINTS_PER_CHUNK = 1 << 21


@dataclass(frozen=True)
class Optics:
    """What the CTF of each image needs (RELION's optics and defocus columns).

    Attributes
    ----------
    pixel_size_A : float
        Pixel size in Å.
    defocus_A : ndarray, shape (n,) or (n, 3), or None
        Defocus per image in Å (or U, V, angle in degrees); None: no CTF.
    voltage_kV, cs_mm, amplitude_contrast : float
        Microscope.
    """

    pixel_size_A: float
    defocus_A: np.ndarray | None = None
    voltage_kV: float = 300.0
    cs_mm: float = 2.7
    amplitude_contrast: float = 0.1

    @property
    def has_ctf(self) -> bool:
        return self.defocus_A is not None

    def ctf(self, index: int, shape: tuple[int, int], layout: Layout) -> np.ndarray:
        """CTF of image ``index`` on an image grid (:func:`emkit.ops.ctf_2d` layout)."""
        from emkit.ops import ctf_2d

        assert self.defocus_A is not None
        d = np.asarray(self.defocus_A[index], dtype=np.float64)
        defocus: Any = float(d) if d.ndim == 0 else tuple(float(v) for v in d)
        return ctf_2d(shape, pixel_size_A=self.pixel_size_A, defocus_A=defocus,
                      voltage_kV=self.voltage_kV, cs_mm=self.cs_mm,
                      amplitude_contrast=self.amplitude_contrast, layout=layout)

    def subset(self, index: np.ndarray) -> Optics:
        """The optics of the images ``index``."""
        d = None if self.defocus_A is None else np.asarray(self.defocus_A)[index]
        return Optics(self.pixel_size_A, d, self.voltage_kV, self.cs_mm, self.amplitude_contrast)


def _trilinear(
    positions: np.ndarray, p: int, shape: tuple[int, int, int] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Flat indices ``(m, 8)`` and weights ``(m, 8)`` of the 8 grid neighbours of points.

    ``positions`` are ``(m, 3)`` fractional grid indices in ``(z, y, x)`` order, on a grid
    of ``shape`` (default ``(p, p, p)``).
    """
    _, ny, nx = shape if shape is not None else (p, p, p)
    base = np.floor(positions)
    frac = positions - base
    base = base.astype(np.int64)
    idx = np.empty((len(positions), 8), dtype=np.int64)
    wgt = np.empty((len(positions), 8), dtype=np.float64)
    corner = 0
    for dz in (0, 1):
        wz = frac[:, 0] if dz else 1.0 - frac[:, 0]
        for dy in (0, 1):
            wy = frac[:, 1] if dy else 1.0 - frac[:, 1]
            for dx in (0, 1):
                wx = frac[:, 2] if dx else 1.0 - frac[:, 2]
                idx[:, corner] = ((base[:, 0] + dz) * ny + base[:, 1] + dy) * nx + base[:, 2] + dx
                wgt[:, corner] = wz * wy * wx
                corner += 1
    return idx, wgt


def slice_positions(rotations: np.ndarray, k_xy: np.ndarray, p: int) -> np.ndarray:
    """Fractional ``(z, y, x)`` indices in the centred ``p``-grid of ``A.T (kx, ky, 0)``.

    Parameters
    ----------
    rotations : ndarray, shape (n, 3, 3)
    k_xy : ndarray, shape (m, 2)
        Image frequencies ``(kx, ky)`` in cycles per pixel.
    p : int
        Grid size.

    Returns
    -------
    ndarray, shape (n, m, 3)
    """
    # reference k (x, y, z) = A.T k_img  ->  k_ref_j = sum_i k_i A_ij (i over x, y)
    ref = np.einsum("mi,nij->nmj", k_xy, np.asarray(rotations, dtype=np.float64)[:, :2, :])
    return ref[..., ::-1] * p + p // 2


def padded_image_spectra(
    images: np.ndarray, pad: int, shifts_px: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Half-plane spectra of images zero-padded to ``P = pad * L``, centred (shifts removed).

    Returns
    -------
    values : ndarray, shape (n, m), complex128
        Spectrum at the kept frequencies (``kx >= 0``, ``|k|`` below Nyquist).
    k_xy : ndarray, shape (m, 2)
        Their frequencies ``(kx, ky)`` in cycles per pixel.
    keep : ndarray of bool, shape (P, P // 2 + 1)
        Which rfft coefficients were kept.
    """
    n, size, _ = images.shape
    p = pad * size
    padded = np.zeros((n, p, p), dtype=np.float64)
    off = p // 2 - size // 2
    padded[:, off:off + size, off:off + size] = images
    spec = np.fft.rfft2(np.fft.ifftshift(padded, axes=(1, 2)))
    ky = np.fft.fftfreq(p)[:, None]  # cycles per pixel (padding keeps the pixel size)
    kx = np.fft.rfftfreq(p)[None, :]
    keep = (kx**2 + ky**2) < (0.5 - 1.0 / size) ** 2
    ky_b, kx_b = np.broadcast_arrays(ky, kx)
    k_xy = np.stack([kx_b[keep], ky_b[keep]], axis=1)
    values = spec[:, keep]
    if shifts_px is not None:
        # content at +shift: multiply by exp(+2 pi i k.shift) (k in cycles per pixel)
        phase = 2 * np.pi * (np.asarray(shifts_px)[:, 1:2] * k_xy[None, :, 0]
                             + np.asarray(shifts_px)[:, 0:1] * k_xy[None, :, 1])
        values = values * np.exp(1j * phase)
    return values, k_xy, keep


def insert_slices(
    numerator: np.ndarray,
    weights: np.ndarray,
    values: np.ndarray,
    ctf: np.ndarray | None,
    rotations: np.ndarray,
    k_xy: np.ndarray,
) -> None:
    """Add ``ctf * values`` and ``ctf^2`` into flat ``p^3`` grids, trilinearly, in place.

    Parameters
    ----------
    numerator : ndarray, shape (p**3,), complex128
    weights : ndarray, shape (p**3,), float64
    values : ndarray, shape (n, m), complex
    ctf : ndarray, shape (n, m), or None
    rotations : ndarray, shape (n, 3, 3)
    k_xy : ndarray, shape (m, 2)
        Image frequencies ``(kx, ky)`` in cycles per pixel.
    """
    p = round(len(weights) ** (1.0 / 3.0))
    _insert(numerator, weights, values, ctf, rotations, k_xy, p, (p, p, p), fold=False)


def _insert(
    numerator: np.ndarray, weights: np.ndarray, values: np.ndarray, ctf: np.ndarray | None,
    rotations: np.ndarray, k_xy: np.ndarray, p: int, shape: tuple[int, int, int], *,
    fold: bool,
) -> None:
    """The insertion of :func:`insert_slices` (``fold`` False, the full grid) and of
    :func:`insert_slices_half` (``fold`` True: samples at ``kx < 0`` go in as their Friedel
    mates on the ``kx >= 0`` half grid), chunk by chunk of images."""
    size = shape[0] * shape[1] * shape[2]
    n, m = values.shape
    step = max(1, _POINTS_PER_CHUNK // max(m, 1))
    for a in range(0, n, step):
        b = min(n, a + step)
        pos = slice_positions(rotations[a:b], k_xy, p).reshape(-1, 3)
        v = values[a:b].reshape(-1)
        c2 = None
        if ctf is not None:
            c = ctf[a:b].reshape(-1)
            v, c2 = v * c, c * c
        if fold:
            pos[:, 2] -= p // 2  # x as kx * p
            mate = pos[:, 2] < 0
            pos[mate] *= -1.0
            pos[mate, :2] += p  # centred index j -> p - j
            v = np.where(mate, np.conj(v), v)
        idx, w = _trilinear(pos, p, shape)
        flat = idx.reshape(-1)
        numerator.real += np.bincount(flat, (w * v.real[:, None]).reshape(-1), minlength=size)
        numerator.imag += np.bincount(flat, (w * v.imag[:, None]).reshape(-1), minlength=size)
        wc = w if c2 is None else w * c2[:, None]
        weights += np.bincount(flat, wc.reshape(-1), minlength=size)


def hermitian_complete(numerator: np.ndarray, weights: np.ndarray, p: int) -> tuple[
    np.ndarray, np.ndarray
]:
    """Add the Friedel mates (``F(-k) = conj F(k)``) of half-plane insertions."""
    num = numerator.reshape(p, p, p)
    wgt = weights.reshape(p, p, p)
    mirror = (slice(None, None, -1),) * 3

    def mate(a: np.ndarray) -> np.ndarray:
        return np.roll(a[mirror], 1, axis=(0, 1, 2))  # index j -> (p - j) mod p

    return num + np.conj(mate(num)), wgt + mate(wgt)


def half_grid_shape(p: int) -> tuple[int, int, int]:
    """The ``kx >= 0`` half of the centred ``p``-grid: ``(p, p, p // 2 + 1)``, z and y
    centred (DC at ``p // 2``), x the index ``kx * p`` (DC at 0), as :func:`numpy.fft.rfftn`
    keeps it."""
    return (p, p, p // 2 + 1)


def insert_slices_half(
    numerator: np.ndarray,
    weights: np.ndarray,
    values: np.ndarray,
    ctf: np.ndarray | None,
    rotations: np.ndarray,
    k_xy: np.ndarray,
    p: int,
) -> None:
    """:func:`insert_slices` into the ``kx >= 0`` half grid (:func:`half_grid_shape`, flat).

    A sample at ``kx < 0`` goes in as its Friedel mate (``-k``, the conjugate value), so the
    half grid holds what the full grid holds at ``kx >= 0`` once :func:`complete_half_plane`
    has added the mates in the plane ``kx = 0``; it needs half the memory.
    """
    _insert(numerator, weights, values, ctf, rotations, k_xy, p, half_grid_shape(p), fold=True)


def complete_half_plane(numerator: np.ndarray, weights: np.ndarray, p: int) -> None:
    """Add the Friedel mates in the plane ``kx = 0`` of half-grid insertions, in place."""
    num = numerator.reshape(half_grid_shape(p))
    wgt = weights.reshape(half_grid_shape(p))

    def mate(a: np.ndarray) -> np.ndarray:
        return np.roll(a[::-1, ::-1], 1, axis=(0, 1))  # index j -> (p - j) mod p

    num[:, :, 0] += np.conj(mate(num[:, :, 0]))
    wgt[:, :, 0] += mate(wgt[:, :, 0])


def half_spectrum_to_volume(spectrum: np.ndarray, size: int) -> np.ndarray:
    """Real map ``(size,)^3`` (centre ``size // 2``) from a half-grid spectrum
    (:func:`half_grid_shape`, z and y centred) by an inverse real FFT."""
    import scipy.fft

    p = spectrum.shape[0]
    vol = scipy.fft.irfftn(np.fft.ifftshift(spectrum, axes=(0, 1)), s=(p, p, p),
                           overwrite_x=True)
    # the centred box without shifting the whole grid: centred index c is (c - p // 2) mod p
    index = (np.arange(size) + p // 2 - size // 2 - p // 2) % p
    return vol[np.ix_(index, index, index)]


def gridding_correction(size: int, p: int) -> np.ndarray:
    """sinc^2 footprint of trilinear interpolation on a ``p``-grid, on a ``size^3`` box."""
    x = (np.arange(size) - size // 2) / p
    s = np.sinc(x) ** 2
    return (s[:, None, None] * s[None, :, None] * s[None, None, :]).astype(np.float64)


def volume_spectrum(volume: np.ndarray, pad: int) -> np.ndarray:
    """Centred spectrum ``(P, P, P)`` of a map (centre ``L // 2``) padded to ``P = pad * L``.

    The map is first divided by the trilinear footprint, so trilinear extraction of slices
    gives the spectrum of the projections.
    """
    size = volume.shape[0]
    p = pad * size
    corrected = np.asarray(volume, dtype=np.float64) / gridding_correction(size, p)
    padded = np.zeros((p, p, p), dtype=np.float64)
    off = p // 2 - size // 2
    padded[off:off + size, off:off + size, off:off + size] = corrected
    return np.fft.fftshift(np.fft.fftn(np.fft.ifftshift(padded)))


def extract_slices(spectrum: Any, rotations: np.ndarray, k_xy: np.ndarray) -> Any:
    """Trilinear samples of a centred spectrum at ``A.T k`` for every rotation.

    Parameters
    ----------
    spectrum : torch.Tensor, shape (1, 2, p, p, p)
        Real and imaginary parts (from :func:`spectrum_tensor`).
    rotations : ndarray, shape (n, 3, 3)
    k_xy : ndarray, shape (m, 2)
        Image frequencies ``(kx, ky)`` in cycles per pixel.

    Returns
    -------
    torch.Tensor, shape (n, m, 2), float32
        Real and imaginary parts.
    """
    import torch
    import torch.nn.functional as F

    p = spectrum.shape[-1]
    pos = slice_positions(rotations, k_xy, p)  # (n, m, 3) as (z, y, x) indices
    grid = torch.as_tensor(pos[..., ::-1].copy(), dtype=torch.float32)  # (x, y, z)
    grid = grid * (2.0 / (p - 1)) - 1.0
    out = F.grid_sample(spectrum, grid[None, :, :, None, :], mode="bilinear",
                        padding_mode="zeros", align_corners=True)
    return out[0, :, :, :, 0].permute(1, 2, 0)


def spectrum_tensor(spectrum: np.ndarray) -> Any:
    """``(1, 2, p, p, p)`` float32 tensor of a complex spectrum (for :func:`extract_slices`)."""
    import torch

    stacked = np.stack([spectrum.real, spectrum.imag]).astype(np.float32)
    return torch.from_numpy(stacked)[None]
