"""Single-axis tilt geometry (IMOD conventions)."""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike, NDArray

from emkit.errors import InputError, NonFiniteError
from emkit.geometry._rotations import axis_angle_to_matrix

__all__ = ["tilt_angles", "tilt_axis_rotation_xy", "tilt_rotation"]


def tilt_rotation(
    tilt_angle_deg: ArrayLike, *, tilt_axis_angle_deg: float = 0.0
) -> NDArray[np.float64]:
    """Rotation of the specimen for a single-axis tilt series.

    A right-handed rotation by ``tilt_angle_deg`` about the tilt axis, which lies in the image
    plane at ``tilt_axis_angle_deg`` counter-clockwise from the image ``y`` axis (IMOD's
    convention for the tilt-axis angle; 0 = the ``y`` axis, emkit's default). With the axis
    along ``y`` it is::

        [[ cos t, 0, sin t],
         [     0, 1,     0],
         [-sin t, 0, cos t]]

    so a specimen point ``(x, y, z)`` lands at image ``x' = x cos t + z sin t, y' = y``
    (the beam runs along ``z``): at a positive tilt, material above the mid-plane (``z > 0``)
    moves towards ``+x``, the projection model of IMOD's tiltalign. The matrix has the same
    meaning as every emkit rotation (see :mod:`emkit.geometry`): it maps specimen
    coordinates to coordinates in the tilted (image) frame, and equals
    ``euler_zyz_to_matrix([0, -t, 0])`` for an axis along ``y``.

    Parameters
    ----------
    tilt_angle_deg : array_like, shape (...)
        Tilt angles in degrees (e.g. the contents of an IMOD ``.tlt`` file).
    tilt_axis_angle_deg : float
        In-plane angle of the tilt axis from the image ``y`` axis, counter-clockwise, degrees.

    Returns
    -------
    ndarray, shape (..., 3, 3), float64
        Matrices acting on ``(x, y, z)``; use :func:`matrix_xyz_to_zyx` for ``(z, y, x)``
        array indices.
    """
    t = np.asarray(tilt_angle_deg, dtype=np.float64)
    if not np.all(np.isfinite(t)) or not math.isfinite(tilt_axis_angle_deg):
        raise NonFiniteError("tilt angles must be finite numbers")
    phi = math.radians(tilt_axis_angle_deg)
    axis = np.array([-math.sin(phi), math.cos(phi), 0.0])
    axes = np.broadcast_to(axis, t.shape + (3,))
    return axis_angle_to_matrix(axes, t)


def tilt_angles(start_deg: float, stop_deg: float, step_deg: float) -> NDArray[np.float64]:
    """Evenly stepped tilt angles from ``start_deg`` to ``stop_deg`` inclusive.

    Like IMOD's "starting and increment" entry: ``tilt_angles(-60, 60, 2)`` gives 61 angles
    ``-60, -58, ..., 60``. ``stop_deg`` is included when it lies on the step grid (to within
    1e-6 of a step); otherwise the last angle is the last grid point before it.

    Parameters
    ----------
    start_deg, stop_deg : float
        First and last tilt angle in degrees.
    step_deg : float
        Increment in degrees; negative for a descending series.

    Returns
    -------
    ndarray, shape (n,), float64

    Raises
    ------
    InputError
        If ``step_deg`` is 0 or points away from ``stop_deg``.
    """
    values = (start_deg, stop_deg, step_deg)
    if not all(math.isfinite(v) for v in values):
        raise NonFiniteError(f"tilt angles must be finite, got {values}")
    if step_deg == 0:
        raise InputError("step_deg is 0; give a non-zero tilt increment")
    n_steps = (stop_deg - start_deg) / step_deg
    if n_steps < -1e-6:
        raise InputError(
            f"step_deg={step_deg} goes away from stop_deg={stop_deg} (start_deg={start_deg}); "
            "flip the sign of the step"
        )
    n = int(math.floor(n_steps + 1e-6)) + 1
    return start_deg + step_deg * np.arange(n, dtype=np.float64)


def tilt_axis_rotation_xy(angle_deg: float) -> NDArray[np.float64]:
    """The 2x2 matrix (acting on image ``(x, y)``) that turns a tilt axis at ``angle_deg`` onto +y.

    Parameters
    ----------
    angle_deg : float
        In-plane tilt-axis angle of a raw image in degrees, measured from the image +y axis
        towards -x (counter-clockwise with y drawn upwards, as IMOD displays images).

    Returns
    -------
    ndarray, shape (2, 2), float64
        Rotation about the image centre; reverse both axes (``[::-1, ::-1]``) for ``(y, x)``.
    """
    a = np.deg2rad(angle_deg)
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, s], [-s, c]])
