"""One global relaxation of a whole stack from its pairwise fields (no chaining).

Unknowns: for each undamaged section ``s`` a displacement ``X_s`` on a grid of nodes of
the common (aligned) frame, so that aligned pixel ``p`` shows section ``s`` at
``p + X_s(p)``. Each registered pair ``(s, t)`` (a section and the next one, and the one
after: damaged sections are skipped) says ``X_t(p) - X_s(p) = F_st(p + X_s(p))``, where
``F_st`` is the pair's field from section ``s`` to section ``t``. All those equations of
all pairs are solved together in the least-squares sense, with a weak pull of every
``X_s`` towards zero that fixes what pairwise measurements cannot see (a deformation
shared by every section): the aligned frame is the stack's average, not one section's.
Re-linearised a few times (``F_st`` is read where ``X_s`` now points).

Because every section is tied to its two neighbours on each side and all equations are
solved at once, a registration error of one pair is spread over the stack instead of
being carried by every section beyond it, as chaining does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage, sparse
from scipy.sparse import linalg as sparse_linalg

__all__ = ["Grid", "PairGrid", "anchor_order", "plan_pairs", "relax_stack"]


@dataclass(frozen=True)
class Grid:
    """Nodes ``(i, j)`` at pixel ``(i*s + (s-1)/2, j*s + (s-1)/2)`` of an ``(H, W)`` image."""

    spacing: int
    image_shape: tuple[int, int]

    @property
    def shape(self) -> tuple[int, int]:
        h, w = self.image_shape
        return -(-h // self.spacing), -(-w // self.spacing)

    def node_pixels(self) -> tuple[np.ndarray, np.ndarray]:
        gh, gw = self.shape
        c = (self.spacing - 1) / 2.0
        return np.arange(gh) * self.spacing + c, np.arange(gw) * self.spacing + c

    def sample(self, field: np.ndarray) -> np.ndarray:
        """A full-resolution array (..., H, W) read at the nodes (nearest pixel)."""
        ys, xs = self.node_pixels()
        h, w = self.image_shape
        iy = np.clip(np.rint(ys), 0, h - 1).astype(np.intp)
        ix = np.clip(np.rint(xs), 0, w - 1).astype(np.intp)
        return field[..., iy[:, None], ix[None, :]]

    def upsample(self, nodes: np.ndarray) -> np.ndarray:
        """Node values ``(2, gh, gw)`` interpolated bilinearly to ``(2, H, W)`` float32."""
        import cv2

        h, w = self.image_shape
        gh, gw = self.shape
        s = self.spacing
        return np.stack(
            [
                cv2.resize(c.astype(np.float32), (gw * s, gh * s), interpolation=cv2.INTER_LINEAR)[
                    :h, :w
                ]
                for c in nodes
            ]
        )


@dataclass
class PairGrid:
    """A pair's field ``F_st`` (section ``s`` pixel -> section ``t``) at the nodes."""

    s: int
    t: int
    field: np.ndarray  # (2, gh, gw) float32
    valid: np.ndarray  # (gh, gw) bool


def plan_pairs(damaged: list[bool], links: int = 2) -> tuple[list[tuple[int, int]], dict[int, int]]:
    """The pairs to register: each undamaged section with its next ``links`` undamaged
    ones, and each damaged section with its anchor.

    A damaged section's anchor is its neighbour towards the nearest undamaged section
    (the one before it when both are as near): the undamaged section itself, or a damaged
    neighbour that is anchored in turn (a run of damaged sections is chained, each pair
    registered with both defects blocking paths).

    Returns ``(pairs, anchors)``: ``pairs`` of ``(s, t)`` with ``s < t`` among undamaged
    sections, ``anchors[d] = a`` for each damaged ``d``. If every section is damaged,
    all are treated as undamaged (their defects then blur the fields near them).
    """
    n = len(damaged)
    good = [i for i in range(n) if not damaged[i]]
    if not good:
        good = list(range(n))
    pairs = [(s, t) for k, s in enumerate(good) for t in good[k + 1 : k + 1 + links]]
    anchors: dict[int, int] = {}
    for d in range(n):
        if d in good:
            continue
        nearest = min(good, key=lambda a: (abs(a - d), a > d))
        anchors[d] = d - 1 if nearest < d else d + 1
    return pairs, anchors


def anchor_order(anchors: dict[int, int]) -> list[int]:
    """Damaged sections in an order where each one's anchor comes first."""
    done: list[int] = []
    placed: set[int] = set()
    for d in sorted(anchors):
        chain = []
        while d in anchors and d not in placed:  # walk to an undamaged or placed anchor
            chain.append(d)
            d = anchors[d]
        for x in reversed(chain):
            placed.add(x)
            done.append(x)
    return done


def _read_pair(grid: Grid, pair: PairGrid, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``F_st`` and its validity read at pixel positions ``(2, gh, gw)`` of section ``s``
    (bilinear; beyond the grid the edge values continue: the fields are smooth)."""
    c = (grid.spacing - 1) / 2.0
    coords = (positions - c) / grid.spacing
    gh, gw = grid.shape
    coords = np.stack([np.clip(coords[0], 0, gh - 1), np.clip(coords[1], 0, gw - 1)])
    values = np.stack(
        [ndimage.map_coordinates(pair.field[k], coords, order=1, mode="nearest") for k in range(2)]
    )
    trusted = ndimage.map_coordinates(pair.valid.astype(np.float32), coords, order=1) > 0.999
    return values, trusted


def relax_stack(
    grid: Grid,
    sections: list[int],
    pairs: list[PairGrid],
    *,
    reference: int | None = None,
    iterations: int = 3,
    prior: float = 1e-3,
) -> tuple[dict[int, np.ndarray], list[float]]:
    """Solve every section's node displacement from all pairs at once.

    Parameters
    ----------
    grid : Grid
    sections : list of int
        The sections solved for (the undamaged ones).
    pairs : list of PairGrid
        Pairs between those sections.
    reference : int, optional
        A section held fixed (its ``X`` is zero); default: none, the aligned frame is the
        stack's average (every ``X_s`` pulled weakly towards zero).
    iterations : int
        Re-linearisations.
    prior : float
        Weight of the pull towards zero, relative to one pair equation.

    Returns
    -------
    nodes : dict section -> (2, gh, gw) float32
    residual_px : list of float
        Per pair (same order), the RMS misfit ``|X_t - X_s - F_st|`` over its trusted nodes.
    """
    gh, gw = grid.shape
    if not pairs:  # one undamaged section: it is the common frame
        return {s: np.zeros((2, gh, gw), np.float32) for s in sections}, []
    n_nodes = gh * gw
    order = {s: k for k, s in enumerate(sections)}
    m = len(sections)
    ys, xs = grid.node_pixels()
    p = np.stack(np.meshgrid(ys, xs, indexing="ij")).astype(np.float64)
    x = np.zeros((m, 2, gh, gw))
    node = np.arange(n_nodes)
    residual = [0.0] * len(pairs)
    for _ in range(max(1, iterations)):
        rows: list[np.ndarray] = []
        cols: list[np.ndarray] = []
        vals: list[np.ndarray] = []
        rhs = np.zeros((2, m * n_nodes))
        diag = np.full(m * n_nodes, prior)
        if reference is not None and reference in order:
            diag[node * m + order[reference]] = 1e8
        readings = []
        for pair in pairs:
            ks, kt = order[pair.s], order[pair.t]
            f, ok = _read_pair(grid, pair, p + x[ks])
            readings.append((ks, kt, f, ok))
            w = ok.ravel().astype(np.float64)
            a, b = node * m + ks, node * m + kt
            rows += [a, b, a, b]
            cols += [a, b, b, a]
            vals += [w, w, -w, -w]
            for c in range(2):
                np.add.at(rhs[c], b, w * f[c].ravel())
                np.add.at(rhs[c], a, -w * f[c].ravel())
        matrix = sparse.coo_matrix(
            (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
            shape=(m * n_nodes, m * n_nodes),
        ).tocsc() + sparse.diags(diag, format="csc")
        solve = sparse_linalg.splu(matrix.tocsc())
        for c in range(2):
            x[:, c] = solve.solve(rhs[c]).reshape(gh, gw, m).transpose(2, 0, 1)
        if reference is not None and reference in order:
            x[order[reference]] = 0.0
        for i, (ks, kt, f, ok) in enumerate(readings):
            miss = np.sqrt(((x[kt] - x[ks] - f) ** 2).sum(axis=0))[ok]
            residual[i] = float(np.sqrt((miss**2).mean())) if miss.size else float("nan")
    return {s: x[k].astype(np.float32) for s, k in order.items()}, residual
