"""Benchmark: how far ``--tilt-axis auto`` lands from the truth.

``--tilt-axis auto`` in ``emkit tomo align`` is two steps, both measured here: the common-line
estimate (``emkit.tomo.estimate_tilt_axis``, all that ``tomo prealign`` does) and the search
that starts from it (``emkit.tomo.search_tilt_axis``: the angle where the coarse
joint-alignment model stops asking to turn). Simulates held-out tilt series (61 tilts over +-60 deg,
random ellipsoids filling a thick slab, shifts up to ``--max-shift`` px, Gaussian noise at
``--snr``, the tilt axis turned in the image plane) and prints the estimate and its error
for each. Issue 11 asks for 0.3 deg with the axis up to +-10 deg, shifts up to 20 px and
SNR 0.5. ``--haadf PATH`` also runs the real FEI HAADF series (etspy's test data) with its
header tilt angles, against the axis of etspy's independent published alignment (92.79 deg
in emkit's convention; a joint-alignment residual scan is biased by the interpolation of
the noise, docs/tomo.md).

    python benchmarks/tomo_tilt_axis.py                         # the four default cases
    python benchmarks/tomo_tilt_axis.py --size 256 --seeds 310 311
    python benchmarks/tomo_tilt_axis.py --haadf /path/HAADF.mrc
    python benchmarks/tomo_tilt_axis.py --size 256 --seeds 340 341 342 343 --whole-align

``--whole-align`` instead runs ``emkit tomo align --tilt-axis auto`` on each simulated
series, as a user would (files written to a temporary folder), and compares the aligned
stack it writes with the true noise-free projections: the shift of each aligned image
against its true projection (sub-pixel cross-correlation), the specimen-translation gauge
removed, as an RMSE over the series (issue 11: <= 0.3 px).

Error here is the estimate minus the truth, wrapped to (-90, 90] (an axis and its
opposite direction are the same line).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import print_table

# Held-out cases: seeds 310-313 were used by no experiment on either step (200-203 and
# 300-303 chose the search's smoothing, see docs/tomo.md).
DEFAULT_CASES = ((-10.0, 310, 48), (7.0, 311, 48), (-4.0, 312, 64), (10.0, 313, 48))


def axis_error_deg(estimate_deg: float, truth_deg: float) -> float:
    """Difference of two axis angles as lines, wrapped to (-90, 90] degrees."""
    d = (estimate_deg - truth_deg + 90.0) % 180.0 - 90.0
    return 90.0 if d == -90.0 else float(d)


def both_steps(stack: np.ndarray, angles: np.ndarray, thickness_px: int) -> list[float]:
    """[common-line estimate, its seconds, search result, its seconds]."""
    from emkit.tomo import estimate_tilt_axis, search_tilt_axis

    t0 = time.perf_counter()
    estimate = float(estimate_tilt_axis(stack, angles))
    t1 = time.perf_counter()
    found = search_tilt_axis(stack, angles, thickness=thickness_px, start_deg=estimate)
    return [estimate, t1 - t0, found.angle_deg, time.perf_counter() - t1]


def simulate_case(
    axis_deg: float, seed: int, thickness_px: int, *, size_px: int, max_shift_px: float,
    snr: float,
) -> Any:
    """One held-out series: 61 tilts over +-60 deg, the axis turned by ``axis_deg``."""
    from emkit.sim import simulate_tilt_series

    return simulate_tilt_series(
        shape=(thickness_px, size_px, size_px), tilt_range_deg=(-60.0, 60.0),
        tilt_step_deg=2.0, max_shift_px=max_shift_px, snr=snr,
        tilt_axis_angle_deg=axis_deg, seed=seed,
    )


def run_case(
    axis_deg: float, seed: int, thickness_px: int, *, size_px: int, max_shift_px: float,
    snr: float,
) -> list[float]:
    """Simulate one series; both steps as in :func:`both_steps`."""
    sim = simulate_case(axis_deg, seed, thickness_px, size_px=size_px,
                        max_shift_px=max_shift_px, snr=snr)
    return both_steps(sim.stack, sim.tilt_angles_deg, thickness_px)


def aligned_stack_rmse(aligned: np.ndarray, clean: np.ndarray, angles: np.ndarray) -> float:
    """RMS shift (px) of each aligned image against its true projection, gauge removed."""
    from emkit.tomo import remove_gauge
    from emkit.tomo._correlate import bandpass_filter, correlation_peak

    ny, nx = clean.shape[1:]
    filt = bandpass_filter((ny, nx), lowpass=0.25, highpass=0.01)
    window = np.hanning(ny)[:, None] * np.hanning(nx)[None, :]

    def prep(image: np.ndarray) -> np.ndarray:
        image = np.asarray(image, dtype=np.float64)
        return (image - image.mean()) * window

    shifts = np.array([correlation_peak(prep(c), prep(a), filt=filt)[0]
                       for c, a in zip(clean, aligned)])
    residual = remove_gauge(shifts, angles, gauge="rigid")
    return float(np.sqrt(np.mean(np.sum(residual ** 2, axis=1))))


def whole_alignment(sim: Any, thickness_px: int, align_args: tuple[str, ...] = ()) -> list[float]:
    """``emkit tomo align --tilt-axis auto`` on the series' files: [axis found, aligned-stack
    shift RMSE against the true projections, seconds]."""
    from emkit.io import read_volume, write_tlt, write_volume

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        write_volume(folder / "ts.mrc", sim.stack, voxel_size=sim.pixel_size_A)
        write_tlt(folder / "ts.tlt", sim.tilt_angles_deg)
        command = [sys.executable, "-m", "emkit", "tomo", "align", str(folder / "ts.mrc"),
                   "--angles", str(folder / "ts.tlt"), "--output", str(folder / "ali"),
                   "--tilt-axis", "auto", "--thickness", str(thickness_px), *align_args]
        t0 = time.perf_counter()
        run = subprocess.run(command, capture_output=True, text=True)
        seconds = time.perf_counter() - t0
        if run.returncode != 0:
            raise RuntimeError(f"emkit tomo align failed:\n{run.stderr}")
        record = json.loads((folder / "ali" / "emkit-run.json").read_text())
        aligned = read_volume(folder / "ali" / "ts_ali.mrc").data
        rmse = aligned_stack_rmse(aligned, sim.clean, sim.tilt_angles_deg)
    return [float(record["results"]["tilt_axis_angle_deg"]), rmse, seconds]


def run_haadf(path: Path, thickness_px: int) -> list[float]:
    """Both steps on a real series read with its header tilt angles (background removed
    and bright-on-dark as stored)."""
    from emkit.io import read_volume

    volume = read_volume(path)
    angles = np.asarray(volume.metadata["extended_header_tilt_angles_deg"], dtype=np.float64)
    return both_steps(volume.data.astype(np.float32), angles, thickness_px)


def print_whole_alignments(
    cases: list[tuple[float, int, int]], size_px: int, max_shift_px: float, snr: float,
    align_args: tuple[str, ...] = (),
) -> None:
    """One table: each series through ``emkit tomo align --tilt-axis auto``."""
    rows = []
    for axis, seed, thickness in cases:
        thick = thickness * size_px // 128
        sim = simulate_case(axis, seed, thick, size_px=size_px, max_shift_px=max_shift_px,
                            snr=snr)
        found, rmse, seconds = whole_alignment(sim, thick, align_args)
        rows.append([f"sim {size_px} px, {thick} thick, seed {seed}", axis, found,
                     axis_error_deg(found, axis), rmse, seconds])
    print_table(["series", "true axis (deg)", "found (deg)", "error", "aligned-stack shift "
                 "RMSE (px)", "seconds"], rows)
    rmse = np.array([r[4] for r in rows])
    print(f"aligned-stack shift RMSE: largest {rmse.max():.3f} px; within 0.3 px: "
          f"{int(np.sum(rmse <= 0.3))} of {len(rows)}")


def main() -> None:
    """Parse the options, run the cases and print one table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=128, help="image side in pixels")
    parser.add_argument("--max-shift", type=float, default=20.0, help="largest shift (px)")
    parser.add_argument("--snr", type=float, default=0.5)
    parser.add_argument("--seeds", type=int, nargs="*", default=None,
                        help="run the default axis angles with these seeds instead")
    parser.add_argument("--haadf", type=Path, default=None, help="real HAADF.mrc to run too")
    parser.add_argument("--whole-align", action="store_true",
                        help="run `emkit tomo align --tilt-axis auto` on the simulations and "
                             "measure the aligned stacks against the true projections")
    parser.add_argument("--align-args", default="",
                        help="more options for `emkit tomo align` with --whole-align, e.g. "
                             "'--box-fraction 0.8'")
    args = parser.parse_args()
    cases = list(DEFAULT_CASES)
    if args.seeds:
        cases = [(a, s, t) for (a, _, t), s in zip(DEFAULT_CASES, args.seeds)]
    if args.whole_align:
        print_whole_alignments(cases, args.size, args.max_shift, args.snr,
                               tuple(args.align_args.split()))
        return
    rows = []
    for axis, seed, thickness in cases:
        thick = thickness * args.size // 128
        steps = run_case(
            axis, seed, thick, size_px=args.size, max_shift_px=args.max_shift, snr=args.snr
        )
        rows.append([f"sim {args.size} px, {thick} thick, seed {seed}", axis, *steps])
    if args.haadf is not None:
        rows.append(["real HAADF (against etspy's 92.79)", 92.79, *run_haadf(args.haadf, 160)])
    for row in rows:
        row[3:3] = [axis_error_deg(row[2], row[1])]
        row.insert(6, axis_error_deg(row[5], row[1]))
    print_table(["series", "true axis (deg)", "common line (deg)", "error", "seconds",
                 "search (deg)", "error", "seconds"], rows)
    for name, column in (("common line", 3), ("search", 6)):
        errors = np.abs([r[column] for r in rows])
        print(f"{name}: largest error {errors.max():.2f} deg, RMS "
              f"{np.sqrt(np.mean(errors ** 2)):.2f} deg; within 0.3 deg: "
              f"{int(np.sum(errors <= 0.3))} of {len(rows)}")


if __name__ == "__main__":
    main()
