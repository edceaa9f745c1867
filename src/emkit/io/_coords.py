"""Particle coordinate tables: CSV/TSV, RELION STAR, DeepFinder XML object lists.

Every function here takes and returns coordinates as ``(n, 3)`` arrays in emkit's
``(z, y, x)`` order, in pixels (voxels) of the tomogram. Files keep the field's own
order: CSV/TSV columns ``x, y, z[, class]``; STAR ``rlnCoordinateX/Y/Z``; XML attributes
``x=``, ``y=``, ``z=``.
"""

from __future__ import annotations

import io as _stdio
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np

from emkit.errors import FileFormatError, MismatchError, NonFiniteError, ShapeError, with_path
from emkit.io._atomic import write_text_atomic
from emkit.io._paths import PathLike, require_readable_file, require_suffix, require_text_file
from emkit.io._star import read_coordinates_star, write_coordinates_star

COORDINATE_SUFFIXES = (".csv", ".tsv", ".star", ".xml")
_CLASS_NAMES = ("class", "class_label", "label", "class_id", "classes")


def _points(zyx: Any, path: PathLike) -> np.ndarray:
    pts = np.asarray(zyx, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise ShapeError(
            with_path(path, f"coordinates must have shape (n, 3) in (z, y, x), got {pts.shape}")
        )
    if not np.all(np.isfinite(pts)):
        raise NonFiniteError(with_path(path, "coordinates contain NaN or infinite values"))
    return pts


def _labels(values: Any, n: int, path: PathLike, what: str) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim == 0:
        arr = np.full(n, arr.item())
    if arr.shape != (n,):
        raise MismatchError(with_path(path, f"{arr.size} {what} values for {n} points"))
    return arr.astype(np.int64)


def _read_table(path: Path, sep: str) -> tuple[np.ndarray, np.ndarray | None]:
    import pandas as pd

    text = path.read_text(encoding="utf-8", errors="replace")
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if not lines:
        return np.zeros((0, 3)), None
    first = [t.strip().strip('"').lower() for t in lines[0].split(sep)]
    has_header = any(not _is_number(t) for t in first)
    try:
        df = pd.read_csv(
            _stdio.StringIO("\n".join(lines)), sep=sep, header=0 if has_header else None
        )
    except (ValueError, pd.errors.ParserError) as error:
        raise FileFormatError(with_path(path, f"is not a readable table ({error})")) from None
    if has_header:
        names = {str(c).strip().lower(): c for c in df.columns}
        if all(k in names for k in ("x", "y", "z")):
            cols = [names["z"], names["y"], names["x"]]
        elif all(f"axis-{i}" in names for i in range(3)):  # napari points layer
            cols = [names["axis-0"], names["axis-1"], names["axis-2"]]
        elif "x" in names and "y" in names:
            df["__z"] = 0.0
            cols = ["__z", names["y"], names["x"]]
        else:
            raise FileFormatError(
                with_path(
                    path,
                    f"has columns {list(df.columns)}; expected a header with x, y, z "
                    "(and optionally class)",
                )
            )
        cls_col = next((names[c] for c in _CLASS_NAMES if c in names), None)
    else:
        if df.shape[1] < 3:
            raise FileFormatError(
                with_path(path, f"has {df.shape[1]} columns; expected x, y, z[, class]")
            )
        cols = [2, 1, 0]
        cls_col = 3 if df.shape[1] >= 4 else None
    try:
        zyx = df[cols].to_numpy(dtype=np.float64)
        classes = None if cls_col is None else df[cls_col].to_numpy(dtype=np.int64)
    except (ValueError, TypeError) as error:
        raise FileFormatError(with_path(path, f"has non-numeric coordinates ({error})")) from None
    return zyx, classes


def _is_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def read_coordinates(path: PathLike) -> tuple[np.ndarray, np.ndarray | None]:
    """Read particle coordinates from ``.csv``, ``.tsv``, ``.star`` or DeepFinder ``.xml``.

    CSV/TSV: a header naming ``x``, ``y``, ``z`` (any order, any case) and optionally
    ``class`` (also ``class_label``/``label``); without a header the columns are
    ``x, y, z[, class]``. napari's ``axis-0, axis-1, axis-2`` columns are read as z, y, x.
    Lines starting with ``#`` are skipped.

    Returns
    -------
    zyx : ndarray, float64, shape (n, 3)
        ``(z, y, x)`` in pixels (z = 0 for 2D files).
    classes : ndarray of int64, shape (n,), or None
    """
    suffix = require_suffix(path, COORDINATE_SUFFIXES, "coordinate")
    p = require_readable_file(path)
    if suffix == ".star":
        return read_coordinates_star(p)
    if suffix == ".xml":
        objects = read_deepfinder_xml(p)
        return objects["zyx"], objects["class_label"]
    require_text_file(p, "CSV/TSV table")
    return _read_table(p, "," if suffix == ".csv" else "\t")


def write_coordinates(path: PathLike, zyx: Any, classes: Any | None = None) -> Path:
    """Write particle coordinates atomically; the format follows the suffix.

    Parameters
    ----------
    path : path-like
        ``.csv`` (comma) or ``.tsv`` (tab) with header ``x, y, z[, class]`` (that column
        order, 4 decimals); ``.star`` (``rlnCoordinateX/Y/Z``, ``rlnClassNumber``);
        ``.xml`` (DeepFinder object list, class 1 when ``classes`` is None).
    zyx : array, shape (n, 3)
        ``(z, y, x)`` pixels.
    classes : array of int, shape (n,), optional
    """
    suffix = require_suffix(path, COORDINATE_SUFFIXES, "coordinate")
    out = Path(path)
    pts = _points(zyx, out)
    cls = None if classes is None else _labels(classes, len(pts), out, "class")
    if suffix == ".star":
        return write_coordinates_star(out, pts, classes=cls)
    if suffix == ".xml":
        return write_deepfinder_xml(out, pts, class_label=1 if cls is None else cls)
    import pandas as pd

    columns: dict[str, Any] = {"x": pts[:, 2], "y": pts[:, 1], "z": pts[:, 0]}
    if cls is not None:
        columns["class"] = cls
    text = pd.DataFrame(columns).to_csv(
        sep="," if suffix == ".csv" else "\t",
        index=False,
        float_format="%.4f",
        lineterminator="\n",
    )
    return write_text_atomic(out, text)


def read_deepfinder_xml(path: PathLike) -> dict[str, Any]:
    """Read a DeepFinder object list ``<objlist><object tomo_idx= class_label= x= y= z=
    phi= psi= the=/>...</objlist>``.

    Returns
    -------
    dict
        ``zyx`` (n, 3) float64 pixels in ``(z, y, x)``; ``class_label`` (n,) int64;
        ``tomo_idx`` (n,) int64 (0 when absent); ``angles_deg`` (n, 3) float64
        ``(phi, psi, the)`` as stored (DeepFinder's Euler angles), or None when no object
        has them.
    """
    p = require_readable_file(path)
    try:
        root = ET.parse(p).getroot()
    except ET.ParseError as error:
        raise FileFormatError(with_path(p, f"is not valid XML ({error})")) from None
    objects = list(root.iter("object"))
    if root.tag != "objlist" and not objects:
        raise FileFormatError(with_path(p, "is not a DeepFinder <objlist> file"))
    zyx, labels, tomo, angles = [], [], [], []
    has_angles = False
    for number, obj in enumerate(objects, start=1):
        a = obj.attrib
        try:
            zyx.append([float(a["z"]), float(a["y"]), float(a["x"])])
            labels.append(int(float(a.get("class_label", 1))))
            tomo.append(int(float(a.get("tomo_idx", 0))))
            angle = [float(a.get(k, 0.0)) for k in ("phi", "psi", "the")]
        except (KeyError, ValueError) as error:
            raise FileFormatError(
                with_path(p, f"object {number}: missing or bad attribute ({error})")
            ) from None
        has_angles = has_angles or any(k in a for k in ("phi", "psi", "the"))
        angles.append(angle)
    return {
        "zyx": np.asarray(zyx, dtype=np.float64).reshape(-1, 3),
        "class_label": np.asarray(labels, dtype=np.int64),
        "tomo_idx": np.asarray(tomo, dtype=np.int64),
        "angles_deg": np.asarray(angles, dtype=np.float64).reshape(-1, 3) if has_angles else None,
    }


def write_deepfinder_xml(
    path: PathLike,
    zyx: Any,
    *,
    class_label: Any = 1,
    tomo_idx: Any = 0,
    angles_deg: Any | None = None,
) -> Path:
    """Write a DeepFinder object list atomically.

    Parameters
    ----------
    zyx : array, shape (n, 3)
        ``(z, y, x)`` pixels, written as ``x=``, ``y=``, ``z=`` attributes.
    class_label, tomo_idx : int or array of int, shape (n,)
    angles_deg : array, shape (n, 3), optional
        ``(phi, psi, the)`` in degrees; omitted from the file when None.
    """
    out = Path(path)
    pts = _points(zyx, out)
    n = len(pts)
    labels = _labels(class_label, n, out, "class_label")
    tomos = _labels(tomo_idx, n, out, "tomo_idx")
    angles = None
    if angles_deg is not None:
        angles = np.asarray(angles_deg, dtype=np.float64)
        if angles.shape != (n, 3):
            raise MismatchError(
                with_path(out, f"angles_deg has shape {angles.shape}, not ({n}, 3)")
            )
    root = ET.Element("objlist")
    for i in range(n):
        attrib = {
            "tomo_idx": str(int(tomos[i])),
            "class_label": str(int(labels[i])),
            "x": repr(float(pts[i, 2])),
            "y": repr(float(pts[i, 1])),
            "z": repr(float(pts[i, 0])),
        }
        if angles is not None:
            attrib.update(
                phi=repr(float(angles[i, 0])),
                psi=repr(float(angles[i, 1])),
                the=repr(float(angles[i, 2])),
            )
        ET.SubElement(root, "object", attrib)
    ET.indent(root)
    text = ET.tostring(root, encoding="unicode") + "\n"
    return write_text_atomic(out, text)
