"""TIFF stacks through tifffile, pixel size kept in ImageJ (or OME, or TIFF resolution) tags.

emkit writes ImageJ hyperstacks: ``XResolution``/``YResolution`` in pixels per nm, the
ImageJ ``spacing`` (z step) in nm, ``unit=nm``, and ``xorigin``/``yorigin``/``zorigin`` in
pixels the way ImageJ's Calibration stores them (physical x of pixel i is
``(i - xorigin) * pixel_width``), so Fiji shows the right scale and emkit reads it back.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from emkit.errors import EmkitError, FileFormatError, ShapeError, with_path
from emkit.io._paths import PathLike
from emkit.io._quiet import python_warnings_to_log, read_warning_level
from emkit.io._volume import Volume

logger = logging.getLogger(__name__)

# Length of one unit in Å, for the unit names ImageJ, OME and others write.
_UNIT_TO_A: dict[str, float] = {
    "a": 1.0,
    "å": 1.0,
    "\u212b": 1.0,
    "angstrom": 1.0,
    "angstroms": 1.0,
    "nm": 10.0,
    "nanometer": 10.0,
    "nanometers": 10.0,
    "um": 1e4,
    "µm": 1e4,
    "μm": 1e4,
    "micron": 1e4,
    "microns": 1e4,
    "micrometer": 1e4,
    "micrometers": 1e4,
    "\\u00b5m": 1e4,
    "mm": 1e7,
    "millimeter": 1e7,
    "cm": 1e8,
    "centimeter": 1e8,
    "m": 1e10,
    "meter": 1e10,
}

# dtypes ImageJ can hold; everything else is written as float32.
_IMAGEJ_DTYPES = (np.uint8, np.uint16, np.float32)


class _ToDebug(logging.Filter):
    """Pass tifffile's records on to emkit's logger at DEBUG level instead (and keep them)."""

    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def filter(self, record: logging.LogRecord) -> bool:
        self.messages.append(record.getMessage())
        logger.debug("tifffile: %s", record.getMessage())
        return False


@contextlib.contextmanager
def _tifffile_quiet() -> Iterator[list[str]]:
    # tifffile logs a WARNING for what emkit reports itself (a file with no pages, odd
    # tags): on the CLI that would be a second line beside emkit's one-line error.
    tiff_logger = logging.getLogger("tifffile")
    quiet = _ToDebug()
    tiff_logger.addFilter(quiet)
    try:
        yield quiet.messages
    finally:
        tiff_logger.removeFilter(quiet)


# tifffile messages that mean pages are missing: it then reads what is left without error.
_TRUNCATION_SIGNS = ("invalid page offset", "corrupted file", "invalid offset to first page")


def _unit_in_A(unit: Any) -> float | None:
    if unit is None:
        return None
    return _UNIT_TO_A.get(str(unit).strip().lower())


def _imagej_calibration(
    tif: tifffile.TiffFile,
) -> tuple[tuple[float, float, float] | None, tuple[float, float, float]]:
    meta = tif.imagej_metadata or {}
    scale = _unit_in_A(meta.get("unit"))
    xres, yres = _page_resolution(tif.pages[0])
    if scale is None or xres is None or yres is None:
        return None, (0.0, 0.0, 0.0)
    vx, vy = scale / xres, scale / yres
    vz = float(meta["spacing"]) * scale if "spacing" in meta else vx
    voxel = (vz, vy, vx)
    origin = (
        -float(meta.get("zorigin", 0.0)) * vz,
        -float(meta.get("yorigin", 0.0)) * vy,
        -float(meta.get("xorigin", 0.0)) * vx,
    )
    return voxel, origin


def _page_resolution(page: Any) -> tuple[float | None, float | None]:
    tags = page.tags
    try:
        xn, xd = tags["XResolution"].value
        yn, yd = tags["YResolution"].value
    except (KeyError, TypeError, ValueError):
        return None, None
    if not xd or not yd or not xn or not yn:
        return None, None
    return xn / xd, yn / yd


def _ome_calibration(tif: tifffile.TiffFile) -> tuple[float, float, float] | None:
    try:
        root = ET.fromstring(tif.ome_metadata or "")
    except ET.ParseError:
        return None
    pixels = next((el for el in root.iter() if el.tag.endswith("Pixels")), None)
    if pixels is None or "PhysicalSizeX" not in pixels.attrib:
        return None
    sizes = []
    for axis in ("Z", "Y", "X"):
        value = pixels.attrib.get(f"PhysicalSize{axis}")
        # OME's default unit is the micrometre.
        unit = _unit_in_A(pixels.attrib.get(f"PhysicalSize{axis}Unit", "µm"))
        sizes.append(None if value is None or unit is None else float(value) * unit)
    if sizes[2] is None:
        return None
    vx = float(sizes[2])
    vy = float(sizes[1]) if sizes[1] is not None else vx
    vz = float(sizes[0]) if sizes[0] is not None else vx
    return vz, vy, vx


def _tiff_resolution_calibration(tif: tifffile.TiffFile) -> tuple[float, float, float] | None:
    # Only a centimetre resolution unit carries a physical size; inch-based DPI values
    # (72, 300) in EM TIFFs describe printing, not the specimen.
    page: Any = tif.pages[0]
    try:
        unit = int(page.tags["ResolutionUnit"].value)
    except (KeyError, TypeError, ValueError):
        return None
    xres, yres = _page_resolution(page)
    if unit != 3 or xres is None or yres is None:
        return None
    vx, vy = 1e8 / xres, 1e8 / yres
    return vx, vy, vx


def _to_gray(data: np.ndarray, axis: int, path: Path) -> np.ndarray:
    channels = data.shape[axis]
    logger.log(read_warning_level(), "%s: colour image (%d samples) converted to gray", path,
               channels)
    rgb = np.moveaxis(data, axis, -1)[..., :3].astype(np.float32)
    if rgb.shape[-1] < 3:
        return rgb[..., 0]
    gray = rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    if np.issubdtype(data.dtype, np.integer):
        gray = np.rint(gray).astype(data.dtype)
    return gray


def _check_extent(tif: tifffile.TiffFile, series: Any, path: Path, *, mmap: bool) -> None:
    """Refuse a TIFF whose image data run past the end of the file, or cannot fit in memory.

    tifffile reads an ImageJ stack as one contiguous block from the first page's offset and
    fills what is missing of a truncated file with zeros; emkit says it is truncated.
    """
    size = int(tif.filehandle.size)
    offset = getattr(series, "dataoffset", None)
    if offset is not None:
        end = int(offset) + int(series.nbytes)
        if end > size:
            raise _truncated(path, end, size)
    else:
        for page in series.pages:
            if page is None:
                continue
            for start, count in zip(page.dataoffsets, page.databytecounts):
                if int(start) + int(count) > size:
                    raise _truncated(path, int(start) + int(count), size)
    total = _physical_memory()
    if total is not None and int(series.nbytes) > total and not (mmap and offset is not None):
        raise FileFormatError(
            with_path(
                path,
                f"holds {series.shape} {series.dtype} pixels, {int(series.nbytes)} bytes once "
                f"decoded, more than this machine's memory ({total} bytes); the header is "
                "damaged, or save it uncompressed (memory-mapped) or as Zarr",
            )
        )


def _truncated(path: Path, end: int, size: int) -> FileFormatError:
    return FileFormatError(
        with_path(
            path,
            f"is truncated: its image data reach byte {end} but the file has only {size} "
            "bytes; re-export it or check the transfer",
        )
    )


def _physical_memory() -> int | None:
    try:
        return int(os.sysconf("SC_PHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def read_tiff(path: PathLike, *, mmap: bool = False) -> Volume:
    """Read a TIFF image or stack into a :class:`Volume`.

    The pixel size comes from ImageJ metadata, else OME-XML, else a centimetre-based
    TIFF resolution; it is None otherwise. Singleton axes are dropped; an RGB image is
    converted to gray (with a logged warning).

    Parameters
    ----------
    path : path-like
    mmap : bool
        Memory-map uncompressed contiguous data (falls back to reading otherwise).

    Returns
    -------
    Volume
        ``(y, x)`` or ``(z, y, x)`` data in the file's dtype.
    """
    path = Path(path)
    try:
        with (
            _tifffile_quiet() as notes,
            python_warnings_to_log(logger),
            tifffile.TiffFile(path) as tif,
        ):
            series = tif.series[0]
            axes = series.axes
            damage = [n for n in notes if any(sign in n for sign in _TRUNCATION_SIGNS)]
            if damage:
                note = re.sub(r"<[^>]*>\s*", "", damage[-1])
                raise FileFormatError(
                    with_path(
                        path,
                        f"is damaged or truncated ({note}); re-export it or check the transfer",
                    )
                )
            _check_extent(tif, series, path, mmap=mmap)
            data: np.ndarray | None = None
            if mmap:
                try:
                    data = tifffile.memmap(path, mode="r")
                except (ValueError, TypeError) as error:
                    logger.debug("%s: cannot memory-map (%s); reading it", path, error)
            if data is None:
                data = series.asarray()
            if tif.is_imagej:
                voxel, origin = _imagej_calibration(tif)
            else:
                voxel = _ome_calibration(tif) if tif.is_ome else None
                voxel = voxel or _tiff_resolution_calibration(tif)
                origin = (0.0, 0.0, 0.0)
    except EmkitError:
        raise
    except MemoryError:
        raise
    # tifffile and its codecs raise many types for a damaged file (struct.error for a cut
    # header, RuntimeError from a codec, ...): all of them mean the file cannot be read.
    except Exception as error:
        raise FileFormatError(
            with_path(
                path,
                f"is not a readable TIFF file ({type(error).__name__}: {error}); re-export it",
            )
        ) from None
    if data.ndim == len(axes) and "S" in axes and data.shape[axes.index("S")] > 1:
        data = _to_gray(data, axes.index("S"), path)
        axes = axes.replace("S", "")
    if data.ndim == len(axes):
        keep = [i for i, n in enumerate(data.shape) if n > 1 or axes[i] in "YX"]
        data = data.reshape(tuple(data.shape[i] for i in keep))
        axes = "".join(axes[i] for i in keep)
    else:
        data = np.squeeze(data) if data.ndim > 3 else data
    if data.ndim > 3:
        raise ShapeError(
            with_path(
                path,
                f"has {data.ndim} non-trivial axes ({axes}, shape {data.shape}); emkit reads 2D "
                "images and 3D stacks: save one channel / time point per file",
            )
        )
    return Volume(data=data, voxel_size=voxel, origin=origin, path=path)


def write_tiff(
    path: PathLike,
    data: np.ndarray,
    *,
    voxel_size: tuple[float, float, float] | None,
    origin: tuple[float, float, float],
) -> None:
    """Write an ImageJ TIFF (uncompressed) at ``path`` (no atomic rename here).

    ``data`` is ``(y, x)`` or ``(z, y, x)``; uint8, uint16 and float32 are kept, bool becomes
    uint8 (0/1) and anything else float32. Pixel size and origin go into the ImageJ metadata
    in nm.
    """
    if data.ndim not in (2, 3):
        raise ShapeError(
            with_path(path, f"TIFF holds 2D images or 3D stacks, not {data.ndim}D data")
        )
    arr = np.asarray(data)
    if arr.dtype == np.bool_:
        arr = arr.astype(np.uint8)
    elif arr.dtype.type not in _IMAGEJ_DTYPES:
        arr = arr.astype(np.float32)
    metadata: dict[str, Any] = {"axes": "ZYX" if arr.ndim == 3 else "YX"}
    kwargs: dict[str, Any] = {}
    if voxel_size is not None:
        vz, vy, vx = (float(v) / 10.0 for v in voxel_size)  # Å -> nm
        kwargs["resolution"] = (1.0 / vx, 1.0 / vy)
        metadata["unit"] = "nm"
        if arr.ndim == 3:
            metadata["spacing"] = vz
        metadata["xorigin"] = -float(origin[2]) / 10.0 / vx
        metadata["yorigin"] = -float(origin[1]) / 10.0 / vy
        if arr.ndim == 3:
            metadata["zorigin"] = -float(origin[0]) / 10.0 / vz
    tifffile.imwrite(path, arr, imagej=True, metadata=metadata, **kwargs)
