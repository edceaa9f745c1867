"""``build_atlas``: one huge image or a list of tiles -> OME-Zarr + DeepZoom + atlas.json."""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from emkit.atlas._positions import TileSet, is_tile_list, read_tile_list

ZARR_NAME = "atlas.ome.zarr"
DZI_NAME = "atlas.dzi"
FILES_NAME = "atlas_files"
JSON_NAME = "atlas.json"
POSITIONS_NAME = "positions.csv"


@dataclass
class AtlasResult:
    """What :func:`build_atlas` wrote and measured."""

    output_dir: Path
    width: int
    height: int
    levels: int
    pixel_size_nm: float | None
    n_tiles: int = 1
    dzi_tiles: int = 0
    positions_xy: np.ndarray | None = None  # solved top-left corners, atlas pixels
    pairs_measured: int = 0
    pairs_used: int = 0
    residual_px: dict[str, float] = field(default_factory=dict)
    tile_files: list[Path] = field(default_factory=list)  # the tiles read (for checksums)

    @property
    def record(self) -> dict[str, Any]:
        return {
            "width": self.width,
            "height": self.height,
            "levels": self.levels,
            "pixel_size_nm": self.pixel_size_nm,
            "tiles": self.n_tiles,
            "deepzoom_tiles": self.dzi_tiles,
            "overlaps_measured": self.pairs_measured,
            "overlaps_used": self.pairs_used,
            "residual_px": self.residual_px,
        }


def _workers(workers: int | None) -> int:
    if workers:
        return int(workers)
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover
        return max(1, os.cpu_count() or 1)


def _tiles_memory(tile_set: TileSet, search_px: int, workers: int) -> float:
    """Peak bytes of a tile build: cached tiles, a band of the render, the overlap FFTs."""
    h, w = tile_set.shape
    tile_bytes = h * w * tile_set.dtype.itemsize
    xy = tile_set.nominal_xy
    width = float(xy[:, 0].max() - xy[:, 0].min()) + w
    cached = min(tile_set.n, max(8, (256 << 20) // max(tile_bytes, 1))) * tile_bytes
    per_row = max(1.0, width / max(1.0, w * 0.5))
    band = 512 * width * 16 + 3 * per_row * tile_bytes
    fft = workers * (max(h, w) * (2 * search_px + min(h, w) // 2)) * 48
    return float(cached + band + fft)


def _open_compressed_tiff(path: Path) -> tuple[Any, Any] | None:
    """A compressed or tiled 2D (Big)TIFF as a lazy zarr array (tifffile's ``aszarr``), so
    it is read chunk by chunk; None when it can be memory-mapped, is not one 2D image, or
    cannot be opened (then :func:`emkit.io.read_volume` reads it, or says what is wrong)."""
    import tifffile
    import zarr

    from emkit.io._tiff import (
        _imagej_calibration,
        _ome_calibration,
        _tiff_resolution_calibration,
    )

    try:
        tif = tifffile.TiffFile(path)
    except Exception:  # damaged: read_volume gives the one-line error
        return None
    try:
        series = tif.series[0]
        if len(series.shape) != 2 or series.dataoffset is not None:
            tif.close()
            return None
        if tif.is_imagej:
            voxel = _imagej_calibration(tif)[0]
        else:
            voxel = (_ome_calibration(tif) if tif.is_ome else None) or (
                _tiff_resolution_calibration(tif)
            )
        array = zarr.open(series.aszarr(), mode="r")
    except Exception:
        tif.close()
        return None
    _OPEN_FILES.append(tif)  # kept open while the lazy array is read
    return array, voxel


_OPEN_FILES: list[Any] = []


def _open_image(path: Path) -> tuple[Any, float | None]:
    """A huge image as a lazy 2D array (Zarr, memory-mapped TIFF/MRC) and its pixel size."""
    from emkit.errors import FileFormatError, ShapeError, with_path
    from emkit.io import open_zarr_array, read_volume, volume_format

    kind = volume_format(path)
    if kind in ("zarr", "ome-zarr"):
        from emkit.io._zarr import checked_array, zarr_metadata

        meta = zarr_metadata(path)
        data: Any = checked_array(open_zarr_array(path), path)
        vs = meta["voxel_size"]
        shape = meta["shape"]
        if len(shape) == 3 and shape[0] == 1:
            inner = data

            class _First:
                shape = tuple(shape[1:])
                dtype = inner.dtype
                ndim = 2

                def __getitem__(self, key: Any) -> np.ndarray:
                    return inner[(0, *key) if isinstance(key, tuple) else (0, key)]

            data = _First()
        elif len(data.shape) != 2:
            raise ShapeError(
                with_path(
                    path,
                    f"is {len(shape)}D (shape {tuple(shape)}); an atlas is made from one 2D image",
                )
            )
    else:
        lazy = _open_compressed_tiff(path) if kind == "tiff" else None
        if lazy is not None:
            data, vs = lazy
        else:
            volume = read_volume(path, mmap=True)
            data, vs = volume.data, volume.voxel_size
        if data.ndim == 3 and data.shape[0] == 1:
            data = data[0]
        if data.ndim != 2:
            raise ShapeError(
                with_path(
                    path,
                    f"is a stack of shape {data.shape}; an atlas is "
                    "made from one 2D image (or list tiles in a .csv)",
                )
            )
    if not (np.issubdtype(data.dtype, np.integer) or np.issubdtype(data.dtype, np.floating)):
        raise FileFormatError(with_path(path, f"holds {data.dtype} pixels; give gray values"))
    return data, (None if vs is None else float(vs[2]) / 10.0)


def _write_outputs(
    out: Path,
    data: Any,
    *,
    pixel_size_nm: float | None,
    source: Path,
    workers: int,
    extra: dict[str, Any],
    positions_csv: str | None,
    overlays: list[tuple[str, Path, str]] | None = None,
) -> tuple[int, int]:
    """Pyramid, DeepZoom, atlas.json (and positions.csv, overlays/); return (levels,
    DeepZoom tiles)."""
    import zarr

    from emkit.atlas._deepzoom import dzi_xml, max_level, write_deepzoom
    from emkit.atlas._pyramid import write_pyramid
    from emkit.io import atomic_output, write_text_atomic

    height, width = (int(n) for n in data.shape)
    with atomic_output(out / ZARR_NAME, directory=True) as zarr_tmp:
        levels = write_pyramid(zarr_tmp, data, pixel_size_nm=pixel_size_nm, name="atlas")
        group = zarr.open_group(str(zarr_tmp), mode="r")
        arrays = [group[str(k)] for k in range(levels)]
        with atomic_output(out / FILES_NAME, directory=True) as files_tmp:
            info = write_deepzoom(arrays, files_tmp, workers=workers)
    write_text_atomic(out / DZI_NAME, dzi_xml(width, height))
    if positions_csv is not None:
        write_text_atomic(out / POSITIONS_NAME, positions_csv)
    meta = {
        "width": width,
        "height": height,
        "pixel_size_nm": pixel_size_nm,
        "levels": levels,
        "source": str(source),
        "overlays": _copy_overlays(out, overlays or []),
        "deepzoom": {
            "tile_size": 254,
            "overlap": 1,
            "format": "png",
            "max_level": max_level(width, height),
        },
        **extra,
    }
    write_text_atomic(out / JSON_NAME, json.dumps(meta, indent=2) + "\n")
    return levels, info.n_tiles


_OVERLAY_SUFFIXES = {"mask": (".png",), "outlines": (".png", ".json"), "points": (".csv", ".json")}


def _check_overlays(
    overlays: list[tuple[str, str | os.PathLike[str], str | None]], out: Path
) -> list[tuple[str, Path, str]]:
    """Each overlay's kind, file and name, checked before any work (one line each)."""
    from emkit.errors import InputError, MissingFileError, with_path
    from emkit.io import check_not_input

    checked: list[tuple[str, Path, str]] = []
    names: set[str] = set()
    for kind, file, name in overlays:
        path = Path(file)
        if kind not in _OVERLAY_SUFFIXES:
            raise InputError(
                f"overlay kind {kind!r}: give mask, outlines or points (e.g. mask:defects.png)"
            )
        if not path.is_file():
            raise MissingFileError(with_path(path, "no such overlay file; check the path"))
        if path.suffix.lower() not in _OVERLAY_SUFFIXES[kind]:
            allowed = " or ".join(_OVERLAY_SUFFIXES[kind])
            raise InputError(with_path(path, f"a {kind} overlay must be {allowed}"))
        check_not_input(out, [path])
        label = (name or path.stem).strip() or path.stem
        if label in names:
            raise InputError(with_path(path, f"a second overlay named {label!r}; name each one"))
        names.add(label)
        checked.append((kind, path, label))
    return checked


def _copy_overlays(out: Path, overlays: list[tuple[str, Path, str]]) -> list[dict[str, Any]]:
    """Copy the overlay files into ``out/overlays/``; their atlas.json entries."""
    import shutil

    from emkit.io import atomic_output, make_output_folder

    if not overlays:
        return []
    folder = make_output_folder(out / "overlays")
    entries = []
    for i, (kind, path, name) in enumerate(overlays):
        target = folder / f"{i:02d}_{path.name}"
        with atomic_output(target) as tmp:
            shutil.copyfile(path, tmp)
        entries.append({"name": name, "kind": kind, "file": f"overlays/{target.name}"})
    return entries


def build_atlas(
    input_path: str | os.PathLike[str],
    output_dir: str | os.PathLike[str],
    *,
    pixel_size_nm: float | None = None,
    workers: int | None = None,
    scheduler: Any = None,
    search_px: int = 64,
    progress: bool = False,
    require_memory: Any = None,
    overlays: list[tuple[str, str | os.PathLike[str], str | None]] | None = None,
) -> AtlasResult:
    """Build a multiscale atlas from one huge image or a list of overlapping tiles.

    Parameters
    ----------
    input_path : path-like
        An image (TIFF/BigTIFF, MRC, PNG, Zarr/OME-Zarr), or a tile list: a CSV with
        columns ``file,x_px,y_px`` (nominal top-left corner of each tile in mosaic pixels,
        files relative to the CSV) or a SerialEM ``.mdoc``/``.idoc``.
    output_dir : path-like
        New, empty or emkit's folder. Receives ``atlas.ome.zarr`` (OME-NGFF 0.4 pyramid),
        ``atlas.dzi`` + ``atlas_files/`` (DeepZoom, PNG tiles of 254 px, overlap 1),
        ``atlas.json`` and, for tiles, ``positions.csv`` (solved positions, atlas pixels).
    pixel_size_nm : float, optional
        Overrides the pixel size of the input (default: from the files; None if unknown).
    workers : int, optional
        Threads (default: the cores this process may use).
    scheduler : str, optional
        Address of a running Dask scheduler for the overlap registrations.
    search_px : int
        How far (px) a tile may be from its nominal position relative to a neighbour.
    require_memory : callable, optional
        ``require_memory(n_bytes, what, hint)`` refuses a run that needs more memory than
        there is (the CLI passes :func:`emkit.cli._options.require_memory`).
    overlays : list of (kind, file, name or None), optional
        Layers the viewer can toggle, copied into ``overlays/`` and listed in
        ``atlas.json``: ``"mask"`` (a PNG, nonzero = shown, e.g. a registration defect
        mask), ``"outlines"`` (a label PNG, e.g. a segmentation, or JSON polygons),
        ``"points"`` (a CSV ``x,y[,radius]`` in atlas pixels, or JSON, e.g. picked
        particles). See :mod:`emkit.atlas._web` for the formats.

    Raises
    ------
    MissingFileError, FileFormatError, MismatchError, InputError, OutputExistsError
        Before anything is written.
    """
    from emkit.errors import InputError, with_path
    from emkit.io import check_not_input, make_output_folder

    source = Path(input_path)
    out = Path(output_dir)
    n_workers = _workers(workers)
    layers = _check_overlays(overlays or [], out)
    if pixel_size_nm is not None and not (math.isfinite(pixel_size_nm) and pixel_size_nm > 0):
        raise InputError(f"pixel size {pixel_size_nm} nm: give a positive number")
    if not source.exists():
        from emkit.errors import MissingFileError

        raise MissingFileError(with_path(source, "no such file or folder; check the path"))
    if source.is_dir() and not source.name.lower().endswith(".zarr"):
        from emkit.errors import FileFormatError

        raise FileFormatError(
            with_path(
                source,
                "is a folder; give an image (TIFF, MRC, PNG, Zarr) or a tile list "
                "(positions .csv, SerialEM .mdoc/.idoc)",
            )
        )
    check_not_input(out, [source])
    if out.exists() and not out.is_dir():
        from emkit.errors import OutputExistsError

        raise OutputExistsError(with_path(out, "is a file; give a folder for the atlas"))
    if is_tile_list(source):
        tile_set = read_tile_list(source, pixel_size_nm=pixel_size_nm)
        for tile in tile_set.tiles:
            check_not_input(out, [tile.path])
        if require_memory is not None:
            require_memory(
                _tiles_memory(tile_set, search_px, n_workers),
                f"stitching the {tile_set.n} tiles of {source.name}",
                "use fewer --workers",
            )
        return _build_from_tiles(
            tile_set, out, n_workers, scheduler, search_px, progress, overlays=layers
        )
    data, file_ps = _open_image(source)
    ps = pixel_size_nm or file_ps
    if require_memory is not None:
        h, w = (int(n) for n in data.shape)
        itemsize = np.dtype(data.dtype).itemsize
        need = 2 * (1 << 27) + (2 * 512 * w * (itemsize + 8)) + 256 * w * n_workers * 2
        require_memory(need, f"the pyramid of {source.name} ({h} x {w} px)", "use fewer --workers")
    make_output_folder(out)
    levels, n_dzi = _write_outputs(
        out,
        data,
        pixel_size_nm=ps,
        source=source,
        workers=n_workers,
        extra={},
        positions_csv=None,
        overlays=layers,
    )
    h, w = (int(n) for n in data.shape)
    while _OPEN_FILES:
        _OPEN_FILES.pop().close()
    return AtlasResult(out, w, h, levels, ps, 1, n_dzi)


def _build_from_tiles(
    tile_set: TileSet,
    out: Path,
    workers: int,
    scheduler: Any,
    search_px: int,
    progress: bool,
    *,
    overlays: list[tuple[str, Path, str]] | None = None,
) -> AtlasResult:
    from emkit.atlas._pyramid import MosaicRender
    from emkit.atlas._stitch import stitch
    from emkit.io import make_output_folder

    solved = stitch(
        tile_set, search_px=search_px, workers=workers, scheduler=scheduler, progress=progress
    )
    xy = solved.positions_xy
    # The atlas frame is put where the tiles' sub-pixel parts agree best (their circular
    # mean), so tiles are interpolated as little as possible.
    phase = np.angle(np.exp(2j * np.pi * (xy - np.floor(xy))).mean(axis=0)) / (2 * np.pi)
    xy = xy - phase
    origin = np.floor(xy.min(axis=0) + 0.5)  # nearest whole pixel: at most half a pixel cut
    atlas_xy = xy - origin
    h, w = tile_set.shape
    width = int(math.floor(float((atlas_xy[:, 0] + w).max()) + 0.5))
    height = int(math.floor(float((atlas_xy[:, 1] + h).max()) + 0.5))
    render = MosaicRender(tile_set, atlas_xy, (height, width), workers=workers, progress=progress)
    used = np.asarray(solved.used, bool)
    res = solved.residual_px[used] if used.any() else np.zeros(1)
    residual = {"mean": float(res.mean()), "max": float(res.max())}
    lines = ["file,x_px,y_px"] + [
        f"{t.name},{p[0]:.3f},{p[1]:.3f}" for t, p in zip(tile_set.tiles, atlas_xy)
    ]
    extra = {"tiles": tile_set.n, "overlaps_used": int(used.sum()), "overlap_residual_px": residual}
    make_output_folder(out)
    levels, n_dzi = _write_outputs(
        out,
        render,
        pixel_size_nm=tile_set.pixel_size_nm,
        source=tile_set.source,
        workers=workers,
        extra=extra,
        positions_csv="\n".join(lines) + "\n",
        overlays=overlays,
    )
    return AtlasResult(
        out,
        width,
        height,
        levels,
        tile_set.pixel_size_nm,
        tile_set.n,
        n_dzi,
        atlas_xy,
        len(solved.pairs),
        int(used.sum()),
        residual,
        [t.path for t in tile_set.tiles],
    )
