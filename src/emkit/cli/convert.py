"""Convert an image or volume to another format, keeping voxel size and origin.

IN and OUT may be MRC (.mrc .mrcs .st .ali .rec .map; written as float32, mode 2), TIFF
(.tif .tiff; ImageJ metadata in nm), Zarr (.zarr, one chunked array), OME-Zarr (.ome.zarr,
OME-NGFF 0.4 multiscale, levels by 2x mean), PNG (.png, 2D only; 8/16-bit) or NumPy
(.npy); IN may also be .jpg/.jpeg/.bmp. The voxel size and origin go wherever the target
can hold them (MRC, TIFF, Zarr, OME-Zarr); PNG and NPY drop them with a warning.

OUT is written under a temporary name and renamed when complete, and may never be IN.
NaN or infinite values are refused unless --allow-nonfinite is given.

Examples
--------
    emkit convert tomogram.mrc tomogram.ome.zarr
    emkit convert stack.tif stack.mrcs --voxel-size 2.17
    emkit convert slice.mrc slice.png
    emkit convert map.npy map.mrc --voxel-size 1.5 1.5 1.5
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from emkit.cli._common import add_subcommand
from emkit.cli._options import file_path, int_range, positive_float, require_memory


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = add_subcommand(subparsers, "convert", __doc__, func=run)
    parser.add_argument("input", type=file_path, metavar="IN", help="input image or volume")
    parser.add_argument(
        "output", type=file_path, metavar="OUT", help="output file (format by suffix)"
    )
    parser.add_argument(
        "--voxel-size",
        type=positive_float,
        nargs="+",
        metavar="A",
        help="voxel size in Å: one value (isotropic) or three (z y x); overrides the input's",
    )
    parser.add_argument(
        "--allow-nonfinite",
        action="store_true",
        help="write data with NaN/Inf values instead of refusing",
    )
    parser.add_argument(
        "--levels",
        type=int_range(1, 32),
        default=None,
        metavar="N",
        help="OME-Zarr resolution levels, 1 to 32 (default: halve until the longest axis <= 64)",
    )


def run(args: argparse.Namespace) -> int:
    from emkit.errors import InputError, ShapeError, with_path
    from emkit.io import (
        check_not_input,
        format_keeps_metadata,
        read_volume,
        require_finite,
        volume_format,
        write_volume,
    )
    from emkit.io._mrc import is_mrc_stack
    from emkit.io._paths import MRC_STACK_SUFFIXES, full_suffix

    src: Path = args.input
    out: Path = args.output
    check_not_input(out, [src])
    out_kind = volume_format(out, for_writing=True)
    in_kind = volume_format(src)
    voxel = None
    if args.voxel_size is not None:
        if len(args.voxel_size) not in (1, 3) or min(args.voxel_size) <= 0:
            raise InputError("--voxel-size takes one or three positive values in Å (z y x)")
        voxel = tuple(args.voxel_size) * 3 if len(args.voxel_size) == 1 else tuple(args.voxel_size)
    if args.levels is not None and args.levels < 1:
        raise InputError("--levels must be at least 1")

    volume = read_volume(src, mmap=True)
    data = volume.data
    # The data are read in full for writing, plus a float32 copy for MRC or the levels.
    require_memory(
        data.size * (data.dtype.itemsize + 4),
        f"converting {src} ({'x'.join(map(str, data.shape))} {data.dtype})",
        "convert a crop or a binned copy, or use a machine with more memory",
    )
    if out_kind == "image" and data.ndim == 3 and data.shape[0] == 1:
        data = data[0]
    if out_kind == "image" and data.ndim != 2:
        raise ShapeError(
            with_path(
                src,
                f"is {data.ndim}D {tuple(data.shape)} but {out.name} (PNG) holds one 2D "
                "image; write .mrc, .tif or .zarr instead",
            )
        )
    if not args.allow_nonfinite:
        require_finite(data, src, what="image data")
    voxel_size = voxel if voxel is not None else volume.voxel_size
    origin = volume.origin
    if not format_keeps_metadata(out) and (voxel_size is not None or any(origin)):
        print(
            f"emkit convert: warning: {out.name} cannot hold the voxel size "
            f"{voxel_size} Å / origin {origin} Å; they are not saved",
            file=sys.stderr,
        )
        voxel_size, origin = None, (0.0, 0.0, 0.0)
    stack = None
    if out_kind == "mrc" and data.ndim == 3:
        stack = full_suffix(out) in MRC_STACK_SUFFIXES or (in_kind == "mrc" and is_mrc_stack(src))
    write_volume(
        out,
        data,
        voxel_size=voxel_size,
        origin=origin,
        stack=stack,
        n_levels=args.levels,
    )
    vs = "unknown" if voxel_size is None else "x".join(f"{v:.4g}" for v in voxel_size) + " Å"
    dtype = "float32" if out_kind == "mrc" else str(data.dtype)  # MRC is written as mode 2
    print(f"emkit convert: wrote {out} ({'x'.join(map(str, data.shape))} {dtype}, voxel {vs})")
    return 0
