"""Benchmark: emkit pick (fine-tuned network) against template matching and a blob picker.

1. Accuracy on held-out synthetic tomograms (``emkit sim tomogram``: 64 x 160 x 160 voxels
   of 10 Å, the three built-in species 1ake/3enl/6flr, +-60 deg tilts, SNR 0.01 per
   projection). Train on seeds 1 and 2, test on seed 3 (the shipped model was trained on
   seeds 1000+; no seed here was used for tuning). Hits within 0.5 x the class radius,
   one-to-one. Methods, in the same run:
   - emkit pick: the shipped model fine-tuned on the two tomograms (``--from-scratch``:
     trained from scratch instead), default post-processing;
   - template matching (``emkit pick match``): the three true templates, 120 rotations,
     missing-wedge-aware; threshold tuned on the test tomogram itself (best F1);
   - blob picker: Gaussian band-pass + local maxima, sigma and threshold tuned on the test
     tomogram itself (best detection F1; it has no classes).
   Overall F1 with classes, detection F1 ignoring classes, per-class F1.
2. Detection time and peak memory (fresh process) for a 256^3 tomogram, beside template
   matching (12 rotations timed, scaled linearly to --rotations); the shipped model's
   recorded training time.

    python benchmarks/pick.py               # about 15-25 min on 2 cores
    python benchmarks/pick.py --quick       # fewer steps, 128^3 timing
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit_probe, peak_rss_mib, print_table, probe_in_subprocess, reset_peak_rss

TRAIN_SEEDS = (1, 2)
# template matching's time is linear in the rotations: time a few, scale to --rotations
MATCH_TIMED_ROTATIONS = 12
TEST_SEED = 3


def _simulate(seed: int, snr: float) -> Any:
    from emkit.sim import simulate_tomogram

    return simulate_tomogram((64, 160, 160), seed=seed, snr=snr)


def _scores(zyx: np.ndarray, classes: np.ndarray | None, test: Any) -> tuple[Any, Any]:
    from emkit.pick import evaluate_picks

    radius_px = [r / test.voxel_size_A for r in test.radii_A]
    with_cls = evaluate_picks(zyx, classes, test.centres_zyx, test.class_ids, radius_px)
    det = evaluate_picks(zyx, classes, test.centres_zyx, test.class_ids, radius_px,
                         ignore_classes=True)
    return with_cls, det


def _network(train: list[Any], test: Any, args: argparse.Namespace) -> tuple[Any, Any, dict]:
    from emkit.nn import load_model
    from emkit.pick import detect_particles, shipped_model_folder, train_picker

    initial = None if args.from_scratch else shipped_model_folder()
    start = time.perf_counter()
    training = train_picker(
        [s.tomogram for s in train], [(s.centres_zyx, s.class_ids) for s in train],
        radius_A=test.radii_A, voxel_size_A=test.voxel_size_A, class_names=test.class_names,
        initial_model=None if initial is None else load_model(initial, task="pick"),
        n_steps=args.steps, seed=0, progress=not args.quiet)
    seconds = time.perf_counter() - start
    found = detect_particles(test.tomogram, training.model, voxel_size_A=test.voxel_size_A)
    p = found["particles"]
    info = {"train_seconds": round(seconds, 1), "steps": training.history.steps_run,
            "fine_tuned": initial is not None}
    return (*_scores(p.zyx, p.classes, test), info)


def _template_matching(test: Any, n_rotations: int) -> tuple[Any, Any, dict]:
    from emkit.pick import find_peaks, load_templates, match_templates

    templates, _ = load_templates(test.class_names, test.voxel_size_A)
    start = time.perf_counter()
    match = match_templates(test.tomogram, templates, n_rotations=n_rotations)
    seconds = time.perf_counter() - start
    best: tuple[float, Any, Any, float] = (-1.0, None, None, 0.0)
    for thr in np.linspace(0.1, 0.9, 41):
        peaks = find_peaks(match.score, min_distance_px=min(match.radii_px), threshold=thr)
        cls = match.class_map[tuple(peaks.T)].astype(np.int64)
        with_cls, det = _scores(peaks.astype(float), cls, test)
        if det.overall["f1"] > best[0]:
            best = (float(det.overall["f1"]), with_cls, det, float(thr))
    return best[1], best[2], {"seconds": round(seconds, 1), "threshold": best[3]}


def _blobs(test: Any) -> tuple[Any, Any, dict]:
    from emkit.pick import pick_blobs

    best: tuple[float, Any, Any, dict] = (-1.0, None, None, {})
    r_min = min(test.radii_A) / test.voxel_size_A
    for sigma in (1.0, 1.5, 2.0, 2.5, 3.0):
        for thr in np.linspace(0.5, 4.0, 15):
            zyx, _ = pick_blobs(test.tomogram, sigma_px=sigma, threshold=thr,
                                min_distance_px=r_min)
            with_cls, det = _scores(zyx, None, test)
            if det.overall["f1"] > best[0]:
                best = (float(det.overall["f1"]), with_cls, det,
                        {"sigma_px": sigma, "threshold": round(float(thr), 2)})
    return best[1], best[2], best[3]


def bench_accuracy(args: argparse.Namespace) -> None:
    print(f"== accuracy: train seeds {TRAIN_SEEDS}, test seed {TEST_SEED}, SNR {args.snr}")
    train = [_simulate(s, args.snr) for s in TRAIN_SEEDS]
    test = _simulate(TEST_SEED, args.snr)
    results = {"emkit pick": _network(train, test, args),
               "template matching (tuned on test)": _template_matching(test, args.rotations),
               "blob picker (tuned on test)": _blobs(test)}
    rows = []
    for name, (with_cls, det, info) in results.items():
        per = [f"{r['f1']:.3f}" for r in with_cls.rows[:-1]]
        rows.append([name, with_cls.overall["f1"] if "blob" not in name else "-",
                     det.overall["f1"], det.overall["precision"], det.overall["recall"],
                     " ".join(per) if "blob" not in name else "-", str(info)])
    print_table(["method", "F1 (classes)", "F1 (detection)", "P", "R",
                 f"F1 per class ({', '.join(test.class_names)})", "info"], rows)
    net_f1 = results["emkit pick"][1].overall["f1"]
    for name in list(results)[1:]:
        ratio = net_f1 / max(results[name][1].overall["f1"], 1e-9)
        print(f"   detection F1 ratio emkit / {name}: {ratio:.2f}")


def _probe(task: str, size: int) -> None:
    import torch

    from emkit.pick import detect_particles_in_file, run_template_matching

    torch.set_num_threads(2)
    path = Path(f"/tmp/emkit-bench-pick-{size}.mrc")
    reset_peak_rss()
    start = time.perf_counter()
    if task == "detect":
        result = detect_particles_in_file(path)
    else:
        result = run_template_matching(path, ["1ake", "3enl", "6flr"],
                                       n_rotations=MATCH_TIMED_ROTATIONS)
    emit_probe({"seconds": time.perf_counter() - start, "peak_mib": peak_rss_mib(),
                "n": len(result.particles)})


def bench_speed(args: argparse.Namespace) -> None:
    from emkit.io import write_volume
    from emkit.nn import load_model
    from emkit.pick import shipped_model_folder
    from emkit.sim import simulate_tomogram

    size = args.size
    print(f"\n== detection of a {size}^3 tomogram (fresh process each; 2 threads)")
    sim = simulate_tomogram((size, size, size), seed=7, snr=args.snr)
    write_volume(f"/tmp/emkit-bench-pick-{size}.mrc", sim.tomogram, voxel_size=10.0)
    rows = []
    for task in ("detect", "match"):
        r = probe_in_subprocess([__file__, "--probe", task, "--size", str(size)])
        seconds = r.get("seconds", r.get("error"))
        name = "emkit pick detect (shipped model)"
        if task == "match" and isinstance(seconds, float):
            name = (f"template matching, 3 templates x {MATCH_TIMED_ROTATIONS} rotations "
                    f"(x{args.rotations / MATCH_TIMED_ROTATIONS:g} for {args.rotations}: "
                    f"{seconds * args.rotations / MATCH_TIMED_ROTATIONS:.0f} s)")
        rows.append([name, seconds, r.get("peak_mib", ""), r.get("n", "")])
    print_table(["method", "seconds", "peak MiB", "particles"], rows)
    folder = shipped_model_folder()
    if folder is not None:
        extra = load_model(folder, task="pick").extra.get("training_data", {})
        print(f"   shipped model: trained {extra.get('seconds_training')} s on "
              f"{extra.get('threads')} thread(s), simulations {extra.get('seconds_simulating')} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--from-scratch", action="store_true")
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--rotations", type=int, default=120)
    parser.add_argument("--snr", type=float, default=0.01)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--only", choices=("accuracy", "speed"))
    parser.add_argument("--quiet", action="store_true")
    parser.add_argument("--probe", choices=("detect", "match"))
    args = parser.parse_args()
    if args.probe:
        _probe(args.probe, args.size)
        return
    if args.quick:
        args.steps, args.rotations, args.size = 150, 40, 128
    import torch

    torch.set_num_threads(2)
    if args.only in (None, "accuracy"):
        bench_accuracy(args)
    if args.only in (None, "speed"):
        bench_speed(args)


if __name__ == "__main__":
    main()
