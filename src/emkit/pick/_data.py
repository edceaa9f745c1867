"""Training data for the picking networks: targets from a particle list, patch sampling.

Targets (all on the tomogram's grid) come from balls about the particle centres, of
``label_radius_fraction`` times each class's radius (balls of neighbouring particles do not
touch, so instances stay separable), or from instance label maps the user gives:

- mask: 1 inside a particle;
- centre: each voxel's distance to the particle's boundary divided by the particle's
  largest such distance (1 at the centre, falling to 0 at the boundary; the original
  CenterNet target);
- class: 0 background, else the particle's class.

Validation holds out part of each tomogram: the last ``validation_fraction`` of its x range
(whole particles: a particle belongs to the side its centre lies on), so validation
patches never contain training particles' voxels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from emkit.errors import InputError

__all__ = ["PickTargets", "centre_map", "make_targets", "PatchSampler"]


def centre_map(instances: np.ndarray) -> np.ndarray:
    """Normalised distance to the boundary inside each instance (1 at its centre), float32.

    Distances are to the nearest voxel that is not of the same instance, so touching
    instances get separate peaks.
    """
    labels = np.asarray(instances)
    out = np.zeros(labels.shape, np.float32)
    if not labels.any():
        return out
    objects = ndimage.find_objects(labels.astype(np.int64))
    for index, box in enumerate(objects, start=1):
        if box is None:
            continue
        padded = tuple(slice(max(s.start - 1, 0), s.stop + 1) for s in box)
        own = labels[padded] == index
        dist = ndimage.distance_transform_edt(own).astype(np.float32)
        top = float(dist.max())
        if top > 0:
            out[padded][own] = dist[own] / top
    return out


@dataclass
class PickTargets:
    """One tomogram, normalised, with its targets (all ``(z, y, x)``).

    ``train_region`` is a boolean ``(nx,)`` vector: True for x columns used for training.
    """

    image: np.ndarray
    mask: np.ndarray
    centre: np.ndarray
    classes: np.ndarray
    particles_zyx: np.ndarray
    particle_classes: np.ndarray
    train_region: np.ndarray


def make_targets(
    image: np.ndarray, zyx: np.ndarray, classes: np.ndarray, radius_px: dict[int, float], *,
    instances: np.ndarray | None = None, label_radius_fraction: float = 0.7,
    validation_fraction: float = 0.2,
) -> PickTargets:
    """Targets for one (already normalised) tomogram; see the module notes."""
    from emkit.pick._labels import particle_label_maps

    if image.ndim != 3:
        raise InputError(f"a tomogram is (z, y, x), got shape {image.shape}")
    if not 0 <= validation_fraction < 0.9:
        raise InputError(f"validation_fraction must be in [0, 0.9), got {validation_fraction}")
    if instances is None:
        scaled = {k: max(1.0, r * label_radius_fraction) for k, r in radius_px.items()}
        instances, class_map = particle_label_maps(image.shape, zyx, classes, scaled)
    else:
        if instances.shape != image.shape:
            raise InputError(f"labels of shape {instances.shape} for a tomogram of shape "
                             f"{image.shape}")
        instances = np.asarray(instances).astype(np.int32)
        class_map = _classes_from_instances(instances, zyx, classes)
    nx = image.shape[2]
    split = int(round(nx * (1 - validation_fraction)))
    region = np.arange(nx) < split
    return PickTargets(np.asarray(image, np.float32), (instances > 0).astype(np.float32),
                       centre_map(instances), class_map.astype(np.int64),
                       np.asarray(zyx, np.float64), np.asarray(classes, np.int64), region)


def _classes_from_instances(instances: np.ndarray, zyx: np.ndarray,
                            classes: np.ndarray) -> np.ndarray:
    """Class map from instance labels: each instance takes the class of the particle whose
    centre lies in it (instances holding no listed centre stay background)."""
    idx = np.clip(np.round(zyx).astype(int), 0, np.array(instances.shape) - 1)
    found = instances[tuple(idx.T)] if len(idx) else np.zeros(0, np.int32)
    lookup = np.zeros(int(instances.max()) + 1, np.uint8)
    lookup[found[found > 0]] = np.asarray(classes)[found > 0]
    return lookup[instances]


class PatchSampler:
    """Random training patches (around particles or anywhere) with flips, and a fixed
    validation set from the held-out regions.

    Flips of z, y and x keep the missing wedge (symmetric about every axis) where it is,
    and so do rotations by 180 degrees about the tilt axis y (a flip of z and x together);
    90-degree turns would move the wedge and are not used.
    """

    def __init__(self, data: list[PickTargets], patch: int, rng: np.random.Generator,
                 particle_fraction: float = 0.7) -> None:
        self.data = data
        self.patch = int(patch)
        self.rng = rng
        self.particle_fraction = particle_fraction
        for d in data:
            if min(d.image.shape) < self.patch:
                raise InputError(f"a tomogram of shape {d.image.shape} is smaller than the "
                                 f"training patch ({self.patch}); lower the patch size")

    def _corner(self, d: PickTargets, centre: np.ndarray | None, region: np.ndarray
                ) -> np.ndarray:
        shape = np.array(d.image.shape)
        cols = np.flatnonzero(region)
        lo = np.array([0, 0, cols.min()])
        hi = np.array([shape[0], shape[1], cols.max() + 1]) - self.patch
        # a region narrower than a patch: the patch overlaps its neighbour a little
        lo = np.minimum(lo, shape - self.patch)
        hi = np.maximum(hi, lo)
        if centre is None:
            return self.rng.integers(lo, hi + 1)
        jitter = self.rng.integers(-self.patch // 4, self.patch // 4 + 1, size=3)
        return np.clip(np.round(centre).astype(int) - self.patch // 2 + jitter, lo, hi)

    def _cut(self, d: PickTargets, corner: np.ndarray) -> tuple[np.ndarray, ...]:
        sl = tuple(slice(int(c), int(c) + self.patch) for c in corner)
        return d.image[sl], d.mask[sl], d.centre[sl], d.classes[sl]

    def _particles_in(self, d: PickTargets, region: np.ndarray) -> np.ndarray:
        if not len(d.particles_zyx):
            return d.particles_zyx
        x = np.clip(np.round(d.particles_zyx[:, 2]).astype(int), 0, len(region) - 1)
        return d.particles_zyx[region[x]]

    def batch(self, size: int) -> tuple[np.ndarray, ...]:
        """A training batch: image ``(b, 1, p, p, p)``, mask, centre, class ``(b, p, p, p)``."""
        parts: list[list[np.ndarray]] = [[], [], [], []]
        for _ in range(size):
            d = self.data[int(self.rng.integers(len(self.data)))]
            pts = self._particles_in(d, d.train_region)
            near = len(pts) and self.rng.random() < self.particle_fraction
            centre = pts[int(self.rng.integers(len(pts)))] if near else None
            arrays = self._cut(d, self._corner(d, centre, d.train_region))
            axes = tuple(a for a in range(3) if self.rng.random() < 0.5)
            for k, a in enumerate(arrays):
                parts[k].append(np.flip(a, axes) if axes else a)
        return (np.stack(parts[0])[:, None].astype(np.float32), np.stack(parts[1]),
                np.stack(parts[2]), np.stack(parts[3]))

    def validation_set(self, n: int) -> tuple[np.ndarray, ...] | None:
        """``n`` fixed patches from the held-out regions (None when there are none)."""
        rng = np.random.default_rng(12345)
        saved, self.rng = self.rng, rng
        parts: list[list[np.ndarray]] = [[], [], [], []]
        try:
            for i in range(n):
                d = self.data[i % len(self.data)]
                region = ~d.train_region
                if region.sum() < 1:
                    continue
                pts = self._particles_in(d, region)
                centre = pts[int(rng.integers(len(pts)))] if len(pts) and i % 3 else None
                corner = self._corner(d, centre, region)
                for k, a in enumerate(self._cut(d, corner)):
                    parts[k].append(a)
        finally:
            self.rng = saved
        if not parts[0]:
            return None
        return (np.stack(parts[0])[:, None].astype(np.float32), np.stack(parts[1]),
                np.stack(parts[2]), np.stack(parts[3]))
