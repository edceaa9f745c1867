"""Where a stack's sections come from: arrays in memory, or files read one at a time.

A stack aligner must not hold every section at once (a stack of 1,000 sections of
2048^2 is 4 GB of 8-bit pixels): it asks its source for section ``i`` (and its defect
mask) when it needs it. A source is small and picklable, so Dask workers can be handed
the source and an index and read the section themselves.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from emkit.errors import MismatchError, ShapeError

__all__ = ["ArraySections", "StackSource", "as_source"]


class StackSource(Protocol):
    """What the stack aligner needs from its input."""

    @property
    def n(self) -> int: ...

    @property
    def shape(self) -> tuple[int, int]: ...

    @property
    def dtype(self) -> np.dtype: ...

    @property
    def names(self) -> list[str]: ...

    def section(self, index: int) -> np.ndarray: ...

    def mask(self, index: int) -> np.ndarray | None: ...

    def damaged(self) -> list[bool]: ...

    def identity(self) -> list[Any]:
        """What a resume must match besides names and sizes: the sections' and masks'
        contents (hashes) or files (size, modification time)."""
        ...


def _digest(array: Any) -> str | None:
    import hashlib

    if array is None:
        return None
    data = np.ascontiguousarray(np.asarray(array))
    return hashlib.sha1(data.tobytes()).hexdigest()[:16] + f":{data.dtype.str}"


@dataclass
class ArraySections:
    """Sections (and optional defect masks) already in memory."""

    images: Sequence[np.ndarray | None]  # None: not given to this pair's source (only())
    masks: Sequence[np.ndarray | None]
    section_names: list[str]

    @property
    def n(self) -> int:
        return len(self.images)

    def _first(self) -> np.ndarray:
        return np.asarray(next(im for im in self.images if im is not None))

    @property
    def shape(self) -> tuple[int, int]:
        h, w = self._first().shape[:2]
        return int(h), int(w)

    @property
    def dtype(self) -> np.dtype:
        return self._first().dtype

    @property
    def names(self) -> list[str]:
        return self.section_names

    def section(self, index: int) -> np.ndarray:
        image = self.images[index]
        assert image is not None, f"section {index} was not given to this pair's source"
        return np.asarray(image)

    def mask(self, index: int) -> np.ndarray | None:
        mask = self.masks[index]
        return None if mask is None else np.asarray(mask) != 0

    def damaged(self) -> list[bool]:
        return [m is not None and bool(np.any(m)) for m in self.masks]

    def identity(self) -> list[Any]:
        return [[_digest(self.images[i]), _digest(self.masks[i])] for i in range(self.n)]

    def only(self, indices: Sequence[int]) -> ArraySections:
        """The same source holding only ``indices`` (what one pair job is sent)."""
        keep = set(indices)
        images = [im if i in keep else None for i, im in enumerate(self.images)]
        masks = [m if i in keep else None for i, m in enumerate(self.masks)]
        return ArraySections(images, masks, self.section_names)


def as_source(
    images: Any,
    defect_masks: Any = None,
    section_names: Sequence[str] | None = None,
) -> StackSource:
    """A :class:`StackSource` from a source, an ``(n, H, W)`` array or a list of sections.

    Checks what can be checked without reading everything twice: at least 2 sections,
    each 2D and of one size, one mask (or None) per section, one name per section.
    """
    if hasattr(images, "section") and hasattr(images, "mask"):
        return images  # already a source
    sections = [np.asarray(im) for im in images]
    n = len(sections)
    if n < 2:
        raise ShapeError(f"a stack needs at least 2 sections, got {n}")
    shape = sections[0].shape
    for i, s in enumerate(sections):
        if s.ndim != 2:
            raise ShapeError(f"section {i} has shape {s.shape}; each section must be 2D")
        if s.shape != shape:
            raise MismatchError(
                f"section {i} is {s.shape[0]}x{s.shape[1]} but section 0 is "
                f"{shape[0]}x{shape[1]}; give sections of one size"
            )
    if defect_masks is None:
        masks: list[np.ndarray | None] = [None] * n
    else:
        masks = [None if m is None else np.asarray(m) for m in defect_masks]
        if len(masks) != n:
            raise MismatchError(f"{len(masks)} defect masks for {n} sections; give one each")
        for i, m in enumerate(masks):
            if m is not None and m.shape != shape:
                raise MismatchError(
                    f"defect mask {i} is {'x'.join(map(str, m.shape))} but the sections are "
                    f"{shape[0]}x{shape[1]}; give masks of the sections' size"
                )
    names = list(section_names) if section_names is not None else [f"section {i}" for i in range(n)]
    if len(names) != n:
        raise MismatchError(f"{len(names)} section names for {n} sections")
    return ArraySections(sections, masks, names)
