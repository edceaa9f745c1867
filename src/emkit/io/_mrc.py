"""MRC / MRCS (and IMOD's .st, .ali, .rec, .map) through mrcfile, voxel size and origin kept."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import mrcfile
import numpy as np

from emkit import __version__
from emkit.errors import FileFormatError, ShapeError, with_path
from emkit.io._paths import MRC_STACK_SUFFIXES, PathLike, full_suffix
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

_CORRUPT_HINT = "is not a valid MRC file (truncated?): re-export it or check the transfer"


def _corrupt(path: PathLike, error: BaseException) -> FileFormatError:
    return FileFormatError(with_path(path, f"{_CORRUPT_HINT} ({error})"))


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
    try:
        with mrcfile.open(path, header_only=True, permissive=False) as mrc:
            return _header_is_stack(mrc.header, path)
    except (ValueError, OSError, EOFError) as error:
        raise _corrupt(path, error) from None


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
    """
    path = Path(path)
    compressed = _is_compressed(path)
    use_mmap = mmap and not compressed
    try:
        # Uncompressed files are mapped and, unless mmap was asked for, copied once into
        # an ordinary writable array (mrcfile.open would give a read-only view of a buffer).
        opener = mrcfile.open if compressed else mrcfile.mmap
        with opener(path, mode="r", permissive=False) as mrc:
            if mrc.data is None:  # pragma: no cover - permissive=False raises instead
                raise ValueError("no data block")
            header = mrc.header.copy()
            data = mrc.data if use_mmap else np.array(mrc.data)
            voxel_size = _voxel_size_zyx(mrc)
    except (ValueError, OSError, EOFError) as error:
        raise _corrupt(path, error) from None
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
    origin = _origin_zyx(header, voxel_size)
    return Volume(data=data, voxel_size=voxel_size, origin=origin, path=path)


def _slab_stats(data: np.ndarray) -> tuple[float, float, float, float]:
    """min, max, mean, rms (standard deviation) of ``data``, computed in slabs (float64)."""
    if data.size == 0:
        return 0.0, 0.0, 0.0, 0.0
    flat = data.reshape(-1, *data.shape[-2:]) if data.ndim >= 2 else data.reshape(1, -1)
    step = max(1, _SLAB_BYTES // max(1, flat[0].nbytes * 2))
    lo, hi, total, total_sq = np.inf, -np.inf, 0.0, 0.0
    for start in range(0, flat.shape[0], step):
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
    if _is_compressed(path):
        compression = "bzip2" if full_suffix(path).endswith(".bz2") else "gzip"
        with mrcfile.new(path, overwrite=True, compression=compression) as mrc:
            mrc.set_data(np.asarray(data, dtype=np.float32))
            _finish_header(mrc, data, voxel_size, origin, stack)
        return
    with mrcfile.new_mmap(path, shape=data.shape, mrc_mode=2, overwrite=True) as mrc:
        out = mrc.data
        rows = out.reshape((-1,) + data.shape[-1:]) if data.ndim == 2 else out
        src = data.reshape((-1,) + data.shape[-1:]) if data.ndim == 2 else data
        step = max(1, _SLAB_BYTES // max(1, src[0].nbytes + rows[0].nbytes))
        for start in range(0, src.shape[0], step):
            rows[start : start + step] = src[start : start + step]
        _finish_header(mrc, out, voxel_size, origin, stack)


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
    stamp = time.strftime("%d-%b-%y  %H:%M:%S")
    label = f"emkit {__version__}: written {stamp}"
    header.label[0] = label.encode("ascii")[:80]
    header.nlabl = 1


def mrc_header_summary(path: PathLike) -> dict[str, Any]:
    """Header facts for ``emkit info``: mode, space group, stack flag, header statistics."""
    try:
        with mrcfile.open(path, header_only=True, permissive=False) as mrc:
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
            }
    except (ValueError, OSError, EOFError) as error:
        raise _corrupt(path, error) from None
