"""8- and 16-bit images (PNG; JPEG and BMP read only) through OpenCV, as grayscale."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from emkit.errors import FileFormatError, ShapeError, with_path
from emkit.io._paths import PathLike
from emkit.io._volume import Volume

logger = logging.getLogger(__name__)


def read_image(path: PathLike) -> Volume:
    """Read a PNG/JPEG/BMP image as a 2D grayscale :class:`Volume` (no pixel size).

    8-bit and 16-bit images keep their dtype (uint8 / uint16). A colour image is
    converted to gray with OpenCV's luma weights and a logged warning; an alpha channel
    is dropped.
    """
    import cv2

    path = Path(path)
    # imdecode on the raw bytes, not imread on the name: it also works for non-ASCII paths.
    raw = np.fromfile(path, dtype=np.uint8)
    image = cv2.imdecode(raw, cv2.IMREAD_UNCHANGED) if raw.size else None
    if image is None:
        raise FileFormatError(
            with_path(path, "is not a readable image file (corrupt or wrong suffix?); re-export it")
        )
    if image.ndim == 3:
        channels = image.shape[2]
        if channels == 1:
            image = image[:, :, 0]
        else:
            logger.warning("%s: colour image (%d channels) converted to gray", path, channels)
            code = cv2.COLOR_BGRA2GRAY if channels == 4 else cv2.COLOR_BGR2GRAY
            image = cv2.cvtColor(image, code)
    return Volume(data=np.ascontiguousarray(image), voxel_size=None, path=path)


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
