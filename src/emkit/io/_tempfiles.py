"""Temporary names, stale-temp clean-up, folder locks, free space and emkit's folder marker.

The low-level pieces of the output-safety layer (:mod:`emkit.io._atomic` and
:mod:`emkit.io._transaction` build on them):

- a temporary output is named ``.emkit-part-<host>-<pid>-<random>-<final name>`` beside its
  target, so it keeps the target's suffix (libraries pick the format by it), never collides
  with another run's, and says which process wrote it;
- :func:`remove_stale_temps` deletes such names whose process on this host is gone (a run
  killed with SIGKILL, a power cut), so a dead run does not keep a disk full;
- :func:`folder_lock` serialises the final renames of concurrent runs into one folder;
- :func:`require_free_space` refuses a large write up front, with the numbers;
- a folder emkit created for its outputs holds the marker file :data:`MARKER_NAME`, which is
  what allows a later run to write into, or replace, that folder.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import re
import secrets
import shutil
import socket
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from emkit import __version__
from emkit.errors import DiskFullError, OutputExistsError, with_path

MARKER_NAME = ".emkit"
"""Name of the marker file in a folder that emkit created for its outputs."""

# The longest file name most file systems take is 255 bytes; the temporary name adds ~36.
MAX_OUTPUT_NAME_BYTES = 215

_HOST = hashlib.sha1(socket.gethostname().encode()).hexdigest()[:6]
_TEMP_PATTERN = re.compile(r"^\.emkit-part-([0-9a-f]{6})-(\d+)-[0-9a-f]{8}-")
_DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
_SHORT_WRITE = re.compile(r"\d+ requested and \d+ written")


def temp_name(final: Path) -> Path:
    """A unique temporary path beside ``final`` that ends like it (see module docstring)."""
    require_name_length(final)
    token = secrets.token_hex(4)
    return final.with_name(f".emkit-part-{_HOST}-{os.getpid()}-{token}-{final.name}")


def require_name_length(path: Path) -> None:
    """Refuse an output name too long for the file system once the temporary prefix is added."""
    size = len(path.name.encode("utf-8", "surrogateescape"))
    if size > MAX_OUTPUT_NAME_BYTES:
        raise OutputExistsError(
            with_path(
                path.name[:40] + "...",
                f"output file name is {size} bytes long; emkit takes at most "
                f"{MAX_OUTPUT_NAME_BYTES}: choose a shorter name",
            )
        )


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def remove_stale_temps(folder: Path) -> list[Path]:
    """Delete temporary outputs in ``folder`` left by dead emkit processes of this host.

    Returns the paths removed. Temporary names of live processes, of other hosts (a shared
    file system) and every other file are left alone.
    """
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        match = _TEMP_PATTERN.match(entry.name)
        if match is None or match.group(1) != _HOST or _pid_alive(int(match.group(2))):
            continue
        path = Path(entry.path)
        remove_path(path)
        removed.append(path)
    return removed


def remove_path(path: Path) -> None:
    """Remove a file or a folder tree; a path already gone is not an error."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


@contextlib.contextmanager
def folder_lock(folders: Iterable[Path]) -> Iterator[None]:
    """Hold an exclusive ``flock`` on each folder (sorted, so two runs cannot deadlock)."""
    fds: list[int] = []
    try:
        for folder in sorted({Path(f).resolve() for f in folders}):
            fd = os.open(folder, os.O_RDONLY)
            fds.append(fd)
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        for fd in reversed(fds):
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


def is_disk_full(error: BaseException) -> bool:
    """True for the OSErrors a full disk, an exhausted quota or a file-size limit raise.

    numpy's ``tofile`` (used by tifffile, numpy.save) reports a short write as an OSError
    without an errno ("N requested and M written"); that is a full disk too.
    """
    if not isinstance(error, OSError):
        return False
    if error.errno in _DISK_FULL_ERRNOS:
        return True
    return error.errno is None and _SHORT_WRITE.search(str(error)) is not None


def disk_full_error(path: Path, needed_bytes: int | None = None) -> DiskFullError:
    """The one-line :class:`DiskFullError` for an output at ``path``."""
    free = _free_bytes(path)
    need = "" if needed_bytes is None else f"{needed_bytes / 2**20:.0f} MiB needed, "
    have = "" if free is None else f"{free / 2**20:.0f} MiB free"
    numbers = f" ({need}{have})" if need or have else ""
    return DiskFullError(
        with_path(path, f"disk full{numbers}; nothing was written: free space or choose "
                  "another output folder")
    )


def _free_bytes(path: Path) -> int | None:
    for candidate in (path, *path.parents):
        if candidate.exists():
            try:
                return shutil.disk_usage(candidate).free
            except OSError:
                return None
    return None


def require_free_space(path: str | os.PathLike[str], needed_bytes: int) -> None:
    """Raise :class:`DiskFullError` unless the file system of ``path`` has ``needed_bytes``.

    A margin of 1 % (at least 1 MiB) is kept, so a write that only just fits is refused
    before it starts rather than failing at its last byte.
    """
    free = _free_bytes(Path(path))
    if free is not None and needed_bytes + max(2**20, needed_bytes // 100) > free:
        raise disk_full_error(Path(path), needed_bytes)


def write_marker(folder: Path) -> None:
    """Mark ``folder`` as one emkit created for its outputs."""
    (folder / MARKER_NAME).write_text(
        json.dumps({"created_by": "emkit", "emkit_version": __version__}) + "\n",
        encoding="utf-8",
    )


def is_emkit_folder(folder: Path) -> bool:
    """True if ``folder`` holds emkit's marker, or holds nothing but emkit temporaries."""
    if (folder / MARKER_NAME).is_file():
        return True
    try:
        names = [entry.name for entry in os.scandir(folder)]
    except OSError:
        return False
    return all(_TEMP_PATTERN.match(name) for name in names)


def temporary_array(shape: tuple[int, ...], dtype: Any, what: str) -> Any:
    """Zeros of ``shape`` in an unnamed temporary file (in ``TMPDIR``), memory-mapped: for an
    array larger than memory should hold. Its blocks are reserved first, so a full disk is
    one :class:`DiskFullError` here, never a SIGBUS on a later write; the file goes away
    with the array.
    """
    import tempfile

    import numpy as np

    nbytes = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
    with tempfile.TemporaryFile(prefix="emkit-") as handle:
        try:
            if hasattr(os, "posix_fallocate"):
                os.posix_fallocate(handle.fileno(), 0, nbytes)
            else:  # pragma: no cover - macOS: a sparse file (a full disk would show later)
                handle.truncate(nbytes)
        except OSError as error:
            if error.errno not in _DISK_FULL_ERRNOS:
                raise
            raise DiskFullError(
                f"{tempfile.gettempdir()}: no room for the {nbytes / 2**30:.1f} GiB {what}; "
                "point TMPDIR at a disk with room"
            ) from None
        return np.memmap(handle, dtype=dtype, mode="r+", shape=shape)
