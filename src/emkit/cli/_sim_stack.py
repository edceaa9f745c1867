"""Simulate a serial-section stack with the true field of every section.

Sections are cut from one 3D cell-like texture (neighbours differ as real sections do),
each warped on its own (a small drift and rotation plus a smooth field of at most
--elastic pixels), --damaged of them folded or cracked (never the first or last, never
two adjacent). Writes, into OUTPUT, section by section:

    sections/section_0000.png ...     the sections (8 bit)
    masks/section_0007.png ...        defect masks of the damaged sections (255 = defect)
    true_fields/section_0000.npy ...  (2, H, W) float32: for each pixel of the truth frame
                                      (the texture's own frame) the (dy, dx) to its position
                                      in the section; NaN where that tissue is not visible
    params.json                       texture, per-section warps and damage
    emkit-run.json

Examples
--------
    emkit sim stack --output simstack/ --sections 50 --size 1024 1024 --damaged 5
    emkit register stack simstack/sections --masks simstack/masks --output aligned.tif
    emkit sim stack --output small/ --sections 8 --size 256 256 --damaged 1 --seed 3
"""

from __future__ import annotations

import argparse

from emkit.cli._common import add_subcommand, show_progress, write_run_record
from emkit.cli._options import (
    OptionType,
    file_path,
    float_range,
    int_range,
    nonneg_int,
    require_memory,
    seed,
)


def _elongation_convert(text: str) -> float:
    if text.strip().lower() in ("inf", "infinity"):
        return float("inf")
    return float(_FINITE_ELONGATION(text))


_FINITE_ELONGATION = float_range(1, 1e6)
# "inf" (cells straight through the stack) or a finite stretch >= 1.
_ELONGATION = OptionType(
    "elongation", _elongation_convert, "a number >= 1 or inf", ["abc", "nan", "0.5", "-inf", ""]
)


def add_parser(sim_subparsers: argparse._SubParsersAction) -> None:
    """Add ``emkit sim stack``."""
    parser = add_subcommand(sim_subparsers, "stack", __doc__, func=run_sim_stack)
    parser.add_argument("--output", type=file_path, required=True, help="output folder")
    parser.add_argument(
        "--sections",
        type=int_range(2, 100000),
        default=50,
        metavar="N",
        help="number of sections, 2 to 100000 (default 50)",
    )
    parser.add_argument(
        "--size",
        type=int_range(64, 16384),
        nargs=2,
        default=(1024, 1024),
        metavar=("H", "W"),
        help="section size, each 64 to 16384 (default 1024 1024)",
    )
    parser.add_argument(
        "--damaged",
        type=nonneg_int,
        default=5,
        metavar="K",
        help="folded or cracked sections, at most (N - 1) // 2 (default 5)",
    )
    parser.add_argument(
        "--elastic",
        type=float_range(0, 100),
        default=8.0,
        metavar="PX",
        help="largest smooth non-affine warp of a section in pixels, 0 to 100 (default 8)",
    )
    parser.add_argument(
        "--cells-elongation",
        type=_ELONGATION,
        default=float("inf"),
        metavar="F",
        help="how far cells are stretched along z, >= 1 (default inf: straight through the "
        "stack, so walls do not move between sections; e.g. 4: oblique walls drift)",
    )
    parser.add_argument("--seed", type=seed, default=0, help="random seed, >= 0 (default 0)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run_sim_stack(args: argparse.Namespace) -> int:
    """``emkit sim stack``."""
    from emkit.register._sim_stack_files import write_simulated_stack

    sim = write_simulated_stack(
        args.output,
        n_sections=args.sections,
        size=tuple(args.size),
        n_damaged=args.damaged,
        elastic_px=args.elastic,
        seed=args.seed,
        cells_z_elongation=args.cells_elongation,
        require_memory=require_memory,
        progress=show_progress(args.quiet),
    )
    damaged = [f"{i} ({kind})" for i, kind in sim.damaged]
    write_run_record(sim.output_dir, args, results={"damaged": sim.damaged})
    print(
        f"{sim.n_sections} sections in {sim.output_dir / 'sections'}, true fields in "
        f"true_fields/; damaged: {', '.join(damaged) or 'none'}"
    )
    return 0
