"""Show what a file holds: shape, dtype, voxel size and statistics, or table counts.

Images and volumes (MRC/MRCS/.st/.ali/.rec/.map, TIFF, PNG, Zarr, OME-Zarr, NPY): format,
shape, dtype, kind (image / image stack / volume), voxel size and origin in Å (z, y, x),
min/max/mean/std and the number of NaN/Inf values (read slab by slab, so large files are
fine; per resolution level for OME-Zarr), and MRC header facts. Tables and models: STAR
blocks and row counts, .tlt count and range, .xf count, AreTomo .aln rows, coordinate
counts per class (.csv/.tsv/.xml), atom counts of PDB/mmCIF models, mesh vertex/face counts.

Examples
--------
    emkit info tomogram.mrc
    emkit info particles.star tilts.tlt
    emkit info --json tomogram.ome.zarr > info.json
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from emkit.cli._common import add_subcommand
from emkit.cli._options import file_path


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = add_subcommand(subparsers, "info", __doc__, func=run)
    parser.add_argument(
        "files", nargs="+", type=file_path, metavar="FILE", help="file(s) to describe"
    )
    parser.add_argument(
        "--json", action="store_true", help="print JSON instead of key: value lines"
    )


def _format_value(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (list, tuple)):
        return "(" + ", ".join(_format_value(v) for v in value) + ")"
    if isinstance(value, dict):
        return ", ".join(f"{k}: {_format_value(v)}" for k, v in value.items())
    return str(value)


def format_description(info: dict[str, Any]) -> str:
    """Aligned ``key: value`` lines; nested tables (OME-Zarr levels, STAR blocks) indented."""
    width = max(len(str(k)) for k in info)
    lines = []
    for key, value in info.items():
        if isinstance(value, dict) and value and key in ("blocks", "classes", "elements"):
            lines.append(f"{key:<{width}}:")
            inner = max(len(str(k)) for k in value)
            lines += [f"  {str(k):<{inner}}: {_format_value(v)}" for k, v in value.items()]
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            lines.append(f"{key:<{width}}:")
            for item in value:
                lines.append("  " + "  ".join(f"{k}={_format_value(v)}" for k, v in item.items()))
        else:
            lines.append(f"{key:<{width}}: {_format_value(value)}")
    return "\n".join(lines)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    return value


def run(args: argparse.Namespace) -> int:
    from emkit.io import describe

    infos = [describe(path) for path in args.files]
    if args.json:
        payload = _jsonable(infos[0] if len(infos) == 1 else infos)
        print(json.dumps(payload, indent=2))
    else:
        print("\n\n".join(format_description(info) for info in infos))
    return 0
