"""IMOD .tlt/.xf and AreTomo .aln: round trips, IMOD's own formatting, sign conventions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from emkit.errors import FileFormatError, InputError, MissingFileError, ShapeError
from emkit.io import (
    read_aln,
    read_tlt,
    read_xf,
    shifts_from_xf,
    write_tlt,
    write_xf,
    xf_from_shifts,
)

# How IMOD's own programs (xftoxg, midas, tiltxcorr) print one .xf line.
IMOD_XF_LINE = "%12.7f%12.7f%12.7f%12.7f%12.3f%12.3f"


def test_tlt_round_trip_ignores_blank_lines(tmp_path: Path) -> None:
    angles = np.arange(-60.0, 61.0, 3.0)
    path = write_tlt(tmp_path / "a.tlt", angles)
    assert path.read_text().splitlines()[0] == "  -60.00"
    np.testing.assert_array_equal(read_tlt(path), angles)
    (tmp_path / "b.tlt").write_text("\n -1.5\n\n  0.0  extra\n 2.25\n\n")
    out = read_tlt(tmp_path / "b.tlt")
    assert out.dtype == np.float64 and out.tolist() == [-1.5, 0.0, 2.25]
    write_tlt(tmp_path / "c.tlt", [1.23456], decimals=4)
    assert read_tlt(tmp_path / "c.tlt")[0] == pytest.approx(1.2346)


def test_tlt_junk_names_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "bad.tlt").write_text("-3.0\n0.0\nthree\n")
    with pytest.raises(FileFormatError, match=r"bad.tlt: line 3: 'three' is not a tilt angle"):
        read_tlt(tmp_path / "bad.tlt")
    (tmp_path / "empty.tlt").write_text("\n\n")
    with pytest.raises(FileFormatError, match="empty.tlt: holds no tilt angles"):
        read_tlt(tmp_path / "empty.tlt")
    with pytest.raises(MissingFileError, match="none.tlt"):
        read_tlt(tmp_path / "none.tlt")
    (tmp_path / "bin.tlt").write_bytes(b"\xff\xfe\x00\x01")
    with pytest.raises(FileFormatError, match="bin.tlt"):
        read_tlt(tmp_path / "bin.tlt")


def test_xf_round_trip_with_imod_fixed_width_format(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    theta = np.deg2rad(rng.uniform(-10, 10, 5))
    xf = np.zeros((5, 2, 3))
    xf[:, 0, 0] = xf[:, 1, 1] = np.cos(theta)
    xf[:, 0, 1], xf[:, 1, 0] = -np.sin(theta), np.sin(theta)
    xf[:, :, 2] = rng.uniform(-50, 50, (5, 2))
    path = write_xf(tmp_path / "a.xf", xf)
    line = path.read_text().splitlines()[0]
    assert len(line) == 72  # six 12-character fields
    expected = IMOD_XF_LINE % (
        xf[0, 0, 0],
        xf[0, 0, 1],
        xf[0, 1, 0],
        xf[0, 1, 1],
        xf[0, 0, 2],
        xf[0, 1, 2],
    )
    assert line == expected
    back = read_xf(path)
    np.testing.assert_allclose(back[:, :, :2], xf[:, :, :2], atol=5e-8)
    np.testing.assert_allclose(back[:, :, 2], xf[:, :, 2], atol=5e-4)


def test_xf_fields_that_run_together_are_read_by_width(tmp_path: Path) -> None:
    line = IMOD_XF_LINE % (1, 0, 0, 1, -1234567.125, -2.5)
    assert len(line.split()) == 5  # DX fills its field and touches A22
    (tmp_path / "w.xf").write_text(line + "\n")
    xf = read_xf(tmp_path / "w.xf")
    assert xf[0, 0, 2] == pytest.approx(-1234567.125) and xf[0, 1, 2] == pytest.approx(-2.5)


def test_xf_bad_input(tmp_path: Path) -> None:
    (tmp_path / "bad.xf").write_text("1 0 0 1 0 0\n1 0 0 1 x 0\n")
    with pytest.raises(FileFormatError, match=r"bad.xf: line 2: expected 6 numbers"):
        read_xf(tmp_path / "bad.xf")
    with pytest.raises(ShapeError, match="out.xf"):
        write_xf(tmp_path / "out.xf", np.zeros((3, 3, 3)))
    assert not (tmp_path / "out.xf").exists()


def test_shift_sign_matches_scipy_shift_and_round_trips() -> None:
    shifts = np.array([[2.0, -3.0], [0.5, 1.25]])
    xf = xf_from_shifts(shifts)
    np.testing.assert_array_equal(xf[0], [[1, 0, -3.0], [0, 1, 2.0]])  # DX = dx, DY = dy
    np.testing.assert_array_equal(shifts_from_xf(xf), shifts)
    # The content at raw (y, x) moves to (y + dy, x + dx), like scipy.ndimage.shift.
    raw = np.zeros((16, 16))
    raw[5, 6] = 1.0
    moved = ndimage.shift(raw, shifts[0], order=0)
    y, x = np.unravel_index(np.argmax(moved), moved.shape)
    assert (y, x) == (5 + xf[0, 1, 2], 6 + xf[0, 0, 2])


def test_shifts_from_xf_refuses_rotations_unless_allowed() -> None:
    xf = xf_from_shifts(np.zeros((2, 2)))
    xf[1, 0, 1] = 0.1
    with pytest.raises(InputError, match="g.xf: 1 transforms"):
        shifts_from_xf(xf, path="g.xf")
    assert shifts_from_xf(xf, allow_linear=True).shape == (2, 2)


ALN = """\
# AreTomo Alignment / Priims bprmMn
# RawSize = 1024 1024 5
# NumPatches = 2
# DarkFrame =     0    0   -60.00
# AlphaOffset =     1.50
# BetaOffset =     0.00
# Thickness = 300
# SEC     ROT         GMAG       TX          TY      SMEAN     SFIT    SCALE     BASE     TILT
    0    84.4445    1.00000     13.382     21.802     1.00     1.00     1.00     0.00    -30.00
    1    84.5000    1.00100      1.680     -5.046     1.00     1.00     1.00     0.00      0.00
    2    84.3000    0.99900    -11.101     10.454     1.00     1.00     1.00     0.00     30.00
    3    84.4000    1.00000      0.000      0.000     1.00     1.00     1.00     0.00     60.00
# Local Alignment
   0   0 -300.00  -200.00     -6.93    -36.22   1.0
   0   1  300.00   200.00     -2.53    -21.76   0.0
"""


def test_aln_columns_headers_and_local_block(tmp_path: Path) -> None:
    (tmp_path / "ts.aln").write_text(ALN)
    aln = read_aln(tmp_path / "ts.aln")
    assert aln["section"].tolist() == [0, 1, 2, 3]
    np.testing.assert_allclose(aln["tilt_deg"], [-30, 0, 30, 60])
    np.testing.assert_allclose(aln["tilt_axis_deg"], [84.4445, 84.5, 84.3, 84.4])
    np.testing.assert_allclose(aln["tx_px"], [13.382, 1.68, -11.101, 0.0])
    np.testing.assert_allclose(aln["ty_px"], [21.802, -5.046, 10.454, 0.0])
    np.testing.assert_allclose(aln["mag"], [1.0, 1.001, 0.999, 1.0])
    assert aln["raw_size"] == (1024, 1024, 5)
    assert aln["dark_frames"] == [(0, 0, -60.0)]
    assert aln["alpha_offset_deg"] == 1.5 and aln["thickness_px"] == 300.0
    assert aln["num_patches"] == 2
    assert aln["local"].shape == (2, 7)


def test_aln_bad_rows(tmp_path: Path) -> None:
    (tmp_path / "bad.aln").write_text(ALN.replace("0.99900", "zero"))
    with pytest.raises(FileFormatError, match=r"bad.aln: line 11:"):
        read_aln(tmp_path / "bad.aln")
    (tmp_path / "short.aln").write_text("# SEC ROT\n 0 1.0 2.0\n")
    with pytest.raises(FileFormatError, match="short.aln: line 2: expected 10 columns"):
        read_aln(tmp_path / "short.aln")
