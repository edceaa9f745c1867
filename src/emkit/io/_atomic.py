"""Write outputs under a temporary name and rename them when complete.

An interrupted run must never leave a file that looks finished, an output must never
replace, contain or sit inside one of the run's inputs, and a folder emkit did not create is
never emptied or replaced. Inside :func:`emkit.io.output_run` (every CLI command runs in
one) the renames wait for the end of the run, so its outputs appear together.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from emkit.errors import OutputExistsError, with_path
from emkit.io._tempfiles import (
    MARKER_NAME,
    disk_full_error,
    folder_lock,
    is_disk_full,
    is_emkit_folder,
    remove_path,
    remove_stale_temps,
    require_free_space,
    require_name_length,
    temp_name,
    write_marker,
)
from emkit.io._transaction import current_run, refuse_overlap, replace_into_place

__all__ = [
    "atomic_output",
    "check_not_input",
    "make_output_folder",
    "require_output_folder",
    "write_text_atomic",
]


def require_output_folder(folder: str | os.PathLike[str]) -> Path:
    """Check that ``folder`` is, or can become, a folder: no file stands in its way.

    Raises :class:`OutputExistsError` naming the file when ``folder`` or one of its parents
    is an existing file, so a run can refuse before any work rather than fail at the end.
    """
    path = Path(folder)
    for candidate in (path, *path.parents):
        if candidate.exists():
            if not candidate.is_dir():
                raise OutputExistsError(
                    with_path(candidate, "is a file, not a folder; choose another output folder")
                )
            break
    return path


def check_not_input(
    output: str | os.PathLike[str], inputs: Iterable[str | os.PathLike[str] | None]
) -> None:
    """Refuse an ``output`` that is, contains or sits inside one of ``inputs``, or that a file
    blocks (an existing file where one of its parent folders must be).

    Raises
    ------
    OutputExistsError
        Naming the output and, where one is involved, the input.
    """
    require_output_folder(Path(output).parent)
    refuse_overlap(output, inputs)


def _create_folders(folder: Path) -> list[Path]:
    """``mkdir -p`` that returns the folders it created (outermost first)."""
    missing = [p for p in (folder, *folder.parents) if not p.exists()]
    created: list[Path] = []
    for path in reversed(missing):
        try:
            path.mkdir()
        except FileExistsError:  # made meanwhile by a concurrent run
            continue
        except OSError as error:
            raise _output_os_error(path, error) from None
        created.append(path)
    return created


def _track_created(created: list[Path]) -> None:
    run = current_run()
    if run is not None:
        run.created_folders.extend(created)


def require_folder_is_ours(folder: Path, *, what: str = "output folder") -> None:
    """Refuse an existing, non-empty ``folder`` that emkit did not create."""
    if folder.is_dir() and not is_emkit_folder(folder):
        raise OutputExistsError(
            with_path(
                folder,
                f"this {what} already holds files that emkit did not write; emkit never "
                "writes into or replaces such a folder: choose a new or empty folder",
            )
        )


def make_output_folder(folder: str | os.PathLike[str]) -> Path:
    """Create (or reuse) a folder that a run writes its outputs into, and mark it emkit's.

    The folder must be new, empty, or one that emkit created (it holds the marker file
    ``.emkit``); it must not contain or sit inside one of the current run's inputs. A folder
    this run creates is removed again if the run fails.
    """
    path = require_output_folder(folder)
    run = current_run()
    if run is not None:
        refuse_overlap(path, run.inputs)
    require_folder_is_ours(path)
    if not path.exists():
        created = _create_folders(path)
        _track_created(created)
    if not (path / MARKER_NAME).is_file():
        try:
            write_marker(path)
        except OSError as error:
            raise _output_os_error(path, error) from None
    remove_stale_temps(path)
    return path


def _output_os_error(path: Path, error: OSError) -> Exception:
    """The one-line emkit error for an OSError met while making an output."""
    if is_disk_full(error):
        return disk_full_error(path)
    reason = error.strerror or str(error)
    return OutputExistsError(with_path(path, f"cannot write here ({reason}); choose another "
                                       "output location"))


def _prepare(final: Path, directory: bool, size_bytes: int | None) -> None:
    require_name_length(final)
    if not directory and final.is_dir():
        # os.replace cannot put a file over a folder; refuse before anything is written
        raise OutputExistsError(with_path(final, "is a folder; give a file name for this output"))
    if directory and final.is_dir() and not final.is_symlink():
        require_folder_is_ours(final, what="output")
    run = current_run()
    if run is not None:
        run.check_output(final)
    _track_created(_create_folders(require_output_folder(final.parent)))
    remove_stale_temps(final.parent)
    if size_bytes:
        require_free_space(final, size_bytes)


def _new_temp(final: Path, directory: bool) -> Path:
    tmp = temp_name(final)
    if not directory:
        try:
            # A plain open()'s mode (umask applies); O_EXCL: the name is this run's alone.
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except OSError as error:
            raise _output_os_error(final, error) from None
    return tmp


@contextlib.contextmanager
def atomic_output(
    path: str | os.PathLike[str],
    *,
    directory: bool = False,
    immediate: bool = False,
    size_bytes: int | None = None,
) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it to ``path``.

    The temporary name keeps the suffix of ``path`` (libraries choose the format by it).
    On any exception the temporary file or folder is removed and ``path`` is untouched; a
    full disk becomes one :class:`~emkit.errors.DiskFullError`.

    Parameters
    ----------
    path : path-like
        Final output path.
    directory : bool
        If True the output is a folder (e.g. a Zarr store). An existing folder at ``path``
        is replaced once the new one is complete, but only if emkit wrote it (it holds the
        marker ``.emkit``) or it is empty; any other folder is refused.
    immediate : bool
        Rename at once even inside :func:`emkit.io.output_run` (checkpoints, which must
        survive an interrupted run).
    size_bytes : int, optional
        Expected size; the write is refused up front when the disk has less free space.

    Raises
    ------
    OutputExistsError
        ``path`` is an input, a folder where a file goes, a folder emkit did not write, or
        its name is too long.
    DiskFullError
        Not enough space, before or while writing.
    """
    final = Path(path)
    _prepare(final, directory, size_bytes)
    tmp = _new_temp(final, directory)
    try:
        yield tmp
        if directory and tmp.is_dir():
            write_marker(tmp)
        run = current_run()
        if run is not None and not immediate:
            run.defer(tmp, final, directory=directory)
        else:
            with folder_lock([final.parent]):
                replace_into_place(tmp, final, directory=directory)
    except BaseException as error:
        remove_path(tmp)
        if is_disk_full(error):
            raise disk_full_error(final, size_bytes) from None
        raise


def write_text_atomic(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; return the path."""
    final = Path(path)
    with atomic_output(final) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return final
