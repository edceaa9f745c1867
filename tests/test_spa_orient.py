"""Orientation recovery: exact distances, the O(4) ambiguity, the frame, refinement, CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from emkit.cli.main import main
from emkit.geometry import (
    axis_angle_to_matrix,
    euler_zyz_to_matrix,
    matrix_to_quaternion,
    quaternion_conjugate,
    quaternion_multiply,
    random_quaternions,
    random_rotations,
)
from emkit.io import read_particles_star
from emkit.sim import density_template
from emkit.sim.particles import centre_in_box, simulate_particles
from emkit.spa import (
    align_quaternions_o4,
    exact_distance_fn,
    recover_orientations,
    refine_orientations,
    resolve_frame,
    score_distance_fit,
    score_orientations,
)

L = 32
PIXEL_A = 2.5


@pytest.fixture(scope="module")
def particles() -> object:
    volume = centre_in_box(density_template("3enl", voxel_size_A=PIXEL_A).data, L)
    return simulate_particles(volume, 400, pixel_size_A=PIXEL_A, seed=21, max_shift_px=1.5)


def test_exact_distances_give_the_orientations() -> None:
    truth = random_rotations(500, seed=1)
    fit = recover_orientations(exact_distance_fn(truth), 500, seed=0, restarts=2, steps=1500)
    score = score_distance_fit(fit.quaternions, truth)
    assert score.median_deg < 1.0
    assert np.rad2deg(fit.distance_error_rad) < 1.0


def test_distance_function_output_is_checked() -> None:
    with pytest.raises(ValueError, match="one distance per pair"):
        recover_orientations(lambda pairs: np.zeros(3), 20, steps=2, restarts=1)
    with pytest.raises(ValueError, match="NaN"):
        recover_orientations(lambda pairs: np.full(len(pairs), np.nan), 20, steps=2, restarts=1)


def test_o4_alignment_removes_both_sides_and_the_mirror() -> None:
    q = random_quaternions(300, seed=2)
    p, r = random_quaternions(2, seed=3)
    moved = quaternion_multiply(quaternion_multiply(p, quaternion_conjugate(q)), r)
    moved[::2] *= -1.0  # q and -q are one rotation
    _, errors = align_quaternions_o4(moved, q)
    assert errors.max() < 1e-4  # degrees (arccos rounding near 0)


def test_frame_then_refinement_recover_orientations(particles: object) -> None:
    truth = particles.rotations
    fit = recover_orientations(exact_distance_fn(truth), len(truth), seed=0, restarts=2,
                               steps=1500)
    frame = resolve_frame(particles.images, fit.rotations, seed=0, n_images=200, n_coarse=100)
    before = score_orientations(frame.rotations, truth)
    assert before.median_deg < 10.0  # the image-side rotation is found (random: ~100 deg)
    refined = refine_orientations(particles.images, frame.rotations, pixel_size_A=PIXEL_A,
                                  iterations=4)
    after = score_orientations(refined.rotations, truth)
    assert after.median_deg < 1.0 and after.mean_deg < 2.0
    shift_error = np.linalg.norm(refined.shifts_px - particles.shifts_px, axis=1)
    assert np.median(shift_error) < 0.5


def test_refinement_with_noise_improves_a_perturbed_start(particles: object) -> None:
    volume = particles.volume
    # SNR 2 on this 25-px particle: the data pin orientations to a few degrees, so a start
    # 8 deg off on average must come closer (at SNR 0.5 the data's own limit is ~8 deg)
    noisy = simulate_particles(volume, 600, pixel_size_A=PIXEL_A, seed=8, snr=2.0)
    rng = np.random.default_rng(0)
    axes = rng.standard_normal((600, 3))
    axes /= np.linalg.norm(axes, axis=1, keepdims=True)
    start = axis_angle_to_matrix(axes, rng.normal(0.0, 10.0, 600)) @ noisy.rotations
    before = score_orientations(start, noisy.rotations)
    refined = refine_orientations(noisy.images, start, pixel_size_A=PIXEL_A, iterations=4)
    after = score_orientations(refined.rotations, noisy.rotations)
    assert after.mean_deg < 0.75 * before.mean_deg


def test_cli_orient_with_exact_distances_and_reconstruct(tmp_path: Path) -> None:
    volume = centre_in_box(density_template("3enl", voxel_size_A=PIXEL_A).data, L)
    from emkit.io import write_volume

    write_volume(tmp_path / "map.mrc", volume, voxel_size=PIXEL_A)
    sim = tmp_path / "sim"
    assert main(["sim", "particles", str(tmp_path / "map.mrc"), "--n", "300", "--output",
                 str(sim), "--max-shift", "1", "--seed", "4"]) == 0
    out = tmp_path / "out" / "orient.star"
    assert main(["spa", "orient", str(sim / "particles.star"), "--output", str(out),
                 "--distances", "exact", "--refine", "3", "--threads", "1", "--quiet"]) == 0
    star = read_particles_star(out)
    truth = read_particles_star(sim / "particles.star")
    assert star["image_names"] == truth["image_names"]
    assert star["pixel_size_A"] == pytest.approx(PIXEL_A)
    score = score_orientations(euler_zyz_to_matrix(star["euler_deg"]),
                               euler_zyz_to_matrix(truth["euler_deg"]))
    assert score.median_deg < 1.5
    assert (tmp_path / "out" / "orient_errors.png").is_file()
    rec = tmp_path / "out" / "map.mrc"
    assert main(["spa", "reconstruct", str(sim / "particles.star"), "--angles", str(out),
                 "--output", str(rec), "--threads", "1"]) == 0
    csv = (tmp_path / "out" / "map_fsc.csv").read_text().splitlines()
    assert csv[0] == "shell,frequency_invA,resolution_A,fsc" and len(csv) == L // 2 + 2
    assert float(csv[L // 4].split(",")[3]) > 0.5  # half-map FSC at 2 x Nyquist resolution
    q = matrix_to_quaternion(euler_zyz_to_matrix(star["euler_deg"]))
    assert np.all(np.isfinite(q))
