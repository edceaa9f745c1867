"""Maps from particle images and orientations: direct Fourier inversion (CTF-aware), FSC."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from emkit.errors import MismatchError, ShapeError
from emkit.spa import _fourier as fr
from emkit.spa._fourier import Optics

__all__ = ["Reconstruction", "reconstruct_half_maps", "reconstruct_map"]

# Images whose padded spectra are held at once.
_IMAGES_PER_CHUNK = 256


def _check_inputs(images: np.ndarray, rotations: np.ndarray, shifts_px: np.ndarray | None) -> None:
    if images.ndim != 3 or images.shape[1] != images.shape[2]:
        raise ShapeError(f"images must be a stack of square images (n, L, L), got {images.shape}")
    if rotations.shape != (len(images), 3, 3):
        raise MismatchError(f"{len(images)} images but rotations of shape {rotations.shape}; "
                            "give one rotation per image")
    if shifts_px is not None and np.shape(shifts_px) != (len(images), 2):
        raise MismatchError(f"{len(images)} images but shifts of shape {np.shape(shifts_px)}")


def accumulate(
    images: np.ndarray,
    rotations: np.ndarray,
    *,
    shifts_px: np.ndarray | None = None,
    optics: Optics | None = None,
    pad: int = 2,
) -> tuple[np.ndarray, np.ndarray]:
    """Sum of CTF-weighted image spectra and of CTF^2 on the padded grid's ``kx >= 0`` half.

    Returns
    -------
    numerator : ndarray, shape (P, P, P // 2 + 1), complex128
    weights : ndarray, shape (P, P, P // 2 + 1), float64
        On :func:`emkit.spa._fourier.half_grid_shape` (the other half is their Friedel
        mates: the full grid would need twice the memory).
    """
    images = np.asarray(images, dtype=np.float64)
    rotations = np.asarray(rotations, dtype=np.float64)
    _check_inputs(images, rotations, shifts_px)
    size = images.shape[-1]
    p = pad * size
    if p % 2:
        raise ShapeError(f"the padded grid must have an even size, got pad {pad} x box {size} "
                         f"= {p}; use an even pad (2)")
    shape = fr.half_grid_shape(p)
    numerator = np.zeros(shape[0] * shape[1] * shape[2], dtype=np.complex128)
    weights = np.zeros(numerator.size, dtype=np.float64)
    for a in range(0, len(images), _IMAGES_PER_CHUNK):
        b = min(len(images), a + _IMAGES_PER_CHUNK)
        sh = None if shifts_px is None else np.asarray(shifts_px)[a:b]
        values, k_xy, keep = fr.padded_image_spectra(images[a:b], pad, sh)
        ctf = None
        if optics is not None and optics.has_ctf:
            ctf = np.stack([optics.ctf(i, (p, p), "rfft")[keep] for i in range(a, b)])
        fr.insert_slices_half(numerator, weights, values, ctf, rotations[a:b], k_xy, p)
    fr.complete_half_plane(numerator, weights, p)
    return numerator.reshape(shape), weights.reshape(shape)


def _mean_filled_weight(weights: np.ndarray) -> float:
    """Mean weight over the filled voxels of the FULL grid, from its ``kx >= 0`` half (the
    plane ``kx = 0`` counts once there, every other plane twice)."""
    filled = weights > 0
    total = 2.0 * float(weights[:, :, 1:][filled[:, :, 1:]].sum()) + float(
        weights[:, :, 0][filled[:, :, 0]].sum())
    count = 2 * int(filled[:, :, 1:].sum()) + int(filled[:, :, 0].sum())
    return total / count if count else 0.0


def solve_map(
    numerator: np.ndarray, weights: np.ndarray, size: int, *, wiener: float = 1e-3,
    overwrite: bool = False,
) -> np.ndarray:
    """The map ``numerator / (weights + c)``, back in real space, gridding-corrected.

    ``c = wiener * mean(weights where > 0)``: a Wiener constant that keeps sparsely sampled
    frequencies from blowing up. The grids are half grids (:func:`accumulate`);
    ``overwrite`` lets this use them as scratch space (they are left undefined).
    """
    mean = _mean_filled_weight(weights)
    c = wiener * mean if mean > 0 else 1.0
    empty = weights <= 0
    if overwrite:
        weights += c
        spectrum = numerator
        spectrum /= weights
    else:
        spectrum = numerator / (weights + c)
    spectrum[empty] = 0.0
    del empty
    p = spectrum.shape[0]
    vol = fr.half_spectrum_to_volume(spectrum, size) / fr.gridding_correction(size, p)
    return vol.astype(np.float32)


def reconstruct_map(
    images: np.ndarray,
    rotations: np.ndarray,
    *,
    shifts_px: np.ndarray | None = None,
    optics: Optics | None = None,
    pad: int = 2,
    wiener: float = 1e-3,
) -> np.ndarray:
    """Direct Fourier inversion of particle images (RELION conventions), CTF-aware.

    Each image's spectrum (zero-padded ``pad`` times, centred by its shift) is multiplied by
    its CTF and inserted on its central slice ``A_i.T k`` with trilinear weights; the map is
    ``sum CTF F / (sum CTF^2 + c)`` (Wiener), inverse-transformed and divided by the
    trilinear footprint.

    Parameters
    ----------
    images : ndarray, shape (n, L, L)
        Particle images ``(n, y, x)``, centre pixel ``L // 2``.
    rotations : ndarray, shape (n, 3, 3)
        RELION matrices (:func:`emkit.geometry.euler_zyz_to_matrix` of rot, tilt, psi).
    shifts_px : ndarray, shape (n, 2), optional
        Origin offsets ``(y, x)`` in pixels (RELION's rlnOriginY/X / pixel size).
    optics : Optics, optional
        Pixel size and defocus per image; without defocus, no CTF.
    pad : int
        Padding factor of the Fourier grid (2, as RELION).
    wiener : float
        Wiener constant relative to the mean weight (1e-3).

    Returns
    -------
    ndarray, shape (L, L, L), float32
        The map ``(z, y, x)``, centre voxel ``L // 2``, in the images' units per voxel.
    """
    numerator, weights = accumulate(images, rotations, shifts_px=shifts_px, optics=optics,
                                    pad=pad)
    return solve_map(numerator, weights, np.shape(images)[-1], wiener=wiener, overwrite=True)


@dataclass
class Reconstruction:
    """A map, its two half-maps and their FSC.

    Attributes
    ----------
    volume, half1, half2 : ndarray, shape (L, L, L), float32
    freq_invA, fsc : ndarray, shape (L // 2 + 1,)
        FSC between the half-maps (masked with a soft sphere) per shell.
    resolution_05_A, resolution_0143_A : float
        Where the FSC falls below 0.5 and 0.143, in Å.
    pixel_size_A : float
    """

    volume: np.ndarray
    half1: np.ndarray
    half2: np.ndarray
    freq_invA: np.ndarray
    fsc: np.ndarray
    resolution_05_A: float
    resolution_0143_A: float
    pixel_size_A: float
    in_half1: np.ndarray


def soft_sphere_mask(size: int, radius_px: float | None = None, edge_px: float = 4.0) -> np.ndarray:
    """A sphere of ``radius_px`` (default ``L/2 - edge``) about voxel ``L // 2``, cosine edge."""
    r = np.sqrt(sum(g**2 for g in np.meshgrid(*(np.arange(size) - size // 2,) * 3,
                                                  indexing="ij", sparse=True)))
    radius = size / 2 - edge_px if radius_px is None else radius_px
    t = np.clip((r - radius) / edge_px, 0.0, 1.0)
    return (0.5 + 0.5 * np.cos(np.pi * t)).astype(np.float32)


def reconstruct_half_maps(
    images: np.ndarray,
    rotations: np.ndarray,
    *,
    pixel_size_A: float,
    shifts_px: np.ndarray | None = None,
    optics: Optics | None = None,
    seed: int = 0,
    wiener: float = 1e-3,
) -> Reconstruction:
    """Two independent half-maps (random halves), the full map and the FSC between halves.

    Parameters are those of :func:`reconstruct_map`; ``seed`` draws the halves.
    """
    from emkit.ops import fourier_shell_correlation, fsc_resolution

    n = len(images)
    rng = np.random.default_rng(seed)
    half = rng.permutation(n) % 2 == 0
    parts = []
    for sel in (half, ~half):
        sub_optics = None if optics is None else optics.subset(np.nonzero(sel)[0])
        parts.append(accumulate(np.asarray(images)[sel], np.asarray(rotations)[sel],
                                shifts_px=None if shifts_px is None else
                                np.asarray(shifts_px)[sel], optics=sub_optics))
    size = np.shape(images)[-1]
    half1 = solve_map(*parts[0], size, wiener=wiener)
    half2 = solve_map(*parts[1], size, wiener=wiener)
    # the full map from the sums, summed in place: one pair of grids less at the peak
    (num, wgt), (num2, wgt2) = parts
    num += num2
    wgt += wgt2
    del parts, num2, wgt2
    full = solve_map(num, wgt, size, wiener=wiener, overwrite=True)
    freq, fsc = fourier_shell_correlation(half1, half2, voxel_size_A=pixel_size_A,
                                          mask=soft_sphere_mask(size))
    return Reconstruction(
        volume=full, half1=half1, half2=half2, freq_invA=freq, fsc=fsc,
        resolution_05_A=fsc_resolution(freq, fsc, 0.5),
        resolution_0143_A=fsc_resolution(freq, fsc, 0.143), pixel_size_A=float(pixel_size_A),
        in_half1=half,
    )
