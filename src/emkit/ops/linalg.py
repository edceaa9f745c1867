"""Small linear-algebra helpers shared by the operators (operator norms)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from emkit.errors import InputError

__all__ = ["power_iteration"]


def power_iteration(
    op: Callable[[Any], Any],
    adjoint: Callable[[Any], Any],
    shape: tuple[int, ...],
    *,
    n_iter: int = 30,
    seed: int = 0,
    dtype: Any = np.float64,
) -> float:
    """Estimate the operator norm ``||A||_2`` (largest singular value) by power iteration.

    Iterates ``x <- A^T A x / ||A^T A x||`` from a seeded Gaussian start and returns
    ``sqrt(||A^T A x||)``. The estimate approaches the true norm from below; 30 iterations
    are usually within a fraction of a percent for projection operators.

    Parameters
    ----------
    op : callable
        ``x -> A x``; takes and returns numpy arrays.
    adjoint : callable
        ``y -> A^T y``, the exact transpose of ``op``.
    shape : tuple of int
        Shape of the input ``x`` of ``op``.
    n_iter : int
        Number of iterations (>= 1).
    seed : int
        Seed of the random start vector; same seed, same result.
    dtype : numpy dtype
        Dtype of the start vector (float64 by default; pass float32 for float32-only ops).

    Returns
    -------
    float
        The estimate of ``||A||_2``; 0.0 for the zero operator.
    """
    if n_iter < 1:
        raise InputError(f"n_iter must be >= 1, got {n_iter}")
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(dtype)
    x /= np.linalg.norm(x.ravel())
    norm_sq = 0.0
    for _ in range(n_iter):
        y = np.asarray(adjoint(op(x)))
        norm_sq = float(np.linalg.norm(y.ravel().astype(np.float64)))
        if norm_sq == 0.0:
            return 0.0
        x = (y / norm_sq).astype(dtype, copy=False)
    return float(np.sqrt(norm_sq))
