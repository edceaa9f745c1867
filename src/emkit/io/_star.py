"""STAR files through starfile, with RELION 3.1+ particle and coordinate helpers."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

import numpy as np

from emkit.errors import (
    FileFormatError,
    InputError,
    MismatchError,
    NonFiniteError,
    ShapeError,
    with_path,
)
from emkit.io._atomic import atomic_output
from emkit.io._paths import PathLike, require_text_file

logger = logging.getLogger(__name__)

if TYPE_CHECKING:
    import pandas as pd

StarBlock: TypeAlias = "pd.DataFrame | dict[str, Any]"

# RELION writes six decimals; enough for float32 angles and Å shifts.
_FLOAT_FORMAT = "%.6f"


def read_star(path: PathLike) -> dict[str, StarBlock]:
    """Read every data block of a STAR file.

    Returns
    -------
    dict
        Block name without ``data_`` (``""`` for an unnamed ``data_`` block) to a
        ``pandas.DataFrame`` for ``loop_`` blocks, or a ``dict`` for key-value blocks.

    Raises
    ------
    MissingFileError, FileFormatError
    """
    import starfile

    p = require_text_file(path, "STAR file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            blocks = starfile.read(p, always_dict=True)
    except Exception as error:  # starfile/pandas raise many types for a malformed file
        raise FileFormatError(
            with_path(p, f"is not a readable STAR file ({type(error).__name__}: {error})")
        ) from None
    if not blocks:
        raise FileFormatError(with_path(p, "holds no data_ blocks; is this a STAR file?"))
    return dict(blocks)


def write_star(path: PathLike, blocks: Mapping[str, StarBlock] | pd.DataFrame) -> Path:
    """Write data blocks (name -> DataFrame or dict) to a STAR file atomically.

    A single DataFrame is written as one unnamed ``data_`` block. Floats get six decimals
    (RELION's precision).
    """
    import pandas as pd
    import starfile

    out = Path(path)
    data: Any = blocks if isinstance(blocks, pd.DataFrame) else dict(blocks)
    with atomic_output(out) as tmp:
        starfile.write(data, tmp, float_format=_FLOAT_FORMAT)
    return out


def relion_image_names(stack_name: str | PathLike, n: int, *, start: int = 1) -> list[str]:
    """``["000001@stack.mrcs", ...]``: RELION image names (1-based) for ``n`` images of a stack."""
    name = Path(stack_name).as_posix() if not isinstance(stack_name, str) else stack_name
    return [f"{i:06d}@{name}" for i in range(start, start + n)]


def _column(values: Any, n: int, what: str, path: PathLike, width: int | None = None) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    expected: tuple[int, ...] = (n,) if width is None else (n, width)
    if arr.shape != expected:
        raise MismatchError(
            with_path(path, f"{what} has shape {arr.shape}, expected {expected} (one per image)")
        )
    if not np.all(np.isfinite(arr)):
        raise NonFiniteError(with_path(path, f"{what} contains NaN or infinite values"))
    return arr


def write_particles_star(
    path: PathLike,
    *,
    euler_deg: Any,
    shifts_A: Any | None = None,
    image_names: Sequence[str],
    pixel_size_A: float,
    voltage_kV: float = 300.0,
    cs_mm: float = 2.7,
    amplitude_contrast: float = 0.1,
    image_size: int,
    defocus_A: Any | None = None,
    extra_columns: Mapping[str, Any] | None = None,
    optics_group_name: str = "opticsGroup1",
) -> Path:
    """Write a RELION 3.1+ particle STAR file (``data_optics`` + ``data_particles``), atomically.

    Parameters
    ----------
    euler_deg : array, shape (n, 3)
        ZYZ Euler angles ``(rot, tilt, psi)`` in degrees, exactly as RELION's
        ``rlnAngleRot``, ``rlnAngleTilt``, ``rlnAnglePsi`` (see ``emkit.geometry``).
    shifts_A : array, shape (n, 2), optional
        Origin offsets in Å in emkit's ``(y, x)`` order: written to ``rlnOriginYAngst``
        (column 0) and ``rlnOriginXAngst`` (column 1), unchanged in sign (RELION's own
        convention). Zeros when None.
    image_names : sequence of str, length n
        ``"index@stack.mrcs"`` with 1-based index (see :func:`relion_image_names`).
    pixel_size_A : float
        Pixel size of the particle images (``rlnImagePixelSize``).
    voltage_kV, cs_mm, amplitude_contrast : float
        Optics: ``rlnVoltage``, ``rlnSphericalAberration``, ``rlnAmplitudeContrast``.
    image_size : int
        Box size in pixels (``rlnImageSize``).
    defocus_A : array, shape (n,) or (n, 3), optional
        ``rlnDefocusU`` (and ``rlnDefocusV``, ``rlnDefocusAngle`` in degrees when (n, 3));
        a 1D array means astigmatism-free (DefocusV = DefocusU, angle 0).
    extra_columns : mapping, optional
        More ``rln...`` particle columns (name -> length-n sequence).
    """
    import pandas as pd

    out = Path(path)
    n = len(image_names)
    euler = _column(euler_deg, n, "euler_deg", out, 3)
    shifts = np.zeros((n, 2)) if shifts_A is None else _column(shifts_A, n, "shifts_A", out, 2)
    if not (np.isfinite(pixel_size_A) and pixel_size_A > 0):
        raise InputError(with_path(out, f"pixel_size_A must be positive, got {pixel_size_A}"))
    optics = pd.DataFrame(
        {
            "rlnOpticsGroupName": [optics_group_name],
            "rlnOpticsGroup": [1],
            "rlnMicrographOriginalPixelSize": [float(pixel_size_A)],
            "rlnVoltage": [float(voltage_kV)],
            "rlnSphericalAberration": [float(cs_mm)],
            "rlnAmplitudeContrast": [float(amplitude_contrast)],
            "rlnImagePixelSize": [float(pixel_size_A)],
            "rlnImageSize": [int(image_size)],
            "rlnImageDimensionality": [2],
        }
    )
    columns: dict[str, Any] = {
        "rlnImageName": [str(s) for s in image_names],
        "rlnAngleRot": euler[:, 0],
        "rlnAngleTilt": euler[:, 1],
        "rlnAnglePsi": euler[:, 2],
        "rlnOriginXAngst": shifts[:, 1],
        "rlnOriginYAngst": shifts[:, 0],
    }
    if defocus_A is not None:
        defocus = np.asarray(defocus_A, dtype=np.float64)
        if defocus.ndim == 1:
            defocus = np.stack([defocus, defocus, np.zeros_like(defocus)], axis=1)
        defocus = _column(defocus, n, "defocus_A", out, 3)
        columns["rlnDefocusU"] = defocus[:, 0]
        columns["rlnDefocusV"] = defocus[:, 1]
        columns["rlnDefocusAngle"] = defocus[:, 2]
    columns["rlnOpticsGroup"] = np.ones(n, dtype=np.int64)
    for name, values in (extra_columns or {}).items():
        values = list(values)
        if len(values) != n:
            raise MismatchError(with_path(out, f"column {name} has {len(values)} values, not {n}"))
        columns[name] = values
    return write_star(out, {"optics": optics, "particles": pd.DataFrame(columns)})


def _find_block(blocks: Mapping[str, StarBlock], column: str) -> tuple[str, pd.DataFrame] | None:
    import pandas as pd

    for name, block in blocks.items():
        if isinstance(block, pd.DataFrame) and column in block.columns:
            return name, block
        if isinstance(block, dict) and column in block:
            return name, pd.DataFrame({k: [v] for k, v in block.items()})
    return None


def _pixel_size_relion30(df: pd.DataFrame) -> float | None:
    if "rlnImagePixelSize" in df.columns:
        return float(df["rlnImagePixelSize"].iloc[0])
    if "rlnDetectorPixelSize" in df.columns and "rlnMagnification" in df.columns:
        # RELION 3.0: detector pixel in µm, nominal magnification.
        return (
            float(df["rlnDetectorPixelSize"].iloc[0]) * 1e4 / float(df["rlnMagnification"].iloc[0])
        )
    return None


def read_particles_star(path: PathLike, *, pixel_size_A: float | None = None) -> dict[str, Any]:
    """Read particle orientations, shifts and image names from a RELION STAR file.

    Accepts RELION 3.1+ files (``data_optics`` + ``data_particles``, shifts in Å) and
    RELION 3.0 single-block files (``rlnOriginX``/``rlnOriginY`` in pixels, converted to Å
    with ``pixel_size_A`` or the file's ``rlnDetectorPixelSize``/``rlnMagnification``).

    Returns
    -------
    dict
        ``euler_deg`` (n, 3) float64 ``(rot, tilt, psi)`` (zeros for missing columns);
        ``shifts_A`` (n, 2) float64 ``(y, x)`` Å (see :func:`write_particles_star`);
        ``image_names`` list of str (None if absent); ``pixel_size_A`` float or None;
        ``voltage_kV``, ``cs_mm``, ``amplitude_contrast``, ``image_size`` (or None);
        ``optics_group`` (n,) int; ``particles`` and ``optics`` DataFrames (all columns;
        ``optics`` None for RELION 3.0).

    Raises
    ------
    MissingFileError, FileFormatError
        No particle block, or pixel shifts without a known pixel size.
    """
    import pandas as pd

    p = Path(path)
    blocks = read_star(p)
    found = None
    for marker in ("rlnImageName", "rlnAngleRot", "rlnCoordinateX"):
        found = _find_block(blocks, marker)
        if found is not None:
            break
    if found is None:
        raise FileFormatError(
            with_path(p, "has no particle block (no rlnImageName/rlnAngleRot columns)")
        )
    _, particles = found
    optics = blocks.get("optics")
    optics_df = optics if isinstance(optics, pd.DataFrame) else None
    n = len(particles)

    def col(name: str, default: float = 0.0) -> np.ndarray:
        if name in particles.columns:
            return particles[name].to_numpy(dtype=np.float64)
        return np.full(n, default)

    euler = np.stack([col("rlnAngleRot"), col("rlnAngleTilt"), col("rlnAnglePsi")], axis=1)
    group = (
        particles["rlnOpticsGroup"].to_numpy(dtype=np.int64)
        if ("rlnOpticsGroup" in particles.columns)
        else np.ones(n, dtype=np.int64)
    )
    optics_values: dict[str, Any] = {
        "voltage_kV": None,
        "cs_mm": None,
        "amplitude_contrast": None,
        "image_size": None,
    }
    source = optics_df if optics_df is not None else particles
    for key, name in (
        ("voltage_kV", "rlnVoltage"),
        ("cs_mm", "rlnSphericalAberration"),
        ("amplitude_contrast", "rlnAmplitudeContrast"),
        ("image_size", "rlnImageSize"),
    ):
        if name in source.columns and len(source):
            value = source[name].iloc[0]
            optics_values[key] = int(value) if key == "image_size" else float(value)
    file_pixel: float | None = None
    if optics_df is not None and "rlnImagePixelSize" in optics_df.columns:
        sizes = optics_df["rlnImagePixelSize"].to_numpy(dtype=np.float64)
        file_pixel = float(sizes[0])
        if np.ptp(sizes) > 0:
            logger.warning("%s: optics groups differ in pixel size; reporting group 1's", p)
    elif optics_df is None:
        file_pixel = _pixel_size_relion30(particles)
    pixel = pixel_size_A if pixel_size_A is not None else file_pixel
    if "rlnOriginXAngst" in particles.columns or "rlnOriginYAngst" in particles.columns:
        shifts = np.stack([col("rlnOriginYAngst"), col("rlnOriginXAngst")], axis=1)
    elif "rlnOriginX" in particles.columns or "rlnOriginY" in particles.columns:
        if pixel is None:
            raise FileFormatError(
                with_path(
                    p, "gives shifts in pixels (rlnOriginX/Y) but no pixel size; pass pixel_size_A"
                )
            )
        shifts = np.stack([col("rlnOriginY"), col("rlnOriginX")], axis=1) * pixel
    else:
        shifts = np.zeros((n, 2))
    names = (
        [str(s) for s in particles["rlnImageName"]] if "rlnImageName" in particles.columns else None
    )
    return {
        "euler_deg": euler,
        "shifts_A": shifts,
        "image_names": names,
        "pixel_size_A": pixel,
        **optics_values,
        "optics_group": group,
        "particles": particles,
        "optics": optics_df,
    }


def write_coordinates_star(
    path: PathLike, zyx: Any, *, classes: Any | None = None, block: str = ""
) -> Path:
    """Write particle coordinates as RELION ``rlnCoordinateX/Y/Z`` (pixels), atomically.

    Parameters
    ----------
    zyx : array, shape (n, 3) or (n, 2)
        Coordinates in pixels, ``(z, y, x)`` (or ``(y, x)`` for micrographs, written without
        ``rlnCoordinateZ``).
    classes : array, shape (n,), optional
        Integer class per particle, written as ``rlnClassNumber``.
    block : str
        Data block name (default: an unnamed ``data_`` block, as RELION pickers write).
    """
    import pandas as pd

    out = Path(path)
    pts = np.asarray(zyx, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] not in (2, 3):
        raise ShapeError(with_path(out, f"coordinates must have shape (n, 3) zyx, got {pts.shape}"))
    columns: dict[str, Any] = {"rlnCoordinateX": pts[:, -1], "rlnCoordinateY": pts[:, -2]}
    if pts.shape[1] == 3:
        columns["rlnCoordinateZ"] = pts[:, 0]
    if classes is not None:
        cls = np.asarray(classes)
        if cls.shape != (len(pts),):
            raise MismatchError(
                with_path(out, f"{cls.shape[0] if cls.ndim else 1} classes for {len(pts)} points")
            )
        columns["rlnClassNumber"] = cls.astype(np.int64)
    df = pd.DataFrame(columns)
    return write_star(out, {block: df} if block else df)


def read_coordinates_star(path: PathLike) -> tuple[np.ndarray, np.ndarray | None]:
    """Read ``rlnCoordinateX/Y/Z`` (pixels) from the first block that has them.

    Returns
    -------
    zyx : ndarray, float64, shape (n, 3)
        ``(z, y, x)`` pixels; z is 0 when the file has no ``rlnCoordinateZ``.
    classes : ndarray of int64, shape (n,), or None
        ``rlnClassNumber`` when present.
    """
    p = Path(path)
    found = _find_block(read_star(p), "rlnCoordinateX")
    if found is None:
        raise FileFormatError(with_path(p, "has no rlnCoordinateX column; not a coordinate file"))
    _, df = found
    n = len(df)
    x = df["rlnCoordinateX"].to_numpy(dtype=np.float64)
    y = df["rlnCoordinateY"].to_numpy(dtype=np.float64) if "rlnCoordinateY" in df else np.zeros(n)
    z = df["rlnCoordinateZ"].to_numpy(dtype=np.float64) if "rlnCoordinateZ" in df else np.zeros(n)
    classes = df["rlnClassNumber"].to_numpy(dtype=np.int64) if "rlnClassNumber" in df else None
    return np.stack([z, y, x], axis=1), classes
