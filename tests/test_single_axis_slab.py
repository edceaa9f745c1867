"""The single-axis projector works in y-slabs: every slab size gives the unslabbed result."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from emkit.errors import InputError
from emkit.ops import SingleAxisProjector, single_axis_system_matrix

SHAPES = [
    # (volume_shape (nz, ny, nx), n_detector)
    ((12, 37, 20), None),  # ny not a multiple of any slab size below
    ((9, 3, 16), 21),  # fewer rows than slabs x threads: the matrix rows are split instead
    ((16, 1, 12), None),
]
ANGLES = np.linspace(-62.5, 57.5, 25)


@pytest.mark.parametrize(("shape", "nd"), SHAPES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_slab_size_does_not_change_the_products(shape, nd, dtype):
    rng = np.random.default_rng(4)
    whole = SingleAxisProjector(shape, ANGLES, n_detector=nd, device="cpu", dtype=dtype,
                                slab_rows=shape[1])
    vol = rng.standard_normal(shape).astype(np.float32)
    proj = rng.standard_normal(whole.projection_shape).astype(np.float32)
    ref_fwd, ref_adj = whole.forward(vol), whole.adjoint(proj)
    for rows in (1, 2, 5, 16, 1000):
        p = SingleAxisProjector(shape, ANGLES, n_detector=nd, device="cpu", dtype=dtype,
                                slab_rows=rows)
        fwd, adj = p.forward(vol), p.adjoint(proj)
        assert fwd.dtype == ref_fwd.dtype and adj.dtype == ref_adj.dtype
        # Each output is the same sum in the same order: equal to the last bit.
        np.testing.assert_array_equal(fwd, ref_fwd)
        np.testing.assert_array_equal(adj, ref_adj)


def test_slabs_of_a_volume_project_like_the_volume():
    """A slab of rows is a projector of its own (the unit a streamed reconstruction uses)."""
    rng = np.random.default_rng(5)
    vol = rng.standard_normal((10, 40, 18)).astype(np.float32)
    proj = rng.standard_normal((len(ANGLES), 40, 18)).astype(np.float32)
    full = SingleAxisProjector(vol.shape, ANGLES, device="cpu")
    part = SingleAxisProjector((10, 13, 18), ANGLES, device="cpu")
    np.testing.assert_array_equal(part.forward(vol[:, 20:33]), full.forward(vol)[:, 20:33])
    np.testing.assert_array_equal(part.adjoint(proj[:, 20:33]), full.adjoint(proj)[:, 20:33])


def test_thread_count_does_not_change_the_products():
    rng = np.random.default_rng(6)
    vol = rng.standard_normal((14, 70, 22)).astype(np.float32)
    p = SingleAxisProjector(vol.shape, ANGLES, device="cpu", slab_rows=8)
    old = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = p.forward(vol), p.adjoint(p.forward(vol))
        torch.set_num_threads(3)
        three = p.forward(vol), p.adjoint(p.forward(vol))
    finally:
        torch.set_num_threads(old)
    np.testing.assert_array_equal(one[0], three[0])
    np.testing.assert_array_equal(one[1], three[1])


@pytest.mark.parametrize("rows", [0, -3])
def test_bad_slab_rows(rows):
    with pytest.raises(InputError, match="slab_rows"):
        SingleAxisProjector((4, 4, 4), [0.0], slab_rows=rows)


@pytest.mark.parametrize("block_bytes", [512, 4096])
def test_column_blocks_do_not_change_the_products(monkeypatch, block_bytes):
    """The non-zeros are applied column block by column block: the same sums, same order."""
    from emkit.ops import single_axis

    monkeypatch.setattr(single_axis, "_BLOCK_BYTES", block_bytes)
    single_axis._clear_matrix_cache()
    try:
        rng = np.random.default_rng(7)
        shape, nd = (11, 9, 23), 27
        p = SingleAxisProjector(shape, ANGLES, n_detector=nd, device="cpu")
        vol = rng.standard_normal(shape).astype(np.float32)
        proj = rng.standard_normal(p.projection_shape).astype(np.float32)
        # Nothing cached: A.T is built a group of tilts at a time.
        fwd, adj = p.forward(vol), p.adjoint(proj)
        for adjoint, unit in ((False, nd), (True, shape[2])):
            product = single_axis._slab_product(p._key, adjoint, unit, np.dtype(np.float32))
            assert len(product.indptrs) > 3
        a = single_axis_system_matrix(shape[::2], ANGLES, n_detector=nd)
        plain_fwd = (a @ vol.transpose(0, 2, 1).reshape(-1, shape[1])).reshape(
            len(ANGLES), nd, shape[1]).transpose(0, 2, 1)
        plain_adj = (a.T.tocsr() @ proj.transpose(0, 2, 1).reshape(-1, shape[1])).reshape(
            shape[0], shape[2], shape[1]).transpose(0, 2, 1)
        np.testing.assert_array_equal(fwd, plain_fwd)
        np.testing.assert_array_equal(adj, plain_adj)
        ones = np.ones(a.shape[1])
        np.testing.assert_array_equal(p.ray_sums().ravel(), (a @ ones).astype(np.float32))
    finally:
        single_axis._clear_matrix_cache()
