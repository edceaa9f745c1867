"""emkit.pick baselines: template matching (wedge, normalisation, peaks) and the blob picker."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from emkit.cli.main import main
from emkit.pick import (
    evaluate_picks,
    find_peaks,
    match_templates,
    pick_blobs,
    read_particle_list,
    wedge_mask,
)
from emkit.sim import density_template, simulate_tomogram
from emkit.sim.tiltseries import _crop_template


def test_wedge_mask_keeps_the_tilted_planes_only() -> None:
    m = wedge_mask((32, 8, 32), (-60, 60))
    assert m.shape == (32, 8, 17)
    assert m[0, 0, 5] == 1  # kz = 0: always measured
    assert m[5, 0, 0] == 0  # kx = 0, kz != 0: the wedge along z
    assert m[5, 0, 16] == 1  # |kz| <= tan(60) |kx|
    assert wedge_mask((32, 8, 32), (-89.9, 89.9))[5, 0, 1] == 1


def test_peaks_are_maxima_far_enough_apart() -> None:
    score = np.zeros((20, 20, 20), np.float32)
    score[5, 5, 5], score[5, 5, 7], score[15, 15, 15] = 1.0, 0.9, 0.8
    peaks = find_peaks(score, min_distance_px=4, threshold=0.5)
    assert peaks.tolist() == [[5, 5, 5], [15, 15, 15]]
    assert len(find_peaks(score, min_distance_px=1, threshold=0.5)) == 3


def test_normalised_correlation_is_one_for_the_template_itself() -> None:
    # a round template: every rotation of the grid is the template itself
    g = np.indices((11, 11, 11)) - 5
    t = np.exp(-(g**2).sum(0) / (2 * 2.0**2)).astype(np.float32)
    vol = np.zeros((32, 40, 40), np.float32)
    c = np.array(t.shape) // 2
    vol[16 - c[0]:16 - c[0] + t.shape[0], 20 - c[1]:20 - c[1] + t.shape[1],
        20 - c[2]:20 - c[2] + t.shape[2]] = -t
    vol += np.random.default_rng(0).normal(0, 1e-4, vol.shape).astype(np.float32)
    m = match_templates(vol, [t], n_rotations=4, tilt_range_deg=None)
    assert tuple(np.unravel_index(np.argmax(m.score), m.score.shape)) == (16, 20, 20)
    assert m.score.max() == pytest.approx(1.0, abs=0.02)
    assert m.score.max() <= 1.0 + 1e-4 and m.score.min() >= -1.0 - 1e-4


@pytest.fixture(scope="module")
def clean_sim():
    return simulate_tomogram((32, 80, 80), seed=4, snr=1.0, n_gold=0, membrane=False,
                             volume_fraction=0.08)


def test_template_matching_finds_particles_at_good_snr(clean_sim) -> None:
    s = clean_sim
    temps = [_crop_template(density_template(n, voxel_size_A=10).data) for n in s.class_names]
    m = match_templates(s.tomogram, temps, n_rotations=8)
    r = np.array(s.radii_A) / s.voxel_size_A
    peaks = find_peaks(m.score, min_distance_px=r.min(), threshold=0.65)
    scores = evaluate_picks(peaks, None, s.centres_zyx, None, [float(r.mean())])
    assert scores.overall["recall"] > 0.85 and scores.overall["precision"] > 0.6


def test_blob_picker_finds_particles_at_good_snr(clean_sim) -> None:
    s = clean_sim
    r = np.array(s.radii_A) / s.voxel_size_A
    zyx, _ = pick_blobs(s.tomogram, sigma_px=1.5, threshold=2.0, min_distance_px=r.min())
    scores = evaluate_picks(zyx, None, s.centres_zyx, None, [float(r.mean())])
    assert scores.overall["f1"] > 0.6


def test_cli_match_writes_the_picker_outputs(tmp_path: Path) -> None:
    sim = tmp_path / "sim"
    assert main(["sim", "tomogram", "--output", str(sim), "--shape", "32", "48", "48",
                 "--snr", "1", "--seed", "1"]) == 0
    out = tmp_path / "tm"
    assert main(["pick", "match", str(sim / "tomogram.mrc"), "--template", "1ake", "3enl",
                 "--rotations", "4", "--output", str(out), "--quiet"]) == 0
    for name in ("tomogram_particles.star", "tomogram_particles.tsv",
                 "tomogram_instances.mrc", "tomogram_scores.mrc", "emkit-run.json",
                 "report.html"):
        assert (out / name).is_file(), name
    picks = read_particle_list(out / "tomogram_particles.star")
    assert len(picks) > 0 and set(picks.classes) <= {1, 2}
    header = (out / "tomogram_particles.star").read_text()
    assert "rlnCenteredCoordinateXAngst" in header and "rlnAngleRot" in header
