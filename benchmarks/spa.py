"""spa benchmark: orientation recovery, refinement and maps on 5j0n and other structures.

Measured (fixed seeds, one torch thread unless --threads):

1. exact distances -> quaternion fit: median / mean error after the O(4) alignment
   (target: median < 1 deg), on 5j0n with --n projections (5,000);
2. the whole orientation path with exact distances (fit, image-side frame, --refine rounds of
   projection matching), noise-free and at SNR 1/8: errors after the global map rotation
   (targets < 3 deg and < 10 deg) and the half-map FSC 0.5 / 0.143 resolutions beside the
   paper's 12.2 / 7.6 Å (Banjac et al. 2021, noise-free);
3. the whole path on 2,000 particles of 64^2 at SNR 1/8 with the shipped learned distances
   (exact ones, labelled so, while no model is shipped): seconds (target < 20 min on 2 cores)
   and errors;
4. learned distances alone on 5j0n (--learned-5j0n; the paper's 9.1 / 24.0 deg), then refined;
   the spectral start (no distances: the common-view graph, --spectral-5j0n) on the same
   particles, then the frame and refinement;
5. the same exact-distance path on other structures (../shared/data/structures);
6. ASPIRE common lines (optional peer, ``pip install aspire``; the reason is printed when
   it does not import) on the same stack of 500 particles of 5j0n, 64^2, SNR 1/8, beside
   emkit (learned distances when the shipped model loads; the spectral start; exact ones as
   a reference).

Usage::

    OMP_NUM_THREADS=1 python benchmarks/spa.py              # everything
    python benchmarks/spa.py --n 2000 --skip-structures     # quicker
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
MAP_5J0N = DATA / "maps" / "5j0n.mrc"
PAPER = {"mean_error_noise_free_deg": 9.1, "mean_error_noisy_deg": 24.0,
         "fsc_05_A": 12.2, "fsc_0143_A": 7.6}


def _particles(volume: np.ndarray, n: int, pixel_A: float, snr: float | None, seed: int) -> Any:
    from emkit.sim.particles import simulate_particles
    from emkit.spa._files import ParticleStack
    from emkit.spa._fourier import Optics

    sim = simulate_particles(volume, n, pixel_size_A=pixel_A, seed=seed, snr=snr,
                             max_shift_px=2.0)
    stack = ParticleStack(images=sim.images, pixel_size_A=pixel_A, image_names=[],
                          euler_deg=sim.euler_deg, shifts_px=sim.shifts_px,
                          optics=Optics(pixel_A), path=Path("sim"))
    return sim, stack


def _path(stack: Any, truth: np.ndarray, distance_fn: Any, refine: int, seed: int) -> dict:
    from emkit.spa._commands import orient_particles
    from emkit.spa._reconstruct import reconstruct_half_maps
    from emkit.spa._score import score_distance_fit, score_orientations

    t0 = time.perf_counter()
    rot, shifts, info = orient_particles(stack, distance_fn, refine=refine, seed=seed,
                                         progress=True)
    rec = reconstruct_half_maps(stack.images, rot, shifts_px=shifts,
                                pixel_size_A=stack.pixel_size_A, seed=seed)
    seconds = time.perf_counter() - t0
    fit = score_distance_fit(info["fit"].quaternions, truth)
    before = score_orientations(info["frame"].rotations, truth)
    after = score_orientations(rot, truth)
    return {"fit_o4": fit.summary(), "before_refinement": before.summary(),
            "refined": after.summary(), "fsc_05_A": round(rec.resolution_05_A, 2),
            "fsc_0143_A": round(rec.resolution_0143_A, 2), "seconds": round(seconds, 1),
            "step_seconds": info["seconds"]}


def bench_5j0n(n: int, refine: int, box: int) -> dict:
    from emkit.io import read_volume
    from emkit.sim.particles import centre_in_box
    from emkit.spa import exact_distance_fn

    vol = read_volume(MAP_5J0N)
    pixel = float(vol.pixel_size or 3.667)
    volume = centre_in_box(vol.data, box)
    out: dict[str, Any] = {"map": "5j0n", "n": n, "box": box, "pixel_A": pixel,
                           "paper": PAPER}
    for label, snr in (("noise_free", None), ("snr_1_8", 0.125)):
        sim, stack = _particles(volume, n, pixel, snr, seed=1)
        out[label] = _path(stack, sim.rotations, exact_distance_fn(sim.rotations), refine, 0)
        print(label, json.dumps(out[label]), flush=True)
    return out


def bench_learned(refine: int) -> dict:
    """The whole path on 2,000 particles of 64^2 at SNR 1/8, timed.

    With the shipped learned distances when the model loads; otherwise with exact distances
    (labelled so), which times everything but the network.
    """
    from emkit.io import read_volume
    from emkit.sim.particles import centre_in_box
    from emkit.spa import exact_distance_fn

    vol = read_volume(MAP_5J0N)
    pixel = float(vol.pixel_size or 3.667)
    sim, stack = _particles(centre_in_box(vol.data, 64), 2000, pixel, 0.125, seed=2)
    t0 = time.perf_counter()
    try:
        from emkit.spa._siamese import learned_distance_fn, load_distance_model

        distance_fn = learned_distance_fn(load_distance_model(), stack.images)
        label = "learned (shipped model)"
    except Exception as error:  # no shipped model yet, or it does not load
        distance_fn = exact_distance_fn(sim.rotations)
        label = f"exact (learned unavailable: {type(error).__name__}: {error})"
    result = _path(stack, sim.rotations, distance_fn, refine, 0)
    result["distances"] = label
    result["seconds_whole_path"] = round(time.perf_counter() - t0, 1)
    print("whole path 2000 x 64^2", json.dumps(result), flush=True)
    return result


def bench_learned_5j0n(n: int, refine: int, box: int, snr: float | None) -> dict:
    """Learned distances alone on 5j0n (the paper's 9.1 deg), then refined; printed per step."""
    from emkit.io import read_volume
    from emkit.sim.particles import centre_in_box
    from emkit.spa import refine_orientations
    from emkit.spa._commands import orient_particles
    from emkit.spa._score import score_distance_fit, score_orientations
    from emkit.spa._siamese import learned_distance_fn, load_distance_model

    vol = read_volume(MAP_5J0N)
    pixel = float(vol.pixel_size or 3.667)
    sim, stack = _particles(centre_in_box(vol.data, box), n, pixel, snr, seed=1)
    t0 = time.perf_counter()
    distance_fn = learned_distance_fn(load_distance_model(), stack.images)
    rot, _, info = orient_particles(stack, distance_fn, refine=0, seed=0, progress=True)
    out: dict[str, Any] = {
        "n": n, "box": box, "snr": snr,
        "learned_fit_o4": score_distance_fit(info["fit"].quaternions, sim.rotations).summary(),
        "after_frame": score_orientations(rot, sim.rotations).summary(),
        "seconds_fit_and_frame": round(time.perf_counter() - t0, 1)}
    print("learned 5j0n", json.dumps(out), flush=True)
    ref = refine_orientations(stack.images, rot, pixel_size_A=pixel, iterations=refine,
                              progress=True)
    out["refined"] = score_orientations(ref.rotations, sim.rotations).summary()
    out["fsc_05_A"] = round(ref.reconstruction.resolution_05_A, 2)
    out["fsc_0143_A"] = round(ref.reconstruction.resolution_0143_A, 2)
    out["seconds"] = round(time.perf_counter() - t0, 1)
    print("learned 5j0n refined", json.dumps(out), flush=True)
    return out


def bench_spectral_5j0n(n: int, refine: int, box: int, snr: float | None) -> dict:
    """The spectral start (no distances) on 5j0n, then the frame and refinement."""
    from emkit.io import read_volume
    from emkit.sim.particles import centre_in_box

    vol = read_volume(MAP_5J0N)
    pixel = float(vol.pixel_size or 3.667)
    sim, stack = _particles(centre_in_box(vol.data, box), n, pixel, snr, seed=1)
    out = {"n": n, "box": box, "snr": snr, **_path(stack, sim.rotations, None, refine, 0)}
    print("spectral 5j0n", json.dumps(out), flush=True)
    return out


def bench_structures(n: int, refine: int) -> dict:
    from emkit.sim import density_from_pdb
    from emkit.sim.particles import centre_in_box
    from emkit.spa import exact_distance_fn

    out = {}
    for name, voxel in (("1ake.pdb", 1.2), ("3enl.pdb", 1.5), ("6flr.pdb", 2.0)):
        path = DATA / "structures" / name
        if not path.is_file():
            continue
        volume = centre_in_box(density_from_pdb(path, voxel).data, 64)
        sim, stack = _particles(volume, n, voxel, None, seed=3)
        out[name] = _path(stack, sim.rotations, exact_distance_fn(sim.rotations), refine, 0)
        print(name, json.dumps(out[name]), flush=True)
    return out


def _spectral_row(stack: Any, truth: np.ndarray, refine: int) -> dict:
    """The spectral start (no distances) and refinement on a stack, or why it stopped."""
    from emkit.errors import InputError

    try:
        return _path(stack, truth, None, refine, 0)
    except InputError as error:  # e.g. a graph in pieces: too few images for their views
        return {"failed": str(error)}


def _aspire_rotations(images: np.ndarray, pixel_A: float) -> tuple[np.ndarray, float]:
    """ASPIRE's common-lines estimate (CLSyncVoting) as RELION matrices, and its seconds.

    ASPIRE's matrices take image coordinates to the volume's (the transpose of RELION's);
    they are transposed here (checked on noise-free data: 1.2 deg transposed, 84 deg not).
    """
    from aspire.abinitio import CLSyncVoting
    from aspire.image import Image
    from aspire.source import ArrayImageSource

    t0 = time.perf_counter()
    src = ArrayImageSource(Image(images.astype(np.float64)), pixel_size=pixel_A)
    estimator = CLSyncVoting(src, n_theta=360)
    estimator.estimate_rotations()
    rotations = np.transpose(np.asarray(estimator.rotations), (0, 2, 1))
    return rotations, time.perf_counter() - t0


def bench_aspire(n: int, refine: int) -> dict:
    """ASPIRE common lines against emkit on the same stack: 5j0n, L = 64, SNR 1/8, n = 500.

    ASPIRE writes log files into the current folder when imported, so it runs in a
    temporary one.
    """
    import os
    import tempfile

    here = os.getcwd()
    with tempfile.TemporaryDirectory(prefix="emkit-aspire-") as scratch:
        os.chdir(scratch)
        try:
            return _bench_aspire(n, refine)
        finally:
            os.chdir(here)


def _bench_aspire(n: int, refine: int) -> dict:
    try:
        import aspire
    except Exception as error:
        return {"skipped": f"ASPIRE not importable ({type(error).__name__}: {error}); "
                           "pip install aspire to compare with common lines"}
    from emkit.io import read_volume
    from emkit.sim.particles import centre_in_box
    from emkit.spa import exact_distance_fn
    from emkit.spa._score import score_orientations

    vol = read_volume(MAP_5J0N)
    pixel = float(vol.pixel_size or 3.667)
    sim, stack = _particles(centre_in_box(vol.data, 64), n, pixel, 0.125, seed=4)
    rotations, seconds = _aspire_rotations(sim.images, pixel)
    out: dict[str, Any] = {"aspire_version": aspire.__version__, "n": n, "box": 64, "snr": 0.125,
                           "aspire_common_lines": {
                               **score_orientations(rotations, sim.rotations).summary(),
                               "seconds": round(seconds, 1)}}
    print("aspire", json.dumps(out["aspire_common_lines"]), flush=True)
    try:
        from emkit.spa._siamese import learned_distance_fn, load_distance_model

        distance_fn = learned_distance_fn(load_distance_model(), sim.images)
        out["emkit_learned"] = _path(stack, sim.rotations, distance_fn, refine, 0)
    except Exception as error:  # no shipped model yet
        out["emkit_learned"] = {"skipped": f"{type(error).__name__}: {error}"}
    out["emkit_spectral"] = _spectral_row(stack, sim.rotations, refine)
    out["emkit_exact_distances_reference"] = _path(stack, sim.rotations,
                                                   exact_distance_fn(sim.rotations), refine, 0)
    print("aspire-vs-emkit", json.dumps(out), flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--box", type=int, default=64)
    parser.add_argument("--refine", type=int, default=6)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--skip-structures", action="store_true")
    parser.add_argument("--skip-learned", action="store_true")
    parser.add_argument("--skip-5j0n", action="store_true")
    parser.add_argument("--skip-aspire", action="store_true")
    parser.add_argument("--learned-5j0n", choices=("none", "noise-free", "snr-1-8", "both"),
                        default="both", help="learned distances on 5j0n with --n projections")
    parser.add_argument("--spectral-5j0n", choices=("none", "noise-free", "snr-1-8", "both"),
                        default="noise-free",
                        help="the spectral start on 5j0n, --n projections (noise-free)")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    if not MAP_5J0N.is_file():
        print(f"skipped: {MAP_5J0N} is missing (shared reference data)")
        return
    results: dict[str, Any] = {}
    if not args.skip_5j0n:
        results["5j0n"] = bench_5j0n(args.n, args.refine, args.box)
    for label, snr in (("noise-free", None), ("snr-1-8", 0.125)):
        if args.learned_5j0n in (label, "both"):
            results[f"learned_5j0n_{label}"] = bench_learned_5j0n(args.n, args.refine, args.box,
                                                                 snr)
    for label, snr in (("noise-free", None), ("snr-1-8", 0.125)):
        if args.spectral_5j0n in (label, "both"):
            results[f"spectral_5j0n_{label}"] = bench_spectral_5j0n(args.n, args.refine,
                                                                   args.box, snr)
    if not args.skip_learned:
        results["learned_2000_64px"] = bench_learned(args.refine)
    if not args.skip_structures:
        results["structures"] = bench_structures(min(args.n, 2000), args.refine)
    if not args.skip_aspire:
        results["aspire"] = bench_aspire(500, args.refine)
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
