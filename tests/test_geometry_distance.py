"""Geodesic distances and global alignment of rotation sets."""

import numpy as np
import pytest

from emkit.errors import MismatchError, ShapeError
from emkit.geometry import (
    align_rotations,
    axis_angle_to_matrix,
    matrix_to_quaternion,
    orientation_error_summary,
    quaternion_distance,
    random_rotations,
    rotation_angle_between,
)

J = np.diag([1.0, 1.0, -1.0])


def test_geodesic_basic_properties():
    R = random_rotations(200, seed=1)
    S = random_rotations(200, seed=2)
    np.testing.assert_allclose(rotation_angle_between(R, R), 0.0, atol=1e-6)
    assert rotation_angle_between(np.eye(3), np.eye(3)) == 0.0
    np.testing.assert_allclose(rotation_angle_between(R, S), rotation_angle_between(S, R))
    half_turn = axis_angle_to_matrix([1.0, 1.0, 0.0], 180.0)
    assert rotation_angle_between(np.eye(3), half_turn) == pytest.approx(180.0, abs=1e-9)
    for angle in (1e-5, 0.5, 37.0, 179.9):
        M = axis_angle_to_matrix([0.2, -0.3, 1.0], angle)
        assert rotation_angle_between(np.eye(3), M) == pytest.approx(angle, rel=1e-9)
    # invariant: d(G R, G S) = d(R, S)
    G = random_rotations(1, seed=3)[0]
    np.testing.assert_allclose(
        rotation_angle_between(G @ R, G @ S), rotation_angle_between(R, S), atol=1e-9
    )


def test_quaternion_distance_matches_matrix_distance():
    R = random_rotations(300, seed=4)
    S = random_rotations(300, seed=5)
    q, p = matrix_to_quaternion(R), matrix_to_quaternion(S)
    np.testing.assert_allclose(
        np.rad2deg(quaternion_distance(q, p)), rotation_angle_between(R, S), atol=1e-9
    )
    np.testing.assert_allclose(quaternion_distance(q, -q), 0.0, atol=1e-12)
    assert quaternion_distance([1, 0, 0, 0], [0, 1, 0, 0]) == pytest.approx(np.pi)


def test_align_recovers_known_global_rotation_exactly():
    R_true = random_rotations(100, seed=6)
    G = random_rotations(1, seed=7)[0]
    R_est = G.T @ R_true  # so that G @ R_est == R_true
    G_found, aligned, errors = align_rotations(R_est, R_true)
    np.testing.assert_allclose(G_found, G, atol=1e-10)
    np.testing.assert_allclose(aligned, R_true, atol=1e-10)
    assert errors.max() < 1e-6


def test_align_right_side_for_relion_matrices():
    R_true = random_rotations(100, seed=8)
    Q = random_rotations(1, seed=9)[0]
    R_est = R_true @ Q.T  # a map rotated by Q changes each RELION matrix A into A Q^T
    G, aligned, errors = align_rotations(R_est, R_true, side="right")
    np.testing.assert_allclose(G, Q, atol=1e-10)
    assert errors.max() < 1e-6
    # on the wrong side the same data cannot be aligned
    assert align_rotations(R_est, R_true, side="left").errors_deg.mean() > 30


def test_align_finds_the_mirrored_solution_only_when_allowed():
    R_true = random_rotations(200, seed=10)
    G = random_rotations(1, seed=11)[0]
    R_est = J @ (G.T @ R_true) @ J  # orientations of the mirror-image map
    without = align_rotations(R_est, R_true)
    assert np.linalg.det(without.global_rotation) > 0
    assert without.errors_deg.mean() > 30
    G_found, aligned, errors = align_rotations(R_est, R_true, allow_reflection=True)
    assert errors.max() < 1e-6
    assert np.linalg.det(G_found) == pytest.approx(-1.0)
    np.testing.assert_allclose(G_found @ R_est @ J, aligned, atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(aligned), 1.0, atol=1e-12)
    summary = orientation_error_summary(R_est, R_true, allow_reflection=True)
    assert summary["reflected"] is True and summary["max_deg"] < 1e-6
    # an unmirrored set is left unmirrored when reflection is allowed
    plain = orientation_error_summary(G.T @ R_true, R_true, allow_reflection=True)
    assert plain["reflected"] is False and plain["max_deg"] < 1e-6


def test_align_with_noise_reports_the_noise_level():
    R_true = random_rotations(2000, seed=12)
    rng = np.random.default_rng(13)
    axes = rng.standard_normal((2000, 3))
    noise = axis_angle_to_matrix(axes, 5.0)  # every estimate 5 degrees off
    G = random_rotations(1, seed=14)[0]
    R_est = G.T @ noise @ R_true
    summary = orientation_error_summary(R_est, R_true)
    assert summary["median_deg"] == pytest.approx(5.0, abs=0.3)
    assert summary["mean_deg"] == pytest.approx(5.0, abs=0.3)
    assert summary["reflected"] is False


def test_align_bad_inputs():
    with pytest.raises(MismatchError, match="3 estimated rotations but 4"):
        align_rotations(random_rotations(3, seed=0), random_rotations(4, seed=0))
    with pytest.raises(ShapeError):
        align_rotations(np.eye(3), np.eye(3))


def test_refinement_is_robust_to_gross_outliers():
    R_true = random_rotations(500, seed=15)
    G = random_rotations(1, seed=16)[0]
    rng = np.random.default_rng(17)
    noise = axis_angle_to_matrix(rng.standard_normal((500, 3)), 3.0)
    R_est = G.T @ noise @ R_true
    R_est[:150] = random_rotations(150, seed=18)  # 30 % of the estimates are garbage
    plain = align_rotations(R_est, R_true)
    refined = align_rotations(R_est, R_true, refine_iterations=20)
    assert refined.errors_deg.mean() < plain.errors_deg.mean()
    # the good 70 % come back at their noise level (3 deg); least squares is pulled away
    assert np.median(refined.errors_deg[150:]) == pytest.approx(3.0, abs=0.15)
    assert np.median(plain.errors_deg[150:]) > np.median(refined.errors_deg[150:]) + 0.2
    assert rotation_angle_between(refined.global_rotation, G) < 0.6
    assert rotation_angle_between(plain.global_rotation, G) > 1.0
