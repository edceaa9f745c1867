"""Path distances must not cross the defect, and stay bounded in memory."""

from __future__ import annotations

import numpy as np

from emkit.register._pathdist import (
    band_sources,
    blocked_pixels,
    build_coarse_grid,
    choose_bin,
)


def _wall(h=120, w=120, gap=False):
    defect = np.zeros((h, w), bool)
    rows = slice(0, h - 40) if gap else slice(0, h)
    defect[rows, 58:61] = True
    return defect


def test_a_wall_across_the_image_separates_the_sides():
    blocked = blocked_pixels(_wall(), (120, 120))
    grid = build_coarse_grid(blocked, 6)
    left, right = grid.nodes_of(np.array([[20.0, 60.0], [100.0, 60.0]]))
    dist = grid.distances(np.array([left]))
    assert np.isfinite(dist[left]) and dist[left] == 0
    assert not np.isfinite(dist[right])


def test_paths_go_around_the_end_of_a_wall():
    blocked = blocked_pixels(_wall(gap=True), (120, 120))
    grid = build_coarse_grid(blocked, 6)
    a, b = grid.nodes_of(np.array([[30.0, 20.0], [90.0, 20.0]]))
    d = grid.distances(np.array([a]))[b]
    euclid = 60.0
    # Down past the wall's end (row ~80) and back up: much longer than straight across.
    assert d > 2.0 * euclid
    assert np.isfinite(d)


def test_nearest_source_is_a_geodesic_voronoi():
    blocked = blocked_pixels(_wall(), (120, 120))
    grid = build_coarse_grid(blocked, 6)
    sources = grid.nodes_of(np.array([[10.0, 10.0], [110.0, 110.0]]))
    _, nearest = grid.nearest_source(sources)
    probe = grid.nodes_of(np.array([[50.0, 110.0], [70.0, 10.0]]))
    # Each probe is closer (Euclidean) to the source across the wall but belongs to its side.
    assert nearest[probe[0]] == sources[0]
    assert nearest[probe[1]] == sources[1]


def test_band_pixels_take_a_source_on_their_own_side():
    # A thin diagonal wall: 8-connected steps must not slip through.
    defect = np.eye(90, dtype=bool) | np.eye(90, k=1, dtype=bool)
    blocked = blocked_pixels(defect, (90, 90))
    grid = build_coarse_grid(blocked, 5)
    src = band_sources(grid, blocked)
    ys, xs = np.nonzero(src >= 0)
    sy, sx = np.divmod(src[ys, xs], 90)
    off = ~defect[ys, xs]
    # Above the diagonal (x > y) stays above, below stays below.
    assert np.all(np.sign(xs[off] - ys[off]) == np.sign(sx[off] - sy[off]))
    # Band pixels are exactly those in blocked cells.
    assert (src[blocked] != -1).all()


def test_choose_bin_targets_the_cell_count():
    b = choose_bin((2080, 2752), 40_000)
    cells = (-(-2080 // b)) * (-(-2752 // b))
    assert 30_000 <= cells <= 42_000
