"""Write outputs under a temporary name and rename them when complete.

An interrupted run must never leave a file that looks finished, and an output must never
replace one of the run's inputs.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from emkit.errors import OutputExistsError, with_path


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
    """Refuse an ``output`` that is one of ``inputs`` or that a file blocks.

    Raises :class:`OutputExistsError` if ``output`` is the same file as one of ``inputs``, or
    if an existing file stands where one of its parent folders must be.
    """
    require_output_folder(Path(output).parent)
    out = Path(output).resolve()
    for inp in inputs:
        if inp is None:
            continue
        if Path(inp).resolve() == out:
            raise OutputExistsError(
                with_path(output, "this output is also an input; choose another output name")
            )


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike[str], *, directory: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it to ``path``.

    The temporary name keeps the suffix of ``path`` (libraries choose the format by it).
    On any exception the temporary file or folder is removed and ``path`` is untouched.

    Parameters
    ----------
    path : path-like
        Final output path.
    directory : bool
        If True the output is a folder (e.g. a Zarr store); an existing folder at ``path``
        is replaced only once the new one is complete.
    """
    final = Path(path)
    if not directory and final.is_dir():
        # os.replace cannot put a file over a folder; refuse before anything is written
        raise OutputExistsError(
            with_path(final, "is a folder; give a file name for this output")
        )
    require_output_folder(final.parent).mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{final.stem}.", suffix=f".part{final.suffix}", dir=final.parent
    )
    os.close(fd)
    tmp = Path(tmp_name)
    # mkstemp creates the file private (0600); give it the mode a plain open() would.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    if directory:
        tmp.unlink()
    try:
        yield tmp
        if directory:
            if final.is_dir():
                old = final.with_name(f".{final.name}.old")
                shutil.rmtree(old, ignore_errors=True)
                final.rename(old)
                tmp.rename(final)
                shutil.rmtree(old, ignore_errors=True)
            elif final.exists():  # a file where the folder goes: replaced
                final.unlink()
                tmp.rename(final)
            else:
                tmp.rename(final)
        else:
            os.replace(tmp, final)
    except BaseException:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        raise


def write_text_atomic(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; return the path."""
    final = Path(path)
    with atomic_output(final) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return final
