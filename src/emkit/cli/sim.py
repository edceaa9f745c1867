"""Make synthetic data with a known answer (tilt series, damaged sections, ...).

Every generator writes the data and the ground truth beside it (true shifts, true
displacement field, phantom volume), so any emkit command can be checked against it.

Examples
--------
    emkit sim tiltseries --output sim/       # see `emkit sim tiltseries --help`
    emkit sim section FIXED.png --output sim/ # a damaged neighbour of a section image
"""

from __future__ import annotations

import argparse
import importlib

from emkit.cli._common import add_subcommand

# Each workflow CLI module listed here adds its generators through add_sim_parsers(subparsers).
_WORKFLOWS_WITH_SIMULATORS = ("tomo", "segment", "register", "pick", "spa", "atlas")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = add_subcommand(subparsers, "sim", __doc__, func=None)
    sim_subparsers = parser.add_subparsers(dest="sim_command", metavar="WHAT")
    parser.set_defaults(func=lambda args: parser.print_help())
    for name in _WORKFLOWS_WITH_SIMULATORS:
        module = importlib.import_module(f"emkit.cli.{name}")
        add_sim = getattr(module, "add_sim_parsers", None)
        if add_sim is not None:
            add_sim(sim_subparsers)
