"""Align and reconstruct a tilt series without fiducials: prealign, align, reconstruct.

The tilt series is an MRC stack (.mrc/.st, images (n, y, x), tilt axis along y or at
--tilt-axis) with one tilt angle per image in an IMOD .tlt file. Outputs are IMOD
compatible: OUT/<stem>.xf (transforms that align each raw image), OUT/<stem>_ali.mrc
(aligned stack) and OUT/<stem>_rec.mrc (tomogram (z, y, x), voxel size from the input
header or --pixel-size, times the binning), with emkit-run.json beside them.

Examples
--------
    emkit sim tiltseries --output sim/                          # a misaligned test series
    emkit tomo prealign sim/tiltseries.mrc --angles sim/tiltseries.tlt --output pre/
    emkit tomo align sim/tiltseries.mrc --angles sim/tiltseries.tlt --output ali/ \\
        --thickness 32 --bin 4,2,1 --plot ali/plots
    emkit tomo reconstruct sim/tiltseries.mrc --angles sim/tiltseries.tlt \\
        --xf ali/tiltseries.xf --method sirt --thickness 32 --output rec/tomogram.mrc

See `emkit tomo prealign --help`, `emkit tomo align --help`, `emkit tomo reconstruct --help`.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from emkit.cli._common import add_subcommand, show_progress, write_run_record
from emkit.cli._options import (
    angle_or_auto,
    check_device,
    device,
    file_path,
    finite_float,
    float_range,
    int_list,
    int_span,
    nonneg_float,
    positive_float,
    positive_int,
    require_memory,
    safe_name,
    seed,
)

_PREALIGN_DOC = """Coarse translation alignment by cross-correlating stretched neighbouring tilts.

Walks outward from the lowest tilt; each image is stretched perpendicular to the tilt
axis by the cosine ratio of the two tilts, correlated with its aligned neighbour
(band-pass, edge taper, sub-pixel peak) and refined until unbiased. --tilt-axis auto also
estimates the in-plane tilt-axis angle (from the common line of all projections) and
rotates the images so that the axis lies along y. Writes OUT/<stem>.xf and
OUT/<stem>_ali.mrc.

Examples
--------
    emkit tomo prealign ts.mrc --angles ts.tlt --output pre/
    emkit tomo prealign ts.st --angles ts.tlt --output pre/ --bin 2 --tilt-axis auto
"""

_ALIGN_DOC = """Joint alignment and TV reconstruction (FLARA done right), coarse to fine.

Minimises 1/2 sum_i ||M_i (A_i u + c_i - T(s_i) b_i)||^2 + lam TV(u) over the volume u,
one shift s_i and one offset c_i per image, on the images less their median and divided
by their standard deviation (a constant added to the data changes nothing): primal-dual
(Chambolle-Pock) volume steps with provably valid step sizes, then one Gauss-Newton shift
step per image on its masked residual, always resampling the original images; the shifts
that only move the specimen are projected out. Starts from the pre-alignment (or --xf)
and a CGLS reconstruction. With --tilt-axis auto (or --refine-tilt-axis from a given
angle) the tilt-axis angle is searched first: at a coarse binning, the angle where the
joint-alignment model of the series stops asking to turn the images (and the volume with
them); a start tens of degrees off converges. Prints the relative change of the
objective, the part of the data left unexplained and the largest shift change per
iteration; --plot saves a PNG per iteration;
--resume continues an interrupted run from OUT/<stem>_align.ckpt.npz.
Writes OUT/<stem>.xf, OUT/<stem>_ali.mrc and OUT/<stem>_rec.mrc (the TV reconstruction).

Examples
--------
    emkit tomo align ts.mrc --angles ts.tlt --output ali/ --thickness 64
    emkit tomo align ts.mrc --angles ts.tlt --output ali/ --thickness 64 --tilt-axis auto
    emkit tomo align ts.mrc --angles ts.tlt --output ali/ --bin 4,2 --lam 0.5 \\
        --iterations 20 --plot ali/plots --resume
"""

_RECONSTRUCT_DOC = """Reconstruct a tomogram: weighted back-projection, SIRT or CGLS.

Applies an alignment first when given (--xf IMOD transforms or --aln AreTomo file), bins
the images (--bin), and reconstructs --thickness unbinned pixels (optionally a slab offset
in z, or a range of y slices). The voxel size is the input pixel size times the binning.

An --output ending in .ome.zarr (or .zarr) is streamed: WBP or SIRT runs slab by slab of
--slab-rows binned rows on a local Dask cluster of --workers processes (or the running
scheduler at --scheduler, whose workers must see the same files), each task reading only
the rows of the stack it needs, so neither the stack nor the tomogram is held in memory.

Examples
--------
    emkit tomo reconstruct ali/ts_ali.mrc --angles ts.tlt --output ts_rec.mrc --thickness 64
    emkit tomo reconstruct ts.mrc --angles ts.tlt --xf ali/ts.xf --method sirt \\
        --iterations 30 --bin 2 --thickness 128 --output ts_sirt_bin2.mrc
    emkit tomo reconstruct big.mrc --angles big.tlt --xf big.xf --bin 2 --thickness 1024 \\
        --output big_rec.ome.zarr --workers 2
"""

_SIM_DOC = """Simulate a misaligned tilt series with ground truth.

Projects a phantom (random ellipsoids, Shepp-Logan, or a crowded volume of the shipped
PDB-derived particles) sampled twice finer than the output (no inverse crime), shifts each
image by a random amount (uniform in +-max), optionally applies a CTF and noise (SNR =
variance of the noise-free stack / variance of the noise), and writes OUT/<name>.mrc
(with pixel size), OUT/<name>.tlt, OUT/<name>_true.xf (the transforms that align it) and
OUT/<name>_volume.mrc (the phantom).

Examples
--------
    emkit sim tiltseries --output sim/
    emkit sim tiltseries --output sim/ --phantom particles --shape 48 160 160 \\
        --tilt-range -54 54 --tilt-step 3 --snr 0.5 --defocus 3
"""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add ``emkit tomo`` with ``prealign``, ``align`` and ``reconstruct``."""
    parser = add_subcommand(subparsers, "tomo", __doc__, func=None)
    sub = parser.add_subparsers(dest="tomo_command", metavar="WHAT")
    parser.set_defaults(func=lambda args: _print_help(parser))

    _add_prealign_parser(sub)
    _add_align_parser(sub)
    _add_reconstruct_parser(sub)


def _add_prealign_parser(sub: argparse._SubParsersAction) -> None:
    pre = add_subcommand(sub, "prealign", _PREALIGN_DOC, func=run_prealign)
    _add_input_options(pre)
    pre.add_argument("--output", type=file_path, required=True, help="output folder")
    pre.add_argument(
        "--bin", type=positive_int, default=1, help="correlate binned images (default 1)"
    )
    pre.add_argument(
        "--max-shift",
        type=positive_float,
        help="largest shift between neighbours (px > 0; default 1/4 side)",
    )
    pre.add_argument(
        "--lowpass",
        # A Gaussian width; at or below the fixed 0.01 cycles/px high-pass no band is left.
        type=float_range(0.01, 0.5, lo_inclusive=False),
        default=0.15,
        help="correlation low-pass, cycles/px, > 0.01 (the high-pass) and <= 0.5 (0.15)",
    )
    _add_fill_option(pre)
    pre.add_argument("--quiet", action="store_true", help="no progress bar")


def _add_align_parser(sub: argparse._SubParsersAction) -> None:
    ali = add_subcommand(sub, "align", _ALIGN_DOC, func=run_align)
    _add_input_options(ali)
    ali.add_argument("--output", type=file_path, required=True, help="output folder")
    ali.add_argument(
        "--thickness", type=positive_int, help="tomogram thickness, unbinned px (nx/4)"
    )
    ali.add_argument(
        "--lam", type=nonneg_float, default=1.0,
        help="TV weight in units of std at the finest level, >= 0; a coarser level of "
        "binning f uses lam (finest/f)^2 (1.0)",
    )
    ali.add_argument(
        "--box-fraction", type=float_range(0.0, 1.0, lo_inclusive=False), default=1.0,
        help="find the shifts in a volume box this fraction of --thickness, then fill the "
        "whole thickness with the shifts fixed; 1 aligns in the whole box (1)",
    )
    ali.add_argument(
        "--iterations",
        type=int_list(1),
        default=None,
        help="outer iterations per level, >= 1: one number or one per level (60 at the "
        "first level, 10 at the others)",
    )
    ali.add_argument(
        "--inner-iterations",
        type=positive_int,
        default=10,
        help="primal-dual steps per iteration (10)",
    )
    ali.add_argument(
        "--cg-iterations",
        type=positive_int,
        default=10,
        help="CGLS iterations of the start volume (10)",
    )
    ali.add_argument(
        "--bin",
        type=int_list(1),
        default=[4, 2, 1],
        help="binning levels, coarse to fine (4,2,1)",
    )
    ali.add_argument("--xf", type=file_path, help="start from these transforms (skip prealign)")
    ali.add_argument(
        "--refine-tilt-axis", action="store_true",
        help="search the tilt-axis angle from --tilt-axis before aligning (implied by "
        "--tilt-axis auto; not with --xf)",
    )
    ali.add_argument(
        "--mask", type=file_path, help="mask stack (n, y, x), nonzero = use pixel in the data term"
    )
    ali.add_argument("--plot", type=file_path, help="save a PNG per iteration into this folder")
    ali.add_argument("--resume", action="store_true", help="continue from the checkpoint")
    ali.add_argument(
        "--device", type=device, help="cpu, cuda, cuda:N or auto (default: cuda if available)"
    )
    _add_fill_option(ali)
    ali.add_argument("--quiet", action="store_true", help="no per-iteration lines")


def _add_reconstruct_parser(sub: argparse._SubParsersAction) -> None:
    rec = add_subcommand(sub, "reconstruct", _RECONSTRUCT_DOC, func=run_reconstruct)
    _add_input_options(rec)
    rec.add_argument("--output", type=file_path, required=True, help="tomogram file (.mrc)")
    rec.add_argument("--method", choices=("wbp", "sirt", "cgls"), default="wbp")
    rec.add_argument(
        "--thickness", type=positive_int, help="thickness in unbinned px (default nx/4)"
    )
    rec.add_argument("--bin", type=positive_int, default=1, help="bin the images first (1)")
    rec.add_argument("--iterations", type=positive_int, help="SIRT/CGLS iterations (50/20)")
    rec.add_argument("--quiet", action="store_true", help="no progress bar (SIRT/CGLS)")
    rec.add_argument(
        "--cutoff",
        type=float_range(0, 1, lo_inclusive=False),
        default=1.0,
        help="WBP low-pass, fraction of Nyquist, > 0 and <= 1 (1.0)",
    )
    rec.add_argument(
        "--window", choices=("ram-lak", "shepp-logan", "cosine", "hann"), default="hann"
    )
    rec.add_argument(
        "--z-offset", type=finite_float, default=0.0, help="slab centre above axis (px)"
    )
    rec.add_argument("--y-range", type=int_span(), help="binned rows START:STOP only")
    rec.add_argument("--xf", type=file_path, help="IMOD transforms to align the raw images first")
    rec.add_argument("--aln", type=file_path, help="AreTomo .aln alignment to apply first")
    rec.add_argument(
        "--device", type=device, help="cpu, cuda, cuda:N or auto (default: cuda if available)"
    )
    rec.add_argument(
        "--workers",
        type=positive_int,
        help="OME-Zarr output only: worker processes of the local cluster, >= 1 (default: "
        "cores)",
    )
    rec.add_argument(
        "--scheduler",
        help="OME-Zarr output only: address of a running Dask scheduler whose workers see "
        "the same files",
    )
    rec.add_argument(
        "--slab-rows",
        type=positive_int,
        default=None,
        help="OME-Zarr output only: binned y rows per task, >= 1 (32)",
    )


def _add_fill_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--fill",
        choices=("mean", "zero"),
        default="mean",
        help="aligned stack outside the data: each image's mean (default) or zero",
    )


def _print_help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 0


def _add_input_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "tilts", type=file_path, help="tilt series (.mrc/.st, images (n, y, x))"
    )
    parser.add_argument(
        "--angles",
        type=file_path,
        help="IMOD .tlt (one angle per image) or SerialEM .mdoc (default: TILTS stem "
        ".tlt, else TILTS.mdoc, else the header's angles)",
    )
    parser.add_argument(
        "--pixel-size", type=positive_float, help="pixel size in Å, > 0 (default: header)"
    )
    parser.add_argument(
        "--tilt-axis",
        type=angle_or_auto,
        help="in-plane tilt-axis angle of the raw images, degrees from y, or 'auto' (0; "
        "not with --xf/--aln, which hold it)",
    )
    parser.add_argument(
        "--invert", action="store_true", help="negate the images (dark specimen on bright)"
    )
    parser.add_argument(
        "--log",
        action="store_true",
        help="Beer-Lambert -ln(I/I0) of bright-field (TEM) intensities, I0 = 99.9th "
        "percentile; not with --invert",
    )


def add_sim_parsers(sim_subparsers: argparse._SubParsersAction) -> None:
    """Add ``emkit sim tiltseries``."""
    parser = add_subcommand(sim_subparsers, "tiltseries", _SIM_DOC, func=run_sim)
    parser.add_argument("--output", type=file_path, required=True, help="output folder")
    parser.add_argument(
        "--name", type=safe_name, default="tiltseries", help="file stem, no folders (tiltseries)"
    )
    parser.add_argument(
        "--phantom",
        choices=("ellipsoids", "shepp-logan", "particles"),
        default="ellipsoids",
        help="random ellipsoids (default), the 3D Shepp-Logan head, or a crowded volume of "
        "the built-in PDB-derived particles",
    )
    parser.add_argument(
        "--shape",
        type=positive_int,
        nargs=3,
        default=(32, 128, 128),
        metavar=("NZ", "NY", "NX"),
        help="phantom size in pixels, z (thickness) y x, each >= 1 (32 128 128)",
    )
    parser.add_argument(
        "--tilt-range",
        type=float_range(-90, 90, lo_inclusive=False, hi_inclusive=False),
        nargs=2,
        default=(-60.0, 60.0),
        metavar=("FIRST", "LAST"),
        help="first and last tilt angle in degrees, -90 < FIRST < LAST < 90 (-60 60)",
    )
    parser.add_argument("--tilt-step", type=positive_float, default=2.0, help="degrees (2)")
    parser.add_argument("--max-shift", type=nonneg_float, default=10.0, help="pixels (10)")
    parser.add_argument(
        "--snr", type=positive_float, default=1.0, help="signal/noise variance, > 0 (1)"
    )
    parser.add_argument("--no-noise", action="store_true", help="noise-free")
    parser.add_argument(
        "--noise", choices=("gaussian", "poisson"), default="gaussian", help="noise model"
    )
    parser.add_argument(
        "--defocus", type=float_range(0, 20, lo_inclusive=False, unit="in µm"),
        help="apply a CTF at this defocus (µm, 0 < D <= 20; not Å)"
    )
    parser.add_argument("--pixel-size", type=positive_float, default=10.0, help="Å (10)")
    parser.add_argument(
        "--tilt-axis", type=finite_float, default=0.0, help="in-plane axis angle (0)"
    )
    parser.add_argument("--seed", type=seed, default=0, help="random seed, >= 0 (0)")


# --------------------------------------------------------------------------- commands


def _source(args: argparse.Namespace) -> Any:
    """The tilt series of ``_add_input_options``."""
    from emkit.tomo import TiltSeriesSource

    return TiltSeriesSource(
        args.tilts, args.angles, args.pixel_size, args.tilt_axis, args.invert, args.log
    )


def run_prealign(args: argparse.Namespace) -> int:
    """``emkit tomo prealign``."""
    from emkit.tomo import run_prealign_files

    result = run_prealign_files(
        _source(args), args.output, binning=args.bin,
        max_shift_px=args.max_shift, lowpass=args.lowpass, fill=args.fill,
        progress=show_progress(args.quiet), require_memory=require_memory,
    )
    write_run_record(args.output, args, results=result.record)
    paths = result.paths
    print(
        f"prealign: {result.n_images} images, tilt axis {result.tilt_axis_angle_deg:.2f} deg, "
        f"largest shift {result.largest_shift_px:.2f} px -> {paths['xf']}, "
        f"{paths['aligned']}"
    )
    return 0


def _plot_iteration(*args: Any, **kwargs: Any) -> None:
    from emkit.report.tomo import plot_iteration

    plot_iteration(*args, **kwargs)


def run_align(args: argparse.Namespace) -> int:
    """``emkit tomo align``."""
    from emkit.tomo import run_align_files

    result = run_align_files(
        _source(args), args.output, thickness=args.thickness, box_fraction=args.box_fraction,
        lam=args.lam, iterations=None if args.iterations is None else list(args.iterations),
        inner_iterations=args.inner_iterations, cg_iterations=args.cg_iterations,
        binning_levels=list(args.bin), xf=args.xf, mask=args.mask, plot_dir=args.plot,
        plot_iteration=_plot_iteration, resume=args.resume, device=args.device, fill=args.fill,
        refine_axis=args.refine_tilt_axis, verbose=not args.quiet,
        require_memory=require_memory, check_device=check_device,
    )
    write_run_record(args.output, args, results=result.record, history=result.history)
    paths = result.paths
    print(f"align: {len(result.history)} iterations -> {paths['xf']}, {paths['aligned']}, "
          f"{paths['tomogram']}")
    return 0


def run_reconstruct(args: argparse.Namespace) -> int:
    """``emkit tomo reconstruct``."""
    from emkit.tomo import StreamOptions, run_reconstruct_files

    stream = StreamOptions(slab_rows=args.slab_rows, scheduler=args.scheduler,
                           n_workers=args.workers, progress=show_progress(args.quiet))
    result = run_reconstruct_files(
        _source(args), args.output, method=args.method,
        thickness=args.thickness, binning=args.bin, iterations=args.iterations,
        cutoff=args.cutoff, window=args.window, z_offset_px=args.z_offset,
        y_range=args.y_range, xf=args.xf, aln=args.aln, device=args.device,
        progress=show_progress(args.quiet), require_memory=require_memory,
        check_device=check_device, stream=stream,
    )
    write_run_record(args.output.parent, args, named_after=args.output, results=result.record)
    print(f"reconstruct ({args.method}): {result.shape_zyx} voxels of "
          f"{result.voxel_size_A:.3g} Å -> {args.output}")
    return 0


def run_sim(args: argparse.Namespace) -> int:
    """``emkit sim tiltseries``."""
    from emkit.tomo import write_simulated_tilt_series

    sim = write_simulated_tilt_series(
        args.output, name=args.name, require_memory=require_memory, phantom=args.phantom,
        shape=tuple(args.shape),
        tilt_range_deg=tuple(args.tilt_range), tilt_step_deg=args.tilt_step,
        max_shift_px=args.max_shift, snr=None if args.no_noise else args.snr,
        noise=args.noise, defocus_um=args.defocus, pixel_size_A=args.pixel_size,
        tilt_axis_angle_deg=args.tilt_axis, seed=args.seed,
    )
    out, name, shape = sim.output_dir, sim.name, sim.stack_shape
    write_run_record(out, args, results={"simulation": sim.info, "noise_sigma": sim.noise_sigma})
    print(f"sim tiltseries: {shape[0]} images of {shape[1]}x{shape[2]} px -> {out}/{name}.mrc, "
          f"{name}.tlt, {name}_true.xf, {name}_volume.mrc")
    return 0


def run_demo(out_dir: Path, *, seed: int, progress: bool) -> dict[str, Any]:
    """Simulate a misaligned series, pre-align, joint-align, reconstruct; figures + numbers."""
    from emkit.report.tomo import plot_shift_errors, plot_slices
    from emkit.tomo import run_tomo_demo

    demo = run_tomo_demo(out_dir, seed=seed, progress=progress)
    plot_slices(demo.output_dir / "slices.png", demo.volumes, axis="both")
    plot_shift_errors(demo.output_dir / "shift_errors.png", demo.tilt_angles_deg,
                      demo.shifts_px, demo.true_shifts_px)
    return demo.numbers
