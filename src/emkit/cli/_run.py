"""Run one CLI command safely: outputs checked before any work, and committed as one unit.

Every command's arguments are sorted into inputs and outputs by name: the options in
:data:`OUTPUT_OPTIONS` are outputs, every other path argument is an input. Before the
command starts, each output is checked:

- it is not, does not contain and does not sit inside an input;
- no two outputs are the same path;
- an output folder (an output without a suffix, e.g. ``--output ali/``, ``--fields``,
  ``--plot``) is new, empty or one that emkit created (it holds the marker ``.emkit``);
- a file output is not an existing folder (a Zarr store emkit wrote is the exception),
  and no other output sits inside it;
- the place is writable (a real probe, so a read-only mount is found now, not at the end).

The command then runs inside :func:`emkit.io.output_run`, so its outputs appear together
when it succeeds and nothing is left when it fails, is interrupted (Ctrl-C) or terminated
(SIGTERM, handled like Ctrl-C).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

OUTPUT_OPTIONS = ("output", "field", "fields", "plot")
"""Argument names (dests) whose paths are outputs; every other path argument is an input."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so every clean-up step runs."""


def split_paths(args: argparse.Namespace) -> tuple[list[Path], dict[str, Path]]:
    """The input paths and the output paths (by option name) of parsed ``args``."""
    inputs: list[Path] = []
    outputs: dict[str, Path] = {}
    for name, value in vars(args).items():
        values = value if isinstance(value, list | tuple) else [value]
        paths = [v for v in values if isinstance(v, Path)]
        if name in OUTPUT_OPTIONS and isinstance(value, Path):
            outputs[name] = value
        else:
            inputs.extend(paths)
    return inputs, outputs


def _is_folder_output(path: Path) -> bool:
    return not path.suffix


def check_outputs(inputs: list[Path], outputs: dict[str, Path]) -> None:
    """Refuse, before any work, outputs that would touch an input, collide or cannot be made.

    Raises
    ------
    OutputExistsError
        With the option and the path in its one-line message.
    """
    from emkit.errors import OutputExistsError, with_path
    from emkit.io import check_not_input, require_output_folder
    from emkit.io._atomic import require_folder_is_ours
    from emkit.io._tempfiles import require_name_length

    seen: dict[Path, str] = {}
    for name, path in outputs.items():
        key = Path(os.path.realpath(path))
        if key in seen:
            raise OutputExistsError(
                with_path(path, f"is given both as --{seen[key]} and --{name}; give each "
                          "output its own name")
            )
        seen[key] = name
        require_name_length(path)
        check_not_input(path, inputs)
        if _is_folder_output(path):
            require_output_folder(path)
        if path.is_dir():
            if _is_folder_output(path):
                require_folder_is_ours(path)
            elif not path.is_symlink():
                require_folder_is_ours(path, what="output")
        _probe_writable(path if _is_folder_output(path) else path.parent)
    _refuse_nested_file_outputs(outputs)


def _refuse_nested_file_outputs(outputs: dict[str, Path]) -> None:
    """An output inside another output is fine only inside a folder that is written into."""
    from emkit.errors import OutputExistsError, with_path

    resolved = {name: Path(os.path.realpath(p)) for name, p in outputs.items()}
    for outer, outer_path in resolved.items():
        if _is_folder_output(outputs[outer]):
            continue
        for inner, inner_path in resolved.items():
            if inner != outer and outer_path in inner_path.parents:
                raise OutputExistsError(
                    with_path(outputs[inner], f"--{inner} would sit inside the --{outer} "
                              "output; choose another place")
                )


def _probe_writable(folder: Path) -> None:
    """Create and delete a file in the nearest existing folder at or above ``folder``."""
    from emkit.errors import OutputExistsError, with_path
    from emkit.io._tempfiles import disk_full_error, is_disk_full

    existing = next((p for p in (folder, *folder.parents) if p.exists()), Path("."))
    try:
        with tempfile.TemporaryFile(dir=existing, prefix=".emkit-probe-"):
            pass
    except OSError as error:
        if is_disk_full(error):
            raise disk_full_error(existing) from None
        raise OutputExistsError(
            with_path(existing, f"cannot write here ({error.strerror or error}); choose an "
                      "output folder you can write to")
        ) from None


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Turn SIGTERM into :class:`Terminated` (a KeyboardInterrupt) while the block runs."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise Terminated()

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread (e.g. called from a test thread): leave it
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_command(args: argparse.Namespace) -> Any:
    """Check the outputs of ``args``, then run ``args.func(args)`` as one unit of output."""
    from emkit.io import output_run

    inputs, outputs = split_paths(args)
    with sigterm_as_interrupt():
        check_outputs(inputs, outputs)
        with output_run(inputs=inputs):
            return args.func(args)
