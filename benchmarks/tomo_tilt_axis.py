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

Error here is the estimate minus the truth, wrapped to (-90, 90] (an axis and its
opposite direction are the same line).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

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


def run_case(
    axis_deg: float, seed: int, thickness_px: int, *, size_px: int, max_shift_px: float,
    snr: float,
) -> list[float]:
    """Simulate one series; both steps as in :func:`both_steps`."""
    from emkit.sim import simulate_tilt_series

    sim = simulate_tilt_series(
        shape=(thickness_px, size_px, size_px), tilt_range_deg=(-60.0, 60.0),
        tilt_step_deg=2.0, max_shift_px=max_shift_px, snr=snr,
        tilt_axis_angle_deg=axis_deg, seed=seed,
    )
    return both_steps(sim.stack, sim.tilt_angles_deg, thickness_px)


def run_haadf(path: Path, thickness_px: int) -> list[float]:
    """Both steps on a real series read with its header tilt angles (background removed
    and bright-on-dark as stored)."""
    from emkit.io import read_volume

    volume = read_volume(path)
    angles = np.asarray(volume.metadata["extended_header_tilt_angles_deg"], dtype=np.float64)
    return both_steps(volume.data.astype(np.float32), angles, thickness_px)


def main() -> None:
    """Parse the options, run the cases and print one table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=128, help="image side in pixels")
    parser.add_argument("--max-shift", type=float, default=20.0, help="largest shift (px)")
    parser.add_argument("--snr", type=float, default=0.5)
    parser.add_argument("--seeds", type=int, nargs="*", default=None,
                        help="run the default axis angles with these seeds instead")
    parser.add_argument("--haadf", type=Path, default=None, help="real HAADF.mrc to run too")
    args = parser.parse_args()
    cases = list(DEFAULT_CASES)
    if args.seeds:
        cases = [(a, s, t) for (a, _, t), s in zip(DEFAULT_CASES, args.seeds)]
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
