"""Write (again) the HTML report of a run folder: RUN_DIR/report.html.

Every workflow command writes report.html beside its emkit-run.json at the end of its run;
this command draws it again from the record and the files now in the folder (after an
upgrade of emkit, or after figures were added). The page is self-contained: what ran, the
parameters, the inputs with their SHA-256, timings, every metric, every figure (embedded)
and links to the outputs. It opens in any browser, offline.

Examples
--------
    emkit report ali/                  # writes ali/report.html
"""

from __future__ import annotations

import argparse
from pathlib import Path

from emkit.cli._common import add_subcommand
from emkit.cli._options import OptionType, file_path, require_memory

# RUN_DIR is kept as text, not a Path: the run machinery treats every Path argument as an
# input that no output may sit inside, and report.html belongs inside RUN_DIR. The files
# the page is drawn from are declared as this run's inputs instead (see ``run``).
run_folder = OptionType(
    "run_folder",
    lambda text: str(file_path(text)),
    file_path.constraint,
    file_path.invalid_examples,
)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = add_subcommand(subparsers, "report", __doc__, func=run)
    parser.add_argument(
        "run_dir",
        metavar="RUN_DIR",
        type=run_folder,
        help="a folder an emkit command wrote (it holds emkit-run.json)",
    )


def run(args: argparse.Namespace) -> int:
    from emkit.io import current_run
    from emkit.report.html import (
        RECORD_NAME,
        REPORT_MEMORY_BYTES,
        read_run_record,
        write_run_report,
    )

    folder = Path(args.run_dir)
    record = read_run_record(folder)  # not a run folder: one line, exit 2
    require_memory(REPORT_MEMORY_BYTES, f"drawing the report of {folder}", "close other programs")
    run = current_run()
    if run is not None:
        run.add_inputs([folder / RECORD_NAME])
    path = write_run_report(folder, record)
    print(f"emkit report: {path}")
    return 0
