"""Refinement by projection matching: reconstruct, re-assign every image, repeat.

Each iteration makes two half-maps from the current orientations and shifts (direct Fourier
inversion), takes the frequency where their FSC falls below 0.143 as the matching radius,
and compares every image with central slices of the map at a local grid of rotations around
its current one (times its CTF) and a grid of shifts around its current shift, in Fourier
space up to that radius (normalised cross-correlation). The grids shrink from iteration to
iteration (coarse to fine).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from emkit.errors import InputError
from emkit.spa import _fourier as fr
from emkit.spa._fourier import Optics
from emkit.spa._frame import local_rotation_grid
from emkit.spa._reconstruct import Reconstruction, reconstruct_half_maps

logger = logging.getLogger(__name__)

__all__ = ["RefinementResult", "refine_orientations"]

_IMAGES_PER_CHUNK = 64
# Matching radius limits, cycles per pixel.
_MIN_RADIUS = 0.08
_MAX_RADIUS = 0.45
# FSC above this counts as this (noise-free data: keeps the weights finite).
_MAX_FSC = 0.999
# Relative error of a reference at a slightly wrong orientation, in the matching weights.
_ORIENTATION_MISMATCH = 1e-2


@dataclass
class RefinementResult:
    """Refined orientations and shifts, the last reconstruction, and what each step did.

    Attributes
    ----------
    rotations : ndarray, shape (n, 3, 3)
    shifts_px : ndarray, shape (n, 2)
        ``(y, x)`` origin offsets in pixels.
    reconstruction : Reconstruction
        Half-maps, map and FSC from the final orientations.
    history : list of dict
        Per iteration: ``radius`` (cycles/px), ``step_deg``, ``shift_step_px``,
        ``resolution_0143_A`` of the map matched against, ``mean_score``.
    """

    rotations: np.ndarray
    shifts_px: np.ndarray
    reconstruction: Reconstruction
    history: list[dict[str, float]] = field(default_factory=list)


class _Matcher:
    """Image spectra on the plain rfft grid and each image's CTF, for matching."""

    def __init__(self, images: np.ndarray, optics: Optics | None) -> None:
        n, size, _ = images.shape
        self.size = size
        self.spec = np.fft.rfft2(np.fft.ifftshift(images, axes=(1, 2))).astype(np.complex64)
        ky = np.fft.fftfreq(size)[:, None]
        kx = np.fft.rfftfreq(size)[None, :]
        self.ky, self.kx = np.broadcast_arrays(ky, kx)
        self.radius = np.sqrt(self.kx**2 + self.ky**2)
        self.ctf = None
        if optics is not None and optics.has_ctf:
            self.ctf = np.stack([optics.ctf(i, (size, size), "rfft") for i in range(n)])

    def _shells(self, n_shells: int) -> np.ndarray:
        return np.minimum(np.rint(self.radius * self.size).astype(np.int64), n_shells)

    def shell_power(self, n_shells: int) -> np.ndarray:
        """Mean power of the images' spectra per shell (over every image)."""
        power = (np.abs(self.spec) ** 2).mean(axis=0)
        return _radial_mean(power, self._shells(n_shells), n_shells)

    def mean_ctf2(self, n_shells: int) -> np.ndarray:
        """Mean CTF^2 per shell over the images (1 without CTF)."""
        if self.ctf is None:
            return np.ones(n_shells)
        return _radial_mean((self.ctf**2).mean(axis=0), self._shells(n_shells), n_shells)

    def disk(self, radius: float) -> tuple[np.ndarray, np.ndarray]:
        """The mask and ``(kx, ky)`` of the frequencies in ``(0, radius)`` (no DC)."""
        keep = (self.radius > 0) & (self.radius < radius)
        return keep, np.stack([self.kx[keep], self.ky[keep]], axis=1)


def _radial_mean(values: np.ndarray, shell: np.ndarray, n_shells: int) -> np.ndarray:
    inside = shell < n_shells
    total = np.bincount(shell[inside], values[inside], minlength=n_shells)
    return total / np.maximum(np.bincount(shell[inside], minlength=n_shells), 1)


def frequency_weights(rec: Reconstruction, matcher: _Matcher, k_xy: np.ndarray) -> np.ndarray:
    """Per-frequency weight of the matching at ``k_xy`` (cycles/px), applied to both sides.

    The squared weight is ``1 / (noise + signal * ((1 - FSC) / FSC + eps))`` per shell: the
    inverse of the expected mismatch between an image and its reference. ``noise`` is the
    images' power minus the signal power (the map's shell power times the mean CTF^2);
    ``signal * (1 - FSC) / FSC`` is the reference's own error (half-map FSC), and ``eps``
    the error of a slightly wrong orientation. With white noise this is the plain
    (matched-filter) correlation; without noise it whitens the spectrum, so that the high
    frequencies that tell close orientations apart are not drowned by the low ones.
    """
    size = rec.volume.shape[0]
    n_shells = len(rec.fsc)
    grids = [np.fft.fftfreq(size)] * 2 + [np.fft.rfftfreq(size)]
    mesh = np.meshgrid(*grids, indexing="ij", sparse=True)
    shell3 = np.rint(np.sqrt(sum(g**2 for g in mesh)) * size).astype(np.int64)
    map_power = _radial_mean(np.abs(np.fft.rfftn(rec.volume)) ** 2, shell3, n_shells)
    signal = map_power * matcher.mean_ctf2(n_shells)
    noise = np.maximum(matcher.shell_power(n_shells) - signal, 0.0)
    fsc = np.clip(rec.fsc, 1e-3, _MAX_FSC)
    mismatch = noise + signal * ((1.0 - fsc) / fsc + _ORIENTATION_MISMATCH)
    weight = 1.0 / np.sqrt(np.maximum(mismatch, mismatch.max() * 1e-12))
    k_shell = np.minimum(np.rint(np.hypot(k_xy[:, 0], k_xy[:, 1]) * size).astype(int),
                         n_shells - 1)
    return weight[k_shell]


def _score_chunk(
    spectrum: Any, matcher: _Matcher, index: np.ndarray, keep: np.ndarray, k_xy: np.ndarray,
    candidates: np.ndarray, shifts: np.ndarray, weights: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Log-likelihood of every (shift, rotation) candidate of a chunk, and the best NCC.

    ``candidates`` is ``(b, K, 3, 3)``, ``shifts`` ``(b, T, 2)`` as ``(y, x)``; ``weights``
    ``(M,)`` are ``1 / sigma`` per frequency (the expected mismatch). With the image ``G``
    and the reference ``R = CTF x slice``, ``log L = sum_k 2 (Re(conj(G) R) - |R|^2 / 2) /
    sigma_k^2`` up to a constant (each half-plane coefficient stands for two).

    Returns
    -------
    log_likelihood : ndarray, shape (b, T, K), float64
    best_ncc : ndarray, shape (b,)
    """
    import torch

    b, k = candidates.shape[:2]
    refs = fr.extract_slices(spectrum, candidates.reshape(-1, 3, 3), k_xy)  # (b*K, M, 2)
    refs = refs.reshape(b, k, len(k_xy), 2) * torch.from_numpy(
        weights.astype(np.float32))[None, None, :, None]
    if matcher.ctf is not None:
        refs = refs * torch.from_numpy(matcher.ctf[index][:, keep].astype(np.float32))[
            :, None, :, None]
    refs = refs.permute(0, 1, 3, 2).reshape(b, k, -1).double()  # (re..., im...) as images
    g = matcher.spec[index][:, keep] * weights[None, :]  # (b, M)
    phase = 2 * np.pi * (shifts[..., 1:2] * k_xy[None, None, :, 0]
                         + shifts[..., 0:1] * k_xy[None, None, :, 1])  # (b, T, M)
    shifted = g[:, None, :] * np.exp(1j * phase)
    img = torch.from_numpy(np.concatenate([shifted.real, shifted.imag], axis=2))  # (b, T, 2M)
    cross = torch.bmm(img, refs.transpose(1, 2))  # (b, T, K)
    ref_power = (refs**2).sum(dim=2)  # (b, K)
    log_l = 2.0 * (cross - 0.5 * ref_power[:, None, :])
    ncc = cross / (img.norm(dim=2)[:, :, None] * ref_power.sqrt()[:, None, :]).clamp_min(1e-30)
    return log_l.numpy(), ncc.reshape(b, -1).max(dim=1).values.numpy()


def _posterior_mean(
    log_l: np.ndarray, candidates: np.ndarray, shifts: np.ndarray, soft: bool
) -> tuple[np.ndarray, np.ndarray]:
    """The posterior-mean rotation and shift of each image over its candidates (or the MAP).

    Rotations are averaged as quaternions (signs matched to the middle candidate, the current
    orientation), which for a local grid is the chordal mean.
    """
    from emkit.geometry import matrix_to_quaternion, quaternion_to_matrix

    b, t, k = log_l.shape
    rows = np.arange(b)
    if not soft:
        best = log_l.reshape(b, -1).argmax(axis=1)
        return candidates[rows, best % k], shifts[rows, best // k]
    p = np.exp(log_l - log_l.reshape(b, -1).max(axis=1)[:, None, None])
    p /= p.sum(axis=(1, 2), keepdims=True)
    q = matrix_to_quaternion(candidates)  # (b, K, 4)
    q *= np.sign(np.einsum("bki,bi->bk", q, q[:, k // 2]))[..., None]
    mean_q = np.einsum("bk,bki->bi", p.sum(axis=1), q)
    mean_shift = np.einsum("bt,bti->bi", p.sum(axis=2), shifts)
    return quaternion_to_matrix(mean_q), mean_shift


def _shift_grid(step_px: float, half_width: int) -> np.ndarray:
    ticks = np.arange(-half_width, half_width + 1) * step_px
    return np.stack(np.meshgrid(ticks, ticks, indexing="ij"), axis=-1).reshape(-1, 2)


def _match_all(
    rec: Reconstruction, matcher: _Matcher, rotations: np.ndarray, shifts_px: np.ndarray,
    radius: float, step_deg: float, shift_step_px: float, max_shift_px: float, soft: bool,
) -> tuple[np.ndarray, np.ndarray, float]:
    """One pass of local projection matching over every image.

    Each image is matched against the half-map it did not help make, so it is not drawn
    towards its own current orientation (gold-standard refinement); it moves to the
    posterior mean of its candidates (``soft``) or to the best one.
    """
    other = {True: fr.spectrum_tensor(fr.volume_spectrum(rec.half2, 2)),
             False: fr.spectrum_tensor(fr.volume_spectrum(rec.half1, 2))}
    keep, k_xy = matcher.disk(radius)
    weights = frequency_weights(rec, matcher, k_xy)
    local = local_rotation_grid(step_deg)
    offsets = _shift_grid(shift_step_px, 1)
    new_rot = rotations.copy()
    new_shift = shifts_px.copy()
    total = 0.0
    for half in (True, False):
        members = np.nonzero(rec.in_half1 == half)[0]
        for a in range(0, len(members), _IMAGES_PER_CHUNK):
            index = members[a:a + _IMAGES_PER_CHUNK]
            cand = np.einsum("kij,bjl->bkil", local, rotations[index])
            shifts = np.clip(shifts_px[index][:, None, :] + offsets[None], -max_shift_px,
                             max_shift_px)
            log_l, ncc = _score_chunk(other[half], matcher, index, keep, k_xy, cand, shifts,
                                      weights)
            new_rot[index], new_shift[index] = _posterior_mean(log_l, cand, shifts, soft)
            total += float(ncc.sum())
    return new_rot, new_shift, total / len(rotations)


def _matching_radius(rec: Reconstruction, previous: float) -> float:
    freq_px = 1.0 / rec.resolution_0143_A * rec.pixel_size_A if np.isfinite(
        rec.resolution_0143_A) else _MIN_RADIUS
    return float(np.clip(max(freq_px, previous), _MIN_RADIUS, _MAX_RADIUS))


def refine_orientations(
    images: np.ndarray,
    rotations: np.ndarray,
    *,
    pixel_size_A: float,
    shifts_px: np.ndarray | None = None,
    optics: Optics | None = None,
    iterations: int = 6,
    start_step_deg: float = 6.0,
    min_step_deg: float = 0.5,
    max_shift_px: float | None = None,
    seed: int = 0,
    soft: bool = True,
    progress: bool = False,
) -> RefinementResult:
    """Refine orientations and shifts by projection matching against their own map.

    Parameters
    ----------
    images : ndarray, shape (n, L, L)
        Particle images ``(n, y, x)``.
    rotations : ndarray, shape (n, 3, 3)
        Starting RELION matrices (e.g. from :func:`emkit.spa.recover_orientations` and
        :func:`emkit.spa.resolve_frame`).
    pixel_size_A : float
        Pixel size in Å (FSC resolutions).
    shifts_px : ndarray, shape (n, 2), optional
        Starting ``(y, x)`` origin offsets in pixels (default zeros).
    optics : Optics, optional
        CTF parameters (references are multiplied by each image's CTF).
    iterations : int
        Reconstruct-and-match rounds (0: only reconstruct).
    start_step_deg, min_step_deg : float
        Rotation grid step of the first round; it halves each round down to the minimum.
    max_shift_px : float, optional
        Largest shift allowed (default ``L / 8``).
    seed : int
        Seed of the half-map split.
    soft : bool
        Move each image to the posterior mean of its candidates (Gaussian likelihood with
        the per-shell noise of :func:`frequency_weights`; default), not to the best one: in
        noise, the best of many candidates is often a noise peak.
    progress : bool
        Log one line per round at INFO level and print it.

    Returns
    -------
    RefinementResult
    """
    images = np.asarray(images, dtype=np.float64)
    if isinstance(iterations, bool) or int(iterations) != iterations or iterations < 0:
        raise InputError(f"iterations must be an integer >= 0, got {iterations!r}")
    n, size, _ = images.shape
    rot = np.asarray(rotations, dtype=np.float64).copy()
    shifts = np.zeros((n, 2)) if shifts_px is None else np.asarray(shifts_px, float).copy()
    limit = size / 8 if max_shift_px is None else float(max_shift_px)
    matcher = _Matcher(images, optics)
    history: list[dict[str, float]] = []
    radius = _MIN_RADIUS
    for it in range(int(iterations)):
        rec = reconstruct_half_maps(images, rot, pixel_size_A=pixel_size_A, shifts_px=shifts,
                                    optics=optics, seed=seed)
        radius = _matching_radius(rec, radius)
        step = max(min_step_deg, start_step_deg / 2**it)
        shift_step = max(0.25, 1.0 / 2 ** max(0, it - 1))
        rot, shifts, mean_score = _match_all(rec, matcher, rot, shifts, radius, step,
                                             shift_step, limit, soft)
        entry = {"iteration": it + 1, "radius": round(radius, 4), "step_deg": step,
                 "shift_step_px": shift_step,
                 "resolution_0143_A": round(rec.resolution_0143_A, 3),
                 "mean_score": round(mean_score, 5)}
        history.append(entry)
        logger.info("refine %s", entry)
        if progress:
            print(f"   refine {it + 1}/{iterations}: matched to {1 / radius:.1f} px, "
                  f"step {step:g} deg, map FSC0.143 {rec.resolution_0143_A:.1f} A", flush=True)
    final = reconstruct_half_maps(images, rot, pixel_size_A=pixel_size_A, shifts_px=shifts,
                                  optics=optics, seed=seed)
    return RefinementResult(rotations=rot, shifts_px=shifts, reconstruction=final,
                            history=history)
