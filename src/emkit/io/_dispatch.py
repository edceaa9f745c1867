"""One entry point for images and volumes: ``read_volume`` / ``write_volume`` by suffix."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from emkit.errors import FileFormatError, InputError, ShapeError, with_path
from emkit.io._atomic import atomic_output
from emkit.io._paths import PathLike, full_suffix, require_readable_file, volume_format
from emkit.io._volume import Volume

logger = logging.getLogger(__name__)

Zyx = tuple[float, float, float]
"""A (z, y, x) triple: voxel size or origin in Å."""

__all__ = ["read_volume", "write_volume", "format_keeps_metadata"]


def _check_npy_header(path: Path) -> None:
    """Refuse a pickle (object array) and a data block shorter or longer than the header says."""
    fmt = np.lib.format
    try:
        with open(path, "rb") as fh:
            version = fmt.read_magic(fh)
            read_header = (
                fmt.read_array_header_1_0 if version == (1, 0) else (fmt.read_array_header_2_0)
            )
            shape, _, dtype = read_header(fh)
            header_end = fh.tell()
    except MemoryError:
        raise
    # numpy parses the header as a Python literal: a garbled one raises ValueError,
    # SyntaxError, tokenize.TokenError...
    except Exception as error:
        raise FileFormatError(
            with_path(path, f"is not a valid .npy array file ({error}); re-save it with numpy")
        ) from None
    if dtype.hasobject:
        raise FileFormatError(
            with_path(
                path,
                "holds Python objects (a pickle), which emkit never loads because loading "
                "a pickle can run code; save a numeric array (np.save(..., allow_pickle=False))",
            )
        )
    expected = header_end + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    actual = path.stat().st_size
    if actual != expected:
        what = "is truncated" if actual < expected else "is longer than its header says"
        raise FileFormatError(
            with_path(
                path,
                f"{what}: the header describes {shape} {dtype} ({expected} bytes with the "
                f"header) but the file has {actual} bytes; re-save it with numpy",
            )
        )


def _read_npy(path: Path, *, mmap: bool) -> Volume:
    _check_npy_header(path)
    try:
        data = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:
        raise FileFormatError(
            with_path(path, f"is not a valid .npy array file ({error}); re-save it with numpy")
        ) from None
    if not isinstance(data, np.ndarray):  # pragma: no cover - np.load of .npy gives arrays
        raise FileFormatError(with_path(path, "does not hold a single numpy array"))
    return Volume(data=data, voxel_size=None, path=path)


def read_volume(path: PathLike, *, mmap: bool = False) -> Volume:
    """Read an image, image stack or volume, with its voxel size and origin.

    The format is chosen by suffix: MRC (``.mrc``, ``.mrcs``, ``.st``, ``.ali``,
    ``.preali``, ``.rec``, ``.map``, also ``.mrc.gz``), TIFF (``.tif``, ``.tiff``,
    ``.ome.tif``), images (``.png``, ``.jpg``, ``.jpeg``, ``.bmp``), Zarr (``.zarr``: an
    array, or an OME-Zarr group whose level 0 is read), OME-Zarr (``.ome.zarr``) and
    ``.npy``.

    Parameters
    ----------
    path : path-like
    mmap : bool
        Memory-map the data where the format allows it (uncompressed MRC, TIFF, NPY)
        instead of reading it into memory; the array is then read-only.

    Returns
    -------
    Volume
        ``data`` in the file's own dtype (uint8/uint16 images stay integers; convert with
        ``.astype(np.float32)`` for arithmetic): ``(z, y, x)`` volume, ``(n, y, x)`` stack or
        ``(y, x)`` image. ``voxel_size`` is ``(z, y, x)`` in Å or None when the file does
        not say (PNG, NPY); ``origin`` is the position of voxel 0 in Å.

    Raises
    ------
    MissingFileError
        The path does not exist.
    UnreadableFileError
        No permission to read it.
    FileFormatError
        Unknown suffix; a folder, FIFO or empty file where a file is expected; or the
        content is corrupt/truncated or not what the suffix says (checked before decoding,
        so a damaged header never makes emkit allocate what it claims).
    ShapeError
        More than three non-trivial axes (e.g. a multi-channel TIFF).

    Examples
    --------
    >>> vol = read_volume("tomogram.mrc")                      # doctest: +SKIP
    >>> vol.data.shape, vol.voxel_size                          # doctest: +SKIP
    ((200, 512, 512), (10.0, 10.0, 10.0))
    """
    kind = volume_format(path)
    p = require_readable_file(path, folder=kind in ("zarr", "ome-zarr"))
    if kind == "mrc":
        from emkit.io._mrc import read_mrc

        return read_mrc(p, mmap=mmap)
    if kind == "tiff":
        from emkit.io._tiff import read_tiff

        return read_tiff(p, mmap=mmap)
    if kind == "image":
        from emkit.io._image import read_image

        return read_image(p)
    if kind in ("zarr", "ome-zarr"):
        from emkit.io._zarr import read_zarr

        return read_zarr(p)
    return _read_npy(p, mmap=mmap)


def format_keeps_metadata(path: PathLike) -> bool:
    """True when the format of ``path`` stores voxel size and origin (not PNG, NPY)."""
    return volume_format(path, for_writing=True) not in ("image", "npy")


def write_volume(
    path: PathLike,
    data: np.ndarray | Volume,
    *,
    voxel_size: float | tuple[float, float, float] | None = None,
    origin: tuple[float, float, float] | None = None,
    stack: bool | None = None,
    chunks: tuple[int, ...] | None = None,
    n_levels: int | None = None,
) -> Path:
    """Write an image, stack or volume atomically, keeping voxel size and origin.

    The file appears under its final name only once it is complete; a failure leaves
    nothing behind (nor a temporary file). An existing file at ``path`` is replaced: call
    :func:`emkit.io.check_not_input` first so an input is never overwritten.

    Parameters
    ----------
    path : path-like
        ``.mrc``/``.mrcs``/``.st``/``.ali``/``.rec``/``.map`` (mode 2, float32),
        ``.tif``/``.tiff`` (ImageJ; uint8, uint16, float32 kept), ``.png`` (2D only;
        uint8/uint16, other values converted as :func:`emkit.io.png_ready` says),
        ``.zarr`` (one array), ``.ome.zarr`` (OME-NGFF 0.4 multiscale) or ``.npy``.
    data : ndarray or Volume
        ``(z, y, x)`` volume, ``(n, y, x)`` stack or ``(y, x)`` image. A :class:`Volume`
        brings its own voxel size and origin.
    voxel_size : float or (z, y, x) floats in Å, optional
        Overrides the Volume's; one number means isotropic voxels.
    origin : (z, y, x) in Å, optional
        Position of voxel 0; overrides the Volume's.
    stack : bool or None
        MRC only: mark a 3D array as an image stack (ispg 0) rather than a volume; None
        decides by suffix (``.mrcs``, ``.st``, ``.ali``, ``.preali`` are stacks).
    chunks : tuple of int, optional
        Zarr / OME-Zarr chunk shape (default 64^3 for 3D, 512^2 for 2D).
    n_levels : int, optional
        OME-Zarr resolution levels (default: halve until the longest axis is <= 64).

    Returns
    -------
    Path
        The written path. Formats that cannot hold the voxel size (PNG, NPY) drop it
        with a logged warning.

    Raises
    ------
    FileFormatError
        Unknown or read-only suffix (e.g. ``.jpg``).
    ShapeError
        Dimensions the format cannot hold (a 3D array to PNG, 4D anywhere).
    """
    out = Path(path)
    kind = volume_format(out, for_writing=True)
    array, voxel, org3 = _data_and_metadata(out, data, voxel_size, origin)
    array = _checked_for_format(out, kind, array, voxel, org3)
    if kind in ("zarr", "ome-zarr"):
        _write_zarr_kind(out, kind, array, voxel, org3, chunks=chunks, n_levels=n_levels)
    else:
        _write_file_kind(out, kind, array, voxel, org3, stack=stack)
    return out


def _data_and_metadata(
    out: Path,
    data: np.ndarray | Volume,
    voxel_size: float | Zyx | None,
    origin: Zyx | None,
) -> tuple[np.ndarray, Zyx | None, Zyx]:
    """The array, its (z, y, x) voxel size (checked positive) and origin (default 0)."""
    vs: float | Zyx | None = voxel_size
    org: Zyx | None = origin
    if isinstance(data, Volume):
        array = data.data
        vs = data.voxel_size if voxel_size is None else voxel_size
        org = data.origin if origin is None else origin
    else:
        array = data
    if not hasattr(array, "shape") or not hasattr(array, "dtype"):
        array = np.asarray(array)
    voxel = _as_zyx(vs, out, "voxel size")
    if voxel is not None and (min(voxel) <= 0 or not all(np.isfinite(voxel))):
        raise InputError(with_path(out, f"voxel size must be positive, got {voxel}"))
    org_zyx = _as_zyx(org, out, "origin")
    org3 = org_zyx if org_zyx is not None else (0.0, 0.0, 0.0)
    return array, voxel, org3


def _checked_for_format(
    out: Path, kind: str, array: np.ndarray, voxel: Zyx | None, org3: Zyx
) -> np.ndarray:
    """Refuse dimensions the format cannot hold; PNG-ready values; warn of lost metadata."""
    if len(array.shape) not in (2, 3):
        raise ShapeError(
            with_path(
                out,
                f"emkit writes 2D images and 3D volumes/stacks, not "
                f"{len(array.shape)}D data of shape {tuple(array.shape)}",
            )
        )
    if kind == "image":
        from emkit.io._image import png_ready

        if len(array.shape) != 2:
            raise ShapeError(
                with_path(
                    out,
                    f"PNG holds one 2D image but the data are {len(array.shape)}D "
                    f"{tuple(array.shape)}; write a volume or stack as .mrc, .tif or .zarr",
                )
            )
        array = png_ready(np.asarray(array), out)
    if kind in ("image", "npy") and (voxel is not None or any(org3)):
        logger.warning(
            "%s: %s files cannot hold the voxel size/origin; they are not saved",
            out,
            full_suffix(out),
        )
    return array


def _write_zarr_kind(
    out: Path,
    kind: str,
    array: np.ndarray,
    voxel: Zyx | None,
    org3: Zyx,
    *,
    chunks: tuple[int, ...] | None,
    n_levels: int | None,
) -> None:
    """Write a Zarr array or an OME-Zarr multiscale as one atomic folder."""
    from emkit.io._zarr import write_ome_zarr, write_zarr

    with atomic_output(out, directory=True, size_bytes=_nbytes(array)) as tmp:
        if kind == "zarr":
            write_zarr(tmp, array, voxel_size=voxel, origin=org3, chunks=chunks)
        else:
            write_ome_zarr(
                tmp,
                array,
                voxel_size=voxel,
                origin=org3,
                chunks=chunks,
                n_levels=n_levels,
                name=out.name.split(".")[0],
            )


def _write_file_kind(
    out: Path,
    kind: str,
    array: np.ndarray,
    voxel: Zyx | None,
    org3: Zyx,
    *,
    stack: bool | None,
) -> None:
    """Write an MRC, TIFF, PNG or NPY file atomically."""
    # MRC is written as float32 (mode 2) whatever the input dtype, after a 1024-byte header.
    size = 1024 + 4 * int(np.prod(array.shape, dtype=np.int64)) if kind == "mrc" else None
    with atomic_output(out, size_bytes=size or _nbytes(array)) as tmp:
        if kind == "mrc":
            from emkit.io._mrc import write_mrc

            write_mrc(
                tmp,
                array,
                voxel_size=voxel,
                origin=org3,
                stack=stack if stack is not None else _stack_by_suffix(out),
            )
        elif kind == "tiff":
            from emkit.io._tiff import write_tiff

            write_tiff(tmp, np.asarray(array), voxel_size=voxel, origin=org3)
        elif kind == "image":
            from emkit.io._image import write_png

            write_png(tmp, np.asarray(array))
        else:
            with open(tmp, "wb") as fh:
                np.save(fh, np.asarray(array), allow_pickle=False)


def _nbytes(array: np.ndarray) -> int:
    """Uncompressed size of ``array`` in bytes."""
    return int(np.prod(array.shape, dtype=np.int64)) * int(np.dtype(array.dtype).itemsize)


def _stack_by_suffix(path: Path) -> bool:
    from emkit.io._paths import MRC_STACK_SUFFIXES

    return full_suffix(path) in MRC_STACK_SUFFIXES


def _as_zyx(
    value: float | tuple[float, ...] | list[float] | np.ndarray | None, path: Path, what: str
) -> tuple[float, float, float] | None:
    if value is None:
        return None
    arr = np.atleast_1d(np.asarray(value, dtype=np.float64)).ravel()
    if arr.size == 1:
        arr = np.repeat(arr, 3)
    if arr.size != 3:
        raise InputError(with_path(path, f"{what} needs 1 or 3 values (z, y, x), got {arr.size}"))
    return float(arr[0]), float(arr[1]), float(arr[2])
