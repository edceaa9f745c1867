"""Training data of the slice-wise model: checks, labelled slices, validation split, patches."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from emkit.errors import InputError, MismatchError, ShapeError

__all__ = ["check_training_inputs", "labelled_slices"]

# Intensity augmentation of normalised patches: gain range, offset half-width, largest noise
# sigma. Kept below the nucleus/cytoplasm contrast (about 0.14 after normalisation), which
# a network has to read from absolute intensity where a patch lies inside the nucleus.
JITTER_GAIN = (0.97, 1.03)
JITTER_OFFSET = 0.015
JITTER_NOISE = 0.05


def labelled_slices(labels: np.ndarray, slices: Sequence[int] | None = None) -> list[int]:
    """The z slices to train on: ``slices`` (checked) or every slice with a non-zero label.

    Raises
    ------
    InputError
        A slice index outside ``0 .. nz - 1``, a repeated index, or no labelled slice.
    """
    nz = labels.shape[0]
    if slices is None:
        found = [int(z) for z in np.flatnonzero(np.any(labels.reshape(nz, -1) != 0, axis=1))]
        if not found:
            raise InputError("the label volume has no non-zero label in any z slice; label "
                             "some slices (or give --slices)")
        return found
    chosen = [int(z) for z in slices]
    if not chosen:
        raise InputError("no labelled slice given; list the labelled z slices, e.g. 20,48,76")
    bad = [z for z in chosen if not 0 <= z < nz]
    if bad:
        raise InputError(f"slice index {bad[0]} is outside the volume (z slices 0..{nz - 1})")
    if len(set(chosen)) != len(chosen):
        raise InputError(f"slice indices repeat: {chosen}")
    return sorted(chosen)


def check_training_inputs(
    tomogram: np.ndarray, labels: np.ndarray, slices: Sequence[int] | None
) -> tuple[list[int], int]:
    """Check a tomogram and its label volume; return the labelled slices and class count."""
    if tomogram.ndim != 3:
        raise ShapeError(f"the tomogram must be a volume (z, y, x), got shape {tomogram.shape}")
    if labels.shape != tomogram.shape:
        raise MismatchError(f"labels have shape {labels.shape} but the tomogram has "
                            f"{tomogram.shape}; give labels on the tomogram's grid")
    if not np.issubdtype(labels.dtype, np.integer):
        values = np.asarray(labels)
        if not np.all(np.isfinite(values)) or np.any(values != np.round(values)):
            raise InputError("labels must be whole numbers (0, 1, 2, ...)")
    chosen = labelled_slices(labels, slices)
    values = np.unique(np.asarray(labels[chosen]))
    if values.min() < 0:
        raise InputError(f"labels must be >= 0, found {values.min()}")
    if len(values) < 2:
        raise InputError(f"the labelled slices {chosen} hold a single class ({int(values[0])}); "
                         "label at least two classes (e.g. background and an organelle)")
    if min(tomogram.shape[1:]) < 16:
        raise ShapeError(f"slices of {tomogram.shape[1:]} pixels are too small (need >= 16)")
    return chosen, int(values.max()) + 1


def validation_mask(
    shape_yx: tuple[int, int], rng: np.random.Generator, fraction: float = 0.15,
    blocks: int = 6,
) -> np.ndarray:
    """Boolean ``(y, x)`` mask of held-out pixels: ``fraction`` of a ``blocks`` x ``blocks``
    grid of rectangles, chosen at random (whole blocks, so neighbours do not leak)."""
    ny, nx = shape_yx
    n_out = max(1, int(round(fraction * blocks * blocks)))
    chosen = rng.choice(blocks * blocks, size=n_out, replace=False)
    mask = np.zeros(shape_yx, bool)
    ys = np.linspace(0, ny, blocks + 1).astype(int)
    xs = np.linspace(0, nx, blocks + 1).astype(int)
    for k in chosen:
        i, j = divmod(int(k), blocks)
        mask[ys[i] : ys[i + 1], xs[j] : xs[j + 1]] = True
    return mask


def augment(
    images: np.ndarray, targets: np.ndarray | None, rng: np.random.Generator,
    *, jitter: bool = True,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Random 90-degree rotation and flip per patch, and intensity jitter (gain, offset,
    noise); the targets get the same geometry. ``images``: ``(b, c, y, x)``, targets
    ``(b, y, x)``."""
    out = np.empty_like(images)
    out_t = None if targets is None else np.empty_like(targets)
    for i in range(len(images)):
        k, flip = int(rng.integers(4)), bool(rng.integers(2))
        img = np.rot90(images[i], k, axes=(-2, -1))
        img = img[..., ::-1] if flip else img
        if jitter:
            gain = rng.uniform(*JITTER_GAIN)
            offset = rng.uniform(-JITTER_OFFSET, JITTER_OFFSET)
            img = img * gain + offset
            if rng.random() < 0.5:
                img = img + rng.normal(0, rng.uniform(0.0, JITTER_NOISE), img.shape)
        out[i] = img
        if out_t is not None and targets is not None:
            t = np.rot90(targets[i], k)
            out_t[i] = t[:, ::-1] if flip else t
    return out, out_t


def context_stack(volume: np.ndarray, z: int, context: int) -> np.ndarray:
    """Slices ``z - context .. z + context`` of ``volume`` (edges repeated): ``(c, y, x)``."""
    index = np.clip(np.arange(z - context, z + context + 1), 0, volume.shape[0] - 1)
    return volume[index]


@dataclass
class PatchSampler:
    """Random patches of the labelled slices (with targets) and of the whole tomogram."""

    volume: np.ndarray  # normalised tomogram (z, y, x), float32
    targets: np.ndarray  # (n_labelled, y, x) int64, IGNORE where held out
    slices: list[int]
    patch: tuple[int, int]
    rng: np.random.Generator
    unlabelled_slices: list[int]
    context: int = 0

    def _corner(self) -> tuple[int, int]:
        ny, nx = self.volume.shape[1:]
        return (int(self.rng.integers(0, ny - self.patch[0] + 1)),
                int(self.rng.integers(0, nx - self.patch[1] + 1)))

    def _class_pixels(self) -> list[np.ndarray]:
        if not hasattr(self, "_pixels"):
            flat = self.targets.reshape(-1)
            self._pixels = [np.flatnonzero(flat == c) for c in np.unique(flat[flat >= 0])]
        return self._pixels

    def labelled(self, batch: int) -> tuple[np.ndarray, np.ndarray]:
        """Patches centred near a pixel of a class drawn uniformly (rare classes get seen)."""
        images = np.empty((batch, 2 * self.context + 1, *self.patch), np.float32)
        targets = np.empty((batch, *self.patch), np.int64)
        py, px = self.patch
        _, ny, nx = self.targets.shape
        pixels = self._class_pixels()
        for i in range(batch):
            members = pixels[int(self.rng.integers(len(pixels)))]
            k, cy, cx = np.unravel_index(members[int(self.rng.integers(members.size))],
                                         self.targets.shape)
            y = int(np.clip(cy - py // 2 + self.rng.integers(-py // 4, py // 4 + 1), 0, ny - py))
            x = int(np.clip(cx - px // 2 + self.rng.integers(-px // 4, px // 4 + 1), 0, nx - px))
            stack = context_stack(self.volume, self.slices[k], self.context)
            images[i] = stack[:, y : y + py, x : x + px]
            targets[i] = self.targets[k, y : y + py, x : x + px]
        return augment(images, targets, self.rng)  # type: ignore[return-value]

    def unlabelled(self, batch: int) -> np.ndarray:
        images = np.empty((batch, 2 * self.context + 1, *self.patch), np.float32)
        py, px = self.patch
        for i in range(batch):
            z = self.unlabelled_slices[int(self.rng.integers(len(self.unlabelled_slices)))]
            y, x = self._corner()
            images[i] = context_stack(self.volume, z, self.context)[:, y : y + py, x : x + px]
        return augment(images, None, self.rng)[0]
