"""Conversions between rotation matrices, unit quaternions and RELION ZYZ Euler angles.

The conventions are documented once, in :mod:`emkit.geometry`.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from emkit.errors import NonFiniteError, ShapeError

__all__ = [
    "axis_angle_to_matrix",
    "euler_zyz_to_matrix",
    "euler_zyz_to_quaternion",
    "matrix_to_euler_zyz",
    "matrix_to_quaternion",
    "matrix_xyz_to_zyx",
    "quaternion_conjugate",
    "quaternion_multiply",
    "quaternion_to_euler_zyz",
    "quaternion_to_matrix",
]

# Below this |sin(tilt)| the first and third Euler axes coincide (gimbal lock); rot is set to 0
# and psi carries the whole in-plane angle, as RELION's Euler_matrix2angles does. Small enough
# that snapping changes the matrix by less than 1e-10.
_GIMBAL_SIN_TILT = 1e-10
# |w| below which a quaternion is treated as a half turn when choosing its canonical sign.
_HALF_TURN_W = 1e-12


def _as_float64(array: ArrayLike, trailing: tuple[int, ...], name: str) -> NDArray[np.float64]:
    """Return ``array`` as float64 after checking its trailing shape and finiteness."""
    arr = np.asarray(array, dtype=np.float64)
    if arr.shape[arr.ndim - len(trailing) :] != trailing or arr.ndim < len(trailing):
        raise ShapeError(
            f"{name} must have shape (..., {', '.join(map(str, trailing))}), got {arr.shape}"
        )
    if not np.all(np.isfinite(arr)):
        raise NonFiniteError(f"{name} contains NaN or infinite values")
    return arr


def euler_zyz_to_matrix(euler_deg: ArrayLike) -> NDArray[np.float64]:
    """RELION's rotation matrix from ZYZ Euler angles (rot, tilt, psi) in degrees.

    Computes ``A = R_z(psi) @ R_y(tilt) @ R_z(rot)`` with RELION's elementary matrices
    (``Euler_angles2matrix`` in RELION's ``src/euler.cpp``), i.e. the matrix whose columns act
    on ``(x, y, z)`` coordinates of the reference and give coordinates in the particle frame.

    Parameters
    ----------
    euler_deg : array_like, shape (..., 3)
        ``(rlnAngleRot, rlnAngleTilt, rlnAnglePsi)`` in degrees.

    Returns
    -------
    ndarray, shape (..., 3, 3), float64
        Rotation matrices acting on ``(x, y, z)`` column vectors.

    Examples
    --------
    >>> A = euler_zyz_to_matrix([90.0, 0.0, 0.0])
    >>> np.round(A @ [1.0, 0.0, 0.0], 12) + 0.0
    array([ 0., -1.,  0.])
    """
    e = np.deg2rad(_as_float64(euler_deg, (3,), "euler_deg"))
    ca, cb, cg = np.cos(e[..., 0]), np.cos(e[..., 1]), np.cos(e[..., 2])
    sa, sb, sg = np.sin(e[..., 0]), np.sin(e[..., 1]), np.sin(e[..., 2])
    out = np.empty(e.shape[:-1] + (3, 3), dtype=np.float64)
    out[..., 0, 0] = cg * cb * ca - sg * sa
    out[..., 0, 1] = cg * cb * sa + sg * ca
    out[..., 0, 2] = -cg * sb
    out[..., 1, 0] = -sg * cb * ca - cg * sa
    out[..., 1, 1] = -sg * cb * sa + cg * ca
    out[..., 1, 2] = sg * sb
    out[..., 2, 0] = sb * ca
    out[..., 2, 1] = sb * sa
    out[..., 2, 2] = cb
    return out


def matrix_to_euler_zyz(matrix: ArrayLike) -> NDArray[np.float64]:
    """RELION ZYZ Euler angles (rot, tilt, psi) in degrees from rotation matrices.

    The inverse of :func:`euler_zyz_to_matrix`. Angles are returned with
    ``tilt`` in ``[0, 180]`` and ``rot``, ``psi`` in ``(-180, 180]``. At gimbal lock
    (``tilt`` = 0 or 180, where only ``rot + psi`` or ``rot - psi`` is defined) ``rot`` is set
    to 0 and ``psi`` carries the in-plane angle, as RELION does.

    The in-plane sum (or difference) is taken from the well-conditioned upper-left 2x2 block,
    so round trips stay accurate to ~1e-15 even close to gimbal lock.

    Parameters
    ----------
    matrix : array_like, shape (..., 3, 3)
        Rotation matrices (orthonormal, determinant +1), acting on ``(x, y, z)``.

    Returns
    -------
    ndarray, shape (..., 3), float64
        ``(rot, tilt, psi)`` in degrees.
    """
    A = _as_float64(matrix, (3, 3), "matrix")
    sin_tilt = np.hypot(A[..., 0, 2], A[..., 1, 2])
    tilt = np.arctan2(sin_tilt, A[..., 2, 2])
    locked = sin_tilt < _GIMBAL_SIN_TILT
    rot = np.where(locked, 0.0, np.arctan2(A[..., 2, 1], A[..., 2, 0]))
    # (1 + cos tilt) * [cos, sin](rot + psi) and (1 - cos tilt) * [cos, sin](rot - psi)
    # are read from the 2x2 block; use whichever factor is the larger.
    rot_plus_psi = np.arctan2(A[..., 0, 1] - A[..., 1, 0], A[..., 0, 0] + A[..., 1, 1])
    rot_minus_psi = np.arctan2(-(A[..., 0, 1] + A[..., 1, 0]), A[..., 1, 1] - A[..., 0, 0])
    upper = A[..., 2, 2] >= 0.0
    psi = np.where(upper, rot_plus_psi - rot, rot - rot_minus_psi)
    out = np.stack([rot, tilt, psi], axis=-1)
    out = np.rad2deg(out)
    # wrap rot and psi into (-180, 180]
    for k in (0, 2):
        wrapped = np.mod(out[..., k] + 180.0, 360.0) - 180.0
        out[..., k] = np.where(wrapped == -180.0, 180.0, wrapped)
    return out


def quaternion_to_matrix(quaternion: ArrayLike) -> NDArray[np.float64]:
    """Rotation matrices from quaternions ``(w, x, y, z)`` (normalised first).

    Uses the standard (Hamilton) formula, so ``quaternion_to_matrix(quaternion_multiply(p, q))
    == quaternion_to_matrix(p) @ quaternion_to_matrix(q)``.

    Parameters
    ----------
    quaternion : array_like, shape (..., 4)
        Quaternions ``(w, x, y, z)``; any non-zero length (they are normalised).

    Returns
    -------
    ndarray, shape (..., 3, 3), float64
    """
    q = _as_float64(quaternion, (4,), "quaternion")
    norm = np.linalg.norm(q, axis=-1, keepdims=True)
    if np.any(norm == 0):
        raise ShapeError("quaternion has zero length; give unit quaternions (w, x, y, z)")
    q = q / norm
    w, x, y, z = q[..., 0], q[..., 1], q[..., 2], q[..., 3]
    out = np.empty(q.shape[:-1] + (3, 3), dtype=np.float64)
    out[..., 0, 0] = 1 - 2 * (y * y + z * z)
    out[..., 0, 1] = 2 * (x * y - w * z)
    out[..., 0, 2] = 2 * (x * z + w * y)
    out[..., 1, 0] = 2 * (x * y + w * z)
    out[..., 1, 1] = 1 - 2 * (x * x + z * z)
    out[..., 1, 2] = 2 * (y * z - w * x)
    out[..., 2, 0] = 2 * (x * z - w * y)
    out[..., 2, 1] = 2 * (y * z + w * x)
    out[..., 2, 2] = 1 - 2 * (x * x + y * y)
    return out


def _canonical_quaternion(q: NDArray[np.float64]) -> NDArray[np.float64]:
    """Pick the sign of unit quaternions ``q`` so that ``w > 0``, or ``w == 0`` and the first
    non-zero of ``(x, y, z)`` is > 0.

    A ``|w|`` below 1e-12 (a half turn up to rounding) is set to exactly 0 first, so that half
    turns get one sign whatever the rounding; this moves the rotation by < 1e-11 rad.
    """
    q = np.array(q, dtype=np.float64)
    half_turn = np.abs(q[..., 0]) < _HALF_TURN_W
    if np.any(half_turn):
        q[..., 0] = np.where(half_turn, 0.0, q[..., 0])
        q /= np.linalg.norm(q, axis=-1, keepdims=True)
    tiny = np.abs(q) < _HALF_TURN_W
    sign = np.where(tiny[..., 0], 0.0, np.sign(q[..., 0]))
    for k in (1, 2, 3):
        sign = np.where(sign == 0, np.where(tiny[..., k], 0.0, np.sign(q[..., k])), sign)
    sign = np.where(sign == 0, 1.0, sign)
    return q * sign[..., None]


def matrix_to_quaternion(matrix: ArrayLike) -> NDArray[np.float64]:
    """Unit quaternions ``(w, x, y, z)`` with ``w >= 0`` from rotation matrices.

    Shepperd's method (branch on the largest of ``w, x, y, z``) keeps full precision for
    every rotation, including half turns.

    Parameters
    ----------
    matrix : array_like, shape (..., 3, 3)
        Rotation matrices acting on ``(x, y, z)``.

    Returns
    -------
    ndarray, shape (..., 4), float64
        Canonical unit quaternions: ``w > 0``, or ``w == 0`` and the first non-zero of
        ``(x, y, z)`` positive.
    """
    R = _as_float64(matrix, (3, 3), "matrix")
    m00, m11, m22 = R[..., 0, 0], R[..., 1, 1], R[..., 2, 2]
    trace = m00 + m11 + m22
    # 4 * (w^2, x^2, y^2, z^2) up to the +1 offset; the largest is the stable pivot.
    diag = np.stack([trace, m00, m11, m22], axis=-1)
    pivot = np.argmax(diag, axis=-1)
    q = np.empty(R.shape[:-2] + (4,), dtype=np.float64)

    def fill(mask: NDArray[np.bool_], values: list[NDArray[np.float64]]) -> None:
        for k, v in enumerate(values):
            q[..., k][mask] = v[mask]

    s = np.sqrt(np.maximum(1.0 + trace, 0.0)) * 2  # 4w
    with np.errstate(divide="ignore", invalid="ignore"):
        fill(
            pivot == 0,
            [
                0.25 * s,
                (R[..., 2, 1] - R[..., 1, 2]) / s,
                (R[..., 0, 2] - R[..., 2, 0]) / s,
                (R[..., 1, 0] - R[..., 0, 1]) / s,
            ],
        )
        s = np.sqrt(np.maximum(1.0 + m00 - m11 - m22, 0.0)) * 2  # 4x
        fill(
            pivot == 1,
            [
                (R[..., 2, 1] - R[..., 1, 2]) / s,
                0.25 * s,
                (R[..., 0, 1] + R[..., 1, 0]) / s,
                (R[..., 0, 2] + R[..., 2, 0]) / s,
            ],
        )
        s = np.sqrt(np.maximum(1.0 + m11 - m00 - m22, 0.0)) * 2  # 4y
        fill(
            pivot == 2,
            [
                (R[..., 0, 2] - R[..., 2, 0]) / s,
                (R[..., 0, 1] + R[..., 1, 0]) / s,
                0.25 * s,
                (R[..., 1, 2] + R[..., 2, 1]) / s,
            ],
        )
        s = np.sqrt(np.maximum(1.0 + m22 - m00 - m11, 0.0)) * 2  # 4z
        fill(
            pivot == 3,
            [
                (R[..., 1, 0] - R[..., 0, 1]) / s,
                (R[..., 0, 2] + R[..., 2, 0]) / s,
                (R[..., 1, 2] + R[..., 2, 1]) / s,
                0.25 * s,
            ],
        )
    q /= np.linalg.norm(q, axis=-1, keepdims=True)
    return _canonical_quaternion(q)


def euler_zyz_to_quaternion(euler_deg: ArrayLike) -> NDArray[np.float64]:
    """Unit quaternions ``(w, x, y, z)``, ``w >= 0``, from RELION Euler angles in degrees.

    Parameters
    ----------
    euler_deg : array_like, shape (..., 3)
        ``(rot, tilt, psi)`` in degrees.

    Returns
    -------
    ndarray, shape (..., 4), float64
    """
    return matrix_to_quaternion(euler_zyz_to_matrix(euler_deg))


def quaternion_to_euler_zyz(quaternion: ArrayLike) -> NDArray[np.float64]:
    """RELION Euler angles ``(rot, tilt, psi)`` in degrees from quaternions ``(w, x, y, z)``.

    Parameters
    ----------
    quaternion : array_like, shape (..., 4)

    Returns
    -------
    ndarray, shape (..., 3), float64
    """
    return matrix_to_euler_zyz(quaternion_to_matrix(quaternion))


def axis_angle_to_matrix(axis: ArrayLike, angle_deg: ArrayLike) -> NDArray[np.float64]:
    """Right-handed rotation by ``angle_deg`` about ``axis`` (Rodrigues' formula).

    A positive angle turns counter-clockwise when the axis points at the viewer; the matrix
    moves points (active): ``axis_angle_to_matrix([0, 0, 1], 90) @ [1, 0, 0] == [0, 1, 0]``.

    Parameters
    ----------
    axis : array_like, shape (..., 3)
        Rotation axes ``(x, y, z)``; any non-zero length (they are normalised).
    angle_deg : array_like, shape (...)
        Angles in degrees; broadcast against ``axis[..., 0]``.

    Returns
    -------
    ndarray, shape (..., 3, 3), float64
    """
    u = _as_float64(axis, (3,), "axis")
    norm = np.linalg.norm(u, axis=-1, keepdims=True)
    if np.any(norm == 0):
        raise ShapeError("axis has zero length; give a non-zero (x, y, z) rotation axis")
    u = u / norm
    theta = np.deg2rad(np.asarray(angle_deg, dtype=np.float64))
    if not np.all(np.isfinite(theta)):
        raise NonFiniteError("angle_deg contains NaN or infinite values")
    half = 0.5 * theta
    w = np.cos(half)
    xyz = u * np.sin(half)[..., None]
    w, xyz = np.broadcast_arrays(w[..., None], xyz)
    return quaternion_to_matrix(np.concatenate([w[..., :1], xyz], axis=-1))


def quaternion_multiply(p: ArrayLike, q: ArrayLike) -> NDArray[np.float64]:
    """Hamilton product ``p * q`` of quaternions ``(w, x, y, z)`` (broadcast).

    The product composes rotations like matrices: ``R(p * q) == R(p) @ R(q)`` (``q`` first).

    Parameters
    ----------
    p, q : array_like, shape (..., 4)

    Returns
    -------
    ndarray, shape (..., 4), float64
        Not re-normalised and not made canonical.
    """
    a = _as_float64(p, (4,), "p")
    b = _as_float64(q, (4,), "q")
    a, b = np.broadcast_arrays(a, b)
    w1, x1, y1, z1 = a[..., 0], a[..., 1], a[..., 2], a[..., 3]
    w2, x2, y2, z2 = b[..., 0], b[..., 1], b[..., 2], b[..., 3]
    return np.stack(
        [
            w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2,
            w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2,
            w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2,
            w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2,
        ],
        axis=-1,
    )


def quaternion_conjugate(q: ArrayLike) -> NDArray[np.float64]:
    """Conjugate ``(w, -x, -y, -z)``: the inverse rotation of a unit quaternion.

    Parameters
    ----------
    q : array_like, shape (..., 4)

    Returns
    -------
    ndarray, shape (..., 4), float64
    """
    out = _as_float64(q, (4,), "q").copy()
    out[..., 1:] *= -1.0
    return out


def matrix_xyz_to_zyx(matrix: ArrayLike) -> NDArray[np.float64]:
    """Re-express matrices acting on ``(x, y, z)`` so that they act on ``(z, y, x)`` indices.

    emkit arrays are indexed ``(z, y, x)``; geometry is written for ``(x, y, z)``. With the
    reversal permutation ``P``, ``R_zyx = P @ R_xyz @ P``; this is the matrix to give
    :func:`scipy.ndimage.affine_transform` (which works in array-index order). The map is its
    own inverse.

    Parameters
    ----------
    matrix : array_like, shape (..., 3, 3)

    Returns
    -------
    ndarray, shape (..., 3, 3), float64
    """
    R = _as_float64(matrix, (3, 3), "matrix")
    return np.ascontiguousarray(R[..., ::-1, ::-1])
