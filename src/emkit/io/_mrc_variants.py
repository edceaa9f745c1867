"""What microscopes really write into MRC headers: FEI/Thermo, SerialEM and IMOD variants.

MRC2014 is the standard, but files straight from a microscope often stray from it. The
header is read here byte by byte (not through mrcfile's strict parser), so that a file
whose layout is consistent can be read even when a detail is odd, and every odd detail is
named in ONE warning line:

- no ``"MAP "`` id (FEI/Thermo TIA and older programs) or an unknown machine stamp
  (read as little-endian, the only byte order these programs wrote);
- extended headers: FEI1/FEI2 (Thermo MRC2014, per-section metadata blocks), the older FEI
  layout without EXTTYP (1024 blocks of 128 bytes: tilt angle, pixel size in metres, ...),
  SerialEM/IMOD ``SERI`` (``nint`` bytes per section, ``nreal`` flags; also without EXTTYP
  in pre-2014 files), others skipped by their ``nsymbt`` size;
- voxel size 0 or an unset 1 Å beside a pixel size in the extended header (the latter wins);
- mode 1 (int16) holding unsigned counts minus 32768 (values crowd just above -32768).

Nothing here changes the data: offsets and contrast are reported, never silently removed.
"""

from __future__ import annotations

import bz2
import gzip
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

_HEADER_BYTES = 1024
# The old FEI extended header: 1024 blocks of 32 float32 (a_tilt, b_tilt, x/y/z stage,
# x/y shift, defocus, exp_time, mean_int, tilt_axis, pixel_size [m], magnification, ...).
_OLD_FEI_BYTES = 1024 * 128
_OLD_FEI_FIELDS = {"tilt": 0, "tilt_axis": 10, "pixel_m": 11}
# SerialEM / IMOD per-section flags (nreal bits) and their sizes in bytes, in file order.
_SERI_FLAG_BYTES = ((1, 2), (2, 6), (4, 4), (8, 2), (16, 2), (32, 4))
_SERI_TILT_FLAG = 1
_KNOWN_EXTTYPES = ("CCP4", "MRCO", "SERI", "AGAR", "FEI1", "FEI2", "HDF5")
# Read at most this much of an extended header for its metadata (FEI1 of 1000 sections is
# under 1 MB); the rest is skipped, as the data offset needs only nsymbt.
_MAX_EXTENDED_READ = 1 << 24
# mode 1 holding unsigned counts minus 32768: more than half the values this close to -32768.
_UNSIGNED_WINDOW = 4096
_TILT_AXIS_LABEL = re.compile(r"tilt axis angle\s*=\s*(-?\d+(?:\.\d+)?)", re.IGNORECASE)


@dataclass
class MrcHeaderFacts:
    """What an MRC header says beyond the array, and what in it was odd.

    ``byte_order`` is ``"<"`` or ``">"``; ``extended_type`` names the extended header
    (``"FEI1"``, ``"FEI (no EXTTYP)"``, ``"SERI"``, ...) or is None without one;
    ``tilt_angles_deg`` (one per section), ``pixel_size_A`` and ``tilt_axis_angle_deg`` come
    from the extended header or labels when they hold them; ``oddities`` lists, in words,
    what departs from MRC2014.
    """

    nx: int
    ny: int
    nz: int
    mode: int
    extended_bytes: int
    byte_order: str
    map_id: bool
    machine_stamp: bool
    extended_type: str | None = None
    tilt_angles_deg: np.ndarray | None = None
    pixel_size_A: float | None = None
    tilt_axis_angle_deg: float | None = None
    labels: list[str] = field(default_factory=list)
    oddities: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """The facts for ``emkit info`` (JSON-ready)."""
        angles = self.tilt_angles_deg
        return {
            "extended_header_type": self.extended_type,
            "extended_header_tilt_angles_deg": (
                None if angles is None else [round(float(a), 3) for a in angles]
            ),
            "extended_header_pixel_size_A": self.pixel_size_A,
            "header_tilt_axis_angle_deg": self.tilt_axis_angle_deg,
        }


def _open_raw(path: Path) -> Any:
    name = path.name.lower()
    if name.endswith(".gz"):
        return gzip.open(path, "rb")
    if name.endswith(".bz2"):
        return bz2.open(path, "rb")
    return open(path, "rb")


def _byte_order(raw: bytes) -> tuple[str, bool]:
    """Byte order from the machine stamp (bytes 212-215); unknown stamps read little-endian."""
    stamp = raw[212:216]
    if stamp[0] == 0x44 and stamp[1] in (0x44, 0x41):
        return "<", True
    if stamp[0] == 0x11 and stamp[1] == 0x11:
        return ">", True
    return "<", False


def read_header_facts(path: Path) -> MrcHeaderFacts | None:
    """Parse the 1024-byte header (and the start of the extended header) of ``path``.

    Returns None when the file is shorter than a header. Never raises on odd values: the
    caller decides whether the layout is consistent.
    """
    with _open_raw(path) as fh:
        raw = fh.read(_HEADER_BYTES)
        if len(raw) < _HEADER_BYTES:
            return None
        order, stamp_ok = _byte_order(raw)
        words = np.frombuffer(raw[:96], dtype=f"{order}i4")
        nsymbt = int(words[23])
        extended = fh.read(min(max(nsymbt, 0), _MAX_EXTENDED_READ)) if nsymbt > 0 else b""
    facts = MrcHeaderFacts(
        nx=int(words[0]), ny=int(words[1]), nz=int(words[2]), mode=int(words[3]),
        extended_bytes=nsymbt, byte_order=order, map_id=raw[208:212] == b"MAP ",
        machine_stamp=stamp_ok,
    )
    facts.labels = _labels(raw, order)
    if not facts.map_id:
        found = raw[208:212]
        facts.oddities.append(
            "no 'MAP ' id" if not found.strip(b"\0 ") else f"map id {found!r}, not 'MAP '"
        )
    if not stamp_ok:
        facts.oddities.append("unknown machine stamp (read as little-endian)")
    if nsymbt > 0:
        _read_extended(facts, raw, extended)
    if facts.tilt_axis_angle_deg is None:
        facts.tilt_axis_angle_deg = _label_tilt_axis(facts.labels)
    return facts


def _labels(raw: bytes, order: str) -> list[str]:
    count = int(np.frombuffer(raw[220:224], dtype=f"{order}i4")[0])
    count = min(max(count, 0), 10)
    return [
        text
        for i in range(count)
        if (text := raw[224 + 80 * i : 304 + 80 * i].decode("ascii", "replace").strip(" \0"))
    ]


def _label_tilt_axis(labels: list[str]) -> float | None:
    for label in labels:
        match = _TILT_AXIS_LABEL.search(label)
        if match:
            return float(match.group(1))
    return None


def _read_extended(facts: MrcHeaderFacts, raw: bytes, extended: bytes) -> None:
    """Name the extended header and take tilt angles and pixel size from it."""
    exttyp = raw[104:108].decode("ascii", "replace")
    order = facts.byte_order
    nint, nreal = (int(v) for v in np.frombuffer(raw[128:132], dtype=f"{order}i2"))
    if exttyp in ("FEI1", "FEI2"):
        facts.extended_type = exttyp
        _read_fei_blocks(facts, extended, exttyp)
    elif exttyp == "SERI" or (exttyp not in _KNOWN_EXTTYPES and _seri_layout(nint, nreal)):
        facts.extended_type = "SERI" if exttyp == "SERI" else "SERI (nint/nreal, no EXTTYP)"
        if exttyp != "SERI":
            facts.oddities.append(
                f"{facts.extended_bytes}-byte SerialEM/IMOD extended header without EXTTYP"
            )
        _read_seri_blocks(facts, extended, nint, nreal)
    elif exttyp not in _KNOWN_EXTTYPES and _old_fei_layout(facts, extended):
        facts.extended_type = "FEI (no EXTTYP)"
        facts.oddities.append(f"{facts.extended_bytes}-byte FEI extended header without EXTTYP")
        _read_old_fei_blocks(facts, extended)
    elif exttyp in _KNOWN_EXTTYPES:
        facts.extended_type = exttyp
    else:
        facts.extended_type = f"unknown {exttyp.strip(chr(0)) or '(blank)'}"
        facts.oddities.append(
            f"{facts.extended_bytes}-byte extended header of unknown type skipped"
        )


def _seri_layout(nint: int, nreal: int) -> bool:
    """nint/nreal describe SerialEM per-section data (flags of known items that fit)."""
    if nint <= 0 or nreal <= 0 or nreal >= 1 << 16:
        return False
    needed = sum(size for flag, size in _SERI_FLAG_BYTES if nreal & flag)
    return 0 < needed <= nint


def _read_seri_blocks(facts: MrcHeaderFacts, extended: bytes, nint: int, nreal: int) -> None:
    if nint <= 0 or not nreal & _SERI_TILT_FLAG or len(extended) < nint * facts.nz:
        return
    blocks = np.frombuffer(extended[: nint * facts.nz], dtype=np.uint8).reshape(facts.nz, nint)
    tilt = blocks[:, :2].copy().view(f"{facts.byte_order}i2")[:, 0] / 100.0
    facts.tilt_angles_deg = tilt.astype(np.float64)


def _old_fei_layout(facts: MrcHeaderFacts, extended: bytes) -> bool:
    """The pre-2014 FEI layout: 131072 bytes, plausible tilt angles and pixel sizes."""
    if facts.extended_bytes != _OLD_FEI_BYTES or len(extended) < _OLD_FEI_BYTES:
        return False
    if not 1 <= facts.nz <= 1024:
        return False
    table = np.frombuffer(extended, dtype=f"{facts.byte_order}f4").reshape(1024, 32)
    used = table[: facts.nz]
    tilt, pixel = used[:, _OLD_FEI_FIELDS["tilt"]], used[:, _OLD_FEI_FIELDS["pixel_m"]]
    return bool(
        np.all(np.isfinite(used[:, :16]))
        and np.all(np.abs(tilt) <= 90)
        and np.all((pixel >= 0) & (pixel < 1e-5))
    )


def _read_old_fei_blocks(facts: MrcHeaderFacts, extended: bytes) -> None:
    table = np.frombuffer(extended, dtype=f"{facts.byte_order}f4").reshape(1024, 32)
    used = table[: facts.nz].astype(np.float64)
    facts.tilt_angles_deg = used[:, _OLD_FEI_FIELDS["tilt"]].copy()
    _set_pixel_size(facts, used[:, _OLD_FEI_FIELDS["pixel_m"]])
    axis = used[:, _OLD_FEI_FIELDS["tilt_axis"]]
    if np.any(axis != 0):
        facts.tilt_axis_angle_deg = float(np.median(axis))


def _read_fei_blocks(facts: MrcHeaderFacts, extended: bytes, exttyp: str) -> None:
    from mrcfile.dtypes import get_ext_header_dtype

    dtype = get_ext_header_dtype(exttyp.encode(), facts.byte_order)
    if dtype is None or len(extended) < 4:
        return
    block = int(np.frombuffer(extended[:4], dtype=f"{facts.byte_order}i4")[0])
    if block < dtype.itemsize or len(extended) < block * facts.nz:
        return
    rows = np.frombuffer(extended[: block * facts.nz], dtype=np.uint8).reshape(facts.nz, block)
    table = rows[:, : dtype.itemsize].copy().view(dtype)[:, 0]
    facts.tilt_angles_deg = np.asarray(table["Alpha tilt"], dtype=np.float64)
    _set_pixel_size(facts, np.asarray(table["Pixel size X"], dtype=np.float64))
    axis = np.asarray(table["Tilt axis angle"], dtype=np.float64)
    if np.all(np.isfinite(axis)) and np.any(axis != 0):
        facts.tilt_axis_angle_deg = float(np.median(axis))


def _set_pixel_size(facts: MrcHeaderFacts, pixel_m: np.ndarray) -> None:
    good = pixel_m[np.isfinite(pixel_m) & (pixel_m > 0) & (pixel_m < 1e-5)]
    if good.size:
        facts.pixel_size_A = float(np.median(good) * 1e10)


def layout_is_consistent(facts: MrcHeaderFacts, file_bytes: int | None) -> bool:
    """Dimensions >= 1, a known mode and (uncompressed) exactly the bytes they describe."""
    from emkit.io._mrc import mode_itemsize

    itemsize = mode_itemsize(facts.mode)
    if itemsize is None or min(facts.nx, facts.ny, facts.nz) < 1 or facts.extended_bytes < 0:
        return False
    expected = _HEADER_BYTES + facts.extended_bytes + facts.nx * facts.ny * facts.nz * itemsize
    return file_bytes is None or file_bytes == expected


def unsigned_offset_median(data: np.ndarray) -> float | None:
    """The median when int16 values look like unsigned counts minus 32768, else None.

    Counts stored that way crowd just above -32768 (the background of a HAADF series sits
    near -31,880); signed data of any real source rarely puts half its values there.
    Checked on at most ~1 M values in 64 contiguous runs spread over the array: a mapped
    file of any size then has only those pages read, not every page (a stride through
    the whole array would map all of it into memory).
    """
    if data.dtype != np.int16 or data.size == 0:
        return None
    # a view also of a transposed map (reshape would copy it whole); order is irrelevant
    flat = data.ravel(order="K")
    runs, run_length = 64, 16_384
    if flat.size <= runs * run_length:
        sample = np.asarray(flat, dtype=np.float64)
    else:
        starts = np.linspace(0, flat.size - run_length, runs).astype(np.int64)
        sample = np.concatenate(
            [np.asarray(flat[s : s + run_length], dtype=np.float64) for s in starts]
        )
    median = float(np.median(sample))
    return median if median < -32768 + _UNSIGNED_WINDOW else None


def header_voxel_size_is_unset(voxel_size: tuple[float, float, float] | None) -> bool:
    """No voxel size, or exactly 1 Å: what writers that never set it leave."""
    return voxel_size is None or all(v == 1.0 for v in voxel_size)
