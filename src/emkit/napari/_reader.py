"""The napari reader: emkit's files to napari layer-data tuples (see the package docstring).

:func:`get_reader` is the npe2 ``reader`` command: given a path (or a list of paths) it
returns a function that reads them, or None when emkit does not read that kind of file,
so napari asks its other readers. Every file is read with emkit's own readers
(:mod:`emkit.io`, :func:`emkit.pick.read_particle_list`), so voxel sizes, origins and the
``(z, y, x)`` order are what every emkit command sees.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

PathLike = str | os.PathLike[str]
LayerData = tuple[Any, dict[str, Any], str]

VOLUME_SUFFIXES = (".mrc", ".mrcs", ".map", ".rec", ".st", ".ali")
MESH_SUFFIXES = (".ply", ".obj", ".stl", ".glb")
# emkit's particle tables: <stem>_particles.tsv (detect, match) and particles.tsv (sim).
PARTICLE_TSV_ENDING = "particles.tsv"

# Colours of classes 1, 2, ... (RGBA, cycled), the tab10 palette.
CLASS_COLOURS = np.array(
    [
        [0.122, 0.467, 0.706, 1.0],
        [1.000, 0.498, 0.055, 1.0],
        [0.173, 0.627, 0.173, 1.0],
        [0.839, 0.153, 0.157, 1.0],
        [0.580, 0.404, 0.741, 1.0],
        [0.549, 0.337, 0.294, 1.0],
        [0.890, 0.467, 0.761, 1.0],
        [0.498, 0.498, 0.498, 1.0],
        [0.737, 0.741, 0.133, 1.0],
        [0.090, 0.745, 0.812, 1.0],
    ]
)

UNITS = "angstrom"
"""napari's world unit for every layer this reader makes (image scale, mesh vertices)."""


def _kind(path: PathLike) -> str | None:
    """``volume``, ``points``, ``mesh``, ``zarr`` or None, from the name alone."""
    name = os.fspath(path).rstrip("/\\").lower()
    if name.endswith(".zarr"):
        return "zarr"
    if name.endswith(PARTICLE_TSV_ENDING) or name.endswith(".star"):
        return "points"
    if name.endswith(MESH_SUFFIXES):
        return "mesh"
    if name.endswith(VOLUME_SUFFIXES):
        return "volume"
    return None


def get_reader(path: PathLike | Sequence[PathLike]) -> Callable[..., list[LayerData]] | None:
    """The npe2 reader command: a function reading ``path`` (one path or a list), or None.

    Only the name is looked at here (napari calls this for every file it is asked to open);
    the file is read when napari calls the returned function.
    """
    paths = [path] if isinstance(path, str | os.PathLike) else list(path)
    if not paths or any(_kind(p) is None for p in paths):
        return None
    return read_layers


def read_layers(path: PathLike | Sequence[PathLike]) -> list[LayerData]:
    """Layer-data tuples ``(data, kwargs, layer_type)`` for each path (see the package docs).

    Raises
    ------
    emkit.errors.EmkitError
        A file emkit cannot read, with the one-line reason (napari shows it).
    """
    paths = [path] if isinstance(path, str | os.PathLike) else list(path)
    layers: list[LayerData] = []
    for p in paths:
        kind = _kind(p)
        if kind == "volume":
            layers.append(read_volume_layer(p))
        elif kind == "points":
            layers.append(read_points_layer(p))
        elif kind == "mesh":
            layers.append(read_surface_layer(p))
        elif kind == "zarr":
            layers.append(read_zarr_layer(p))
    return layers


def _name(path: PathLike) -> str:
    name = Path(os.fspath(path).rstrip("/\\")).name
    for ending in (".ome.zarr", *VOLUME_SUFFIXES, ".zarr", ".star", ".tsv", *MESH_SUFFIXES):
        if name.lower().endswith(ending):
            return name[: -len(ending)] or name
    return name


def _spatial(values: Sequence[float] | None, ndim: int, fill: float) -> list[float]:
    """A per-axis list of ``ndim`` values from a ``(z, y, x)`` triple (2D: ``(y, x)``)."""
    triple = [fill] * 3 if values is None else [float(v) for v in values]
    return ([fill] * max(0, ndim - 3) + triple)[-ndim:] if ndim else []


def read_volume_layer(path: PathLike) -> LayerData:
    """An MRC/MRCS volume or stack as an image: ``scale`` = voxel size (Å), ``translate`` =
    origin (Å); memory-mapped where the file allows it."""
    from emkit.io import read_volume

    vol = read_volume(path, mmap=True)
    ndim = vol.data.ndim
    kwargs: dict[str, Any] = {
        "name": _name(path),
        "scale": _spatial(vol.voxel_size, ndim, 1.0),
        "translate": _spatial(vol.origin, ndim, 0.0),
        "metadata": {
            "path": str(path),
            "units": UNITS if vol.voxel_size else "voxels",
            "voxel_size_A": vol.voxel_size,
        },
    }
    return vol.data, kwargs, "image"


def _class_colours(classes: np.ndarray) -> np.ndarray:
    index = (np.asarray(classes, np.int64) - 1) % len(CLASS_COLOURS)
    return CLASS_COLOURS[index]


def star_pixel_size(path: PathLike) -> float | None:
    """The pixel size (Å) a STAR file's pixel-size column states, or None."""
    from emkit.errors import EmkitError
    from emkit.io import read_star

    try:
        blocks = read_star(path)
    except EmkitError:
        return None
    for block in blocks.values():
        if not hasattr(block, "columns") or not len(block):
            continue
        for column in ("rlnTomoTiltSeriesPixelSize", "rlnImagePixelSize", "rlnPixelSize"):
            if column in block.columns:
                try:
                    value = float(block[column].iloc[0])
                except (TypeError, ValueError):
                    continue
                if np.isfinite(value) and value > 0:
                    return value
    return None


def read_points_layer(path: PathLike) -> LayerData:
    """A particle list as points ``(z, y, x)`` in voxels, coloured by class; ``scale`` is
    the voxel size in Å when the file states it (so the points sit on the tomogram)."""
    from emkit.pick import read_particle_list

    particles = read_particle_list(path)
    zyx = np.asarray(particles.zyx, np.float64).reshape(-1, 3)
    classes = np.asarray(particles.classes, np.int64)
    voxel = particles.voxel_size_A  # the ratio of the file's Å and voxel columns
    if voxel is None and os.fspath(path).lower().endswith(".star"):
        voxel = star_pixel_size(path)
    kwargs: dict[str, Any] = {
        "name": _name(path),
        "features": {"class": classes, "score": np.asarray(particles.scores, np.float64)},
        "face_color": _class_colours(classes) if len(classes) else "white",
        "size": 10.0,
        "scale": [voxel or 1.0] * 3,
        "metadata": {
            "path": str(path),
            "units": UNITS if voxel else "voxels",
            "voxel_size_A": voxel,
        },
    }
    return zyx, kwargs, "points"


def read_surface_layer(path: PathLike) -> LayerData:
    """A mesh as a surface: vertices ``(z, y, x)`` in Å (as the file holds them), faces."""
    from emkit.io import read_mesh

    vertices, faces = read_mesh(path)
    kwargs = {"name": _name(path), "metadata": {"path": str(path), "units": UNITS}}
    return (np.asarray(vertices, np.float32), np.asarray(faces, np.int64)), kwargs, "surface"


def read_zarr_layer(path: PathLike) -> LayerData:
    """An OME-Zarr pyramid as a multiscale image (every level, lazily; ``scale`` and
    ``translate`` of level 0 from the NGFF metadata, in Å), or a plain Zarr array."""
    from emkit.errors import FileFormatError
    from emkit.io import open_zarr_array
    from emkit.io._zarr import zarr_metadata

    meta = zarr_metadata(path, 0)
    levels = [open_zarr_array(path, 0)]
    if meta.get("ome"):
        level = 1
        while True:
            try:
                levels.append(open_zarr_array(path, level))
            except FileFormatError as error:
                if "does not exist" in str(error):  # past the last level
                    break
                raise
            level += 1
    ndim = len(levels[0].shape)
    vs = meta.get("voxel_size")
    kwargs: dict[str, Any] = {
        "name": _name(path),
        "scale": _spatial(vs, ndim, 1.0),
        "translate": _spatial(meta.get("origin"), ndim, 0.0),
        "metadata": {
            "path": str(path),
            "units": UNITS if vs else "voxels",
            "voxel_size_A": vs,
            "levels": len(levels),
        },
    }
    if len(levels) > 1:
        kwargs["multiscale"] = True
        return levels, kwargs, "image"
    return levels[0], kwargs, "image"
