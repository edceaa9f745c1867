"""Build multiscale atlases (OME-Zarr + DeepZoom) of huge images and stitched tile mosaics.

Examples
--------
    emkit atlas build overview.tif --output atlas/
    emkit atlas build tiles/positions.csv --output atlas/ --workers 2
    emkit sim mosaic --output mosaic/ --size 4096 4096 --tile 1024 --overlap 128

See `emkit atlas build --help`.
"""

from __future__ import annotations

import argparse

from emkit.cli._common import add_subcommand, write_run_record
from emkit.cli._options import (
    OptionType,
    file_path,
    float_range,
    int_range,
    positive_float,
    positive_int,
    require_memory,
    seed,
)

_BUILD_DOC = """Build a multiscale atlas from one huge image or a grid of overlapping tiles.

INPUT is an image (TIFF/BigTIFF, MRC, PNG, Zarr, OME-Zarr) or a tile list: a CSV with
columns file,x_px,y_px (each tile's nominal top-left corner in mosaic pixels, files
relative to the CSV) or a SerialEM .mdoc/.idoc (PieceCoordinates). Tiles are stitched:
each overlap's translation is measured (masked cross-correlation, then phase correlation
to 1/20 px), all positions are solved together by least squares (outlier overlaps
dropped), and the mosaic is rendered band by band with feathered blending, so memory
stays bounded for mosaics far larger than RAM.

Writes into OUTPUT: atlas.ome.zarr (OME-NGFF pyramid, pixel size kept; napari,
neuroglancer), atlas.dzi + atlas_files/ (DeepZoom PNG tiles for the web viewer),
atlas.json, positions.csv (tiles: the solved positions, atlas pixels) and emkit-run.json.

Examples
--------
    emkit atlas build overview.tif --output atlas/
    emkit atlas build mosaic/positions.csv --output atlas/ --workers 2
    emkit atlas build montage.mrc.mdoc --output atlas/ --pixel-size-nm 4.2
"""

_SIM_DOC = """Make a synthetic tiled mosaic with known tile positions.

Writes, into OUTPUT: tiles/tile_<row>_<col>.tif (8-bit, pixel size kept), positions.csv
(nominal stage positions: the truth plus a uniform error of up to --position-error px per
axis), true_positions.csv, positions.idoc (the same as a SerialEM image autodoc) and
emkit-run.json. The specimen is a section texture made block by block, so a mosaic far
larger than memory can be made.

Examples
--------
    emkit sim mosaic --output mosaic/ --size 2048 2048 --tile 512 --overlap 64
    emkit sim mosaic --output big/ --size 40000 40000 --tile 2048 --overlap 200 \\
        --position-error 30 --texture-scale 4
"""


def _overlay_convert(text: str) -> tuple[str, str, str | None]:
    kind, _, rest = text.partition(":")
    if kind not in ("mask", "outlines", "points") or not rest.strip():
        raise argparse.ArgumentTypeError(
            f"must be KIND:FILE[:NAME] with KIND mask, outlines or points (got {text!r})"
        )
    file, _, name = rest.partition(":")
    return kind, file, name or None


_OVERLAY = OptionType(
    "overlay",
    _overlay_convert,
    "KIND:FILE[:NAME] with KIND mask, outlines or points",
    ["abc", "mask", "mask:", "circle:x.png", ""],
)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add ``emkit atlas`` with ``build`` (and the viewer's ``serve``/``export``)."""
    parser = add_subcommand(subparsers, "atlas", __doc__, func=None)
    sub = parser.add_subparsers(dest="atlas_command", metavar="WHAT")

    def show_help(args: argparse.Namespace) -> int:
        parser.print_help()
        return 0

    parser.set_defaults(func=show_help)
    build = add_subcommand(sub, "build", _BUILD_DOC, func=run_build)
    build.add_argument("input", type=file_path, help="image, or tile list (.csv/.mdoc/.idoc)")
    build.add_argument("--output", type=file_path, required=True, help="atlas folder")
    build.add_argument(
        "--pixel-size-nm",
        type=positive_float,
        help="pixel size in nm, > 0 (default: from the files)",
    )
    build.add_argument(
        "--search",
        type=int_range(4, 4096),
        default=64,
        metavar="PX",
        help="largest error of a tile's position relative to a neighbour, 4 to 4096 px "
        "(default 64)",
    )
    build.add_argument(
        "--overlay",
        type=_OVERLAY,
        action="append",
        metavar="KIND:FILE[:NAME]",
        help="a layer the page can toggle, repeatable: mask:defects.png (nonzero shown), "
        "outlines:labels.png (a label image) or points:particles.csv (x,y[,radius] in atlas px)",
    )
    build.add_argument("--workers", type=positive_int, help="threads, >= 1 (default: cores)")
    build.add_argument(
        "--scheduler", help="address of a running Dask scheduler (overlap registration)"
    )
    build.add_argument("--quiet", action="store_true", help="no progress bar")
    try:
        from emkit.cli import _atlas_web
    except ImportError:
        pass
    else:
        _atlas_web.add_parsers(sub)


def add_sim_parsers(sim_subparsers: argparse._SubParsersAction) -> None:
    """Add ``emkit sim mosaic``."""
    parser = add_subcommand(sim_subparsers, "mosaic", _SIM_DOC, func=run_sim_mosaic)
    parser.add_argument("--output", type=file_path, required=True, help="output folder")
    parser.add_argument(
        "--size",
        type=int_range(32, 10_000_000),
        nargs=2,
        default=(2048, 2048),
        metavar=("H", "W"),
        help="mosaic size in pixels, each >= 32 (default 2048 2048)",
    )
    parser.add_argument(
        "--tile",
        type=int_range(32, 65536),
        default=512,
        help="tile size, 32 to 65536 px (default 512)",
    )
    parser.add_argument(
        "--overlap",
        type=int_range(0, 65535),
        default=64,
        help="overlap of neighbouring tiles in px, >= 0 (default 64)",
    )
    parser.add_argument(
        "--position-error",
        type=float_range(0, 10_000),
        default=30.0,
        metavar="PX",
        help="largest stage-position error per axis, 0 to 10000 px (default 30)",
    )
    parser.add_argument(
        "--pixel-size-nm", type=positive_float, default=4.0, help="pixel size, nm (default 4)"
    )
    parser.add_argument(
        "--texture-scale",
        type=float_range(1, 64),
        default=2.0,
        help="the specimen texture is made at 1/SCALE resolution, 1 to 64 (default 2; "
        "larger is faster)",
    )
    parser.add_argument("--format", choices=("tif", "png"), default="tif", help="tile files")
    parser.add_argument("--workers", type=positive_int, default=1, help="threads, >= 1 (default 1)")
    parser.add_argument("--seed", type=seed, default=0, help="random seed, >= 0 (default 0)")


def run_build(args: argparse.Namespace) -> int:
    """``emkit atlas build``."""
    from emkit.atlas import build_atlas
    from emkit.cli._common import show_progress

    result = build_atlas(
        args.input,
        args.output,
        pixel_size_nm=args.pixel_size_nm,
        workers=args.workers,
        scheduler=args.scheduler,
        search_px=args.search,
        progress=show_progress(args.quiet),
        require_memory=require_memory,
        overlays=args.overlay,
    )
    write_run_record(args.output, args, more_inputs=result.tile_files, results=result.record)
    line = f"atlas {result.width}x{result.height} px, {result.levels} levels -> {args.output}"
    if result.n_tiles > 1:
        line += (
            f" ({result.n_tiles} tiles, {result.pairs_used}/{result.pairs_measured} overlaps "
            f"used, residual mean {result.residual_px['mean']:.2f} px, "
            f"max {result.residual_px['max']:.2f} px)"
        )
    print(line)
    return 0


def run_sim_mosaic(args: argparse.Namespace) -> int:
    """``emkit sim mosaic``."""
    from emkit.atlas import write_simulated_mosaic

    sim = write_simulated_mosaic(
        args.output,
        size=tuple(args.size),
        tile=args.tile,
        overlap=args.overlap,
        position_error_px=args.position_error,
        seed=args.seed,
        pixel_size_nm=args.pixel_size_nm,
        texture_scale=args.texture_scale,
        tile_format=args.format,
        workers=args.workers,
        require_memory=require_memory,
    )
    write_run_record(sim.output_dir, args, results={"tiles": sim.n_tiles, "grid": sim.grid})
    print(
        f"{sim.n_tiles} tiles ({sim.grid[0]}x{sim.grid[1]}) -> {sim.output_dir} "
        "(positions.csv, true_positions.csv)"
    )
    return 0
