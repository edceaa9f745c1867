"""Tilt-series files in, checked arrays out: the validation steps of the tomo commands.

Every problem is refused before the work, as one line that names the file and the fix.
Memory and device checks are passed in by the caller (the CLI owns how much memory is
available and which devices count), so the library itself never refuses on a guess.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from emkit.io._paths import file_stem

logger = logging.getLogger(__name__)

MemoryCheck = Callable[[float, str, str], None]
"""``require_memory(n_bytes, what, hint)``: raises when ``n_bytes`` are not available."""

DeviceCheck = Callable[[str | None], None]
"""``check_device(name)``: raises when the torch device ``name`` is not there."""


def no_memory_check(n_bytes: float, what: str, hint: str) -> None:
    """The default :data:`MemoryCheck`: refuse nothing."""


def no_device_check(name: str | None) -> None:
    """The default :data:`DeviceCheck`: refuse nothing."""


@dataclass
class TiltSeriesFile:
    """A tilt series read from disk and checked: images ``(n, y, x)`` and angles (deg)."""

    path: Path
    angles_path: Path
    stack: np.ndarray
    angles: np.ndarray
    pixel_size_A: float
    stem: str
    contrast: str = "unclear"
    header: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TiltSeriesSource:
    """Where a tilt series is and how to read it (the inputs every tomo command shares).

    ``angles`` (``.tlt`` or ``.mdoc``) defaults to the ``.tlt`` beside ``tilts`` (see
    :func:`read_tilt_series`), ``pixel_size_A`` to the header; ``tilt_axis`` is the
    in-plane axis angle of the raw images (degrees), ``"auto"`` or None (not given: 0, or
    the rotation of an ``.xf``/``.aln``);
    ``invert`` negates the images (dark specimen on bright); ``log`` takes the
    Beer-Lambert projection ``-ln(I / I0)`` of bright-field intensities.
    """

    tilts: Path
    angles: Path | None = None
    pixel_size_A: float | None = None
    tilt_axis: float | str | None = None
    invert: bool = False
    log: bool = False

    def read(self) -> TiltSeriesFile:
        """Read and check the series (:func:`read_tilt_series`)."""
        return read_tilt_series(
            self.tilts, self.angles, pixel_size_A=self.pixel_size_A, invert=self.invert,
            log=self.log,
        )


# I0 of the Beer-Lambert log: this percentile of the whole stack (the bright background,
# robust to a few hot pixels). A per-image I0 only adds a constant per projection, which
# the alignment and reconstruction remove anyway (see emkit.tomo.projection_background).
_LOG_I0_PERCENTILE = 99.9


def require_positive_for_log(smallest: float, path: Path) -> None:
    """Refuse (one line naming ``path``) a ``--log`` of data whose ``smallest`` value is not
    positive: a log of an offset or signed stack is meaningless."""
    from emkit.errors import InputError, with_path

    if not smallest > 0:
        raise InputError(
            with_path(path, f"--log needs positive intensities but the smallest value is "
                      f"{smallest:g}; remove the offset first (e.g. add 32768 to unsigned "
                      "counts stored as int16) or use --invert")
        )


def beer_lambert(stack: np.ndarray, path: Path) -> np.ndarray:
    """``-ln(I / I0)``: bright-field intensities to projections of density (float32).

    ``I0`` is the 99.9th percentile of the stack. Refuses (one line naming ``path``)
    intensities that are not all positive: a log of an offset or signed stack is meaningless.
    """
    require_positive_for_log(float(stack.min()), path)
    i0 = float(np.percentile(stack, _LOG_I0_PERCENTILE))
    return (-np.log(stack.astype(np.float64) / i0)).astype(np.float32)


def _contrast_advice(contrast: str, path: Path, *, invert: bool, log: bool) -> None:
    """Warn when the images look the other way round from what the options say."""
    dense_bright = contrast == "bright-on-dark"
    if contrast == "dark-on-bright" and not (invert or log):
        logger.warning("%s: the images look like a dark specimen on a bright background "
                       "(TEM bright field); emkit expects dense = bright: pass --log "
                       "(Beer-Lambert) or --invert", path)
    elif dense_bright and (invert or log):
        logger.warning("%s: the images look like a bright specimen on a dark background "
                       "(HAADF); --%s makes dense regions dark", path,
                       "log" if log else "invert")


def _mdoc_beside(tilts: Path) -> Path:
    """SerialEM's name for a stack's autodoc: ``TS_01.mrc`` -> ``TS_01.mrc.mdoc``."""
    return tilts.with_name(tilts.name + ".mdoc")


def _mdoc_angles(path: Path) -> tuple[np.ndarray, float | None]:
    """Tilt angles (stack order) and pixel size (Å) of a SerialEM .mdoc; its tilt axis
    angle is logged as SerialEM wrote it (SerialEM's calibration, not used by emkit)."""
    from emkit.io import read_mdoc_tilt_angles

    mdoc = read_mdoc_tilt_angles(path)
    if mdoc.tilt_axis_deg is not None:
        logger.info("%s: SerialEM's tilt axis angle %g deg (as written; emkit uses "
                    "--tilt-axis)", path, mdoc.tilt_axis_deg)
    return mdoc.tilt_angles_deg, mdoc.pixel_size_A


def _header_angles(volume: object, tilts: Path, angles_path: Path) -> np.ndarray:
    """Tilt angles from the MRC extended header, when no .tlt is beside the stack."""
    from emkit.errors import InputError, with_path

    header = getattr(volume, "metadata", {}) or {}
    angles = header.get("extended_header_tilt_angles_deg")
    if angles is None or np.ptp(np.asarray(angles, dtype=float)) == 0:
        raise InputError(
            with_path(tilts, f"no tilt angles: {angles_path.name} does not exist and the "
                      "header holds none; give --angles FILE.tlt")
        )
    logger.warning("%s: no %s; using the %d tilt angles of the %s extended header", tilts,
                   angles_path.name, len(angles), header.get("extended_header_type"))
    return np.asarray(angles, dtype=np.float64)


def read_tilt_series(
    tilts: Path,
    angles: Path | None = None,
    *,
    pixel_size_A: float | None = None,
    invert: bool = False,
    log: bool = False,
) -> TiltSeriesFile:
    """Read and check the stack and its angles; every problem is one line naming the file.

    ``angles`` (an IMOD ``.tlt`` or a SerialEM ``.mdoc``) defaults to the ``.tlt`` beside
    ``tilts``, then to SerialEM's ``<stack>.mdoc``, then to the tilt angles of an
    FEI/SerialEM extended header; ``pixel_size_A`` to the header (then the ``.mdoc``).
    ``invert`` negates the images, ``log`` takes ``-ln(I / I0)`` (:func:`beer_lambert`);
    never both. The contrast (:func:`emkit.io.image_contrast`) is measured on the stack as
    stored and a warning says when it disagrees with the options.
    """
    from emkit.io import require_finite
    from emkit.tomo._prealign import check_tilt_series

    series = open_tilt_series(
        tilts, angles, pixel_size_A=pixel_size_A, invert=invert, log=log, mmap=False
    )
    require_finite(series.stack, tilts, "tilt series")
    stack, _ = check_tilt_series(series.stack, series.angles, path=tilts)
    if log:
        stack = beer_lambert(stack, tilts)
    if invert:
        stack = -stack
    series.stack = stack
    return series


def open_tilt_series(
    tilts: Path,
    angles: Path | None = None,
    *,
    pixel_size_A: float | None = None,
    invert: bool = False,
    log: bool = False,
    mmap: bool = True,
) -> TiltSeriesFile:
    """The checks of :func:`read_tilt_series` that need no pass over the data.

    With ``mmap`` the ``stack`` is the file's data as stored, memory-mapped (nothing is
    read but the header and the images the contrast is measured on; ``invert``/``log``
    are not applied), for the streamed reconstruction, which checks each image as it
    reads it.
    """
    from emkit.errors import InputError, MismatchError, ShapeError, with_path
    from emkit.io import image_contrast, read_tlt, read_volume
    from emkit.tomo._prealign import check_tilt_series

    if invert and log:
        raise InputError("give --log or --invert, not both: --log already makes dense "
                         "regions bright")
    angles_path = angles if angles is not None else tilts.with_suffix(".tlt")
    volume = read_volume(tilts, mmap=mmap)
    data = volume.data if mmap else np.asarray(volume.data)
    if data.ndim != 3:
        raise ShapeError(
            with_path(tilts, f"is a {data.ndim}D array of shape {data.shape}; a tilt "
                      "series is a stack of images (n, y, x)")
        )
    mdoc_pixel_A = None
    if angles is None and not angles_path.exists() and _mdoc_beside(tilts).is_file():
        logger.warning("%s: no %s; using the TiltAngle of each image in %s", tilts,
                       angles_path.name, _mdoc_beside(tilts).name)
        angles_path = _mdoc_beside(tilts)
    if angles_path.suffix.lower() == ".mdoc":
        tilt_angles, mdoc_pixel_A = _mdoc_angles(angles_path)
    elif angles is None and not angles_path.exists():
        tilt_angles = _header_angles(volume, tilts, angles_path)
        angles_path = tilts
    else:
        tilt_angles = read_tlt(angles_path)
    if len(tilt_angles) != data.shape[0]:
        raise MismatchError(
            with_path(angles_path, f"{len(tilt_angles)} tilt angles but {tilts.name} has "
                      f"{data.shape[0]} images; give one angle per image")
        )
    if data.shape[0] < 3:
        raise InputError(
            with_path(tilts, f"has only {data.shape[0]} images; alignment and "
                      "reconstruction need at least 3 tilts")
        )
    contrast = image_contrast(data)
    _contrast_advice(contrast, tilts, invert=invert, log=log)
    # The shape and angle checks, on a one-row view (the images are checked when read).
    _, tilt_angles = check_tilt_series(
        np.zeros((len(data), 8, 8), np.float32), tilt_angles, path=tilts
    )
    if min(data.shape[1:]) < 8:
        raise ShapeError(with_path(tilts, f"images of {data.shape[1:]} pixels are too small"))
    pixel = pixel_size_A if pixel_size_A is not None else volume.pixel_size
    if (pixel is None or not pixel > 0) and mdoc_pixel_A is not None:
        logger.warning("%s: no pixel size in the header; using the %s's PixelSpacing, %g Å",
                       tilts, angles_path.name, mdoc_pixel_A)
        pixel = mdoc_pixel_A
    if pixel is None or not pixel > 0:
        logger.warning("%s: no pixel size in the header; using 1 Å (give --pixel-size)", tilts)
        pixel = 1.0
    return TiltSeriesFile(
        tilts, angles_path, data, tilt_angles, float(pixel), file_stem(tilts),
        contrast=contrast, header=dict(volume.metadata),
    )


def input_record(series: TiltSeriesFile) -> dict[str, object]:
    """What the run record says about the input: contrast and anything odd in its header."""
    return {
        "contrast": series.contrast,
        "header_oddities": list(series.header.get("oddities", [])),
        "pixel_size_A": series.pixel_size_A,
    }


def parse_tilt_axis(value: float | str | None) -> float | str:
    """A tilt-axis angle in degrees, or ``"auto"`` (estimate it); None (not given) is 0."""
    from emkit.errors import InputError

    if value is None:
        return 0.0
    if str(value).lower() == "auto":
        return "auto"
    try:
        return float(value)
    except ValueError:
        raise InputError(
            f"--tilt-axis must be an angle in degrees or 'auto', got {value!r}"
        ) from None


def alignment_outputs(out_dir: Path, stem: str, inputs: list[Path | None]) -> dict[str, Path]:
    """Make the output folder; the .xf, aligned stack and tomogram paths inside it."""
    from emkit.io import check_not_input, make_output_folder

    make_output_folder(out_dir)

    paths = {
        "xf": out_dir / f"{stem}.xf",
        "aligned": out_dir / f"{stem}_ali.mrc",
        "tomogram": out_dir / f"{stem}_rec.mrc",
    }
    for p in paths.values():
        check_not_input(p, inputs)
    return paths


def write_alignment(
    paths: dict[str, Path],
    series: TiltSeriesFile,
    shifts: np.ndarray,
    axis_deg: float,
    *,
    fill: str = "mean",
) -> None:
    """Write the aligned stack and the IMOD transforms that align the raw images.

    ``fill`` is what the aligned images hold where no raw pixel lands: each image's mean
    (``"mean"``, as IMOD's newstack) or ``"zero"``.
    """
    from emkit.errors import InputError
    from emkit.io import write_volume, write_xf
    from emkit.tomo._transform import transform_images
    from emkit.tomo._xf import xf_from_alignment

    if fill not in ("mean", "zero"):
        raise InputError(f"fill must be 'mean' or 'zero', got {fill!r}")
    aligned = transform_images(
        series.stack, shifts, tilt_axis_angle_deg=axis_deg, fill="mean" if fill == "mean" else 0.0
    )
    write_volume(paths["aligned"], aligned, voxel_size=series.pixel_size_A, stack=True)
    write_xf(paths["xf"], xf_from_alignment(shifts, axis_deg))


def read_mask_stack(path: Path, shape: tuple[int, ...]) -> np.ndarray:
    """A boolean mask stack of ``shape`` (nonzero = use the pixel), no empty image."""
    from emkit.errors import InputError, MismatchError, with_path
    from emkit.io import read_volume, require_finite

    mask = np.asarray(read_volume(path).data)
    # NaN != 0 is True: an all-NaN mask would silently count as "use every pixel".
    require_finite(mask, path, "mask")
    if mask.shape != shape:
        raise MismatchError(
            with_path(path, f"mask has shape {mask.shape} but the tilt series is {shape}; "
                      "give one mask image per tilt image")
        )
    mask = mask != 0
    if not mask.any(axis=(1, 2)).all():
        raise InputError(with_path(path, "some mask images are empty; every image needs "
                                   "pixels to use"))
    return mask


def check_alignment_options(
    tilt_axis: float | str | None, *, xf: Path | None = None, aln: Path | None = None
) -> None:
    """Refuse a conflicting pair: an alignment file already holds the tilt-axis rotation."""
    from emkit.errors import InputError

    if xf is not None and aln is not None:
        raise InputError("give either --xf or --aln, not both")
    given = "--xf" if xf is not None else "--aln" if aln is not None else None
    if given is not None and tilt_axis is not None:
        raise InputError(
            f"--tilt-axis cannot be combined with {given}: the alignment file already "
            f"holds the rotation; drop --tilt-axis (or {given})"
        )


# Rotations of one series' transforms may differ by rounding in the file, not more.
_AXIS_SPREAD_DEG = 0.05


def read_alignment(
    series: TiltSeriesFile, *, xf: Path | None = None, aln: Path | None = None
) -> tuple[np.ndarray, float] | None:
    """Shifts ``(n, 2)`` and the one tilt-axis angle (deg) of an IMOD .xf or AreTomo .aln.

    None for neither. Refuses transforms that rotate images by different angles (emkit
    reconstructs with one tilt axis for the whole series).
    """
    from emkit.errors import InputError, MismatchError, with_path
    from emkit.io import read_aln, read_xf
    from emkit.tomo._xf import alignment_from_xf, shifts_from_aln

    check_alignment_options(None, xf=xf, aln=aln)
    if xf is not None:
        transforms = read_xf(xf)
        if len(transforms) != len(series.angles):
            raise MismatchError(
                with_path(xf, f"{len(transforms)} transforms but {series.path.name} has "
                          f"{len(series.angles)} images; give one line per image")
            )
        shifts, axes = alignment_from_xf(transforms, path=xf)
        path = xf
    elif aln is not None:
        shifts, axes = shifts_from_aln(read_aln(aln), len(series.angles), path=aln)
        path = aln
    else:
        return None
    axis_values = np.atleast_1d(np.asarray(axes, dtype=np.float64))
    if np.ptp(axis_values) > _AXIS_SPREAD_DEG:
        raise InputError(
            with_path(path, f"the transforms rotate images by {axis_values.min():.2f} to "
                      f"{axis_values.max():.2f} deg; emkit needs one tilt-axis angle for "
                      "the whole series")
        )
    return np.asarray(shifts, dtype=np.float64), float(axis_values.mean())


def thickness_px(thickness: int | None, series: TiltSeriesFile) -> int:
    """The tomogram thickness in unbinned pixels (default: a quarter of the image width)."""
    from emkit.errors import InputError

    value = thickness if thickness else max(1, series.stack.shape[2] // 4)
    if value < 1:
        raise InputError(f"--thickness must be a positive number of pixels, got {value}")
    return int(value)


def check_binning(option: str, binnings: list[int], series: TiltSeriesFile) -> None:
    """Binned images must keep at least 8 px a side (as check_tilt_series asks)."""
    from emkit.errors import InputError, with_path

    ny, nx = series.stack.shape[1:]
    largest = max(1, min(ny, nx) // 8)
    if max(binnings) > largest:
        raise InputError(
            with_path(series.path, f"images of {ny}x{nx} px binned by {option} "
                      f"{max(binnings)} would be smaller than 8 px; give {option} <= {largest}")
        )


def require_prealign_memory(series: TiltSeriesFile, require_memory: MemoryCheck) -> None:
    """Pre-alignment holds a few float32 copies of the stack (binned, tapered, aligned)."""
    n, ny, nx = series.stack.shape
    require_memory(
        4 * 8 * n * ny * nx,
        f"pre-aligning {n} images of {ny}x{nx} px from {series.path.name}",
        "crop or bin the tilt series first (e.g. IMOD newstack -bin 2)",
    )


def require_tomo_memory(
    series: TiltSeriesFile,
    require_memory: MemoryCheck,
    *,
    thickness: int,
    binning: int,
    n_volumes: int,
    rows: int | None = None,
) -> None:
    """Refuse, before the work, a tomogram (and projector matrix) that cannot fit in memory.

    Measured on CPU: the sparse matrix ``A`` and ``A.T`` with their construction take about
    48 bytes per (tilt x z x x); ``n_volumes`` float32 tomogram-sized arrays (3 for WBP,
    up to 12 for joint alignment) and three copies of the stack come on top.
    """
    n, ny, nx = series.stack.shape
    nz, nyb, nxb = thickness // binning, ny // binning, nx // binning
    nyb = nyb if rows is None else rows
    need = 48 * n * nz * nxb + 4 * (n_volumes * nz * nyb * nxb + 3 * n * ny * nx)
    require_memory(
        need,
        f"a {nz} x {nyb} x {nxb} tomogram of {series.path.name}",
        "use a larger --bin or a smaller --thickness",
    )
