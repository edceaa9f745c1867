"""Benchmark: how far ``--tilt-axis auto`` (``emkit.tomo.estimate_tilt_axis``) lands from the truth.

Simulates held-out tilt series the estimator was never tuned on (61 tilts over +-60 deg,
random ellipsoids filling a thick slab, shifts up to ``--max-shift`` px, Gaussian noise at
``--snr``, the tilt axis turned in the image plane) and prints the estimate and its error
for each. Issue 11 asks for 0.3 deg with the axis up to +-10 deg, shifts up to 20 px and
SNR 0.5. ``--haadf PATH`` also runs the real FEI HAADF series (etspy's test data) with its
header tilt angles; its axis is near 90 deg (a joint-alignment residual scan puts it near
90.2 deg, which is the same line as -89.8 deg: emkit reports angles in (-90, 90]).

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

# Held-out cases: seeds no experiment on the estimator used.
DEFAULT_CASES = ((-10.0, 300, 48), (7.0, 301, 48), (-4.0, 302, 64), (10.0, 303, 48))


def axis_error_deg(estimate_deg: float, truth_deg: float) -> float:
    """Difference of two axis angles as lines, wrapped to (-90, 90] degrees."""
    d = (estimate_deg - truth_deg + 90.0) % 180.0 - 90.0
    return 90.0 if d == -90.0 else float(d)


def run_case(
    axis_deg: float, seed: int, thickness_px: int, *, size_px: int, max_shift_px: float,
    snr: float,
) -> tuple[float, float]:
    """Simulate one series and return (estimate in degrees, seconds the estimate took)."""
    from emkit.sim import simulate_tilt_series
    from emkit.tomo import estimate_tilt_axis

    sim = simulate_tilt_series(
        shape=(thickness_px, size_px, size_px), tilt_range_deg=(-60.0, 60.0),
        tilt_step_deg=2.0, max_shift_px=max_shift_px, snr=snr,
        tilt_axis_angle_deg=axis_deg, seed=seed,
    )
    t0 = time.perf_counter()
    estimate = estimate_tilt_axis(sim.stack, sim.tilt_angles_deg)
    return float(estimate), time.perf_counter() - t0


def run_haadf(path: Path) -> tuple[float, float]:
    """Estimate the axis of a real series read with its header tilt angles."""
    from emkit.io import read_volume
    from emkit.tomo import estimate_tilt_axis

    volume = read_volume(path)
    angles = np.asarray(volume.metadata["extended_header_tilt_angles_deg"], dtype=np.float64)
    t0 = time.perf_counter()
    estimate = estimate_tilt_axis(volume.data.astype(np.float32), angles)
    return float(estimate), time.perf_counter() - t0


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
        estimate, seconds = run_case(
            axis, seed, thick, size_px=args.size, max_shift_px=args.max_shift, snr=args.snr
        )
        rows.append([f"sim {args.size} px, {thick} thick, seed {seed}", axis, estimate,
                     axis_error_deg(estimate, axis), seconds])
    if args.haadf is not None:
        estimate, seconds = run_haadf(args.haadf)
        rows.append(["real HAADF (residual scan ~90.2)", 90.2, estimate,
                     axis_error_deg(estimate, 90.2), seconds])
    print_table(["series", "true axis (deg)", "estimate (deg)", "error (deg)", "seconds"], rows)
    errors = np.abs([r[3] for r in rows])
    print(f"largest error {errors.max():.2f} deg; within 0.3 deg: "
          f"{int(np.sum(errors <= 0.3))} of {len(rows)}")


if __name__ == "__main__":
    main()
