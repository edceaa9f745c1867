"""Benchmark: emkit tomography against ASTRA (CPU 2D FBP) and scikit-image, and joint alignment.

1. Weighted back-projection of a 61 x 512 x 512 tilt series (+-60 deg) into a 256 x 512 x 512
   (z, y, x) tomogram: emkit's ``reconstruct_wbp`` (one sparse product for all y slices)
   against ASTRA's CPU ``FBP`` (``linear`` projector) looped over the 512 y slices, and
   scikit-image's ``iradon`` per slice. The peers are timed on a subset of slices and
   scaled to 512 (printed); iradon reconstructs a 512 x 512 square per slice (it has no
   rectangular output), which is more work than the 256 x 512 slab.
2. Joint alignment of a simulated 61 x 256 x 256 series (shifts up to 10 px, SNR 1): the
   default schedule, binning 4, 2, 1 with 10 outer iterations each (30 in all).
3. Peak memory of each (RSS high-water mark of a fresh subprocess, minus its RSS before).

Same process, same seeded data; the machine may be shared, so quote the ratios.

    python benchmarks/tomo.py              # full sizes
    python benchmarks/tomo.py --quick      # 256-wide WBP, 128-wide joint alignment
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (
    current_rss_mib,
    emit_probe,
    median_time,
    peak_rss_mib,
    print_table,
    probe_in_subprocess,
    reset_peak_rss,
)


def _angles(n_tilts: int) -> np.ndarray:
    return np.linspace(-60.0, 60.0, n_tilts)


def _projections(n_tilts: int, ny: int, nx: int) -> np.ndarray:
    from scipy import ndimage

    rng = np.random.default_rng(0)
    data = rng.random((n_tilts, ny, nx), dtype=np.float32)
    return ndimage.uniform_filter(data, (1, 3, 3)).astype(np.float32)


# ---------------------------------------------------------------- WBP and its peers
def _emkit_wbp(proj: np.ndarray, angles: np.ndarray, nz: int) -> np.ndarray:
    from emkit.tomo import reconstruct_wbp

    return reconstruct_wbp(proj, angles, thickness=nz, window="ram-lak", device="cpu")


class _AstraFBP:
    """ASTRA's CPU FBP of one (z, x) slice at a time, with the 'linear' projector."""

    def __init__(self, angles: np.ndarray, n_det: int, nz: int, nx: int) -> None:
        import astra

        self.astra = astra
        vg = astra.create_vol_geom(nz, nx)
        # emkit's detector u = x cos t + z sin t matches ASTRA's parallel beam at -t.
        pg = astra.create_proj_geom("parallel", 1.0, n_det, np.deg2rad(-angles))
        self.proj_id = astra.create_projector("linear", pg, vg)
        self.sino_id = astra.data2d.create("-sino", pg, 0.0)
        self.rec_id = astra.data2d.create("-vol", vg, 0.0)
        cfg = astra.astra_dict("FBP")
        cfg["ProjectorId"] = self.proj_id
        cfg["ProjectionDataId"] = self.sino_id
        cfg["ReconstructionDataId"] = self.rec_id
        cfg["option"] = {"FilterType": "ram-lak"}
        self.alg_id = astra.algorithm.create(cfg)

    def slice(self, sinogram: np.ndarray) -> np.ndarray:
        self.astra.data2d.store(self.sino_id, sinogram)
        self.astra.algorithm.run(self.alg_id)
        return self.astra.data2d.get(self.rec_id)

    def run(self, proj: np.ndarray, rows: range) -> list[np.ndarray]:
        return [self.slice(np.ascontiguousarray(proj[:, y, :])) for y in rows]


def _skimage_iradon(proj: np.ndarray, angles: np.ndarray, rows: range) -> list[np.ndarray]:
    from skimage.transform import iradon

    return [
        iradon(proj[:, y, :].T.astype(np.float64), theta=angles, filter_name="ramp", circle=False)
        for y in rows
    ]


def _astra_available() -> bool:
    try:
        import astra  # noqa: F401
    except ImportError:
        return False
    return True


def bench_wbp(args: argparse.Namespace) -> dict[str, Any]:
    n, nz, n_tilts = args.size, args.size // 2, args.tilts
    angles = _angles(n_tilts)
    proj = _projections(n_tilts, n, n)
    print(f"\n== WBP: {n_tilts} x {n} x {n} projections -> {nz} x {n} x {n} tomogram")
    t0 = time.perf_counter()
    vol = _emkit_wbp(proj, angles, nz)  # first call builds and caches the system matrix
    first = time.perf_counter() - t0
    warm = median_time(lambda: _emkit_wbp(proj, angles, nz), repeats=args.repeats)
    rows_out: list[list[Any]] = [["emkit reconstruct_wbp (warm)", warm, 1.0, "all"]]
    rows_out.append(["emkit (first call, builds A)", first, first / warm, "all"])
    results: dict[str, Any] = {"emkit_warm_s": warm, "emkit_first_s": first}
    if _astra_available():
        k = min(args.astra_slices, n)
        astra_fbp = _AstraFBP(angles, n, nz, n)
        t0 = time.perf_counter()
        slices = astra_fbp.run(proj, range(k))
        astra_s = (time.perf_counter() - t0) * n / k
        rows_out.append([f"ASTRA CPU FBP loop ({k} slices x {n / k:g})", astra_s,
                         astra_s / warm, k])
        results["astra_s"] = astra_s
        # Same geometry, same filter: the tomograms should agree up to scale and filter
        # discretisation; report the correlation on the timed slices.
        ours = vol[:, :k, :].transpose(1, 0, 2).ravel()
        theirs = np.stack(slices).ravel()
        results["corr_emkit_astra"] = float(np.corrcoef(ours, theirs)[0, 1])
    else:
        print("astra not installed: pip install emkit[astra]")
    k = min(args.skimage_slices, n)
    t0 = time.perf_counter()
    _skimage_iradon(proj, angles, range(k))
    sk_s = (time.perf_counter() - t0) * n / k
    rows_out.append([f"skimage iradon ({k} slices x {n / k:g}, {n}^2 each)", sk_s, sk_s / warm, k])
    results["skimage_s"] = sk_s
    print_table(["method", "seconds", "x emkit", "slices timed"], rows_out)
    if "corr_emkit_astra" in results:
        print(f"correlation emkit vs ASTRA on the timed slices: {results['corr_emkit_astra']:.4f}")
    return results


# ---------------------------------------------------------------- joint alignment
def bench_joint(args: argparse.Namespace) -> dict[str, Any]:
    from emkit.sim import simulate_tilt_series
    from emkit.tomo import align_joint, prealign, shift_rmse

    n = args.joint_size
    nz = n // 4
    print(f"\n== joint alignment: {args.tilts} x {n} x {n} series, {nz}-thick tomogram, "
          "bin 4,2,1 x 10 iterations (30 in all), 10 primal-dual steps each")
    sim = simulate_tilt_series(shape=(nz, n, n), tilt_step_deg=120.0 / (args.tilts - 1),
                               max_shift_px=10.0, snr=1.0, seed=0)
    angles = sim.tilt_angles_deg
    t0 = time.perf_counter()
    pre = prealign(sim.stack, angles)
    pre_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    joint = align_joint(sim.stack, angles, thickness=nz, initial_shifts_px=pre.shifts_px,
                        iterations=10, binning_levels=(4, 2, 1), device="cpu")
    joint_s = time.perf_counter() - t0
    results = {
        "prealign_s": pre_s,
        "joint_s": joint_s,
        "iterations": len(joint.history),
        "prealign_rmse_px": shift_rmse(pre.shifts_px, sim.shifts_px, angles, gauge="rigid"),
        "joint_rmse_px": shift_rmse(joint.shifts_px, sim.shifts_px, angles, gauge="rigid"),
        "joint_rmse_offset_only_px": shift_rmse(joint.shifts_px, sim.shifts_px),
    }
    print_table(
        ["step", "seconds", "shift RMSE (px, rigid gauge)"],
        [["prealign", pre_s, results["prealign_rmse_px"]],
         [f"align_joint ({len(joint.history)} iterations)", joint_s, results["joint_rmse_px"]]],
    )
    print(f"target: < 120 s on 2 cores -> {'met' if joint_s < 120 else 'NOT met'}")
    return results


# ---------------------------------------------------------------- memory probes
def _probe(what: str, args: argparse.Namespace) -> None:
    n, nz = args.size, args.size // 2
    angles = _angles(args.tilts)
    if what == "joint":
        from emkit.sim import simulate_tilt_series
        from emkit.tomo import align_joint, prealign

        m = args.joint_size
        sim = simulate_tilt_series(shape=(m // 4, m, m), tilt_step_deg=120.0 / (args.tilts - 1),
                                   max_shift_px=10.0, snr=1.0, seed=0)
        pre = prealign(sim.stack, sim.tilt_angles_deg)
        before = current_rss_mib()
        reset_peak_rss()
        align_joint(sim.stack, sim.tilt_angles_deg, thickness=m // 4,
                    initial_shifts_px=pre.shifts_px, iterations=10, device="cpu")
    else:
        proj = _projections(args.tilts, n, n)
        before = current_rss_mib()
        reset_peak_rss()
        if what == "wbp":
            _emkit_wbp(proj, angles, nz)
        elif what == "astra":
            _AstraFBP(angles, n, nz, n).run(proj, range(min(args.astra_slices, n)))
    emit_probe({"baseline_mib": before, "peak_mib": peak_rss_mib()})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=512, help="WBP image side (512)")
    parser.add_argument("--joint-size", type=int, default=256, help="joint image side (256)")
    parser.add_argument("--tilts", type=int, default=61)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--astra-slices", type=int, default=128)
    parser.add_argument("--skimage-slices", type=int, default=8)
    parser.add_argument("--quick", action="store_true", help="256 WBP, 128 joint")
    parser.add_argument("--no-memory", action="store_true", help="skip the memory probes")
    parser.add_argument("--skip-joint", action="store_true")
    parser.add_argument("--skip-wbp", action="store_true")
    parser.add_argument("--probe", choices=("wbp", "astra", "joint"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.size, args.joint_size, args.repeats = 256, 128, 1
    if args.probe:
        _probe(args.probe, args)
        return 0
    import torch

    print(f"emkit tomo benchmark: {torch.get_num_threads()} torch threads")
    wbp = {} if args.skip_wbp else bench_wbp(args)
    if "astra_s" in wbp:
        ratio = wbp["astra_s"] / wbp["emkit_warm_s"]
        print(f"WBP speed-up over the ASTRA loop: {ratio:.1f}x "
              f"(target >= 5x: {'met' if ratio >= 5 else 'NOT met'})")
    if not args.skip_joint:
        bench_joint(args)
    if not args.no_memory:
        print("\n== peak memory (fresh process per task, MiB above its baseline)")
        script = str(Path(__file__).resolve())
        common = ["--size", str(args.size), "--joint-size", str(args.joint_size),
                  "--tilts", str(args.tilts), "--astra-slices", str(args.astra_slices)]
        rows = []
        tasks = [] if args.skip_wbp else ["wbp"] + (["astra"] if _astra_available() else [])
        tasks += [] if args.skip_joint else ["joint"]
        for task in tasks:
            r = probe_in_subprocess([script, "--probe", task, *common])
            if "error" in r:
                rows.append([task, "error: " + r["error"]])
            else:
                rows.append([task, r["peak_mib"] - r["baseline_mib"]])
        print_table(["task", "peak MiB"], rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
