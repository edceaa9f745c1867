"""Rotations, SO(3) sampling and distances, and tilt geometry.

This is the one place where emkit's rotation conventions are written down.

Coordinates
-----------
Geometry is written for column vectors ``(x, y, z)`` in a right-handed frame; ``z`` is the
beam (viewing) direction, ``x`` the image column and ``y`` the image row. emkit arrays are
indexed ``(z, y, x)``, the reverse order: to apply a matrix ``R`` to array indices (e.g. with
:func:`scipy.ndimage.affine_transform`) use ``matrix_xyz_to_zyx(R)`` (``P R P`` with the
reversal permutation ``P``). Vectors such as particle centres are stored ``(z, y, x)`` in
arrays and reversed before a matrix acts on them.

What a rotation matrix means
----------------------------
Every emkit rotation matrix ``A`` is RELION's matrix (``Euler_angles2matrix`` in RELION's
``src/euler.cpp``):

* Acting on a point's coordinates in the **reference** (map / specimen) frame, ``A @ r``
  gives its coordinates in the **particle (image) frame**, whose ``z`` axis is the beam.
* Equivalently, the particle is the reference turned (actively) by ``A``:
  ``V_particle(r) = V_reference(A.T @ r)``; the image is the integral of ``V_particle``
  along ``z``. RELION's projector does exactly this (it maps image coordinates to the
  reference with ``A^{-1} = A.T``).
* The projection (viewing) direction in the reference frame is ``A.T @ [0, 0, 1]``, the
  third row of ``A``: ``(sin tilt cos rot, sin tilt sin rot, cos tilt)``.

RELION builds ``A`` as a product of elementary *passive* (frame) rotations, which is why
it is often called a passive or "rotate the reference to match the particle" matrix: with
``Rz(a) = [[cos a, sin a, 0], [-sin a, cos a, 0], [0, 0, 1]]`` and
``Ry(b) = [[cos b, 0, -sin b], [0, 1, 0], [sin b, 0, cos b]]`` (each the transpose of the
right-handed active rotation by the same angle),

    ``A = Rz(psi) @ Ry(tilt) @ Rz(rot)``

with ``(rot, tilt, psi) = (rlnAngleRot, rlnAngleTilt, rlnAnglePsi)`` in degrees, exactly as
written in STAR files. :func:`euler_zyz_to_matrix` computes it; :func:`matrix_to_euler_zyz`
inverts it with ``tilt`` in [0, 180] and ``rot``, ``psi`` in (-180, 180], setting ``rot = 0``
at gimbal lock (``tilt`` = 0 or 180) as RELION does. Examples: ``rot = 90`` alone gives
``A @ (1, 0, 0) = (0, -1, 0)``; ``tilt = 90`` alone gives ``A @ (0, 0, 1) = (-1, 0, 0)``.

Quaternions are unit ``(w, x, y, z)`` with the standard (Hamilton) formula, represent the
same matrices (:func:`quaternion_to_matrix`), compose like them
(``R(p * q) = R(p) @ R(q)``), and are returned canonical with ``w >= 0``.
:func:`axis_angle_to_matrix` is the right-handed (counter-clockwise, active) rotation about an
axis.

Global ambiguity when scoring orientations
------------------------------------------
Rotating the reconstructed map by ``Q`` turns every particle matrix ``A_i`` into
``A_i @ Q.T``; the mirror-image map gives the same projections with ``J A_i J``
(``J = diag(1, 1, -1)``). :func:`align_rotations` removes both before measuring errors.

Tilt series
-----------
:func:`tilt_rotation` is the specimen rotation for a single-axis tilt about the image ``y``
axis (IMOD's convention): image ``x' = x cos t + z sin t``. It has the meaning above (specimen
frame to tilted frame).
"""

from emkit.geometry._distance import (
    RotationAlignment,
    align_rotations,
    orientation_error_summary,
    quaternion_distance,
    rotation_angle_between,
)
from emkit.geometry._rotations import (
    axis_angle_to_matrix,
    euler_zyz_to_matrix,
    euler_zyz_to_quaternion,
    matrix_to_euler_zyz,
    matrix_to_quaternion,
    matrix_xyz_to_zyx,
    quaternion_conjugate,
    quaternion_multiply,
    quaternion_to_euler_zyz,
    quaternion_to_matrix,
)
from emkit.geometry._sampling import (
    fibonacci_sphere,
    random_quaternions,
    random_rotations,
    so3_grid,
)
from emkit.geometry._tilt import tilt_angles, tilt_axis_rotation_xy, tilt_rotation

__all__ = [
    "RotationAlignment",
    "align_rotations",
    "axis_angle_to_matrix",
    "euler_zyz_to_matrix",
    "euler_zyz_to_quaternion",
    "fibonacci_sphere",
    "matrix_to_euler_zyz",
    "matrix_to_quaternion",
    "matrix_xyz_to_zyx",
    "orientation_error_summary",
    "quaternion_conjugate",
    "quaternion_distance",
    "quaternion_multiply",
    "quaternion_to_euler_zyz",
    "quaternion_to_matrix",
    "random_quaternions",
    "random_rotations",
    "rotation_angle_between",
    "so3_grid",
    "tilt_angles",
    "tilt_axis_rotation_xy",
    "tilt_rotation",
]
