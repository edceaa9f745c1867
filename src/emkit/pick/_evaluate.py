"""Picking accuracy: one-to-one (Hungarian) matching within a fraction of the radius.

A predicted particle is a hit when it is matched to a true particle of the same class whose
centre lies within ``fraction * radius`` of it; each true particle is matched at most once
and each prediction at most once, the matching that pairs the most particles (and, among
those, the smallest total distance). The CZII cryo-ET challenge scores with the F-beta
measure at beta = 4 (recall weighs 16 times precision); the original detector's evaluation
allowed several predictions to hit one particle, which inflates precision.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from emkit.errors import InputError
from emkit.pick._labels import radii_for_classes

__all__ = ["PickScores", "classes_by_name", "evaluate_picks", "match_points", "f_beta"]

_BIG = 1e6


def f_beta(precision: float, recall: float, beta: float) -> float:
    """``(1 + b^2) P R / (b^2 P + R)``; 0 when both are 0."""
    b2 = beta * beta
    den = b2 * precision + recall
    return float((1 + b2) * precision * recall / den) if den > 0 else 0.0


def match_points(
    predicted: np.ndarray, truth: np.ndarray, max_distance: float | np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Maximum one-to-one matching of points within a distance, least total distance.

    Parameters
    ----------
    predicted : ndarray, shape (m, 3)
    truth : ndarray, shape (n, 3)
    max_distance : float or ndarray of shape (n,)
        Largest distance for a match (per true point).

    Returns
    -------
    pred_index, truth_index : ndarray of int
        Matched pairs.
    distance : ndarray of float
        Their distances.
    """
    from scipy.optimize import linear_sum_assignment
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components
    from scipy.spatial import cKDTree

    pred = np.asarray(predicted, np.float64).reshape(-1, 3)
    true = np.asarray(truth, np.float64).reshape(-1, 3)
    limit = np.broadcast_to(np.asarray(max_distance, np.float64), (len(true),))
    empty = (np.zeros(0, int), np.zeros(0, int), np.zeros(0))
    if len(pred) == 0 or len(true) == 0:
        return empty
    pairs = cKDTree(true).query_ball_point(pred, r=float(limit.max()) + 1e-9)
    rows, cols = [], []
    for i, js in enumerate(pairs):
        for j in js:
            if np.linalg.norm(pred[i] - true[j]) <= limit[j] + 1e-9:
                rows.append(i)
                cols.append(j)
    if not rows:
        return empty
    r_arr, c_arr = np.asarray(rows), np.asarray(cols)
    m = len(pred)
    graph = coo_matrix((np.ones(len(r_arr)), (r_arr, m + c_arr)), shape=(m + len(true),) * 2)
    _, component = connected_components(graph, directed=False)
    out_p, out_t = [], []
    for comp in np.unique(component[r_arr]):
        sel = component[r_arr] == comp
        rp, ct = r_arr[sel], c_arr[sel]
        up, ut = np.unique(rp), np.unique(ct)
        cost = np.zeros((len(up), len(ut)))
        d = np.linalg.norm(pred[rp] - true[ct], axis=1)
        cost[np.searchsorted(up, rp), np.searchsorted(ut, ct)] = d - _BIG
        a, b = linear_sum_assignment(cost)
        keep = cost[a, b] < 0
        out_p.extend(up[a[keep]])
        out_t.extend(ut[b[keep]])
    ip, it = np.asarray(out_p, int), np.asarray(out_t, int)
    return ip, it, np.linalg.norm(pred[ip] - true[it], axis=1)


@dataclass
class PickScores:
    """Counts and scores per class (``rows``) and overall (micro-average over classes).

    ``rows`` holds one dict per class and a last one with ``class`` ``"all"``: ``class``,
    ``n_true``, ``n_predicted``, ``tp``, ``fp``, ``fn``, ``precision``, ``recall``, ``f1``,
    ``f_beta4``, ``mean_distance_px``.
    """

    rows: list[dict[str, float | int | str]]

    @property
    def overall(self) -> dict[str, float | int | str]:
        return self.rows[-1]

    def per_class(self) -> dict[int, dict[str, float | int | str]]:
        return {int(r["class"]): r for r in self.rows[:-1]}

    def to_csv(self) -> str:
        keys = list(self.rows[0])
        lines = [",".join(keys)]
        for row in self.rows:
            lines.append(",".join(f"{row[k]:.4f}" if isinstance(row[k], float) else str(row[k])
                                  for k in keys))
        return "\n".join(lines) + "\n"


def _row(label: int | str, n_true: int, n_pred: int, tp: int, dist: list[float]) -> dict:
    precision = tp / n_pred if n_pred else (1.0 if n_true == 0 else 0.0)
    recall = tp / n_true if n_true else (1.0 if n_pred == 0 else 0.0)
    return {"class": label, "n_true": n_true, "n_predicted": n_pred, "tp": tp,
            "fp": n_pred - tp, "fn": n_true - tp, "precision": float(precision),
            "recall": float(recall), "f1": f_beta(precision, recall, 1.0),
            "f_beta4": f_beta(precision, recall, 4.0),
            "mean_distance_px": float(np.mean(dist)) if dist else float("nan")}


def evaluate_picks(
    predicted_zyx: np.ndarray,
    predicted_classes: np.ndarray | None,
    true_zyx: np.ndarray,
    true_classes: np.ndarray | None,
    radius_px: Sequence[float] | Mapping[int, float],
    *,
    fraction: float = 0.5,
    ignore_classes: bool = False,
) -> PickScores:
    """Precision, recall, F1 and F-beta (beta 4) per class and overall.

    Parameters
    ----------
    predicted_zyx, true_zyx : ndarray, shape (m, 3) and (n, 3)
        Centres in voxels ``(z, y, x)``.
    predicted_classes, true_classes : ndarray of int, or None (all class 1)
    radius_px : sequence or mapping
        Particle radius in voxels per class (``radius_px[k - 1]`` for class ``k``).
    fraction : float
        A hit lies within ``fraction * radius`` of a true centre (default 0.5).
    ignore_classes : bool
        Match regardless of class (detection only); a hit counts in the row of the true
        particle's class, a false positive in the row of its predicted class.

    Returns
    -------
    PickScores
    """
    if not 0 < fraction <= 2:
        raise InputError(f"fraction must be in (0, 2], got {fraction}")
    pred = np.asarray(predicted_zyx, np.float64).reshape(-1, 3)
    true = np.asarray(true_zyx, np.float64).reshape(-1, 3)
    pc = np.ones(len(pred), np.int64) if predicted_classes is None else np.asarray(
        predicted_classes, np.int64)
    tc = np.ones(len(true), np.int64) if true_classes is None else np.asarray(
        true_classes, np.int64)
    table = radii_for_classes(np.concatenate([tc, pc]), radius_px, "the radii")
    limit = fraction * np.array([table[int(c)] for c in tc])
    classes = sorted({int(c) for c in np.concatenate([tc, pc])})
    rows, total_tp, dists = [], 0, []
    if ignore_classes:
        ip, it, d = match_points(pred, true, limit)
        hit_class = tc[it]
        unmatched = np.ones(len(pred), bool)
        unmatched[ip] = False
    for c in classes:
        in_t, in_p = np.flatnonzero(tc == c), np.flatnonzero(pc == c)
        if ignore_classes:
            # a prediction counts for the class of the particle it hit, else its own class
            sel = hit_class == c
            tp, dc = int(sel.sum()), list(d[sel])
            in_p = np.arange(tp + int(np.sum(unmatched & (pc == c))))
        else:
            _, it_c, dc_arr = match_points(pred[in_p], true[in_t], limit[in_t])
            tp, dc = len(it_c), list(dc_arr)
        rows.append(_row(c, len(in_t), len(in_p), tp, dc))
        total_tp += tp
        dists.extend(dc)
    rows.append(_row("all", len(true), len(pred), total_tp, dists))
    return PickScores(rows)


def classes_by_name(classes: np.ndarray, model: Any, sim: Any
                     ) -> tuple[np.ndarray, dict[int, float]]:
    """A model's class numbers renumbered as a simulation's, matched by species name (a
    model's classes need not be the simulation's, nor in its order; a species that the
    simulation lacks gets a number after its own), and each number's radius in voxels, so
    :func:`evaluate_picks` can score the picks against the simulation's truth."""
    names = list(sim.class_names)
    radii = {k + 1: r / sim.voxel_size_A for k, r in enumerate(sim.radii_A)}
    model_radii = model.extra.get("radii_A", [])
    renumber = np.zeros(len(model.class_names), np.int64)
    for k, name in enumerate(model.class_names[1:], start=1):
        if name not in names:
            names.append(name)
            radius_A = model_radii[k - 1] if k - 1 < len(model_radii) else min(sim.radii_A)
            radii[len(names)] = radius_A / sim.voxel_size_A
        renumber[k] = names.index(name) + 1
    return renumber[np.asarray(classes, np.int64)], radii
