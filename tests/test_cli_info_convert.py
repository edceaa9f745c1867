"""emkit info and emkit convert, in-process: outputs, metadata kept, exit 2 on bad input."""

from __future__ import annotations

import json
from pathlib import Path

import mrcfile
import numpy as np
import pytest

from emkit.cli.main import main
from emkit.io import read_volume, write_tlt, write_volume

VOXEL = (1.5, 2.5, 3.5)
ORIGIN = (10.0, 20.0, 30.0)


@pytest.fixture
def volume_mrc(tmp_path: Path) -> Path:
    data = np.random.default_rng(0).normal(size=(6, 12, 14)).astype(np.float32)
    return write_volume(tmp_path / "in" / "vol.mrc", data, voxel_size=VOXEL, origin=ORIGIN)


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_info_prints_aligned_lines(volume_mrc: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", str(volume_mrc)]) == 0
    lines = capsys.readouterr().out.splitlines()
    colons = {line.index(":") for line in lines}
    assert len(colons) == 1  # keys aligned
    text = "\n".join(lines)
    assert "format" in text and "MRC" in text and "(6, 12, 14)" in text
    assert "voxel_size_A" in text and "(1.5, 2.5, 3.5)" in text


def test_info_json_for_several_files(
    volume_mrc: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tlt = write_tlt(tmp_path / "a.tlt", [-3.0, 0.0, 3.0])
    assert main(["info", "--json", str(volume_mrc)]) == 0
    one = json.loads(capsys.readouterr().out)
    assert one["shape"] == [6, 12, 14] and one["voxel_size_A"] == pytest.approx(list(VOXEL))
    assert main(["info", "--json", str(volume_mrc), str(tlt)]) == 0
    both = json.loads(capsys.readouterr().out)
    assert [d["format"] for d in both] == ["MRC", "IMOD tilt angles"]


@pytest.mark.parametrize("name", ["out.ome.zarr", "out.zarr", "out.tif", "out.mrcs", "out.rec"])
def test_convert_keeps_data_voxel_size_and_origin(
    volume_mrc: Path, tmp_path: Path, name: str
) -> None:
    out = tmp_path / name
    assert main(["convert", str(volume_mrc), str(out)]) == 0
    src, dst = read_volume(volume_mrc), read_volume(out)
    np.testing.assert_array_equal(dst.data, src.data)
    np.testing.assert_allclose(dst.voxel_size, VOXEL, rtol=1e-6)
    np.testing.assert_allclose(dst.origin, ORIGIN, atol=1e-4)
    assert _names(tmp_path) == sorted(["in", name])


def test_convert_voxel_size_override_and_stack_flag(volume_mrc: Path, tmp_path: Path) -> None:
    assert main(["convert", str(volume_mrc), str(tmp_path / "s.mrcs"), "--voxel-size", "4"]) == 0
    assert read_volume(tmp_path / "s.mrcs").voxel_size == pytest.approx((4.0, 4.0, 4.0))
    with mrcfile.open(tmp_path / "s.mrcs", header_only=True) as mrc:
        assert mrc.header.ispg == 0
    assert (
        main(
            [
                "convert",
                str(tmp_path / "s.mrcs"),
                str(tmp_path / "v.zarr"),
                "--voxel-size",
                "1",
                "2",
                "3",
            ]
        )
        == 0
    )
    assert read_volume(tmp_path / "v.zarr").voxel_size == pytest.approx((1.0, 2.0, 3.0))


def test_convert_to_png_and_npy_warns_that_metadata_is_dropped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = np.arange(20 * 30, dtype=np.uint16).reshape(20, 30)
    src = write_volume(tmp_path / "img.tif", image, voxel_size=2.0)
    assert main(["convert", str(src), str(tmp_path / "img.png")]) == 0
    assert "cannot hold the voxel size" in capsys.readouterr().err
    back = read_volume(tmp_path / "img.png")
    assert back.data.dtype == np.uint16
    np.testing.assert_array_equal(back.data, image)
    assert main(["convert", str(tmp_path / "img.png"), str(tmp_path / "img.npy")]) == 0
    assert capsys.readouterr().err == ""  # a PNG has no voxel size to lose


def _assert_one_line_error(capsys: pytest.CaptureFixture[str], *fragments: str) -> None:
    err = capsys.readouterr().err
    assert err.startswith("emkit: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in err, err


def test_convert_refuses_output_equal_to_input(
    volume_mrc: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = volume_mrc.read_bytes()
    assert main(["convert", str(volume_mrc), str(volume_mrc)]) == 2
    _assert_one_line_error(capsys, "vol.mrc", "also an input")
    assert volume_mrc.read_bytes() == before
    assert _names(volume_mrc.parent) == ["vol.mrc"]


def test_convert_3d_to_png_exits_2_and_writes_nothing(
    volume_mrc: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["convert", str(volume_mrc), str(tmp_path / "x.png")]) == 2
    _assert_one_line_error(capsys, "vol.mrc", "x.png", "2D")
    assert _names(tmp_path) == ["in"]


def test_convert_truncated_mrc_exits_2(
    volume_mrc: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cut = tmp_path / "cut.mrc"
    cut.write_bytes(volume_mrc.read_bytes()[:-64])
    assert main(["convert", str(cut), str(tmp_path / "out.tif")]) == 2
    _assert_one_line_error(capsys, "cut.mrc", "not a valid MRC file (truncated?)")
    assert _names(tmp_path) == ["cut.mrc", "in"]
    assert main(["info", str(cut)]) == 2
    _assert_one_line_error(capsys, "cut.mrc", "truncated")


def test_convert_text_file_named_mrc_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake = tmp_path / "fake.mrc"
    fake.write_text("not a map\n" * 200)
    assert main(["convert", str(fake), str(tmp_path / "out.mrc")]) == 2
    _assert_one_line_error(capsys, "fake.mrc")
    assert _names(tmp_path) == ["fake.mrc"]


def test_missing_file_and_unknown_suffix_exit_2(
    volume_mrc: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["convert", str(tmp_path / "gone.mrc"), str(tmp_path / "o.mrc")]) == 2
    _assert_one_line_error(capsys, "gone.mrc", "no such file")
    assert main(["info", str(tmp_path / "gone.mrc")]) == 2
    _assert_one_line_error(capsys, "gone.mrc", "no such file")
    assert main(["convert", str(volume_mrc), str(tmp_path / "o.xyz")]) == 2
    _assert_one_line_error(capsys, "o.xyz", "unknown", ".mrc")
    assert _names(tmp_path) == ["in"]


def test_nonfinite_refused_unless_allowed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = np.zeros((3, 4, 5), np.float32)
    data[1, 2, 3] = np.nan
    src = write_volume(tmp_path / "nan.mrc", data)
    assert main(["convert", str(src), str(tmp_path / "o.tif")]) == 2
    _assert_one_line_error(capsys, "nan.mrc", "1 of 60 values", "NaN")
    assert _names(tmp_path) == ["nan.mrc"]
    assert main(["convert", str(src), str(tmp_path / "o.tif"), "--allow-nonfinite"]) == 0
    assert np.isnan(read_volume(tmp_path / "o.tif").data[1, 2, 3])


def test_bad_voxel_size_option_exits_2(
    volume_mrc: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        main(["convert", str(volume_mrc), str(tmp_path / "o.mrc"), "--voxel-size", "1", "2"]) == 2
    )
    _assert_one_line_error(capsys, "--voxel-size")
    assert _names(tmp_path) == ["in"]


def test_malformed_table_error_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "picks.csv"
    bad.write_text("x,y\n1\n2,3,4\n")  # pandas' message for this ends with a newline
    assert main(["info", str(bad)]) == 2
    _assert_one_line_error(capsys, "picks.csv")


def test_corrupt_tiff_gives_one_error_and_no_library_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    bad = tmp_path / "bad.tif"
    bad.write_bytes(b"II*\x00" + b"\x00" * 50)
    with caplog.at_level("WARNING"):
        assert main(["convert", str(bad), str(tmp_path / "o.mrc")]) == 2
    _assert_one_line_error(capsys, "bad.tif", "TIFF")
    assert [r.getMessage() for r in caplog.records if r.levelname == "WARNING"] == []
    assert _names(tmp_path) == ["bad.tif"]


def test_output_that_is_a_folder_exits_2_and_keeps_it(
    volume_mrc: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "out.mrc"
    folder.mkdir()
    assert main(["convert", str(volume_mrc), str(folder)]) == 2
    _assert_one_line_error(capsys, "out.mrc", "folder")
    assert folder.is_dir() and list(folder.iterdir()) == []
    assert _names(tmp_path) == ["in", "out.mrc"]
