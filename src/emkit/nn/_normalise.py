"""Intensity normalisation that training and inference share, stored with the model."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from emkit.errors import InputError, NonFiniteError

__all__ = ["PercentileNormalisation"]

# At most this many values are used to estimate the percentiles (a strided subsample), so
# normalising a 512 x 512 x 200 tomogram needs no copy of it.
_MAX_SAMPLES = 4_000_000


@dataclass(frozen=True)
class PercentileNormalisation:
    """Map each image or volume's ``lower``..``upper`` percentiles to 0..1.

    The percentiles are taken of the data being normalised (each tomogram its own), so
    a tomogram with another gain, offset or absorption scale than the training one
    normalises the same way; outliers (gold, ice crystals) do not set the scale.

    Parameters
    ----------
    lower_percentile, upper_percentile : float
        Percentiles (0..100) mapped to 0 and 1.
    """

    lower_percentile: float = 1.0
    upper_percentile: float = 99.0

    def __post_init__(self) -> None:
        if not 0 <= self.lower_percentile < self.upper_percentile <= 100:
            raise InputError(
                "normalisation percentiles must satisfy 0 <= lower < upper <= 100, got "
                f"{self.lower_percentile}, {self.upper_percentile}"
            )

    def levels(self, data: np.ndarray) -> tuple[float, float]:
        """The two intensity levels of ``data`` that map to 0 and 1."""
        flat = np.asarray(data).reshape(-1)
        step = max(1, flat.size // _MAX_SAMPLES)
        sample = np.asarray(flat[::step], dtype=np.float64)
        if sample.size == 0:
            raise InputError("cannot normalise an empty array")
        if not np.all(np.isfinite(sample)):
            raise NonFiniteError("data contain NaN or infinite values; cannot normalise")
        lo, hi = np.percentile(sample, [self.lower_percentile, self.upper_percentile])
        if not hi > lo:
            hi = lo + max(float(np.abs(sample).max()), 1.0) * 1e-6 + 1e-12
        return float(lo), float(hi)

    def apply(
        self, data: np.ndarray, levels: tuple[float, float] | None = None
    ) -> np.ndarray:
        """Normalised float32 copy of ``data`` (any shape), with its own or given levels."""
        lo, hi = self.levels(data) if levels is None else levels
        out = np.asarray(data, dtype=np.float32) - np.float32(lo)
        out *= np.float32(1.0 / (hi - lo))
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description (the ``normalisation`` entry of a model's config.json)."""
        return {
            "method": "percentile",
            "lower_percentile": self.lower_percentile,
            "upper_percentile": self.upper_percentile,
            "per_volume": True,
        }

    @classmethod
    def from_dict(cls, entry: dict[str, Any]) -> PercentileNormalisation:
        """Inverse of :meth:`to_dict`."""
        if entry.get("method") != "percentile":
            raise InputError(f"unknown normalisation method {entry.get('method')!r}")
        return cls(float(entry["lower_percentile"]), float(entry["upper_percentile"]))
