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
        --thickness 32 --bin 4,2,1 --iterations 10 --plot ali/plots
    emkit tomo reconstruct sim/tiltseries.mrc --angles sim/tiltseries.tlt \\
        --xf ali/tiltseries.xf --method sirt --thickness 32 --output rec/tomogram.mrc

See `emkit tomo prealign --help`, `emkit tomo align --help`, `emkit tomo reconstruct --help`.
"""

from __future__ import annotations

import argparse
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

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
    safe_name,
    seed,
)

logger = logging.getLogger(__name__)

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

Minimises 1/2 sum_i ||M_i (A_i u - T(s_i) b_i)||^2 + lam std(b) TV(u) over the volume u and
one shift s_i per image: primal-dual (Chambolle-Pock) volume steps with provably valid step
sizes, then one Gauss-Newton shift step per image on its masked residual, always
resampling the original images; the shifts that only move the specimen are projected
out. Starts from the pre-alignment (or --xf) and a CGLS reconstruction. Prints the data
residual, TV and largest shift change per iteration; --plot saves a PNG per iteration;
--resume continues an interrupted run from OUT/<stem>_align.ckpt.npz.
Writes OUT/<stem>.xf, OUT/<stem>_ali.mrc and OUT/<stem>_rec.mrc (the TV reconstruction).

Examples
--------
    emkit tomo align ts.mrc --angles ts.tlt --output ali/ --thickness 64
    emkit tomo align ts.mrc --angles ts.tlt --output ali/ --bin 4,2 --lam 0.5 \\
        --iterations 20 --plot ali/plots --resume
"""

_RECONSTRUCT_DOC = """Reconstruct a tomogram: weighted back-projection, SIRT or CGLS.

Applies an alignment first when given (--xf IMOD transforms or --aln AreTomo file), bins
the images (--bin), and reconstructs --thickness unbinned pixels (optionally a slab offset
in z, or a range of y slices). The voxel size is the input pixel size times the binning.

Examples
--------
    emkit tomo reconstruct ali/ts_ali.mrc --angles ts.tlt --output ts_rec.mrc --thickness 64
    emkit tomo reconstruct ts.mrc --angles ts.tlt --xf ali/ts.xf --method sirt \\
        --iterations 30 --bin 2 --thickness 128 --output ts_sirt_bin2.mrc
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
    pre.add_argument("--quiet", action="store_true", help="no progress bar")

    ali = add_subcommand(sub, "align", _ALIGN_DOC, func=run_align)
    _add_input_options(ali)
    ali.add_argument("--output", type=file_path, required=True, help="output folder")
    ali.add_argument(
        "--thickness", type=positive_int, help="tomogram thickness, unbinned px (nx/4)"
    )
    ali.add_argument(
        "--lam", type=nonneg_float, default=1.0, help="TV weight in units of std, >= 0 (1.0)"
    )
    ali.add_argument(
        "--iterations",
        type=int_list(1),
        default=[10],
        help="outer iterations per level, >= 1: one number or one per level (10)",
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
        "--mask", type=file_path, help="mask stack (n, y, x), nonzero = use pixel in the data term"
    )
    ali.add_argument("--plot", type=file_path, help="save a PNG per iteration into this folder")
    ali.add_argument("--resume", action="store_true", help="continue from the checkpoint")
    ali.add_argument(
        "--device", type=device, help="cpu, cuda, cuda:N or auto (default: cuda if available)"
    )
    ali.add_argument("--quiet", action="store_true", help="no per-iteration lines")

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
        help="IMOD .tlt, one angle per image (default: TILTS stem .tlt)",
    )
    parser.add_argument(
        "--pixel-size", type=positive_float, help="pixel size in Å, > 0 (default: header)"
    )
    parser.add_argument(
        "--tilt-axis",
        type=angle_or_auto,
        default="0",
        help="in-plane tilt-axis angle of the raw images, degrees from y, or 'auto' (0)",
    )
    parser.add_argument(
        "--invert", action="store_true", help="negate the images (dark specimen on bright)"
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
        "--defocus", type=positive_float, help="apply a CTF at this defocus (µm, > 0)"
    )
    parser.add_argument("--pixel-size", type=positive_float, default=10.0, help="Å (10)")
    parser.add_argument(
        "--tilt-axis", type=finite_float, default=0.0, help="in-plane axis angle (0)"
    )
    parser.add_argument("--seed", type=seed, default=0, help="random seed, >= 0 (0)")


# --------------------------------------------------------------------------- inputs


@dataclass
class _Series:
    path: Path
    angles_path: Path
    stack: np.ndarray
    angles: np.ndarray
    pixel_size_A: float
    stem: str


def _stem(path: Path) -> str:
    name = path.name
    if name.lower().endswith(".mrc.gz"):
        return name[:-7]
    return path.stem


def _read_series(args: argparse.Namespace) -> _Series:
    """Read and check the stack and its angles; every problem is one line naming the file."""
    from emkit.errors import InputError, MismatchError, ShapeError, with_path
    from emkit.io import read_tlt, read_volume, require_finite
    from emkit.tomo import check_tilt_series

    angles_path = args.angles if args.angles is not None else args.tilts.with_suffix(".tlt")
    if args.angles is None and not angles_path.exists():
        raise InputError(
            with_path(args.tilts, f"no tilt angles: {angles_path.name} does not exist; give "
                      "--angles FILE.tlt")
        )
    volume = read_volume(args.tilts)
    data = np.asarray(volume.data)
    if data.ndim != 3:
        raise ShapeError(
            with_path(args.tilts, f"is a {data.ndim}D array of shape {data.shape}; a tilt "
                      "series is a stack of images (n, y, x)")
        )
    angles = read_tlt(angles_path)
    if len(angles) != data.shape[0]:
        raise MismatchError(
            with_path(angles_path, f"{len(angles)} tilt angles but {args.tilts.name} has "
                      f"{data.shape[0]} images; give one angle per image")
        )
    if data.shape[0] < 3:
        raise InputError(
            with_path(args.tilts, f"has only {data.shape[0]} images; alignment and "
                      "reconstruction need at least 3 tilts")
        )
    require_finite(data, args.tilts, "tilt series")
    stack, angles = check_tilt_series(data, angles, path=args.tilts)
    if getattr(args, "invert", False):
        stack = -stack
    pixel = args.pixel_size if args.pixel_size is not None else volume.pixel_size
    if pixel is None or not pixel > 0:
        logger.warning("%s: no pixel size in the header; using 1 Å (give --pixel-size)",
                       args.tilts)
        pixel = 1.0
    return _Series(args.tilts, angles_path, stack, angles, float(pixel), _stem(args.tilts))


def _tilt_axis(args: argparse.Namespace) -> float | str:
    from emkit.errors import InputError

    if str(args.tilt_axis).lower() == "auto":
        return "auto"
    try:
        return float(args.tilt_axis)
    except ValueError:
        raise InputError(
            f"--tilt-axis must be an angle in degrees or 'auto', got {args.tilt_axis!r}"
        ) from None


def _outputs(out_dir: Path, stem: str, inputs: list[Path | None]) -> dict[str, Path]:
    from emkit.io import check_not_input, make_output_folder

    make_output_folder(out_dir)

    paths = {
        "xf": out_dir / f"{stem}.xf",
        "aligned": out_dir / f"{stem}_ali.mrc",
        "tomogram": out_dir / f"{stem}_rec.mrc",
    }
    for p in paths.values():
        check_not_input(p, inputs)
    return paths


def _write_alignment(
    paths: dict[str, Path],
    series: _Series,
    shifts: np.ndarray,
    axis_deg: float,
) -> None:
    from emkit.io import write_volume, write_xf
    from emkit.tomo import transform_images, xf_from_alignment

    aligned = transform_images(series.stack, shifts, tilt_axis_angle_deg=axis_deg)
    write_volume(paths["aligned"], aligned, voxel_size=series.pixel_size_A, stack=True)
    write_xf(paths["xf"], xf_from_alignment(shifts, axis_deg))


# --------------------------------------------------------------------------- commands


def run_prealign(args: argparse.Namespace) -> int:
    """``emkit tomo prealign``."""
    from emkit.tomo import prealign

    series = _read_series(args)
    _check_binning("--bin", [args.bin], series)
    _require_prealign_memory(series)
    paths = _outputs(args.output, series.stem, [series.path, series.angles_path])
    axis = _tilt_axis(args)
    start = time.perf_counter()
    result = prealign(
        series.stack,
        series.angles,
        binning=args.bin,
        tilt_axis_angle_deg=axis,
        max_shift_px=args.max_shift,
        lowpass=args.lowpass,
        progress=show_progress(args.quiet),
    )
    _write_alignment(paths, series, result.shifts_px, result.tilt_axis_angle_deg)
    results = {
        "tilt_axis_angle_deg": result.tilt_axis_angle_deg,
        "largest_shift_px": float(np.abs(result.shifts_px).max()),
        "lowest_peak": float(result.peaks.min()),
        "seconds": round(time.perf_counter() - start, 2),
        "outputs": {k: str(v) for k, v in paths.items() if k != "tomogram"},
    }
    write_run_record(args.output, args, results=results)
    print(
        f"prealign: {len(series.angles)} images, tilt axis {result.tilt_axis_angle_deg:.2f} deg, "
        f"largest shift {results['largest_shift_px']:.2f} px -> {paths['xf']}, "
        f"{paths['aligned']}"
    )
    return 0


def _read_mask_stack(path: Path, shape: tuple[int, ...]) -> np.ndarray:
    from emkit.errors import InputError, MismatchError, with_path
    from emkit.io import read_volume, require_finite

    mask = np.asarray(read_volume(path).data)
    # NaN != 0 is True: an all-NaN mask would silently count as "use every pixel".
    require_finite(mask, path, "mask")
    if mask.shape != shape:
        raise MismatchError(
            with_path(path, f"mask has shape {mask.shape} but the tilt series is {shape}; "
                      "give one mask image per tilt image")
        )
    mask = mask != 0
    if not mask.any(axis=(1, 2)).all():
        raise InputError(with_path(path, "some mask images are empty; every image needs "
                                   "pixels to use"))
    return mask


def _read_alignment(
    args: argparse.Namespace, series: _Series
) -> tuple[np.ndarray, np.ndarray | float] | None:
    """Shifts and tilt-axis angles from --xf or --aln (None when neither is given)."""
    from emkit.errors import InputError, MismatchError, with_path
    from emkit.io import read_aln, read_xf
    from emkit.tomo import alignment_from_xf, shifts_from_aln

    xf_path = getattr(args, "xf", None)
    aln_path = getattr(args, "aln", None)
    if xf_path is not None and aln_path is not None:
        raise InputError("give either --xf or --aln, not both")
    if xf_path is not None:
        xf = read_xf(xf_path)
        if len(xf) != len(series.angles):
            raise MismatchError(
                with_path(xf_path, f"{len(xf)} transforms but {series.path.name} has "
                          f"{len(series.angles)} images; give one line per image")
            )
        return alignment_from_xf(xf, path=xf_path)
    if aln_path is not None:
        return shifts_from_aln(read_aln(aln_path), len(series.angles), path=aln_path)
    return None


def _thickness(args: argparse.Namespace, series: _Series) -> int:
    from emkit.errors import InputError

    thickness = args.thickness if args.thickness else max(1, series.stack.shape[2] // 4)
    if thickness < 1:
        raise InputError(f"--thickness must be a positive number of pixels, got {thickness}")
    return int(thickness)


def _check_binning(option: str, binnings: list[int], series: _Series) -> None:
    """Binned images must keep at least 8 px a side (as check_tilt_series asks)."""
    from emkit.errors import InputError, with_path

    ny, nx = series.stack.shape[1:]
    largest = max(1, min(ny, nx) // 8)
    if max(binnings) > largest:
        raise InputError(
            with_path(series.path, f"images of {ny}x{nx} px binned by {option} "
                      f"{max(binnings)} would be smaller than 8 px; give {option} <= {largest}")
        )


def _require_prealign_memory(series: _Series) -> None:
    """Pre-alignment holds a few float32 copies of the stack (binned, tapered, aligned)."""
    from emkit.cli._options import require_memory

    n, ny, nx = series.stack.shape
    require_memory(
        4 * 8 * n * ny * nx,
        f"pre-aligning {n} images of {ny}x{nx} px from {series.path.name}",
        "crop or bin the tilt series first (e.g. IMOD newstack -bin 2)",
    )


def _require_tomo_memory(
    series: _Series, *, thickness: int, binning: int, n_volumes: int, rows: int | None = None
) -> None:
    """Refuse, before the work, a tomogram (and projector matrix) that cannot fit in memory.

    Measured on CPU: the sparse matrix ``A`` and ``A.T`` with their construction take about
    48 bytes per (tilt x z x x); ``n_volumes`` float32 tomogram-sized arrays (3 for WBP,
    up to 12 for joint alignment) and three copies of the stack come on top.
    """
    from emkit.cli._options import require_memory

    n, ny, nx = series.stack.shape
    nz, nyb, nxb = thickness // binning, ny // binning, nx // binning
    nyb = nyb if rows is None else rows
    need = 48 * n * nz * nxb + 4 * (n_volumes * nz * nyb * nxb + 3 * n * ny * nx)
    require_memory(
        need,
        f"a {nz} x {nyb} x {nxb} tomogram of {series.path.name}",
        "use a larger --bin or a smaller --thickness",
    )


def run_align(args: argparse.Namespace) -> int:
    """``emkit tomo align``."""
    from emkit.errors import InputError
    from emkit.io import make_output_folder, on_commit, write_volume
    from emkit.tomo import align_joint, prealign, remove_gauge

    series = _read_series(args)
    inputs: list[Path | None] = [series.path, series.angles_path, args.xf, args.mask]
    paths = _outputs(args.output, series.stem, inputs)
    thickness = _thickness(args, series)
    levels = list(args.bin)
    _check_binning("--bin", levels, series)
    check_device(args.device)
    _require_tomo_memory(series, thickness=thickness, binning=min(levels), n_volumes=12)
    if thickness // max(levels) < 1:
        raise InputError(f"--thickness {thickness} is thinner than the coarsest binning")
    iterations = args.iterations[0] if len(args.iterations) == 1 else args.iterations
    if not isinstance(iterations, int) and len(iterations) != len(levels):
        raise InputError(
            f"--iterations has {len(iterations)} values for {len(levels)} binning levels"
        )
    masks = _read_mask_stack(args.mask, series.stack.shape) if args.mask else None
    start = time.perf_counter()
    initial = _read_alignment(args, series)
    if initial is not None:
        shifts0, axis_arr = initial
        axis_values = np.atleast_1d(np.asarray(axis_arr, dtype=np.float64))
        if np.ptp(axis_values) > 0.05:
            raise InputError(
                f"{args.xf}: the transforms rotate images by different angles; align needs one "
                "tilt-axis angle for the whole series"
            )
        axis = float(axis_values.mean())
        source = f"{args.xf}"
    else:
        # Correlating images much larger than ~1k px gains nothing for a coarse start.
        pre_bin = max(1, int(np.ceil(max(series.stack.shape[1:]) / 1024)))
        pre = prealign(
            series.stack,
            series.angles,
            binning=pre_bin,
            tilt_axis_angle_deg=_tilt_axis(args),
            progress=False,
        )
        shifts0, axis = pre.shifts_px, pre.tilt_axis_angle_deg
        source = "prealign"
        if not args.quiet:
            print(f"prealign: tilt axis {axis:.2f} deg, largest shift "
                  f"{np.abs(shifts0).max():.2f} px", flush=True)
    checkpoint = args.output / f"{series.stem}_align.ckpt.npz"
    if args.plot is not None:
        make_output_folder(args.plot)

    def report(record: dict[str, Any], shifts: np.ndarray, volume: np.ndarray) -> None:
        if not args.quiet:
            print(
                f"bin {int(record['level'])} it {int(record['iteration']):3d}: residual "
                f"{record['data_residual']:.5g}  TV {record['tv']:.5g}  max shift change "
                f"{record['max_shift_change_px']:.3f} px",
                flush=True,
            )
        if args.plot is not None:
            from emkit.report.tomo import plot_iteration

            name = f"iter_bin{int(record['level'])}_{int(record['iteration']):03d}.png"
            plot_iteration(args.plot / name, volume, shifts, series.angles, record=record)

    result = align_joint(
        series.stack,
        series.angles,
        thickness=thickness,
        initial_shifts_px=remove_gauge(shifts0, series.angles, gauge="rigid"),
        lam=args.lam,
        iterations=iterations,
        inner_iterations=args.inner_iterations,
        cg_iterations=args.cg_iterations,
        binning_levels=levels,
        tilt_axis_angle_deg=axis,
        masks=masks,
        device=args.device,
        callback=report,
        checkpoint=checkpoint,
        resume=args.resume,
    )
    _write_alignment(paths, series, result.shifts_px, axis)
    write_volume(
        paths["tomogram"], result.volume, voxel_size=series.pixel_size_A * result.binning
    )
    # The checkpoint goes only once the outputs are in place: a failed commit can resume.
    on_commit(lambda: checkpoint.unlink(missing_ok=True))
    last = result.history[-1] if result.history else {}
    results = {
        "start": source,
        "tilt_axis_angle_deg": axis,
        "final": last,
        "iterations_run": len(result.history),
        "seconds": round(time.perf_counter() - start, 2),
        "outputs": {k: str(v) for k, v in paths.items()},
    }
    write_run_record(args.output, args, results=results, history=result.history)
    print(f"align: {len(result.history)} iterations -> {paths['xf']}, {paths['aligned']}, "
          f"{paths['tomogram']}")
    return 0


def run_reconstruct(args: argparse.Namespace) -> int:
    """``emkit tomo reconstruct``."""
    from emkit.errors import InputError, with_path
    from emkit.io import check_not_input, write_volume
    from emkit.tomo import reconstruct

    series = _read_series(args)
    check_not_input(args.output, [series.path, series.angles_path, args.xf, args.aln])
    thickness = _thickness(args, series)
    _check_binning("--bin", [args.bin], series)
    check_device(args.device)
    if args.y_range is not None and args.y_range[1] > series.stack.shape[1] // args.bin:
        raise InputError(
            with_path(series.path, f"--y-range {args.y_range[0]}:{args.y_range[1]} is outside "
                      f"the {series.stack.shape[1] // args.bin} rows of the images binned by "
                      f"{args.bin}")
        )
    rows = None if args.y_range is None else args.y_range[1] - args.y_range[0]
    _require_tomo_memory(
        series,
        thickness=thickness,
        binning=args.bin,
        n_volumes={"wbp": 3, "sirt": 5, "cgls": 6}[args.method],
        rows=rows,
    )
    alignment = _read_alignment(args, series)
    shifts, axis = (None, _tilt_axis(args)) if alignment is None else alignment
    if isinstance(axis, str):
        from emkit.tomo import estimate_tilt_axis

        axis = estimate_tilt_axis(series.stack, series.angles)
    start = time.perf_counter()
    bar, callback = None, None
    if args.method != "wbp" and show_progress(args.quiet):
        from tqdm import tqdm

        total = args.iterations or (50 if args.method == "sirt" else 20)
        bar = tqdm(total=total, desc=args.method, unit="it")

        def callback(iteration: int, volume: np.ndarray) -> None:
            bar.update(1)

    volume = reconstruct(
        series.stack,
        series.angles,
        method=args.method,
        callback=callback,
        thickness=thickness,
        binning=args.bin,
        shifts_px=shifts,
        tilt_axis_angle_deg=axis,  # type: ignore[arg-type]
        iterations=args.iterations,
        cutoff=args.cutoff,
        window=args.window,
        z_offset_px=args.z_offset,
        y_range=args.y_range,
        device=args.device,
    )
    if bar is not None:
        bar.close()
    write_volume(args.output, volume, voxel_size=series.pixel_size_A * args.bin)
    seconds = round(time.perf_counter() - start, 2)
    write_run_record(
        args.output.parent,
        args,
        results={"shape_zyx": list(volume.shape), "seconds": seconds, "output": str(args.output)},
    )
    print(f"reconstruct ({args.method}): {volume.shape} voxels of "
          f"{series.pixel_size_A * args.bin:.3g} Å -> {args.output}")
    return 0


def run_sim(args: argparse.Namespace) -> int:
    """``emkit sim tiltseries``."""
    from emkit.io import make_output_folder, write_tlt, write_volume, write_xf
    from emkit.sim import simulate_tilt_series
    from emkit.tomo import xf_from_alignment

    _check_sim_request(args)
    out: Path = make_output_folder(args.output)
    sim = simulate_tilt_series(
        phantom=args.phantom,
        shape=tuple(args.shape),
        tilt_range_deg=tuple(args.tilt_range),
        tilt_step_deg=args.tilt_step,
        max_shift_px=args.max_shift,
        snr=None if args.no_noise else args.snr,
        noise=args.noise,
        defocus_um=args.defocus,
        pixel_size_A=args.pixel_size,
        tilt_axis_angle_deg=args.tilt_axis,
        seed=args.seed,
    )
    name = args.name
    write_volume(out / f"{name}.mrc", sim.stack, voxel_size=sim.pixel_size_A, stack=True)
    write_tlt(out / f"{name}.tlt", sim.tilt_angles_deg)
    write_xf(out / f"{name}_true.xf", xf_from_alignment(sim.shifts_px, sim.tilt_axis_angle_deg))
    write_volume(out / f"{name}_volume.mrc", sim.volume, voxel_size=sim.pixel_size_A)
    write_run_record(out, args, results={"simulation": sim.info, "noise_sigma": sim.noise_sigma})
    print(f"sim tiltseries: {sim.stack.shape[0]} images of {sim.stack.shape[1]}x"
          f"{sim.stack.shape[2]} px -> {out}/{name}.mrc, {name}.tlt, {name}_true.xf, "
          f"{name}_volume.mrc")
    return 0


def _check_sim_request(args: argparse.Namespace) -> None:
    """Tilt range and step that give a series, in memory that is there; before any work."""
    from emkit.cli._options import require_memory
    from emkit.errors import InputError

    first, last = args.tilt_range
    if not first < last:
        raise InputError(f"--tilt-range {first:g} {last:g}: FIRST must be less than LAST")
    n = int((last - first) / args.tilt_step + 1e-6) + 1
    if n < 3:
        raise InputError(
            f"--tilt-range {first:g} {last:g} with --tilt-step {args.tilt_step:g} gives {n} "
            "tilts; give at least 3"
        )
    nz, ny, nx = args.shape
    if min(ny, nx) < 8:
        raise InputError(
            f"--shape {nz} {ny} {nx}: images of {ny}x{nx} px are too small to align or "
            "reconstruct; give NY and NX of at least 8"
        )
    # As simulate_tilt_series: phantom and detector sampled twice finer, a detector margin
    # for the shifts; measured ~48 bytes per (tilt x z x x) of the fine projector matrix.
    margin = int(np.ceil(args.max_shift + 0.75 * abs(args.tilt_axis) / 45 * max(ny, nx))) + 2
    nd = 2 * (nx + 2 * margin)
    need = 48 * n * 2 * nz * nd + 4 * (4 * 8 * nz * ny * nx + 3 * n * 2 * ny * nd)
    require_memory(
        need,
        f"simulating {n} tilts of a {nz} x {ny} x {nx} phantom",
        "give a smaller --shape or a larger --tilt-step",
    )


# --------------------------------------------------------------------------- demo


def _psnr(volume: np.ndarray, truth: np.ndarray) -> float:
    mse = float(np.mean((volume.astype(np.float64) - truth) ** 2))
    span = float(truth.max() - truth.min())
    return float(10 * np.log10(span**2 / mse)) if mse > 0 else float("inf")


def run_demo(out_dir: Path, *, seed: int, progress: bool) -> dict[str, Any]:
    """Simulate a misaligned series, pre-align, joint-align, reconstruct; figures + numbers."""
    from emkit.io import make_output_folder, write_tlt, write_volume, write_xf
    from emkit.report.tomo import plot_shift_errors, plot_slices
    from emkit.sim import simulate_tilt_series
    from emkit.tomo import align_joint, prealign, reconstruct, shift_rmse, xf_from_alignment

    out_dir = make_output_folder(out_dir)
    sim = simulate_tilt_series(shape=(32, 128, 128), snr=1.0, seed=seed)
    angles, truth = sim.tilt_angles_deg, sim.shifts_px
    write_volume(out_dir / "tiltseries.mrc", sim.stack, voxel_size=sim.pixel_size_A, stack=True)
    write_tlt(out_dir / "tiltseries.tlt", angles)
    write_xf(out_dir / "tiltseries_true.xf", xf_from_alignment(truth))
    if progress:
        print("   simulated 61 tilts of 128x128 px, shifts up to 10 px, SNR 1", flush=True)
    pre = prealign(sim.stack, angles)
    joint = align_joint(sim.stack, angles, thickness=32, initial_shifts_px=pre.shifts_px,
                        progress=progress)
    reference = align_joint(sim.stack, angles, thickness=32, initial_shifts_px=truth,
                            update_shifts=False)
    unaligned = reconstruct(sim.stack, angles, method="wbp", thickness=32)
    write_xf(out_dir / "tiltseries.xf", xf_from_alignment(joint.shifts_px))
    write_volume(out_dir / "tiltseries_rec.mrc", joint.volume, voxel_size=sim.pixel_size_A)
    plot_slices(
        out_dir / "slices.png",
        {"phantom": sim.volume, "unaligned (WBP)": unaligned,
         "joint (TV)": joint.volume, "true shifts (TV)": reference.volume},
        axis="both",
    )
    plot_shift_errors(
        out_dir / "shift_errors.png", angles,
        {"prealign": pre.shifts_px, "joint": joint.shifts_px}, truth,
    )
    return {
        "prealign_shift_rmse_px": round(shift_rmse(pre.shifts_px, truth, angles, gauge="rigid"), 3),
        "joint_shift_rmse_px": round(shift_rmse(joint.shifts_px, truth, angles, gauge="rigid"), 3),
        "joint_shift_rmse_offset_only_px": round(shift_rmse(joint.shifts_px, truth), 3),
        "psnr_unaligned_wbp_db": round(_psnr(unaligned, sim.volume), 2),
        "psnr_joint_db": round(_psnr(joint.volume, sim.volume), 2),
        "psnr_true_shifts_db": round(_psnr(reference.volume, sim.volume), 2),
    }
