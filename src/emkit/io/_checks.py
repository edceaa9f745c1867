"""Input checks that workflows run on arrays they have read, with messages naming the file."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from emkit.errors import NonFiniteError, ShapeError, with_path
from emkit.io._paths import PathLike

# Count non-finite values in slabs of about this many elements, so a memory-mapped
# tomogram is never copied whole into memory just to be checked.
_CHUNK_ELEMENTS = 1 << 24


def count_nonfinite(data: np.ndarray) -> int:
    """Number of NaN or infinite values in ``data`` (0 for integer arrays), computed in slabs."""
    arr = np.asarray(data) if not isinstance(data, np.ndarray) else data
    if not np.issubdtype(arr.dtype, np.inexact):
        return 0
    if arr.ndim == 0 or arr.size <= _CHUNK_ELEMENTS:
        return int(arr.size - np.count_nonzero(np.isfinite(arr)))
    step = max(1, _CHUNK_ELEMENTS // max(1, arr[0].size))
    bad = 0
    for start in range(0, arr.shape[0], step):
        block = arr[start : start + step]
        bad += int(block.size - np.count_nonzero(np.isfinite(block)))
    return bad


def require_finite(data: np.ndarray, path: PathLike | None = None, what: str = "data") -> None:
    """Raise :class:`NonFiniteError` if ``data`` holds NaN or infinite values.

    Parameters
    ----------
    data : ndarray
        Any shape; integer arrays always pass.
    path : path-like or None
        The file the data came from, named in the message.
    what : str
        What the data are, for the message (e.g. ``"tilt series"``).

    Raises
    ------
    NonFiniteError
        With the number of bad values, e.g. ``"x.mrc: 12 of 1000000 values in the data are
        NaN or infinite; fix or mask them before running"``.
    """
    bad = count_nonfinite(data)
    if bad:
        raise NonFiniteError(
            with_path(
                path,
                f"{bad} of {np.asarray(data).size} values in the {what} are NaN or infinite; "
                "fix or mask them (e.g. replace with the mean) before running",
            )
        )


def require_ndim(
    data: np.ndarray,
    ndims: int | Iterable[int],
    path: PathLike | None = None,
    what: str = "data",
) -> None:
    """Raise :class:`ShapeError` unless ``data.ndim`` is ``ndims`` (or one of them).

    Parameters
    ----------
    data : ndarray
    ndims : int or iterable of int
        Allowed numbers of dimensions, e.g. ``3`` or ``(2, 3)``.
    path : path-like or None
        The file the data came from, named in the message.
    what : str
        What the data should be, e.g. ``"tilt series (n, y, x)"``.
    """
    allowed = (ndims,) if isinstance(ndims, int) else tuple(ndims)
    ndim = np.ndim(data)
    if ndim not in allowed:
        wanted = " or ".join(f"{n}D" for n in allowed)
        raise ShapeError(
            with_path(
                path,
                f"expected a {wanted} {what} but got {ndim}D data of shape "
                f"{tuple(np.shape(data))}; give a file with the right dimensions",
            )
        )
