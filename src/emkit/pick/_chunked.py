"""Detection in bounded memory: a tomogram larger than memory, chunk by chunk.

The tomogram is read lazily (a memory-mapped MRC, a Zarr array) one chunk at a time, each
with a margin of its neighbours wide enough to hold a whole particle; normalisation levels
come from a sample of the whole tomogram, so every chunk is normalised alike. Each chunk's
maps are post-processed without the outlier filter, and a particle is kept by the chunk
whose core holds its centre (so none is counted twice); its instance voxels are written into
the tomogram-wide label map. The k-nearest-neighbour filter then runs on the whole list.
Memory: one chunk's maps plus the int32 label map.
"""

from __future__ import annotations

import itertools
from dataclasses import replace
from typing import Any

import numpy as np

from emkit.errors import InputError
from emkit.pick._detect import PostProcessing, _outliers, postprocess, predict_pick_maps
from emkit.pick._particles import ParticleList

__all__ = ["detect_particles_chunked"]

_SAMPLE_VOXELS = 4_000_000


def _levels(volume: Any, model: Any) -> tuple[float, float]:
    """The normalisation levels of the whole tomogram from evenly spaced z slices."""
    nz = volume.shape[0]
    per_slice = int(np.prod(volume.shape[1:]))
    step = max(1, int(np.ceil(nz * per_slice / _SAMPLE_VOXELS)))
    sample = np.asarray(volume[::step], dtype=np.float32)
    return model.normalisation.levels(sample)


def detect_particles_chunked(
    volume: Any, model: Any, *, params: PostProcessing | None = None, chunk: int = 128,
    margin: int | None = None, tile_size: int = 64, overlap: int = 16, batch_size: int = 2,
    device: str | None = None, progress: bool = False,
) -> dict[str, Any]:
    """:func:`emkit.pick.detect_particles` chunk by chunk (no voxel-size rescaling).

    Parameters
    ----------
    volume : array-like, (z, y, x)
        Anything sliceable: ndarray, ``np.memmap``, ``zarr.Array``.
    chunk : int
        Core side of a chunk in voxels.
    margin : int, optional
        Voxels of the neighbours around each chunk (default: twice the model's largest
        particle radius plus 8).

    Returns
    -------
    dict
        ``instances``, ``particles``, ``params`` as :func:`detect_particles` (no centre map).
    """
    if len(volume.shape) != 3:
        raise InputError(f"a tomogram is (z, y, x), got shape {tuple(volume.shape)}")
    if chunk < 16:
        raise InputError(f"chunk must be at least 16 voxels, got {chunk}")
    p = params or PostProcessing()
    if margin is None:
        radii = model.extra.get("radii_A") or [100.0]
        margin = int(2 * max(radii) / (model.voxel_size_A or 10.0)) + 8
    shape = tuple(int(s) for s in volume.shape)
    levels = _levels(volume, model)
    instances = np.zeros(shape, np.int32)
    zyx, classes, scores = [], [], []
    starts = [range(0, n, chunk) for n in shape]
    boxes = list(itertools.product(*starts))
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(boxes), desc="chunks", unit="chunk")
    local_params = replace(p, outlier_neighbours=0)
    for corner in boxes:
        core_lo = np.array(corner)
        core_hi = np.minimum(core_lo + chunk, shape)
        lo = np.maximum(core_lo - margin, 0)
        hi = np.minimum(core_hi + margin, shape)
        ext = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
        block = np.asarray(volume[ext], dtype=np.float32)
        maps = predict_pick_maps(block, model, tile_size=tile_size, overlap=overlap,
                                 batch_size=batch_size, device=device, levels=levels)
        local, found = postprocess(*maps, local_params)
        centres = found.zyx + lo
        inside = np.all((centres >= core_lo - 0.5) & (centres < core_hi - 0.5), axis=1)
        lookup = np.zeros(int(local.max()) + 1, np.int32)
        first = len(zyx)
        lookup[1:][inside] = np.arange(first + 1, first + 1 + int(inside.sum()))
        mapped = lookup[local]
        target = instances[ext]
        write = (mapped > 0) & (target == 0)
        target[write] = mapped[write]
        zyx.extend(centres[inside])
        classes.extend(found.classes[inside])
        scores.extend(found.scores[inside])
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    points = np.asarray(zyx, np.float64).reshape(-1, 3)
    keep = ~_outliers(points, p.outlier_neighbours, p.outlier_distance_px)
    lookup = np.zeros(len(points) + 1, np.int32)
    lookup[1:][keep] = np.arange(1, int(keep.sum()) + 1, dtype=np.int32)
    particles = ParticleList(points[keep], np.asarray(classes, np.int64)[keep],
                             np.asarray(scores, np.float64)[keep])
    return {"instances": lookup[instances], "particles": particles, "rescale_factor": 1.0,
            "params": {**p.__dict__, "chunk": chunk, "margin": margin}}
