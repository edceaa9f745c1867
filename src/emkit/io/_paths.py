"""File-type detection by suffix, and the checks every reader makes before opening a file."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from emkit.errors import FileFormatError, MissingFileError, UnreadableFileError, with_path

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


def file_stem(path: PathLike) -> str:
    """The name of ``path`` without the suffix that decides its format.

    Multi-part suffixes count as one: ``ts.mrc.gz`` -> ``ts``, ``vol.ome.zarr`` -> ``vol``.
    """
    name = Path(path).name
    suffix = full_suffix(path)
    return name[: -len(suffix)] if suffix and len(suffix) < len(name) else Path(name).stem


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


def _kind_of_special(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a regular file"


def require_readable_file(path: PathLike, *, folder: bool = False) -> Path:
    """Return ``Path(path)`` once it is sure to be an input emkit can open.

    Checks, without ever blocking (a FIFO is refused before it is opened): the path exists;
    it is a regular file (or, with ``folder=True``, a folder such as a Zarr store); it can
    be opened for reading; a file is not empty.

    Raises
    ------
    MissingFileError
        Nothing at ``path``.
    FileFormatError
        A folder where a file is expected (or a file where a folder is), a FIFO, socket or
        device, or an empty (0-byte) file.
    UnreadableFileError
        No permission to read it.
    """
    p = Path(path)
    try:
        mode = p.stat().st_mode
    except FileNotFoundError:
        raise MissingFileError(with_path(p, "no such file; check the path")) from None
    except PermissionError:
        raise UnreadableFileError(
            with_path(p, "cannot be read (permission denied); check its folder's permissions")
        ) from None
    except OSError as error:  # a loop of links, a name too long, a stale mount
        raise MissingFileError(
            with_path(p, f"cannot be opened ({error.strerror or error}); check the path")
        ) from None
    if folder:
        if not stat.S_ISDIR(mode):
            raise FileFormatError(
                with_path(p, "is a file, but this format is a folder (a Zarr store); check it")
            )
        if not os.access(p, os.R_OK | os.X_OK):
            raise UnreadableFileError(
                with_path(p, "cannot be read (permission denied); check its permissions")
            )
        return p
    if stat.S_ISDIR(mode):
        raise FileFormatError(
            with_path(p, "is a folder, not a file; give the file itself (e.g. one inside it)")
        )
    if not stat.S_ISREG(mode):
        raise FileFormatError(
            with_path(p, f"is {_kind_of_special(mode)}, not a file on disk; give a regular file")
        )
    try:
        with open(p, "rb"):
            pass
    except PermissionError:
        raise UnreadableFileError(
            with_path(p, "cannot be read (permission denied); check its permissions")
        ) from None
    except OSError as error:
        raise FileFormatError(
            with_path(p, f"cannot be opened ({error.strerror or error}); check the file")
        ) from None
    if p.stat().st_size == 0:
        raise FileFormatError(
            with_path(p, "is empty (0 bytes); the export or transfer did not finish: redo it")
        )
    return p


# Enough of a file to tell text from binary without reading a large one whole.
_TEXT_PROBE_BYTES = 1 << 16


def require_text_file(path: PathLike, what: str) -> Path:
    """:func:`require_readable_file`, and refuse binary content (NUL bytes, not UTF-8).

    ``what`` names the expected file in the message, e.g. ``"STAR file"``. Only the first
    64 KiB are looked at.
    """
    import codecs

    p = require_readable_file(path)
    with open(p, "rb") as fh:
        head = fh.read(_TEXT_PROBE_BYTES)
    bad = head.find(b"\0")
    if bad < 0:
        try:
            codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
        except UnicodeDecodeError as error:
            bad = error.start
    if bad >= 0:
        raise FileFormatError(
            with_path(
                p, f"is not a text file (binary data at byte {bad}); give a plain-text {what}"
            )
        )
    return p
