"""Accuracy of the shipped pick model on held-out simulations (seeds no training used)."""

from __future__ import annotations

import numpy as np
import pytest

from emkit.pick import (
    detect_particles,
    evaluate_picks,
    find_peaks,
    load_templates,
    match_templates,
    shipped_model_folder,
)
from emkit.sim import simulate_tomogram

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def model():
    from emkit.nn import load_model

    folder = shipped_model_folder()
    if folder is None:
        pytest.skip("this emkit has no shipped pick model")
    return load_model(folder, task="pick")


@pytest.fixture(scope="module")
def held_out():
    # seed 3 is the benchmark's test tomogram; the shipped model saw seeds 1000+
    return simulate_tomogram((64, 160, 160), seed=3, snr=0.02)


def _f1(zyx, classes, sim, *, ignore_classes: bool) -> float:
    radius_px = [r / sim.voxel_size_A for r in sim.radii_A]
    return evaluate_picks(zyx, classes, sim.centres_zyx, sim.class_ids, radius_px,
                          ignore_classes=ignore_classes).overall["f1"]


def test_shipped_model_beats_template_matching(model, held_out) -> None:
    found = detect_particles(held_out.tomogram, model, voxel_size_A=held_out.voxel_size_A)
    picks = found["particles"]
    net = _f1(picks.zyx, None, held_out, ignore_classes=True)
    templates, _ = load_templates(held_out.class_names, held_out.voxel_size_A)
    match = match_templates(held_out.tomogram, templates, n_rotations=30)
    best = 0.0
    for threshold in np.linspace(0.2, 0.8, 13):  # tuned on the test tomogram itself
        peaks = find_peaks(match.score, min_distance_px=min(match.radii_px),
                           threshold=threshold)
        best = max(best, _f1(peaks.astype(float), None, held_out, ignore_classes=True))
    assert net > 0.75
    assert net > best + 0.05


def test_shipped_model_is_invariant_to_gain_and_offset(model, held_out) -> None:
    a = detect_particles(held_out.tomogram, model, voxel_size_A=10.0)["particles"]
    b = detect_particles(3.0 * held_out.tomogram + 7.0, model, voxel_size_A=10.0)["particles"]
    assert abs(len(a) - len(b)) <= max(2, len(a) // 50)


def test_chunked_detection_agrees_with_whole_volume(model, held_out) -> None:
    from emkit.pick import detect_particles_chunked

    whole = detect_particles(held_out.tomogram, model, voxel_size_A=10.0)["particles"]
    chunked = detect_particles_chunked(held_out.tomogram, model, chunk=64)
    assert int(chunked["instances"].max()) == len(chunked["particles"])
    agreement = evaluate_picks(chunked["particles"].zyx, None, whole.zyx, None, [2.0])
    assert agreement.overall["f1"] > 0.95


def test_chunks_on_a_local_dask_cluster_give_the_same_picks(model, held_out, tmp_path) -> None:
    from emkit.io import write_volume
    from emkit.pick import detect_particles_chunked

    path = tmp_path / "tomogram.mrc"
    write_volume(path, held_out.tomogram, voxel_size=10.0)
    here = detect_particles_chunked(path, model, chunk=64)
    cluster = detect_particles_chunked(path, model, chunk=64, n_workers=2)
    assert len(here["particles"]) > 100
    # each worker runs one thread, this process several: the maps may differ by rounding
    agreement = evaluate_picks(cluster["particles"].zyx, None, here["particles"].zyx, None,
                               [0.5])
    assert agreement.overall["f1"] > 0.99
    same = np.mean(cluster["instances"] == here["instances"])
    assert same > 0.999
