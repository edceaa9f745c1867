"""emkit.atlas: multiscale atlases of huge images and stitched tile mosaics.

:func:`build_atlas` turns one huge image, or a grid of overlapping tiles with their stage
positions (CSV ``file,x_px,y_px`` or SerialEM ``.mdoc``/``.idoc``), into a folder with

* ``atlas.ome.zarr`` — OME-NGFF 0.4 pyramid (level k+1 = 2x2 mean of level k), pixel size
  kept, readable by napari and neuroglancer;
* ``atlas.dzi`` + ``atlas_files/<level>/<col>_<row>.png`` — DeepZoom (TileSize 254,
  Overlap 1, PNG; level 0 = 1x1) for web viewers;
* ``atlas.json`` — ``{"width", "height", "pixel_size_nm", "levels" (OME-Zarr levels),
  "source", "overlays": [], "deepzoom": {...}}``;
* ``positions.csv`` (tiles only) — the solved top-left corner of every tile in atlas pixels.

Tiles are stitched by measuring each overlap's translation and solving all positions by
least squares (:mod:`emkit.atlas._stitch`), then rendered band by band with feathered
blending, so memory stays bounded. :func:`write_simulated_mosaic` makes a test mosaic with
known positions (``emkit sim mosaic``).
"""

from emkit.atlas._build import AtlasResult, build_atlas
from emkit.atlas._deepzoom import dzi_xml, level_size, max_level, write_deepzoom
from emkit.atlas._mosaic_sim import MosaicSim, write_simulated_mosaic
from emkit.atlas._positions import Tile, TileSet, read_tile_list
from emkit.atlas._stitch import StitchResult, solve_positions, stitch

__all__ = [
    "AtlasResult",
    "MosaicSim",
    "StitchResult",
    "Tile",
    "TileSet",
    "build_atlas",
    "dzi_xml",
    "level_size",
    "max_level",
    "read_tile_list",
    "solve_positions",
    "stitch",
    "write_deepzoom",
    "write_simulated_mosaic",
]
