"""Quality metrics: endpoint error and similarity outside the defect."""

from __future__ import annotations

import numpy as np
import pytest

from emkit.register import endpoint_error, similarity
from emkit.sim.sections import section_texture


def test_endpoint_error_values():
    true = np.zeros((2, 20, 20), np.float32)
    est = np.zeros((2, 20, 20), np.float32)
    est[0, :, :10] = 3.0
    est[1, :, :10] = 4.0  # error 5 on the left half, 0 on the right
    valid = np.ones((20, 20), bool)
    defect = np.zeros((20, 20), bool)
    defect[:, 0] = True
    valid[:, 0] = False
    out = endpoint_error(est, true, valid=valid, defect_fixed=defect, near_px=3)
    assert out["epe_mean_px"] == pytest.approx(5.0 * 9 / 19)
    assert out["epe_max_px"] == pytest.approx(5.0)
    assert out["epe_near_defect_mean_px"] == pytest.approx(5.0)
    assert out["n_pixels"] == 380


def test_endpoint_error_rejects_bad_shapes_and_empty():
    f = np.zeros((2, 5, 5), np.float32)
    with pytest.raises(ValueError):
        endpoint_error(f, np.zeros((2, 5, 6), np.float32), valid=np.ones((5, 5), bool))
    with pytest.raises(ValueError, match="no valid"):
        endpoint_error(f, f, valid=np.zeros((5, 5), bool))


def test_similarity_identical_shifted_and_masked():
    image = section_texture((128, 128), seed=3)
    same = similarity(image, image)
    assert same["ncc"] == pytest.approx(1.0)
    assert same["ssim"] == pytest.approx(1.0, abs=1e-6)
    shifted = similarity(image, np.roll(image, 7, axis=1))
    assert shifted["ncc"] < 0.5 and shifted["nmi"] < same["nmi"]
    # Garbage inside an excluded region does not count.
    broken = image.copy()
    broken[:, :20] = 0
    valid = np.ones(image.shape, bool)
    valid[:, :30] = False
    assert similarity(image, broken, valid=valid)["ncc"] == pytest.approx(1.0)
