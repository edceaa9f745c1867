"""Print the accuracy figures quoted in the README, from the cases the tests assert on.

The tests check thresholds; this script prints the measured values behind them, so every
accuracy number in the README and docs comes from a run of this file:

- tomo: the acceptance series (61 tilts over ±60°, 128 x 128 px, 32 thick, shifts up to
  ±10 px, Gaussian noise at SNR 1, seed 0): shift RMSE after pre-alignment (plain walk and
  default) and after joint alignment, with the rigid gauge removed and with the mean removed
  only; PSNR of the joint and true-shift TV reconstructions against the phantom, as they are
  and moved back by the specimen translation; a series without shifts.
- register: synthetic folds and cracks (512 x 512 texture, seeds 1-3): endpoint error of
  Expected Affine and of one global affine, mean, 95th percentile, and within 50 px of the
  defect.

    python benchmarks/accuracy.py            # both (a few minutes on 2 cores)
    python benchmarks/accuracy.py --only register
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import print_table


def _psnr(volume: np.ndarray, truth: np.ndarray) -> float:
    mse = float(np.mean((volume.astype(np.float64) - truth) ** 2))
    return float(10 * np.log10((truth.max() - truth.min()) ** 2 / mse))


def _onto_phantom(
    volume: np.ndarray, angles_deg: np.ndarray, true_shifts: np.ndarray
) -> np.ndarray:
    """Move a tomogram back by the specimen translation that the rigid gauge leaves in it."""
    t = np.deg2rad(angles_deg)
    basis = np.stack([np.cos(t), np.sin(t)], axis=1)
    (x0, z0), *_ = np.linalg.lstsq(basis, true_shifts[:, 1], rcond=None)
    y0 = true_shifts[:, 0].mean()
    return ndimage.shift(volume, (z0, y0, x0), order=3, mode="nearest")


def tomo_report() -> None:
    from emkit.sim import simulate_tilt_series
    from emkit.tomo import align_joint, prealign, shift_rmse

    sim = simulate_tilt_series(shape=(32, 128, 128), max_shift_px=10.0, snr=1.0, seed=0)
    angles, truth = sim.tilt_angles_deg, sim.shifts_px
    walk = prealign(sim.stack, angles, network_passes=0)
    pre = prealign(sim.stack, angles)
    joint = align_joint(sim.stack, angles, thickness=32, initial_shifts_px=pre.shifts_px)
    reference = align_joint(
        sim.stack, angles, thickness=32, initial_shifts_px=truth, update_shifts=False
    )
    rows = []
    for name, shifts in (
        ("pre-alignment, plain walk", walk.shifts_px),
        ("pre-alignment (default)", pre.shifts_px),
        ("joint alignment + TV, default schedule (60, 10, 10 iterations)", joint.shifts_px),
    ):
        rows.append(
            [
                name,
                f"{shift_rmse(shifts, truth, angles, gauge='rigid'):.3f}",
                f"{shift_rmse(shifts, truth):.3f}",
            ]
        )
    print("\n== tomo: acceptance series (seed 0)")
    print_table(["step", "shift RMSE px (rigid gauge)", "shift RMSE px (mean removed)"], rows)
    psnr_rows = [
        [
            name,
            f"{_psnr(vol, sim.volume):.2f}",
            f"{_psnr(_onto_phantom(vol, angles, truth), sim.volume):.2f}",
        ]
        for name, vol in (("joint", joint.volume), ("true shifts", reference.volume))
    ]
    print_table(["TV tomogram", "PSNR dB", "PSNR dB, moved back onto the phantom"], psnr_rows)

    still = simulate_tilt_series(
        shape=(24, 96, 96), tilt_step_deg=3.0, max_shift_px=0.0, snr=1.0, seed=5
    )
    pre0 = prealign(still.stack, still.tilt_angles_deg)
    joint0 = align_joint(
        still.stack, still.tilt_angles_deg, thickness=24, initial_shifts_px=pre0.shifts_px,
        iterations=8,
    )
    zero = np.zeros_like(still.shifts_px)
    print(
        "series without shifts: joint shift RMSE "
        f"{shift_rmse(joint0.shifts_px, zero, still.tilt_angles_deg, gauge='rigid'):.3f} px "
        f"(rigid gauge), largest |shift| {np.abs(joint0.shifts_px).max():.3f} px"
    )


def register_report() -> None:
    from emkit.register import endpoint_error, register_pair
    from emkit.sim.sections import section_texture, simulate_damaged_section

    rows = []
    for kind in ("fold", "crack"):
        for seed in (1, 2, 3):
            fixed = section_texture((512, 512), seed=seed)
            damaged = simulate_damaged_section(fixed, kind=kind, seed=seed)
            cells = [f"{kind} seed {seed}"]
            for method in ("expected-affine", "global-affine"):
                result = register_pair(
                    fixed, damaged.moving, defect_mask=damaged.defect_mask, method=method
                )
                scored = result.valid & damaged.true_valid
                epe = endpoint_error(
                    result.field,
                    damaged.true_field,
                    valid=scored,
                    defect_fixed=damaged.defect_mask_fixed,
                )
                cells += [
                    f"{epe['epe_mean_px']:.3f}",
                    f"{epe['epe_p95_px']:.3f}",
                    f"{epe['epe_near_defect_p95_px']:.3f}",
                ]
            rows.append(cells)
    print("\n== register: synthetic folds and cracks, 512 x 512, endpoint error (px)")
    print_table(
        ["pair", "EA mean", "EA p95", "EA p95 <50px", "global mean", "global p95",
         "global p95 <50px"],
        rows,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=("tomo", "register"))
    args = parser.parse_args()
    if args.only in (None, "register"):
        register_report()
    if args.only in (None, "tomo"):
        tomo_report()


if __name__ == "__main__":
    main()
