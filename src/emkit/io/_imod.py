"""IMOD tilt angles (.tlt) and transforms (.xf), and AreTomo alignments (.aln).

IMOD ``.xf`` convention, used unchanged here: one line per image, ``A11 A12 A21 A22 DX DY``,
meaning ``x' = A11 x + A12 y + DX`` and ``y' = A21 x + A22 y + DY`` where ``(x, y)`` is a
position in the raw image and ``(x', y')`` its position in the aligned image, both in pixels
relative to the image centre. The transform is what ``newstack -xform`` applies to the raw
image to align it. x is the image column, y the row (numpy axis 1 and 0). Arrays from
:func:`read_xf` keep IMOD's (x, y) order: ``[[A11, A12, DX], [A21, A22, DY]]``.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import numpy as np

from emkit.errors import FileFormatError, InputError, NonFiniteError, ShapeError, with_path
from emkit.io._atomic import write_text_atomic
from emkit.io._paths import PathLike, require_readable_file

_XF_FORMAT = "%12.7f%12.7f%12.7f%12.7f%12.3f%12.3f"
_XF_FIELD = 12


def _lines(path: PathLike) -> list[str]:
    p = require_readable_file(path)
    try:
        return p.read_text(encoding="utf-8", errors="strict").splitlines()
    except UnicodeDecodeError:
        raise FileFormatError(
            with_path(p, "is not a text file; give a plain-text file from IMOD/AreTomo")
        ) from None


def read_tlt(path: PathLike) -> np.ndarray:
    """Read an IMOD tilt-angle file: one angle in degrees per line.

    Blank lines are ignored; only the first number on a line is used (some programs add
    columns).

    Returns
    -------
    ndarray, float64, shape (n,)
        Tilt angles in degrees, in file order (= image order in the stack).

    Raises
    ------
    MissingFileError, FileFormatError
        A line that is not a number (with its line number), or no angles at all.
    """
    angles: list[float] = []
    for number, line in enumerate(_lines(path), start=1):
        text = line.strip()
        if not text:
            continue
        token = text.split()[0]
        try:
            value = float(token)
        except ValueError:
            raise FileFormatError(
                with_path(
                    path,
                    f"line {number}: {text[:40]!r} is not a tilt angle; give one "
                    "angle in degrees per line",
                )
            ) from None
        if not math.isfinite(value):
            raise FileFormatError(
                with_path(path, f"line {number}: tilt angle {token} is not finite")
            )
        angles.append(value)
    if not angles:
        raise FileFormatError(with_path(path, "holds no tilt angles; give one angle per line"))
    return np.asarray(angles, dtype=np.float64)


def write_tlt(path: PathLike, angles_deg: Any, *, decimals: int = 2) -> Path:
    """Write tilt angles (degrees) one per line, IMOD style (``%8.2f`` by default), atomically."""
    angles = np.asarray(angles_deg, dtype=np.float64).ravel()
    if not np.all(np.isfinite(angles)):
        raise NonFiniteError(with_path(path, "tilt angles contain NaN or infinite values"))
    width = max(8, decimals + 6)
    text = "".join(f"{a:{width}.{decimals}f}\n" for a in angles)
    return write_text_atomic(path, text)


def _parse_xf_line(line: str) -> list[float] | None:
    tokens = line.split()
    if len(tokens) != 6:
        # IMOD's fixed-width fields (12 characters) can run together for large values.
        stripped = line.rstrip("\n")
        if len(stripped) < 6 * _XF_FIELD - 1:
            return None
        tokens = [stripped[i * _XF_FIELD : (i + 1) * _XF_FIELD] for i in range(6)]
    try:
        values = [float(t) for t in tokens]
    except ValueError:
        return None
    return values if all(math.isfinite(v) for v in values) else None


def read_xf(path: PathLike) -> np.ndarray:
    """Read an IMOD ``.xf`` (or ``.prexf``, ``.xg``) transform file.

    Returns
    -------
    ndarray, float64, shape (n, 2, 3)
        ``[[A11, A12, DX], [A21, A22, DY]]`` per image, IMOD (x, y) order, pixels (see the
        module docstring for the meaning).

    Raises
    ------
    MissingFileError, FileFormatError
    """
    rows = []
    for number, line in enumerate(_lines(path), start=1):
        if not line.strip():
            continue
        values = _parse_xf_line(line)
        if values is None:
            raise FileFormatError(
                with_path(
                    path,
                    f"line {number}: expected 6 numbers (A11 A12 A21 A22 DX DY), "
                    f"got {line.strip()[:60]!r}",
                )
            )
        rows.append(values)
    if not rows:
        raise FileFormatError(with_path(path, "holds no transforms; expected one line per image"))
    arr = np.asarray(rows, dtype=np.float64)
    out = np.empty((len(rows), 2, 3), dtype=np.float64)
    out[:, 0, 0], out[:, 0, 1], out[:, 1, 0], out[:, 1, 1] = (
        arr[:, 0],
        arr[:, 1],
        arr[:, 2],
        arr[:, 3],
    )
    out[:, 0, 2], out[:, 1, 2] = arr[:, 4], arr[:, 5]
    return out


def write_xf(path: PathLike, transforms: Any) -> Path:
    """Write ``(n, 2, 3)`` IMOD transforms with IMOD's fixed-width format, atomically.

    Each line is ``%12.7f%12.7f%12.7f%12.7f%12.3f%12.3f`` (A11 A12 A21 A22 DX DY), as IMOD's
    own programs write it.
    """
    xf = np.asarray(transforms, dtype=np.float64)
    if xf.ndim != 3 or xf.shape[1:] != (2, 3):
        raise ShapeError(with_path(path, f"transforms must have shape (n, 2, 3), got {xf.shape}"))
    if not np.all(np.isfinite(xf)):
        raise NonFiniteError(with_path(path, "transforms contain NaN or infinite values"))
    lines = [_XF_FORMAT % (m[0, 0], m[0, 1], m[1, 0], m[1, 1], m[0, 2], m[1, 2]) + "\n" for m in xf]
    return write_text_atomic(path, "".join(lines))


def xf_from_shifts(shifts_yx: Any) -> np.ndarray:
    """IMOD transforms for pure translations.

    Parameters
    ----------
    shifts_yx : array, shape (n, 2)
        ``(dy, dx)`` in pixels per image: the shift applied to the raw image to align it,
        i.e. the content at raw ``(y, x)`` moves to ``(y + dy, x + dx)`` — the same sign as
        ``scipy.ndimage.shift(raw, (dy, dx))``.

    Returns
    -------
    ndarray, float64, shape (n, 2, 3)
        Identity linear part, ``DX = dx``, ``DY = dy``.
    """
    shifts = np.asarray(shifts_yx, dtype=np.float64)
    if shifts.ndim != 2 or shifts.shape[1] != 2:
        raise ShapeError(f"shifts_yx must have shape (n, 2) as (dy, dx), got {shifts.shape}")
    out = np.zeros((shifts.shape[0], 2, 3), dtype=np.float64)
    out[:, 0, 0] = out[:, 1, 1] = 1.0
    out[:, 0, 2] = shifts[:, 1]
    out[:, 1, 2] = shifts[:, 0]
    return out


def shifts_from_xf(
    transforms: Any, *, allow_linear: bool = False, atol: float = 1e-5, path: PathLike | None = None
) -> np.ndarray:
    """The ``(dy, dx)`` shifts of IMOD transforms (inverse of :func:`xf_from_shifts`).

    Parameters
    ----------
    transforms : array, shape (n, 2, 3)
    allow_linear : bool
        If False (default), raise when a transform also rotates, scales or shears (its
        linear part differs from identity by more than ``atol``); if True return DY, DX
        regardless.
    path : path-like, optional
        The file the transforms came from, for the error message.

    Returns
    -------
    ndarray, float64, shape (n, 2)
        ``(dy, dx)`` in pixels, same sign convention as :func:`xf_from_shifts`.
    """
    xf = np.asarray(transforms, dtype=np.float64)
    if xf.ndim != 3 or xf.shape[1:] != (2, 3):
        raise ShapeError(with_path(path, f"transforms must have shape (n, 2, 3), got {xf.shape}"))
    if not allow_linear:
        deviation = np.abs(xf[:, :, :2] - np.eye(2)).max(axis=(1, 2))
        bad = np.flatnonzero(deviation > atol)
        if bad.size:
            raise InputError(
                with_path(
                    path,
                    f"{bad.size} transforms (first: image {bad[0]}) rotate or scale "
                    "as well as shift; use the full (n, 2, 3) transforms instead",
                )
            )
    return np.stack([xf[:, 1, 2], xf[:, 0, 2]], axis=1)


_ALN_COLUMNS = ("sec", "rot", "gmag", "tx", "ty", "smean", "sfit", "scale", "base", "tilt")


def read_aln(path: PathLike) -> dict[str, Any]:
    """Read an AreTomo / AreTomo2 / AreTomo3 ``.aln`` alignment file.

    The global table has the columns ``SEC ROT GMAG TX TY SMEAN SFIT SCALE BASE TILT``;
    header lines start with ``#`` (``# RawSize = nx ny n``, ``# DarkFrame = i j tilt``,
    ``# AlphaOffset``, ``# BetaOffset``, ``# Thickness``, ``# NumPatches``); an optional
    ``# Local Alignment`` block follows with ``SEC PATCH X Y DX DY RELIABLE`` rows.

    Returns
    -------
    dict
        ``section`` (n,) int: index of each aligned image in the stack (dark frames removed);
        ``tilt_axis_deg`` (n,): ROT, the tilt-axis angle from the image y axis;
        ``mag`` (n,): GMAG; ``tx_px``, ``ty_px`` (n,): TX, TY in pixels of the raw stack,
        as AreTomo writes them; ``tilt_deg`` (n,): TILT; ``smean``, ``sfit``, ``scale``,
        ``base`` (n,); ``dark_frames``: list of ``(frame, section, tilt_deg)`` removed
        before alignment; ``raw_size`` ``(nx, ny, n)`` or None; ``alpha_offset_deg``,
        ``beta_offset_deg``, ``thickness_px``, ``num_patches`` (float/int or None);
        ``local``: ``(m, 7)`` float64 array of local-alignment rows or None.

    Raises
    ------
    MissingFileError, FileFormatError
    """
    rows: list[list[float]] = []
    local: list[list[float]] = []
    dark: list[tuple[int, int, float]] = []
    info: dict[str, Any] = {
        "raw_size": None,
        "alpha_offset_deg": None,
        "beta_offset_deg": None,
        "thickness_px": None,
        "num_patches": None,
    }
    in_local = False
    for number, line in enumerate(_lines(path), start=1):
        text = line.strip()
        if not text:
            continue
        if text.startswith("#"):
            in_local = _read_aln_header(path, number, text, info, dark) or in_local
            continue
        values = _aln_numbers(path, number, text)
        if in_local:
            local.append(values)
        elif len(values) == len(_ALN_COLUMNS):
            rows.append(values)
        else:
            raise FileFormatError(
                with_path(
                    path,
                    f"line {number}: expected {len(_ALN_COLUMNS)} columns "
                    f"({' '.join(c.upper() for c in _ALN_COLUMNS)}), got {len(values)}",
                )
            )
    return _aln_result(path, rows, local, dark, info)


def _read_aln_header(
    path: PathLike, number: int, text: str, info: dict[str, Any], dark: list[tuple[int, int, float]]
) -> bool:
    """Read one ``#`` line of an .aln into ``info``/``dark``; True if it opens the local block."""
    body = text.lstrip("#").strip()
    key, eq, value = body.partition("=")
    key = key.strip().lower()
    try:
        if "local alignment" in body.lower():
            return True
        if eq and key == "rawsize":
            nx, ny, n = (int(float(v)) for v in value.split()[:3])
            info["raw_size"] = (nx, ny, n)
        elif eq and key == "darkframe":
            f, s, t = value.split()[:3]
            dark.append((int(f), int(s), float(t)))
        elif eq and key == "alphaoffset":
            info["alpha_offset_deg"] = float(value.split()[0])
        elif eq and key == "betaoffset":
            info["beta_offset_deg"] = float(value.split()[0])
        elif eq and key == "thickness":
            info["thickness_px"] = float(value.split()[0])
        elif eq and key == "numpatches":
            info["num_patches"] = int(float(value.split()[0]))
    except ValueError:
        raise FileFormatError(
            with_path(path, f"line {number}: cannot read header {text[:60]!r}")
        ) from None
    return False


def _aln_numbers(path: PathLike, number: int, text: str) -> list[float]:
    """The numbers of one table row of an .aln (line ``number``)."""
    try:
        return [float(v) for v in re.split(r"\s+", text)]
    except ValueError:
        raise FileFormatError(
            with_path(
                path,
                f"line {number}: {text[:60]!r} is not a row of numbers; is this "
                "an AreTomo .aln file?",
            )
        ) from None


def _aln_result(
    path: PathLike,
    rows: list[list[float]],
    local: list[list[float]],
    dark: list[tuple[int, int, float]],
    info: dict[str, Any],
) -> dict[str, Any]:
    """Assemble :func:`read_aln`'s dict from the global rows, local rows and header values."""
    if not rows:
        raise FileFormatError(with_path(path, "holds no alignment rows; is this an AreTomo .aln?"))
    table = np.asarray(rows, dtype=np.float64)
    out: dict[str, Any] = {
        "section": table[:, 0].astype(np.int64),
        "tilt_axis_deg": table[:, 1],
        "mag": table[:, 2],
        "tx_px": table[:, 3],
        "ty_px": table[:, 4],
        "smean": table[:, 5],
        "sfit": table[:, 6],
        "scale": table[:, 7],
        "base": table[:, 8],
        "tilt_deg": table[:, 9],
        "dark_frames": dark,
        **info,
        "local": None,
    }
    if local:
        widths = {len(r) for r in local}
        if len(widths) != 1:
            raise FileFormatError(with_path(path, "local-alignment rows have differing columns"))
        out["local"] = np.asarray(local, dtype=np.float64)
    return out
