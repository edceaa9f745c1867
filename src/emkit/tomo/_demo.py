"""Synthetic tilt series on disk: the ``emkit sim tiltseries`` writer and the tomo demo."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from emkit.tomo._files import MemoryCheck, no_memory_check


@dataclass
class SimulatedSeriesFiles:
    """The files ``write_simulated_tilt_series`` wrote into ``output_dir``."""

    output_dir: Path
    name: str
    stack_shape: tuple[int, ...]
    info: dict[str, Any]
    noise_sigma: float | None


def check_simulation_request(
    *,
    shape: tuple[int, int, int] = (32, 128, 128),
    tilt_range_deg: tuple[float, float] = (-60.0, 60.0),
    tilt_step_deg: float = 2.0,
    max_shift_px: float = 10.0,
    tilt_axis_angle_deg: float = 0.0,
    require_memory: MemoryCheck = no_memory_check,
    **other: Any,
) -> None:
    """Tilt range and step that give a series, in memory that is there; before any work.

    Takes the keyword arguments of :func:`emkit.sim.simulate_tilt_series` (with its
    defaults); those that do not shape the series (``other``) are not checked.
    """
    from emkit.errors import InputError

    first, last = tilt_range_deg
    if not first < last:
        raise InputError(f"--tilt-range {first:g} {last:g}: FIRST must be less than LAST")
    n = int((last - first) / tilt_step_deg + 1e-6) + 1
    if n < 3:
        raise InputError(
            f"--tilt-range {first:g} {last:g} with --tilt-step {tilt_step_deg:g} gives {n} "
            "tilts; give at least 3"
        )
    nz, ny, nx = shape
    if min(ny, nx) < 8:
        raise InputError(
            f"--shape {nz} {ny} {nx}: images of {ny}x{nx} px are too small to align or "
            "reconstruct; give NY and NX of at least 8"
        )
    # As simulate_tilt_series: phantom and detector sampled twice finer, a detector margin
    # for the shifts; measured ~48 bytes per (tilt x z x x) of the fine projector matrix.
    margin = int(np.ceil(max_shift_px + 0.75 * abs(tilt_axis_angle_deg) / 45 * max(ny, nx))) + 2
    nd = 2 * (nx + 2 * margin)
    need = 48 * n * 2 * nz * nd + 4 * (4 * 8 * nz * ny * nx + 3 * n * 2 * ny * nd)
    require_memory(
        need,
        f"simulating {n} tilts of a {nz} x {ny} x {nx} phantom",
        "give a smaller --shape or a larger --tilt-step",
    )


def write_simulated_tilt_series(
    output_dir: Path,
    *,
    name: str = "tiltseries",
    require_memory: MemoryCheck = no_memory_check,
    **simulation: Any,
) -> SimulatedSeriesFiles:
    """Simulate a misaligned series; write <name>.mrc, .tlt, _true.xf and _volume.mrc.

    ``simulation`` holds the keyword arguments of :func:`emkit.sim.simulate_tilt_series`
    (phantom, shape, tilt_range_deg, tilt_step_deg, max_shift_px, snr, noise, defocus_um,
    pixel_size_A, tilt_axis_angle_deg, seed); they are checked before any work.
    """
    from emkit.io import make_output_folder, write_tlt, write_volume, write_xf
    from emkit.sim import simulate_tilt_series
    from emkit.tomo._xf import xf_from_alignment

    check_simulation_request(**simulation, require_memory=require_memory)
    out: Path = make_output_folder(output_dir)
    sim = simulate_tilt_series(**simulation)
    write_volume(out / f"{name}.mrc", sim.stack, voxel_size=sim.pixel_size_A, stack=True)
    write_tlt(out / f"{name}.tlt", sim.tilt_angles_deg)
    write_xf(out / f"{name}_true.xf", xf_from_alignment(sim.shifts_px, sim.tilt_axis_angle_deg))
    write_volume(out / f"{name}_volume.mrc", sim.volume, voxel_size=sim.pixel_size_A)
    return SimulatedSeriesFiles(out, name, sim.stack.shape, sim.info, sim.noise_sigma)


# --------------------------------------------------------------------------- demo


@dataclass
class TomoDemo:
    """The demo's results: numbers to report and the arrays its figures are drawn from."""

    output_dir: Path
    tilt_angles_deg: np.ndarray
    true_shifts_px: np.ndarray
    shifts_px: dict[str, np.ndarray]
    volumes: dict[str, np.ndarray]
    numbers: dict[str, Any]


def psnr_db(volume: np.ndarray, truth: np.ndarray) -> float:
    """Peak signal-to-noise ratio (dB) of ``volume`` against ``truth``, peak = its range."""
    mse = float(np.mean((volume.astype(np.float64) - truth) ** 2))
    span = float(truth.max() - truth.min())
    return float(10 * np.log10(span**2 / mse)) if mse > 0 else float("inf")


def run_tomo_demo(out_dir: Path, *, seed: int, progress: bool) -> TomoDemo:
    """Simulate a misaligned series, pre-align, joint-align, reconstruct; write the files."""
    from emkit.io import make_output_folder, write_tlt, write_volume, write_xf
    from emkit.sim import simulate_tilt_series
    from emkit.tomo._joint import align_joint
    from emkit.tomo._prealign import prealign
    from emkit.tomo._reconstruct import reconstruct
    from emkit.tomo._transform import shift_rmse
    from emkit.tomo._xf import xf_from_alignment

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
    numbers = {
        "prealign_shift_rmse_px": round(shift_rmse(pre.shifts_px, truth, angles, gauge="rigid"), 3),
        "joint_shift_rmse_px": round(shift_rmse(joint.shifts_px, truth, angles, gauge="rigid"), 3),
        "joint_shift_rmse_offset_only_px": round(shift_rmse(joint.shifts_px, truth), 3),
        "psnr_unaligned_wbp_db": round(psnr_db(unaligned, sim.volume), 2),
        "psnr_joint_db": round(psnr_db(joint.volume, sim.volume), 2),
        "psnr_true_shifts_db": round(psnr_db(reference.volume, sim.volume), 2),
    }
    volumes = {"phantom": sim.volume, "unaligned (WBP)": unaligned,
               "joint (TV)": joint.volume, "true shifts (TV)": reference.volume}
    shifts = {"prealign": pre.shifts_px, "joint": joint.shifts_px}
    return TomoDemo(out_dir, angles, truth, shifts, volumes, numbers)
