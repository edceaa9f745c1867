"""Zarr arrays and OME-Zarr multiscale images: levels, scale metadata, lazy access."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import zarr

from emkit.errors import FileFormatError, MissingFileError
from emkit.io import (
    create_zarr_array,
    open_group_for_write,
    open_zarr_array,
    read_volume,
    write_volume,
)
from emkit.io._zarr import zarr_levels


def _data(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random(shape).astype(np.float32)


def test_ome_zarr_levels_are_2x_block_means_with_scaled_metadata(tmp_path: Path) -> None:
    data = _data((20, 34, 40))
    voxel, origin = (2.0, 3.0, 4.0), (10.0, 20.0, 30.0)
    path = write_volume(
        tmp_path / "v.ome.zarr",
        data,
        voxel_size=voxel,
        origin=origin,
        n_levels=3,
        chunks=(8, 16, 16),
    )
    attrs = json.loads((path / ".zattrs").read_text())
    ms = attrs["multiscales"][0]
    assert ms["version"] == "0.4"
    assert [a["name"] for a in ms["axes"]] == ["z", "y", "x"]
    assert all(a["type"] == "space" and a["unit"] == "angstrom" for a in ms["axes"])
    assert [d["path"] for d in ms["datasets"]] == ["0", "1", "2"]
    json.loads((path / "0" / ".zarray").read_text())  # Zarr format 2 arrays, as 0.4 needs

    levels = [np.asarray(open_zarr_array(path, level)) for level in range(3)]
    np.testing.assert_array_equal(levels[0], data)  # level 0 exact
    assert levels[1].shape == (10, 17, 20) and levels[2].shape == (5, 8, 10)
    expected1 = data.reshape(10, 2, 17, 2, 20, 2).mean(axis=(1, 3, 5))
    np.testing.assert_allclose(levels[1], expected1, rtol=1e-6)
    expected2 = expected1[:, :16].reshape(5, 2, 8, 2, 10, 2).mean(axis=(1, 3, 5))
    np.testing.assert_allclose(levels[2], expected2, rtol=1e-5)

    for level, dataset in enumerate(ms["datasets"]):
        scale, translation = (t for t in dataset["coordinateTransformations"])
        assert scale["scale"] == pytest.approx([v * 2**level for v in voxel])
        # Centre of the first 2^k block: origin + (2^k - 1) / 2 voxels.
        expected_t = [o + v * (2**level - 1) / 2 for o, v in zip(origin, voxel)]
        assert translation["translation"] == pytest.approx(expected_t)
    assert zarr_levels(path)[2]["shape"] == (5, 8, 10)


def test_ome_zarr_reads_back_level_0_with_voxel_size(tmp_path: Path) -> None:
    data = _data((6, 70, 90))
    write_volume(tmp_path / "v.ome.zarr", data, voxel_size=1.5, origin=(1.0, 2.0, 3.0))
    vol = read_volume(tmp_path / "v.ome.zarr")
    np.testing.assert_array_equal(vol.data, data)
    assert vol.voxel_size == pytest.approx((1.5, 1.5, 1.5))
    assert vol.origin == pytest.approx((1.0, 2.0, 3.0))
    # default levels: halve until the longest axis <= 64, axes of length 1 stay
    shapes = [lv["shape"] for lv in zarr_levels(tmp_path / "v.ome.zarr")]
    assert shapes == [(6, 70, 90), (3, 35, 45)]


def test_ome_zarr_2d_image_and_integer_levels(tmp_path: Path) -> None:
    image = (np.arange(130 * 140).reshape(130, 140) % 256).astype(np.uint8)
    write_volume(tmp_path / "i.ome.zarr", image, voxel_size=(1.0, 2.0, 3.0))
    vol = read_volume(tmp_path / "i.ome.zarr")
    assert vol.data.dtype == np.uint8
    np.testing.assert_array_equal(vol.data, image)
    assert vol.voxel_size[1:] == pytest.approx((2.0, 3.0))
    level1 = np.asarray(open_zarr_array(tmp_path / "i.ome.zarr", 1))
    assert level1.dtype == np.uint8 and level1.shape == (65, 70)
    np.testing.assert_array_equal(
        level1, np.rint(image.reshape(65, 2, 70, 2).mean(axis=(1, 3))).astype(np.uint8)
    )


def test_ome_zarr_without_voxel_size_has_no_unit(tmp_path: Path) -> None:
    write_volume(tmp_path / "n.ome.zarr", _data((4, 8, 8)))
    assert read_volume(tmp_path / "n.ome.zarr").voxel_size is None


def test_foreign_ome_zarr_in_nanometres_with_channel_axis(tmp_path: Path) -> None:
    data = _data((1, 5, 6, 7))
    group = open_group_for_write(tmp_path / "f.ome.zarr")
    create_zarr_array(tmp_path / "f.ome.zarr" / "s0", data.shape, data.dtype)[...] = data
    group.attrs["multiscales"] = [
        {
            "version": "0.4",
            "axes": [
                {"name": "c", "type": "channel"},
                *({"name": n, "type": "space", "unit": "nanometer"} for n in "zyx"),
            ],
            "datasets": [
                {
                    "path": "s0",
                    "coordinateTransformations": [
                        {"type": "scale", "scale": [1.0, 0.5, 0.25, 0.25]}
                    ],
                }
            ],
        }
    ]
    vol = read_volume(tmp_path / "f.ome.zarr")
    np.testing.assert_array_equal(vol.data, data[0])
    assert vol.voxel_size == pytest.approx((5.0, 2.5, 2.5))


def test_plain_zarr_array_keeps_metadata_and_opens_lazily(tmp_path: Path) -> None:
    data = _data((9, 20, 30))
    path = write_volume(
        tmp_path / "a.zarr",
        data,
        voxel_size=(1.0, 2.0, 3.0),
        origin=(4.0, 5.0, 6.0),
        chunks=(4, 8, 8),
    )
    arr = open_zarr_array(path)
    assert isinstance(arr, zarr.Array) and arr.chunks == (4, 8, 8)
    np.testing.assert_array_equal(arr[2:4, 5:7, 1:9], data[2:4, 5:7, 1:9])
    vol = read_volume(path)
    np.testing.assert_array_equal(vol.data, data)
    assert vol.voxel_size == pytest.approx((1.0, 2.0, 3.0))
    assert vol.origin == pytest.approx((4.0, 5.0, 6.0))
    with pytest.raises(FileFormatError, match="a.zarr"):
        open_zarr_array(path, level=1)


def test_zarr_overwrite_replaces_whole_store(tmp_path: Path) -> None:
    write_volume(tmp_path / "a.zarr", _data((4, 4, 4)))
    write_volume(tmp_path / "a.zarr", _data((2, 3, 5), seed=1))
    assert read_volume(tmp_path / "a.zarr").data.shape == (2, 3, 5)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.zarr"]


def test_bad_zarr_paths(tmp_path: Path) -> None:
    with pytest.raises(MissingFileError, match="none.zarr"):
        read_volume(tmp_path / "none.zarr")
    (tmp_path / "empty.zarr").mkdir()
    with pytest.raises(FileFormatError, match="empty.zarr"):
        read_volume(tmp_path / "empty.zarr")
    open_group_for_write(tmp_path / "g.zarr")
    with pytest.raises(FileFormatError, match="g.zarr: .*multiscales"):
        read_volume(tmp_path / "g.zarr")
    write_volume(tmp_path / "v.ome.zarr", _data((4, 4, 4)), n_levels=1)
    with pytest.raises(FileFormatError, match="level 3 does not exist"):
        open_zarr_array(tmp_path / "v.ome.zarr", 3)
