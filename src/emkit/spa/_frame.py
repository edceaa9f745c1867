"""Resolve the image-side rotation that distances leave open, from the images themselves.

Fitted orientations ``B_i`` equal the truth ``A_i`` only up to ``A_i = L B_i R`` (or
``L B_i.T R``): ``R`` rotates the map and is harmless, but ``L`` turns every particle frame,
which no map can explain. For each candidate ``L`` (and each branch), a low-resolution map
is made by direct Fourier inversion from half of a subset of images and its central slices
are compared with the other half: the right ``L`` makes the held-out images agree with the
map. Candidates are an SO(3) grid, then a shrinking local grid around the best.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from emkit.spa import _fourier as fr

logger = logging.getLogger(__name__)

__all__ = ["FrameResolution", "fourier_crop", "local_rotation_grid", "resolve_frame"]


def fourier_crop(images: np.ndarray, size: int) -> np.ndarray:
    """Downsample images ``(n, L, L)`` to ``(n, size, size)`` by cropping their spectra.

    The centre pixel ``L // 2`` stays the centre ``size // 2``; values per pixel are kept
    (a constant image stays that constant).
    """
    n, big, _ = images.shape
    if size >= big:
        return np.asarray(images, dtype=np.float64)
    spec = np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(images, axes=(1, 2))), axes=(1, 2))
    a = big // 2 - size // 2
    cropped = spec[:, a:a + size, a:a + size]
    out = np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(cropped, axes=(1, 2))), axes=(1, 2))
    return np.asarray(out.real * (size / big) ** 2, dtype=np.float64)


def local_rotation_grid(step_deg: float, half_width: int = 1) -> np.ndarray:
    """Rotations whose rotation vectors lie on a cubic grid of spacing ``step_deg``.

    Returns ``(2 * half_width + 1)^3`` matrices (the identity among them) acting on
    ``(x, y, z)``.
    """
    from emkit.geometry import axis_angle_to_matrix

    ticks = np.arange(-half_width, half_width + 1) * np.deg2rad(step_deg)
    vecs = np.stack(np.meshgrid(ticks, ticks, ticks, indexing="ij"), axis=-1).reshape(-1, 3)
    angles = np.linalg.norm(vecs, axis=1)
    axes = np.where(angles[:, None] > 0, vecs / np.maximum(angles, 1e-12)[:, None],
                    np.array([0.0, 0.0, 1.0]))
    return axis_angle_to_matrix(axes, np.rad2deg(angles))


@dataclass
class FrameResolution:
    """Result of :func:`resolve_frame`.

    Attributes
    ----------
    rotations : ndarray, shape (n, 3, 3)
        ``L B_i`` (or ``L B_i.T``): orientations that a map can explain.
    left : ndarray, shape (3, 3)
        The rotation ``L`` that was found.
    transposed : bool
        Whether the ``B_i.T`` branch was chosen.
    score : float
        Mean held-out correlation of the chosen frame.
    """

    rotations: np.ndarray
    left: np.ndarray
    transposed: bool
    score: float


class _Consistency:
    """Held-out agreement of a low-resolution map with images, for candidate orientations."""

    def __init__(self, images: np.ndarray, size: int, rng: np.random.Generator,
                 n_images: int) -> None:
        pick = rng.permutation(len(images))[: min(n_images, len(images))]
        small = fourier_crop(np.asarray(images)[pick], size)
        small = small - small.mean(axis=(1, 2), keepdims=True)
        self.pick = pick
        half = len(pick) // 2
        self.fit_index, self.test_index = np.arange(half), np.arange(half, len(pick))
        self.size, self.pad = size, 2
        self.values, self.k_fit, _ = fr.padded_image_spectra(small[self.fit_index], 2, None)
        # held-out spectra on the plain grid, half plane, no DC, below 0.8 x Nyquist
        spec = np.fft.rfft2(np.fft.ifftshift(small[self.test_index], axes=(1, 2)))
        ky = np.fft.fftfreq(size)[:, None]
        kx = np.fft.rfftfreq(size)[None, :]
        radius = np.sqrt(kx**2 + ky**2)
        keep = (radius > 0) & (radius < 0.4)
        ky_b, kx_b = np.broadcast_arrays(ky, kx)
        self.k_test = np.stack([kx_b[keep], ky_b[keep]], axis=1)
        test = spec[:, keep]
        self.test = test / np.linalg.norm(test, axis=1, keepdims=True)

    def score(self, rotations: np.ndarray) -> float:
        """Mean correlation of held-out images with the map made from the others."""
        p = self.pad * self.size
        num = np.zeros(p**3, dtype=np.complex128)
        wgt = np.zeros(p**3)
        fr.insert_slices(num, wgt, self.values, None, rotations[self.pick[self.fit_index]],
                         self.k_fit)
        num3, wgt3 = fr.hermitian_complete(num, wgt, p)
        filled = wgt3 > 0
        spec = np.where(filled, num3 / (wgt3 + 1e-2 * wgt3[filled].mean()), 0.0).reshape(-1)
        pos = fr.slice_positions(rotations[self.pick[self.test_index]], self.k_test, p)
        idx, w = fr._trilinear(pos.reshape(-1, 3), p)
        ref = (spec[idx] * w).sum(axis=1).reshape(len(self.test_index), -1)
        norm = np.linalg.norm(ref, axis=1)
        corr = np.real(np.sum(np.conj(self.test) * ref, axis=1)) / np.maximum(norm, 1e-30)
        return float(corr.mean())


def _search(consistency: _Consistency, base: np.ndarray, candidates: np.ndarray) -> tuple[
    float, np.ndarray
]:
    scores = [consistency.score(left @ base) for left in candidates]
    best = int(np.argmax(scores))
    return float(scores[best]), candidates[best]


def resolve_frame(
    images: np.ndarray,
    rotations: np.ndarray,
    *,
    seed: int = 0,
    size: int = 20,
    n_images: int = 400,
    n_coarse: int = 300,
    local_steps_deg: tuple[float, ...] = (12.0, 6.0, 3.0, 1.5),
) -> FrameResolution:
    """Find the image-side rotation (and branch) that makes fitted orientations usable.

    Parameters
    ----------
    images : ndarray, shape (n, L, L)
        The particle images ``(n, y, x)``.
    rotations : ndarray, shape (n, 3, 3)
        Orientations from a distance fit (:func:`emkit.spa.recover_orientations`).
    seed : int
        Seed of the image subset.
    size : int
        Images are downsampled to ``size`` pixels for the test.
    n_images : int
        Images used (half make the map, half test it).
    n_coarse : int
        Size of the SO(3) grid searched first (:func:`emkit.geometry.so3_grid`).
    local_steps_deg : tuple of float
        Steps of the local grids that follow (27 rotations each).

    Returns
    -------
    FrameResolution
    """
    from emkit.geometry import so3_grid

    rng = np.random.default_rng(seed)
    consistency = _Consistency(images, min(size, images.shape[-1]), rng, n_images)
    grid = so3_grid(n_coarse)
    results = []
    for transposed in (False, True):
        base = np.swapaxes(rotations, 1, 2) if transposed else np.asarray(rotations)
        score, left = _search(consistency, base, grid)
        results.append((score, transposed, left, base))
    score, transposed, left, base = max(results, key=lambda r: r[0])
    for step in local_steps_deg:
        score, left = _search(consistency, base, local_rotation_grid(step) @ left)
    logger.info("frame: score %.4f (branches %.4f / %.4f)", score, results[0][0], results[1][0])
    return FrameResolution(rotations=left @ base, left=left, transposed=transposed,
                           score=score)
