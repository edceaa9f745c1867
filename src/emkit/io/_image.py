"""8- and 16-bit images (PNG; JPEG and BMP read only) through OpenCV, as grayscale."""

from __future__ import annotations

import logging
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from emkit.errors import FileFormatError, ShapeError, with_path
from emkit.io._paths import PathLike
from emkit.io._quiet import opencv_quiet
from emkit.io._volume import Volume

logger = logging.getLogger(__name__)


def read_image(path: PathLike) -> Volume:
    """Read a PNG/JPEG/BMP image as a 2D grayscale :class:`Volume` (no pixel size).

    8-bit and 16-bit images keep their dtype (uint8 / uint16). A colour image is
    converted to gray with OpenCV's luma weights and a logged warning; an alpha channel
    is dropped.

    The file's structure is checked before anything is decoded: a truncated or damaged
    file, or a header that claims more pixels than emkit decodes (a decompression bomb),
    raises :class:`~emkit.errors.FileFormatError` with the number of bytes it would need.
    OpenCV's and libpng's own warnings go to the DEBUG log, not to stderr.
    """
    import cv2

    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise FileFormatError(
            with_path(path, f"cannot be read ({error.strerror or error}); check the file")
        ) from None
    width, height, bytes_per_pixel = _image_header(raw, path)
    _require_decodable_size(width, height, bytes_per_pixel, path)
    # imdecode on the raw bytes, not imread on the name: it also works for non-ASCII paths.
    try:
        with opencv_quiet(logger):
            image = cv2.imdecode(np.frombuffer(raw, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error as error:
        raise FileFormatError(
            with_path(path, f"{_NOT_READABLE} ({str(error).strip().splitlines()[-1]})")
        ) from None
    if image is None:
        raise FileFormatError(with_path(path, _NOT_READABLE))
    if image.ndim == 3:
        channels = image.shape[2]
        if channels == 1:
            image = image[:, :, 0]
        else:
            logger.warning("%s: colour image (%d channels) converted to gray", path, channels)
            code = cv2.COLOR_BGRA2GRAY if channels == 4 else cv2.COLOR_BGR2GRAY
            image = cv2.cvtColor(image, code)
    return Volume(data=np.ascontiguousarray(image), voxel_size=None, path=path)


_NOT_READABLE = "is not a readable image file (corrupt or wrong suffix?); re-export it"

# OpenCV refuses images with more pixels than this (CV_IO_MAX_IMAGE_PIXELS); emkit says
# so first, in its own words, before a single byte is decoded.
MAX_IMAGE_PIXELS = 1 << 30

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# PNG colour type -> channels OpenCV decodes to (a palette becomes BGR).
_PNG_CHANNELS = {0: 1, 2: 3, 3: 3, 4: 2, 6: 4}
# JPEG start-of-frame markers (baseline, progressive, lossless, arithmetic...).
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _damaged(path: Path, what: str) -> FileFormatError:
    return FileFormatError(
        with_path(path, f"is a damaged or truncated image file ({what}); re-export it")
    )


def _image_header(raw: bytes, path: Path) -> tuple[int, int, int]:
    """``(width, height, bytes per decoded pixel)`` from the header, after structural checks.

    PNG: every chunk is complete with a correct CRC, IHDR first, IEND present. JPEG: the
    segments up to the frame header are complete and the data end with an EOI marker
    after the last scan. BMP: the header fits and the file is as long as it says.
    """
    if raw.startswith(_PNG_SIGNATURE):
        return _png_header(raw, path)
    if raw.startswith(b"\xff\xd8"):
        return _jpeg_header(raw, path)
    if raw.startswith(b"BM"):
        return _bmp_header(raw, path)
    raise FileFormatError(
        with_path(
            path,
            "is not a PNG, JPEG or BMP image (its first bytes say otherwise; wrong suffix or "
            "damaged?); re-export it",
        )
    )


def _chunk_name(kind: bytes) -> str:
    return repr("".join(chr(c) if 32 < c < 127 else "?" for c in kind))


def _png_header(raw: bytes, path: Path) -> tuple[int, int, int]:
    pos, size = len(_PNG_SIGNATURE), len(raw)
    header: tuple[int, int, int] | None = None
    while True:
        if pos + 8 > size:
            raise _damaged(path, f"file ends at byte {size} without an IEND chunk")
        length, kind = struct.unpack_from(">I4s", raw, pos)
        end = pos + 12 + length
        if end > size:
            raise _damaged(path, f"chunk {_chunk_name(kind)} at byte {pos} runs past the end")
        (crc,) = struct.unpack_from(">I", raw, end - 4)
        if zlib.crc32(memoryview(raw)[pos + 4 : end - 4]) & 0xFFFFFFFF != crc:
            raise _damaged(path, f"chunk {_chunk_name(kind)} at byte {pos} fails its CRC")
        if header is None:
            if kind != b"IHDR" or length < 13:
                raise _damaged(path, "no IHDR header chunk")
            width, height, depth, colour = struct.unpack_from(">IIBB", raw, pos + 8)
            if width == 0 or height == 0 or colour not in _PNG_CHANNELS:
                raise _damaged(path, f"IHDR gives {width} x {height}, colour type {colour}")
            header = (width, height, _PNG_CHANNELS[colour] * (2 if depth == 16 else 1))
        if kind == b"IEND":
            return header
        pos = end


def _jpeg_header(raw: bytes, path: Path) -> tuple[int, int, int]:
    pos, size = 2, len(raw)
    header: tuple[int, int, int] | None = None
    while header is None:
        while pos < size and raw[pos] != 0xFF:
            pos += 1  # tolerate stray bytes between segments, as libjpeg does
        while pos < size and raw[pos] == 0xFF:
            pos += 1
        if pos + 2 >= size:
            raise _damaged(path, "no frame header (SOF) before the end of the file")
        marker = raw[pos]
        pos += 1
        if marker in (0x01, *range(0xD0, 0xD8)):
            continue  # markers without a length field
        if marker in (0xD9, 0xDA):
            raise _damaged(path, "no frame header (SOF) before the image data")
        (length,) = struct.unpack_from(">H", raw, pos)
        if length < 2 or pos + length > size:
            raise _damaged(path, f"segment 0xFF{marker:02X} at byte {pos - 2} runs past the end")
        if marker in _JPEG_SOF:
            if length < 8:
                raise _damaged(path, "frame header too short")
            height, width, components = struct.unpack_from(">HHB", raw, pos + 3)
            if width == 0 or height == 0 or components == 0:
                raise _damaged(path, f"frame header gives {width} x {height} pixels")
            depth = raw[pos + 2]
            header = (width, height, components * (2 if depth > 8 else 1))
        pos += length
    # Entropy-coded data never hold 0xFFD9 (0xFF is stuffed with 0x00), so a complete file
    # has an EOI marker after its last start-of-scan.
    if raw.rfind(b"\xff\xd9") < max(raw.rfind(b"\xff\xda"), pos):
        raise _damaged(path, "the image data stop before the end-of-image marker: truncated")
    return header


def _bmp_header(raw: bytes, path: Path) -> tuple[int, int, int]:
    if len(raw) < 26:
        raise _damaged(path, f"only {len(raw)} bytes")
    file_size, _, data_offset, dib_size = struct.unpack_from("<IIII", raw, 2)
    if dib_size == 12:
        width, height = struct.unpack_from("<HH", raw, 18)
        (bits,) = struct.unpack_from("<H", raw, 24)
    elif dib_size >= 40 and len(raw) >= 30:
        width, height = struct.unpack_from("<ii", raw, 18)
        (bits,) = struct.unpack_from("<H", raw, 28)
    else:
        raise _damaged(path, f"unknown BMP header size {dib_size}")
    height = abs(height)  # negative: rows stored top-down
    if width <= 0 or height == 0:
        raise _damaged(path, f"header gives {width} x {height} pixels")
    if file_size > len(raw) or data_offset >= len(raw):
        raise _damaged(path, f"header says {file_size} bytes but the file has {len(raw)}")
    return width, height, 4 if bits == 32 else 3 if bits > 8 else 1


def _require_decodable_size(width: int, height: int, bytes_per_pixel: int, path: Path) -> None:
    pixels = width * height
    needed = pixels * bytes_per_pixel
    if pixels > MAX_IMAGE_PIXELS:
        raise FileFormatError(
            with_path(
                path,
                f"header claims {width} x {height} pixels, which would need "
                f"{_size_text(needed)} decoded; emkit decodes PNG/JPEG/BMP images up to "
                f"{MAX_IMAGE_PIXELS} pixels (a damaged header or a decompression bomb?): "
                "for images this large use TIFF or Zarr",
            )
        )
    total = _physical_memory()
    if total is not None and needed > total:
        raise FileFormatError(
            with_path(
                path,
                f"header claims {width} x {height} pixels, which would need "
                f"{_size_text(needed)} decoded, more than this machine's memory "
                f"({_size_text(total)}); use TIFF or Zarr for images this large",
            )
        )


def _size_text(nbytes: int) -> str:
    if nbytes >= 1 << 30:
        return f"{nbytes / (1 << 30):.1f} GiB"
    return f"{nbytes / (1 << 20):.1f} MiB"


def _physical_memory() -> int | None:
    try:
        return int(os.sysconf("SC_PHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def png_ready(data: np.ndarray, path: PathLike | None = None) -> np.ndarray:
    """Return ``data`` as uint8 or uint16 for a PNG, exactly when the values allow it.

    uint8/uint16 pass unchanged and bool becomes 0/255. Other arrays whose values are all
    integers in 0..255 (0..65535) become uint8 (uint16) exactly; anything else (negative,
    fractional or larger values) is rescaled linearly from its min..max to 0..255 uint8,
    with a logged warning.
    """
    arr = np.asarray(data)
    if arr.dtype in (np.uint8, np.uint16):
        return arr
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8) * np.uint8(255)
    if arr.size == 0:
        return arr.astype(np.uint8)
    lo, hi = float(np.min(arr)), float(np.max(arr))
    if not (np.isfinite(lo) and np.isfinite(hi)):
        raise FileFormatError(
            with_path(path, "PNG cannot hold NaN or infinite values; fix the data first")
        )
    integral = np.issubdtype(arr.dtype, np.integer) or bool(np.all(np.equal(np.mod(arr, 1), 0)))
    if integral and lo >= 0 and hi <= 255:
        return arr.astype(np.uint8)
    if integral and lo >= 0 and hi <= 65535:
        return arr.astype(np.uint16)
    logger.warning(
        "%s: PNG holds integers; intensities rescaled from [%g, %g] to 0..255",
        path if path is not None else "image",
        lo,
        hi,
    )
    span = hi - lo if hi > lo else 1.0
    scaled = (arr.astype(np.float64) - lo) * (255.0 / span)
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def write_png(path: PathLike, data: np.ndarray) -> None:
    """Write a 2D array as a grayscale PNG at ``path`` (see :func:`png_ready` for the dtype)."""
    import cv2

    if np.ndim(data) != 2:
        raise ShapeError(
            with_path(
                path,
                f"PNG holds one 2D image but the data are {np.ndim(data)}D "
                f"{tuple(np.shape(data))}; write a volume or stack as .mrc, .tif or .zarr",
            )
        )
    image = png_ready(data, path)
    ok, encoded = cv2.imencode(".png", np.ascontiguousarray(image))
    if not ok:  # pragma: no cover - cv2 encodes any 2D uint8/uint16 array
        raise FileFormatError(with_path(path, "OpenCV could not encode the image as PNG"))
    Path(path).write_bytes(encoded.tobytes())
