"""register workflow (being built).

Placeholder: the register subcommands are added by the register workflow.
"""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register `emkit register` (nothing yet)."""
