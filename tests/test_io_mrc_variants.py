"""MRC files as microscopes write them: FEI/Thermo, SerialEM and IMOD headers, built here.

Each file is made byte by byte in the test (no download) the way the acquisition program
lays it out; each must read with its data intact and exactly one warning line naming what
was odd (or none when nothing is), and ``emkit info`` must say what the header holds.
A damaged file of the same kinds is still refused.
"""

from __future__ import annotations

import logging
import struct
from pathlib import Path

import numpy as np
import pytest
from mrcfile.dtypes import HEADER_DTYPE, get_ext_header_dtype

from emkit.errors import FileFormatError
from emkit.io import describe, image_contrast, read_volume

NZ, NY, NX = 5, 12, 16
TILTS = np.array([-40.0, -20.0, 0.0, 20.0, 40.0])


def _header(
    data: np.ndarray,
    mode: int,
    *,
    nsymbt: int = 0,
    map_id: bool = True,
    stamp: bool = True,
    exttyp: bytes = b"",
    cell_A: float | None = None,
    labels: tuple[str, ...] = (),
) -> np.recarray:
    h = np.zeros((), dtype=HEADER_DTYPE).view(np.recarray)
    h.nx, h.ny, h.nz = data.shape[2], data.shape[1], data.shape[0]
    h.mode = mode
    h.mx, h.my, h.mz = h.nx, h.ny, h.nz
    if cell_A is not None:
        h.cella.x, h.cella.y, h.cella.z = cell_A * h.nx, cell_A * h.ny, cell_A * h.nz
    h.cellb.alpha = h.cellb.beta = h.cellb.gamma = 90.0
    h.mapc, h.mapr, h.maps = 1, 2, 3
    h.nsymbt = nsymbt
    h.exttyp = exttyp
    h.map = b"MAP " if map_id else b"\0\0\0\0"
    h.machst = bytearray((0x44, 0x44, 0, 0)) if stamp else bytearray(4)
    for i, text in enumerate(labels):
        h.label[i] = text.encode("ascii")
    h.nlabl = len(labels)
    return h


def _raw(h: np.recarray, extended: bytes, data: np.ndarray, *, imod: tuple[int, int] | None = None,
         nint_nreal: tuple[int, int] | None = None) -> bytes:
    raw = bytearray(h.tobytes())
    if imod is not None:
        struct.pack_into("<ii", raw, 152, *imod)
    if nint_nreal is not None:
        struct.pack_into("<hh", raw, 128, *nint_nreal)
    return bytes(raw) + extended + data.astype(data.dtype.newbyteorder("<")).tobytes()


def _counts() -> np.ndarray:
    """uint16 counts of a HAADF series: dark background near 900, a bright specimen."""
    rng = np.random.default_rng(0)
    counts = rng.normal(890, 10, size=(NZ, NY, NX))
    counts[:, 4:8, 5:11] += 20000
    return counts.astype(np.uint16)


def fei_old_file(path: Path) -> np.ndarray:
    """TIA's pre-2014 FEI MRC: no MAP id or stamp, 1024 x 128-byte blocks, uint16 - 32768."""
    stored = (_counts().astype(np.int32) - 32768).astype(np.int16)
    table = np.zeros((1024, 32), dtype="<f4")
    table[:NZ, 0] = TILTS  # a_tilt
    table[:NZ, 11] = 3.36e-9  # pixel size in metres
    table[:NZ, 12] = 115000  # magnification
    h = _header(stored, 1, nsymbt=table.nbytes, map_id=False, stamp=False, cell_A=1.0,
                labels=("    Fei Company (c) Copyright 2003",))
    path.write_bytes(_raw(h, table.tobytes(), stored))
    return stored


def fei1_file(path: Path, exttyp: bytes = b"FEI1") -> np.ndarray:
    """Thermo MRC2014, mode 6 (uint16), an FEI1/FEI2 extended header, voxel size 0."""
    data = _counts()
    dtype = get_ext_header_dtype(exttyp, "<")
    blocks = np.zeros(NZ, dtype=dtype)
    blocks["Metadata size"] = dtype.itemsize
    blocks["Alpha tilt"] = TILTS
    blocks["Pixel size X"] = blocks["Pixel size Y"] = 2.5e-10
    blocks["Tilt axis angle"] = 86.5
    h = _header(data, 6, nsymbt=blocks.nbytes, exttyp=exttyp, cell_A=None)
    h.nversion = 20141
    path.write_bytes(_raw(h, blocks.tobytes(), data))
    return data


def serialem_file(
    path: Path, *, exttyp: bytes = b"SERI", pixel_A: float | None = 7.88
) -> np.ndarray:
    """SerialEM: IMOD stamp, nint = 4 bytes per section, nreal = tilt angle (1) + mag (8)."""
    rng = np.random.default_rng(1)
    data = rng.integers(2000, 9000, size=(NZ, NY, NX)).astype(np.int16)
    ext = np.zeros((NZ, 2), dtype="<i2")
    ext[:, 0] = np.round(TILTS * 100)
    ext[:, 1] = 1000
    nsymbt = 1024  # SerialEM reserves more than it fills; the rest must be skipped
    extended = ext.tobytes() + bytes(nsymbt - ext.nbytes)
    h = _header(data, 1, nsymbt=nsymbt, exttyp=exttyp, cell_A=pixel_A,
                labels=("SerialEM: test scope", "    Tilt axis angle = -87.3, binning = 2"))
    h.nversion = 20140 if exttyp else 0
    path.write_bytes(_raw(h, extended, data, imod=(1146047817, 0), nint_nreal=(4, 1 | 8)))
    return data


def unknown_ext_file(path: Path) -> np.ndarray:
    data = np.arange(NZ * NY * NX, dtype=np.float32).reshape(NZ, NY, NX)
    h = _header(data, 2, nsymbt=300, exttyp=b"XYZW", cell_A=2.0)
    path.write_bytes(_raw(h, bytes(range(256)) + bytes(44), data))
    return data


def _read_with_log(path: Path, caplog: pytest.LogCaptureFixture) -> tuple[object, list[str]]:
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="emkit"):
        volume = read_volume(path)
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    return volume, lines


def test_old_fei_header_is_read_with_one_warning(tmp_path, caplog):
    stored = fei_old_file(tmp_path / "haadf.mrc")
    volume, lines = _read_with_log(tmp_path / "haadf.mrc", caplog)
    np.testing.assert_array_equal(volume.data, stored)  # never changed silently
    assert len(lines) == 1 and "\n" not in lines[0]
    for words in ("no 'MAP ' id", "FEI extended header", "unsigned counts minus 32768",
                  "33.6 Å from the extended header"):
        assert words in lines[0]
    assert volume.voxel_size == pytest.approx((33.6, 33.6, 33.6))
    np.testing.assert_allclose(volume.metadata["extended_header_tilt_angles_deg"], TILTS)


def test_a_file_read_again_quietly_logs_its_oddities_at_debug(tmp_path, caplog):
    from emkit.io._quiet import reads_quietly

    fei_old_file(tmp_path / "haadf.mrc")
    with reads_quietly():
        _, lines = _read_with_log(tmp_path / "haadf.mrc", caplog)
    assert lines == []
    _, lines = _read_with_log(tmp_path / "haadf.mrc", caplog)  # and loudly again after
    assert len(lines) == 1


@pytest.mark.parametrize("exttyp", [b"FEI1", b"FEI2"])
def test_fei1_fei2_mode6_read_tilts_and_pixel_size(tmp_path, caplog, exttyp):
    data = fei1_file(tmp_path / "velox.mrc", exttyp)
    volume, lines = _read_with_log(tmp_path / "velox.mrc", caplog)
    assert volume.data.dtype == np.uint16
    np.testing.assert_array_equal(volume.data, data)
    assert len(lines) == 1 and "voxel size 0 in the header, 2.5 Å" in lines[0]
    info = describe(tmp_path / "velox.mrc")
    assert info["extended_header_type"] == exttyp.decode()
    assert info["extended_header_tilt_angles_deg"] == pytest.approx(list(TILTS))
    assert info["extended_header_pixel_size_A"] == pytest.approx(2.5)
    assert info["header_tilt_axis_angle_deg"] == pytest.approx(86.5)
    assert info["contrast"] == "bright-on-dark"


def test_serialem_header_reads_without_warning(tmp_path, caplog):
    data = serialem_file(tmp_path / "ts.mrc")
    volume, lines = _read_with_log(tmp_path / "ts.mrc", caplog)
    assert lines == []
    np.testing.assert_array_equal(volume.data, data)
    assert volume.voxel_size == pytest.approx((7.88,) * 3)
    info = describe(tmp_path / "ts.mrc")
    assert info["extended_header_type"] == "SERI"
    assert info["extended_header_tilt_angles_deg"] == pytest.approx(list(TILTS))
    assert info["header_tilt_axis_angle_deg"] == pytest.approx(-87.3)


def test_serialem_without_pixel_size_warns_voxel_size_0(tmp_path, caplog):
    serialem_file(tmp_path / "ts.mrc", pixel_A=None)
    volume, lines = _read_with_log(tmp_path / "ts.mrc", caplog)
    assert volume.voxel_size is None
    assert len(lines) == 1 and "voxel size 0" in lines[0]


def test_imod_st_without_exttyp_reads_seri_layout(tmp_path, caplog):
    data = serialem_file(tmp_path / "old.st", exttyp=b"")
    volume, lines = _read_with_log(tmp_path / "old.st", caplog)
    np.testing.assert_array_equal(volume.data, data)
    assert len(lines) == 1 and "SerialEM/IMOD extended header without EXTTYP" in lines[0]
    info = describe(tmp_path / "old.st")
    assert info["kind"] == "image stack"
    assert info["extended_header_tilt_angles_deg"] == pytest.approx(list(TILTS))


def test_unknown_extended_header_is_skipped_by_its_size(tmp_path, caplog):
    data = unknown_ext_file(tmp_path / "odd.mrc")
    volume, lines = _read_with_log(tmp_path / "odd.mrc", caplog)
    np.testing.assert_array_equal(volume.data, data)
    assert len(lines) == 1 and "300-byte extended header of unknown type" in lines[0]


def test_emkit_written_file_reads_without_warning(tmp_path, caplog):
    from emkit.io import write_volume

    write_volume(tmp_path / "plain.mrc", np.ones((3, 8, 8), np.float32))
    _, lines = _read_with_log(tmp_path / "plain.mrc", caplog)
    assert lines == []


@pytest.mark.parametrize("cut", [1, 100, NY * NX * 2])
def test_truncated_fei_file_is_refused(tmp_path, cut):
    fei_old_file(tmp_path / "haadf.mrc")
    raw = (tmp_path / "haadf.mrc").read_bytes()
    (tmp_path / "cut.mrc").write_bytes(raw[:-cut])
    with pytest.raises(FileFormatError, match="not a valid MRC"):
        read_volume(tmp_path / "cut.mrc")


def test_image_contrast_tells_haadf_from_bright_field():
    rng = np.random.default_rng(2)
    background = rng.normal(0, 1, size=(3, 64, 64))
    specimen = np.zeros_like(background)
    specimen[:, 20:36, 24:40] = 10
    assert image_contrast(background + specimen) == "bright-on-dark"
    assert image_contrast(100 - background - specimen) == "dark-on-bright"
    assert image_contrast(background) == "unclear"


def test_an_odd_map_id_is_named(tmp_path, caplog):
    data = unknown_ext_file(tmp_path / "odd.mrc")
    raw = bytearray((tmp_path / "odd.mrc").read_bytes())
    raw[104:108] = b"CCP4"  # a known extended-header type: only the id is odd now
    raw[208:212] = b"map\0"
    (tmp_path / "odd.mrc").write_bytes(bytes(raw))
    volume, lines = _read_with_log(tmp_path / "odd.mrc", caplog)
    np.testing.assert_array_equal(volume.data, data)
    assert len(lines) == 1 and "map id b'map\\x00', not 'MAP '" in lines[0]


def test_unsigned_counts_found_in_a_large_mapped_file_from_a_few_pages(tmp_path):
    """Above ~1 M values the check reads 64 contiguous runs, not a stride through every
    page: a mapped 4096^2 series is then not pulled into memory by opening it."""
    from emkit.io._mrc_variants import unsigned_offset_median

    rng = np.random.default_rng(5)
    counts = rng.integers(800, 1200, size=(5, 700, 700))  # 2.45 M values
    stored = (counts - 32768).astype(np.int16)
    path = tmp_path / "big.npy"
    np.save(path, stored)
    mapped = np.load(path, mmap_mode="r")
    median = unsigned_offset_median(mapped)
    assert median is not None and -32768 + 800 <= median <= -32768 + 1200
    assert unsigned_offset_median((counts - 1000).astype(np.int16)) is None  # signed data
