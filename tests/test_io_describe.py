"""describe(): the facts emkit info prints, for every kind of file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from emkit.errors import FileFormatError, MissingFileError
from emkit.io import _describe as describe_module
from emkit.io import (
    array_statistics,
    describe,
    write_coordinates,
    write_mesh,
    write_particles_star,
    write_tlt,
    write_volume,
    write_xf,
    xf_from_shifts,
)


def test_volume_description_with_statistics(tmp_path: Path) -> None:
    data = np.arange(4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6)
    data[0, 0, 0] = np.nan
    write_volume(tmp_path / "v.mrcs", data, voxel_size=(1.0, 2.0, 3.0), origin=(4.0, 5.0, 6.0))
    info = describe(tmp_path / "v.mrcs")
    assert info["format"] == "MRC" and info["kind"] == "image stack"
    assert info["shape"] == (4, 5, 6) and info["dtype"] == "float32"
    assert info["voxel_size_A"] == pytest.approx((1.0, 2.0, 3.0))
    assert info["origin_A"] == pytest.approx((4.0, 5.0, 6.0))
    finite = data[np.isfinite(data)]
    assert info["nonfinite"] == 1
    assert info["min"] == 1.0 and info["max"] == float(finite.max())
    assert info["mean"] == pytest.approx(finite.mean())
    assert info["std"] == pytest.approx(finite.std())
    json.dumps(info, default=list)


def test_statistics_in_slabs_match_numpy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(describe_module, "_SLAB_ELEMENTS", 50)  # force many slabs
    data = np.random.default_rng(0).normal(3, 2, (17, 9, 8))
    stats = array_statistics(data)
    assert stats["min"] == data.min() and stats["max"] == data.max()
    assert stats["mean"] == pytest.approx(data.mean()) and stats["std"] == pytest.approx(data.std())


def test_ome_zarr_described_per_level(tmp_path: Path) -> None:
    write_volume(
        tmp_path / "v.ome.zarr", np.ones((8, 16, 16), np.float32), voxel_size=2.0, n_levels=2
    )
    info = describe(tmp_path / "v.ome.zarr")
    assert info["format"] == "OME-Zarr" and len(info["levels"]) == 2
    assert info["levels"][1]["shape"] == (4, 8, 8)
    assert info["levels"][1]["scale"] == pytest.approx([4.0, 4.0, 4.0])
    assert info["levels"][1]["mean"] == pytest.approx(1.0)


def test_tables_described(tmp_path: Path) -> None:
    write_tlt(tmp_path / "a.tlt", np.arange(-60, 61, 3))
    info = describe(tmp_path / "a.tlt")
    assert (info["count"], info["min_deg"], info["max_deg"]) == (41, -60.0, 60.0)
    assert info["median_step_deg"] == 3.0
    write_xf(tmp_path / "a.xf", xf_from_shifts([[1.0, -4.0], [0.0, 2.0]]))
    info = describe(tmp_path / "a.xf")
    assert info["count"] == 2 and info["max_shift_px"] == 4.0 and info["pure_translations"]
    write_particles_star(
        tmp_path / "p.star",
        euler_deg=np.zeros((3, 3)),
        image_names=["1@s.mrcs", "2@s.mrcs", "3@s.mrcs"],
        pixel_size_A=1.0,
        image_size=32,
    )
    info = describe(tmp_path / "p.star")
    assert info["blocks"]["optics"].startswith("1 rows")
    assert info["blocks"]["particles"].startswith("3 rows")
    write_coordinates(tmp_path / "c.csv", np.zeros((5, 3)), classes=[1, 1, 2, 2, 2])
    info = describe(tmp_path / "c.csv")
    assert info["count"] == 5 and info["classes"] == {1: 2, 2: 3}
    verts = np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    write_mesh(tmp_path / "m.obj", verts, np.array([[0, 1, 2]]))
    info = describe(tmp_path / "m.obj")
    assert (info["vertices"], info["faces"]) == (3, 1)


def test_unknown_and_missing(tmp_path: Path) -> None:
    (tmp_path / "x.doc").write_text("x")
    with pytest.raises(FileFormatError, match="x.doc: unknown file type"):
        describe(tmp_path / "x.doc")
    with pytest.raises(MissingFileError, match="gone.tlt"):
        describe(tmp_path / "gone.tlt")
