"""Write (again) the HTML report of a run: RUN_DIR/report.html.

Every workflow command writes report.html beside its emkit-run.json at the end of its run
(a command whose output is one file, e.g. tomo reconstruct --output ali/rec.mrc, writes
ali/rec.report.html beside ali/rec.emkit-run.json); this command draws the page again from
the record and the run's files (after an upgrade of emkit, or after figures were added).
The page is self-contained: what ran, the parameters, the inputs with their SHA-256,
timings, every metric, every figure (embedded) and links to the outputs. It opens in any
browser, offline.

Examples
--------
    emkit report ali/                      # writes ali/report.html
    emkit report ali/rec.emkit-run.json    # writes ali/rec.report.html
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
        help="a folder an emkit command wrote (it holds emkit-run.json), or a "
        "<name>.emkit-run.json record",
    )


def run(args: argparse.Namespace) -> int:
    from emkit.io import current_run
    from emkit.report.html import (
        REPORT_MEMORY_BYTES,
        read_run_record,
        record_path,
        write_run_report,
    )

    given = Path(args.run_dir)
    record = read_run_record(given)  # not a run folder nor a record: one line, exit 2
    require_memory(REPORT_MEMORY_BYTES, f"drawing the report of {given}", "close other programs")
    run = current_run()
    if run is not None:
        run.add_inputs([record_path(given)])
    path = write_run_report(given, record)
    print(f"emkit report: {path}")
    return 0
