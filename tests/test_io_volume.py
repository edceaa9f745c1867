"""read_volume / write_volume: data and metadata survive every format; bad files fail clearly."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

import mrcfile
import numpy as np
import pytest
import tifffile

from emkit.errors import (
    EmkitError,
    FileFormatError,
    InputError,
    MissingFileError,
    NonFiniteError,
    ShapeError,
)
from emkit.io import (
    Volume,
    count_nonfinite,
    png_ready,
    read_volume,
    require_finite,
    require_ndim,
    write_volume,
)

SHARED = Path(__file__).parents[1] / ".." / "shared" / "data"
VOXEL = (1.25, 2.5, 3.75)  # anisotropic on purpose: any axis swap shows
ORIGIN = (-10.0, 20.5, 30.25)


def _volume(shape: tuple[int, ...] = (6, 10, 14), seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def _only(tmp_path: Path) -> list[str]:
    return sorted(p.name for p in tmp_path.iterdir())


@pytest.mark.parametrize(
    "name", ["v.mrc", "v.rec", "v.map", "v.mrc.gz", "v.tif", "v.zarr", "v.ome.zarr"]
)
def test_round_trip_keeps_data_voxel_size_and_origin(tmp_path: Path, name: str) -> None:
    data = _volume()
    path = write_volume(tmp_path / name, data, voxel_size=VOXEL, origin=ORIGIN)
    vol = read_volume(path)
    assert vol.data.dtype == np.float32 and vol.data.shape == data.shape
    np.testing.assert_array_equal(vol.data, data)
    np.testing.assert_allclose(vol.voxel_size, VOXEL, rtol=1e-6)
    np.testing.assert_allclose(vol.origin, ORIGIN, atol=1e-4)
    assert vol.path == path
    assert _only(tmp_path) == [name]  # no temporary file left behind


def test_volume_object_brings_its_metadata_and_keywords_override(tmp_path: Path) -> None:
    vol = Volume(_volume(), voxel_size=VOXEL, origin=ORIGIN)
    back = read_volume(write_volume(tmp_path / "a.mrc", vol))
    assert back.voxel_size == pytest.approx(VOXEL) and back.origin == pytest.approx(ORIGIN)
    back = read_volume(write_volume(tmp_path / "b.mrc", vol, voxel_size=4.0))
    assert back.voxel_size == pytest.approx((4.0, 4.0, 4.0))


def test_mrcs_stack_flagged_as_stack_and_volume_as_volume(tmp_path: Path) -> None:
    data = _volume((5, 8, 8))
    write_volume(tmp_path / "s.mrcs", data, voxel_size=2.0)
    write_volume(tmp_path / "v.mrc", data, voxel_size=2.0)
    write_volume(tmp_path / "t.st", data, voxel_size=2.0)
    with mrcfile.open(tmp_path / "s.mrcs") as mrc:
        assert mrc.header.ispg == 0 and mrc.is_image_stack()
    with mrcfile.open(tmp_path / "t.st") as mrc:
        assert mrc.header.ispg == 0
    with mrcfile.open(tmp_path / "v.mrc") as mrc:
        assert mrc.header.ispg == 1 and mrc.is_volume()
        assert mrc.header.mode == 2
    back = read_volume(tmp_path / "s.mrcs")
    np.testing.assert_array_equal(back.data, data)
    assert back.voxel_size == pytest.approx((2.0, 2.0, 2.0))


def test_mrc_header_statistics_written(tmp_path: Path) -> None:
    data = _volume()
    write_volume(tmp_path / "a.mrc", data)
    with mrcfile.open(tmp_path / "a.mrc") as mrc:
        h = mrc.header
        assert h.dmin == pytest.approx(data.min()) and h.dmax == pytest.approx(data.max())
        assert h.dmean == pytest.approx(data.mean(), abs=1e-6)
        assert h.rms == pytest.approx(data.std(), rel=1e-5)


@pytest.mark.parametrize("dtype", [np.int8, np.int16, np.uint16, np.float16, np.float32])
def test_mrc_modes_read_in_their_dtype(tmp_path: Path, dtype: type) -> None:
    data = (np.arange(2 * 3 * 4).reshape(2, 3, 4) % 100).astype(dtype)
    with mrcfile.new(tmp_path / "m.mrc") as mrc:
        mrc.set_data(data)
        mrc.voxel_size = (3.0, 2.0, 1.0)  # x, y, z
    vol = read_volume(tmp_path / "m.mrc")
    assert vol.data.dtype == dtype
    np.testing.assert_array_equal(vol.data, data)
    assert vol.voxel_size == pytest.approx((1.0, 2.0, 3.0))  # z, y, x
    assert vol.data.flags.writeable


def test_imod_unsigned_bytes_read_as_uint8(tmp_path: Path) -> None:
    raw = np.array([[[0, 100, 200, 255]]], dtype=np.uint8)
    with mrcfile.new(tmp_path / "u.mrc") as mrc:
        mrc.set_data(raw.view(np.int8))
    with open(tmp_path / "u.mrc", "r+b") as fh:  # IMOD stamp, flags without "signed"
        fh.seek(152)
        fh.write(np.array([1146047817, 0], dtype="<i4").tobytes())
    vol = read_volume(tmp_path / "u.mrc")
    assert vol.data.dtype == np.uint8
    np.testing.assert_array_equal(vol.data, raw)


def test_mrc_with_permuted_axes_returned_as_zyx(tmp_path: Path) -> None:
    zyx = _volume((3, 4, 5))
    # File with columns = z, rows = y, sections = x: data block ordered (x, y, z).
    with mrcfile.new(tmp_path / "p.mrc") as mrc:
        mrc.set_data(np.ascontiguousarray(zyx.transpose(2, 1, 0)))
        mrc.header.mapc, mrc.header.mapr, mrc.header.maps = 3, 2, 1
    np.testing.assert_array_equal(read_volume(tmp_path / "p.mrc").data, zyx)


def test_mrc_origin_from_nstart_when_origin_field_empty(tmp_path: Path) -> None:
    with mrcfile.new(tmp_path / "n.mrc") as mrc:
        mrc.set_data(_volume((2, 3, 4)))
        mrc.voxel_size = 2.0
        mrc.header.nxstart, mrc.header.nystart, mrc.header.nzstart = 1, 2, 3
    assert read_volume(tmp_path / "n.mrc").origin == pytest.approx((6.0, 4.0, 2.0))


@pytest.mark.parametrize("name", ["m.mrc", "m.tif", "m.npy"])
def test_mmap_reads_same_data_read_only(tmp_path: Path, name: str) -> None:
    data = _volume((4, 16, 16))
    write_volume(tmp_path / name, data, voxel_size=1.0)
    vol = read_volume(tmp_path / name, mmap=True)
    assert isinstance(vol.data, np.memmap)
    np.testing.assert_array_equal(vol.data, data)


def test_written_files_are_not_private(tmp_path: Path) -> None:
    path = write_volume(tmp_path / "a.mrc", _volume())
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask


def test_npy_keeps_data_and_drops_metadata_with_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = _volume().astype(np.float64)
    with caplog.at_level(logging.WARNING):
        write_volume(tmp_path / "a.npy", data, voxel_size=2.0)
    assert "cannot hold the voxel size" in caplog.text
    vol = read_volume(tmp_path / "a.npy")
    assert vol.data.dtype == np.float64 and vol.voxel_size is None
    np.testing.assert_array_equal(vol.data, data)


# --- TIFF -----------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_tiff_keeps_imagej_dtypes_and_2d_pixel_size(tmp_path: Path, dtype: type) -> None:
    image = (np.arange(12 * 9).reshape(12, 9) % 200).astype(dtype)
    write_volume(tmp_path / "i.tif", image, voxel_size=(7.0, 1.234567, 0.987654))
    vol = read_volume(tmp_path / "i.tif")
    assert vol.data.dtype == dtype
    np.testing.assert_array_equal(vol.data, image)
    np.testing.assert_allclose(vol.voxel_size[1:], (1.234567, 0.987654), rtol=1e-6)


def test_tiff_written_in_nm_for_imagej(tmp_path: Path) -> None:
    write_volume(tmp_path / "a.tif", _volume(), voxel_size=(20.0, 10.0, 10.0))
    with tifffile.TiffFile(tmp_path / "a.tif") as tif:
        assert tif.is_imagej
        assert tif.imagej_metadata["unit"] == "nm"
        assert tif.imagej_metadata["spacing"] == pytest.approx(2.0)
        assert tif.pages[0].resolution == pytest.approx((1.0, 1.0))


def test_tiff_from_fiji_in_micron_and_ome_tiff_read_back(tmp_path: Path) -> None:
    data = _volume((3, 5, 6))
    tifffile.imwrite(
        tmp_path / "fiji.tif",
        data,
        imagej=True,
        resolution=(1000.0, 500.0),
        metadata={"unit": "micron", "spacing": 0.004, "axes": "ZYX"},
    )
    vol = read_volume(tmp_path / "fiji.tif")
    assert vol.voxel_size == pytest.approx((40.0, 20.0, 10.0))
    tifffile.imwrite(
        tmp_path / "o.ome.tif",
        data,
        metadata={
            "axes": "ZYX",
            "PhysicalSizeX": 0.5,
            "PhysicalSizeXUnit": "nm",
            "PhysicalSizeY": 0.5,
            "PhysicalSizeYUnit": "nm",
            "PhysicalSizeZ": 2.0,
            "PhysicalSizeZUnit": "nm",
        },
    )
    vol = read_volume(tmp_path / "o.ome.tif")
    np.testing.assert_array_equal(vol.data, data)
    assert vol.voxel_size == pytest.approx((20.0, 5.0, 5.0))


def test_tiff_without_calibration_has_no_voxel_size(tmp_path: Path) -> None:
    tifffile.imwrite(tmp_path / "p.tif", _volume((2, 4, 4)), photometric="minisblack")
    assert read_volume(tmp_path / "p.tif").voxel_size is None


def test_rgb_tiff_converted_to_gray_with_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    rgb = np.zeros((4, 5, 3), dtype=np.uint8)
    rgb[..., 1] = 200
    tifffile.imwrite(tmp_path / "rgb.tif", rgb, photometric="rgb")
    with caplog.at_level(logging.WARNING):
        vol = read_volume(tmp_path / "rgb.tif")
    assert vol.data.shape == (4, 5) and "converted to gray" in caplog.text
    assert int(vol.data[0, 0]) == round(0.587 * 200)


def test_multichannel_tiff_refused(tmp_path: Path) -> None:
    tifffile.imwrite(
        tmp_path / "c.tif",
        np.zeros((2, 3, 4, 5), np.float32),
        imagej=True,
        metadata={"axes": "TZYX"},
    )
    with pytest.raises(ShapeError, match="c.tif"):
        read_volume(tmp_path / "c.tif")


# --- PNG ------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_png_round_trip_8_and_16_bit(tmp_path: Path, dtype: type) -> None:
    top = np.iinfo(dtype).max
    image = np.linspace(0, top, 11 * 13).reshape(11, 13).astype(dtype)
    write_volume(tmp_path / "i.png", image)
    vol = read_volume(tmp_path / "i.png")
    assert vol.data.dtype == dtype and vol.voxel_size is None
    np.testing.assert_array_equal(vol.data, image)


def test_colour_png_converted_to_gray_with_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import cv2

    bgr = np.zeros((6, 7, 3), np.uint8)
    bgr[..., 2] = 255  # red
    cv2.imwrite(str(tmp_path / "c.png"), bgr)
    with caplog.at_level(logging.WARNING):
        vol = read_volume(tmp_path / "c.png")
    assert vol.data.shape == (6, 7) and "gray" in caplog.text
    assert abs(int(vol.data[0, 0]) - round(0.299 * 255)) <= 1


def test_png_ready_exact_when_possible_rescaled_otherwise(
    caplog: pytest.LogCaptureFixture,
) -> None:
    assert png_ready(np.array([[0.0, 255.0]])).dtype == np.uint8
    assert png_ready(np.array([[0, 300]], dtype=np.int32)).dtype == np.uint16
    np.testing.assert_array_equal(png_ready(np.array([[True, False]])), [[255, 0]])
    with caplog.at_level(logging.WARNING):
        out = png_ready(np.array([[-1.0, 0.5, 2.0]]))
    assert out.dtype == np.uint8 and out.tolist() == [[0, 128, 255]]
    assert "rescaled" in caplog.text


def test_3d_or_nonfinite_to_png_refused_and_nothing_written(tmp_path: Path) -> None:
    with pytest.raises(ShapeError, match=r"^\S*x.png: PNG holds one 2D image"):
        write_volume(tmp_path / "x.png", _volume())
    with pytest.raises(FileFormatError, match=r"^\S*y.png: PNG cannot hold NaN"):
        write_volume(tmp_path / "y.png", np.full((3, 3), np.nan))
    assert _only(tmp_path) == []


# --- bad input ------------------------------------------------------------------------


def test_truncated_mrc_is_a_format_error_naming_the_file(tmp_path: Path) -> None:
    good = write_volume(tmp_path / "good.mrc", _volume((8, 16, 16)))
    cut = tmp_path / "cut.mrc"
    cut.write_bytes(good.read_bytes()[:-100])
    for mmap in (False, True):
        with pytest.raises(FileFormatError) as info:
            read_volume(cut, mmap=mmap)
        message = str(info.value)
        assert message.startswith(str(cut)) and "truncated" in message
        assert "\n" not in message


def test_text_file_named_mrc_is_a_format_error(tmp_path: Path) -> None:
    fake = tmp_path / "notes.mrc"
    fake.write_text("these are my notes\n" * 100)
    with pytest.raises(FileFormatError, match="notes.mrc: is not a valid MRC file"):
        read_volume(fake)


@pytest.mark.parametrize("name", ["fake.tif", "fake.png", "fake.npy"])
def test_wrong_content_for_suffix(tmp_path: Path, name: str) -> None:
    (tmp_path / name).write_text("not an image at all\n" * 20)
    with pytest.raises(FileFormatError, match=name):
        read_volume(tmp_path / name)


def test_missing_file_and_unknown_suffix(tmp_path: Path) -> None:
    with pytest.raises(MissingFileError, match="nope.mrc: no such file; check the path"):
        read_volume(tmp_path / "nope.mrc")
    (tmp_path / "data.xyz").write_text("x")
    with pytest.raises(FileFormatError) as info:
        read_volume(tmp_path / "data.xyz")
    assert "data.xyz" in str(info.value) and ".mrc" in str(info.value)
    with pytest.raises(FileFormatError, match="out.jpg"):
        write_volume(tmp_path / "out.jpg", np.zeros((4, 4), np.uint8))


def test_bad_voxel_size_and_4d_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="a.mrc"):
        write_volume(tmp_path / "a.mrc", _volume(), voxel_size=-1.0)
    with pytest.raises(InputError, match="a.mrc"):
        write_volume(tmp_path / "a.mrc", _volume(), voxel_size=(1.0, 2.0))
    with pytest.raises(ShapeError, match="a.mrc"):
        write_volume(tmp_path / "a.mrc", np.zeros((2, 2, 2, 2), np.float32))
    assert _only(tmp_path) == []


def test_require_finite_counts_bad_values_and_names_file() -> None:
    data = np.zeros((3, 4, 5), np.float32)
    require_finite(data, "ok.mrc")
    require_finite(np.zeros(3, np.int16), "ints.mrc")
    data[0, 0, :3] = np.nan
    data[2, 1, 1] = np.inf
    assert count_nonfinite(data) == 4
    with pytest.raises(NonFiniteError, match=r"bad.mrc: 4 of 60 values"):
        require_finite(data, "bad.mrc")


def test_require_ndim_names_file_and_shape() -> None:
    require_ndim(np.zeros((2, 3)), (2, 3), "a.png")
    with pytest.raises(ShapeError) as info:
        require_ndim(np.zeros((2, 3)), 3, "tilts.mrc", "tilt series (n, y, x)")
    message = str(info.value)
    assert message.startswith("tilts.mrc:") and "3D tilt series" in message and "(2, 3)" in message
    assert isinstance(info.value, EmkitError) and isinstance(info.value, ValueError)


@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data (reference data) is absent")
def test_reference_map_and_section_read() -> None:
    vol = read_volume(SHARED / "maps" / "5j0n.mrc")
    assert vol.data.shape == (69, 57, 75) and vol.data.dtype == np.float32
    assert vol.voxel_size == pytest.approx((3.667, 3.667, 3.667), abs=1e-3)
    image = read_volume(SHARED / "sections" / "DOLW7_0.png")
    assert image.data.shape == (1000, 1000) and image.data.dtype == np.uint8
