"""Random rotations, SO(3) grids and Fibonacci spheres."""

import numpy as np
import pytest
from scipy import stats

from emkit.errors import InputError
from emkit.geometry import (
    euler_zyz_to_matrix,
    fibonacci_sphere,
    matrix_to_quaternion,
    random_quaternions,
    random_rotations,
    rotation_angle_between,
    so3_grid,
)


def _angle_cdf(theta):
    # Haar measure: the rotation angle has density (1 - cos t) / pi on [0, pi]
    return (theta - np.sin(theta)) / np.pi


def test_random_rotations_are_seeded():
    np.testing.assert_array_equal(random_rotations(10, seed=1), random_rotations(10, seed=1))
    assert not np.allclose(random_rotations(10, seed=1), random_rotations(10, seed=2))
    q = random_quaternions(10, seed=1)
    assert q.shape == (10, 4) and np.all(q[:, 0] >= 0)


def test_random_rotations_are_uniform():
    R = random_rotations(20000, seed=7)
    # the Haar mean of a rotation matrix is 0; each entry has std 1/sqrt(3 n) ~ 0.004
    assert np.abs(R.mean(axis=0)).max() < 0.02
    angles = np.deg2rad(rotation_angle_between(np.eye(3), R))
    assert stats.kstest(angles, _angle_cdf).pvalue > 0.01
    # the projection direction (third row) is uniform on the sphere: z uniform on [-1, 1]
    assert stats.kstest(R[:, 2, 2], stats.uniform(loc=-1, scale=2).cdf).pvalue > 0.01


def test_uniform_euler_angles_fail_the_same_uniformity_check():
    # negative control: angles drawn uniformly are NOT uniform rotations; the test must see it
    rng = np.random.default_rng(7)
    euler = rng.uniform([-180, 0, -180], [180, 180, 180], size=(20000, 3))
    angles = np.deg2rad(rotation_angle_between(np.eye(3), euler_zyz_to_matrix(euler)))
    assert stats.kstest(angles, _angle_cdf).pvalue < 1e-6


def test_fibonacci_sphere_is_unit_and_even():
    v = fibonacci_sphere(1000)
    assert v.shape == (1000, 3)
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-12)
    np.testing.assert_allclose(v.mean(axis=0), 0.0, atol=2e-3)
    # equal areas: z is evenly spaced
    np.testing.assert_allclose(np.diff(np.sort(v[:, 2])), 2.0 / 1000, atol=1e-12)


def _covering_radius_deg(grid, probes):
    dots = np.abs(matrix_to_quaternion(probes) @ matrix_to_quaternion(grid).T).max(axis=1)
    return np.rad2deg(2 * np.arccos(np.clip(dots, -1, 1)))


def test_so3_grid_size_and_coverage():
    grid = so3_grid(5000)
    assert abs(len(grid) - 5000) < 250
    np.testing.assert_allclose(np.linalg.det(grid), 1.0, atol=1e-12)
    probes = random_rotations(2000, seed=11)
    cover = _covering_radius_deg(grid, probes)
    random_cover = _covering_radius_deg(random_rotations(len(grid), seed=12), probes)
    # a perfect covering of SO(3) by 5000 balls needs radius >= ~8.9 deg
    assert cover.max() < 13.0
    assert cover.max() < 0.75 * random_cover.max()
    np.testing.assert_array_equal(so3_grid(5000), grid)


@pytest.mark.parametrize("bad", [0, -3, 2.5])
def test_bad_counts(bad):
    with pytest.raises(InputError):
        so3_grid(bad)
    with pytest.raises(InputError):
        random_rotations(bad, seed=0)
