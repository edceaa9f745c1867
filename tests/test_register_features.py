"""Matching: exact mutual nearest neighbours, the ratio test, the consistency filter."""

from __future__ import annotations

import numpy as np

from emkit.register._features import Matches, consistent_matches, mutual_matches, to_uint8


def test_mutual_matches_against_brute_force():
    rng = np.random.default_rng(0)
    a = rng.random((300, 128), dtype=np.float32)
    b = np.concatenate(
        [
            a[:200] + 0.01 * rng.random((200, 128), dtype=np.float32),
            rng.random((150, 128), dtype=np.float32),
        ]
    )
    pairs = mutual_matches(a, b, ratio=0.95, block=64)
    an = a / np.linalg.norm(a, axis=1, keepdims=True)
    bn = b / np.linalg.norm(b, axis=1, keepdims=True)
    d = np.linalg.norm(an[:, None] - bn[None], axis=2)
    fwd = d.argmin(1)
    back = d.argmin(0)
    sorted_d = np.sort(d, axis=1)
    expected = [
        (i, fwd[i])
        for i in range(300)
        if back[fwd[i]] == i and sorted_d[i, 0] < 0.95 * sorted_d[i, 1]
    ]
    assert sorted(map(tuple, pairs.tolist())) == expected
    # The 200 near-copies are found.
    assert {(i, i) for i in range(200)} <= set(map(tuple, pairs.tolist()))


def test_ratio_test_drops_ambiguous_matches():
    rng = np.random.default_rng(1)
    a = rng.random((10, 128), dtype=np.float32)
    # Every descriptor has two candidates at about the same distance.
    b = np.concatenate(
        [
            a + 0.05 * rng.random((10, 128), dtype=np.float32),
            a + 0.05 * rng.random((10, 128), dtype=np.float32),
        ]
    )
    assert len(mutual_matches(a, b, ratio=0.8)) == 0


def test_consistency_filter_keeps_coherent_motion_and_drops_random():
    rng = np.random.default_rng(2)
    moving = rng.uniform(0, 1000, (400, 2))
    fixed = moving + np.array([12.0, -7.0]) + rng.normal(0, 0.5, (400, 2))
    outliers = rng.random(400) < 0.5
    fixed[outliers] = rng.uniform(0, 1000, (int(outliers.sum()), 2))
    keep = consistent_matches(Matches(fixed, moving, 400, 400))
    assert keep[~outliers].mean() > 0.95
    assert keep[outliers].mean() < 0.1


def test_to_uint8_ignores_invalid_pixels_for_contrast():
    image = np.zeros((50, 50), np.float32)
    image[:, 25:] = np.linspace(0, 1, 25)[None]
    image[:5] = 1000.0  # a bright artefact outside the valid area
    valid = np.ones((50, 50), bool)
    valid[:5] = False
    u8 = to_uint8(image, valid)
    assert u8.dtype == np.uint8
    assert u8[10:, 25:].max() >= 250  # the tissue spans the range, not crushed by 1000
