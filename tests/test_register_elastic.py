"""Elastic refinement: accuracy on held-out damaged pairs with smooth non-affine warps.

The seeds here were not used to choose the refinement's defaults (those were tuned on
fold/crack seeds 1-4 with textures 11-14 at 512 x 512).
"""

from __future__ import annotations

import numpy as np
import pytest

from emkit.errors import InputError
from emkit.register import ElasticOptions, invert_field, refine_elastic, register_pair
from emkit.register._elastic import _masked_ncc, side_labels
from emkit.sim.sections import section_texture, simulate_damaged_section, smooth_random_field


def _epe(field: np.ndarray, damaged, valid: np.ndarray) -> tuple[float, float]:
    scored = damaged.true_valid & valid
    error = np.sqrt(((field - damaged.true_field) ** 2).sum(axis=0))[scored]
    return float(error.mean()), float(np.percentile(error, 95))


@pytest.fixture(scope="module", params=[("fold", 31, (448, 512)), ("crack", 32, (512, 448))])
def elastic_pair(request):
    kind, seed, shape = request.param
    fixed = section_texture(shape, seed=seed + 10)
    damaged = simulate_damaged_section(fixed, kind=kind, seed=seed, elastic_px=8.0)
    affine = register_pair(fixed, damaged.moving, defect_mask=damaged.defect_mask, refine="none")
    return fixed, damaged, affine


def test_elastic_refinement_follows_smooth_warp_on_each_side(elastic_pair):
    fixed, damaged, affine = elastic_pair
    before = _epe(affine.field, damaged, affine.valid)
    field, valid, info = refine_elastic(
        fixed, damaged.moving, affine.field, affine.valid, defect_mask=damaged.defect_mask
    )
    after = _epe(field, damaged, valid)
    # The affine model alone cannot follow an 8 px non-affine warp (so this test can fail).
    assert before[0] > 0.6
    assert after[0] <= 0.3, (before, after)
    assert after[1] <= 1.0, (before, after)
    # Refinement keeps (nearly) all the tissue the affine model mapped.
    assert (valid & damaged.true_valid).sum() >= 0.98 * (affine.valid & damaged.true_valid).sum()
    assert info["sides"] >= 2


def test_register_pair_refines_by_default(elastic_pair):
    fixed, damaged, affine = elastic_pair
    refined = register_pair(fixed, damaged.moving, defect_mask=damaged.defect_mask)
    assert refined.unrefined_field is not None
    np.testing.assert_array_equal(refined.unrefined_field, affine.field)
    assert _epe(refined.field, damaged, refined.valid)[0] <= 0.3
    assert "elastic" in refined.info and refined.info["seconds"]["elastic_s"] > 0


@pytest.mark.parametrize("kind,seed", [("fold", 33), ("crack", 34)])
def test_elastic_refinement_no_worse_without_elastic_part(kind, seed):
    fixed = section_texture((384, 384), seed=seed + 10)
    damaged = simulate_damaged_section(fixed, kind=kind, seed=seed)
    affine = register_pair(fixed, damaged.moving, defect_mask=damaged.defect_mask, refine="none")
    field, valid, _ = refine_elastic(
        fixed, damaged.moving, affine.field, affine.valid, defect_mask=damaged.defect_mask
    )
    before, after = _epe(affine.field, damaged, affine.valid), _epe(field, damaged, valid)
    assert after[0] <= max(0.06, before[0] + 0.01), (before, after)
    assert after[1] <= max(0.2, before[1] + 0.05), (before, after)


def test_side_labels_split_a_crack_by_the_jump_of_the_field():
    field = np.zeros((2, 64, 64), np.float32)
    field[1, :, 32:] = 5.0  # the right half moved 5 px: the field jumps at x = 32
    labels = side_labels(field, np.ones((64, 64), bool))
    assert len(np.unique(labels[labels > 0])) == 2
    assert labels[10, 5] != labels[10, 60]


def test_masked_ncc_equals_opencv_without_masks():
    import cv2

    rng = np.random.default_rng(0)
    region = rng.random((50, 50)).astype(np.float32)
    template = region[8:40, 10:42].copy()
    ones_r, ones_t = np.ones(region.shape, bool), np.ones(template.shape, bool)
    ours = _masked_ncc(region, ones_r, template, ones_t)
    theirs = cv2.matchTemplate(region, template, cv2.TM_CCOEFF_NORMED)
    np.testing.assert_allclose(ours, theirs, atol=1e-4)
    assert np.unravel_index(np.argmax(ours), ours.shape) == (8, 10)


def test_masked_ncc_ignores_masked_pixels_of_both_images():
    rng = np.random.default_rng(1)
    region = rng.random((50, 50)).astype(np.float32)
    template = region[9:41, 9:41].copy()
    t_mask = np.ones(template.shape, bool)
    t_mask[:, 20:] = False
    template[:, 20:] = 5.0  # garbage under the template mask
    # Garbage in the region exactly where the template lands (columns 9+12 .. 9+20): the
    # region mask must keep it out, or the true offset no longer scores 1.
    region = region.copy()
    region[:, 21:29] = rng.random((50, 8)).astype(np.float32) * 50.0
    r_mask = np.ones(region.shape, bool)
    r_mask[:, 21:29] = False
    score = _masked_ncc(region, r_mask, template, t_mask)
    assert np.unravel_index(np.argmax(score), score.shape) == (9, 9)
    assert score.max() > 0.999
    # Without the region mask the garbage spoils the match at the true offset.
    spoiled = _masked_ncc(region, np.ones(region.shape, bool), template, t_mask)
    assert spoiled[9, 9] < 0.9


def test_invert_field_round_trip():
    rng = np.random.default_rng(2)
    field = smooth_random_field((96, 128), 6.0, 40.0, rng)
    inverse = invert_field(field, np.zeros_like(field))
    # p + field(p) = q  and  q + inverse(q) = p: compose(field, inverse) ~ 0.
    from emkit.register import compose_fields

    residual = compose_fields(field, inverse)[:, 10:-10, 10:-10]
    assert np.abs(residual).max() < 0.05


def test_register_pair_rejects_unknown_refinement():
    image = section_texture((96, 96), seed=0)
    with pytest.raises(InputError, match="refinement"):
        register_pair(image, image, refine="bspline")


def test_elastic_options_change_the_mesh():
    fixed = section_texture((256, 256), seed=5)
    damaged = simulate_damaged_section(fixed, kind="fold", seed=5, elastic_px=4.0)
    affine = register_pair(fixed, damaged.moving, defect_mask=damaged.defect_mask, refine="none")
    _, _, info = refine_elastic(
        fixed,
        damaged.moving,
        affine.field,
        affine.valid,
        options=ElasticOptions(spacing_px=24, search_px=(6,)),
    )
    assert info["spacing_px"] == 24 and len(info["passes"]) == 1
