"""Path (geodesic) distances in the moving image that cannot cross the defect.

The original Expected Affine code keeps one full-resolution distance map per match (about
8 GB for 2,000 matches on a 1,000x1,000 image). Here distances live on a coarse grid of
``bin_px x bin_px`` cells (tens of thousands of nodes); a cell that touches the defect is
impassable. Dijkstra runs from a few sources at a time (one multi-source run per cluster
and subset), so memory is ``O(n_runs x n_cells)`` floats.

Near the defect the coarse cells are blocked, so full-resolution pixels there are filled
separately: one Dijkstra over just those pixels (a thin band) finds, for each, the nearest
pixel of an open cell that it can reach without crossing the defect, and takes that
pixel's value. Steps may enter the defect but never leave it, so defect pixels get a value
from their side while no path crosses from one side to the other.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy import ndimage
from scipy.sparse.csgraph import dijkstra

_SQRT2 = math.sqrt(2.0)
# (dy, dx, length) for half of the 8-neighbourhood; the other half is the reverse.
_STEPS = ((0, 1, 1.0), (1, 0, 1.0), (1, 1, _SQRT2), (1, -1, _SQRT2))


@dataclass
class CoarseGrid:
    """The moving image's coarse grid of path-distance nodes.

    Attributes
    ----------
    bin_px : int
        Cell size in full-resolution pixels.
    image_shape : (int, int)
        Full-resolution ``(H, W)``.
    blocked : ndarray of bool, shape (h, w)
        Cells that touch the (slightly dilated) defect.
    graph : scipy.sparse.csr_matrix, shape (h*w, h*w)
        Symmetric edge lengths in full-resolution pixels between open neighbour cells.
    snap : ndarray of int, shape (h*w,)
        For each cell, the nearest open cell (itself when open).
    """

    bin_px: int
    image_shape: tuple[int, int]
    blocked: np.ndarray
    graph: sp.csr_matrix
    snap: np.ndarray

    @property
    def shape(self) -> tuple[int, int]:
        return (int(self.blocked.shape[0]), int(self.blocked.shape[1]))

    def nodes_of(self, xy: np.ndarray) -> np.ndarray:
        """Open-cell node index for each ``(x, y)`` full-resolution point, shape (n,)."""
        h, w = self.shape
        cx = np.clip((xy[:, 0] // self.bin_px).astype(np.intp), 0, w - 1)
        cy = np.clip((xy[:, 1] // self.bin_px).astype(np.intp), 0, h - 1)
        return self.snap[cy * w + cx]

    def distances(self, sources: np.ndarray) -> np.ndarray:
        """Path distance in pixels from the nearest of ``sources`` to every cell, shape (h*w,).

        Unreachable (and blocked) cells get ``inf``.
        """
        sources = np.unique(np.asarray(sources, dtype=np.intp))
        return dijkstra(self.graph, directed=False, indices=sources, min_only=True)

    def nearest_source(self, sources: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Geodesic Voronoi cells: distance to and node of the nearest source, per cell.

        Unreachable cells get distance ``inf`` and source ``-1``.
        """
        sources = np.unique(np.asarray(sources, dtype=np.intp))
        dist, _, nearest = dijkstra(
            self.graph,
            directed=False,
            indices=sources,
            min_only=True,
            return_predecessors=True,
        )
        nearest = np.where(np.isfinite(dist), nearest, -1)
        return dist, nearest


def choose_bin(image_shape: tuple[int, int], target_cells: int) -> int:
    """Cell size that gives about ``target_cells`` coarse cells."""
    h, w = image_shape
    return max(1, math.ceil(math.sqrt(h * w / max(target_cells, 1))))


def blocked_pixels(defect_mask: np.ndarray | None, image_shape: tuple[int, int]) -> np.ndarray:
    """Full-resolution impassable pixels: the defect grown by 2 pixels (interpolation and
    a 1-pixel diagonal must not leak)."""
    if defect_mask is None:
        return np.zeros(image_shape, dtype=bool)
    return grow(defect_mask, 2)


def grow(mask: np.ndarray, pixels: int, *, square: bool = False) -> np.ndarray:
    """Binary dilation by ``pixels`` steps (4-neighbour cross, or 3x3 square), via OpenCV
    (several times faster than scipy on full-size sections)."""
    import cv2

    shape = cv2.MORPH_RECT if square else cv2.MORPH_CROSS
    kernel = cv2.getStructuringElement(shape, (3, 3))
    grown = cv2.dilate(mask.astype(np.uint8), kernel, iterations=pixels)
    return grown.astype(bool)


def build_coarse_grid(blocked_px: np.ndarray, bin_px: int) -> CoarseGrid:
    """Coarse grid whose cells are blocked when any of their pixels is blocked."""
    h_full, w_full = blocked_px.shape
    h = -(-h_full // bin_px)
    w = -(-w_full // bin_px)
    padded = np.zeros((h * bin_px, w * bin_px), dtype=bool)
    padded[:h_full, :w_full] = blocked_px
    blocked = np.asarray(padded.reshape(h, bin_px, w, bin_px).any(axis=(1, 3)))
    open_cells = ~blocked
    graph = _grid_graph(open_cells, step_px=float(bin_px))
    if open_cells.any():
        _, (iy, ix) = ndimage.distance_transform_edt(blocked, return_indices=True)
        snap = (iy * w + ix).ravel()
    else:
        snap = np.arange(h * w)
    return CoarseGrid(
        bin_px=bin_px, image_shape=(h_full, w_full), blocked=blocked, graph=graph, snap=snap
    )


def _grid_graph(open_cells: np.ndarray, *, step_px: float) -> sp.csr_matrix:
    """Symmetric 8-neighbour graph over open cells; no diagonal step cuts a blocked corner."""
    h, w = open_cells.shape
    index = np.arange(h * w).reshape(h, w)
    rows, cols, lengths = [], [], []
    for dy, dx, length in _STEPS:
        a_sl, b_sl = _pair_slices(h, w, dy, dx)
        ok = open_cells[a_sl] & open_cells[b_sl]
        if dy and dx:
            # Both orthogonal cells must be open, else the step squeezes past a barrier.
            ok &= open_cells[a_sl[0], b_sl[1]] & open_cells[b_sl[0], a_sl[1]]
        rows.append(index[a_sl][ok])
        cols.append(index[b_sl][ok])
        lengths.append(np.full(int(ok.sum()), length * step_px))
    r = np.concatenate(rows)
    c = np.concatenate(cols)
    d = np.concatenate(lengths)
    graph = sp.coo_matrix((d, (r, c)), shape=(h * w, h * w)).tocsr()
    return graph


def _pair_slices(
    h: int, w: int, dy: int, dx: int
) -> tuple[tuple[slice, slice], tuple[slice, slice]]:
    """Slices ``a`` and ``b`` such that ``b`` is ``a`` shifted by ``(dy, dx)``."""
    ay = slice(0, h - dy)
    by = slice(dy, h)
    if dx >= 0:
        ax, bx = slice(0, w - dx), slice(dx, w)
    else:
        ax, bx = slice(-dx, w), slice(0, w + dx)
    return (ay, ax), (by, bx)


def band_sources(grid: CoarseGrid, blocked_px: np.ndarray) -> np.ndarray:
    """For full-resolution pixels in blocked cells, the nearest reachable open-cell pixel.

    Returns
    -------
    ndarray of int32, shape (H, W)
        Flat full-resolution index of the pixel whose value a band pixel should take;
        ``-1`` outside the band and ``-2`` for band pixels that reach no open cell.
    """
    h_full, w_full = grid.image_shape
    b = grid.bin_px
    band = np.repeat(np.repeat(grid.blocked, b, axis=0), b, axis=1)[:h_full, :w_full]
    out = np.full((h_full, w_full), -1, dtype=np.int32)
    if not band.any():
        return out
    ring = grow(band, 1, square=True) & ~band
    nodes = band | ring
    node_id = np.full((h_full, w_full), -1, dtype=np.int64)
    n_nodes = int(nodes.sum())
    node_id[nodes] = np.arange(n_nodes)
    passable = ~blocked_px
    rows, cols, lengths = [], [], []
    for dy, dx, length in _STEPS:
        a_sl, b_sl = _pair_slices(h_full, w_full, dy, dx)
        both = nodes[a_sl] & nodes[b_sl]
        if dy and dx:
            corner_ok = passable[a_sl[0], b_sl[1]] | passable[b_sl[0], a_sl[1]]
            both &= corner_ok
        ia = node_id[a_sl][both]
        ib = node_id[b_sl][both]
        pa = passable[a_sl][both]
        pb = passable[b_sl][both]
        # A step may start only on a passable pixel: paths enter the defect, never leave.
        rows += [ia[pa], ib[pb]]
        cols += [ib[pa], ia[pb]]
        lengths += [np.full(int(pa.sum()), length), np.full(int(pb.sum()), length)]
    graph = sp.coo_matrix(
        (np.concatenate(lengths), (np.concatenate(rows), np.concatenate(cols))),
        shape=(n_nodes, n_nodes),
    ).tocsr()
    ring_nodes = node_id[ring]
    dist, _, nearest = dijkstra(
        graph, directed=True, indices=ring_nodes, min_only=True, return_predecessors=True
    )
    flat_of_node = np.flatnonzero(nodes.ravel())
    band_nodes = node_id[band]
    reached = np.isfinite(dist[band_nodes])
    src = np.full(band_nodes.shape, -2, dtype=np.int64)
    src[reached] = flat_of_node[nearest[band_nodes[reached]]]
    out[band] = src.astype(np.int32)
    return out
