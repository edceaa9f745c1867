"""Scoring recovered orientations against the truth."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from emkit.errors import MismatchError

__all__ = ["OrientationScore", "align_quaternions_o4", "score_orientations"]

# Sign/rotation alternations of the O(4) alignment, and random starts.
_O4_ITERATIONS = 30
_O4_STARTS = 16


@dataclass
class OrientationScore:
    """Orientation errors after the global alignment.

    Attributes
    ----------
    errors_deg : ndarray, shape (n,)
        Geodesic error of each aligned orientation, degrees.
    mean_deg, median_deg, p90_deg : float
    reflected : bool
        The mirrored (handedness-flipped) solution was the better one.
    aligned : ndarray, shape (n, 3, 3)
        The estimates after alignment.
    """

    errors_deg: np.ndarray
    mean_deg: float
    median_deg: float
    p90_deg: float
    reflected: bool
    aligned: np.ndarray

    def summary(self) -> dict[str, float | bool]:
        return {"mean_deg": round(self.mean_deg, 3), "median_deg": round(self.median_deg, 3),
                "p90_deg": round(self.p90_deg, 3), "reflected": self.reflected}


def _score(errors: np.ndarray, reflected: bool, aligned: np.ndarray) -> OrientationScore:
    return OrientationScore(errors, float(errors.mean()), float(np.median(errors)),
                            float(np.percentile(errors, 90)), reflected, aligned)


def score_orientations(rotations: np.ndarray, true_rotations: np.ndarray) -> OrientationScore:
    """Errors of RELION orientations after the best global map rotation (mirror allowed).

    Rotating the map by ``Q`` changes every RELION matrix ``A_i`` into ``A_i Q.T``, and the
    mirror-image map gives the same projections, so both are removed first
    (:func:`emkit.geometry.align_rotations`, ``side="right"``, with a robust re-weighting).

    Parameters
    ----------
    rotations, true_rotations : ndarray, shape (n, 3, 3)

    Returns
    -------
    OrientationScore
    """
    from emkit.geometry import align_rotations

    g, aligned, errors = align_rotations(rotations, true_rotations, allow_reflection=True,
                                         side="right", refine_iterations=10)
    return _score(np.asarray(errors), bool(np.linalg.det(g) < 0), np.asarray(aligned))


def _o4_procrustes(q: np.ndarray, t: np.ndarray, signs: np.ndarray) -> np.ndarray:
    u, _, vt = np.linalg.svd((t * signs[:, None]).T @ q)
    return np.asarray(u @ vt)


def align_quaternions_o4(
    quaternions: np.ndarray, true_quaternions: np.ndarray, *, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Best orthogonal 4x4 ``M`` with ``M q_i = +-t_i``: a rotation on each side and a mirror.

    Distances between orientations cannot tell ``q_i`` from ``p q_i r`` or from its
    conjugate; together these are O(4) acting on the quaternions. This finds ``M`` by
    alternating the sign of each pair and an orthogonal Procrustes step, from several random
    starts.

    Returns
    -------
    M : ndarray, shape (4, 4)
    errors_deg : ndarray, shape (n,)
        ``2 arccos |<M q_i, t_i>|`` in degrees.
    """
    q = np.asarray(quaternions, dtype=np.float64)
    t = np.asarray(true_quaternions, dtype=np.float64)
    if q.shape != t.shape or q.ndim != 2 or q.shape[1] != 4:
        raise MismatchError(f"quaternion sets of shapes {q.shape} and {t.shape} cannot be paired")
    q = q / np.linalg.norm(q, axis=1, keepdims=True)
    t = t / np.linalg.norm(t, axis=1, keepdims=True)
    rng = np.random.default_rng(seed)
    best: tuple[float, np.ndarray, np.ndarray] | None = None
    for _ in range(_O4_STARTS):
        m, _ = np.linalg.qr(rng.standard_normal((4, 4)))
        for _ in range(_O4_ITERATIONS):
            signs = np.sign(np.einsum("ni,ni->n", t, q @ m.T))
            signs[signs == 0] = 1.0
            m = _o4_procrustes(q, t, signs)
        dots = np.abs(np.einsum("ni,ni->n", t, q @ m.T))
        errors = np.rad2deg(2.0 * np.arccos(np.clip(dots, 0.0, 1.0)))
        if best is None or errors.mean() < best[0]:
            best = (float(errors.mean()), m, errors)
    assert best is not None
    return best[1], best[2]


def score_distance_fit(quaternions: np.ndarray, true_rotations: np.ndarray) -> OrientationScore:
    """Errors of a distance fit after the O(4) alignment (both sides and the mirror)."""
    from emkit.geometry import matrix_to_quaternion, quaternion_to_matrix

    t = matrix_to_quaternion(true_rotations)
    m, errors = align_quaternions_o4(quaternions, t)
    aligned = quaternion_to_matrix(np.asarray(quaternions) @ m.T)
    return _score(errors, bool(np.linalg.det(m) < 0), aligned)
