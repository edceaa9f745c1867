"""Run in each local Dask worker process as it starts (a Dask "preload" module).

The workers of a local cluster share the terminal's process group with the emkit command,
so a Ctrl-C reaches them too, and each would print a traceback. They ignore SIGINT
instead: the command itself is interrupted and closes the cluster, which stops them.
"""

from __future__ import annotations

import signal
from typing import Any


def dask_setup(worker: Any) -> None:
    """Dask calls this in the worker process when it starts."""
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:  # pragma: no cover - not the worker's main thread
        pass
