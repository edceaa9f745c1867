"""Classes that are one object per tomogram (a cell's nucleus): keep their largest piece.

A slice-wise network sees no 3D context. Above and below a cell the missing wedge smears
the cell into a smooth, texture-free haze that a 2D network can take for nucleus; those
pieces are disconnected in 3D from the real nucleus. Where the user says a class is a
single object, every connected component of it but the largest is relabelled with each
voxel's most probable class outside all the single-object classes (so no new piece of
another single-object class appears): scikit-image's habit of keeping the largest connected
component, with the classifier's own next choice instead of background.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from emkit.errors import InputError

__all__ = ["class_indices", "fallback_labels", "keep_largest_object"]

logger = logging.getLogger(__name__)


def class_indices(names: Sequence[str], class_names: Sequence[str]) -> tuple[int, ...]:
    """Indices of ``names`` among ``class_names``; refuses unknown names and the background."""
    indices = []
    for name in names:
        if name not in class_names:
            raise InputError(
                f"the single-object classes name {name!r}, which the model does not have; its "
                f"classes are {', '.join(map(repr, class_names))}"
            )
        index = list(class_names).index(name)
        if index == 0:
            raise InputError(
                f"the single-object classes cannot include the background {name!r}: name the "
                "classes that are one object per tomogram (e.g. nucleus)"
            )
        indices.append(index)
    return tuple(sorted(set(indices)))


def fallback_labels(probabilities: np.ndarray, excluded: Sequence[int]) -> np.ndarray:
    """Most probable class of each voxel among those not in ``excluded``.

    ``probabilities`` is ``(c, ...)``; the result has its trailing shape, uint8.
    """
    allowed = np.setdiff1d(np.arange(probabilities.shape[0]), np.asarray(excluded, int))
    best = np.asarray(probabilities)[allowed].argmax(axis=0)
    return allowed[best].astype(np.uint8)


def keep_largest_object(
    labels: np.ndarray, fallback: np.ndarray, class_index: int, *, name: str = ""
) -> int:
    """In place: keep the largest 6-connected component of ``class_index`` in ``labels``;
    voxels of its other components take their label from ``fallback``.

    Returns the number of voxels relabelled.
    """
    from scipy import ndimage

    components, count = ndimage.label(labels == class_index)
    if count <= 1:
        return 0
    sizes = np.bincount(components.reshape(-1))
    sizes[0] = 0
    drop = (components != 0) & (components != int(sizes.argmax()))
    labels[drop] = fallback[drop]
    moved = int(drop.sum())
    logger.info(
        "%s: kept the largest of %d pieces (%d voxels); %d voxels in the other %d relabelled",
        name or f"class {class_index}", count, int(sizes.max()), moved, count - 1,
    )
    return moved
