"""Shift/rotation resampling, validity masks, gauge removal and .xf/.aln conversion."""

import numpy as np
import pytest
from scipy import ndimage

from emkit.errors import InputError, MismatchError, ShapeError
from emkit.tomo import (
    alignment_from_xf,
    remove_gauge,
    shift_images,
    shift_rmse,
    shifts_from_aln,
    transform_images,
    validity_masks,
    xf_from_alignment,
)


def _blobs(shape=(3, 48, 64), seed=0):
    rng = np.random.default_rng(seed)
    return ndimage.gaussian_filter(rng.normal(size=shape), (0, 3, 3)).astype(np.float32)


def test_integer_shift_moves_content_by_the_shift():
    stack = _blobs()
    out = shift_images(stack, np.array([[2, -3], [0, 0], [-1, 4]]), fill=0.0)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out[0, 2:, :-3], stack[0, :-2, 3:])
    np.testing.assert_array_equal(out[1], stack[1])
    np.testing.assert_array_equal(out[2, :-1, 4:], stack[2, 1:, :-4])
    assert np.all(out[0, :2] == 0)


def test_subpixel_shift_matches_scipy_and_round_trips():
    stack = _blobs()
    shifts = np.array([[0.3, -1.7], [2.5, 0.25], [-0.6, 0.0]])
    out = shift_images(stack, shifts)
    for i in range(3):
        ref = ndimage.shift(stack[i], shifts[i], order=3, mode="constant", cval=stack[i].mean())
        np.testing.assert_allclose(out[i], ref, atol=1e-5)
    back = shift_images(out, -shifts)
    inner = (slice(None), slice(6, -6), slice(6, -6))
    np.testing.assert_allclose(back[inner], stack[inner], atol=0.02 * np.abs(stack).max())


def test_rotation_brings_a_tilted_line_onto_y():
    image = np.zeros((1, 65, 65), np.float32)
    # A line through the centre at 20 deg from +y towards -x: direction (x, y) =
    # (-sin 20, cos 20) in array coordinates (column, row).
    cy = cx = 32.0
    for y in range(65):
        x = cx - (y - cy) * np.tan(np.deg2rad(20.0))
        if 0 <= x < 64:
            image[0, y, int(round(x))] = 1.0
    image = ndimage.gaussian_filter(image, (0, 1, 1))
    out = transform_images(image, np.zeros((1, 2)), tilt_axis_angle_deg=20.0, fill=0.0)
    column_profile = out[0, 16:48].sum(axis=0)
    assert abs(int(np.argmax(column_profile)) - 32) <= 1
    # A vertical Gaussian line (sigma 1 px) puts ~40 % of each row's mass in its column.
    assert column_profile.max() > 0.3 * out[0].sum() / 65 * 32


def test_validity_masks_mark_pixels_from_outside():
    masks = validity_masks((2, 20, 30), np.array([[0.0, 5.0], [-3.0, 0.0]]), margin_px=0.0)
    assert masks.shape == (2, 20, 30) and masks.dtype == bool
    assert not masks[0, :, :5].any() and masks[0, :, 5:].all()
    assert not masks[1, -3:, :].any() and masks[1, :-3, :].all()


def test_shift_count_must_match():
    with pytest.raises(ShapeError):
        shift_images(_blobs(), np.zeros((2, 2)))


def test_rigid_gauge_removes_specimen_translation_only():
    angles = np.arange(-60, 61, 3.0)
    t = np.deg2rad(angles)
    rng = np.random.default_rng(1)
    real = rng.normal(size=(len(angles), 2))
    specimen = np.stack([np.full_like(t, 2.0), 3.0 * np.cos(t) - 1.5 * np.sin(t)], axis=1)
    cleaned = remove_gauge(real + specimen, angles, gauge="rigid")
    np.testing.assert_allclose(cleaned, remove_gauge(real, angles, gauge="rigid"), atol=1e-9)
    # A constant x shift moves the tilt axis: it is not a gauge, so it is not removed fully.
    constant = np.zeros_like(real)
    constant[:, 1] = 1.0
    assert np.abs(remove_gauge(constant, angles, gauge="rigid")[:, 1]).max() > 0.05
    assert shift_rmse(real + specimen, real, angles, gauge="rigid") < 1e-9
    assert shift_rmse(real + 5.0, real) < 1e-9


def test_xf_round_trip_with_rotation():
    shifts = np.array([[1.5, -2.0], [0.0, 3.25], [-4.0, 0.5]])
    xf = xf_from_alignment(shifts, 12.5)
    back, angles = alignment_from_xf(xf)
    np.testing.assert_allclose(back, shifts)
    np.testing.assert_allclose(angles, 12.5)
    assert np.all(np.signbit(xf_from_alignment(shifts)[:, 1, 0]) == 0)


def test_xf_with_magnification_is_refused_with_the_file_name():
    xf = xf_from_alignment(np.zeros((3, 2)))
    xf[1, :, :2] *= 1.05
    with pytest.raises(InputError, match="ts.xf"):
        alignment_from_xf(xf, path="ts.xf")


def test_aln_shifts_use_rotation_and_negated_translation():
    aln = {
        "section": np.arange(3),
        "tilt_axis_deg": np.zeros(3),
        "mag": np.ones(3),
        "tx_px": np.array([1.0, -2.0, 0.0]),
        "ty_px": np.array([0.5, 0.0, 3.0]),
    }
    shifts, axis = shifts_from_aln(aln, 3)
    np.testing.assert_allclose(shifts, [[-0.5, -1.0], [0.0, 2.0], [-3.0, 0.0]])
    np.testing.assert_allclose(axis, 0.0)
    with pytest.raises(MismatchError, match="ts.aln"):
        shifts_from_aln(aln, 4, path="ts.aln")
