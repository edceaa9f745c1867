"""Meshes: x, y, z Å in the file, (z, y, x) voxels or Å in emkit, outward normals kept."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import trimesh
from skimage.measure import marching_cubes

from emkit.errors import FileFormatError, MissingFileError, ShapeError
from emkit.io import read_mesh, write_mesh

VOXEL = (2.0, 3.0, 4.0)
ORIGIN = (1.0, 2.0, 3.0)


def _ellipsoid_mesh() -> tuple[np.ndarray, np.ndarray]:
    z, y, x = np.mgrid[:20, :24, :28]
    vol = ((z - 10) ** 2 / 36 + (y - 12) ** 2 / 49 + (x - 14) ** 2 / 64 < 1).astype(np.float32)
    verts, faces, _, _ = marching_cubes(vol, 0.5)
    return verts, faces


@pytest.mark.parametrize("suffix", [".ply", ".obj", ".stl", ".glb"])
def test_mesh_round_trip_in_voxels_and_file_in_xyz_angstrom(tmp_path: Path, suffix: str) -> None:
    verts, faces = _ellipsoid_mesh()
    path = write_mesh(tmp_path / f"m{suffix}", verts, faces, voxel_size=VOXEL, origin=ORIGIN)
    back_v, back_f = read_mesh(path, voxel_size=VOXEL, origin=ORIGIN)
    # Same triangles (STL repeats corners per face, so compare triangle coordinates).
    np.testing.assert_allclose(back_v[back_f], verts[faces], atol=1e-4)
    if suffix != ".stl":
        assert len(back_v) == len(verts) and len(back_f) == len(faces)
    mesh = trimesh.load(path, force="mesh")
    expected_xyz_max = np.asarray(ORIGIN)[::-1] + verts.max(0)[::-1] * np.asarray(VOXEL)[::-1]
    np.testing.assert_allclose(mesh.bounds[1], expected_xyz_max, atol=1e-3)
    # Outward normals: positive enclosed volume, close to the ellipsoid's (in Å^3).
    assert mesh.volume == pytest.approx(4 / 3 * np.pi * 6 * 7 * 8 * np.prod(VOXEL), rel=0.06)


def test_mesh_in_angstrom_without_voxel_size(tmp_path: Path) -> None:
    verts = np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    faces = np.array([[0, 1, 2], [0, 3, 1], [0, 2, 3], [1, 3, 2]])
    path = write_mesh(tmp_path / "t.ply", verts * 10.0, faces)
    mesh = trimesh.load(path, force="mesh", process=False)
    np.testing.assert_allclose(mesh.vertices, verts[:, ::-1] * 10.0)
    back_v, back_f = read_mesh(path)
    np.testing.assert_allclose(back_v, verts * 10.0)
    np.testing.assert_array_equal(back_f, faces)


def test_bad_mesh_input(tmp_path: Path) -> None:
    verts, faces = _ellipsoid_mesh()
    with pytest.raises(FileFormatError, match="m.vtk"):
        write_mesh(tmp_path / "m.vtk", verts, faces)
    with pytest.raises(ShapeError, match="m.ply"):
        write_mesh(tmp_path / "m.ply", verts, faces + len(verts))
    with pytest.raises(ShapeError, match="m.ply"):
        write_mesh(tmp_path / "m.ply", verts[:, :2], faces)
    with pytest.raises(MissingFileError, match="none.obj"):
        read_mesh(tmp_path / "none.obj")
    (tmp_path / "junk.glb").write_bytes(b"\x00not a mesh")
    with pytest.raises(FileFormatError, match="junk.glb"):
        read_mesh(tmp_path / "junk.glb")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["junk.glb"]
