"""The one data type that carries metadata with an array."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class Volume:
    """An array with its physical metadata, as read from or written to a file.

    Attributes
    ----------
    data : ndarray
        ``(z, y, x)`` volume, ``(n, y, x)`` image stack or ``(y, x)`` image.
    voxel_size : tuple of 3 floats or None
        Voxel (pixel) size in Å along ``(z, y, x)``; None when the file does not say.
    origin : tuple of 3 floats
        Position of voxel ``(0, 0, 0)`` in Å, ``(z, y, x)``.
    path : Path or None
        The file it was read from, for error messages.
    metadata : dict
        What the file's header says beyond the array (for MRC: extended-header type, tilt
        angles and pixel size from it, the header's own voxel size, what was odd).
    """

    data: np.ndarray
    voxel_size: tuple[float, float, float] | None = None
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0)
    path: Path | None = field(default=None, compare=False)
    metadata: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape)

    @property
    def pixel_size(self) -> float | None:
        """The in-plane (x) voxel size in Å, or None."""
        return None if self.voxel_size is None else float(self.voxel_size[2])
