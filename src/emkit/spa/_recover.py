"""Orientation recovery: unit quaternions fitted so that their distances match given ones.

A distance function ``distance_fn(pairs) -> radians`` gives (an estimate of) the geodesic
distance ``2 arccos |<q_i, q_j>|`` between the orientations of images ``i`` and ``j``. The fit
samples far pairs (uniformly) and near pairs (the closest of many candidates per image),
minimises a robust (Huber) loss between fitted and given distances with Adam, with an
annealed learning rate, from several random starts, and keeps the start with the lowest loss
on pairs it was not fitted to.

The distances cannot tell the orientations ``q_i`` from ``p q_i r`` (any unit ``p``, ``r``)
nor from their conjugates: the fitted set equals the truth up to a global rotation on each
side and a mirror (an element of O(4) acting on the quaternions). The right-hand rotation is
the usual map rotation; the left-hand one is resolved from the images
(:func:`emkit.spa.resolve_frame`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from emkit.errors import InputError, ShapeError

logger = logging.getLogger(__name__)

__all__ = ["DistanceFunction", "RecoveredOrientations", "exact_distance_fn",
           "recover_orientations", "sample_pairs"]

DistanceFunction = Callable[[np.ndarray], np.ndarray]
"""``distance_fn(pairs: (m, 2) int) -> (m,) float`` radians in [0, pi]."""

# Huber transition (rad): below it the loss is quadratic (exact distances), above it linear,
# so a wrong learned distance pulls with a bounded force.
_HUBER_DELTA_RAD = 0.1


def exact_distance_fn(rotations: np.ndarray) -> DistanceFunction:
    """The exact geodesic distances between known orientations (a check of the fit).

    Parameters
    ----------
    rotations : ndarray, shape (n, 3, 3)
        Rotation matrices.

    Returns
    -------
    callable
        ``distance_fn(pairs (m, 2) int) -> (m,) float64`` radians in [0, pi].
    """
    from emkit.geometry import matrix_to_quaternion, quaternion_distance

    q = matrix_to_quaternion(rotations)

    def distance_fn(pairs: np.ndarray) -> np.ndarray:
        pairs = np.asarray(pairs, dtype=np.int64)
        return quaternion_distance(q[pairs[:, 0]], q[pairs[:, 1]])

    return distance_fn


def _checked_distances(distance_fn: DistanceFunction, pairs: np.ndarray) -> np.ndarray:
    d = np.asarray(distance_fn(pairs), dtype=np.float64)
    if d.shape != (len(pairs),):
        raise ShapeError(f"distance_fn returned shape {d.shape} for {len(pairs)} pairs; "
                         "it must return one distance per pair")
    if not np.all(np.isfinite(d)):
        raise InputError("distance_fn returned NaN or infinite distances")
    return np.clip(d, 0.0, np.pi)


def sample_pairs(
    n: int, *, n_far: int, n_near_candidates: int, n_near: int, rng: np.random.Generator,
    distance_fn: DistanceFunction,
) -> tuple[np.ndarray, np.ndarray]:
    """Far pairs (uniform) and near pairs (the closest ``n_near`` of ``n_near_candidates``
    random partners of every image), with their distances.

    Returns
    -------
    pairs : ndarray, shape (m, 2), int64
    distances_rad : ndarray, shape (m,)
    """
    far = rng.integers(0, n, size=(n_far, 2))
    far = far[far[:, 0] != far[:, 1]]
    partners = rng.integers(0, n - 1, size=(n, n_near_candidates))
    partners += partners >= np.arange(n)[:, None]  # never the image itself
    cand = np.stack([np.repeat(np.arange(n), n_near_candidates), partners.reshape(-1)], axis=1)
    d_cand = _checked_distances(distance_fn, cand).reshape(n, n_near_candidates)
    k = min(n_near, n_near_candidates)
    nearest = np.argsort(d_cand, axis=1)[:, :k]
    near = np.stack([np.repeat(np.arange(n), k),
                     np.take_along_axis(partners, nearest, axis=1).reshape(-1)], axis=1)
    d_near = np.take_along_axis(d_cand, nearest, axis=1).reshape(-1)
    pairs = np.concatenate([far, near])
    distances = np.concatenate([_checked_distances(distance_fn, far), d_near])
    return pairs, distances


@dataclass
class RecoveredOrientations:
    """Fitted orientations (up to the global O(4) ambiguity, see the module notes).

    Attributes
    ----------
    quaternions : ndarray, shape (n, 4)
        Unit quaternions ``(w, x, y, z)``.
    rotations : ndarray, shape (n, 3, 3)
        The same as RELION matrices.
    loss : float
        Mean Huber loss on held-out pairs of the kept start (from
        :func:`emkit.spa.spectral_orientations`: its unmixing residual).
    losses : list of float
        That loss for every start.
    distance_error_rad : float
        Median |fitted - given| distance on the held-out pairs (spectral start: median
        in-plane angle residual over the graph's pairs).
    """

    quaternions: np.ndarray
    rotations: np.ndarray
    loss: float
    losses: list[float]
    distance_error_rad: float


def _fitted_distance(q: Any, pairs: Any) -> Any:
    import torch

    u = torch.nn.functional.normalize(q, dim=1)
    dot = (u[pairs[:, 0]] * u[pairs[:, 1]]).sum(1).abs().clamp(max=1.0 - 1e-7)
    return 2.0 * torch.acos(dot)


def _fit_one_start(
    pairs: Any, target: Any, n: int, *, steps: int, batch: int, lr: float, seed: int
) -> Any:
    """Adam on free 4-vectors (normalised in the loss), cosine-annealed learning rate."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(n, 4, generator=gen, dtype=torch.float64).requires_grad_(True)
    opt = torch.optim.Adam([q], lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps, eta_min=lr * 1e-3)
    m = pairs.shape[0]
    for _ in range(steps):
        pick = torch.randint(0, m, (min(batch, m),), generator=gen)
        loss = torch.nn.functional.huber_loss(
            _fitted_distance(q, pairs[pick]), target[pick], delta=_HUBER_DELTA_RAD)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    return torch.nn.functional.normalize(q.detach(), dim=1)


def recover_orientations(
    distance_fn: DistanceFunction,
    n: int,
    *,
    seed: int = 0,
    restarts: int = 3,
    steps: int = 3000,
    batch: int = 8192,
    pairs_per_image: int = 60,
    near_per_image: int = 8,
    near_candidates: int = 200,
    lr: float = 0.05,
) -> RecoveredOrientations:
    """Fit one unit quaternion per image to pairwise orientation distances.

    Parameters
    ----------
    distance_fn : callable
        ``distance_fn(pairs: ndarray (m, 2) int) -> ndarray (m,)``: geodesic distance in
        radians (in [0, pi]) between the orientations of images ``pairs[:, 0]`` and
        ``pairs[:, 1]``; exact (:func:`exact_distance_fn`) or learned.
    n : int
        Number of images (indices 0 .. n - 1).
    seed : int
        Seed of the pair sampling and of the starts.
    restarts : int
        Random starts; the one with the lowest held-out loss is kept.
    steps, batch, lr : int, int, float
        Adam steps per start, pairs per step, initial learning rate (cosine-annealed).
    pairs_per_image : int
        Far (uniformly drawn) pairs per image.
    near_per_image, near_candidates : int
        Near pairs per image: the closest ``near_per_image`` of ``near_candidates`` random
        partners (by ``distance_fn``).

    Returns
    -------
    RecoveredOrientations
    """
    import torch

    from emkit.geometry import quaternion_to_matrix

    if isinstance(n, bool) or int(n) != n or n < 3:
        raise InputError(f"orientation recovery needs at least 3 images, got {n!r}")
    if restarts < 1 or steps < 1:
        raise InputError(f"restarts and steps must be >= 1, got {restarts}, {steps}")
    rng = np.random.default_rng(seed)
    pairs, dist = sample_pairs(n, n_far=pairs_per_image * n,
                               n_near_candidates=min(near_candidates, n - 1),
                               n_near=near_per_image, rng=rng, distance_fn=distance_fn)
    held = rng.random(len(pairs)) < 0.05
    p_fit, d_fit = torch.from_numpy(pairs[~held]), torch.from_numpy(dist[~held])
    p_val, d_val = torch.from_numpy(pairs[held]), torch.from_numpy(dist[held])
    best: tuple[float, Any] | None = None
    losses = []
    for start in range(restarts):
        q = _fit_one_start(p_fit, d_fit, n, steps=steps, batch=batch, lr=lr,
                           seed=seed * 1000 + start)
        with torch.no_grad():
            fitted = _fitted_distance(q, p_val)
            val = float(torch.nn.functional.huber_loss(fitted, d_val, delta=_HUBER_DELTA_RAD))
        losses.append(val)
        logger.info("orientation fit start %d: held-out loss %.5f", start, val)
        if best is None or val < best[0]:
            best = (val, q)
    assert best is not None
    q_best = best[1]
    with torch.no_grad():
        err = float((_fitted_distance(q_best, p_val) - d_val).abs().median())
    quats = q_best.numpy()
    return RecoveredOrientations(quaternions=quats, rotations=quaternion_to_matrix(quats),
                                 loss=best[0], losses=losses, distance_error_rad=err)
