"""Conversions between matrices, quaternions and RELION ZYZ Euler angles."""

import numpy as np
import pytest

from emkit.errors import NonFiniteError, ShapeError
from emkit.geometry import (
    axis_angle_to_matrix,
    euler_zyz_to_matrix,
    euler_zyz_to_quaternion,
    matrix_to_euler_zyz,
    matrix_to_quaternion,
    matrix_xyz_to_zyx,
    quaternion_conjugate,
    quaternion_multiply,
    quaternion_to_euler_zyz,
    quaternion_to_matrix,
    random_rotations,
)

# Known values worked out by hand from RELION's Euler_angles2matrix,
# A = Rz(psi) Ry(tilt) Rz(rot) with Rz(a) = [[c, s, 0], [-s, c, 0], [0, 0, 1]] and
# Ry(b) = [[c, 0, -s], [0, 1, 0], [s, 0, c]].
RELION_KNOWN = [
    ((0, 0, 0), np.eye(3)),
    ((90, 0, 0), [[0, 1, 0], [-1, 0, 0], [0, 0, 1]]),
    ((0, 90, 0), [[0, 0, -1], [0, 1, 0], [1, 0, 0]]),
    ((0, 0, 90), [[0, 1, 0], [-1, 0, 0], [0, 0, 1]]),
    ((90, 90, 0), [[0, 0, -1], [-1, 0, 0], [0, 1, 0]]),
    ((0, 90, 90), [[0, 1, 0], [0, 0, 1], [1, 0, 0]]),
    ((0, 180, 0), [[-1, 0, 0], [0, 1, 0], [0, 0, -1]]),
]


@pytest.mark.parametrize(("euler", "expected"), RELION_KNOWN)
def test_euler_matches_relion_known_values(euler, expected):
    np.testing.assert_allclose(euler_zyz_to_matrix(euler), expected, atol=1e-12)


def test_projection_direction_is_third_row():
    rot, tilt = 30.0, 60.0
    A = euler_zyz_to_matrix([rot, tilt, 123.0])
    r, t = np.deg2rad(rot), np.deg2rad(tilt)
    direction = [np.sin(t) * np.cos(r), np.sin(t) * np.sin(r), np.cos(t)]
    np.testing.assert_allclose(A.T @ [0, 0, 1], direction, atol=1e-12)


def test_round_trips_on_random_rotations():
    R = random_rotations(1000, seed=3)
    assert R.shape == (1000, 3, 3)
    np.testing.assert_allclose(
        R @ R.transpose(0, 2, 1), np.broadcast_to(np.eye(3), R.shape), atol=1e-12
    )
    np.testing.assert_allclose(np.linalg.det(R), 1.0, atol=1e-12)

    euler = matrix_to_euler_zyz(R)
    assert np.abs(euler_zyz_to_matrix(euler) - R).max() < 1e-9
    assert np.all((euler[:, 1] >= 0) & (euler[:, 1] <= 180))
    assert np.all((euler[:, [0, 2]] > -180) & (euler[:, [0, 2]] <= 180))

    q = matrix_to_quaternion(R)
    assert np.all(q[:, 0] >= 0)
    np.testing.assert_allclose(np.linalg.norm(q, axis=1), 1.0, atol=1e-12)
    assert np.abs(quaternion_to_matrix(q) - R).max() < 1e-9

    # euler -> quaternion -> euler gives the same rotation (and the same angles off gimbal lock)
    e2 = quaternion_to_euler_zyz(euler_zyz_to_quaternion(euler))
    np.testing.assert_allclose(e2, euler, atol=1e-9)


def test_round_trip_of_angles_in_canonical_range():
    rng = np.random.default_rng(0)
    euler = np.stack(
        [rng.uniform(-179, 179, 500), rng.uniform(1, 179, 500), rng.uniform(-179, 179, 500)],
        axis=1,
    )
    np.testing.assert_allclose(matrix_to_euler_zyz(euler_zyz_to_matrix(euler)), euler, atol=1e-9)


@pytest.mark.parametrize("tilt", [0.0, 180.0, 1e-9, 180.0 - 1e-9])
def test_gimbal_lock_is_deterministic(tilt):
    # only rot + psi (tilt 0) or rot - psi (tilt 180) is defined: rot is set to 0
    euler = np.array([[30.0, tilt, 50.0], [-170.0, tilt, 120.0], [0.0, tilt, 0.0]])
    A = euler_zyz_to_matrix(euler)
    back = matrix_to_euler_zyz(A)
    np.testing.assert_array_equal(back[:, 0], 0.0)
    assert np.abs(euler_zyz_to_matrix(back) - A).max() < 1e-9
    expected_psi = [80.0, -50.0, 0.0] if tilt < 90 else [20.0, -70.0, 0.0]
    np.testing.assert_allclose(back[:, 2], expected_psi, atol=1e-6)
    np.testing.assert_allclose(back[:, 1], round(tilt), atol=1e-6)


def test_near_gimbal_lock_keeps_precision():
    for tilt in (1e-6, 1e-4, 180 - 1e-6):
        A = euler_zyz_to_matrix([[33.0, tilt, -71.0]])
        assert np.abs(euler_zyz_to_matrix(matrix_to_euler_zyz(A)) - A).max() < 1e-12


def test_quaternion_half_turns_are_canonical():
    R = axis_angle_to_matrix(np.eye(3), 180.0)
    q = matrix_to_quaternion(R)
    np.testing.assert_allclose(q, np.eye(4)[1:], atol=1e-12)
    # w == 0: (0, 0, -s, s) is flipped so the first non-zero component is positive
    q2 = matrix_to_quaternion(axis_angle_to_matrix([0.0, -1.0, 1.0], 180.0))
    np.testing.assert_allclose(q2, [0, 0, np.sqrt(0.5), -np.sqrt(0.5)], atol=1e-12)
    assert q2[0] == 0.0


def test_quaternion_product_composes_like_matrices():
    R = random_rotations(50, seed=4)
    S = random_rotations(50, seed=5)
    p, q = matrix_to_quaternion(R), matrix_to_quaternion(S)
    np.testing.assert_allclose(quaternion_to_matrix(quaternion_multiply(p, q)), R @ S, atol=1e-12)
    np.testing.assert_allclose(
        quaternion_to_matrix(quaternion_conjugate(p)), R.transpose(0, 2, 1), atol=1e-12
    )
    ident = quaternion_multiply(p, quaternion_conjugate(p))
    np.testing.assert_allclose(ident, np.broadcast_to([1.0, 0, 0, 0], ident.shape), atol=1e-12)


def test_axis_angle_is_right_handed_and_active():
    np.testing.assert_allclose(
        axis_angle_to_matrix([0, 0, 1], 90) @ [1, 0, 0], [0, 1, 0], atol=1e-12
    )
    np.testing.assert_allclose(
        axis_angle_to_matrix([1, 0, 0], 90) @ [0, 1, 0], [0, 0, 1], atol=1e-12
    )
    # RELION's elementary rotations are the transposes (passive)
    np.testing.assert_allclose(
        euler_zyz_to_matrix([40, 0, 0]), axis_angle_to_matrix([0, 0, 1], -40), atol=1e-12
    )
    np.testing.assert_allclose(
        euler_zyz_to_matrix([0, 40, 0]), axis_angle_to_matrix([0, 1, 0], -40), atol=1e-12
    )
    batch = axis_angle_to_matrix(np.tile([0.0, 0.0, 2.0], (5, 1)), np.arange(5) * 10.0)
    assert batch.shape == (5, 3, 3)


def test_matrix_xyz_to_zyx_acts_on_reversed_vectors():
    R = random_rotations(1, seed=6)[0]
    v_xyz = np.array([0.3, -1.2, 2.0])
    np.testing.assert_allclose(matrix_xyz_to_zyx(R) @ v_xyz[::-1], (R @ v_xyz)[::-1], atol=1e-12)
    np.testing.assert_array_equal(matrix_xyz_to_zyx(matrix_xyz_to_zyx(R)), R)


def test_bad_inputs_raise_emkit_errors():
    with pytest.raises(ShapeError, match=r"\(\.\.\., 3\)"):
        euler_zyz_to_matrix([1.0, 2.0])
    with pytest.raises(ShapeError):
        matrix_to_quaternion(np.eye(4))
    with pytest.raises(NonFiniteError):
        matrix_to_euler_zyz(np.full((3, 3), np.nan))
    with pytest.raises(ShapeError, match="zero length"):
        quaternion_to_matrix([0.0, 0.0, 0.0, 0.0])
    with pytest.raises(ShapeError, match="zero length"):
        axis_angle_to_matrix([0.0, 0.0, 0.0], 10.0)


def test_relion_matrix_is_transpose_of_scipy_intrinsic_zyz():
    # independent check: RELION's A is the transpose of the active intrinsic Z-Y-Z rotation
    from scipy.spatial.transform import Rotation

    rng = np.random.default_rng(9)
    euler = rng.uniform([-180, 0, -180], [180, 180, 180], size=(200, 3))
    scipy_active = Rotation.from_euler("ZYZ", euler, degrees=True).as_matrix()
    np.testing.assert_allclose(
        euler_zyz_to_matrix(euler), scipy_active.transpose(0, 2, 1), atol=1e-12
    )
