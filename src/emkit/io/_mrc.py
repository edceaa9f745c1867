"""MRC / MRCS (and IMOD's .st, .ali, .rec, .map) through mrcfile, voxel size and origin kept."""

from __future__ import annotations

import logging
import os
import time
import zlib
from pathlib import Path
from typing import Any

import mrcfile
import numpy as np
from mrcfile.constants import MAP_ID
from mrcfile.dtypes import HEADER_DTYPE

from emkit import __version__
from emkit.errors import FileFormatError, ShapeError, with_path
from emkit.io._mrc_variants import (
    MrcHeaderFacts,
    header_voxel_size_is_unset,
    layout_is_consistent,
    read_header_facts,
    unsigned_offset_median,
)
from emkit.io._paths import MRC_STACK_SUFFIXES, PathLike, full_suffix
from emkit.io._quiet import python_warnings_to_log, read_warning_level
from emkit.io._tempfiles import _DISK_FULL_ERRNOS
from emkit.io._volume import Volume

logger = logging.getLogger(__name__)

# IMOD marks its headers with this stamp (bytes 152-155, "IMOD" as int32). Bit 0 of the
# flags word (bytes 156-159) set means mode-0 bytes are signed; IMOD files without it hold
# unsigned bytes, although MRC2014 says mode 0 is signed.
_IMOD_STAMP = 1146047817
_IMOD_STAMP_OFFSET = 152
_IMOD_FLAG_SIGNED_BYTES = 1

# Copy data into a new file in slabs of about this many bytes, so writing a memory-mapped
# tomogram never needs a second full copy in memory.
_SLAB_BYTES = 1 << 28

_CORRUPT_HINT = ("is not a valid MRC file (not MRC at all, or truncated): check what the file "
                 "is, re-export it or check the transfer")

_HEADER_BYTES = 1024

# What a damaged file makes mrcfile, numpy, gzip or bz2 raise.
_READ_ERRORS = (ValueError, OSError, EOFError, OverflowError, zlib.error, IndexError)

# Modes mrcfile reads (not 3, complex int16, nor 101, packed 4-bit), for the messages.
_MODE_NAMES = {
    0: "int8",
    1: "int16",
    2: "float32",
    4: "complex64",
    6: "uint16",
    12: "float16",
}


def _corrupt(path: PathLike, error: BaseException) -> FileFormatError:
    return FileFormatError(with_path(path, f"{_CORRUPT_HINT} ({error})"))


def _data_bytes(nx: int, ny: int, nz: int, mode: int) -> int:
    return nx * ny * nz * int(mrcfile.utils.dtype_from_mode(mode).itemsize)


def mode_itemsize(mode: int) -> int | None:
    """Bytes per value of an MRC mode emkit reads, None for another mode."""
    if mode not in _MODE_NAMES:
        return None
    return int(mrcfile.utils.dtype_from_mode(mode).itemsize)


def _tolerated_header(path: Path, compressed: bool, error: BaseException) -> MrcHeaderFacts:
    """The header of a file mrcfile's strict parser refused for a detail microscopes get wrong.

    Only a missing "MAP " id or an unknown machine stamp is forgiven, and only when the
    dimensions, mode and (uncompressed) file size agree exactly; anything else is corrupt.
    """
    try:
        facts = read_header_facts(path)
    except _READ_ERRORS:
        facts = None
    if (
        facts is None
        or (facts.map_id and facts.machine_stamp)
        or not layout_is_consistent(facts, None if compressed else path.stat().st_size)
    ):
        raise _corrupt(path, error) from None
    return facts


def _check_header(path: Path, compressed: bool) -> bool:
    """Refuse a header that cannot describe this file, before any data are mapped or read.

    Dimensions must be at least 1, the mode known, the extended-header size not negative;
    an uncompressed file must hold exactly the header, extended header and data its header
    describes (a shorter file is truncated; a longer one has a wrong mode or dimensions).
    Compressed data that would not fit in this machine's memory are refused too.

    Returns True when the file must be opened permissively (no "MAP " id or an unknown
    machine stamp, with an otherwise consistent layout; see ``_tolerated_header``).
    """
    permissive = False
    try:
        with (
            python_warnings_to_log(logger),
            mrcfile.open(path, header_only=True, permissive=False) as mrc,
        ):
            h = mrc.header
            nx, ny, nz = int(h.nx), int(h.ny), int(h.nz)
            mode, extended = int(h.mode), int(h.nsymbt)
    except _READ_ERRORS as error:
        if "mode" in str(error).lower():
            raise _unknown_mode(path, str(error)) from None
        facts = _tolerated_header(path, compressed, error)
        nx, ny, nz, mode, extended = facts.nx, facts.ny, facts.nz, facts.mode, facts.extended_bytes
        permissive = True
    if min(nx, ny, nz) < 1:
        raise FileFormatError(
            with_path(
                path,
                f"MRC header gives dimensions nx={nx}, ny={ny}, nz={nz}; each must be at "
                "least 1: the header is damaged, re-export the file",
            )
        )
    if mode not in _MODE_NAMES:
        raise _unknown_mode(path, f"mode {mode}")
    if extended < 0:
        raise FileFormatError(
            with_path(path, f"MRC header gives a negative extended-header size ({extended})")
        )
    data_bytes = _data_bytes(nx, ny, nz, mode)
    expected = _HEADER_BYTES + extended + data_bytes
    layout = (
        f"its header describes {nx} x {ny} x {nz} mode-{mode} ({_MODE_NAMES[mode]}) values"
        f"{f' after a {extended}-byte extended header' if extended else ''}, "
        f"{expected} bytes in all"
    )
    if compressed:
        total = _physical_memory()
        if total is not None and data_bytes > total:
            raise FileFormatError(
                with_path(
                    path,
                    f"{layout}, more than this machine's memory ({total} bytes); the header "
                    "is damaged or the file must be decompressed and memory-mapped",
                )
            )
        return permissive
    actual = path.stat().st_size
    if actual < expected:
        raise FileFormatError(
            with_path(
                path,
                f"is not a valid MRC file (truncated?): {layout} but the file has only "
                f"{actual}; re-export it or check the transfer",
            )
        )
    if actual > expected:
        raise FileFormatError(
            with_path(
                path,
                f"is {actual - expected} bytes longer than its header says ({layout}, the "
                f"file has {actual}): the header's mode or dimensions are wrong or the file "
                "is damaged; re-export it",
            )
        )
    return permissive


def _unknown_mode(path: Path, detail: str) -> FileFormatError:
    known = ", ".join(f"{m} ({name})" for m, name in _MODE_NAMES.items())
    return FileFormatError(
        with_path(
            path,
            f"unknown MRC data mode ({detail}); emkit reads modes {known}: the header is "
            "damaged or the file is not an MRC file",
        )
    )


def _physical_memory() -> int | None:
    try:
        return int(os.sysconf("SC_PHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def _is_compressed(path: PathLike) -> bool:
    return full_suffix(path).endswith((".gz", ".bz2"))


def _imod_unsigned_bytes(header: np.recarray) -> bool:
    """True when an IMOD-stamped mode-0 file holds unsigned bytes."""
    raw = header.tobytes()
    int_dtype = header.dtype["nx"]
    stamp, flags = np.frombuffer(raw[_IMOD_STAMP_OFFSET : _IMOD_STAMP_OFFSET + 8], int_dtype)
    return int(stamp) == _IMOD_STAMP and not int(flags) & _IMOD_FLAG_SIGNED_BYTES


def _axis_permutation(header: np.recarray) -> tuple[int, int, int] | None:
    """Transpose that turns the file's (section, row, column) order into (z, y, x).

    None for the standard mapping (columns = x, rows = y, sections = z).
    """
    file_axes = (int(header.maps), int(header.mapr), int(header.mapc))  # 1=x, 2=y, 3=z
    if file_axes == (3, 2, 1) or sorted(file_axes) != [1, 2, 3]:
        return None
    perm = tuple(file_axes.index(axis) for axis in (3, 2, 1))
    return perm[0], perm[1], perm[2]


def _voxel_size_zyx(mrc: Any) -> tuple[float, float, float] | None:
    vs = mrc.voxel_size
    zyx = (float(vs.z), float(vs.y), float(vs.x))
    if not all(np.isfinite(zyx)) or min(zyx) <= 0:
        return None
    return zyx


def _origin_zyx(
    header: np.recarray, voxel_size: tuple[float, float, float] | None
) -> tuple[float, float, float]:
    origin = (float(header.origin.z), float(header.origin.y), float(header.origin.x))
    if not all(np.isfinite(origin)):
        return (0.0, 0.0, 0.0)
    start = (int(header.nzstart), int(header.nystart), int(header.nxstart))
    # Files from older programs keep the origin only in n*start (in voxels); the header's
    # origin field (Å) wins when it is set, as in ChimeraX.
    if origin == (0.0, 0.0, 0.0) and any(start) and voxel_size is not None:
        return (
            float(start[0] * voxel_size[0]),
            float(start[1] * voxel_size[1]),
            float(start[2] * voxel_size[2]),
        )
    return origin


def _header_is_stack(header: np.recarray, path: PathLike) -> bool:
    # MRC2014: a stack has space group 0; a volume has 1 and mz = nz. Many maps carry ispg 0
    # with mz = nz, so those count as stacks only under a stack suffix (.mrcs, .st, ...).
    if int(header.ispg) != 0 or int(header.nz) <= 1:
        return False
    return int(header.mz) != int(header.nz) or full_suffix(path) in MRC_STACK_SUFFIXES


def is_mrc_stack(path: PathLike) -> bool:
    """True when an MRC file holds a stack of 2D images rather than one volume.

    A header with space group 0 and ``mz != nz`` is a stack (MRC2014); space group 0 with
    ``mz == nz`` counts as a stack only under a stack suffix (``.mrcs``, ``.st``, ``.ali``).
    """
    permissive = _check_header(Path(path), _is_compressed(path))
    try:
        with (
            python_warnings_to_log(logger),
            mrcfile.open(path, header_only=True, permissive=permissive) as mrc,
        ):
            return _header_is_stack(mrc.header, path)
    except _READ_ERRORS as error:
        raise _corrupt(path, error) from None


def _refuse_extra_data(path: Path, caught: list[Any]) -> None:
    """The size check of a compressed file can only happen once it is decompressed;
    mrcfile merely warns about bytes after the data."""
    longer = [str(w.message) for w in caught if "larger than expected" in str(w.message)]
    if longer:
        raise FileFormatError(
            with_path(
                path,
                f"holds more data than its header describes ({longer[0]}): the header's mode "
                "or dimensions are wrong or the file is damaged; re-export it",
            )
        )


def _microscope_metadata(
    path: Path,
    facts: MrcHeaderFacts | None,
    data: np.ndarray,
    voxel_size: tuple[float, float, float] | None,
) -> tuple[tuple[float, float, float] | None, dict[str, Any]]:
    """The voxel size to use and what the header says beyond it; one warning if anything is odd.

    A pixel size in the extended header (FEI) replaces a header voxel size of 0 or exactly
    1 Å (what writers that never set it leave). Mode-1 values that look like unsigned
    counts minus 32768 are named, never changed.
    """
    if facts is None:
        return voxel_size, {}
    oddities = list(facts.oddities)
    header_size = voxel_size
    # Files emkit writes without a voxel size have 0 too: only a microscope's file (one
    # with an extended header or another odd detail) is worth a warning for it.
    if voxel_size is None and facts.pixel_size_A is None and (oddities or facts.extended_bytes):
        oddities.append("voxel size 0 (no pixel size in the header)")
    if facts.pixel_size_A is not None and header_voxel_size_is_unset(voxel_size):
        pixel = facts.pixel_size_A
        was = "0" if voxel_size is None else "1 Å"
        oddities.append(
            f"voxel size {was} in the header, {pixel:.4g} Å from the extended header used"
        )
        voxel_size = (pixel, pixel, pixel)
    offset_median = unsigned_offset_median(data) if int(facts.mode) == 1 else None
    if offset_median is not None:
        oddities.append(
            f"mode-1 values look like unsigned counts minus 32768 (median {offset_median:.0f}); "
            "kept as stored"
        )
    if oddities:
        logger.log(read_warning_level(), "%s: unusual MRC header: %s", path,
                   "; ".join(oddities))
    metadata = {
        **facts.summary(),
        "header_voxel_size_A": header_size,
        "unsigned_offset_suspected": offset_median is not None,
        "oddities": oddities,
    }
    return voxel_size, metadata


def read_mrc(path: PathLike, *, mmap: bool = False) -> Volume:
    """Read an MRC file (modes 0, 1, 2, 6, 12) into a :class:`Volume`.

    Parameters
    ----------
    path : path-like
        ``.mrc``, ``.mrcs``, ``.st``, ``.ali``, ``.rec``, ``.map`` (also gzip-compressed).
    mmap : bool
        Memory-map the data instead of reading it (read-only; not for compressed files).

    Returns
    -------
    Volume
        ``data`` in the file's dtype, ``(z, y, x)`` (or ``(y, x)`` for one image),
        ``voxel_size`` and ``origin`` in Å, ``(z, y, x)``.

    Raises
    ------
    FileFormatError
        The header is checked before any data are mapped: dimensions below 1, an unknown
        mode, or a file shorter (truncated) or longer (wrong mode/dimensions) than the
        header describes; compressed data larger than this machine's memory; a damaged
        gzip/bzip2 stream.
    ShapeError
        A 4D volume stack.
    """
    path = Path(path)
    compressed = _is_compressed(path)
    use_mmap = mmap and not compressed
    permissive = _check_header(path, compressed)
    try:
        # Uncompressed files are mapped and, unless mmap was asked for, copied once into
        # an ordinary writable array (mrcfile.open would give a read-only view of a buffer).
        opener = mrcfile.open if compressed else mrcfile.mmap
        with (
            python_warnings_to_log(logger) as caught,
            opener(path, mode="r", permissive=permissive) as mrc,
        ):
            if mrc.data is None:  # permissive mode warns about short data instead
                raise ValueError("no data block")
            header = mrc.header.copy()
            data = mrc.data if use_mmap else np.array(mrc.data)
            voxel_size = _voxel_size_zyx(mrc)
        facts = read_header_facts(path)
    except _READ_ERRORS as error:
        raise _corrupt(path, error) from None
    _refuse_extra_data(path, caught)
    if data.ndim > 3:
        raise ShapeError(
            with_path(path, f"is a {data.ndim}D MRC volume stack; split it into single volumes")
        )
    if int(header.mode) == 0 and _imod_unsigned_bytes(header):
        data = data.view(np.uint8)
    if data.ndim == 3:
        perm = _axis_permutation(header)
        if perm is not None:
            data = (
                np.ascontiguousarray(data.transpose(perm)) if not use_mmap else data.transpose(perm)
            )
    voxel_size, metadata = _microscope_metadata(path, facts, data, voxel_size)
    origin = _origin_zyx(header, voxel_size)
    return Volume(
        data=data, voxel_size=voxel_size, origin=origin, path=path, metadata=metadata
    )


def _slab_stats(data: np.ndarray) -> tuple[float, float, float, float]:
    """min, max, mean, rms (standard deviation) of ``data``, computed in slabs (float64)."""
    if data.size == 0:
        return 0.0, 0.0, 0.0, 0.0
    flat = data.reshape(-1, *data.shape[-2:]) if data.ndim >= 2 else data.reshape(1, -1)
    step = max(1, _SLAB_BYTES // max(1, flat[0].nbytes * 2))
    lo, hi, total, total_sq = np.inf, -np.inf, 0.0, 0.0
    for start in range(0, flat.shape[0], step):
        with np.errstate(invalid="ignore"):  # a signalling NaN warns when cast
            block = np.asarray(flat[start : start + step], dtype=np.float64)
        lo = min(lo, float(block.min()))
        hi = max(hi, float(block.max()))
        total += float(block.sum())
        total_sq += float(np.square(block).sum())
    mean = total / data.size
    var = max(total_sq / data.size - mean * mean, 0.0)
    return lo, hi, mean, float(np.sqrt(var))


def write_mrc(
    path: PathLike,
    data: np.ndarray,
    *,
    voxel_size: tuple[float, float, float] | None,
    origin: tuple[float, float, float],
    stack: bool | None = None,
) -> None:
    """Write ``data`` as a mode-2 (float32) MRC file at ``path`` (no atomic rename here).

    Parameters
    ----------
    data : ndarray
        ``(z, y, x)`` volume, ``(n, y, x)`` stack or ``(y, x)`` image; cast to float32.
    voxel_size, origin : (z, y, x) in Å
    stack : bool or None
        Mark a 3D array as an image stack (ispg 0); None decides by suffix
        (``.mrcs``, ``.st``, ``.ali``, ``.preali`` are stacks).
    """
    path = Path(path)
    if data.ndim not in (2, 3):
        raise ShapeError(
            with_path(path, f"MRC holds 2D images or 3D volumes/stacks, not {data.ndim}D data")
        )
    if stack is None:
        stack = full_suffix(path) in MRC_STACK_SUFFIXES
    needed = _HEADER_BYTES + 4 * int(np.prod(data.shape, dtype=np.int64))
    try:
        if _is_compressed(path):
            compression = "bzip2" if full_suffix(path).endswith(".bz2") else "gzip"
            with (
                python_warnings_to_log(logger),
                mrcfile.new(path, overwrite=True, compression=compression) as mrc,
            ):
                mrc.set_data(np.asarray(data, dtype=np.float32))
                _finish_header(mrc, data, voxel_size, origin, stack)
            return
        _write_buffered(path, data, voxel_size, origin, stack)
    except OSError as error:
        if error.errno not in _DISK_FULL_ERRNOS:
            raise
        from emkit.io._tempfiles import disk_full_error

        full = disk_full_error(path, needed)
        # Still a disk-full OSError to the caller, so atomic_output names the final path.
        full.errno = error.errno
        raise full from None


# A full disk (or quota) while writing (_DISK_FULL_ERRNOS); never a memory map, whose
# writes die of SIGBUS.


def _write_buffered(
    path: Path,
    data: np.ndarray,
    voxel_size: tuple[float, float, float] | None,
    origin: tuple[float, float, float],
    stack: bool,
) -> None:
    """Header, then the data as little-endian float32 in slabs, with ordinary buffered writes.

    A memory-mapped write (mrcfile.new_mmap) kills the process with SIGBUS when the disk
    fills; ``write`` raises ENOSPC instead, which becomes emkit's one-line error.
    """
    shape = data.shape if data.ndim == 3 else (1, *data.shape)
    nz, ny, nx = (int(n) for n in shape)
    header = np.zeros((), dtype=HEADER_DTYPE).view(np.recarray)
    header.map = MAP_ID
    header.nversion = 20141
    byte_order = np.dtype(HEADER_DTYPE)["mode"].byteorder
    header.machst = mrcfile.utils.machine_stamp_from_byte_order(byte_order)
    header.mode = 2
    header.nx, header.ny, header.nz = nx, ny, nz
    header.mx, header.my = nx, ny
    header.cellb.alpha = header.cellb.beta = header.cellb.gamma = 90.0
    header.mapc, header.mapr, header.maps = 1, 2, 3
    if data.ndim == 2 or stack:
        header.ispg, header.mz = 0, 1
    else:
        header.ispg, header.mz = 1, nz
    if voxel_size is not None:
        vz, vy, vx = (float(v) for v in voxel_size)
        header.cella.x, header.cella.y, header.cella.z = vx * nx, vy * ny, vz * int(header.mz)
    header.origin.x, header.origin.y, header.origin.z = (
        float(origin[2]),
        float(origin[1]),
        float(origin[0]),
    )
    header.dmin, header.dmax, header.dmean, header.rms = _slab_stats(data)
    header.label[0] = _label().encode("ascii")[:80]
    header.nlabl = 1
    out_dtype = np.dtype(np.float32).newbyteorder(byte_order)
    src = data.reshape(shape)
    step = max(1, _SLAB_BYTES // max(1, src[0].size * 8))
    with open(path, "wb") as fh:
        fh.write(header.tobytes())
        for start in range(0, nz, step):
            block = np.ascontiguousarray(src[start : start + step], dtype=out_dtype)
            fh.write(block.reshape(-1).view(np.uint8).data)


def _label() -> str:
    return f"emkit {__version__}: written {time.strftime('%d-%b-%y  %H:%M:%S')}"


def _finish_header(
    mrc: Any,
    data: np.ndarray,
    voxel_size: tuple[float, float, float] | None,
    origin: tuple[float, float, float],
    stack: bool,
) -> None:
    if data.ndim == 3:
        if stack:
            mrc.set_image_stack()
        else:
            mrc.set_volume()
    if voxel_size is not None:
        mrc.voxel_size = (float(voxel_size[2]), float(voxel_size[1]), float(voxel_size[0]))
    header = mrc.header
    header.origin.x, header.origin.y, header.origin.z = (
        float(origin[2]),
        float(origin[1]),
        float(origin[0]),
    )
    lo, hi, mean, rms = _slab_stats(data)
    header.dmin, header.dmax, header.dmean, header.rms = lo, hi, mean, rms
    header.label[0] = _label().encode("ascii")[:80]
    header.nlabl = 1


def mrc_header_summary(path: PathLike) -> dict[str, Any]:
    """Header facts for ``emkit info``: mode, space group, stack flag, extended header."""
    permissive = _check_header(Path(path), _is_compressed(path))
    try:
        facts = read_header_facts(Path(path))
        with (
            python_warnings_to_log(logger),
            mrcfile.open(path, header_only=True, permissive=permissive) as mrc,
        ):
            h = mrc.header
            return {
                "mrc_mode": int(h.mode),
                "space_group": int(h.ispg),
                "image_stack": _header_is_stack(h, path),
                "extended_header_bytes": int(h.nsymbt),
                "axis_order_crs": f"{int(h.mapc)},{int(h.mapr)},{int(h.maps)}",
                "labels": [
                    lab.decode("ascii", "replace").strip()
                    for lab in h.label[: int(h.nlabl)]
                    if lab.strip()
                ],
                **(facts.summary() if facts is not None else {}),
            }
    except _READ_ERRORS as error:
        raise _corrupt(path, error) from None
