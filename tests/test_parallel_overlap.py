"""chunked_map_overlap equals the filter run on the whole array, for arrays and Zarr."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from emkit.errors import InputError
from emkit.io import create_zarr_array
from emkit.parallel import chunked_map_overlap


def _smooth(block: np.ndarray) -> np.ndarray:
    return ndimage.gaussian_filter(block, 1.0, truncate=3.0)


@pytest.fixture
def volume():
    return np.random.default_rng(0).random((40, 48, 36), dtype=np.float32)


@pytest.mark.parametrize("scheduler", ["threads", "sync"])
def test_matches_whole_array(volume, scheduler):
    out = chunked_map_overlap(_smooth, volume, chunks=16, depth=3, scheduler=scheduler)
    np.testing.assert_allclose(out, _smooth(volume), atol=1e-6)


def test_too_small_depth_shows_seams(volume):
    """The test can fail: without overlap the chunk borders differ from the whole result."""
    out = chunked_map_overlap(_smooth, volume, chunks=16, depth=0, scheduler="sync")
    assert np.abs(out - _smooth(volume)).max() > 1e-3


def test_zarr_in_zarr_out(volume, tmp_path):
    import zarr

    src = create_zarr_array(tmp_path / "in.zarr", volume.shape, "float32", chunks=(20, 24, 18))
    src[:] = volume
    out = chunked_map_overlap(
        _smooth, tmp_path / "in.zarr", chunks=(20, 24, 18), depth=3, output=tmp_path / "out.zarr"
    )
    assert out == tmp_path / "out.zarr"
    np.testing.assert_allclose(zarr.open_array(str(out))[:], _smooth(volume), atol=1e-6)
    # Nothing temporary left beside it.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.zarr", "out.zarr"]


def test_dtype_and_bad_depth(volume):
    out = chunked_map_overlap(lambda b: b > 0.5, volume, chunks=20, depth=1, dtype=bool)
    assert out.dtype == bool and out.shape == volume.shape
    with pytest.raises(InputError, match="exceeds"):
        chunked_map_overlap(_smooth, volume, chunks=8, depth=9)
    with pytest.raises(InputError, match="axes"):
        chunked_map_overlap(_smooth, volume, chunks=(8, 8), depth=1)


@pytest.mark.slow
def test_on_a_local_cluster(volume, tmp_path):
    """scheduler=None starts a local cluster of processes (a few seconds)."""
    out = chunked_map_overlap(
        _smooth,
        volume,
        chunks=20,
        depth=3,
        scheduler=None,
        n_workers=2,
        output=tmp_path / "out.zarr",
    )
    import zarr

    np.testing.assert_allclose(zarr.open_array(str(out))[:], _smooth(volume), atol=1e-6)
