"""Triangle meshes (PLY, OBJ, STL, GLB) through trimesh.

Mesh files hold vertex positions as ``x, y, z`` in Å (what ChimeraX, napari, Blender and
Paraview expect). emkit code works in ``(z, y, x)``: :func:`write_mesh` takes vertices in
``(z, y, x)`` voxels (as ``skimage.measure.marching_cubes`` returns them for a ``(z, y, x)``
volume) or Å, and :func:`read_mesh` gives them back the same way. Faces are written and read
unchanged: the winding that ``marching_cubes`` gives is outward (counter-clockwise seen from
outside) once the vertices are in ``x, y, z`` order, as in the file.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from emkit.errors import FileFormatError, NonFiniteError, ShapeError, with_path
from emkit.io._atomic import atomic_output
from emkit.io._paths import PathLike, require_readable_file, require_suffix, require_text_file
from emkit.io._quiet import python_warnings_to_log

logger = logging.getLogger(__name__)

MESH_SUFFIXES = (".ply", ".obj", ".stl", ".glb")


def _scale_origin(
    voxel_size: float | tuple[float, float, float] | None, origin: Any
) -> tuple[np.ndarray, np.ndarray]:
    scale = (
        np.ones(3)
        if voxel_size is None
        else np.broadcast_to(np.asarray(voxel_size, dtype=np.float64), (3,)).copy()
    )
    offset = np.broadcast_to(np.asarray(origin, dtype=np.float64), (3,)).copy()
    return scale, offset


def write_mesh(
    path: PathLike,
    vertices_zyx: Any,
    faces: Any,
    *,
    voxel_size: float | tuple[float, float, float] | None = None,
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0),
    vertex_colors: Any | None = None,
) -> Path:
    """Write a triangle mesh atomically; the format follows the suffix (.ply/.obj/.stl/.glb).

    Parameters
    ----------
    vertices_zyx : array, shape (n, 3)
        Vertex positions in ``(z, y, x)`` order: in voxels when ``voxel_size`` is given
        (converted to Å as ``origin + v * voxel_size``), otherwise already in Å.
    faces : int array, shape (m, 3)
        Vertex indices of each triangle, written unchanged (see the module docstring).
    voxel_size : float or (z, y, x) floats in Å, optional
    origin : (z, y, x) in Å
        Position of voxel 0 (used with ``voxel_size``; see :class:`emkit.io.Volume`).
    vertex_colors : uint8 array, shape (n, 3) or (n, 4), optional
        Per-vertex RGB(A) (PLY, GLB, OBJ; STL has none).

    Returns
    -------
    Path
    """
    import trimesh

    out = Path(path)
    suffix = require_suffix(out, MESH_SUFFIXES, "mesh")
    verts = np.asarray(vertices_zyx, dtype=np.float64)
    tri = np.asarray(faces)
    if verts.ndim != 2 or verts.shape[1] != 3:
        raise ShapeError(with_path(out, f"vertices must have shape (n, 3), got {verts.shape}"))
    if tri.ndim != 2 or tri.shape[1] != 3 or not np.issubdtype(tri.dtype, np.integer):
        raise ShapeError(with_path(out, f"faces must be integers of shape (m, 3), got {tri.shape}"))
    if tri.size and (tri.min() < 0 or tri.max() >= len(verts)):
        raise ShapeError(with_path(out, "faces refer to vertices that do not exist"))
    if not np.all(np.isfinite(verts)):
        raise NonFiniteError(with_path(out, "vertices contain NaN or infinite values"))
    scale, offset = _scale_origin(voxel_size, origin)
    if voxel_size is not None:
        verts = offset + verts * scale
    mesh = trimesh.Trimesh(
        vertices=verts[:, ::-1], faces=tri, vertex_colors=vertex_colors, process=False
    )
    with atomic_output(out) as tmp:
        mesh.export(tmp, file_type=suffix.lstrip("."))
    return out


def read_mesh(
    path: PathLike,
    *,
    voxel_size: float | tuple[float, float, float] | None = None,
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0),
) -> tuple[np.ndarray, np.ndarray]:
    """Read a triangle mesh (.ply/.obj/.stl/.glb); a multi-part scene is merged into one.

    Parameters
    ----------
    voxel_size, origin : optional
        When given, vertices are returned in voxels, ``(v_A - origin) / voxel_size``.

    Returns
    -------
    vertices_zyx : ndarray, float64, shape (n, 3)
        ``(z, y, x)`` in Å (or voxels). STL stores each triangle's corners separately, so
        an STL gives 3 vertices per face.
    faces : ndarray, int64, shape (m, 3)
        Vertex indices per triangle, as in the file.
    """
    import trimesh

    suffix = require_suffix(path, MESH_SUFFIXES, "mesh")
    # OBJ is text only: say so, rather than quote trimesh's guess at a binary's encoding.
    p = require_text_file(path, "OBJ mesh") if suffix == ".obj" else require_readable_file(path)
    try:
        with python_warnings_to_log(logger):
            mesh = trimesh.load(p, force="mesh", process=False)
    except Exception as error:  # trimesh raises many types for a malformed file
        raise FileFormatError(
            with_path(p, f"is not a readable mesh ({type(error).__name__}: {error})")
        ) from None
    verts = np.asarray(getattr(mesh, "vertices", np.zeros((0, 3))), dtype=np.float64)
    faces = np.asarray(getattr(mesh, "faces", np.zeros((0, 3))), dtype=np.int64)
    if verts.ndim != 2 or verts.shape[1] != 3 or len(verts) == 0:
        raise FileFormatError(with_path(p, "holds no triangle mesh vertices"))
    zyx = verts[:, ::-1].copy()
    if voxel_size is not None:
        scale, offset = _scale_origin(voxel_size, origin)
        zyx = (zyx - offset) / scale
    return zyx, faces.reshape(-1, 3)
