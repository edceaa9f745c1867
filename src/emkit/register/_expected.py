"""The expected affine: clusters of matches, one affine each, blended per pixel.

Steps (Xin et al., Front. Neuroinform. 2022, with bounded memory):

1. cluster the matches by path distance in the moving image (k-means with geodesic
   Voronoi assignment on the coarse grid of :mod:`._pathdist`);
2. fit one RANSAC affine per cluster, dropping clusters with too few inliers;
3. estimate, for each coarse cell, how densely each cluster's inliers lie around it
   under the path distance (k-nearest-neighbour density) and turn the densities into
   posterior weights;
4. the expected affine of a cell is the weighted mean of the cluster affines;
5. the field for the fixed image is the inverse of the per-pixel expected affine,
   found by Newton iterations.

All affines here map moving ``(x, y)`` to fixed ``(x, y)`` and are 2x3 arrays.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from emkit.register._pathdist import CoarseGrid

logger = logging.getLogger(__name__)


@dataclass
class ClusterAffines:
    """Clusters of matches and their affines.

    Attributes
    ----------
    affines : ndarray, shape (k, 2, 3)
        Moving ``(x, y)`` -> fixed ``(x, y)`` per kept cluster.
    inlier_xy : list of ndarray, shape (n_i, 2)
        Moving positions of each kept cluster's RANSAC inliers.
    inlier_fixed_xy : list of ndarray, shape (n_i, 2)
        Their fixed positions.
    labels : ndarray of int, shape (n_matches,)
        Cluster of each match before RANSAC (-1 unreachable).
    """

    affines: np.ndarray
    inlier_xy: list[np.ndarray]
    inlier_fixed_xy: list[np.ndarray]
    labels: np.ndarray


def choose_n_clusters(
    grid: CoarseGrid,
    nodes: np.ndarray,
    *,
    matches_per_cluster: int,
    max_clusters: int,
    min_inliers: int,
) -> int:
    """Number of clusters from the data: at least one per separated piece of tissue that
    holds enough matches, and about one per ``matches_per_cluster`` matches."""
    from scipy import ndimage

    labels, _ = ndimage.label(~grid.blocked, structure=np.ones((3, 3), bool))
    piece_of_match = labels.ravel()[nodes]
    counts = np.bincount(piece_of_match)
    pieces = int(np.sum(counts[1:] >= min_inliers)) if counts.size > 1 else 1
    by_count = int(round(len(nodes) / max(matches_per_cluster, 1)))
    return int(np.clip(max(pieces, by_count, 1), 1, max(max_clusters, pieces, 1)))


def geodesic_kmeans(
    grid: CoarseGrid, nodes: np.ndarray, xy: np.ndarray, k: int, *, seed: int, n_iter: int = 12
) -> np.ndarray:
    """Cluster points by path distance: k-means++ start, geodesic Voronoi assignment, and
    each centre moved to the member nearest the members' mean.

    Parameters
    ----------
    nodes : ndarray of int, shape (n,)
        Coarse node of each point.
    xy : ndarray, shape (n, 2)
        Full-resolution positions (for the centre update).

    Returns
    -------
    ndarray of int, shape (n,)
        Cluster label per point in ``0 .. k-1`` (``-1`` if it reaches no centre).
    """
    rng = np.random.default_rng(seed)
    n = len(nodes)
    k = max(1, min(k, len(np.unique(nodes))))
    centres = [int(rng.integers(n))]
    while len(centres) < k:
        dist = grid.distances(nodes[centres])[nodes]
        unreachable = ~np.isfinite(dist)
        if unreachable.any():
            # A piece of tissue cut off from every centre gets a centre of its own.
            centres.append(int(rng.choice(np.flatnonzero(unreachable))))
            continue
        prob = dist**2
        if prob.sum() <= 0:
            break
        centres.append(int(rng.choice(n, p=prob / prob.sum())))
    labels = np.full(n, -1, dtype=np.intp)
    for _ in range(n_iter):
        centre_nodes = nodes[centres]
        _, nearest = grid.nearest_source(centre_nodes)
        # Several centres may share a node; the first one wins, the others go empty.
        node_to_cluster: dict[int, int] = {}
        for i, node in enumerate(centre_nodes):
            node_to_cluster.setdefault(int(node), i)
        src = nearest[nodes]
        new = np.array([node_to_cluster.get(int(s), -1) for s in src], dtype=np.intp)
        if np.array_equal(new, labels):
            break
        labels = new
        new_centres = []
        for i in range(len(centres)):
            members = np.flatnonzero(labels == i)
            if members.size == 0:
                continue
            mean = xy[members].mean(axis=0)
            new_centres.append(int(members[np.argmin(((xy[members] - mean) ** 2).sum(1))]))
        centres = new_centres
    # Relabel to 0..k'-1 in order of appearance so empty clusters leave no gaps.
    used = np.unique(labels[labels >= 0])
    remap = {int(c): i for i, c in enumerate(used)}
    return np.array([remap.get(int(c), -1) for c in labels], dtype=np.intp)


def fit_affine_ransac(
    moving_xy: np.ndarray, fixed_xy: np.ndarray, *, threshold_px: float
) -> tuple[np.ndarray | None, np.ndarray]:
    """RANSAC affine (moving -> fixed) with OpenCV; returns ``(affine or None, inliers)``."""
    import cv2

    if len(moving_xy) < 3:
        return None, np.zeros(len(moving_xy), dtype=bool)
    affine, inliers = cv2.estimateAffine2D(
        moving_xy.astype(np.float32),
        fixed_xy.astype(np.float32),
        method=cv2.RANSAC,
        ransacReprojThreshold=threshold_px,
        maxIters=4000,
        confidence=0.999,
        refineIters=20,
    )
    if affine is None or inliers is None:
        return None, np.zeros(len(moving_xy), dtype=bool)
    return affine.astype(np.float64), inliers.ravel().astype(bool)


def cluster_affines(
    labels: np.ndarray,
    moving_xy: np.ndarray,
    fixed_xy: np.ndarray,
    *,
    threshold_px: float,
    min_inliers: int,
) -> ClusterAffines:
    """One RANSAC affine per cluster; clusters with fewer than ``min_inliers`` are dropped."""
    affines, in_m, in_f = [], [], []
    for c in range(int(labels.max()) + 1 if labels.size else 0):
        members = np.flatnonzero(labels == c)
        affine, inliers = fit_affine_ransac(
            moving_xy[members], fixed_xy[members], threshold_px=threshold_px
        )
        if affine is None or int(inliers.sum()) < min_inliers:
            logger.debug("cluster %d dropped: %d inliers", c, int(inliers.sum()))
            continue
        affines.append(affine)
        in_m.append(moving_xy[members[inliers]])
        in_f.append(fixed_xy[members[inliers]])
    arr = np.array(affines) if affines else np.zeros((0, 2, 3))
    return ClusterAffines(affines=arr, inlier_xy=in_m, inlier_fixed_xy=in_f, labels=labels)


def knn_weights(grid: CoarseGrid, clusters: ClusterAffines, *, knn: int, seed: int) -> np.ndarray:
    """Posterior weight of each cluster at each coarse cell, from k-NN densities.

    The k-NN density of cluster ``c`` at a cell is ``k / (n_c * pi * r_c^2)`` with
    ``r_c`` the path distance to its k-th nearest inlier; with the prior ``n_c / N`` the
    posterior is proportional to ``1 / r_c^2``. To stay at a few Dijkstra runs per
    cluster, ``r_c`` is estimated from the nearest-neighbour distances within ``knn``
    random disjoint subsets of the inliers (each subset holds about ``n_c / knn`` points,
    so its nearest member lies about as far as the k-th nearest of all).

    Returns
    -------
    ndarray of float64, shape (k_clusters, h*w)
        Weights summing to 1 over clusters at every reachable open cell; all-zero columns
        where no cluster can be reached (cells cut off from all matches, blocked cells).
    """
    rng = np.random.default_rng(seed)
    n_cells = grid.shape[0] * grid.shape[1]
    k = clusters.affines.shape[0]
    inv_r2 = np.zeros((k, n_cells))
    # Softens 1/r^2 at the inliers themselves (r = 0 on their own cell).
    soft = float(grid.bin_px) ** 2
    for c in range(k):
        nodes = grid.nodes_of(clusters.inlier_xy[c])
        n_sub = int(min(knn, max(1, len(nodes) // 3)))
        parts = np.array_split(rng.permutation(len(nodes)), n_sub)
        radius = np.zeros(n_cells)
        for part in parts:
            radius += grid.distances(nodes[part])
        radius /= n_sub
        inv_r2[c] = np.where(np.isfinite(radius), 1.0 / (radius**2 + soft), 0.0)
    total = inv_r2.sum(axis=0)
    weights = np.divide(inv_r2, total, out=np.zeros_like(inv_r2), where=total > 0)
    weights[:, grid.blocked.ravel()] = 0.0
    return weights


def expected_affine_grid(grid: CoarseGrid, weights: np.ndarray, affines: np.ndarray) -> np.ndarray:
    """Per-cell expected affine: weighted mean of the cluster affines.

    Returns
    -------
    ndarray of float32, shape (h, w, 7)
        Six affine parameters (row-major 2x3) and, last, 1 where the cell has a value
        and 0 where it has none (blocked or unreachable).
    """
    h, w = grid.shape
    params = np.einsum("kn,kp->np", weights, affines.reshape(-1, 6))
    has = weights.sum(axis=0) > 0.5
    out = np.zeros((h * w, 7), dtype=np.float32)
    out[:, :6] = params
    out[:, 6] = has
    return out.reshape(h, w, 7)


def refit_affines(
    grid: CoarseGrid,
    weights: np.ndarray,
    moving_xy: np.ndarray,
    fixed_xy: np.ndarray,
    residual_px: np.ndarray,
    *,
    threshold_px: float,
    old: np.ndarray,
) -> np.ndarray:
    """Re-estimate each cluster's affine by weighted least squares over all matches that
    the current expected affine explains (residual < threshold), weighted by that
    cluster's weight at the match (an EM step: matches near a cluster's border help it)."""
    good = residual_px < threshold_px
    nodes = grid.nodes_of(moving_xy[good])
    w_match = weights[:, nodes]
    design = np.column_stack([moving_xy[good], np.ones(int(good.sum()))])
    target = fixed_xy[good]
    new = old.copy()
    for c in range(weights.shape[0]):
        wc = w_match[c]
        if np.sum(wc > 0.05) < 6:
            continue
        sw = np.sqrt(wc)[:, None]
        solution, *_ = np.linalg.lstsq(design * sw, target * sw, rcond=None)
        new[c] = solution.T
    return new
