"""Distances between rotations and the global alignment used to score orientation recovery."""

from __future__ import annotations

from typing import Literal, NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray

from emkit.errors import InputError, MismatchError, ShapeError
from emkit.geometry._rotations import (
    _as_float64,
    quaternion_conjugate,
    quaternion_multiply,
)

__all__ = [
    "RotationAlignment",
    "align_rotations",
    "orientation_error_summary",
    "quaternion_distance",
    "rotation_angle_between",
]

# Mirror of the viewing (z) axis: projections along z cannot tell a map from its mirror image.
_MIRROR_Z = np.diag([1.0, 1.0, -1.0])


def rotation_angle_between(R1: ArrayLike, R2: ArrayLike) -> NDArray[np.float64]:
    """Geodesic angle in degrees between rotation matrices (broadcast over leading axes).

    Equals ``arccos((trace(R1^T R2) - 1) / 2)``, computed as
    ``atan2(|axial vector of R1^T R2|, (trace - 1) / 2)`` so that it keeps full precision near
    0 and 180 degrees where ``arccos`` does not.

    Parameters
    ----------
    R1, R2 : array_like, shape (..., 3, 3)

    Returns
    -------
    ndarray, shape (...), float64
        Angles in ``[0, 180]`` degrees; symmetric in ``R1`` and ``R2``.
    """
    a = _as_float64(R1, (3, 3), "R1")
    b = _as_float64(R2, (3, 3), "R2")
    rel = np.swapaxes(a, -1, -2) @ b
    cos_angle = 0.5 * (np.trace(rel, axis1=-2, axis2=-1) - 1.0)
    axial = np.stack(
        [
            rel[..., 2, 1] - rel[..., 1, 2],
            rel[..., 0, 2] - rel[..., 2, 0],
            rel[..., 1, 0] - rel[..., 0, 1],
        ],
        axis=-1,
    )
    sin_angle = 0.5 * np.linalg.norm(axial, axis=-1)
    return np.rad2deg(np.arctan2(sin_angle, cos_angle))


def quaternion_distance(q1: ArrayLike, q2: ArrayLike) -> NDArray[np.float64]:
    """Geodesic angle in radians between the rotations of unit quaternions ``(w, x, y, z)``.

    Equals ``2 arccos(|<q1, q2>|)`` (so ``q`` and ``-q`` are the same rotation), computed from
    the relative quaternion with ``atan2`` for full precision at small angles.

    Parameters
    ----------
    q1, q2 : array_like, shape (..., 4)
        Quaternions; they are normalised first.

    Returns
    -------
    ndarray, shape (...), float64
        Angles in ``[0, pi]``.
    """
    a = _as_float64(q1, (4,), "q1")
    b = _as_float64(q2, (4,), "q2")
    a = a / np.linalg.norm(a, axis=-1, keepdims=True)
    b = b / np.linalg.norm(b, axis=-1, keepdims=True)
    rel = quaternion_multiply(quaternion_conjugate(a), b)
    return 2.0 * np.arctan2(np.linalg.norm(rel[..., 1:], axis=-1), np.abs(rel[..., 0]))


class RotationAlignment(NamedTuple):
    """Result of :func:`align_rotations` (unpacks as a 3-tuple).

    Attributes
    ----------
    global_rotation : ndarray, shape (3, 3)
        The global transform ``G``. Its determinant is -1 when the mirrored (handedness
        flipped) solution was chosen; see :func:`align_rotations` for how it is applied.
    aligned : ndarray, shape (n, 3, 3)
        The estimated rotations after alignment (proper rotations).
    errors_deg : ndarray, shape (n,)
        Geodesic angle between each aligned and true rotation, in degrees.
    """

    global_rotation: NDArray[np.float64]
    aligned: NDArray[np.float64]
    errors_deg: NDArray[np.float64]


def _procrustes(
    est: NDArray[np.float64],
    true: NDArray[np.float64],
    side: str,
    weights: NDArray[np.float64] | None = None,
) -> NDArray[np.float64]:
    """Proper rotation G minimising sum w_i ||G est_i - true_i||^2 (left) or ||est_i G - ...||."""
    w = np.ones(len(est)) if weights is None else weights
    if side == "left":
        M = np.einsum("n,nij,nkj->ik", w, true, est)  # sum w_i true_i est_i^T
    else:
        M = np.einsum("n,nji,njk->ik", w, est, true)  # sum w_i est_i^T true_i
    U, _, Vt = np.linalg.svd(M)
    d = np.sign(np.linalg.det(U @ Vt))
    d = 1.0 if d == 0 else d
    return np.asarray(U @ np.diag([1.0, 1.0, d]) @ Vt)


def align_rotations(
    R_est: ArrayLike,
    R_true: ArrayLike,
    *,
    allow_reflection: bool = False,
    side: Literal["left", "right"] = "left",
    refine_iterations: int = 0,
) -> RotationAlignment:
    """Align estimated rotations to the truth with one global rotation, then measure errors.

    Orientations recovered from projections are defined only up to a global rotation of the
    map (and, from projections alone, up to the mirror image of the map). This finds the
    proper rotation ``G`` minimising ``sum_i ||G R_est_i - R_true_i||_F^2`` (orthogonal
    Procrustes / Kabsch via the SVD of ``sum_i R_true_i R_est_i^T``) and reports the geodesic
    error of every aligned rotation.

    With ``allow_reflection=True`` it also tries the mirrored solution, in which each estimate
    is first conjugated by the z mirror ``J = diag(1, 1, -1)`` (``J R_est_i J`` are the
    orientations that give the same projections of the mirror-image map), and keeps whichever
    solution has the smaller mean error. It is then returned as the improper matrix
    ``G J`` (determinant -1).

    Parameters
    ----------
    R_est, R_true : array_like, shape (n, 3, 3)
        Estimated and true rotation matrices, paired by index.
    allow_reflection : bool
        Also consider the handedness-flipped (mirrored) solution.
    side : {"left", "right"}
        Where the unknown global rotation acts. ``"left"``: ``G @ R_est_i ~ R_true_i``.
        ``"right"``: ``R_est_i @ G ~ R_true_i``; use this for RELION matrices
        (:func:`euler_zyz_to_matrix`), where rotating the reconstructed map by ``Q`` changes
        every particle matrix ``A_i`` to ``A_i @ Q^T``.
    refine_iterations : int
        After the Frobenius solution, this many re-weighted Procrustes steps (weights
        ``1 / error_i``, Weiszfeld-style) that lower the mean geodesic error; they make the
        alignment robust to a minority of grossly wrong estimates. A step is kept only if it
        lowers the mean error. 0 (default) keeps the plain least-squares solution.

    Returns
    -------
    RotationAlignment
        ``(global_rotation, aligned, errors_deg)``. The aligned rotations are
        ``G @ R_est_i`` (left) or ``R_est_i @ G`` (right) when ``det(G) = +1``, and
        ``G @ R_est_i @ J`` (left) or ``J @ R_est_i @ G`` (right) when ``det(G) = -1``.

    Raises
    ------
    ShapeError
        If the inputs are not ``(n, 3, 3)``.
    MismatchError
        If they hold different numbers of rotations.
    """
    est = _as_float64(R_est, (3, 3), "R_est")
    true = _as_float64(R_true, (3, 3), "R_true")
    if est.ndim != 3 or true.ndim != 3:
        raise ShapeError(
            f"R_est and R_true must have shape (n, 3, 3), got {est.shape} and {true.shape}"
        )
    if est.shape[0] != true.shape[0]:
        raise MismatchError(
            f"{est.shape[0]} estimated rotations but {true.shape[0]} true ones; "
            "give one estimate per true rotation"
        )
    if est.shape[0] == 0:
        raise ShapeError("no rotations given; give at least one pair")
    if side not in ("left", "right"):
        raise InputError(f"side must be 'left' or 'right', got {side!r}")

    if isinstance(refine_iterations, bool) or int(refine_iterations) != refine_iterations:
        raise InputError(f"refine_iterations must be an integer >= 0, got {refine_iterations!r}")

    def solve(candidate: NDArray[np.float64]) -> tuple[NDArray[np.float64], ...]:
        def apply(G: NDArray[np.float64]) -> tuple[NDArray[np.float64], ...]:
            aligned = G @ candidate if side == "left" else candidate @ G
            return G, aligned, rotation_angle_between(aligned, true)

        best = apply(_procrustes(candidate, true, side))
        for _ in range(int(refine_iterations)):
            # errors below 0.01 deg get the same weight, so exact matches do not dominate
            weights = 1.0 / np.maximum(best[2], 1e-2)
            trial = apply(_procrustes(candidate, true, side, weights))
            if trial[2].mean() >= best[2].mean():
                break
            best = trial
        return best

    G, aligned, errors = solve(est)
    if allow_reflection:
        mirrored = _MIRROR_Z @ est @ _MIRROR_Z
        Gm, aligned_m, errors_m = solve(mirrored)
        if errors_m.mean() < errors.mean():
            improper = Gm @ _MIRROR_Z if side == "left" else _MIRROR_Z @ Gm
            return RotationAlignment(improper, aligned_m, errors_m)
    return RotationAlignment(G, aligned, errors)


def orientation_error_summary(
    R_est: ArrayLike,
    R_true: ArrayLike,
    *,
    allow_reflection: bool = False,
    side: Literal["left", "right"] = "left",
    refine_iterations: int = 0,
) -> dict[str, float | bool]:
    """Mean, median, 90th percentile and max orientation error after :func:`align_rotations`.

    Parameters
    ----------
    R_est, R_true : array_like, shape (n, 3, 3)
    allow_reflection, side, refine_iterations
        As in :func:`align_rotations`.

    Returns
    -------
    dict
        ``mean_deg``, ``median_deg``, ``p90_deg``, ``max_deg`` (floats) and ``reflected``
        (True when the mirrored solution was chosen).
    """
    G, _, errors = align_rotations(
        R_est,
        R_true,
        allow_reflection=allow_reflection,
        side=side,
        refine_iterations=refine_iterations,
    )
    return {
        "mean_deg": float(np.mean(errors)),
        "median_deg": float(np.median(errors)),
        "p90_deg": float(np.percentile(errors, 90)),
        "max_deg": float(np.max(errors)),
        "reflected": bool(np.linalg.det(G) < 0),
    }
