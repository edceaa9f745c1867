"""The napari reader plugin: layer-data tuples from emkit's files, and its npe2 manifest.

napari itself is not installed for the tests: the reader returns plain tuples, which are
checked here against what napari's ``Viewer.add_<layer_type>(data, **kwargs)`` takes.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from emkit.io import Volume, write_mesh, write_volume
from emkit.napari import get_reader, read_layers
from emkit.pick import ParticleList, write_particle_star, write_particle_tsv

ROOT = Path(__file__).resolve().parents[1]
MANIFEST = ROOT / "src" / "emkit" / "napari" / "napari.yaml"


def _particles() -> ParticleList:
    zyx = np.array([[2.0, 3.0, 4.0], [5.0, 6.0, 7.0], [1.0, 8.0, 2.5]])
    return ParticleList(zyx, np.array([1, 2, 1]), np.array([0.9, 0.8, 0.7]))


def test_mrc_is_an_image_scaled_in_angstrom(tmp_path: Path) -> None:
    data = np.arange(4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6)
    path = write_volume(tmp_path / "tomo.mrc", Volume(data, (3.0, 2.0, 2.0), (30.0, 0.0, 10.0)))
    reader = get_reader(str(path))
    assert reader is not None
    [(array, kwargs, kind)] = reader(str(path))
    assert kind == "image" and np.array_equal(np.asarray(array), data)
    assert kwargs["scale"] == [3.0, 2.0, 2.0] and kwargs["translate"] == [30.0, 0.0, 10.0]
    assert kwargs["name"] == "tomo" and kwargs["metadata"]["units"] == "angstrom"


def test_mrcs_stack_keeps_its_pixel_size(tmp_path: Path) -> None:
    path = write_volume(
        tmp_path / "parts.mrcs", np.zeros((3, 8, 8), np.float32), voxel_size=1.5, stack=True
    )
    [(array, kwargs, kind)] = read_layers(path)
    assert kind == "image" and array.shape == (3, 8, 8)
    assert kwargs["scale"][1:] == [1.5, 1.5]


def test_particle_tsv_is_points_in_voxels_coloured_by_class(tmp_path: Path) -> None:
    path = write_particle_tsv(tmp_path / "tomo_particles.tsv", _particles(), voxel_size_A=4.0)
    [(points, kwargs, kind)] = get_reader(str(path))(str(path))
    assert kind == "points"
    np.testing.assert_allclose(points, _particles().zyx, atol=1e-3)
    assert list(kwargs["features"]["class"]) == [1, 2, 1]
    colours = np.asarray(kwargs["face_color"])
    assert colours.shape == (3, 4)
    assert np.array_equal(colours[0], colours[2]) and not np.array_equal(colours[0], colours[1])
    assert kwargs["scale"] == pytest.approx([4.0] * 3)  # the points sit on the tomogram


def test_star_coordinates_are_points(tmp_path: Path) -> None:
    path = write_particle_star(
        tmp_path / "picks.star", _particles(), voxel_size_A=5.0, shape_zyx=(10, 10, 10)
    )
    [(points, kwargs, kind)] = read_layers(path)
    assert kind == "points" and points.shape == (3, 3)
    np.testing.assert_allclose(points, _particles().zyx, atol=1e-3)
    assert kwargs["scale"] == pytest.approx([5.0] * 3)


def test_mesh_is_a_surface_in_angstrom(tmp_path: Path) -> None:
    verts = np.array([[0, 0, 0], [0, 0, 10], [0, 10, 0], [10, 0, 0]], np.float64)
    faces = np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]])
    for suffix in (".ply", ".obj"):
        path = write_mesh(tmp_path / f"cell{suffix}", verts, faces)
        [((vertices, tri), kwargs, kind)] = read_layers(path)
        assert kind == "surface" and kwargs["name"] == "cell"
        np.testing.assert_allclose(vertices, verts, atol=1e-4)
        assert tri.shape == (4, 3) and tri.max() == 3


def test_ome_zarr_is_a_multiscale_image(tmp_path: Path) -> None:
    data = np.random.default_rng(0).random((16, 32, 32)).astype(np.float32)
    path = write_volume(tmp_path / "rec.ome.zarr", data, voxel_size=2.5, n_levels=3)
    reader = get_reader(str(path))
    [(levels, kwargs, kind)] = reader(str(path))
    assert kind == "image" and kwargs["multiscale"] is True
    assert [tuple(level.shape) for level in levels] == [(16, 32, 32), (8, 16, 16), (4, 8, 8)]
    assert kwargs["scale"] == pytest.approx([2.5] * 3)
    np.testing.assert_allclose(np.asarray(levels[0][:]), data)


def test_other_files_are_left_to_other_readers(tmp_path: Path) -> None:
    assert get_reader(str(tmp_path / "notes.txt")) is None
    assert get_reader(str(tmp_path / "particles.csv")) is None
    assert get_reader([str(tmp_path / "a.mrc"), str(tmp_path / "b.txt")]) is None
    assert get_reader([str(tmp_path / "a.mrc"), str(tmp_path / "b.ply")]) is read_layers


def test_a_list_of_paths_gives_one_layer_each(tmp_path: Path) -> None:
    a = write_volume(tmp_path / "a.mrc", np.zeros((2, 4, 4), np.float32), voxel_size=1.0)
    b = write_particle_tsv(tmp_path / "a_particles.tsv", _particles(), voxel_size_A=1.0)
    kinds = [layer[2] for layer in read_layers([str(a), str(b)])]
    assert kinds == ["image", "points"]


def test_importing_the_plugin_does_not_import_napari() -> None:
    code = (
        "import sys, emkit.napari, emkit.napari._reader; "
        "print('napari' in sys.modules, 'torch' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    assert out == ["False", "False"]


def test_manifest_declares_the_reader() -> None:
    yaml = pytest.importorskip("yaml")
    manifest = yaml.safe_load(MANIFEST.read_text())
    assert manifest["name"] == "emkit"
    commands = {c["id"]: c for c in manifest["contributions"]["commands"]}
    [reader] = manifest["contributions"]["readers"]
    command = commands[reader["command"]]
    module, _, function = command["python_name"].partition(":")
    assert getattr(importlib.import_module(module), function) is get_reader
    patterns = reader["filename_patterns"]
    for name in (
        "t.mrc",
        "s.mrcs",
        "p.star",
        "t_particles.tsv",
        "particles.tsv",
        "m.ply",
        "m.obj",
        "m.stl",
        "m.glb",
        "r.ome.zarr",
    ):
        assert any(Path(name).match(p) for p in patterns), name
        assert get_reader(name) is not None, name  # and the reader takes what it declares
    assert reader["accepts_directories"] is True  # a .zarr store is a folder


def test_pyproject_declares_the_entry_point_extra_and_manifest() -> None:
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["entry-points"]["napari.manifest"]["emkit"] == (
        "emkit.napari:napari.yaml"
    )
    assert any(
        d.startswith("napari") for d in project["project"]["optional-dependencies"]["napari"]
    )
    assert "napari/*.yaml" in project["tool"]["setuptools"]["package-data"]["emkit"]
