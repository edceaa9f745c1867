"""Pair registration: accuracy on synthetic folds and cracks with a known field, baselines,
dtypes and bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from emkit.errors import InputError, MismatchError, NonFiniteError, ShapeError
from emkit.register import endpoint_error, register_pair, similarity
from emkit.sim.sections import section_texture, simulate_damaged_section

SECTIONS = Path(__file__).parents[1] / ".." / "shared" / "data" / "sections"


def _score(fixed, damaged, method, **options):
    # The affine models as such: the elastic refinement has its own tests.
    options.setdefault("refine", "none")
    result = register_pair(
        fixed, damaged.moving, defect_mask=damaged.defect_mask, method=method, **options
    )
    scored = result.valid & damaged.true_valid
    if method == "expected-affine":
        # Almost all visible tissue must be kept: an estimate may not dodge the score by
        # declaring hard pixels invalid.
        assert scored.sum() > 0.99 * damaged.true_valid.sum()
    return endpoint_error(
        result.field, damaged.true_field, valid=scored, defect_fixed=damaged.defect_mask_fixed
    )


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["fold", "crack"])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_expected_affine_accuracy_synthetic(kind, seed):
    fixed = section_texture((512, 512), seed=seed)
    damaged = simulate_damaged_section(fixed, kind=kind, seed=seed)
    ea = _score(fixed, damaged, "expected-affine")
    ga = _score(fixed, damaged, "global-affine")
    assert ea["epe_mean_px"] <= 0.5
    assert ea["epe_p95_px"] <= 2.0
    assert ea["epe_near_defect_p95_px"] <= 2.0
    # One affine cannot follow two pieces of tissue: far worse.
    assert ga["epe_mean_px"] > 3 * ea["epe_mean_px"]
    assert ga["epe_mean_px"] > 1.0


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["fold", "crack"])
def test_expected_affine_accuracy_real_texture(kind):
    """A synthetic defect on a real section (DOLW7, fixed image) instead of the texture."""
    import cv2

    path = SECTIONS / "DOLW7_0.png"
    if not path.is_file():
        pytest.skip(f"{path} not found (reference data absent)")
    fixed = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)[100:900, 100:900]
    damaged = simulate_damaged_section(fixed, kind=kind, seed=4)
    ea = _score(fixed, damaged, "expected-affine")
    ga = _score(fixed, damaged, "global-affine")
    assert ea["epe_mean_px"] <= 0.5
    assert ea["epe_p95_px"] <= 2.0
    assert ga["epe_mean_px"] > 3 * ea["epe_mean_px"]


def test_without_mask_recovers_a_global_affine():
    fixed = section_texture((320, 320), seed=11)
    import cv2

    # Moving = fixed seen through one affine (rotation 2 deg, shift (3.5, -2)).
    affine = cv2.getRotationMatrix2D((160, 160), 2.0, 1.01)
    affine[:, 2] += (3.5, -2.0)
    moving = cv2.warpAffine(fixed, affine, (320, 320), flags=cv2.INTER_LINEAR)
    result = register_pair(fixed, moving)
    # True field: fixed q -> moving A q.
    yy, xx = np.mgrid[0:320, 0:320].astype(np.float64)
    true = np.stack(
        [
            affine[1, 0] * xx + affine[1, 1] * yy + affine[1, 2] - yy,
            affine[0, 0] * xx + affine[0, 1] * yy + affine[0, 2] - xx,
        ]
    ).astype(np.float32)
    inside = np.zeros((320, 320), bool)
    inside[20:-20, 20:-20] = True
    err = endpoint_error(result.field, true, valid=result.valid & inside)
    assert err["epe_mean_px"] < 0.2
    assert similarity(fixed, result.warped, valid=result.valid & inside)["ncc"] > 0.95


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_output_keeps_dtype_and_fill(dtype):
    fixed = section_texture((256, 256), seed=5, dtype=dtype)
    damaged = simulate_damaged_section(fixed, kind="crack", seed=2)
    result = register_pair(fixed, damaged.moving, defect_mask=damaged.defect_mask, fill_value=7)
    assert result.warped.dtype == dtype
    assert result.warped.shape == fixed.shape
    assert result.field.dtype == np.float32 and result.field.shape == (2, 256, 256)
    assert np.isfinite(result.field).all()
    assert (result.warped[~result.valid] == 7).all()
    # The crack band maps to no fixed pixel... and pixels next to it are still kept.
    assert 0.85 < result.valid.mean() < 0.995


def test_same_seed_same_result():
    fixed = section_texture((256, 256), seed=6)
    damaged = simulate_damaged_section(fixed, kind="fold", seed=6)
    a = register_pair(fixed, damaged.moving, defect_mask=damaged.defect_mask, seed=3)
    b = register_pair(fixed, damaged.moving, defect_mask=damaged.defect_mask, seed=3)
    np.testing.assert_array_equal(a.field, b.field)


def test_clusters_respect_the_defect():
    """With two clusters asked for, each must lie on one side of a fold that cuts the image."""
    fixed = section_texture((320, 320), seed=8)
    damaged = simulate_damaged_section(fixed, kind="fold", seed=8)
    result = register_pair(fixed, damaged.moving, defect_mask=damaged.defect_mask, n_clusters=2)
    assert result.info["n_clusters"] == 2
    # Two clusters = the two sides' affines, which differ by several pixels somewhere.
    a, b = result.affines
    corners = np.array([[0, 0, 1], [319, 0, 1], [0, 319, 1], [319, 319, 1]], float).T
    assert np.abs(a @ corners - b @ corners).max() > 3.0


def test_bad_input_errors():
    image = section_texture((128, 128), seed=0)
    with pytest.raises(MismatchError, match="same size"):
        register_pair(image, image[:100])
    with pytest.raises(MismatchError, match="mask"):
        register_pair(image, image, defect_mask=np.zeros((100, 128)))
    with pytest.raises(InputError, match="whole image"):
        register_pair(image, image, defect_mask=np.ones((128, 128)))
    with pytest.raises(ShapeError):
        register_pair(np.zeros((4, 128, 128)), np.zeros((4, 128, 128)))
    bad = image.astype(np.float32)
    bad[3, 3] = np.nan
    with pytest.raises(NonFiniteError):
        register_pair(bad, bad)
    with pytest.raises(InputError, match="matching features"):
        register_pair(np.full((128, 128), 9, np.uint8), image)
    with pytest.raises(InputError, match="method"):
        register_pair(image, image, method="elastic")
