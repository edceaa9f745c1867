"""How many threads a piece of work may use, chosen once instead of by every library.

A Dask worker that runs one task per core must not let that task start a thread per core
in each of its libraries (BLAS, scipy.fft, torch, emkit's projector pool): on a busy
2-core machine that oversubscription made the prealign peak refinement 2.5-10x slower
than one thread (issue 11). :func:`limit_threads` sets all of them for the duration of a
task and puts them back afterwards.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

# torch's thread count is partly per thread (OpenMP) and partly process-wide, the BLAS/OpenMP
# limits of threadpoolctl are process-wide, and a Dask worker may run several tasks at once
# in threads. So each body puts back its own thread's torch count when it ends, except the
# last body of the process to end, which puts back the count the first one found (a body
# that restored what it found on entering could restore another task's limit for good);
# the BLAS limits are entered by the first body and left by the last. (scipy.fft's workers
# are per thread already.)
_LOCK = threading.Lock()
_state: dict[str, Any] = {"active": 0, "torch": None, "pools": None}


def _enter_process_limits(n: int) -> int:
    """Count this body in, set torch's threads; returns this thread's count before."""
    import torch

    with _LOCK:
        mine = torch.get_num_threads()
        if _state["active"] == 0:
            _state["torch"] = mine
            pools = contextlib.ExitStack()
            try:
                from threadpoolctl import threadpool_limits
            except ImportError:  # pragma: no cover - an optional speed-up only
                pass
            else:
                pools.enter_context(threadpool_limits(limits=n))
            _state["pools"] = pools
        _state["active"] += 1
        torch.set_num_threads(n)
        return mine


def _leave_process_limits(mine: int) -> None:
    import torch

    with _LOCK:
        _state["active"] -= 1
        if _state["active"] == 0:
            _state["pools"].close()
            torch.set_num_threads(_state["torch"])
            _state["pools"] = _state["torch"] = None
        else:
            torch.set_num_threads(mine)


@contextlib.contextmanager
def limit_threads(n_threads: int) -> Iterator[None]:
    """Run the body with ``n_threads`` threads in torch (and so emkit's projector pool),
    scipy.fft and, when threadpoolctl is installed, the BLAS/OpenMP pools.

    Safe to nest and to enter from several threads at once (a Dask worker running tasks
    side by side): a body that ends gives its thread back the torch count it found, and
    when the last body of the process ends, torch's count and the BLAS/OpenMP limits are
    what they were before the first began; while bodies overlap, the first one's count
    holds for BLAS/OpenMP (the tasks of one worker ask for the same count).

    Parameters
    ----------
    n_threads : int
        Threads the body may use (at least 1).

    Examples
    --------
    >>> with limit_threads(1):
    ...     pass
    """
    import scipy.fft

    n = max(1, int(n_threads))
    with scipy.fft.set_workers(n):
        mine = _enter_process_limits(n)
        try:
            yield
        finally:
            _leave_process_limits(mine)
