"""File-level entry points of the pick workflow (what the CLI calls)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from emkit.errors import InputError, ShapeError, with_path
from emkit.pick._evaluate import PickScores, evaluate_picks
from emkit.pick._labels import particle_label_maps, radii_for_classes
from emkit.pick._particles import ParticleList, read_particle_list

__all__ = [
    "PickResult",
    "evaluate_particle_files",
    "labels_from_particle_file",
    "load_templates",
    "read_tomogram",
    "run_template_matching",
]

PathLike = str | os.PathLike[str]


@dataclass
class PickResult:
    """What a picker found in one tomogram.

    Attributes
    ----------
    particles : ParticleList
        Centres (voxels), classes (1-based) and scores.
    instances : ndarray, (z, y, x), int32
        Instance labels (0 background, ``i + 1`` for particle ``i``).
    score_map : ndarray, (z, y, x), float32
        The map the picks were taken from (correlation or centre-network output).
    rotations : ndarray, (n, 3, 3), or None
        Best rotation per particle (template matching).
    voxel_size_A : float
    class_names : list of str
    info : dict
        Parameters and numbers for the run record.
    """

    particles: ParticleList
    instances: np.ndarray
    score_map: np.ndarray
    rotations: np.ndarray | None
    voxel_size_A: float
    class_names: list[str]
    info: dict[str, Any] = field(default_factory=dict)


def read_tomogram(path: PathLike, *, mmap: bool = False) -> tuple[np.ndarray, float | None]:
    """A 3D tomogram ``(z, y, x)`` and its voxel size in Å (None if the header has none).

    Raises
    ------
    ShapeError
        A 2D image or an image stack that is not a volume.
    """
    from emkit.io import read_volume, require_finite

    volume = read_volume(path, mmap=mmap)
    if volume.data.ndim != 3 or min(volume.data.shape) < 2:
        raise ShapeError(with_path(path, f"is a {volume.data.ndim}D array of shape "
                                   f"{volume.data.shape}; a tomogram is a volume (z, y, x)"))
    if not mmap:
        require_finite(volume.data, path, "tomogram")
    voxel = volume.pixel_size
    return volume.data, (float(voxel) if voxel is not None and voxel > 0 else None)


def evaluate_particle_files(
    predicted: PathLike, truth: PathLike, *, radius_A: Sequence[float],
    voxel_size_A: float | None = None, fraction: float = 0.5, ignore_classes: bool = False,
) -> PickScores:
    """Read two particle lists and score the first against the second.

    The voxel size (to turn ``radius_A`` into voxels) is ``voxel_size_A`` or the one either
    file implies (this workflow's TSV, a STAR file with both coordinate kinds).
    """
    pred = read_particle_list(predicted)
    true = read_particle_list(truth)
    voxel = voxel_size_A or pred.voxel_size_A or true.voxel_size_A
    if voxel is None:
        raise InputError(f"{predicted}, {truth}: neither list says the voxel size; give "
                         "--pixel-size (Å) to turn --radius-A into voxels")
    table = radii_for_classes(np.concatenate([true.classes, pred.classes]), radius_A)
    radius_px = {k: r / voxel for k, r in table.items()}
    return evaluate_picks(pred.zyx, pred.classes, true.zyx, true.classes, radius_px,
                          fraction=fraction, ignore_classes=ignore_classes)


def labels_from_particle_file(
    particles: PathLike, like: PathLike, *, radius_A: Sequence[float] | None = None,
    templates: Sequence[str | os.PathLike[str]] | None = None, level: float = 0.1,
) -> tuple[np.ndarray, np.ndarray, float]:
    """Instance and class maps on the grid of the tomogram ``like``: balls of the radii, or
    each class's template (built-in name or map) turned by the particle's RELION angles
    (identity when the list has none) above ``level`` of its peak.

    Returns ``(instances int32, class_map uint8, voxel_size_A)``.
    """
    from emkit.pick._labels import template_label_maps

    data, voxel = read_tomogram(like, mmap=True)
    if voxel is None:
        raise InputError(with_path(like, "has no voxel size in its header; cannot put "
                                   "particle sizes in voxels"))
    found = read_particle_list(particles, shape_zyx=data.shape, voxel_size_A=voxel)
    if templates is not None:
        from emkit.geometry import euler_zyz_to_matrix

        arrays, _ = load_templates(templates, voxel)
        rotations = None if found.euler_deg is None else euler_zyz_to_matrix(found.euler_deg)
        instances, classes = template_label_maps(
            data.shape, found.zyx, found.classes, {k + 1: a for k, a in enumerate(arrays)},
            rotations, level=level)
        return instances, classes, voxel
    if radius_A is None:
        raise InputError("give --radius-A or --template")
    table = radii_for_classes(found.classes, radius_A)
    instances, classes = particle_label_maps(data.shape, found.zyx, found.classes,
                                             {k: r / voxel for k, r in table.items()})
    return instances, classes, voxel


def load_templates(
    templates: Sequence[str | os.PathLike[str]], voxel_size_A: float
) -> tuple[list[np.ndarray], list[str]]:
    """Templates for matching: built-in names or density maps (MRC...), at ``voxel_size_A``.

    A map is resampled from its header's voxel size (refused when it has none), cropped
    about its centre voxel to where it exceeds 2 % of its peak.
    """
    from pathlib import Path

    from emkit.io import read_volume
    from emkit.sim import density_template, list_density_templates
    from emkit.sim.templates import _resample_centred
    from emkit.sim.tiltseries import _crop_template

    builtin = {r["name"] for r in list_density_templates()}
    arrays, names = [], []
    for t in templates:
        path = Path(t)
        if not path.exists() and str(t).lower() in builtin:
            data = density_template(str(t), voxel_size_A=voxel_size_A).data
            names.append(str(t).lower())
        else:
            volume = read_volume(path)
            if volume.data.ndim != 3:
                raise ShapeError(with_path(path, f"is {volume.data.ndim}D; a template is a "
                                           "3D density map"))
            if volume.pixel_size is None or volume.pixel_size <= 0:
                raise InputError(with_path(path, "has no voxel size in its header; the "
                                           "template must be resampled to the tomogram's"))
            data = np.asarray(volume.data, np.float32)
            if abs(volume.pixel_size - voxel_size_A) > 1e-3 * voxel_size_A:
                data = _resample_centred(data, volume.pixel_size, voxel_size_A)
            names.append(path.stem)
        arrays.append(_crop_template(np.maximum(np.asarray(data, np.float32), 0)))
    return arrays, names


def run_template_matching(
    tomogram_path: PathLike, templates: Sequence[str | os.PathLike[str]], *,
    n_rotations: int = 120, tilt_range_deg: float | None = 60.0,
    threshold: float | None = None, dark_protein: bool = True,
    voxel_size_A: float | None = None, progress: bool = False,
) -> PickResult:
    """Template matching on a tomogram file: picks (with classes and scores), instance
    labels (balls of each template's radius), the score map and what was used.

    ``threshold`` None: the score map's mean plus 4 standard deviations.
    """
    from emkit.pick._match import find_peaks, match_templates

    data, voxel = read_tomogram(tomogram_path)
    voxel = voxel_size_A or voxel
    if voxel is None:
        raise InputError(with_path(tomogram_path, "has no voxel size in its header; give "
                                   "--pixel-size"))
    arrays, names = load_templates(templates, voxel)
    tilt = None if tilt_range_deg is None else (-tilt_range_deg, tilt_range_deg)
    match = match_templates(data, arrays, n_rotations=n_rotations, tilt_range_deg=tilt,
                            dark_protein=dark_protein, progress=progress)
    score = match.score
    thr = float(score.mean() + 4 * score.std()) if threshold is None else float(threshold)
    peaks = find_peaks(score, min_distance_px=min(match.radii_px), threshold=thr)
    index = tuple(peaks.T)
    particles = ParticleList(peaks.astype(np.float64), match.class_map[index].astype(np.int64),
                             score[index].astype(np.float64), voxel)
    rotations = match.rotations[match.rotation_index[index]] if len(peaks) else None
    instances, _ = particle_label_maps(data.shape, particles.zyx, particles.classes,
                                       {k + 1: r for k, r in enumerate(match.radii_px)})
    return PickResult(particles, instances, score, rotations, voxel, names,
                      {"threshold": thr, "n_rotations": len(match.rotations),
                       "radii_A": [round(r * voxel, 2) for r in match.radii_px],
                       "templates": names})
