"""Benchmark: emkit tomography against ASTRA's CPU slice loop, streaming, joint alignment.

1. Weighted back-projection of a 61 x 512 x 512 tilt series (+-60 deg) into a 256 x 512 x 512
   (z, y, x) tomogram: emkit's ``reconstruct_wbp`` (y-slabs of the sparse product on a thread
   per core) against ASTRA's CPU ``FBP`` (``linear`` projector) looped over the 512 y slices,
   and scikit-image's ``iradon`` per slice. The peers are timed on a subset of slices and
   scaled to 512 (printed); iradon reconstructs a 512 x 512 square per slice (it has no
   rectangular output), which is more work than the 256 x 512 slab.
2. Forward projection of a 256^3 volume at 61 tilts: emkit's ``SingleAxisProjector.forward``
   against ASTRA's CPU ``FP`` (``linear``) looped over the 256 y slices.
3. Streamed WBP into OME-Zarr (``emkit tomo reconstruct ... --output x.ome.zarr``): a
   61 x 2048 x 2048 int16 series on disk, shifted by up to 10 px, binned by 2 into a
   256 x 1024 x 1024 tomogram, on 1 and on 2 worker processes of one thread each; peak
   memory of the whole process tree (workers included, sampled every 50 ms). ASTRA's FBP
   loop over the same binned slices is the peer (timed on a subset; it gets the binned,
   aligned images for free).
4. Joint alignment of a simulated 61 x 256 x 256 series (shifts up to 10 px, SNR 1): the
   default schedule, binning 4, 2, 1 with 60, 10 and 10 outer iterations; and of a
   61 x 1024 x 1024 series (shifts up to 20 px) to a bin-2 tomogram, binning 8, 4, 2
   (issue 11's target: under 5 minutes with the pre-alignment).
5. Peak memory of each (RSS high-water mark of a fresh subprocess, minus its RSS before).

Same process, same seeded data; the machine may be shared, so quote the ratios (and run it
twice: the spread of the ratios between runs is the figure's uncertainty).

    python benchmarks/tomo.py              # full sizes
    python benchmarks/tomo.py --quick      # 256-wide WBP, 128^3 forward, 512^2 stream
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


# ---------------------------------------------------------------- forward projection
def bench_forward(args: argparse.Namespace) -> dict[str, Any]:
    from projector import _Astra, _Emkit, _volume

    n = args.forward_size
    angles = _angles(args.tilts)
    vol = _volume(n)
    print(f"\n== forward projection: {n}^3 volume, {args.tilts} tilts")
    ours = _Emkit(n, angles)
    sino = ours.forward(vol)
    warm = median_time(lambda: ours.forward(vol), repeats=args.repeats)
    rows: list[list[Any]] = [["emkit SingleAxisProjector.forward", warm, 1.0]]
    results: dict[str, Any] = {"emkit_forward_s": warm, "build_s": ours.build_s}
    if _astra_available():
        astra_fp = _Astra(n, angles)
        astra_s = median_time(lambda: astra_fp.forward(vol), repeats=1)
        theirs = astra_fp.forward(vol)
        rows.append(["ASTRA CPU FP loop (all slices)", astra_s, astra_s / warm])
        results["astra_forward_s"] = astra_s
        results["rel_diff"] = float(np.linalg.norm(sino - theirs) / np.linalg.norm(theirs))
    print_table(["method", "seconds", "x emkit"], rows)
    if "rel_diff" in results:
        print(f"emkit vs ASTRA sinograms: relative difference {results['rel_diff']:.1e}")
    return results


# ---------------------------------------------------------------- streamed WBP
def _stream_series(folder: Path, n_tilts: int, size: int) -> tuple[Path, np.ndarray]:
    """A seeded int16 series on disk and random (fractional) aligning shifts up to 10 px."""
    import mrcfile

    path = folder / "series.mrc"
    rng = np.random.default_rng(1)
    # written image by image into a mapped file: a 4096^2 series (2 GiB) is never in memory
    with mrcfile.new_mmap(str(path), shape=(n_tilts, size, size), mrc_mode=1) as mrc:
        mrc.set_image_stack()
        mrc.voxel_size = 2.0
        for i in range(n_tilts):
            mrc.data[i] = (rng.random((size, size), dtype=np.float32) * 400 + 800).astype(np.int16)
    return path, rng.uniform(-10, 10, (n_tilts, 2))


class _TreeMemory:
    """Peak resident memory of this process and all its children, sampled every 50 ms."""

    def __enter__(self) -> _TreeMemory:
        import threading

        import psutil

        self.peak_mib = 0.0
        self._stop = threading.Event()
        me = psutil.Process()

        def sample() -> None:
            while not self._stop.is_set():
                total = 0
                for proc in [me, *me.children(recursive=True)]:
                    try:
                        total += proc.memory_info().rss
                    except psutil.Error:
                        pass
                self.peak_mib = max(self.peak_mib, total / 2**20)
                self._stop.wait(0.05)

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _stream_once(path: Path, shifts: np.ndarray, args: argparse.Namespace, workers: int,
                 out: Path) -> dict[str, Any]:
    """One streamed WBP on a fresh local cluster of ``workers`` one-thread processes (the
    cluster's start is timed apart; each worker's first task builds its matrix)."""
    from emkit.io import read_volume
    from emkit.parallel import dask_client
    from emkit.tomo import StreamOptions
    from emkit.tomo._stream import make_plan, reconstruct_to_zarr

    shape = read_volume(path, mmap=True).data.shape
    with _TreeMemory() as memory:
        t0 = time.perf_counter()
        with dask_client(None, n_workers=workers) as client:
            start_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            plan = make_plan(path, shape, _angles(args.tilts), method="wbp",
                             thickness=args.stream_size // 4, binning=2, shifts_px=shifts,
                             window="ram-lak")
            prepass = time.perf_counter() - t0
            result = reconstruct_to_zarr(
                plan, out, rows=(0, shape[1] // 2), voxel_size_A=4.0,
                options=StreamOptions(scheduler=client, threads_per_worker=1),
            )
            total = time.perf_counter() - t0
    return {"total_s": total, "prepass_s": prepass, "slabs_s": result.reconstruct_s,
            "write_s": result.write_s, "slab_task_s": float(np.median(result.slab_seconds)),
            "peak_mib": memory.peak_mib, "n_slabs": result.n_slabs, "start_s": start_s}


def bench_stream(args: argparse.Namespace) -> dict[str, Any]:
    import shutil
    import tempfile

    n, size = args.tilts, args.stream_size
    nz, nb = size // 8, size // 2
    print(f"\n== streamed WBP: {n} x {size} x {size} int16 on disk, shifts up to 10 px, "
          f"bin 2 -> {nz} x {nb} x {nb} OME-Zarr, slabs of 32 rows, 1 thread per worker")
    folder = Path(tempfile.mkdtemp(prefix="emkit-bench-stream-"))
    try:
        path, shifts = _stream_series(folder, n, size)
        runs = {w: _stream_once(path, shifts, args, w, folder / f"rec{w}.ome.zarr")
                for w in (1, 2)}
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    rows: list[list[Any]] = []
    for w, r in runs.items():
        rows.append([f"emkit streamed, {w} worker(s)", r["total_s"], r["prepass_s"],
                     r["slabs_s"], r["write_s"], r["slab_task_s"], r["start_s"],
                     r["peak_mib"]])
    results: dict[str, Any] = {"runs": runs, "speedup_2_workers":
                               runs[1]["slabs_s"] / runs[2]["slabs_s"]}
    if _astra_available():
        k = min(args.astra_stream_slices, nb)
        proj = _projections(n, k, nb)
        astra_fbp = _AstraFBP(_angles(n), nb, nz, nb)
        t0 = time.perf_counter()
        astra_fbp.run(proj, range(k))
        astra_s = (time.perf_counter() - t0) * nb / k
        rows.append([f"ASTRA CPU FBP loop, binned slices ({k} timed x {nb / k:g})", astra_s,
                     "-", "-", "-", "-", "-", "-"])
        results["astra_s"] = astra_s
    print_table(["method", "total s", "pre-pass s", "slabs s", "OME-Zarr write s",
                 "s per slab task", "cluster start s", "peak MiB (tree)"], rows)
    print("total = pre-pass + slabs + OME-Zarr write (the cluster's start apart); peak = "
          "resident memory of this process, the scheduler and the workers together")
    print(f"2 workers vs 1 on the slabs: {results['speedup_2_workers']:.2f}x")
    if "astra_s" in results:
        print(f"ASTRA loop / emkit streamed total: 1 worker "
              f"{results['astra_s'] / runs[1]['total_s']:.1f}x, 2 workers "
              f"{results['astra_s'] / runs[2]['total_s']:.1f}x")
    return results


# ---------------------------------------------------------------- joint alignment
def _joint_case(
    args: argparse.Namespace, n: int, *, levels: tuple[int, ...], max_shift_px: float,
    seed: int, oversample: int, prealign_binning: int,
) -> dict[str, Any]:
    """Simulate, pre-align and jointly align one series (the default schedule: 60 iterations
    at the first level, 10 at the others); print and return the seconds and shift errors."""
    from emkit.sim import simulate_tilt_series
    from emkit.tomo import align_joint, prealign, shift_rmse

    nz = n // 4
    sim = simulate_tilt_series(shape=(nz, n, n), tilt_step_deg=120.0 / (args.tilts - 1),
                               max_shift_px=max_shift_px, snr=1.0, seed=seed,
                               oversample=oversample)
    angles = sim.tilt_angles_deg
    t0 = time.perf_counter()
    pre = prealign(sim.stack, angles, binning=prealign_binning)
    pre_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    joint = align_joint(sim.stack, angles, thickness=nz, initial_shifts_px=pre.shifts_px,
                        binning_levels=levels, device="cpu")
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
        [[f"prealign (bin {prealign_binning})", pre_s, results["prealign_rmse_px"]],
         [f"align_joint ({len(joint.history)} iterations)", joint_s, results["joint_rmse_px"]]],
    )
    return results


def bench_joint(args: argparse.Namespace) -> dict[str, Any]:
    n = args.joint_size
    print(f"\n== joint alignment: {args.tilts} x {n} x {n} series, {n // 4}-thick tomogram, "
          "bin 4,2,1 x 60,10,10 iterations, 10 primal-dual steps each")
    results = _joint_case(args, n, levels=(4, 2, 1), max_shift_px=10.0, seed=0, oversample=2,
                          prealign_binning=1)
    print(f"target: < 60 s on 2 cores -> {'met' if results['joint_s'] < 60 else 'NOT met'}")
    return results


def bench_joint_large(args: argparse.Namespace) -> dict[str, Any]:
    """Issue 11: 61 x 1024^2 to a bin-2 tomogram in under 5 minutes (levels 8, 4, 2)."""
    n = args.joint_large_size
    print(f"\n== joint alignment to bin 2: {args.tilts} x {n} x {n} series, {n // 4}-thick, "
          "bin 8,4,2 x 60,10,10 iterations, 10 primal-dual steps each (phantom not oversampled)")
    results = _joint_case(args, n, levels=(8, 4, 2), max_shift_px=20.0, seed=1, oversample=1,
                          prealign_binning=2)
    total = results["prealign_s"] + results["joint_s"]
    print(f"target: < 300 s on 2 cores -> {total:.0f} s, {'met' if total < 300 else 'NOT met'}")
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
        elif what in ("forward", "astra-forward"):
            from projector import _Astra, _Emkit, _volume

            del proj
            vol = _volume(args.forward_size)
            before = current_rss_mib()
            reset_peak_rss()
            maker = _Emkit if what == "forward" else _Astra
            maker(args.forward_size, angles).forward(vol)
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
    parser.add_argument("--joint-large-size", type=int, default=1024,
                        help="image side of the joint alignment to bin 2 (1024)")
    parser.add_argument("--skip-joint-large", action="store_true")
    parser.add_argument("--skip-wbp", action="store_true")
    parser.add_argument("--forward-size", type=int, default=256, help="forward volume (256)")
    parser.add_argument("--stream-size", type=int, default=2048, help="streamed side (2048)")
    parser.add_argument("--astra-stream-slices", type=int, default=32)
    parser.add_argument("--skip-forward", action="store_true")
    parser.add_argument("--skip-stream", action="store_true")
    parser.add_argument("--probe", choices=("wbp", "astra", "forward", "astra-forward", "joint"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.size, args.joint_size, args.repeats = 256, 128, 1
        args.joint_large_size = 256
        args.forward_size, args.stream_size = 128, 512
    if args.probe:
        _probe(args.probe, args)
        return 0
    import torch

    print(f"emkit tomo benchmark: {torch.get_num_threads()} torch threads")
    wbp = {} if args.skip_wbp else bench_wbp(args)
    if "astra_s" in wbp:
        ratio = wbp["astra_s"] / wbp["emkit_warm_s"]
        print(f"WBP speed-up over the ASTRA loop: {ratio:.1f}x "
              f"(target >= 10x: {'met' if ratio >= 10 else 'NOT met'})")
    fwd = {} if args.skip_forward else bench_forward(args)
    if "astra_forward_s" in fwd:
        ratio = fwd["astra_forward_s"] / fwd["emkit_forward_s"]
        print(f"forward projection speed-up over the ASTRA loop: {ratio:.1f}x "
              f"(target >= 25x: {'met' if ratio >= 25 else 'NOT met'})")
    if not args.skip_stream:
        bench_stream(args)
    if not args.skip_joint:
        bench_joint(args)
    if not args.skip_joint_large:
        bench_joint_large(args)
    if not args.no_memory:
        print("\n== peak memory (fresh process per task, MiB above its baseline)")
        script = str(Path(__file__).resolve())
        common = ["--size", str(args.size), "--joint-size", str(args.joint_size),
                  "--tilts", str(args.tilts), "--astra-slices", str(args.astra_slices),
                  "--forward-size", str(args.forward_size)]
        rows = []
        tasks = [] if args.skip_wbp else ["wbp"] + (["astra"] if _astra_available() else [])
        if not args.skip_forward:
            tasks += ["forward"] + (["astra-forward"] if _astra_available() else [])
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
