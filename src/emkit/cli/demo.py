"""Run the workflows' demos (tomo, register, segment, pick, spa) on built-in data.

Nothing is downloaded: each workflow simulates its own input with a known answer, runs,
and reports how close it came. Results go to one folder per workflow under OUTPUT, with
a summary in OUTPUT/summary.json. (The atlas has no demo here: try emkit sim mosaic, then
emkit atlas build.)

Examples
--------
    emkit demo                         # writes ./emkit-demo
    emkit demo --output /tmp/demo --only tomo
"""

from __future__ import annotations

import argparse
import importlib
import json
import time
from pathlib import Path
from typing import Any

from emkit.cli._common import add_subcommand, write_run_record
from emkit.cli._options import file_path, seed

# Workflows that provide ``run_demo(out_dir, *, seed, progress) -> dict`` in their CLI module.
DEMO_WORKFLOWS = ("tomo", "segment", "register", "pick", "spa")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = add_subcommand(subparsers, "demo", __doc__, func=run)
    parser.add_argument(
        "--output", type=file_path, default=Path("emkit-demo"), help="output folder"
    )
    parser.add_argument("--seed", type=seed, default=0, help="random seed, >= 0 (default 0)")
    parser.add_argument(
        "--only", choices=DEMO_WORKFLOWS, action="append", help="run only this workflow"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    from emkit.io import commit_pending_outputs, make_output_folder, write_text_atomic
    from emkit.report.html import write_demo_index

    out = make_output_folder(args.output)
    summary: dict[str, Any] = {}
    for name in args.only or DEMO_WORKFLOWS:
        module = importlib.import_module(f"emkit.cli.{name}")
        run_demo = getattr(module, "run_demo", None)
        if run_demo is None:
            continue
        print(f"== emkit demo: {name}", flush=True)
        start = time.perf_counter()
        result = run_demo(out / name, seed=args.seed, progress=not args.quiet)
        result["seconds"] = round(time.perf_counter() - start, 1)
        summary[name] = result
        # each workflow's folder is a run folder: emkit-run.json and report.html
        write_run_record(out / name, args, workflow=name, results=result)
        commit_pending_outputs()  # each workflow's results appear as soon as it is done
        for key, value in result.items():
            print(f"   {key}: {value}")
    write_text_atomic(out / "summary.json", json.dumps(summary, indent=2, default=str) + "\n")
    write_demo_index(out, summary)  # links each workflow's report.html
    write_run_record(out, args)
    print(f"emkit demo: results in {out}/ (summary.json; open index.html)")
    return 0
