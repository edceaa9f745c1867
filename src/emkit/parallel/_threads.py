"""How many threads a piece of work may use, chosen once instead of by every library.

A Dask worker that runs one task per core must not let that task start a thread per core
in each of its libraries (BLAS, scipy.fft, torch, emkit's projector pool): on a busy
2-core machine that oversubscription made the prealign peak refinement 2.5-10x slower
than one thread (issue 11). :func:`limit_threads` sets all of them for the duration of a
task and puts them back afterwards.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


@contextlib.contextmanager
def limit_threads(n_threads: int) -> Iterator[None]:
    """Run the body with ``n_threads`` threads in torch (and so emkit's projector pool),
    scipy.fft and, when threadpoolctl is installed, the BLAS/OpenMP pools.

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
    import torch

    n = max(1, int(n_threads))
    old_torch = torch.get_num_threads()
    with contextlib.ExitStack() as stack:
        stack.enter_context(scipy.fft.set_workers(n))
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:  # pragma: no cover - an optional speed-up only
            pass
        else:
            stack.enter_context(threadpool_limits(limits=n))
        torch.set_num_threads(n)
        try:
            yield
        finally:
            torch.set_num_threads(old_torch)
