"""Single-axis tilt geometry."""

import numpy as np
import pytest

from emkit.errors import InputError
from emkit.geometry import euler_zyz_to_matrix, tilt_angles, tilt_axis_rotation_xy, tilt_rotation


def test_positive_tilt_moves_upper_material_to_plus_x():
    t = 30.0
    R = tilt_rotation(t)
    # x' = x cos t + z sin t, y' = y
    np.testing.assert_allclose(
        R @ [0, 0, 1], [np.sin(np.deg2rad(t)), 0, np.cos(np.deg2rad(t))], atol=1e-12
    )
    np.testing.assert_allclose(R @ [0, 1, 0], [0, 1, 0], atol=1e-12)
    np.testing.assert_allclose(R, euler_zyz_to_matrix([0, -t, 0]), atol=1e-12)


def test_tilt_rotation_batches_and_axis_angle():
    angles = tilt_angles(-60, 60, 2)
    R = tilt_rotation(angles)
    assert R.shape == (61, 3, 3)
    np.testing.assert_allclose(R[30], np.eye(3), atol=1e-12)
    # a tilt axis at 90 deg from y (counter-clockwise) points along -x and stays fixed
    R90 = tilt_rotation(25.0, tilt_axis_angle_deg=90.0)
    np.testing.assert_allclose(R90 @ [-1, 0, 0], [-1, 0, 0], atol=1e-12)
    assert not np.allclose(R90 @ [0, 1, 0], [0, 1, 0])


def test_tilt_angles_like_imod():
    a = tilt_angles(-60, 60, 2)
    assert a.shape == (61,) and a[0] == -60 and a[-1] == 60
    np.testing.assert_allclose(tilt_angles(60, -60, -3)[:3], [60, 57, 54])
    assert tilt_angles(-60, 60, 7)[-1] == pytest.approx(59.0)  # 60 is off the step grid
    np.testing.assert_allclose(
        tilt_angles(-0.3, 0.3, 0.1), [-0.3, -0.2, -0.1, 0, 0.1, 0.2, 0.3], atol=1e-12
    )


def test_tilt_angles_bad_steps():
    with pytest.raises(InputError, match="step_deg is 0"):
        tilt_angles(-60, 60, 0)
    with pytest.raises(InputError, match="flip the sign"):
        tilt_angles(-60, 60, -2)


@pytest.mark.parametrize("angle_deg", [0.0, 12.5, -85.0, 90.0])
def test_tilt_axis_rotation_turns_the_axis_onto_plus_y(angle_deg: float) -> None:
    a = np.deg2rad(angle_deg)
    axis_xy = np.array([-np.sin(a), np.cos(a)])  # from +y towards -x by angle_deg
    R = tilt_axis_rotation_xy(angle_deg)
    np.testing.assert_allclose(R @ axis_xy, [0.0, 1.0], atol=1e-12)
    np.testing.assert_allclose(R @ R.T, np.eye(2), atol=1e-12)
    assert np.linalg.det(R) == pytest.approx(1.0)
