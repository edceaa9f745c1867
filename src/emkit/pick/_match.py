"""Baselines: template matching and a Gaussian-smoothing + local-maximum picker.

Template matching is the fast local correlation of Roseman (2003) over a sampling of SO(3):
for each rotation the template is turned in its own box, multiplied by the missing wedge
of the tomogram (a single tilt axis along y covering ``tilt_range_deg``: Fourier
components with ``|kz| > |kx| tan(max tilt)`` are absent), normalised to zero mean and unit
variance inside a spherical mask, and cross-correlated with the tomogram by FFT; dividing
by the tomogram's local standard deviation under the mask gives a normalised
cross-correlation in [-1, 1] at every voxel. The best score over rotations (and templates,
one per class) is kept, with the class and rotation that gave it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import fft as sfft
from scipy import ndimage

from emkit.errors import InputError, ShapeError

__all__ = ["TemplateMatch", "match_templates", "find_peaks", "pick_blobs", "wedge_mask"]


@dataclass
class TemplateMatch:
    """Score maps of :func:`match_templates`, each ``(z, y, x)``.

    Attributes
    ----------
    score : float32 array
        Best normalised cross-correlation over rotations and templates.
    class_map : uint8 array
        1-based template (class) that gave the best score.
    rotation_index : int32 array
        Index into ``rotations`` of the best rotation.
    rotations : (n, 3, 3) array
        The rotations searched (RELION convention, on ``(x, y, z)``).
    radii_px : list of float
        Mask radius of each template (voxels).
    """

    score: np.ndarray
    class_map: np.ndarray
    rotation_index: np.ndarray
    rotations: np.ndarray
    radii_px: list[float]


def wedge_mask(shape: Sequence[int], tilt_range_deg: tuple[float, float]) -> np.ndarray:
    """1 where a tilt series over ``tilt_range_deg`` (axis y) measured the Fourier
    component, on the ``rfftn`` grid of ``shape`` ``(z, y, x)`` (last axis halved)."""
    kz = sfft.fftfreq(int(shape[0]))[:, None, None]
    kx = sfft.rfftfreq(int(shape[2]))[None, None, :]
    top = math.tan(math.radians(min(89.9, max(abs(tilt_range_deg[0]),
                                              abs(tilt_range_deg[1])))))
    mask = (np.abs(kz) <= np.abs(kx) * top + 1e-9).astype(np.float32)
    return np.broadcast_to(mask, (int(shape[0]), int(shape[1]), int(shape[2]) // 2 + 1))


def _sphere(size: int, radius: float) -> np.ndarray:
    c = size // 2
    grid = np.ogrid[:size, :size, :size]
    return (sum((g - c) ** 2 for g in grid) <= radius**2).astype(np.float32)


def _prepared_template(
    template: np.ndarray, rotation: np.ndarray, mask: np.ndarray, wedge: np.ndarray
) -> np.ndarray:
    """Rotate about the box centre, apply the wedge, zero mean and unit norm in the mask."""
    from emkit.geometry import matrix_xyz_to_zyx

    R = matrix_xyz_to_zyx(rotation)
    c = np.array(template.shape) // 2
    turned = ndimage.affine_transform(template, R.T, offset=c - R.T @ c, order=1)
    filtered = sfft.irfftn(sfft.rfftn(turned) * wedge, s=turned.shape).astype(np.float32)
    inside = mask > 0
    values = filtered[inside]
    out = np.zeros_like(filtered)
    out[inside] = (values - values.mean()) / (values.std() * math.sqrt(inside.sum()) + 1e-12)
    return out


def _local_std(spectrum_v: np.ndarray, spectrum_v2: np.ndarray, mask: np.ndarray,
               shape: tuple[int, ...]) -> np.ndarray:
    """Standard deviation of the tomogram under the mask centred at every voxel."""
    padded = _pad_to(mask, shape)
    fm = np.conj(sfft.rfftn(padded))
    n = float(mask.sum())
    mean = sfft.irfftn(spectrum_v * fm, s=shape) / n
    mean2 = sfft.irfftn(spectrum_v2 * fm, s=shape) / n
    return np.sqrt(np.maximum(mean2 - mean**2, 1e-12)).astype(np.float32)


def _pad_to(box: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Put ``box`` with its centre voxel at the origin of an array of ``shape`` (wrapped)."""
    out = np.zeros(shape, np.float32)
    c = np.array(box.shape) // 2
    idx = [(np.arange(s) - cc) % n for s, cc, n in zip(box.shape, c, shape)]
    out[np.ix_(*idx)] = box
    return out


def match_templates(
    tomogram: np.ndarray,
    templates: Sequence[np.ndarray],
    *,
    n_rotations: int = 120,
    tilt_range_deg: tuple[float, float] | None = (-60.0, 60.0),
    dark_protein: bool = True,
    mask_radii_px: Sequence[float] | None = None,
    progress: bool = False,
) -> TemplateMatch:
    """Template matching (normalised, missing-wedge-aware) of every template at every voxel.

    Parameters
    ----------
    tomogram : ndarray, (z, y, x)
    templates : sequence of ndarray
        Density maps (protein positive) at the tomogram's voxel size, centred on voxel
        ``box // 2``; template ``k`` is class ``k + 1``.
    n_rotations : int
        Size of the SO(3) grid (:func:`emkit.geometry.so3_grid`); about ``8 pi^2 / step^3``
        for an angular step in radians (120: about 40 degrees).
    tilt_range_deg : (float, float) or None
        The tomogram's tilt range (None: no wedge).
    dark_protein : bool
        The tomogram shows protein dark (cryo-ET convention); the templates are negated.
    mask_radii_px : sequence of float, optional
        Mask radius per template (default: where the template exceeds 2 % of its peak).
    progress : bool
        A progress bar over rotations.

    Returns
    -------
    TemplateMatch
    """
    from emkit.geometry import so3_grid
    from emkit.sim._placement import _template_radius

    vol = np.asarray(tomogram, np.float32)
    if vol.ndim != 3:
        raise ShapeError(f"template matching needs a volume (z, y, x), got shape {vol.shape}")
    if not templates:
        raise InputError("give at least one template")
    shape = vol.shape
    vol = vol - vol.mean()
    spec_v = sfft.rfftn(vol, workers=-1)
    spec_v2 = sfft.rfftn(vol * vol, workers=-1)
    rotations = so3_grid(int(n_rotations))
    score = np.full(shape, -np.inf, np.float32)
    class_map = np.zeros(shape, np.uint8)
    rot_index = np.zeros(shape, np.int32)
    radii = []
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(templates) * len(rotations), desc="match", unit="rot")
    for k, template in enumerate(templates):
        t = np.asarray(template, np.float32) * (-1 if dark_protein else 1)
        size = max(t.shape) + (max(t.shape) + 1) % 2
        box = np.zeros((size,) * 3, np.float32)
        box[tuple(slice(size // 2 - s // 2, size // 2 - s // 2 + s) for s in t.shape)] = t
        if max(box.shape) > min(shape):
            raise ShapeError(f"template {k + 1} ({box.shape[0]} voxels) is larger than the "
                             f"tomogram {shape}")
        radius = (mask_radii_px[k] if mask_radii_px is not None
                  else _template_radius(np.abs(box)))
        radii.append(float(radius))
        mask = _sphere(size, radius)
        wedge = (np.ones((size, size, size // 2 + 1), np.float32) if tilt_range_deg is None
                 else np.ascontiguousarray(wedge_mask(box.shape, tilt_range_deg)))
        sigma = _local_std(spec_v, spec_v2, mask, shape)
        for i, rotation in enumerate(rotations):
            prepared = _prepared_template(box, rotation, mask, wedge)
            spec_t = np.conj(sfft.rfftn(_pad_to(prepared, shape), workers=-1))
            cc = sfft.irfftn(spec_v * spec_t, s=shape, workers=-1).astype(np.float32)
            cc /= sigma * np.float32(math.sqrt(mask.sum()))
            better = cc > score
            score[better] = cc[better]
            class_map[better] = k + 1
            rot_index[better] = i
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    return TemplateMatch(score, class_map, rot_index, rotations, radii)


def find_peaks(
    score: np.ndarray, *, min_distance_px: float, threshold: float,
    exclude_border_px: int = 0,
) -> np.ndarray:
    """Local maxima of ``score`` above ``threshold``, at least ``min_distance_px`` apart.

    Returns ``(n, 3)`` integer voxel coordinates ``(z, y, x)``, highest score first; of two
    maxima closer than the distance, the higher is kept.
    """
    from scipy.spatial import cKDTree

    size = max(3, 2 * int(min_distance_px) + 1)
    local = ndimage.maximum_filter(score, size=size, mode="nearest")
    peaks = np.argwhere((score >= local) & (score > threshold))
    if exclude_border_px > 0 and len(peaks):
        b = exclude_border_px
        keep = np.all((peaks >= b) & (peaks < np.array(score.shape) - b), axis=1)
        peaks = peaks[keep]
    order = np.argsort(-score[tuple(peaks.T)], kind="stable")
    peaks = peaks[order]
    if len(peaks) < 2:
        return peaks
    tree = cKDTree(peaks)
    kept = np.ones(len(peaks), bool)
    for i in range(len(peaks)):
        if kept[i]:
            for j in tree.query_ball_point(peaks[i], r=min_distance_px - 1e-9):
                if j > i:
                    kept[j] = False
    return peaks[kept]


def pick_blobs(
    tomogram: np.ndarray, *, sigma_px: float, threshold: float, min_distance_px: float,
    dark_protein: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """The simplest picker: Gaussian smoothing (minus a wider background), local maxima.

    Returns ``(zyx, score)``: peak voxels and their band-passed, standardised values.
    """
    vol = np.asarray(tomogram, np.float32) * (-1 if dark_protein else 1)
    band = ndimage.gaussian_filter(vol, sigma_px) - ndimage.gaussian_filter(vol, 3 * sigma_px)
    band = (band - band.mean()) / (band.std() + 1e-12)
    peaks = find_peaks(band, min_distance_px=min_distance_px, threshold=threshold)
    return peaks.astype(np.float64), band[tuple(peaks.T)] if len(peaks) else np.zeros(0)
