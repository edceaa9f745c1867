"""The mosaic rendered chunk by chunk into an OME-Zarr pyramid.

:class:`MosaicRender` looks like a read-only 2D array: slicing it renders that region from
the tiles that touch it (each tile shifted by its sub-pixel position with bilinear
interpolation, tiles blended with feathered weights that fall to zero at the tile edges).
:func:`write_pyramid` hands it to emkit's OME-Zarr writer, which asks for one band of
chunks at a time, so memory holds one band (and the tiles touching it), never the mosaic;
the pieces of a band are rendered in parallel on Dask's threaded scheduler.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from emkit.atlas._positions import TileSet
from emkit.atlas._tiles import TileCache

CHUNK = 512


class MosaicRender:
    """A lazy ``(height, width)`` array of the blended mosaic (see the module docstring).

    Parameters
    ----------
    tile_set : TileSet
    positions_xy : ndarray (n, 2)
        Top-left corner of every tile in output pixels (float, sub-pixel).
    shape : (int, int)
        Output size.
    workers : int
        Threads that render the pieces of one band.
    feather_px : float
        Width of the blending ramp at each tile edge.
    """

    def __init__(
        self,
        tile_set: TileSet,
        positions_xy: np.ndarray,
        shape: tuple[int, int],
        *,
        workers: int = 1,
        feather_px: float | None = None,
        progress: bool = False,
    ) -> None:
        self.tile_set = tile_set
        self.xy = np.asarray(positions_xy, np.float64)
        self.shape = (int(shape[0]), int(shape[1]))
        self.ndim = 2
        self.dtype = np.dtype(tile_set.dtype)
        self.workers = max(1, int(workers))
        h, w = tile_set.shape
        self.feather = float(feather_px or max(1.0, min(h, w) / 16.0))
        self.cache = TileCache(max(4, tile_set.n))
        self.bar: Any = None
        if progress:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=self.shape[0], desc="mosaic rows", unit="row")

    def __getitem__(self, key: Any) -> np.ndarray:
        if not isinstance(key, tuple):
            key = (key,)
        key = tuple(key) + (slice(None),) * (2 - len(key))
        (y0, y1, _), (x0, x1, _) = (k.indices(n) for k, n in zip(key, self.shape))
        y1, x1 = max(y0, y1), max(x0, x1)
        step = max(CHUNK, int(math.ceil((x1 - x0) / self.workers / CHUNK)) * CHUNK)
        pieces = [(xs, min(x1, xs + step)) for xs in range(x0, x1, step)]
        out = np.zeros((y1 - y0, x1 - x0), self.dtype)
        if self.workers > 1 and len(pieces) > 1:
            import dask

            # Dask's threaded scheduler: the pieces share this process's tile cache.
            tasks = [dask.delayed(self.render)(y0, y1, a, b) for a, b in pieces]
            done = list(dask.compute(*tasks, scheduler="threads", num_workers=self.workers))
        else:
            done = [self.render(y0, y1, a, b) for a, b in pieces]
        for (a, b), block in zip(pieces, done):
            out[:, a - x0 : b - x0] = block
        # Tiles above the next band are not needed again (the writer goes down in bands).
        h = self.tile_set.shape[0]
        self.cache.drop({i for i in range(self.tile_set.n) if self.xy[i, 1] + h > y1})
        if self.bar is not None:
            self.bar.update(y1 - y0)
            if y1 >= self.shape[0]:
                self.bar.close()
        return out

    def tiles_in(self, y0: int, y1: int, x0: int, x1: int) -> list[int]:
        h, w = self.tile_set.shape
        x, y = self.xy[:, 0], self.xy[:, 1]
        hit = (x < x1) & (x + w > x0) & (y < y1) & (y + h > y0)
        return [int(i) for i in np.flatnonzero(hit)]

    def _ramp(self, u: np.ndarray, n: int) -> np.ndarray:
        dist = np.minimum(u + 1.0, n - u)
        return np.clip(dist / self.feather, 1e-4, 1.0).astype(np.float32)

    def render(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        """The blended mosaic over rows ``y0:y1``, columns ``x0:x1``."""
        num = np.zeros((y1 - y0, x1 - x0), np.float32)
        den = np.zeros_like(num)
        h, w = self.tile_set.shape
        for index in self.tiles_in(y0, y1, x0, x1):
            px, py = self.xy[index]
            ix, iy = math.floor(px), math.floor(py)
            fx, fy = px - ix, py - iy
            # Output pixel ix + k shows tile coordinate k - fx (between k-1 and k).
            kx_lo = max(1 if fx > 0 else 0, x0 - ix)
            kx_hi = min(w - 1, x1 - 1 - ix)
            ky_lo = max(1 if fy > 0 else 0, y0 - iy)
            ky_hi = min(h - 1, y1 - 1 - iy)
            if kx_lo > kx_hi or ky_lo > ky_hi:
                continue
            tile = self.cache.get(index, self.tile_set.tiles[index])
            r0, c0 = ky_lo - (1 if fy > 0 else 0), kx_lo - (1 if fx > 0 else 0)
            part = tile[r0 : ky_hi + 1, c0 : kx_hi + 1].astype(np.float32)
            if fy > 0:
                part = fy * part[:-1] + (1.0 - fy) * part[1:]
            if fx > 0:
                part = fx * part[:, :-1] + (1.0 - fx) * part[:, 1:]
            wy = self._ramp(np.arange(ky_lo, ky_hi + 1) - fy, h)
            wx = self._ramp(np.arange(kx_lo, kx_hi + 1) - fx, w)
            weight = wy[:, None] * wx[None, :]
            sl = (
                slice(iy + ky_lo - y0, iy + ky_hi + 1 - y0),
                slice(ix + kx_lo - x0, ix + kx_hi + 1 - x0),
            )
            num[sl] += weight * part
            den[sl] += weight
        with np.errstate(invalid="ignore", divide="ignore"):
            value = np.where(den > 0, num / np.maximum(den, 1e-12), 0.0)
        if np.issubdtype(self.dtype, np.integer):
            info = np.iinfo(self.dtype)
            value = np.clip(np.rint(value), info.min, info.max)
        return value.astype(self.dtype)


def n_pyramid_levels(shape: tuple[int, int]) -> int:
    """Levels down to a long side of at most 256 px (the last level a browser shows whole)."""
    levels, current = 1, tuple(shape)
    while max(current) > 256 and min(current) >= 2:
        current = tuple(n // 2 for n in current)
        levels += 1
    return levels


def write_pyramid(path: Path, data: Any, *, pixel_size_nm: float | None, name: str) -> int:
    """Write ``data`` (any array that slices to numpy) as an OME-Zarr pyramid; return the
    number of levels. Level k+1 is the 2x2 mean of level k; chunks of 512x512."""
    from emkit.io._zarr import write_ome_zarr

    shape = (int(data.shape[0]), int(data.shape[1]))
    levels = n_pyramid_levels(shape)
    voxel = None if pixel_size_nm is None else (pixel_size_nm * 10.0,) * 3
    write_ome_zarr(
        path,
        data,
        voxel_size=voxel,
        origin=(0.0, 0.0, 0.0),
        n_levels=levels,
        chunks=(min(CHUNK, shape[0]), min(CHUNK, shape[1])),
        name=name,
    )
    return levels
