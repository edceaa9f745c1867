"""Helpers shared by the subcommand modules."""

from __future__ import annotations

import argparse
import json
import logging
import platform
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from emkit import __version__

logger = logging.getLogger(__name__)


def write_run_record(
    out_dir: str | Path,
    args: argparse.Namespace,
    *,
    named_after: str | Path | None = None,
    more_inputs: list[Path] | None = None,
    **extra: Any,
) -> Path:
    """Write ``emkit-run.json`` and ``report.html`` beside a command's outputs.

    A command whose output is one file (``named_after``, in ``out_dir``) names them after
    it instead, ``<stem>.emkit-run.json`` and ``<stem>.report.html``
    (:func:`emkit.report.html.record_names`): a folder may hold the files of many runs and
    the user's own, and no run's record replaces another's.

    The record holds the command line, version, parameters, host, times, the inputs (size
    and SHA-256, see :func:`emkit.report.html.describe_inputs`) and the outputs of the run;
    ``extra`` holds results worth keeping with the run (e.g. final residuals);
    ``more_inputs`` are files the command read that its options do not name (the tiles of
    a tile list), checksummed like the others. The page
    (:func:`emkit.report.html.write_run_report`) is drawn from it; a page that cannot be
    drawn is logged as a warning and never fails the run.
    """
    from emkit.io import current_run, require_output_folder, write_text_atomic
    from emkit.io._paths import file_stem
    from emkit.report.html import (
        describe_inputs,
        record_names,
        run_outputs,
        write_run_report,
    )

    out = require_output_folder(out_dir)
    record_name, report_name = record_names(
        None if named_after is None else file_stem(named_after)
    )
    params = {
        k: (str(v) if isinstance(v, Path) else v)
        for k, v in vars(args).items()
        if k != "func" and not callable(v)
    }
    run = current_run()
    if run is not None:
        inputs: list[Any] = list(run.inputs)
    else:
        from emkit.cli._run import split_paths

        inputs = split_paths(args)[0]
    now = time.time()
    record = {
        "emkit_version": __version__,
        "command_line": shlex.join(["emkit", *sys.argv[1:]]),
        "parameters": params,
        "python": platform.python_version(),
        "host": platform.node(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(_COMMAND_START[0])),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(now)),
        "wall_seconds": round(now - _COMMAND_START[0], 2),
        "inputs": describe_inputs([*inputs, *(more_inputs or [])]),
        "record_file": record_name,
        **extra,
    }
    outputs = set(run_outputs(out)) | {record_name, report_name}
    record["outputs"] = sorted(outputs)
    # Written like every other output: checked against the inputs, a unique temporary
    # name (concurrent runs), committed with the run's other outputs.
    text = json.dumps(record, indent=2, default=str) + "\n"
    path = write_text_atomic(out / record_name, text)
    try:
        write_run_report(out / record_name, json.loads(text))
    except Exception as error:  # the page is a view of the record; the run has succeeded
        logger.warning("could not write %s in %s: %s: %s", report_name, out,
                       type(error).__name__, error)
    return path


_COMMAND_START = [time.time()]
"""When the current command began: set as its parser is built (see :func:`add_subcommand`)."""


def add_subcommand(
    subparsers: argparse._SubParsersAction, name: str, module_doc: str | None, func: Any
) -> argparse.ArgumentParser:
    """Add a subcommand whose ``--help`` is its module docstring (first line = summary)."""
    doc = module_doc or ""
    summary, _, body = doc.partition("\n\n")
    parser = subparsers.add_parser(
        name,
        help=summary.strip(),
        description=summary.strip(),
        epilog=body or None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.set_defaults(func=func)
    _COMMAND_START[0] = time.time()  # main() builds the parser as each command begins
    return parser


def show_progress(quiet: bool) -> bool:
    """Progress bars only for a person at a terminal: not with ``--quiet``, not into logs."""
    return not quiet and sys.stderr.isatty()


def set_torch_threads(threads: int | None) -> None:
    """Use ``threads`` torch threads (default: every core this process may use)."""
    import os

    import torch

    from emkit.errors import InputError

    if threads is not None and threads < 1:
        raise InputError(f"--threads must be >= 1, got {threads}")
    torch.set_num_threads(threads or os.cpu_count() or 1)


def require_memory_for_volume(path: Path, bytes_per_voxel: float, what: str, hint: str) -> None:
    """Refuse at once when the volume at ``path`` needs more memory than there is."""
    import numpy as np

    from emkit.cli._options import require_memory
    from emkit.io import read_volume

    shape = read_volume(path, mmap=True).data.shape
    voxels = float(np.prod(shape, dtype=np.float64))
    require_memory(bytes_per_voxel * voxels + 300 * 2**20,
                   f"{what} of {' x '.join(map(str, shape))} voxels from {Path(path).name}", hint)
