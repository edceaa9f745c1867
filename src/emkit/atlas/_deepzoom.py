"""DeepZoom (``.dzi`` + ``_files/``) from an OME-Zarr pyramid, for web viewers.

Level numbering is DeepZoom's: level 0 is 1x1 pixel, level ``L_max = ceil(log2(max(W, H)))``
is the full image, and level L is the full image scaled by ``2^(L - L_max)`` (sizes rounded
up). Each level is cut into tiles of ``tile_size`` pixels with ``overlap`` pixels shared with
each neighbour, written as ``<files>/<level>/<col>_<row>.png`` (8-bit gray).

Levels that the OME-Zarr pyramid holds are read from it (its level k, 2x2 means, rounded
down in size, padded by repeating the last row/column); smaller ones are resized in memory
from the smallest pyramid level. Every level is read one row of tiles at a time.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

TILE_SIZE = 254
OVERLAP = 1


@dataclass
class DeepZoomInfo:
    width: int
    height: int
    max_level: int
    n_tiles: int


def dzi_xml(width: int, height: int, tile_size: int = TILE_SIZE, overlap: int = OVERLAP) -> str:
    """The ``.dzi`` descriptor."""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<Image xmlns="http://schemas.microsoft.com/deepzoom/2008" '
        f'TileSize="{tile_size}" Overlap="{overlap}" Format="png">\n'
        f'  <Size Width="{width}" Height="{height}"/>\n'
        "</Image>\n"
    )


def max_level(width: int, height: int) -> int:
    return int(math.ceil(math.log2(max(width, height, 1)))) if max(width, height) > 1 else 0


def level_size(width: int, height: int, level: int) -> tuple[int, int]:
    """(width, height) of a DeepZoom level."""
    f = 2 ** (max_level(width, height) - level)
    return max(1, math.ceil(width / f)), max(1, math.ceil(height / f))


class _Level:
    """Rows of one DeepZoom level, from a pyramid level (padded) or an in-memory image."""

    def __init__(self, source: Any, size_wh: tuple[int, int], to_uint8: Any) -> None:
        self.source = source
        self.w, self.h = size_wh
        self.to_uint8 = to_uint8

    def rows(self, y0: int, y1: int) -> np.ndarray:
        sh, sw = self.source.shape
        ys = np.minimum(np.arange(y0, y1), sh - 1)
        a, b = int(ys.min()), int(ys.max()) + 1
        block = np.asarray(self.source[a:b, : min(sw, self.w)])
        block = block[ys - a]
        if block.shape[1] < self.w:
            block = np.concatenate(
                [block, np.repeat(block[:, -1:], self.w - block.shape[1], axis=1)], axis=1
            )
        return self.to_uint8(block)


def _contrast(smallest: np.ndarray, dtype: np.dtype) -> Any:
    if dtype == np.uint8:
        return lambda a: np.asarray(a, np.uint8)
    finite = smallest[np.isfinite(smallest)] if smallest.size else smallest
    lo, hi = np.percentile(finite, [0.5, 99.5]) if finite.size else (0.0, 1.0)
    if hi <= lo:
        hi = lo + 1.0

    def convert(a: np.ndarray) -> np.ndarray:
        scaled = (np.asarray(a, np.float32) - lo) * (255.0 / (hi - lo))
        return np.clip(np.rint(np.nan_to_num(scaled)), 0, 255).astype(np.uint8)

    return convert


def write_deepzoom(
    levels: list[Any],
    files_dir: Path,
    *,
    tile_size: int = TILE_SIZE,
    overlap: int = OVERLAP,
    workers: int = 1,
) -> DeepZoomInfo:
    """Write the DeepZoom tiles of a pyramid into ``files_dir`` (made here).

    Parameters
    ----------
    levels : list of 2D arrays
        The pyramid, full size first; level k+1 the 2x2 mean of level k (zarr arrays are
        read a row of tiles at a time).
    files_dir : Path
        The ``<name>_files`` folder (written as is: the caller makes it atomic).

    Returns
    -------
    DeepZoomInfo
        Size, the top DeepZoom level and the number of tiles written.
    """
    from PIL import Image

    height, width = (int(n) for n in levels[0].shape)
    top = max_level(width, height)
    smallest = np.asarray(levels[-1][...])
    to_uint8 = _contrast(smallest, np.dtype(levels[0].dtype))
    small_image = Image.fromarray(to_uint8(smallest))
    files_dir.mkdir(parents=True, exist_ok=True)
    n_tiles = 0
    for level in range(top, -1, -1):
        w, h = level_size(width, height, level)
        k = top - level
        if k < len(levels):
            source = _Level(levels[k], (w, h), to_uint8)
        else:
            resized = np.asarray(small_image.resize((w, h), Image.Resampling.BOX))
            source = _Level(resized, (w, h), lambda a: a)
        folder = files_dir / str(level)
        folder.mkdir(exist_ok=True)
        n_rows, n_cols = math.ceil(h / tile_size), math.ceil(w / tile_size)

        def write_row(
            row: int,
            source: _Level = source,
            folder: Path = folder,
            n_cols: int = n_cols,
            w: int = w,
            h: int = h,
        ) -> int:
            y0 = max(0, row * tile_size - overlap)
            y1 = min(h, (row + 1) * tile_size + overlap)
            strip = source.rows(y0, y1)
            for col in range(n_cols):
                x0 = max(0, col * tile_size - overlap)
                x1 = min(w, (col + 1) * tile_size + overlap)
                Image.fromarray(np.ascontiguousarray(strip[:, x0:x1])).save(
                    folder / f"{col}_{row}.png", compress_level=1
                )
            return n_cols

        if workers > 1 and n_rows > 1:
            with ThreadPoolExecutor(workers) as pool:
                n_tiles += sum(pool.map(write_row, range(n_rows)))
        else:
            n_tiles += sum(write_row(row) for row in range(n_rows))
    return DeepZoomInfo(width, height, top, n_tiles)
