"""File-level entry points of the pick workflow (what the CLI calls)."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from emkit.errors import InputError, ShapeError, with_path
from emkit.pick._evaluate import PickScores, evaluate_picks
from emkit.pick._labels import particle_label_maps, radii_for_classes
from emkit.pick._particles import read_particle_list

__all__ = ["evaluate_particle_files", "labels_from_particle_file", "read_tomogram"]

PathLike = str | os.PathLike[str]


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
    particles: PathLike, like: PathLike, *, radius_A: Sequence[float],
) -> tuple[np.ndarray, np.ndarray, float]:
    """Instance and class maps on the grid of the tomogram ``like`` (balls of the radii).

    Returns ``(instances int32, class_map uint8, voxel_size_A)``.
    """
    data, voxel = read_tomogram(like, mmap=True)
    if voxel is None:
        raise InputError(with_path(like, "has no voxel size in its header; cannot turn "
                                   "--radius-A into voxels"))
    found = read_particle_list(particles, shape_zyx=data.shape, voxel_size_A=voxel)
    table = radii_for_classes(found.classes, radius_A)
    instances, classes = particle_label_maps(data.shape, found.zyx, found.classes,
                                             {k: r / voxel for k, r in table.items()})
    return instances, classes, voxel
