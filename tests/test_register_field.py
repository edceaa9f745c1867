"""Field conventions: warping, composition, validity, the per-pixel affine inverse."""

from __future__ import annotations

import numpy as np
import pytest

from emkit.register import compose_fields, field_validity, warp_image
from emkit.register._field import AffineMap, affine_field, invert_affine_map
from emkit.register._pathdist import build_coarse_grid


def _ramp(h=40, w=50):
    yy, xx = np.mgrid[0:h, 0:w]
    return (3.0 * yy + xx).astype(np.float32)


def test_warp_reads_moving_at_q_plus_field():
    moving = _ramp()
    field = np.zeros((2, 40, 50), np.float32)
    field[0] = 2.0  # dy
    field[1] = -1.5  # dx
    warped = warp_image(moving, field)
    # warped[y, x] = moving[y + 2, x - 1.5]; exact for a linear ramp away from the border.
    np.testing.assert_allclose(warped[5:30, 5:40], (moving + 3 * 2.0 - 1.5)[5:30, 5:40])


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int32, np.float64])
def test_warp_keeps_dtype_and_fills(dtype):
    moving = (np.arange(40 * 50).reshape(40, 50) % 200).astype(dtype)
    field = np.zeros((2, 40, 50), np.float32)
    field[1] = 100.0  # everything outside
    warped = warp_image(moving, field, fill_value=9)
    assert warped.dtype == dtype
    assert (warped == 9).all()


def test_compose_two_shifts():
    a = np.zeros((2, 30, 30), np.float32)
    a[0], a[1] = 1.0, 2.0
    b = np.zeros((2, 30, 30), np.float32)
    b[0], b[1] = -0.5, 4.0
    out = compose_fields(a, b)[:, 5:20, 5:20]
    np.testing.assert_allclose(out[0], 0.5)
    np.testing.assert_allclose(out[1], 6.0)


def test_compose_reads_inner_at_the_moved_position():
    outer = np.zeros((2, 30, 30), np.float32)
    outer[1] = 3.0
    inner = np.zeros((2, 30, 30), np.float32)
    inner[0] = np.arange(30, dtype=np.float32)[None, :]  # dy grows with x
    out = compose_fields(outer, inner)
    # result(q) = outer + inner(q + (0, 3)) = (x + 3, 3)
    np.testing.assert_allclose(out[0, 10, 5:20], np.arange(5, 20) + 3.0)
    np.testing.assert_allclose(out[1], 3.0)


def test_validity_outside_and_in_defect():
    field = np.zeros((2, 20, 20), np.float32)
    field[1] = 5.0
    defect = np.zeros((20, 20), bool)
    defect[:, 10] = True
    valid = field_validity(field, defect, (20, 20))
    assert not valid[:, 15:].any()  # x + 5 > 19
    # x + 5 within one pixel of column 10 -> x in 4..6
    assert not valid[:, 4:7].any()
    assert valid[:, :4].all() and valid[:, 7:15].all()


def test_affine_field_inverts_the_affine():
    affine = np.array([[1.01, 0.02, 3.0], [-0.015, 0.99, -2.0]])
    field = affine_field(affine, (25, 35))
    y, x = 12, 20
    px, py = x + field[1, y, x], y + field[0, y, x]
    np.testing.assert_allclose(affine @ [px, py, 1.0], [x, y], atol=1e-4)


def test_inverse_of_a_constant_affine_map():
    affine = np.array([[0.99, -0.03, 4.0], [0.03, 0.99, -6.0]])
    grid = build_coarse_grid(np.zeros((64, 80), bool), 8)
    cells = np.zeros(grid.shape + (7,), np.float32)
    cells[..., :6] = affine.ravel()
    cells[..., 6] = 1.0
    amap = AffineMap.build(grid, cells, None, affine)
    field, converged = invert_affine_map(amap, (64, 80), start_affine=np.eye(2, 3))
    assert converged.all()
    np.testing.assert_allclose(field, affine_field(affine, (64, 80)), atol=1e-3)
