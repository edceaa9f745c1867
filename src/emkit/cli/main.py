"""emkit: electron-microscopy images to 3D results.

Examples
--------
    emkit demo --output emkit-demo          # every workflow on built-in synthetic data
    emkit info tomogram.mrc                 # shape, dtype, voxel size, statistics
    emkit convert tomogram.mrc tomogram.zarr
    emkit tomo --help                       # tilt-series alignment and reconstruction
    emkit register --help                   # serial-section registration

Every command exits 0 on success, 2 on bad input (with a one-line message naming the file
and the fix) and 1 on an unexpected failure.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path

from emkit import __version__

# Subcommand modules, imported only when the parser is built; each defines
# ``add_parser(subparsers)``. Heavy libraries (torch, dask) are imported inside the
# command functions, so ``emkit --help`` stays instant.
_COMMAND_MODULES = (
    "info", "convert", "sim", "tomo", "segment", "register", "pick", "spa", "atlas", "demo",
    "report",
)


def build_parser() -> argparse.ArgumentParser:
    from emkit.cli._options import EmkitArgumentParser

    parser = EmkitArgumentParser(
        prog="emkit",
        description=__doc__.split("\n\n", 1)[0] if __doc__ else None,
        epilog=__doc__.split("\n\n", 1)[1] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"emkit {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)"
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _COMMAND_MODULES:
        module = importlib.import_module(f"emkit.cli.{name}")
        module.add_parser(subparsers)
    return parser


def _configure_logging(verbosity: int) -> None:
    level = logging.WARNING if verbosity == 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return the exit status (0 ok, 2 bad input, 1 unexpected failure)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    _configure_logging(args.verbose)
    from emkit.cli._run import Terminated, run_command
    from emkit.errors import EmkitError
    from emkit.io._tempfiles import disk_full_error, is_disk_full

    try:
        status = run_command(args)
    except EmkitError as error:
        # One line, whatever the message: a library's text may carry line breaks.
        message = " ".join(str(error).split())
        print(f"emkit: error: {message}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # The reader went away (``emkit info --json ... | head``): stop quietly, as a tool
        # killed by SIGPIPE would, and keep Python from failing again when it flushes stdout.
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError):  # stdout is not a real file (captured, closed)
            pass
        return 141
    except OSError as error:
        if not is_disk_full(error):
            return _unexpected()
        # A write that no emkit writer wrapped (a library's own file): still one line.
        print(f"emkit: error: {disk_full_error(Path(error.filename or '.'))}", file=sys.stderr)
        return 2
    except Terminated:
        print("emkit: terminated; nothing was written", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print("emkit: interrupted; nothing was written", file=sys.stderr)
        return 130
    except Exception:
        return _unexpected()
    return int(status or 0)


def _unexpected() -> int:
    traceback.print_exc()
    print("emkit: unexpected failure (please report this as a bug, with the traceback above)",
          file=sys.stderr)
    return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
