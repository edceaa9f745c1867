"""Zarr arrays and OME-Zarr (OME-NGFF 0.4) multiscale images through zarr-python.

Layout written by emkit:

* ``name.zarr`` — one Zarr (format 2) array, chunked, with the voxel size and origin in
  its attributes under ``"emkit"``: ``{"axes": "zyx", "voxel_size_A": [z, y, x] or None,
  "origin_A": [z, y, x]}``.
* ``name.ome.zarr`` — an OME-NGFF 0.4 group (Zarr format 2, which 0.4 requires): arrays
  ``"0"``, ``"1"``, ... where level k+1 is the 2x block mean of level k (along every axis
  longer than 1; an odd last row/column is dropped), axes ``z, y, x`` (or ``y, x``) of type
  ``space`` with unit ``angstrom``, and per level a ``scale`` (voxel size of that level) and
  a ``translation`` (position of its first voxel centre) in Å.

Both read back through :func:`read_zarr`; :func:`open_zarr_array` gives the lazy array for
Dask (``dask.array.from_zarr(open_zarr_array(path))``).
"""

from __future__ import annotations

import itertools
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from emkit import __version__
from emkit.errors import EmkitError, FileFormatError, MissingFileError, ShapeError, with_path
from emkit.io._paths import PathLike
from emkit.io._quiet import python_warnings_to_log
from emkit.io._volume import Volume

logger = logging.getLogger(__name__)

# Unit names OME-NGFF takes from UDUNITS-2, as lengths in Å.
_NGFF_UNIT_TO_A: dict[str, float] = {
    "angstrom": 1.0,
    "nanometer": 10.0,
    "micrometer": 1e4,
    "millimeter": 1e7,
    "centimeter": 1e8,
    "meter": 1e10,
    "picometer": 0.01,
}

_SLAB_BYTES = 1 << 27
_DEFAULT_CHUNK_3D = 64
_DEFAULT_CHUNK_2D = 512


def _compressor() -> Any:
    from numcodecs import Blosc

    return Blosc(cname="zstd", clevel=1, shuffle=Blosc.SHUFFLE)


def _open(path: Path) -> Any:
    import zarr

    if not path.exists():
        raise MissingFileError(with_path(path, "no such file; check the path"))
    try:
        with python_warnings_to_log(logger):
            return zarr.open(str(path), mode="r")
    except Exception as error:  # zarr raises several unrelated types for a bad store
        raise FileFormatError(
            with_path(
                path,
                f"is not a Zarr array or group: its .zarray/.zgroup/zarr.json metadata are "
                f"missing or damaged ({type(error).__name__}: {error}); check the path",
            )
        ) from None


def _sub_array(node: Any, sub: str, path: Path) -> Any:
    """``node[sub]`` (one level of an OME-Zarr image), or emkit's error when it is damaged."""
    try:
        with python_warnings_to_log(logger):
            array = node[sub]
    except Exception as error:  # missing folder, garbled .zarray: many exception types
        raise FileFormatError(
            with_path(
                path,
                f"resolution level {sub!r} named in the OME-Zarr metadata is missing or "
                f"damaged ({type(error).__name__}: {error}); re-export the image",
            )
        ) from None
    if not (hasattr(array, "shape") and hasattr(array, "dtype")):
        raise FileFormatError(with_path(path, f"level {sub!r} is a group, not an array"))
    return array


class CheckedArray:
    """A Zarr array whose reads raise emkit's :class:`FileFormatError` for a damaged chunk.

    Has ``shape``, ``dtype``, ``ndim``, ``chunks`` and slicing, which is all that
    :func:`emkit.io.array_statistics` and ``np.asarray(a[...])`` need.
    """

    def __init__(self, array: Any, path: Path) -> None:
        self.array = array
        self.path = path
        self.shape = tuple(array.shape)
        self.dtype = array.dtype
        self.ndim = len(self.shape)
        self.chunks = tuple(array.chunks)

    def __getitem__(self, selection: Any) -> np.ndarray:
        try:
            with python_warnings_to_log(logger):
                return np.asarray(self.array[selection])
        except MemoryError:
            raise
        except Exception as error:  # blosc/zstd/zlib/json errors of a damaged chunk
            _quiet_abandoned_chunk_reads()
            raise FileFormatError(
                with_path(
                    self.path,
                    f"a data chunk is damaged and cannot be decompressed "
                    f"({type(error).__name__}: {error}); re-export or re-copy the store",
                )
            ) from None


def _drop_abandoned_task(record: logging.LogRecord) -> bool:
    return not record.getMessage().startswith("Task was destroyed but it is pending")


def _quiet_abandoned_chunk_reads() -> None:
    """Drop asyncio's "Task was destroyed but it is pending" records from now on.

    zarr 3 reads chunks in concurrent tasks on its own event loop; when one chunk fails the
    others are abandoned, and if the process ends before they finish, asyncio logs each one
    at garbage collection (a race: about one run in six). The damaged chunk is already
    reported as one error line; those records are noise after it.
    """
    asyncio_logger = logging.getLogger("asyncio")
    if _drop_abandoned_task not in asyncio_logger.filters:
        asyncio_logger.addFilter(_drop_abandoned_task)


def checked_array(array: Any, path: PathLike) -> CheckedArray:
    """Wrap a ``zarr.Array`` read from ``path`` (see :class:`CheckedArray`), checking that
    each blosc-compressed chunk file is as long as its blosc header says."""
    _check_blosc_chunks(array, Path(path))
    return CheckedArray(array, Path(path))


# Blosc frame header: bytes 12-15 hold the compressed size (the whole frame, header included).
_BLOSC_HEADER = 16


def _check_blosc_chunks(array: Any, path: Path) -> None:
    """Refuse a Zarr-format-2 array whose blosc chunk files are cut short or overlong.

    Blosc decompresses a truncated frame without complaint (it trusts the sizes in its
    header), so without this check a cut chunk reads as plausible numbers.
    """
    folder = path / str(getattr(array, "path", "") or "")
    meta_file = folder / ".zarray"
    try:
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return  # not a local Zarr-format-2 array: nothing to check here
    compressor = meta.get("compressor") if isinstance(meta, dict) else None
    if not isinstance(compressor, dict) or compressor.get("id") != "blosc":
        return
    for root, dirs, files in os.walk(folder):
        dirs[:] = [
            d for d in dirs if not d.startswith(".") and not (Path(root, d) / ".zarray").exists()
        ]
        for name in files:
            if name.startswith("."):
                continue
            chunk = Path(root, name)
            try:
                with open(chunk, "rb") as fh:
                    head = fh.read(_BLOSC_HEADER)
                size = chunk.stat().st_size
            except OSError as error:
                raise FileFormatError(
                    with_path(path, f"chunk {chunk.relative_to(path)} cannot be read ({error})")
                ) from None
            cbytes = int.from_bytes(head[12:16], "little") if len(head) == _BLOSC_HEADER else -1
            if cbytes != size:
                raise FileFormatError(
                    with_path(
                        path,
                        f"chunk {chunk.relative_to(path)} is damaged or truncated ({size} bytes, "
                        f"its blosc header says {cbytes}); re-export or re-copy the store",
                    )
                )


def _multiscales(group: Any) -> list[dict[str, Any]] | None:
    attrs = group.attrs.asdict()
    # OME-NGFF 0.5 (Zarr v3) nests the metadata under "ome".
    meta = attrs.get("ome", attrs)
    ms = meta.get("multiscales")
    return ms if isinstance(ms, list) and ms else None


def _level_transform(
    multiscale: dict[str, Any], level: int
) -> tuple[str, list[float] | None, list[float] | None]:
    datasets = multiscale.get("datasets", [])
    if not 0 <= level < len(datasets):
        raise IndexError(level)
    ds = datasets[level]
    scale: list[float] | None = None
    translation: list[float] | None = None
    for transforms in (
        ds.get("coordinateTransformations", []),
        multiscale.get("coordinateTransformations", []),
    ):
        for t in transforms:
            if t.get("type") == "scale" and "scale" in t:
                s = [float(v) for v in t["scale"]]
                scale = s if scale is None else [a * b for a, b in zip(scale, s)]
            elif t.get("type") == "translation" and "translation" in t:
                tr = [float(v) for v in t["translation"]]
                translation = (
                    tr if translation is None else [a + b for a, b in zip(translation, tr)]
                )
    return str(ds["path"]), scale, translation


def _ome_axes(multiscale: dict[str, Any], ndim: int) -> list[dict[str, Any]]:
    axes = multiscale.get("axes")
    if not axes:  # OME-NGFF <= 0.3 had no axes: the last 2 or 3 are z, y, x
        names = ["t", "c", "z", "y", "x"][-ndim:]
        return [{"name": n, "type": "space" if n in "zyx" else "other"} for n in names]
    return [a if isinstance(a, dict) else {"name": str(a)} for a in axes]


def open_zarr_array(path: PathLike, level: int = 0) -> Any:
    """Open the lazy ``zarr.Array`` of a Zarr array or of one level of an OME-Zarr image.

    Parameters
    ----------
    path : path-like
        A ``.zarr`` array or an ``.ome.zarr`` multiscale group.
    level : int
        Resolution level of an OME-Zarr image (0 = full resolution); must be 0 for an array.

    Returns
    -------
    zarr.Array
        Nothing is read until it is indexed; ``dask.array.from_zarr`` accepts it.

    Raises
    ------
    MissingFileError, FileFormatError
    """
    from emkit.io._paths import require_readable_file

    p = require_readable_file(path, folder=True)
    node = _open(p)
    if hasattr(node, "shape") and hasattr(node, "dtype"):
        if level != 0:
            raise FileFormatError(
                with_path(p, f"is a single Zarr array (no level {level}); use level=0")
            )
        return node
    ms = _multiscales(node)
    if ms is None:
        raise FileFormatError(
            with_path(
                p,
                "is a Zarr group without OME-NGFF 'multiscales' metadata; give an "
                "array or an OME-Zarr image",
            )
        )
    try:
        sub, _, _ = _level_transform(ms[0], level)
    except IndexError:
        n = len(ms[0].get("datasets", []))
        raise FileFormatError(
            with_path(p, f"has {n} resolution levels; level {level} does not exist")
        ) from None
    except (KeyError, TypeError, AttributeError) as error:
        raise FileFormatError(
            with_path(p, f"has damaged OME-NGFF 'multiscales' metadata ({error!r})")
        ) from None
    return _sub_array(node, sub, p)


def zarr_metadata(path: PathLike, level: int = 0) -> dict[str, Any]:
    """Voxel size and origin of a Zarr array or OME-Zarr level, without reading the data.

    Returns
    -------
    dict
        ``ome`` (bool), ``voxel_size`` ((z, y, x) Å or None), ``origin`` ((z, y, x) Å),
        ``shape`` (spatial shape), ``space_axes`` (indices of the spatial axes in the array).

    Raises
    ------
    MissingFileError, FileFormatError
        Also for attributes (emkit's or OME-NGFF's) of the wrong type or length.
    """
    try:
        return _metadata(Path(path), level)
    except EmkitError:
        raise
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as error:
        raise FileFormatError(
            with_path(
                path,
                f"has damaged voxel-size/axes attributes ({type(error).__name__}: {error}); "
                "re-export it",
            )
        ) from None


def _metadata(p: Path, level: int) -> dict[str, Any]:
    array = open_zarr_array(p, level)
    node = _open(p)
    if hasattr(node, "shape"):
        meta = node.attrs.asdict().get("emkit", {})
        vs = meta.get("voxel_size_A")
        return {
            "ome": False,
            "voxel_size": _triple(vs) if vs else None,
            "origin": _triple(meta.get("origin_A", (0.0, 0.0, 0.0))),
            "shape": tuple(array.shape),
            "space_axes": list(range(array.ndim)),
        }
    ms = _multiscales(node)
    assert ms is not None  # open_zarr_array checked
    _, scale, translation = _level_transform(ms[0], level)
    axes = _ome_axes(ms[0], array.ndim)
    space = [
        i
        for i, a in enumerate(axes)
        if a.get("type") == "space" or (a.get("type") is None and a.get("name") in ("z", "y", "x"))
    ]
    other = [i for i in range(array.ndim) if i not in space]
    if any(array.shape[i] != 1 for i in other) or not 2 <= len(space) <= 3:
        raise ShapeError(
            with_path(
                p,
                f"OME-Zarr image of shape {array.shape} with axes "
                f"{[a.get('name') for a in axes]}; emkit reads one channel and one time "
                "point of a 2D or 3D image",
            )
        )
    voxel: tuple[float, float, float] | None = None
    origin = (0.0, 0.0, 0.0)
    units = [_NGFF_UNIT_TO_A.get(str(axes[i].get("unit", "")).lower()) for i in space]
    if scale is not None and all(u is not None for u in units):
        factors = [float(u or 0.0) for u in units]
        sizes = [scale[i] * f for i, f in zip(space, factors)]
        voxel = _triple(sizes if len(sizes) == 3 else (sizes[1], sizes[0], sizes[1]))
        if translation is not None:
            offs = [translation[i] * f for i, f in zip(space, factors)]
            origin = _triple(offs if len(offs) == 3 else (0.0, offs[0], offs[1]))
    return {
        "ome": True,
        "voxel_size": voxel,
        "origin": origin,
        "shape": tuple(array.shape[i] for i in space),
        "space_axes": space,
    }


def read_zarr(path: PathLike, *, level: int = 0) -> Volume:
    """Read a Zarr array or one level of an OME-Zarr image into memory as a :class:`Volume`.

    Non-spatial OME axes (time, channel) must have length 1 and are dropped.
    """
    p = Path(path)
    meta = zarr_metadata(p, level)
    array = checked_array(open_zarr_array(p, level), p)
    data = np.asarray(array[...]).reshape(meta["shape"])
    return Volume(data=data, voxel_size=meta["voxel_size"], origin=meta["origin"], path=p)


def _triple(values: Sequence[Any]) -> tuple[float, float, float]:
    a = [float(v) for v in values]
    return a[0], a[1], a[2]


def _default_chunks(shape: Sequence[int]) -> tuple[int, ...]:
    size = _DEFAULT_CHUNK_3D if len(shape) == 3 else _DEFAULT_CHUNK_2D
    return tuple(max(1, min(size, n)) for n in shape)


def _zarr_major() -> int:
    import zarr

    return int(zarr.__version__.split(".")[0])


def open_group_for_write(path: str | os.PathLike[str]) -> Any:
    """A new, empty Zarr-format-2 group at ``path`` (zarr 3, or zarr 2 on Python 3.10)."""
    import zarr

    if _zarr_major() >= 3:
        return zarr.open_group(str(path), mode="w", zarr_format=2)
    return zarr.open_group(str(path), mode="w")


def _create_array(
    group_or_path: Any,
    name: str | None,
    shape: tuple[int, ...],
    dtype: Any,
    chunks: tuple[int, ...],
    attributes: dict[str, Any] | None = None,
) -> Any:
    """A Zarr-format-2 array with "/" chunk keys (what OME-NGFF 0.4 readers expect)."""
    import zarr

    if _zarr_major() < 3:
        # zarr 2 (the newest release for Python 3.10) spells the same store differently.
        options: dict[str, Any] = {
            "shape": shape,
            "dtype": dtype,
            "chunks": chunks,
            "compressor": _compressor(),
            "dimension_separator": "/",
            "fill_value": 0,
        }
        if name is None:
            array = zarr.open_array(str(group_or_path), mode="w", **options)
        else:
            array = group_or_path.create_dataset(name, **options)
        if attributes:
            array.attrs.update(attributes)
        return array
    kwargs: dict[str, Any] = {
        "shape": shape,
        "dtype": dtype,
        "chunks": chunks,
        "compressors": _compressor(),
        "zarr_format": 2,
        "chunk_key_encoding": {"name": "v2", "separator": "/"},
        "fill_value": 0,
    }
    if attributes:
        kwargs["attributes"] = attributes
    if name is None:
        return zarr.create_array(str(group_or_path), **kwargs)
    kwargs.pop("zarr_format")
    return group_or_path.create_array(name, **kwargs)


def create_zarr_array(
    path: str | os.PathLike[str],
    shape: tuple[int, ...],
    dtype: Any,
    *,
    chunks: tuple[int, ...] | None = None,
) -> Any:
    """A new, empty chunked Zarr array at ``path`` (compressed, Zarr format 2)."""
    shape = tuple(int(n) for n in shape)
    return _create_array(Path(path), None, shape, dtype, chunks or _default_chunks(shape))


def _tiles(
    shape: Sequence[int],
    chunks: Sequence[int],
    bytes_per_element: int,
    rows: tuple[int, int] | None = None,
) -> Any:
    """Chunk-aligned tiles (tuples of slices) of about ``_SLAB_BYTES`` or less.

    One chunk thick along axis 0, a whole number of chunks along axis 1, full length along
    the rest: memory stays bounded however large the image's cross-section is. ``rows``
    keeps only the tiles inside that range of the second-last axis (y).
    """
    rest = int(np.prod(shape[2:], dtype=np.int64)) if len(shape) > 2 else 1
    c0 = int(chunks[0])
    c1 = int(chunks[1]) if len(shape) > 1 else 1
    per_chunk_row = max(1, c0 * c1 * rest * bytes_per_element)
    rows1 = max(1, _SLAB_BYTES // per_chunk_row) * c1 if len(shape) > 1 else 1
    lo = [0] * len(shape)
    hi = [int(n) for n in shape]
    if rows is not None:
        y = len(shape) - 2
        lo[y], hi[y] = max(0, int(rows[0])), min(hi[y], int(rows[1]))
    for start0 in range(lo[0], hi[0], c0):
        stop0 = min(start0 + c0, hi[0])
        if len(shape) == 1:
            yield (slice(start0, stop0),)
            continue
        for start1 in range(lo[1], hi[1], rows1):
            yield (slice(start0, stop0), slice(start1, min(start1 + rows1, hi[1])))


def _copy_in_slabs(dst: Any, src: Any) -> None:
    itemsize = max(np.dtype(src.dtype).itemsize, np.dtype(dst.dtype).itemsize)
    for tile in _tiles(dst.shape, dst.chunks, 2 * itemsize):
        dst[tile] = np.asarray(src[tile], dtype=dst.dtype)


def _halved_shape(shape: Sequence[int]) -> tuple[int, ...]:
    return tuple(n // 2 if n >= 2 else n for n in shape)


def _block_mean(block: np.ndarray, factors: Sequence[int], dtype: np.dtype) -> np.ndarray:
    out_shape = tuple(n // f for n, f in zip(block.shape, factors))
    # Summing the strided sub-grids is several times faster than a reshaped mean.
    mean = np.zeros(out_shape, dtype=np.float64)
    for offsets in itertools.product(*(range(f) for f in factors)):
        mean += block[tuple(slice(o, o + n * f, f) for o, n, f in zip(offsets, out_shape, factors))]
    mean /= float(np.prod(factors))
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        mean = np.clip(np.rint(mean), info.min, info.max)
    return mean.astype(dtype)


def _downsample_into(dst: Any, src: Any, rows: tuple[int, int] | None = None) -> None:
    """``dst`` (or its y ``rows``, the second-last axis) = 2x block mean of ``src``."""
    factors = [2 if n >= 2 else 1 for n in src.shape]
    # A destination tile reads 2^ndim times as many source elements (+ float64 mean).
    per_element = (2 ** len(factors)) * (np.dtype(src.dtype).itemsize + 8)
    for tile in _tiles(dst.shape, dst.chunks, per_element, rows):
        src_tile = tuple(
            slice(t.start * f, min(t.stop, n_dst) * f)
            for t, f, n_dst in zip(tile, factors, dst.shape)
        )
        dst[tile] = _block_mean(np.asarray(src[src_tile]), factors, dst.dtype)


def _auto_levels(shape: Sequence[int]) -> int:
    levels, current = 1, tuple(shape)
    while max(current) > 64 and levels < 8 and current != _halved_shape(current):
        current = _halved_shape(current)
        levels += 1
    return levels


def create_plain_zarr(
    path: PathLike,
    shape: Sequence[int],
    dtype: Any,
    *,
    voxel_size: tuple[float, float, float] | None,
    origin: tuple[float, float, float],
    chunks: tuple[int, ...] | None = None,
) -> Any:
    """An empty chunked Zarr (format 2) array with emkit metadata attributes at ``path``,
    for writers that fill it chunk row by chunk row (see :func:`write_zarr`)."""
    if len(shape) not in (2, 3):
        raise ShapeError(
            with_path(path, f"emkit writes 2D or 3D Zarr arrays, not {len(shape)}D data")
        )
    shape = tuple(int(n) for n in shape)
    attrs = {
        "emkit": {
            "axes": "zyx" if len(shape) == 3 else "yx",
            "voxel_size_A": None if voxel_size is None else [float(v) for v in voxel_size],
            "origin_A": [float(v) for v in origin],
            "emkit_version": __version__,
        }
    }
    return _create_array(path, None, shape, dtype, chunks or _default_chunks(shape), attrs)


def write_zarr(
    path: PathLike,
    data: Any,
    *,
    voxel_size: tuple[float, float, float] | None,
    origin: tuple[float, float, float],
    chunks: tuple[int, ...] | None = None,
) -> None:
    """Write ``data`` as one chunked Zarr (format 2) array with emkit metadata attributes."""
    arr = create_plain_zarr(path, tuple(np.shape(data)), data.dtype, voxel_size=voxel_size,
                            origin=origin, chunks=chunks)
    _copy_in_slabs(arr, data)


def create_ome_zarr(
    path: PathLike,
    shape: Sequence[int],
    dtype: Any,
    *,
    voxel_size: tuple[float, float, float] | None,
    origin: tuple[float, float, float],
    n_levels: int | None = None,
    chunks: tuple[int, ...] | None = None,
    name: str | None = None,
) -> list[tuple[int, ...]]:
    """An empty OME-NGFF 0.4 multiscale image (Zarr format 2) at ``path``: every level's
    array and the metadata, to be filled by :func:`fill_ome_zarr_level` (or by writers of
    level 0 that work in parallel, one chunk row each). Returns the levels' shapes.

    The arguments are as for :func:`write_ome_zarr`; level ``k`` has the chunks of level 0
    clipped to its shape, so a block of level-``k`` chunk rows reads whole chunk rows of
    level ``k - 1``.
    """
    ndim = len(shape)
    if ndim not in (2, 3):
        raise ShapeError(
            with_path(path, f"OME-Zarr from emkit holds 2D or 3D images, not {ndim}D data")
        )
    shape = tuple(int(n) for n in shape)
    levels = max(1, int(n_levels if n_levels is not None else _auto_levels(shape)))
    names = ["z", "y", "x"][-ndim:]
    axes: list[dict[str, str]] = [{"name": n, "type": "space"} for n in names]
    base_scale = [1.0] * ndim if voxel_size is None else [float(v) for v in voxel_size][-ndim:]
    if voxel_size is not None:
        for axis in axes:
            axis["unit"] = "angstrom"
    base_origin = [float(v) for v in origin][-ndim:]

    group = open_group_for_write(path)
    chunk_shape = tuple(int(c) for c in (chunks or _default_chunks(shape)))
    _create_array(group, "0", shape, dtype, chunk_shape)
    shapes, datasets = [shape], []
    factor = [1] * ndim
    for level in range(levels):
        if level > 0:
            new_shape = _halved_shape(shapes[-1])
            if new_shape == shapes[-1]:
                break
            factor = [f * (2 if n >= 2 else 1) for f, n in zip(factor, shapes[-1])]
            level_chunks = tuple(min(c, n) for c, n in zip(chunk_shape, new_shape))
            _create_array(group, str(level), new_shape, dtype, level_chunks)
            shapes.append(new_shape)
        scale = [s * f for s, f in zip(base_scale, factor)]
        # A block mean's first voxel centre sits half a block minus half a voxel further on.
        translation = [o + s * (f - 1) / 2.0 for o, s, f in zip(base_origin, base_scale, factor)]
        datasets.append(
            {
                "path": str(level),
                "coordinateTransformations": [
                    {"type": "scale", "scale": scale},
                    {"type": "translation", "translation": translation},
                ],
            }
        )
    group.attrs["multiscales"] = [
        {
            "version": "0.4",
            "name": name or Path(path).name.split(".")[0],
            "axes": axes,
            "datasets": datasets,
            "type": "mean",
            "metadata": {
                "description": "level k+1 = 2x block mean of level k",
                "emkit_version": __version__,
            },
        }
    ]
    return shapes


def fill_ome_zarr_level(path: PathLike, level: int, rows: tuple[int, int] | None = None) -> None:
    """Fill level ``level`` (>= 1) of an OME-Zarr made by :func:`create_ome_zarr` with the
    2x block mean of level ``level - 1``: all of it, or only ``rows`` (along y, the
    second-last axis). Tasks given disjoint blocks of whole chunk rows may run at once."""
    import zarr

    src = zarr.open_array(str(Path(path) / str(level - 1)), mode="r")
    dst = zarr.open_array(str(Path(path) / str(level)), mode="r+")
    _downsample_into(dst, src, rows)


def write_ome_zarr(
    path: PathLike,
    data: Any,
    *,
    voxel_size: tuple[float, float, float] | None,
    origin: tuple[float, float, float],
    n_levels: int | None = None,
    chunks: tuple[int, ...] | None = None,
    name: str | None = None,
) -> None:
    """Write an OME-NGFF 0.4 multiscale image (Zarr format 2) at ``path``.

    Parameters
    ----------
    data : array-like
        ``(z, y, x)`` or ``(y, x)``; any array that slices to numpy (ndarray, memmap, zarr).
    voxel_size, origin : (z, y, x) in Å
        Without a voxel size the scales are in voxels and the axes carry no unit.
    n_levels : int or None
        Resolution levels including the full one; default: halve until the longest axis
        is at most 64 (at most 8 levels).
    """
    shapes = create_ome_zarr(path, tuple(np.shape(data)), data.dtype, voxel_size=voxel_size,
                             origin=origin, n_levels=n_levels, chunks=chunks, name=name)
    import zarr

    _copy_in_slabs(zarr.open_array(str(Path(path) / "0"), mode="r+"), data)
    for level in range(1, len(shapes)):
        fill_ome_zarr_level(path, level)


def zarr_levels(path: PathLike) -> list[dict[str, Any]]:
    """Shape, dtype and scale of each level (a plain array is one level), for ``emkit info``."""
    p = Path(path)
    node = _open(p)
    if hasattr(node, "shape"):
        return [
            {
                "level": 0,
                "path": "",
                "shape": tuple(node.shape),
                "dtype": str(node.dtype),
                "chunks": tuple(node.chunks),
            }
        ]
    ms = _multiscales(node)
    if ms is None:
        raise FileFormatError(
            with_path(p, "is a Zarr group without OME-NGFF 'multiscales' metadata")
        )
    out = []
    for level, _ in enumerate(ms[0].get("datasets", [])):
        try:
            sub, scale, translation = _level_transform(ms[0], level)
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise FileFormatError(
                with_path(p, f"has damaged OME-NGFF 'multiscales' metadata ({error!r})")
            ) from None
        arr = _sub_array(node, sub, p)
        out.append(
            {
                "level": level,
                "path": sub,
                "shape": tuple(arr.shape),
                "dtype": str(arr.dtype),
                "chunks": tuple(arr.chunks),
                "scale": scale,
                "translation": translation,
            }
        )
    return out
