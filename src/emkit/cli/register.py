"""Register serial sections, damaged ones included (folds, cracks): pairs or whole stacks.

A fold or crack makes the tissue on each side move differently, so one global transform
cannot register the section. The Expected Affine method fits an affine per cluster of
feature matches (clustered by a path distance that cannot cross the defect) and blends
them per pixel. Give the defect mask of the moving section (nonzero = fold/crack).

Examples
--------
    emkit register pair fixed.png moving.png --mask moving_mask.png \\
        --output reg/warped.png --field reg/field.npy
    emkit register stack sections/ --masks masks/ --output aligned.tif --workers 2
    emkit sim section fixed.png --output sim/ --kind fold      # a synthetic damaged pair

See `emkit register pair --help` and `emkit register stack --help`.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from emkit.cli._common import add_subcommand, show_progress, write_run_record
from emkit.cli._options import (
    file_path,
    finite_float,
    float_range,
    int_range,
    nonneg_int,
    positive_int,
    require_memory,
    seed,
)

_PAIR_DOC = """Register a (damaged) moving section onto a fixed one.

Writes the warped moving image (OUTPUT, in the input dtype; pixels without data, e.g.
tissue hidden by a fold, get --fill), optionally the displacement field (--field,
float32 .npy of shape (2, H, W): for each fixed pixel (y, x) the (dy, dx) to its
position in the moving image, so warped[y, x] = moving[y + dy, x + dx]), the quality
metrics (NCC, SSIM, NMI to the fixed image outside the defect) as OUTPUT_STEM.metrics.json
and the run record OUTPUT_STEM.emkit-run.json (with OUTPUT_STEM.report.html) beside OUTPUT.

Examples
--------
    emkit register pair DOLW7_0.png DOLW7_1.png --mask DOLW7_m.png \\
        --output reg/DOLW7_1_warped.png --field reg/DOLW7_1_field.npy
    emkit register pair a.tif b.tif --output b_on_a.tif --method global-affine
    emkit register pair sim/fixed.png sim/moving.png --mask sim/defect_mask.png \\
        --output reg/warped.png --true-field sim/true_field.npy   # also reports the EPE
"""

_STACK_DOC = """Align a stack of serial sections (damaged ones included) into one frame.

Each undamaged section is registered to the next undamaged section and to the one after
(pairs run in parallel on Dask: a local cluster of --workers processes, or a running
scheduler with --scheduler), each damaged section to a neighbour with its defect blocking
paths; then one global relaxation of all pairs gives every section's field, so errors do
not add up along the stack as when fields are chained (--relax chain). Sections are read
one at a time and the results streamed to disk. Writes the aligned stack (TIFF, MRC, Zarr
or OME-Zarr by OUTPUT's suffix; Zarr keeps memory bounded), one field per section
(FIELDS/section_0000.npy ..., (2, H, W) float32 from common-frame pixel to section pixel,
and valid_0000.png), OUTPUT_STEM_report/ (overlays of neighbouring aligned sections, the
residual per section), OUTPUT_STEM_work/ (each pair's result, kept for --resume) and
OUTPUT_STEM.emkit-run.json (with OUTPUT_STEM.report.html) beside OUTPUT.

INPUT is a folder of images (sorted by name) or one stack file (n, y, x). --masks is a
folder of defect masks named like the sections (same file stem; a section without one
has no defect) or, for a stack file, a mask stack of the same shape.

Examples
--------
    emkit register stack sections/ --masks masks/ --output aligned.ome.zarr
    emkit register stack sections/ --masks masks/ --output aligned.ome.zarr --resume
    emkit register stack series.mrc --output aligned.tif --reference 0 --workers 4
    emkit register stack sections/ --output aligned.mrc --scheduler tcp://10.0.0.5:8786
"""

_SIM_DOC = """Make a damaged neighbour of a section (a fold or a crack) with its true field.

Writes, into OUTPUT: moving.png (or the input's format), defect_mask.png (255 = defect),
true_field.npy ((2, H, W) float32, (dy, dx) from each fixed pixel to the moving image;
NaN where the fixed tissue has no counterpart, e.g. hidden by the fold), params.json, and
fixed.png when no IMAGE is given (a built-in cell-like texture is used).

Examples
--------
    emkit sim section --output sim/ --kind fold --seed 1
    emkit sim section DOLW7_0.png --output sim_dolw7/ --kind crack
    emkit sim section --output sim_elastic/ --kind fold --seed 1 --elastic 8
"""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add ``emkit register`` with its ``pair`` and ``stack`` subcommands."""
    parser = add_subcommand(subparsers, "register", __doc__, func=None)
    sub = parser.add_subparsers(dest="register_command", metavar="WHAT")

    def show_help(args: argparse.Namespace) -> int:
        parser.print_help()
        return 0

    parser.set_defaults(func=show_help)

    pair = add_subcommand(sub, "pair", _PAIR_DOC, func=run_pair)
    pair.add_argument("fixed", type=file_path, help="fixed (reference) section image")
    pair.add_argument("moving", type=file_path, help="moving (damaged) section image")
    pair.add_argument("--mask", type=file_path, help="defect mask of the moving image (nonzero)")
    pair.add_argument(
        "--fixed-mask",
        type=file_path,
        help="defect mask of the fixed image: no features there, excluded from the metrics",
    )
    pair.add_argument("--output", type=file_path, required=True, help="warped moving image")
    pair.add_argument("--field", type=file_path, help="write the displacement field here (.npy)")
    pair.add_argument(
        "--true-field",
        type=file_path,
        help="known field (.npy, NaN = none): report endpoint error",
    )
    pair.add_argument(
        "--compare-global",
        action="store_true",
        help="also run a single global affine and report its metrics",
    )
    _add_method_options(pair)

    stack = add_subcommand(sub, "stack", _STACK_DOC, func=run_stack)
    stack.add_argument("input", type=file_path, help="folder of section images, or a stack file")
    stack.add_argument("--masks", type=file_path, help="folder (or stack file) of defect masks")
    stack.add_argument("--output", type=file_path, required=True, help="aligned stack file")
    stack.add_argument("--fields", type=file_path, help="folder for the per-section fields")
    stack.add_argument(
        "--reference",
        type=nonneg_int,
        help="index of a section held fixed, from 0 (default: none, the stack's common "
        "frame; --relax chain: the middle section)",
    )
    stack.add_argument(
        "--relax",
        choices=("global", "chain"),
        default="global",
        help="global (default): one relaxation of all pairs (each section with its next "
        "two undamaged ones); chain: fields composed to --reference (errors add up)",
    )
    stack.add_argument(
        "--work-dir",
        type=file_path,
        help="folder that keeps each pair's result as it is done (default: OUTPUT_STEM_work "
        "beside OUTPUT; kept after the run)",
    )
    stack.add_argument(
        "--resume",
        action="store_true",
        help="reuse the pairs already in the work folder (after an interruption)",
    )
    stack.add_argument("--scheduler", help="address of a running Dask scheduler")
    stack.add_argument(
        "--workers",
        type=positive_int,
        help="worker processes of the local cluster, >= 1 (default: cores)",
    )
    stack.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_method_options(stack)


def _add_method_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--method",
        choices=("expected-affine", "global-affine"),
        default="expected-affine",
        help="expected-affine (default) or one global affine (baseline)",
    )
    parser.add_argument(
        "--refine",
        choices=("elastic", "none"),
        default="elastic",
        help="elastic (default): follow smooth stretching inside each side of the defect "
        "with an elastic mesh cut along it; none: the affine model alone",
    )
    parser.add_argument(
        "--clusters",
        type=positive_int,
        help="number of match clusters, >= 1 (default: from the data)",
    )
    parser.add_argument(
        "--sift-scale",
        type=float_range(0.05, 1),
        help="scale SIFT runs at, 0.05 to 1 (default: long side <= 1000 px)",
    )
    parser.add_argument(
        "--fill",
        type=finite_float,
        default=0.0,
        help="value of pixels without data (within the image dtype's range; default 0)",
    )
    parser.add_argument("--seed", type=seed, default=0, help="random seed, >= 0 (default 0)")


def add_sim_parsers(sim_subparsers: argparse._SubParsersAction) -> None:
    """Add ``emkit sim section``."""
    parser = add_subcommand(sim_subparsers, "section", _SIM_DOC, func=run_sim_section)
    parser.add_argument(
        "image", type=file_path, nargs="?", help="section image (default: a built-in texture)"
    )
    parser.add_argument("--output", type=file_path, required=True, help="output folder")
    parser.add_argument("--kind", choices=("fold", "crack"), default="fold")
    parser.add_argument("--seed", type=seed, default=0, help="random seed, >= 0 (default 0)")
    parser.add_argument(
        "--size",
        type=int_range(64),
        nargs=2,
        default=(768, 768),
        metavar=("H", "W"),
        help="size of the built-in texture, each >= 64 (default 768 768)",
    )
    parser.add_argument(
        "--elastic",
        type=float_range(0, 100),
        default=0.0,
        metavar="PX",
        help="each side also gets its own smooth non-affine warp of at most PX pixels "
        "(0 to 100; default 0: affine sides)",
    )
    # `emkit sim stack` lives in its own module (a stack of sections with true fields).
    from emkit.cli import _sim_stack

    _sim_stack.add_parser(sim_subparsers)


# --------------------------------------------------------------------------- commands


def _pair_options(args: argparse.Namespace) -> Any:
    """The options of ``_add_method_options``."""
    from emkit.register import PairOptions

    return PairOptions(
        args.method, args.clusters, args.sift_scale, args.fill, args.seed, args.refine
    )


def run_pair(args: argparse.Namespace) -> int:
    """``emkit register pair``."""
    from emkit.register import pair_summary, run_pair_files
    from emkit.report.register import save_overlay

    result = run_pair_files(
        args.fixed,
        args.moving,
        args.output,
        mask=args.mask,
        fixed_mask=args.fixed_mask,
        field=args.field,
        true_field=args.true_field,
        compare_global=args.compare_global,
        options=_pair_options(args),
        require_memory=require_memory,
    )
    save_overlay(result.overlay_path, result.fixed, result.warped, valid=result.valid)
    write_run_record(
        args.output.parent, args, named_after=args.output,
        results={"metrics": result.metrics, "registration": result.info},
    )
    print(pair_summary(args.moving, args.output, result.metrics))
    return 0


def run_stack(args: argparse.Namespace) -> int:
    """``emkit register stack``."""
    from emkit.register import run_stack_files
    from emkit.report.register import save_stack_report

    result = run_stack_files(
        args.input,
        args.output,
        masks=args.masks,
        fields_dir=args.fields,
        reference=args.reference,
        relax=args.relax,
        work_dir=args.work_dir,
        resume=args.resume,
        scheduler=args.scheduler,
        workers=args.workers,
        progress=show_progress(args.quiet),
        options=_pair_options(args),
        require_memory=require_memory,
    )
    residual = result.residual_px if args.relax == "global" else None
    save_stack_report(result.report_dir, result.thumbnails, residual)
    write_run_record(args.output.parent, args, named_after=args.output, results=result.record)
    frame = (
        "the stack's common frame" if result.reference is None else f"section {result.reference}"
    )
    print(
        f"aligned {result.n_sections} sections to {frame} -> {args.output} "
        f"(fields in {result.fields_dir})"
    )
    return 0


def run_sim_section(args: argparse.Namespace) -> int:
    """``emkit sim section``."""
    from emkit.register import write_simulated_section

    sim = write_simulated_section(
        args.output,
        image=args.image,
        kind=args.kind,
        seed=args.seed,
        size=tuple(args.size),
        elastic_px=args.elastic,
        require_memory=require_memory,
    )
    out = sim.output_dir
    write_run_record(out, args, results={"kind": args.kind, "band_px": sim.band_px})
    fixed = "" if args.image is not None else "fixed.png, "
    print(f"{args.kind}: {out / sim.moving_name}, {fixed}defect_mask.png, true_field.npy in "
          f"{out}")
    return 0


def run_demo(out_dir: Path, *, seed: int, progress: bool) -> dict[str, Any]:
    """Synthetic stretched fold: expected affine + elastic refinement, the expected affine
    alone, one global affine, with figures.

    Returns the measured endpoint errors (px) of the three and their NCC outside the
    defect; writes overlays before/after and the field as PNGs into ``out_dir``.
    """
    from emkit.register import run_register_demo
    from emkit.report.register import save_field_figure, save_overlay

    demo = run_register_demo(out_dir, seed=seed)
    out = demo.output_dir
    save_overlay(out / "overlay_before.png", demo.fixed, demo.moving, valid=~demo.defect_mask)
    for tag, reg in demo.registrations.items():
        save_overlay(out / f"overlay_after_{tag}.png", demo.fixed, reg.warped, valid=reg.valid)
    reg = demo.registrations["expected_affine_elastic"]
    save_field_figure(
        out / "field.png",
        reg.field,
        valid=reg.valid,
        title="expected affine + elastic: fixed -> moving displacement",
    )
    return demo.numbers
