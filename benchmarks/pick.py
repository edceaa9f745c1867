"""Benchmark: emkit pick (fine-tuned network) against template matching and a blob picker.

1. Accuracy on held-out synthetic tomograms (``emkit sim tomogram``: 64 x 160 x 160 voxels
   of 10 Å, +-60 deg tilts, SNR 0.01 per projection) of three built-in species of similar
   size, as the issue asks (radii 45-55 Å): 3enl (48.6 Å), 6flr_a (47.4 Å) and 6zu5_se0
   (47.4 Å); ``--species 1ake,3enl,6flr`` for the default simulation's sizes 40/49/62 Å.
   Train on seeds 1 and 2, test on seed 3 (the shipped model was trained on seeds 1000+;
   no seed here was used for tuning). Hits within 0.5 x the class radius,
   one-to-one. Methods, in the same run:
   - emkit pick: the shipped model fine-tuned on the two tomograms (``--from-scratch``:
     trained from scratch instead), default post-processing;
   - template matching (``emkit pick match``): the three true templates, 120 rotations,
     missing-wedge-aware; threshold tuned on the test tomogram itself (best F1);
   - blob picker: Gaussian band-pass + local maxima, sigma and threshold tuned on the test
     tomogram itself (best detection F1; it has no classes).
   Overall F1 with classes, detection F1 ignoring classes, per-class F1. Two oracle
   measures say how much class information the tomogram holds: the fraction of true
   particles classified right when the TRUE centres are given, by the network (mean class
   probability in a ball of half the radius) and by template matching with the true
   templates (best score within one voxel of the centre).
2. Class information by SNR (``--only information``): template matching with the true
   templates at the true centres of the test tomogram, noise-free to SNR 0.01.
3. Detection time and peak memory (fresh process) for a 256^3 tomogram, whole and chunk
   by chunk (``--chunk 128``) on a local Dask cluster of 1 and 2 workers, beside template
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
# rotations of the class-information check (template matching at the true centres)
ORACLE_ROTATIONS = 300
# chunk side of the chunked (bounded-memory, Dask) detection timed beside the whole volume
CHUNK = 128


SPECIES = "3enl,6flr_a,6zu5_se0"


def _simulate(seed: int, snr: float | None, species: str) -> Any:
    from emkit.sim import simulate_tomogram

    return simulate_tomogram((64, 160, 160), seed=seed, snr=snr,
                             templates=species.split(","))


def _accuracy_at_true_centres(class_probability: np.ndarray, test: Any) -> float:
    """Fraction of true particles whose highest class probability (mean over a ball of
    half the class radius about the true centre; background excluded) is the true class."""
    right = []
    grid = np.indices(class_probability.shape[1:], dtype=np.float32)
    for centre, cls in zip(test.centres_zyx, test.class_ids):
        radius_px = 0.5 * test.radii_A[cls - 1] / test.voxel_size_A
        lo = np.maximum(np.floor(centre - radius_px).astype(int), 0)
        hi = np.ceil(centre + radius_px).astype(int) + 1
        box = tuple(slice(a, b) for a, b in zip(lo, hi))
        ball = sum((grid[a][box] - centre[a]) ** 2 for a in range(3)) <= radius_px**2
        means = [float(class_probability[k][box][ball].mean())
                 for k in range(1, class_probability.shape[0])]
        right.append(int(np.argmax(means)) + 1 == cls)
    return float(np.mean(right))


def _scores(zyx: np.ndarray, classes: np.ndarray | None, test: Any) -> tuple[Any, Any]:
    from emkit.pick import evaluate_picks

    radius_px = [r / test.voxel_size_A for r in test.radii_A]
    with_cls = evaluate_picks(zyx, classes, test.centres_zyx, test.class_ids, radius_px)
    det = evaluate_picks(zyx, classes, test.centres_zyx, test.class_ids, radius_px,
                         ignore_classes=True)
    return with_cls, det


def _network(train: list[Any], test: Any, args: argparse.Namespace) -> tuple[Any, Any, dict]:
    from emkit.nn import load_model
    from emkit.pick import detect_particles, predict_pick_maps, shipped_model_folder, train_picker

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
    _, _, class_probability = predict_pick_maps(test.tomogram, training.model)
    info = {"train_seconds": round(seconds, 1), "steps": training.history.steps_run,
            "fine_tuned": initial is not None,
            "classified right at true centres": round(
                _accuracy_at_true_centres(class_probability, test), 3)}
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
    confusion = _oracle_confusion(match, test)
    return best[1], best[2], {"seconds": round(seconds, 1), "threshold": best[3],
                              "classified right at true centres": round(
                                  float(np.trace(confusion) / confusion.sum()), 3)}


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
    print(f"== accuracy: train seeds {TRAIN_SEEDS}, test seed {TEST_SEED}, SNR {args.snr}, "
          f"species {args.species}")
    train = [_simulate(s, args.snr, args.species) for s in TRAIN_SEEDS]
    test = _simulate(TEST_SEED, args.snr, args.species)
    print(f"   radii {[round(r, 1) for r in test.radii_A]} Å, "
          f"{len(test.centres_zyx)} particles in the test tomogram")
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


def _oracle_confusion(match: Any, test: Any) -> np.ndarray:
    """Confusion (true class x found class) of template matching at the TRUE centres: the
    class of the best score within one voxel of each centre."""
    n = len(test.class_names)
    confusion = np.zeros((n, n), np.int64)
    for centre, cls in zip(np.round(test.centres_zyx).astype(int), test.class_ids):
        box = tuple(slice(max(c - 1, 0), c + 2) for c in centre)
        at = np.unravel_index(np.argmax(match.score[box]), match.score[box].shape)
        confusion[cls - 1, match.class_map[box][at] - 1] += 1
    return confusion


def bench_information(args: argparse.Namespace) -> None:
    """How much class information the test tomogram holds, against the noise: template
    matching with the true templates at the true centres, by SNR."""
    from emkit.pick import load_templates, match_templates

    print(f"\n== classes told apart at the TRUE centres by template matching (true templates, "
          f"{ORACLE_ROTATIONS} rotations), test seed {TEST_SEED}, species {args.species}")
    rows = []
    for snr in (None, 1.0, 0.1, 0.03, 0.01):
        test = _simulate(TEST_SEED, snr, args.species)
        templates, _ = load_templates(test.class_names, test.voxel_size_A)
        confusion = _oracle_confusion(match_templates(test.tomogram, templates,
                                                      n_rotations=ORACLE_ROTATIONS), test)
        right = np.diag(confusion) / np.maximum(confusion.sum(axis=1), 1)
        rows.append(["none" if snr is None else snr,
                     round(float(np.trace(confusion) / confusion.sum()), 3),
                     " ".join(f"{r:.2f}" for r in right)])
    print_table(["SNR per projection", "classified right",
                 f"per class ({args.species})"], rows)
    print(f"   chance: {1 / len(args.species.split(',')):.2f}")


def _probe(task: str, size: int) -> None:
    import torch

    from emkit.pick import detect_particles_in_file, run_template_matching

    torch.set_num_threads(2)
    path = Path(f"/tmp/emkit-bench-pick-{size}.mrc")
    reset_peak_rss()
    start = time.perf_counter()
    if task == "detect":
        result = detect_particles_in_file(path)
    elif task.startswith("chunk"):
        workers = int(task[len("chunk"):])
        result = detect_particles_in_file(path, chunk=CHUNK, n_workers=workers)
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
    for task in ("detect", "chunk1", "chunk2", "match"):
        r = probe_in_subprocess([__file__, "--probe", task, "--size", str(size)])
        seconds = r.get("seconds", r.get("error"))
        name = "emkit pick detect (shipped model)"
        if task.startswith("chunk"):
            name = (f"emkit pick detect --chunk {CHUNK} --workers {task[-1]} (local Dask "
                    "cluster; peak of this process)")
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
    parser.add_argument("--species", default=SPECIES,
                        help="built-in templates, one per class (comma-separated)")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--only", choices=("accuracy", "speed", "information"))
    parser.add_argument("--quiet", action="store_true")
    parser.add_argument("--probe", choices=("detect", "chunk1", "chunk2", "match"))
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
    if args.only in (None, "information"):
        bench_information(args)
    if args.only in (None, "speed"):
        bench_speed(args)


if __name__ == "__main__":
    main()
