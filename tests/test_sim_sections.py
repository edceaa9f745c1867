"""Synthetic damaged sections: the true field must really map the moving image onto the fixed."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from scipy import ndimage

from emkit.errors import InputError, ShapeError
from emkit.sim.sections import section_texture, simulate_damaged_section


def _warp(moving: np.ndarray, field: np.ndarray) -> np.ndarray:
    h, w = moving.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    return cv2.remap(moving.astype(np.float32), xx + field[1], yy + field[0], cv2.INTER_LINEAR)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_texture_dtype_range_and_seed(dtype):
    a = section_texture((96, 128), seed=3, dtype=dtype)
    b = section_texture((96, 128), seed=3, dtype=dtype)
    c = section_texture((96, 128), seed=4, dtype=dtype)
    assert a.shape == (96, 128) and a.dtype == dtype
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    top = 1.0 if dtype == np.float32 else np.iinfo(dtype).max
    assert a.min() >= 0 and a.max() <= top
    # Texture, not a flat image: plenty of contrast.
    assert a.astype(np.float64).std() > 0.1 * top


@pytest.mark.parametrize("kind", ["fold", "crack"])
@pytest.mark.parametrize("seed", [0, 5])
def test_true_field_maps_moving_onto_fixed(kind, seed):
    # Smoothed so that resampling twice (simulate, then warp back) loses nothing.
    fixed = ndimage.gaussian_filter(section_texture((256, 256), seed=1, dtype=np.float32), 2.0)
    damaged = simulate_damaged_section(fixed, kind=kind, seed=seed, noise=0.0)
    assert damaged.moving.dtype == fixed.dtype
    assert damaged.true_field.shape == (2, 256, 256)
    assert damaged.true_field.dtype == np.float32
    assert np.isfinite(damaged.true_field).all()
    assert 0.005 < damaged.defect_mask.mean() < 0.25
    assert 0.6 < damaged.true_valid.mean() < 0.999
    # Where the fixed tissue is visible, warping the moving image with the true field
    # gives it back (up to the gain and offset of the simulation).
    warped = _warp(damaged.moving, damaged.true_field)
    valid = damaged.true_valid
    assert np.corrcoef(warped[valid], fixed[valid])[0, 1] > 0.999
    # ... and a field off by one pixel does not.
    off = damaged.true_field + np.array([0.0, 1.0], np.float32)[:, None, None]
    assert np.corrcoef(_warp(damaged.moving, off)[valid], fixed[valid])[0, 1] < 0.99
    # The two sides moved differently: the field is far from one translation.
    spread = np.ptp(damaged.true_field[:, valid], axis=1).max()
    assert spread > 4.0


def test_fold_is_dark_and_crack_is_bright():
    fixed = section_texture((256, 256), seed=2)
    fold = simulate_damaged_section(fixed, kind="fold", seed=1)
    crack = simulate_damaged_section(fixed, kind="crack", seed=1)
    tissue_mean = fixed.mean()
    assert fold.moving[fold.defect_mask].mean() < 0.6 * tissue_mean
    assert crack.moving[crack.defect_mask].mean() > tissue_mean
    # The defect seen from the fixed frame lies next to invalid pixels, not in valid ones.
    assert not (fold.defect_mask_fixed & fold.true_valid).any()


def test_same_seed_same_section():
    fixed = section_texture((128, 128), seed=0)
    a = simulate_damaged_section(fixed, seed=7)
    b = simulate_damaged_section(fixed, seed=7)
    np.testing.assert_array_equal(a.moving, b.moving)
    np.testing.assert_array_equal(a.true_field, b.true_field)


def test_bad_arguments():
    # emkit's own error family (the CLI reports these as user errors, exit 2).
    with pytest.raises(InputError, match="unknown defect kind"):
        simulate_damaged_section(np.zeros((128, 128)), kind="tear")
    with pytest.raises(ShapeError, match="at least 64x64"):
        simulate_damaged_section(np.zeros((32, 128)))
    with pytest.raises(ShapeError, match="too small"):
        section_texture((8, 8))
