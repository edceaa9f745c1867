"""Section files in, checked arrays out: the validation steps of the register commands.

Every problem is refused before the work, as one line that names the file and the fix.
The memory check is passed in by the caller (the CLI owns how much memory is available).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

MemoryCheck = Callable[[float, str, str], None]
"""``require_memory(n_bytes, what, hint)``: raises when ``n_bytes`` are not available."""

IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".mrc", ".jpg", ".jpeg", ".bmp", ".npy")


def no_memory_check(n_bytes: float, what: str, hint: str) -> None:
    """The default :data:`MemoryCheck`: refuse nothing."""


def read_section(path: Path, what: str) -> Any:
    """Read one 2D section (a single-image stack is accepted) as a Volume."""
    from emkit.io import read_volume, require_finite, require_ndim

    volume = read_volume(path)
    data = volume.data
    if data.ndim == 3 and data.shape[0] == 1:
        data = data[0]
    require_ndim(data, 2, path, f"{what} image (y, x)")
    require_finite(data, path, f"{what} image")
    volume.data = np.asarray(data)
    return volume


def read_defect_mask(path: Path, shape: tuple[int, ...], moving_path: Path) -> np.ndarray:
    """The defect mask (nonzero = defect) of the image ``moving_path``, as booleans."""
    from emkit.errors import InputError, MismatchError, with_path

    mask = read_section(path, "defect mask").data
    if mask.shape != shape:
        raise MismatchError(
            with_path(
                path,
                f"defect mask is {mask.shape[0]}x{mask.shape[1]} but {moving_path.name} is "
                f"{shape[0]}x{shape[1]}; give the mask of the moving image",
            )
        )
    mask = mask != 0
    if mask.all():
        raise InputError(
            with_path(path, "the defect mask covers the whole image; mark only the fold/crack")
        )
    return mask


def check_fill(fill: float, dtype: np.dtype, path: Path) -> None:
    """--fill must be a value the warped image can hold (it is written in the input dtype)."""
    from emkit.errors import InputError, with_path

    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        if not (info.min <= fill <= info.max and float(fill).is_integer()):
            raise InputError(
                with_path(
                    path,
                    f"--fill {fill:g} does not fit its {dtype} pixels; give a "
                    f"whole number from {info.min} to {info.max}",
                )
            )


def require_registration_memory(
    require_memory: MemoryCheck,
    shape: tuple[int, ...],
    n_sections: int,
    n_workers: int,
    where: Path,
) -> None:
    """Refuse, before the work, sections too large to register in the memory available.

    Measured: one pair takes about 150 bytes per pixel at its peak (features, clusters,
    fields, warped image); a stack also keeps every section, field and mask.
    """
    pixels = int(np.prod(shape))
    need = 200 * pixels * max(1, n_workers) + (24 * pixels * n_sections if n_sections > 2 else 0)
    require_memory(
        need,
        f"registering {n_sections} sections of {shape[0]}x{shape[1]} px from {where}",
        "crop or bin the sections" + (", or use fewer --workers" if n_workers > 1 else ""),
    )


def require_section_memory(
    require_memory: MemoryCheck, shape: tuple[int, ...], source: str, hint: str
) -> None:
    """The damaged-section simulation peaks at about 160 bytes per pixel (measured)."""
    h, w = shape[0], shape[1]
    require_memory(160 * h * w, f"simulating a {h}x{w} px section ({source})", hint)


def check_pair_outputs_writable(
    image: Path, field: Path | None, metrics: Path, overlay: Path
) -> None:
    """Refuse, before any work, outputs that could not be written: a run writes all of
    them or none."""
    from emkit.errors import FileFormatError, OutputExistsError, with_path
    from emkit.io import volume_format

    image_is_folder = volume_format(image, for_writing=True) in ("zarr", "ome-zarr")
    if field is not None and field.suffix.lower() != ".npy":
        # np.save would append .npy to any other name.
        raise FileFormatError(with_path(field, "the field is a NumPy file; give a .npy name"))
    for path in (None if image_is_folder else image, field, metrics, overlay):
        if path is not None and path.is_dir():
            raise OutputExistsError(
                with_path(path, "is a folder; give a file name for this output")
            )


def read_true_field(path: Path, shape: tuple[int, ...]) -> np.ndarray:
    """A known displacement field ``(2, H, W)`` float32 (dy, dx) for images of ``shape``."""
    from emkit.errors import FileFormatError, MismatchError, with_path
    from emkit.io import read_volume

    data = read_volume(path).data
    if data.shape != (2, *shape):
        raise MismatchError(
            with_path(
                path,
                f"field has shape {data.shape}; expected (2, {shape[0]}, {shape[1]}) for "
                "these images",
            )
        )
    if not np.issubdtype(data.dtype, np.floating):
        raise FileFormatError(with_path(path, "field must be a float array (dy, dx) in pixels"))
    return np.asarray(data, dtype=np.float32)


def file_suffix(path: Path) -> str:
    """The suffix of ``path``, lower case."""
    return path.suffix.lower()


def list_sections(folder: Path) -> list[Path]:
    """The section images in ``folder``, sorted by name (hidden files left out)."""
    files = sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and file_suffix(p) in IMAGE_SUFFIXES
    )
    return files


def is_section_folder(path: Path) -> bool:
    """A folder of section images (a Zarr store is a folder too, but one stack)."""
    return path.is_dir() and not path.name.lower().endswith(".zarr")


def write_json(path: Path, payload: Any) -> None:
    """Write ``payload`` as indented JSON (numpy values as plain numbers), atomically."""
    from emkit.io import atomic_output

    with atomic_output(path) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, default=_json_default) + "\n")


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return str(value)
