"""A run's outputs committed as one unit.

Inside :func:`output_run`, every :func:`emkit.io.atomic_output` (and so every emkit writer)
writes its temporary file as usual but does not rename it into place: the rename waits for
the end of the run. When the run ends without an error, all its outputs are renamed into
place together, under a lock on each output folder, so two runs writing into one folder
each leave a complete set (the later one's) and never a mix; when it fails or is
interrupted, every temporary output is removed and the folders the run created are
removed again. Outputs are also checked against the run's inputs at the moment they are
written: an output can never replace, contain or sit inside an input.

Outside a run (plain library use), writers commit each file at once, as before.

Examples
--------
>>> from emkit.io import output_run, write_volume
>>> with output_run(inputs=["ts.mrc"]):                      # doctest: +SKIP
...     write_volume("out/rec.mrc", volume)
...     write_volume("out/ali.mrc", aligned)     # both appear here, together
"""

from __future__ import annotations

import contextlib
import contextvars
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from emkit.errors import OutputExistsError, with_path
from emkit.io._tempfiles import MARKER_NAME, folder_lock, remove_path, temp_name

PathLike = str | os.PathLike[str]


@dataclass
class _Pending:
    temp: Path
    final: Path
    directory: bool


@dataclass
class OutputRun:
    """The outputs of one run, waiting to be committed together (see module docstring)."""

    inputs: list[Path] = field(default_factory=list)
    pending: list[_Pending] = field(default_factory=list)
    created_folders: list[Path] = field(default_factory=list)
    after_commit: list[Callable[[], None]] = field(default_factory=list)

    def add_inputs(self, paths: Iterable[PathLike | None]) -> None:
        """Declare more inputs (outputs will be refused where they would touch them)."""
        self.inputs.extend(Path(p).absolute() for p in paths if p is not None)

    def check_output(self, final: Path) -> None:
        """Refuse ``final`` if it is, contains or sits in an input, or is already an output."""
        refuse_overlap(final, self.inputs)
        target = _canonical(final)
        for item in self.pending:
            if _canonical(item.final) == target:
                raise OutputExistsError(
                    with_path(final, "is written twice by this run; give each output its "
                              "own name")
                )

    def defer(self, temp: Path, final: Path, *, directory: bool) -> None:
        self.pending.append(_Pending(temp, final, directory))

    def commit(self) -> None:
        """Rename every pending output into place, together, then run the after-commit steps."""
        pending, self.pending = self.pending, []
        if pending:
            with folder_lock(item.final.parent for item in pending):
                for item in pending:
                    replace_into_place(item.temp, item.final, directory=item.directory)
        self.created_folders.clear()
        steps, self.after_commit = self.after_commit, []
        for step in steps:
            step()

    def rollback(self) -> None:
        """Remove every pending temporary output and the folders this run created (if empty)."""
        for item in self.pending:
            remove_path(item.temp)
        self.pending = []
        for folder in reversed(self.created_folders):
            with contextlib.suppress(OSError):
                marker = folder / MARKER_NAME
                if marker.is_file() and [p.name for p in folder.iterdir()] == [MARKER_NAME]:
                    marker.unlink()
                folder.rmdir()  # only when empty: anything else stays
        self.created_folders = []
        self.after_commit = []


_CURRENT: contextvars.ContextVar[OutputRun | None] = contextvars.ContextVar(
    "emkit_output_run", default=None
)


def current_run() -> OutputRun | None:
    """The :class:`OutputRun` in progress, or None outside :func:`output_run`."""
    return _CURRENT.get()


@contextlib.contextmanager
def output_run(inputs: Iterable[PathLike | None] = ()) -> Iterator[OutputRun]:
    """Collect the outputs written inside the block and commit them together at its end.

    On an exception (KeyboardInterrupt and SystemExit included) nothing is committed:
    every temporary output is removed, and so are the folders the run created.
    """
    run = OutputRun()
    run.add_inputs(inputs)
    token = _CURRENT.set(run)
    try:
        yield run
        run.commit()
    except BaseException:
        run.rollback()
        raise
    finally:
        _CURRENT.reset(token)


def commit_pending_outputs() -> None:
    """Commit what the current run has written so far (e.g. before reading it back)."""
    run = current_run()
    if run is not None:
        run.commit()


def on_commit(step: Callable[[], None]) -> None:
    """Run ``step`` once the current run's outputs are in place (at once outside a run).

    For clean-up that must wait for success, e.g. deleting a checkpoint.
    """
    run = current_run()
    if run is None:
        step()
    else:
        run.after_commit.append(step)


def replace_into_place(temp: Path, final: Path, *, directory: bool) -> None:
    """Rename a finished temporary output onto ``final`` (a folder: the old one goes last)."""
    if directory and final.is_dir() and not final.is_symlink():
        old = temp_name(final)
        final.rename(old)
        temp.rename(final)
        remove_path(old)
    elif directory and final.exists():
        final.unlink()
        temp.rename(final)
    else:
        os.replace(temp, final)


def _canonical(path: Path) -> Path:
    return Path(os.path.realpath(path))


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def refuse_overlap(output: PathLike, inputs: Iterable[PathLike | None]) -> None:
    """Refuse an ``output`` that is one of ``inputs``, contains one, or sits inside one.

    Paths are compared after resolving links, so ``a/../b.mrc`` and a link to an input
    count as that input.

    Raises
    ------
    OutputExistsError
        Naming the output and the input it would touch.
    """
    out = _canonical(Path(output))
    for inp in inputs:
        if inp is None:
            continue
        source = _canonical(Path(inp))
        if out == source:
            reason = "this output is also an input; choose another output name"
        elif _inside(source, out):
            reason = f"this output would contain the input {inp}; choose another output"
        elif _inside(out, source):
            reason = f"this output would be inside the input {inp}; choose another output"
        else:
            continue
        raise OutputExistsError(with_path(output, reason))

