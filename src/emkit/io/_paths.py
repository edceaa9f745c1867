"""File-type detection by suffix, and the checks every reader makes before opening a file."""

from __future__ import annotations

import os
from pathlib import Path

from emkit.errors import FileFormatError, MissingFileError, with_path

PathLike = str | os.PathLike[str]

# Longest suffixes first, so ".ome.zarr" wins over ".zarr" and ".mrc.gz" over ".gz".
VOLUME_SUFFIXES: dict[str, str] = {
    ".ome.zarr": "ome-zarr",
    ".ome.tiff": "tiff",
    ".ome.tif": "tiff",
    ".mrc.gz": "mrc",
    ".map.gz": "mrc",
    ".mrcs.gz": "mrc",
    ".mrc": "mrc",
    ".mrcs": "mrc",
    ".st": "mrc",
    ".ali": "mrc",
    ".preali": "mrc",
    ".rec": "mrc",
    ".map": "mrc",
    ".tif": "tiff",
    ".tiff": "tiff",
    ".png": "image",
    ".jpg": "image",
    ".jpeg": "image",
    ".bmp": "image",
    ".zarr": "zarr",
    ".npy": "npy",
}

# Suffixes whose MRC files hold a stack of 2D images (ispg 0) rather than one volume.
MRC_STACK_SUFFIXES = (".mrcs", ".mrcs.gz", ".st", ".ali", ".preali")

# Formats that emkit can write (reading also covers .jpg/.jpeg/.bmp).
WRITABLE_IMAGE_SUFFIXES = (".png",)


def full_suffix(path: PathLike) -> str:
    """The lower-case suffix that decides the format, e.g. ``".ome.zarr"`` or ``".mrc"``."""
    name = Path(path).name.lower()
    for suffix in VOLUME_SUFFIXES:
        if name.endswith(suffix):
            return suffix
    return Path(name).suffix


def volume_format(path: PathLike, *, for_writing: bool = False) -> str:
    """Return ``"mrc"``, ``"tiff"``, ``"image"``, ``"zarr"``, ``"ome-zarr"`` or ``"npy"``.

    Raises
    ------
    FileFormatError
        The suffix is not an image or volume format emkit knows.
    """
    suffix = full_suffix(path)
    kind = VOLUME_SUFFIXES.get(suffix)
    if kind == "image" and for_writing and suffix not in WRITABLE_IMAGE_SUFFIXES:
        kind = None
    if kind is None:
        known = [
            s for s in VOLUME_SUFFIXES if not for_writing or s not in (".jpg", ".jpeg", ".bmp")
        ]
        what = "writes" if for_writing else "reads"
        raise FileFormatError(
            with_path(
                path,
                f"unknown image/volume file type {suffix or '(no suffix)'!r}; emkit {what} "
                f"{', '.join(sorted(known))}",
            )
        )
    return kind


def require_suffix(path: PathLike, suffixes: tuple[str, ...], kind: str) -> str:
    """Return the suffix of ``path``; raise :class:`FileFormatError` unless it is in ``suffixes``.

    ``kind`` names the file type in the message, e.g. ``"mesh"``.
    """
    suffix = full_suffix(path)
    if suffix not in suffixes:
        raise FileFormatError(
            with_path(
                path,
                f"unknown {kind} file type {suffix or '(no suffix)'!r}; emkit reads and "
                f"writes {', '.join(suffixes)}",
            )
        )
    return suffix


def require_exists(path: PathLike) -> Path:
    """Return ``Path(path)``; raise :class:`MissingFileError` naming it when it does not exist."""
    p = Path(path)
    if not p.exists():
        raise MissingFileError(with_path(p, "no such file; check the path"))
    return p
