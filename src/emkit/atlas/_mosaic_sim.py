"""A synthetic tiled mosaic with known tile positions (``emkit sim mosaic``).

The specimen is a section texture (:func:`emkit.sim.sections.section_texture`) made block
by block (one seed per block) at ``1/texture_scale`` of the mosaic's resolution and
interpolated bilinearly, so any tile can be cut without the whole mosaic ever existing in
memory. Tiles sit on a regular grid (``tile - overlap`` apart; the last row and column
are moved in to end at the mosaic's edge), each with its own detector noise. The stage
positions written to ``positions.csv`` are the true ones plus a uniform error of up to
``position_error_px`` along each axis.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

BLOCK = 256


@dataclass
class MosaicSim:
    output_dir: Path
    n_tiles: int
    grid: tuple[int, int]
    true_xy: np.ndarray
    nominal_xy: np.ndarray


class _Texture:
    """The specimen at mosaic resolution, evaluated region by region."""

    def __init__(self, seed: int, scale: float, cell_px: float) -> None:
        self.seed = int(seed)
        self.scale = float(scale)
        self.cell = cell_px
        self.blocks: OrderedDict[tuple[int, int], np.ndarray] = OrderedDict()
        self.capacity = 512

    def block(self, by: int, bx: int) -> np.ndarray:
        from emkit.sim.sections import section_texture

        key = (by, bx)
        if key not in self.blocks:
            seed = (self.seed * 1_000_003 + by * 7919 + bx) % (2**63)
            self.blocks[key] = section_texture(
                (BLOCK, BLOCK), seed=seed, cell_size_px=self.cell, dtype=np.float32
            )
            while len(self.blocks) > self.capacity:
                self.blocks.popitem(last=False)
        self.blocks.move_to_end(key)
        return self.blocks[key]

    def low(self, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
        """Low-resolution texture rows r0:r1, columns c0:c1 (any non-negative range)."""
        out = np.empty((r1 - r0, c1 - c0), np.float32)
        for by in range(r0 // BLOCK, (r1 - 1) // BLOCK + 1):
            for bx in range(c0 // BLOCK, (c1 - 1) // BLOCK + 1):
                ya, yb = max(r0, by * BLOCK), min(r1, (by + 1) * BLOCK)
                xa, xb = max(c0, bx * BLOCK), min(c1, (bx + 1) * BLOCK)
                out[ya - r0 : yb - r0, xa - c0 : xb - c0] = self.block(by, bx)[
                    ya - by * BLOCK : yb - by * BLOCK, xa - bx * BLOCK : xb - bx * BLOCK
                ]
        return out

    def region(self, y0: int, x0: int, h: int, w: int) -> np.ndarray:
        """The texture (0-1) over mosaic rows y0:y0+h, columns x0:x0+w."""
        ys = (np.arange(y0, y0 + h) + 0.5) / self.scale
        xs = (np.arange(x0, x0 + w) + 0.5) / self.scale
        iy, ix = np.floor(ys).astype(int), np.floor(xs).astype(int)
        fy, fx = (ys - iy).astype(np.float32), (xs - ix).astype(np.float32)
        r0, c0 = int(iy.min()), int(ix.min())
        patch = self.low(r0, int(iy.max()) + 2, c0, int(ix.max()) + 2)
        iy -= r0
        ix -= c0
        rows = patch[iy] * (1 - fy)[:, None] + patch[iy + 1] * fy[:, None]
        return rows[:, ix] * (1 - fx)[None, :] + rows[:, ix + 1] * fx[None, :]


def grid_positions(size: tuple[int, int], tile: int, overlap: int) -> tuple[np.ndarray, tuple]:
    """True top-left corners ``(x, y)`` of a regular grid covering ``size`` = (H, W)."""
    step = tile - overlap

    def starts(n: int) -> list[int]:
        k = max(1, math.ceil((n - tile) / step) + 1)
        return [min(i * step, n - tile) for i in range(k)]

    ys, xs = starts(size[0]), starts(size[1])
    xy = np.array([(x, y) for y in ys for x in xs], np.float64)
    return xy, (len(ys), len(xs))


def write_simulated_mosaic(
    output_dir: Path,
    *,
    size: tuple[int, int] = (2048, 2048),
    tile: int = 512,
    overlap: int = 64,
    position_error_px: float = 30.0,
    seed: int = 0,
    pixel_size_nm: float = 4.0,
    texture_scale: float = 2.0,
    noise: float = 0.02,
    tile_format: str = "tif",
    workers: int | None = 1,
    require_memory: Any = None,
) -> MosaicSim:
    """Write the tiles, ``positions.csv`` (nominal), ``true_positions.csv``, ``positions.idoc``.

    Tiles are ``tiles/tile_<row>_<col>.<tile_format>`` (8-bit; TIFF tiles carry the pixel
    size). Returns the true and nominal positions.
    """
    from emkit.errors import InputError
    from emkit.io import Volume, make_output_folder, write_text_atomic, write_volume

    h, w = (int(v) for v in size)
    if tile > min(h, w):
        raise InputError(f"--tile {tile} is larger than the mosaic ({h}x{w}); give a smaller tile")
    if overlap >= tile:
        raise InputError(f"--overlap {overlap} must be smaller than --tile {tile}")
    if tile_format not in ("tif", "png"):
        raise InputError(f"tile format {tile_format!r}: give tif or png")
    true_xy, grid = grid_positions((h, w), tile, overlap)
    n_workers = max(1, int(workers or 1))
    if require_memory is not None:
        # per thread: a tile in float32 (several temporaries) and the texture block cache
        need = n_workers * (6 * 4 * tile * tile + 512 * 4 * BLOCK * BLOCK)
        require_memory(need, f"tiles of {tile} px", "use a smaller --tile or fewer --workers")
    rng = np.random.default_rng(seed)
    error = rng.uniform(-position_error_px, position_error_px, true_xy.shape)
    nominal = np.round(true_xy + error, 2)
    out = make_output_folder(output_dir)
    voxel = (pixel_size_nm * 10.0,) * 3 if tile_format == "tif" else None
    names = [
        f"tiles/tile_{r:03d}_{c:03d}.{tile_format}" for r in range(grid[0]) for c in range(grid[1])
    ]

    def write_row(row: int) -> None:
        # One texture (block cache) per row of tiles: rows run in parallel threads.
        texture = _Texture(seed, texture_scale, 28.0)
        for k in range(row * grid[1], (row + 1) * grid[1]):
            x, y = true_xy[k]
            image = texture.region(int(y), int(x), tile, tile)
            tile_rng = np.random.default_rng((seed, k))
            image = image + noise * tile_rng.standard_normal(image.shape, dtype=np.float32)
            data = np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)
            write_volume(out / names[k], Volume(data=data, voxel_size=voxel))

    if n_workers > 1 and grid[0] > 1:
        with ThreadPoolExecutor(n_workers) as pool:
            list(pool.map(write_row, range(grid[0])))
    else:
        for row in range(grid[0]):
            write_row(row)

    def table(xy: np.ndarray) -> str:
        lines = ["file,x_px,y_px"] + [f"{n},{p[0]:.2f},{p[1]:.2f}" for n, p in zip(names, xy)]
        return "\n".join(lines) + "\n"

    write_text_atomic(out / "positions.csv", table(nominal))
    write_text_atomic(out / "true_positions.csv", table(true_xy))
    idoc = [f"PixelSpacing = {pixel_size_nm * 10.0:g}", f"ImageSize = {tile} {tile}", ""]
    for n, p in zip(names, nominal):
        idoc += [f"[Image = {n}]", f"PieceCoordinates = {p[0]:.2f} {p[1]:.2f} 0", ""]
    write_text_atomic(out / "positions.idoc", "\n".join(idoc))
    return MosaicSim(out, len(names), grid, true_xy, nominal)
