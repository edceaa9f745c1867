"""Train the model shipped in ``emkit/data/pick_model`` (``python -m emkit.pick._make_model``).

Training data: emkit's own simulations (:func:`emkit.sim.simulate_tomogram`) at 10 Å voxels
with seeds from 1000 on (never the benchmark's or the tests'), of the species in
``--species`` (default: the default simulation's 1ake, 3enl and 6flr, radii 40-62 Å), with
varied SNR per projection (0.008 to 0.05), tilt range (+-50 to +-65 degrees), crowding,
membranes and gold. The class head has one channel per species in ``--species``; with
``--per-tomogram`` fewer than them, each simulation holds that many, drawn at random (e.g.
all six built-in species, three per simulation).
Deterministic: same arguments, same weights. ``--resume`` continues an interrupted run from
the checkpoint in the output folder.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

SEED_BASE = 1000
SPECIES = ("1ake", "3enl", "6flr")
DEFAULT_TOMOGRAMS = 8
VOXEL_SIZE_A = 10.0


def simulation_settings(n: int, species: tuple[str, ...] = SPECIES, per_tomogram: int = 3,
                        seed_base: int = SEED_BASE) -> list[dict[str, Any]]:
    """The varied settings of the ``n`` training simulations."""
    rng = np.random.default_rng(seed_base)
    out = []
    for i in range(n):
        drawn = list(range(len(species)))
        if per_tomogram < len(species):
            drawn = sorted(rng.choice(len(species), size=per_tomogram, replace=False))
        out.append({
            "seed": seed_base + i,
            "species": [species[k] for k in drawn],
            "snr": float(np.exp(rng.uniform(np.log(0.008), np.log(0.05)))),
            "tilt": float(rng.uniform(50, 65)),
            "volume_fraction": float(rng.uniform(0.08, 0.15)),
            "membrane": bool(rng.random() < 0.7),
            "n_gold": int(rng.integers(0, 5)),
        })
    return out


def _simulate(settings: list[dict[str, Any]], species: tuple[str, ...]
              ) -> tuple[list[Any], list[tuple[np.ndarray, np.ndarray]], list[float]]:
    """Tomograms, particle lists with classes numbered in ``species`` order, and radii."""
    from emkit.sim import simulate_tomogram

    tomograms, lists, radius = [], [], dict.fromkeys(species, 0.0)
    for s in settings:
        sim = simulate_tomogram((64, 160, 160), voxel_size_A=VOXEL_SIZE_A, seed=s["seed"],
                                snr=s["snr"],
                                templates=s["species"], tilt_range_deg=(-s["tilt"], s["tilt"]),
                                volume_fraction=s["volume_fraction"], membrane=s["membrane"],
                                n_gold=s["n_gold"])
        index = np.array([0] + [species.index(n) + 1 for n in sim.class_names])
        tomograms.append(sim.tomogram)
        lists.append((sim.centres_zyx, index[sim.class_ids]))
        radius.update(zip(sim.class_names, sim.radii_A))
    if min(radius.values()) <= 0:
        missing = [n for n, r in radius.items() if r <= 0]
        raise SystemExit(f"no simulation drew {missing}: use more --tomograms")
    return tomograms, lists, [radius[n] for n in species]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--tomograms", type=int, default=DEFAULT_TOMOGRAMS)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--width", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--init", type=Path, default=None,
                        help="continue from this model folder's weights (its width is kept)")
    parser.add_argument("--learning-rate", type=float, default=2e-3)
    parser.add_argument("--species", default=",".join(SPECIES),
                        help="built-in templates, one class each (comma-separated)")
    parser.add_argument("--per-tomogram", type=int, default=3,
                        help="species drawn for each simulation")
    parser.add_argument("--seed-base", type=int, default=SEED_BASE)
    args = parser.parse_args()

    import torch

    from emkit.io import make_output_folder
    from emkit.nn import load_model, save_model
    from emkit.pick import train_picker

    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    species = tuple(args.species.split(","))
    if args.per_tomogram < 1:
        parser.error("--per-tomogram must be >= 1")
    settings = simulation_settings(args.tomograms, species, args.per_tomogram, args.seed_base)
    tomograms, lists, radius_A = _simulate(settings, species)
    simulated = time.perf_counter() - start
    # marked as emkit's before the training log lands in it, so save_model may write there
    make_output_folder(args.output)
    initial = load_model(args.init, task="pick") if args.init else None
    earlier = dict(initial.extra.get("training_data", {})) if initial is not None else None
    training = train_picker(
        tomograms, lists, radius_A=radius_A, voxel_size_A=VOXEL_SIZE_A,
        class_names=list(species), width=args.width, n_steps=args.steps, initial_model=initial,
        learning_rate=args.learning_rate, validate_every=100, patience=8, seed=args.seed_base,
        checkpoint=args.output / "training.ckpt.safetensors", resume=args.resume,
        log_csv=args.output / "training_log.csv", progress=True)
    training.model.extra["training_data"] = {
        "simulations": settings, "shape_zyx": [64, 160, 160],
        "how": "python -m emkit.pick._make_model", "seconds_simulating": round(simulated, 1),
        "seconds_training": training.history.seconds,
        "threads": args.threads, "learning_rate": args.learning_rate,
        "continued_from": None if earlier is None else {
            "steps": initial.extra.get("trained_steps"), "training_data": earlier}}
    save_model(args.output, training.model)
    (args.output / "training_summary.json").write_text(json.dumps({
        "steps_run": training.history.steps_run, "best_step": training.history.best_step,
        "validation": training.validation, "seconds": round(time.perf_counter() - start, 1)},
        indent=2) + "\n")
    print(f"trained in {time.perf_counter() - start:.0f} s -> {args.output}")


if __name__ == "__main__":
    main()
