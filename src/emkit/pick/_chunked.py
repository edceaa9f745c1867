"""Detection in bounded memory: a tomogram larger than memory, chunk by chunk.

The tomogram is read lazily (a memory-mapped MRC, a Zarr array) one chunk at a time, each
with a margin of its neighbours wide enough to hold a whole particle; normalisation levels
come from a sample of the whole tomogram, so every chunk is normalised alike. Each chunk's
maps are post-processed without the outlier filter, and a particle is kept by the chunk
whose core holds its centre (so none is counted twice); its instance voxels are written into
the tomogram-wide label map. The k-nearest-neighbour filter then runs on the whole list.
Memory: one chunk's maps (per worker) plus the int32 label map, which goes to a temporary
file when it is large (below).

The chunks are independent tasks: with a path to the tomogram they run on a local Dask
cluster of worker processes or a running scheduler (each task opens the file itself and
reads only its chunk), and are folded in, in order, as they finish; the picks are those of
one process, up to the rounding of another thread count.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from emkit.errors import InputError
from emkit.pick._detect import PostProcessing, _outliers, postprocess, predict_pick_maps
from emkit.pick._particles import ParticleList

__all__ = ["detect_particles_chunked"]

_SAMPLE_VOXELS = 4_000_000
# An int32 label map above this many bytes is kept in a temporary file, not in memory.
LABEL_MAP_IN_MEMORY_BYTES = 1 << 30
# Label-map voxels renumbered at once at the end (a z slab at a time).
_RENUMBER_VOXELS = 16_000_000


def lazy_tomogram_shape(path: str | os.PathLike[str]) -> tuple[int, ...]:
    """The shape of the tomogram at ``path``, read from its header or Zarr metadata only
    (nothing loaded, no warnings: the run reads it once more and says what is odd)."""
    return tuple(int(n) for n in _opened(os.fspath(path)).shape)


def label_map_on_disk(shape: tuple[int, ...]) -> bool:
    """Whether the instance label map of a tomogram of ``shape`` goes to a temporary file."""
    return 4 * int(np.prod(shape, dtype=np.int64)) > LABEL_MAP_IN_MEMORY_BYTES


def _new_label_map(shape: tuple[int, ...]) -> np.ndarray:
    """Zeros, int32: in memory, or for a large map in a reserved temporary file."""
    if not label_map_on_disk(shape):
        return np.zeros(shape, np.int32)
    from emkit.io._tempfiles import temporary_array

    return temporary_array(shape, np.int32, "instance label map of chunked detection")


def _levels(volume: Any, model: Any) -> tuple[float, float]:
    """The normalisation levels of the whole tomogram from evenly spaced z slices."""
    nz = volume.shape[0]
    per_slice = int(np.prod(volume.shape[1:]))
    step = max(1, int(np.ceil(nz * per_slice / _SAMPLE_VOXELS)))
    sample = np.asarray(volume[::step], dtype=np.float32)
    return model.normalisation.levels(sample)


def _opened(path: str) -> Any:
    """The tomogram at ``path``, read lazily (a memory map or a Zarr array: cheap to open,
    so each task opens its own). Quietly: what is odd about the file was said once, by the
    caller that read it first (:func:`emkit.pick.detect_particles_in_file`), not once per
    chunk."""
    from emkit.io._quiet import reads_quietly
    from emkit.pick._run import _lazy_tomogram

    with reads_quietly():
        return _lazy_tomogram(path)[0]


@dataclass(frozen=True)
class _Chunk:
    """One chunk's work, picklable: what a Dask worker is sent."""

    source: Any  # a path (str) each task opens lazily, or an array-like (this process only)
    model: Any
    params: PostProcessing
    levels: tuple[float, float]
    lo: tuple[int, ...]
    hi: tuple[int, ...]
    core_lo: tuple[int, ...]
    core_hi: tuple[int, ...]
    tile_size: int
    overlap: int
    batch_size: int
    device: str | None
    threads: int | None  # None: leave the process's thread settings alone

    @property
    def box(self) -> tuple[slice, ...]:
        """The chunk with its margins, in the tomogram."""
        return tuple(slice(a, b) for a, b in zip(self.lo, self.hi))


def _detect_chunk(task: _Chunk) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Maps and post-processing of one chunk: its label block (only the particles whose
    centre lies in the core, numbered from 1), and their centres (whole-tomogram voxels),
    classes and scores. A module-level function of one picklable argument (a Dask task)."""
    import contextlib

    from emkit.parallel import limit_threads

    volume = _opened(task.source) if isinstance(task.source, str) else task.source
    threads = (limit_threads(task.threads) if task.threads is not None
               else contextlib.nullcontext())
    with threads:
        block = np.asarray(volume[task.box], dtype=np.float32)
        maps = predict_pick_maps(block, task.model, tile_size=task.tile_size,
                                 overlap=task.overlap, batch_size=task.batch_size,
                                 device=task.device, levels=task.levels)
        local, found = postprocess(*maps, replace(task.params, outlier_neighbours=0))
    centres = found.zyx + np.asarray(task.lo)
    inside = np.all((centres >= np.asarray(task.core_lo) - 0.5)
                    & (centres < np.asarray(task.core_hi) - 0.5), axis=1)
    lookup = np.zeros(int(local.max()) + 1, np.int32)
    lookup[1:][inside] = np.arange(1, int(inside.sum()) + 1, dtype=np.int32)
    return (lookup[local], centres[inside], found.classes[inside],
            found.scores[inside])


def _chunks(shape: tuple[int, ...], chunk: int, margin: int) -> list[tuple[tuple[int, ...], ...]]:
    """``(lo, hi, core_lo, core_hi)`` of every chunk, in C order."""
    boxes = []
    for corner in itertools.product(*[range(0, n, chunk) for n in shape]):
        core_lo = np.array(corner)
        core_hi = np.minimum(core_lo + chunk, shape)
        lo = np.maximum(core_lo - margin, 0)
        hi = np.minimum(core_hi + margin, shape)
        boxes.append(tuple(tuple(int(v) for v in a) for a in (lo, hi, core_lo, core_hi)))
    return boxes


def detect_particles_chunked(
    volume: Any, model: Any, *, params: PostProcessing | None = None, chunk: int = 128,
    margin: int | None = None, tile_size: int = 64, overlap: int = 16, batch_size: int = 2,
    device: str | None = None, progress: bool = False, scheduler: Any = None,
    n_workers: int | None = 1,
) -> dict[str, Any]:
    """:func:`emkit.pick.detect_particles` chunk by chunk (no voxel-size rescaling).

    Parameters
    ----------
    volume : path or array-like, (z, y, x)
        A tomogram file or Zarr store (read lazily, by each task, without the readers'
        warnings about odd headers: read it once first to see them), or anything sliceable:
        ndarray, ``np.memmap``, ``zarr.Array`` (then the chunks run in this process).
    chunk : int
        Core side of a chunk in voxels.
    margin : int, optional
        Voxels of the neighbours around each chunk (default: twice the model's largest
        particle radius plus 8).
    scheduler : None, "sync", str or distributed.Client
        Where the chunks run when ``volume`` is a path (:func:`emkit.parallel.map_inputs`):
        None, a local cluster of ``n_workers`` processes (1: this process); an address, a
        running scheduler whose workers see the same file.
    n_workers : int or None
        Local worker processes (None: one per core); each task then uses the cores
        shared among them.

    Returns
    -------
    dict
        ``instances``, ``particles``, ``params`` as :func:`detect_particles` (no centre map).

    Raises
    ------
    InputError
        A volume that is not 3D, a chunk below 16 voxels, an in-memory array with a
        cluster.
    """
    path = (os.path.abspath(os.fspath(volume)) if isinstance(volume, (str, os.PathLike))
            else None)
    data = _opened(path) if path is not None else volume
    if len(data.shape) != 3:
        raise InputError(f"a tomogram is (z, y, x), got shape {tuple(data.shape)}")
    if chunk < 16:
        raise InputError(f"chunk must be at least 16 voxels, got {chunk}")
    from emkit.parallel import default_n_workers, runs_in_process

    shape = tuple(int(s) for s in data.shape)
    if margin is None:
        radii = model.extra.get("radii_A") or [100.0]
        margin = int(2 * max(radii) / (model.voxel_size_A or 10.0)) + 8
    boxes = _chunks(shape, chunk, margin)
    here = runs_in_process(scheduler, n_workers, len(boxes))
    # in this process the tasks share the opened tomogram; on a cluster each opens the file
    source: Any = data if here else path
    if not here and path is None:
        raise InputError("chunks run on a cluster only from a file: give the tomogram's "
                         "path, not an array")
    if not here and type(data) is np.ndarray:
        raise InputError(f"{path}: a compressed file is read whole, by every task; "
                         "decompress it (or convert it to OME-Zarr) to run its chunks on a "
                         "cluster")
    threads = None
    if not here:
        workers = min(n_workers or default_n_workers(), len(boxes))
        threads = 1 if scheduler is not None else max(1, default_n_workers() // workers)
    p = params or PostProcessing()
    levels = _levels(data, model)
    tasks = [_Chunk(source, model, p, levels, *box, tile_size, overlap, batch_size, device,
                    threads) for box in boxes]
    instances, particles = _fold(tasks, shape, p, scheduler, n_workers, progress)
    return {"instances": instances, "particles": particles, "rescale_factor": 1.0,
            "params": {**p.__dict__, "chunk": chunk, "margin": margin}}


def _fold(tasks: list[_Chunk], shape: tuple[int, ...], p: PostProcessing, scheduler: Any,
          n_workers: int | None, progress: bool) -> tuple[np.ndarray, ParticleList]:
    """Run the chunks and fold each into the label map and the list, in chunk order (a
    voxel two chunks claim keeps the earlier chunk's label); then the outlier filter."""
    from emkit.parallel import iter_inputs

    instances = _new_label_map(shape)
    zyx: list[np.ndarray] = []
    classes: list[np.ndarray] = []
    scores: list[np.ndarray] = []
    results = iter_inputs(_detect_chunk, tasks, scheduler=scheduler, n_workers=n_workers,
                          progress=progress, desc="chunks")
    for task, (labels, centres, found_classes, found_scores) in zip(tasks, results,
                                                                     strict=True):
        offset = sum(len(c) for c in zyx)
        target = instances[task.box]
        write = (labels > 0) & (target == 0)
        target[write] = labels[write] + offset
        zyx.append(centres)
        classes.append(found_classes)
        scores.append(found_scores)
    points = np.concatenate(zyx).reshape(-1, 3) if zyx else np.zeros((0, 3))
    keep = ~_outliers(points, p.outlier_neighbours, p.outlier_distance_px)
    lookup = np.zeros(len(points) + 1, np.int32)
    lookup[1:][keep] = np.arange(1, int(keep.sum()) + 1, dtype=np.int32)
    step = max(1, _RENUMBER_VOXELS // max(1, int(np.prod(shape[1:]))))
    for z in range(0, shape[0], step):
        instances[z:z + step] = lookup[instances[z:z + step]]
    particles = ParticleList(points[keep], np.concatenate(classes).astype(np.int64)[keep],
                             np.concatenate(scores).astype(np.float64)[keep])
    return instances, particles
