"""Benchmark: deep-SXT segmentation against labelled-only training and an ilastik-style forest.

1. Accuracy on held-out synthetic cells (``emkit sim cell``, 96 x 192 x 192 voxels, seeds
   1001 and 1002 by default: no test and no tuning used them), trained from 3 labelled z
   slices (20, 48, 76): Dice per class on the other 93 slices, for
   - deep-SXT: shared encoder, label + image decoders, unlabelled steps on the other slices;
   - labelled-only: the same network and the same labelled steps, no unlabelled steps;
   - random forest: scikit-learn on ``skimage.feature.multiscale_basic_features`` of the
     same 3 slices (ilastik's pixel classification), 100 trees.
   Each method is scored as predicted and with ``single_object=["nucleus"]`` (only the
   largest 3D piece of the nucleus kept, the rest relabelled with the next most probable
   class: ``emkit segment predict --single-object nucleus``). The margins (deep-SXT minus
   each peer, with the same post-processing) are printed per class and seed.
2. Training time of deep-SXT (192 x 192 x 96, 3 slices) and of the peers.
3. Prediction time and peak memory (fresh process, RSS above its baseline) for a
   512 x 512 x 200 tomogram, slice-wise along z, beside the forest's (timed on
   ``--rf-slices`` slices and scaled to 200).
4. Mesh volume error: surfaces of the true label volume against its voxel volumes.

Same process, same seeded data; the machine may be shared, so quote the ratios.

    python benchmarks/segment.py             # full sizes (about 30 min on 2 cores)
    python benchmarks/segment.py --quick     # one seed, fewer steps, 256 x 256 x 64 predict
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
    peak_rss_mib,
    print_table,
    probe_in_subprocess,
    reset_peak_rss,
)

SLICES = [20, 48, 76]
CLASSES = ("outside", "cytoplasm", "nucleus", "mitochondria", "lipid droplets")
TARGETS = {"nucleus": 0.9, "mitochondria": 0.8, "lipid droplets": 0.8}
SINGLE = "nucleus"  # scored as predicted and with --single-object nucleus
PEERS = ("labelled-only", "random forest")


def _other_slices(nz: int) -> np.ndarray:
    return np.setdiff1d(np.arange(nz), SLICES)


def _dice(predicted: np.ndarray, truth: np.ndarray) -> np.ndarray:
    from emkit.segment import dice_scores

    other = _other_slices(truth.shape[0])
    return dice_scores(predicted[other], truth[other], len(CLASSES))


def _deep(
    cell: Any, *, semi: bool, steps: int, seed: int
) -> tuple[np.ndarray, np.ndarray, float, Any]:
    """Labels without and with ``single_object=["nucleus"]``, training seconds, training."""
    from emkit.segment import predict_segmentation, train_segmentation

    t0 = time.perf_counter()
    training = train_segmentation(cell.tomogram, cell.labels, slices=SLICES,
                                  voxel_size_A=cell.voxel_size_A, class_names=CLASSES,
                                  semi_supervised=semi, n_steps=steps, seed=seed)
    seconds = time.perf_counter() - t0
    plain = predict_segmentation(cell.tomogram, training.model).labels
    single = predict_segmentation(cell.tomogram, training.model,
                                  single_object=[SINGLE]).labels
    return plain, single, seconds, training


def _forest(cell: Any, seed: int) -> tuple[np.ndarray, np.ndarray, float]:
    from emkit.segment._baseline import fit_forest, predict_forest

    t0 = time.perf_counter()
    forest = fit_forest(cell.tomogram, cell.labels, slices=SLICES, seed=seed)
    plain = predict_forest(forest, cell.tomogram)
    seconds = time.perf_counter() - t0
    single = predict_forest(forest, cell.tomogram, single_object=[CLASSES.index(SINGLE)])
    return plain, single, seconds


def bench_accuracy(args: argparse.Namespace) -> dict[str, dict[str, np.ndarray]]:
    from emkit.sim import simulate_cell

    print(f"\n== accuracy: cells {args.seeds}, 96 x 192 x 192, labelled z slices {SLICES}, "
          f"{args.steps} labelled steps; every method as predicted and with "
          f"single_object=[{SINGLE!r}] (only the largest 3D piece of the {SINGLE} kept)")
    scores: dict[str, dict[str, np.ndarray]] = {}
    times: dict[str, list[float]] = {"deep-SXT": [], "labelled-only": [], "random forest": []}
    for seed in args.seeds:
        cell = simulate_cell((96, 192, 192), seed=seed)
        semi, semi1, t_semi, training = _deep(cell, semi=True, steps=args.steps, seed=0)
        sup, sup1, t_sup, _ = _deep(cell, semi=False, steps=args.steps, seed=0)
        forest, forest1, t_rf = _forest(cell, 0)
        scores[str(seed)] = {
            name: _dice(labels, cell.labels) for name, labels in (
                ("deep-SXT", semi), ("labelled-only", sup), ("random forest", forest),
                (f"deep-SXT, single {SINGLE}", semi1), (f"labelled-only, single {SINGLE}", sup1),
                (f"random forest, single {SINGLE}", forest1))}
        for name, seconds in (("deep-SXT", t_semi), ("labelled-only", t_sup),
                              ("random forest", t_rf)):
            times[name].append(seconds)
        print(f"   seed {seed}: deep-SXT trained {training.history.steps_run} steps in "
              f"{t_semi:.0f} s, labelled-only {t_sup:.0f} s, forest {t_rf:.0f} s")
        _print_scores(scores[str(seed)], times, f"seed {seed}")
    if len(args.seeds) > 1:
        mean = {m: np.mean([s[m] for s in scores.values()], axis=0)
                for m in next(iter(scores.values()))}
        _print_scores(mean, times, "mean over seeds")
    return scores


def _print_scores(scores: dict[str, np.ndarray], times: dict[str, list[float]],
                  title: str) -> None:
    rows = [[method, *[float(dice[k]) for k in range(1, len(CLASSES))],
             float(np.mean(times[method.split(",")[0]]))]
            for method, dice in scores.items()]
    print_table([f"{title}: method (Dice, other slices)", *CLASSES[1:], "train s"], rows)
    for suffix in ("", f", single {SINGLE}"):
        deep = scores["deep-SXT" + suffix]
        for peer in PEERS:
            other = scores[peer + suffix]
            margins = ", ".join(f"{CLASSES[k]} {deep[k] - other[k]:+.3f}"
                                for k in range(1, len(CLASSES)))
            print(f"   margin deep-SXT - {peer}{suffix}: {margins}")
        verdict = ", ".join(
            f"{name} {deep[CLASSES.index(name)]:.3f} (>= {t}: "
            f"{'met' if deep[CLASSES.index(name)] >= t else 'NOT met'})"
            for name, t in TARGETS.items())
        print(f"   targets, deep-SXT{suffix}: {verdict}")


def _big_tomogram(shape: tuple[int, int, int]) -> np.ndarray:
    """A cell-like volume of the benchmark size: a simulated cell tiled and cropped."""
    from emkit.sim import simulate_cell

    cell = simulate_cell((min(shape[0], 96), 192, 192), seed=7).tomogram
    reps = [int(np.ceil(s / c)) for s, c in zip(shape, cell.shape)]
    return np.ascontiguousarray(np.tile(cell, reps)[: shape[0], : shape[1], : shape[2]])


def _probe(what: str, args: argparse.Namespace) -> None:
    """Run one prediction in this (fresh) process; print its time and peak memory."""
    import torch

    from emkit.nn import load_model

    shape = tuple(args.predict_shape)
    volume = _big_tomogram(shape)  # type: ignore[arg-type]
    before = current_rss_mib()
    reset_peak_rss()
    t0 = time.perf_counter()
    if what == "predict":
        from emkit.segment import predict_segmentation

        torch.set_num_threads(args.threads)
        model = load_model(args.model_dir)
        predict_segmentation(volume, model, axes="z")
        n = shape[0]
    else:
        from emkit.segment._baseline import fit_forest, predict_forest
        from emkit.sim import simulate_cell

        cell = simulate_cell((96, 192, 192), seed=7)
        forest = fit_forest(cell.tomogram, cell.labels, slices=SLICES, seed=0)
        t0 = time.perf_counter()
        predict_forest(forest, volume[: args.rf_slices])
        n = args.rf_slices
    seconds = time.perf_counter() - t0
    emit_probe({"baseline_mib": before, "peak_mib": peak_rss_mib(), "seconds": seconds,
                "slices": n})


def bench_predict(args: argparse.Namespace, model_dir: Path) -> None:
    shape = tuple(args.predict_shape)
    print(f"\n== prediction of a {shape[2]} x {shape[1]} x {shape[0]} tomogram (x y z), --axes z, "
          f"{args.threads} threads (fresh process each; forest timed on {args.rf_slices} "
          "slices and scaled)")
    script = str(Path(__file__).resolve())
    common = ["--predict-shape", *map(str, shape), "--model-dir", str(model_dir),
              "--threads", str(args.threads), "--rf-slices", str(args.rf_slices)]
    rows = []
    for task in ("predict", "forest"):
        r = probe_in_subprocess([script, "--probe", task, *common])
        if "error" in r:
            rows.append([task, "error: " + r["error"], "", ""])
            continue
        scaled = r["seconds"] * shape[0] / r["slices"]
        rows.append(["deep-SXT (emkit)" if task == "predict" else "random forest", scaled,
                     r["peak_mib"] - r["baseline_mib"], r["slices"]])
    print_table(["method", "seconds (200 slices)", "peak MiB", "slices timed"], rows)


def bench_mesh() -> None:
    from emkit.segment import mesh_labels
    from emkit.sim import simulate_cell

    cell = simulate_cell((96, 192, 192), seed=1001)
    t0 = time.perf_counter()
    meshes = mesh_labels(cell.labels, voxel_size_A=cell.voxel_size_A, class_names=CLASSES,
                         min_voxels=50)
    seconds = time.perf_counter() - t0
    errors = [abs(m.volume_A3 / (m.voxels * cell.voxel_size_A**3) - 1) for m in meshes]
    print(f"\n== meshes of the true labels (seed 1001): {len(meshes)} surfaces in {seconds:.1f} s, "
          f"{sum(m.watertight for m in meshes)} watertight; volume error vs voxels: max "
          f"{100 * max(errors):.2f} %, median {100 * float(np.median(errors)):.2f} %")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1001, 1002])
    parser.add_argument("--steps", type=int, default=1200, help="labelled steps (1200)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--predict-shape", type=int, nargs=3, default=[200, 512, 512])
    parser.add_argument("--rf-slices", type=int, default=4)
    parser.add_argument("--quick", action="store_true", help="one seed, 300 steps, small volume")
    parser.add_argument("--skip-accuracy", action="store_true")
    parser.add_argument("--skip-predict", action="store_true")
    parser.add_argument("--probe", choices=("predict", "forest"), help=argparse.SUPPRESS)
    parser.add_argument("--model-dir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    if args.quick:
        args.seeds, args.steps, args.predict_shape = args.seeds[:1], 300, [64, 256, 256]
    if args.probe:
        _probe(args.probe, args)
        return 0
    print(f"emkit segment benchmark: {torch.get_num_threads()} torch threads")
    if not args.skip_accuracy:
        bench_accuracy(args)
    bench_mesh()
    if args.skip_predict:
        return 0
    import tempfile

    from emkit.nn import save_model
    from emkit.segment import train_segmentation
    from emkit.sim import simulate_cell

    with tempfile.TemporaryDirectory() as tmp:
        cell = simulate_cell((48, 128, 128), seed=7)
        model = train_segmentation(cell.tomogram, cell.labels, slices=[12, 24, 36],
                                   class_names=CLASSES, n_steps=20, seed=0).model
        save_model(Path(tmp) / "model", model)
        bench_predict(args, Path(tmp) / "model")
    return 0


if __name__ == "__main__":
    sys.exit(main())
