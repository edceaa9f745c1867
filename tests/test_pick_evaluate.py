"""emkit.pick evaluation: one-to-one matching, P/R/F1/F-beta, hand-made cases."""

from __future__ import annotations

import numpy as np
import pytest

from emkit.errors import InputError
from emkit.pick import evaluate_picks, f_beta, match_points


def test_f_beta_known_values() -> None:
    assert f_beta(1.0, 1.0, 4) == 1.0
    assert f_beta(0.0, 0.0, 1) == 0.0
    assert f_beta(0.5, 1.0, 1) == pytest.approx(2 / 3)
    # beta 4: recall weighs 16 times precision
    assert f_beta(0.5, 1.0, 4) == pytest.approx(17 * 0.5 / (16 * 0.5 + 1))


def test_two_predictions_on_one_particle_count_once() -> None:
    truth = np.array([[10.0, 10, 10]])
    pred = np.array([[10.0, 10, 11], [10.0, 11, 10]])
    s = evaluate_picks(pred, None, truth, None, [4.0])
    assert (s.overall["tp"], s.overall["fp"], s.overall["fn"]) == (1, 1, 0)
    assert s.overall["precision"] == 0.5 and s.overall["recall"] == 1.0


def test_hit_radius_is_a_fraction_of_the_class_radius() -> None:
    truth = np.array([[0.0, 0, 0]])
    near, far = np.array([[0.0, 0, 1.9]]), np.array([[0.0, 0, 2.1]])
    assert evaluate_picks(near, None, truth, None, [4.0]).overall["tp"] == 1
    assert evaluate_picks(far, None, truth, None, [4.0]).overall["tp"] == 0
    assert evaluate_picks(far, None, truth, None, [4.0], fraction=0.6).overall["tp"] == 1


def test_matching_is_the_largest_not_the_greedy_one() -> None:
    # greedy nearest-first pairs p0-t1 (distance 0.9), and then p1 has no partner left;
    # the maximum matching pairs p0-t0 (1.1) and p1-t1 (1.2)
    truth = np.array([[0.0, 0, 0], [0.0, 0, 2.0]])
    pred = np.array([[0.0, 0, 1.1], [0.0, 0, 3.2]])
    ip, it, d = match_points(pred, truth, 1.3)
    assert sorted(zip(ip.tolist(), it.tolist())) == [(0, 0), (1, 1)]
    assert np.all(d <= 1.3)


def test_class_must_agree_unless_ignored() -> None:
    truth = np.array([[5.0, 5, 5], [20.0, 20, 20]])
    pred = truth + 0.5
    s = evaluate_picks(pred, np.array([2, 1]), truth, np.array([1, 2]), [4.0, 4.0])
    assert s.overall["tp"] == 0 and s.overall["fp"] == 2 and s.overall["fn"] == 2
    s = evaluate_picks(pred, np.array([2, 1]), truth, np.array([1, 2]), [4.0, 4.0],
                       ignore_classes=True)
    assert s.overall["tp"] == 2


def test_per_class_rows_and_csv() -> None:
    rng = np.random.default_rng(0)
    truth = rng.uniform(0, 100, (30, 3))
    classes = np.repeat([1, 2, 3], 10)
    pred = truth[:25] + rng.normal(0, 0.3, (25, 3))
    s = evaluate_picks(pred, classes[:25], truth, classes, [5.0, 5.0, 5.0])
    per = s.per_class()
    assert per[1]["recall"] == 1.0 and per[3]["recall"] == 0.5
    assert s.overall["tp"] == 25 and s.overall["fn"] == 5 and s.overall["fp"] == 0
    text = s.to_csv()
    assert text.splitlines()[0].startswith("class,n_true,n_predicted,tp,fp,fn")
    assert text.splitlines()[-1].startswith("all,30,25,25,0,5")


def test_empty_lists() -> None:
    s = evaluate_picks(np.zeros((0, 3)), None, np.ones((3, 3)), None, [2.0])
    assert s.overall["recall"] == 0.0 and s.overall["f1"] == 0.0
    s = evaluate_picks(np.zeros((0, 3)), None, np.zeros((0, 3)), None, [2.0])
    assert s.overall["f1"] == 1.0


def test_a_class_without_a_radius_is_refused() -> None:
    with pytest.raises(InputError, match="class 3"):
        evaluate_picks(np.zeros((1, 3)), np.array([3]), np.zeros((1, 3)), np.array([1]),
                       [2.0, 2.0])


def test_many_particles_match_fast() -> None:
    import time

    rng = np.random.default_rng(1)
    truth = rng.uniform(0, 500, (20000, 3))
    pred = truth + rng.normal(0, 0.5, truth.shape)
    start = time.perf_counter()
    s = evaluate_picks(pred, None, truth, None, [6.0])
    assert time.perf_counter() - start < 20
    assert s.overall["recall"] > 0.99
