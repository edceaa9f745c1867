"""Alignments as IMOD ``.xf`` transforms and from AreTomo ``.aln`` files."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from emkit.errors import InputError, MismatchError, with_path
from emkit.geometry import tilt_axis_rotation_xy


def xf_from_alignment(
    shifts_px: np.ndarray, tilt_axis_angle_deg: float | np.ndarray = 0.0
) -> np.ndarray:
    """IMOD transforms ``(n, 2, 3)`` that rotate the tilt axis onto y, then shift.

    Parameters
    ----------
    shifts_px : ndarray, shape (n, 2)
        ``(dy, dx)`` alignment shifts in pixels.
    tilt_axis_angle_deg : float or ndarray of shape (n,)
        In-plane tilt-axis angle of the raw images (see
        :func:`emkit.geometry.tilt_axis_rotation_xy`).

    Returns
    -------
    ndarray, shape (n, 2, 3), float64
        ``[[A11, A12, DX], [A21, A22, DY]]`` as :func:`emkit.io.write_xf` takes them.
    """
    shifts = np.asarray(shifts_px, dtype=np.float64)
    n = len(shifts)
    angles = np.broadcast_to(np.asarray(tilt_axis_angle_deg, dtype=np.float64), (n,))
    xf = np.zeros((n, 2, 3))
    for i in range(n):
        xf[i, :, :2] = tilt_axis_rotation_xy(float(angles[i])) + 0.0  # no "-0.0" in the file
        xf[i, 0, 2] = shifts[i, 1]
        xf[i, 1, 2] = shifts[i, 0]
    return xf


def alignment_from_xf(
    transforms: np.ndarray, *, path: str | os.PathLike[str] | None = None, atol: float = 1e-3
) -> tuple[np.ndarray, np.ndarray]:
    """Shifts and tilt-axis angles of IMOD transforms that rotate and shift only.

    Parameters
    ----------
    transforms : ndarray, shape (n, 2, 3)
        As read by :func:`emkit.io.read_xf`.
    path : path-like, optional
        The ``.xf`` file, for error messages.
    atol : float
        Tolerance on ``A A^T = I`` and ``det A = 1``.

    Returns
    -------
    shifts_px : ndarray, shape (n, 2)
        ``(dy, dx)``.
    tilt_axis_angle_deg : ndarray, shape (n,)
        Rotation of each image, as the tilt-axis angle it undoes.

    Raises
    ------
    InputError
        If a transform scales, shears or mirrors (emkit reconstructs rigid alignments only).
    """
    xf = np.asarray(transforms, dtype=np.float64)
    a = xf[:, :, :2]
    gram = np.einsum("nij,nkj->nik", a, a)
    det = np.linalg.det(a)
    bad = np.flatnonzero(
        (np.abs(gram - np.eye(2)).max(axis=(1, 2)) > atol) | (np.abs(det - 1) > atol)
    )
    if bad.size:
        raise InputError(
            with_path(
                path,
                f"{bad.size} transforms (first: image {bad[0]}) scale, shear or mirror the "
                "image; emkit applies rotations and shifts only (re-run the alignment "
                "without magnification/skew, or use the shifts-only .prexf)",
            )
        )
    angles = np.rad2deg(np.arctan2(a[:, 0, 1], a[:, 0, 0]))
    shifts = np.stack([xf[:, 1, 2], xf[:, 0, 2]], axis=1)
    return shifts, angles


def shifts_from_aln(
    aln: dict[str, Any], n_images: int, *, path: str | os.PathLike[str] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Shifts and tilt-axis angles from an AreTomo alignment (:func:`emkit.io.read_aln`).

    AreTomo's ``TX, TY`` are where the raw image content sits, and ``ROT`` is the tilt-axis
    angle from y; the aligning transform rotates by ``ROT`` and translates by
    ``-R (TX, TY)`` (the same conversion as the usual ``.aln`` -> ``.xf`` converters; not
    checked against AreTomo's own ``-OutImod`` output here).

    Parameters
    ----------
    aln : dict
        From :func:`emkit.io.read_aln`.
    n_images : int
        Number of images in the stack; the ``.aln`` rows are matched by their section
        index when dark frames were removed.
    path : path-like, optional
        The ``.aln`` file, for error messages.

    Returns
    -------
    shifts_px : ndarray, shape (n_images, 2)
    tilt_axis_angle_deg : ndarray, shape (n_images,)
    """
    sections = np.asarray(aln["section"], dtype=np.int64)
    rot = np.asarray(aln["tilt_axis_deg"], dtype=np.float64)
    mag = np.asarray(aln["mag"], dtype=np.float64)
    tx = np.asarray(aln["tx_px"], dtype=np.float64)
    ty = np.asarray(aln["ty_px"], dtype=np.float64)
    if np.any(np.abs(mag - 1) > 1e-3):
        raise InputError(
            with_path(path, "magnification (GMAG) differs from 1; emkit applies rotations "
                      "and shifts only")
        )
    if len(rot) == n_images:
        order = np.arange(n_images)
    else:
        # Rows carry the section index of the original stack (dark frames dropped).
        base = sections.min() if len(sections) else 0
        index = sections - base
        if len(np.unique(index)) != len(index) or index.max() >= n_images:
            raise MismatchError(
                with_path(path, f"{len(rot)} alignment rows do not match the stack's "
                          f"{n_images} images")
            )
        missing = sorted(set(range(n_images)) - set(index.tolist()))
        raise MismatchError(
            with_path(
                path,
                f"{len(rot)} alignment rows for {n_images} images (images {missing[:5]} "
                "were dropped as dark frames); remove those images from the stack and .tlt",
            )
        )
    shifts = np.zeros((n_images, 2))
    for i, k in enumerate(order):
        r = tilt_axis_rotation_xy(float(rot[k]))
        d = -r @ np.array([tx[k], ty[k]])
        shifts[i] = (d[1], d[0])
    return shifts, rot[order]
