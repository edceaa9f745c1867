"""tomo workflow (being built).

Placeholder: the tomo subcommands are added by the tomo workflow.
"""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register `emkit tomo` (nothing yet)."""
