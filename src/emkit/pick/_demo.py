"""The pick part of ``emkit demo``: simulate a crowded tomogram, pick it with the shipped
model and with template matching, score both against the truth."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

# seeds 2000+: neither the shipped model (1000-1007) nor the benchmark (1-3) used them
_DEMO_SEED_BASE = 2000
_DEMO_SHAPE = (64, 128, 128)
_DEMO_SNR = 0.02
_DEMO_ROTATIONS = 40


@dataclass
class PickDemo:
    """What the demo wrote and measured.

    ``rows`` holds each method's score table (:func:`emkit.pick.evaluate_picks` rows);
    ``network_zyx`` the shipped model's picks (None without a shipped model).
    """

    output_dir: Path
    sim: Any
    rows: dict[str, list[dict[str, Any]]]
    network_zyx: np.ndarray | None
    numbers: dict[str, Any] = field(default_factory=dict)


def _network_scores(out_dir: Path, sim: Any, folder: Path) -> tuple[np.ndarray, list[Any]]:
    """Pick with the model in ``folder``; its picks and their scores, classes by name."""
    from emkit.nn import load_model
    from emkit.pick import (
        PostProcessing,
        classes_by_name,
        detect_particles,
        evaluate_picks,
        write_particle_lists,
    )

    model = load_model(folder, task="pick")
    found = detect_particles(sim.tomogram, model, voxel_size_A=sim.voxel_size_A,
                             params=PostProcessing())
    picks = found["particles"]
    write_particle_lists(out_dir, "network", picks, voxel_size_A=sim.voxel_size_A,
                         shape_zyx=sim.tomogram.shape, instance_labels=found["instances"])
    classes, radii = classes_by_name(picks.classes, model, sim)
    return picks.zyx, evaluate_picks(picks.zyx, classes, sim.centres_zyx, sim.class_ids,
                                     radii).rows


def _matching_scores(sim: Any, progress: bool) -> list[Any]:
    """Template matching with the true templates, peaks 4 standard deviations up, scored."""
    from emkit.pick import evaluate_picks, find_peaks, load_templates, match_templates

    templates, _ = load_templates(sim.class_names, sim.voxel_size_A)
    match = match_templates(sim.tomogram, templates, n_rotations=_DEMO_ROTATIONS,
                            progress=progress)
    threshold = float(match.score.mean() + 4 * match.score.std())
    peaks = find_peaks(match.score, min_distance_px=min(match.radii_px), threshold=threshold)
    radius_px = [r / sim.voxel_size_A for r in sim.radii_A]
    return evaluate_picks(peaks.astype(float), match.class_map[tuple(peaks.T)].astype(np.int64),
                          sim.centres_zyx, sim.class_ids, radius_px).rows


def run_pick_demo(out_dir: Path, *, seed: int = 0, progress: bool = False) -> PickDemo:
    """Simulate a crowded tomogram, pick it with the shipped model (when there is one) and
    with template matching; write the simulation, the network's lists and each method's
    scores (CSV) into ``out_dir``."""
    from emkit.io import make_output_folder, write_text_atomic
    from emkit.pick import shipped_model_folder, write_simulated_tomogram
    from emkit.sim import simulate_tomogram

    out_dir = make_output_folder(out_dir)
    sim = simulate_tomogram(_DEMO_SHAPE, seed=_DEMO_SEED_BASE + seed, snr=_DEMO_SNR)
    write_simulated_tomogram(out_dir / "simulated", sim)
    rows: dict[str, Any] = {}
    numbers: dict[str, Any] = {"particles_true": len(sim.centres_zyx)}
    folder = shipped_model_folder()
    network_zyx = None
    if folder is not None:
        network_zyx, rows["emkit pick"] = _network_scores(out_dir, sim, folder)
    rows["template matching"] = _matching_scores(sim, progress)
    for method, table in rows.items():
        key = method.replace(" ", "_")
        numbers[f"f1_{key}"] = round(float(table[-1]["f1"]), 3)
        text = "\n".join(",".join(str(r[k]) for k in r) for r in table)
        write_text_atomic(out_dir / f"scores_{key}.csv", ",".join(table[0]) + "\n" + text + "\n")
    if folder is None:
        numbers["note"] = "no shipped pick model in this emkit: template matching only"
    return PickDemo(output_dir=out_dir, sim=sim, rows=rows, network_zyx=network_zyx,
                    numbers=numbers)
