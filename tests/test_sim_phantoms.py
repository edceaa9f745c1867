"""Shepp-Logan and random-ellipsoid phantoms."""

import numpy as np
import pytest
from scipy import ndimage

from emkit.errors import InputError, ShapeError
from emkit.sim import random_ellipsoids, shepp_logan_3d


def test_shepp_logan_shape_dtype_range():
    vol = shepp_logan_3d((40, 48, 56))
    assert vol.shape == (40, 48, 56) and vol.dtype == np.float32
    assert vol.min() == 0.0 and vol.max() == 1.0
    # the modified intensities: background 0, skull 1, brain 0.2, small features 0.3
    values = np.unique(vol)
    for expected in (0.0, 0.2, 0.3, 1.0):
        assert np.isclose(values, expected, atol=1e-6).any()
    assert shepp_logan_3d((8, 8, 8), dtype=np.float64).dtype == np.float64


def test_shepp_logan_centre_and_symmetry():
    vol = shepp_logan_3d((64, 64, 64))
    # the middle of the brain (between the ventricles) has the brain value
    assert vol[32, 32, 32] == pytest.approx(0.2)
    assert vol[0, 0, 0] == 0.0
    # the skull (outer shell, value 1) is centred at x = 0 and z = 0: mirror-symmetric there
    skull = vol > 0.9
    assert skull.sum() > 1000
    np.testing.assert_array_equal(skull, skull[:, :, ::-1])
    np.testing.assert_array_equal(skull, skull[::-1, :, :])
    # the inner ellipsoids are not symmetric: the mirror differs somewhere inside
    assert not np.array_equal(vol, vol[:, :, ::-1])


def test_random_ellipsoids_seeded():
    a = random_ellipsoids((32, 40, 48), seed=5)
    b = random_ellipsoids((32, 40, 48), seed=5)
    c = random_ellipsoids((32, 40, 48), seed=6)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert a.shape == (32, 40, 48) and a.dtype == np.float32
    assert a.min() >= 0.0 and a.max() == pytest.approx(1.0)
    assert 0.02 < (a > 0).mean() < 0.9  # overlapping blobs, not empty, not solid


def test_random_ellipsoids_smoothing_and_many_scales():
    sharp = random_ellipsoids((48, 48, 48), seed=2)
    smooth = random_ellipsoids((48, 48, 48), seed=2, smooth_sigma=1.5)
    # smoothing is a Gaussian blur of the same phantom (then rescaled to a maximum of 1)
    blurred = ndimage.gaussian_filter(sharp.astype(np.float64), 1.5)
    assert np.corrcoef(blurred.ravel(), smooth.ravel())[0, 1] > 0.999
    assert smooth.max() == pytest.approx(1.0)
    assert np.corrcoef(sharp.ravel(), smooth.ravel())[0, 1] < 0.99
    # more than one distinct intensity level (overlaps and different intensities)
    assert len(np.unique(np.round(sharp, 4))) > 10


def test_bad_shapes_and_parameters():
    with pytest.raises(ShapeError):
        shepp_logan_3d((32, 32))
    with pytest.raises(ShapeError):
        random_ellipsoids((0, 4, 4), seed=0)
    with pytest.raises(InputError):
        random_ellipsoids((8, 8, 8), seed=0, n_ellipsoids=0)
    with pytest.raises(InputError):
        random_ellipsoids((8, 8, 8), seed=0, min_semi_axis=0.5, max_semi_axis=0.1)
