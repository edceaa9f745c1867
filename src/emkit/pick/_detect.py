"""Detection: the network's three maps over the whole tomogram, then instances and centres.

Post-processing follows the original detector, with its defaults, and with its bugs fixed:

1. mask = mask probability > ``mask_threshold`` (0.1; a float, the original compared
   integer-cast maps in places);
2. connected components smaller than ``min_size_voxels`` (64) are removed;
3. centre peaks: local maxima of the centre map over ``(2 * peak_order + 1)^3`` voxels
   (order 1) above ``centre_threshold`` (0.1), a plateau counted once;
4. a component holding several peaks is split, each voxel going to its nearest peak
   (``split_components``); the original numbered the pieces from 0, so the first piece
   merged into the background and was lost;
5. each instance's centre is its centre-map-weighted centroid (sub-voxel; the original
   truncated to integers and let the background label count as a particle), its class the
   class with the highest mean probability over its voxels, its score the mean mask
   probability times the highest centre value;
6. k-nearest-neighbour outlier filter: a particle whose ``outlier_neighbours`` (3) nearest
   neighbours are not all within ``outlier_distance_px`` (30) is removed (0 neighbours:
   off; with no more particles than neighbours nothing is removed).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from emkit.errors import InputError
from emkit.pick._particles import ParticleList

__all__ = ["PostProcessing", "postprocess", "predict_pick_maps", "detect_particles"]

logger = logging.getLogger(__name__)

_MAX_RESCALE = 2.0


@dataclass(frozen=True)
class PostProcessing:
    """Post-processing parameters (the original detector's defaults)."""

    mask_threshold: float = 0.1
    centre_threshold: float = 0.1
    min_size_voxels: int = 64
    peak_order: int = 1
    split_components: bool = True
    outlier_neighbours: int = 3
    outlier_distance_px: float = 30.0

    def __post_init__(self) -> None:
        if not (0 <= self.mask_threshold < 1 and 0 <= self.centre_threshold < 1):
            raise InputError("mask and centre thresholds must be in [0, 1)")
        if self.min_size_voxels < 0 or self.peak_order < 1 or self.outlier_neighbours < 0:
            raise InputError("min_size_voxels >= 0, peak_order >= 1, outlier_neighbours >= 0")
        if not self.outlier_distance_px > 0:
            raise InputError("outlier_distance_px must be positive")


def _centre_peaks(centre: np.ndarray, mask: np.ndarray, threshold: float, order: int
                  ) -> np.ndarray:
    """Local maxima of the centre map inside the mask, plateaus merged; ``(n, 3)`` float."""
    values = np.where(mask & (centre >= threshold), centre, 0).astype(np.float32)
    top = ndimage.maximum_filter(values, size=2 * order + 1, mode="nearest")
    maxima = (values == top) & (values > 0)
    plateaus, n = ndimage.label(maxima, structure=np.ones((3, 3, 3)))
    if n == 0:
        return np.zeros((0, 3))
    return np.asarray(ndimage.center_of_mass(maxima, plateaus, range(1, n + 1)), np.float64)


def _split(components: np.ndarray, n_components: int, peaks: np.ndarray) -> np.ndarray:
    """Instances: each component with several peaks divided among its nearest peaks."""
    from scipy.spatial import cKDTree

    instances = components.astype(np.int32)
    if len(peaks) == 0:
        return instances
    idx = np.clip(np.round(peaks).astype(int), 0, np.array(components.shape) - 1)
    owner = components[tuple(idx.T)]
    counts = np.bincount(owner, minlength=n_components + 1)
    next_label = n_components + 1
    boxes = ndimage.find_objects(components)
    for comp in np.flatnonzero(counts >= 2):
        if comp == 0 or boxes[comp - 1] is None:
            continue
        box = boxes[comp - 1]
        own = components[box] == comp
        voxels = np.argwhere(own) + np.array([s.start for s in box])
        _, nearest = cKDTree(peaks[owner == comp]).query(voxels)
        # piece 0 keeps the component's label, the others get new ones (none is lost)
        labels = np.where(nearest == 0, comp, next_label + nearest - 1)
        instances[tuple(voxels.T)] = labels
        next_label += int(counts[comp]) - 1
    return instances


def _outliers(zyx: np.ndarray, k: int, distance: float) -> np.ndarray:
    """True for particles whose k nearest neighbours are not all within ``distance``."""
    from scipy.spatial import cKDTree

    if k == 0 or len(zyx) <= k:
        return np.zeros(len(zyx), bool)
    d, _ = cKDTree(zyx).query(zyx, k=k + 1)
    return np.any(d[:, 1:] > distance, axis=1)


def postprocess(
    mask_prob: np.ndarray, centre: np.ndarray, class_prob: np.ndarray,
    params: PostProcessing | None = None,
) -> tuple[np.ndarray, ParticleList]:
    """Instances and particles from the network's maps (see the module notes).

    Parameters
    ----------
    mask_prob, centre : ndarray, (z, y, x), float
        Mask probability and centre map (0..1).
    class_prob : ndarray, (c, z, y, x)
        Probabilities of background (channel 0) and each class.
    params : PostProcessing, optional

    Returns
    -------
    instances : ndarray, (z, y, x), int32
        0 background, ``i + 1`` for particle ``i``.
    particles : ParticleList
    """
    p = params or PostProcessing()
    mask = mask_prob > p.mask_threshold
    components, n = ndimage.label(mask)
    if n and p.min_size_voxels > 1:
        sizes = np.bincount(components.ravel(), minlength=n + 1)
        small = sizes < p.min_size_voxels
        small[0] = False
        mask[small[components]] = False
        components, n = ndimage.label(mask)
    peaks = _centre_peaks(centre, mask, p.centre_threshold, p.peak_order)
    instances = _split(components, n, peaks) if p.split_components else components
    index = np.unique(instances)
    index = index[index > 0]
    if len(index) == 0:
        empty = ParticleList(np.zeros((0, 3)), np.zeros(0, np.int64), np.zeros(0))
        return np.zeros(mask.shape, np.int32), empty
    weight = np.asarray(centre, np.float64) + 1e-6
    zyx = np.asarray(ndimage.center_of_mass(weight, instances, index), np.float64)
    means = np.stack([ndimage.mean(class_prob[k], instances, index)
                      for k in range(1, class_prob.shape[0])], axis=1)
    classes = np.argmax(means, axis=1).astype(np.int64) + 1
    scores = (np.asarray(ndimage.mean(mask_prob, instances, index))
              * np.asarray(ndimage.maximum(centre, instances, index)))
    keep = ~_outliers(zyx, p.outlier_neighbours, p.outlier_distance_px)
    lookup = np.zeros(int(instances.max()) + 1, np.int32)
    lookup[index[keep]] = np.arange(1, int(keep.sum()) + 1, dtype=np.int32)
    return lookup[instances], ParticleList(zyx[keep], classes[keep], scores[keep])


def _all_heads(network: Any) -> Any:
    """The network as one module whose single output is every head's probabilities."""
    import torch

    class AllHeads(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = network
            self.spatial_dims = 3
            self.in_channels = network.in_channels
            self.size_multiple = network.size_multiple
            self.out_channels = (sum(network.out_channels),)

        def forward(self, x: torch.Tensor, heads: Any = None) -> list[torch.Tensor]:
            m, c, k = self.net(x)
            return [torch.cat([torch.sigmoid(m), torch.sigmoid(c), torch.softmax(k, 1)], 1)]

    return AllHeads()


def predict_pick_maps(
    tomogram: np.ndarray, model: Any, *, tile_size: int = 64, overlap: int = 16,
    batch_size: int = 2, device: str | None = None,
    levels: tuple[float, float] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mask probability, centre map ``(z, y, x)`` and class probabilities ``(c, z, y, x)``,
    by overlapping, blended tiles (memory: the maps plus ``batch_size`` tiles).

    ``levels``: normalisation levels to use (default: the tomogram's own percentiles).
    """
    from emkit.nn import predict_tiled

    image = model.normalisation.apply(tomogram, levels)
    maps = predict_tiled(_all_heads(model.network), image, tile_size=tile_size,
                         overlap=overlap, activation=None, batch_size=batch_size,
                         device=device)
    return maps[0], maps[1], maps[2:]


def _rescale_factor(voxel_size_A: float | None, model: Any) -> float:
    if voxel_size_A is None or model.voxel_size_A is None:
        return 1.0
    factor = float(voxel_size_A) / float(model.voxel_size_A)
    if abs(factor - 1) < 0.02:
        return 1.0
    if not 1 / _MAX_RESCALE <= factor <= _MAX_RESCALE:
        raise InputError(f"the tomogram's voxel size {voxel_size_A:g} Å differs from the "
                         f"model's {model.voxel_size_A:g} Å by more than a factor "
                         f"{_MAX_RESCALE:g}; bin the tomogram or train a model at its size")
    logger.warning("rescaling the tomogram by %.3f from %.4g Å to the model's %.4g Å voxels",
                   factor, voxel_size_A, model.voxel_size_A)
    return factor


def detect_particles(
    tomogram: np.ndarray, model: Any, *, voxel_size_A: float | None,
    params: PostProcessing | None = None, tile_size: int = 64, overlap: int = 16,
    batch_size: int = 2, device: str | None = None,
) -> dict[str, Any]:
    """Run the picking network over a tomogram and post-process its maps.

    A tomogram of another voxel size than the model's is resampled to the model's (with a
    warning; beyond a factor 2 it is refused), and the results mapped back.

    Returns
    -------
    dict
        ``instances`` (int32 on the tomogram's grid), ``particles`` (ParticleList, voxels
        of the tomogram), ``centre`` (the centre map), ``rescale_factor``, ``params``.
    """
    factor = _rescale_factor(voxel_size_A, model)
    data = np.asarray(tomogram, np.float32)
    if factor != 1.0:
        data = ndimage.zoom(data, factor, order=1)
    mask, centre, classes = predict_pick_maps(data, model, tile_size=tile_size,
                                              overlap=overlap, batch_size=batch_size,
                                              device=device)
    p = params or PostProcessing()
    instances, particles = postprocess(mask, centre, classes, p)
    if factor != 1.0:
        zoom = np.array(tomogram.shape) / np.array(instances.shape)
        instances = ndimage.zoom(instances, zoom, order=0)
        centre = ndimage.zoom(centre, zoom, order=1)
        particles = ParticleList((particles.zyx + 0.5) / factor - 0.5, particles.classes,
                                 particles.scores)
    return {"instances": instances, "particles": particles, "centre": centre,
            "rescale_factor": factor, "params": asdict(p)}
