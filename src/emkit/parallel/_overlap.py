"""A filter over a large array chunk by chunk, each chunk with a margin of its neighbours."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from emkit.errors import InputError


def chunked_map_overlap(
    func: Callable[[np.ndarray], np.ndarray],
    data: Any,
    *,
    chunks: int | tuple[int, ...],
    depth: int | tuple[int, ...],
    boundary: str = "reflect",
    dtype: Any = None,
    output: str | os.PathLike[str] | None = None,
    scheduler: Any = "threads",
    n_workers: int | None = None,
) -> np.ndarray | Path:
    """Apply ``func`` to overlapping chunks of a (large) array with ``dask.array.map_overlap``.

    Each chunk is given to ``func`` with ``depth`` extra voxels of its neighbours on every
    side (``boundary`` padding at the array's edge); the margin is cut off again, so a
    filter whose reach is at most ``depth`` gives exactly the result of running it on the
    whole array.

    Parameters
    ----------
    func : callable
        ``func(block) -> block`` of the same shape (any per-voxel or local filter).
    data : ndarray, zarr.Array, dask.array.Array or path to a ``.zarr`` / ``.ome.zarr``
        The input, e.g. a ``(z, y, x)`` tomogram; a Zarr store is read lazily.
    chunks : int or tuple of int
        Chunk shape the work is split into (one int: the same along every axis).
    depth : int or tuple of int
        Overlap in voxels per axis, at least the reach of ``func``.
    boundary : str
        Padding at the array's edges: ``"reflect"``, ``"nearest"``, ``"periodic"``, ``"none"``
        or a constant value.
    dtype : numpy dtype, optional
        Result dtype (default: the input's).
    output : path-like, optional
        Write the result to this ``.zarr`` store (atomically: a temporary folder renamed
        when complete) and return its path, instead of returning an ndarray.
    scheduler : "threads", "sync", "processes", None, str or distributed.Client
        ``"threads"`` (default; numpy filters release the GIL), ``"sync"`` (one thread),
        ``"processes"``; None starts a local distributed cluster; an address or a Client
        uses that cluster.
    n_workers : int, optional
        Workers (threads or processes) for the schedulers that start them.

    Returns
    -------
    ndarray or Path
        The filtered array, or the path of the written Zarr store.

    Raises
    ------
    InputError
        ``depth`` larger than a chunk, or chunks/depth with the wrong number of axes.

    Examples
    --------
    >>> from scipy import ndimage
    >>> volume = np.random.default_rng(0).random((64, 64, 64), dtype=np.float32)
    >>> smooth = chunked_map_overlap(
    ...     lambda b: ndimage.uniform_filter(b, 3), volume, chunks=32, depth=1)
    >>> bool(np.allclose(smooth, ndimage.uniform_filter(volume, 3, mode="reflect")))
    True
    """
    import dask
    import dask.array as da

    array = _as_dask(data)
    ndim = array.ndim
    chunk_t = _per_axis(chunks, ndim, "chunks")
    depth_t = _per_axis(depth, ndim, "depth")
    for c, d, n in zip(chunk_t, depth_t, array.shape):
        if d > min(c, n):
            raise InputError(
                f"overlap depth {depth_t} exceeds the chunk shape {chunk_t}; give larger "
                "chunks or a smaller depth"
            )
    array = array.rechunk(chunk_t)
    out_dtype = np.dtype(dtype) if dtype is not None else array.dtype
    result = da.map_overlap(
        func, array, depth=depth_t, boundary=boundary, dtype=out_dtype, trim=True
    )
    if (
        scheduler is None
        or (isinstance(scheduler, str) and "://" in scheduler)
        or (scheduler is not None and not isinstance(scheduler, str))
    ):
        from emkit.parallel._fanout import dask_client

        with dask_client(scheduler, n_workers=n_workers) as client:
            return _finish(result, output, client=client)
    config: dict[str, Any] = {"scheduler": "sync" if scheduler == "sync" else scheduler}
    if n_workers is not None and scheduler in ("threads", "processes"):
        config["num_workers"] = n_workers
    with dask.config.set(config):
        return _finish(result, output, client=None)


def _finish(result: Any, output: str | os.PathLike[str] | None, *, client: Any) -> Any:
    if output is None:
        computed = client.compute(result).result() if client is not None else result.compute()
        return np.asarray(computed)
    from emkit.io import atomic_output

    target = Path(output)
    with atomic_output(target, directory=True) as tmp:
        stored = result.to_zarr(str(tmp), compute=False)
        if client is not None:
            client.compute(stored).result()
        else:
            stored.compute()
    return target


def _as_dask(data: Any) -> Any:
    import dask.array as da

    if isinstance(data, da.Array):
        return data
    if isinstance(data, (str, os.PathLike)):
        from emkit.io import open_zarr_array

        return da.from_zarr(open_zarr_array(data))
    if hasattr(data, "shape") and hasattr(data, "dtype") and not isinstance(data, np.ndarray):
        return da.from_zarr(data)  # zarr.Array: read lazily, chunk by chunk
    arr = np.asarray(data)
    return da.from_array(arr, chunks=arr.shape)


def _per_axis(value: int | tuple[int, ...], ndim: int, name: str) -> tuple[int, ...]:
    if isinstance(value, (int, np.integer)):
        return (int(value),) * ndim
    out = tuple(int(v) for v in value)
    if len(out) != ndim:
        raise InputError(f"{name} {out} has {len(out)} axes but the data have {ndim}")
    return out
