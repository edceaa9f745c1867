"""Fan-out of independent jobs over a Dask cluster, results back in order."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

from emkit.errors import InputError

logger = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

# Schedulers that run in this process, without a cluster (tests, debugging, one core).
SYNC_SCHEDULERS = ("sync", "synchronous")


def default_n_workers() -> int:
    """Worker processes for a local cluster: the CPU cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - macOS/Windows
        return max(1, os.cpu_count() or 1)


@contextlib.contextmanager
def dask_client(
    scheduler: Any = None,
    *,
    n_workers: int | None = None,
    threads_per_worker: int = 1,
    timeout_s: float = 10.0,
) -> Iterator[Any]:
    """A ``distributed.Client``: to a running scheduler, or to a new local cluster.

    Parameters
    ----------
    scheduler : None, str or distributed.Client
        None starts a ``LocalCluster`` of worker processes (closed on exit); a string is
        the address of a running scheduler (e.g. ``"tcp://10.0.0.5:8786"``); a Client is
        used as is (and left open).
    n_workers : int, optional
        Worker processes of a local cluster (default: :func:`default_n_workers`).
    threads_per_worker : int
        Threads per local worker.
    timeout_s : float
        How long to try reaching a scheduler given by address.

    Yields
    ------
    distributed.Client

    Raises
    ------
    InputError
        The scheduler address cannot be reached, or is not a Dask scheduler.
    """
    if scheduler is not None and not isinstance(scheduler, str):
        yield scheduler
        return
    if isinstance(scheduler, str):
        with _scheduler_client(scheduler, timeout_s) as client:
            yield client
        return
    with _local_cluster_client(n_workers, threads_per_worker) as client:
        yield client


@contextlib.contextmanager
def _scheduler_client(address: str, timeout_s: float) -> Iterator[Any]:
    """A Client connected to the running scheduler at ``address`` (closed on exit)."""
    from distributed import Client

    try:
        client = Client(address, timeout=f"{timeout_s}s")
    except Exception as error:
        # Not only OSError/TimeoutError: a service that is not a Dask scheduler answers
        # garbage, and distributed fails on it with ValueError or MemoryError.
        raise InputError(
            f"cannot reach the Dask scheduler at {address} ({error}); start it "
            "(`dask scheduler`) or leave out --scheduler to use a local cluster"
        ) from None
    try:
        yield client
    finally:
        client.close()


@contextlib.contextmanager
def _local_cluster_client(n_workers: int | None, threads_per_worker: int) -> Iterator[Any]:
    """A Client of a new local cluster of worker processes (both closed on exit)."""
    from distributed import Client, LocalCluster

    n = n_workers or default_n_workers()
    if n < 1:
        raise InputError(f"{n} workers requested; give 1 or more")
    # distributed sets its own logger to INFO, which would flood a CLI's log handler with
    # cluster start/stop chatter; keep it to warnings unless emkit itself is debugging.
    dist_logger = logging.getLogger("distributed")
    old_level = dist_logger.level
    if not logging.getLogger("emkit").isEnabledFor(logging.DEBUG):
        dist_logger.setLevel(max(old_level, logging.WARNING))
    cluster, client = None, None
    try:
        # The worker processes must ignore Ctrl-C (this process closes them; else each
        # prints a traceback): they inherit an ignored SIGINT at their start and keep
        # ignoring it (see _worker_init). A Ctrl-C during these ~2 s is therefore lost.
        with _sigint_ignored():
            cluster = LocalCluster(
                n_workers=n,
                threads_per_worker=threads_per_worker,
                processes=True,
                dashboard_address=None,
                scheduler_kwargs={"dashboard": False},
                silence_logs=logging.ERROR,
                preload=["emkit.parallel._worker_init"],
            )
        client = Client(cluster)
        yield client
    except BaseException:
        # Closing a cluster mid-computation makes distributed and asyncio log lost tasks
        # and closed comms: noise after an interrupt or an error that is reported anyway.
        with _logging_disabled():
            _close(client, cluster)
        raise
    else:
        _close(client, cluster)
    finally:
        dist_logger.setLevel(old_level)


def _close(client: Any, cluster: Any) -> None:
    if client is not None:
        client.close()
    if cluster is not None:
        cluster.close()


@contextlib.contextmanager
def _logging_disabled() -> Iterator[None]:
    logging.disable(logging.CRITICAL)
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)


@contextlib.contextmanager
def _sigint_ignored() -> Iterator[None]:
    try:
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:  # not the main thread: leave the signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@contextlib.contextmanager
def shared_scheduler(
    scheduler: Any = None, *, n_workers: int | None = None, n_jobs: int
) -> Iterator[Any]:
    """One scheduler for several :func:`map_inputs` calls of a run: a local cluster started
    once (not once per call), the given scheduler as is, or ``"sync"`` when at most one
    local worker would run (``n_workers`` 1, or a single job).

    Pass what it yields as ``scheduler`` to each call.
    """
    if scheduler is not None:
        yield scheduler
        return
    workers = min(n_workers or default_n_workers(), n_jobs)
    if workers <= 1:
        yield "sync"
        return
    with dask_client(None, n_workers=workers) as client:
        yield client


def map_inputs(
    func: Callable[[T], R],
    items: Iterable[T],
    *,
    scheduler: Any = None,
    n_workers: int | None = None,
    progress: bool = False,
    desc: str | None = None,
) -> list[R]:
    """Apply ``func`` to every item in parallel and return the results in input order.

    The items are independent jobs (e.g. one section pair each). ``func`` must be a
    module-level function (it is pickled to worker processes) and each item and result
    picklable. An exception in any job is raised here, with its own type, after the
    cluster is closed.

    Parameters
    ----------
    func : callable
        ``func(item) -> result``.
    items : iterable
    scheduler : None, "sync", str or distributed.Client
        None: a local cluster of worker processes (see :func:`dask_client`); ``"sync"``:
        run one after another in this process (no Dask); an address string: a running
        scheduler; a Client: that client.
    n_workers : int, optional
        Worker processes of a local cluster; ``1`` also runs in this process.
    progress : bool
        Show a progress bar (tqdm) as jobs finish.
    desc : str, optional
        Label of the progress bar.

    Returns
    -------
    list
        ``[func(item) for item in items]``, in the same order.

    Examples
    --------
    >>> map_inputs(abs, [-1, 2, -3], scheduler="sync")
    [1, 2, 3]
    """
    return list(iter_inputs(func, items, scheduler=scheduler, n_workers=n_workers,
                            progress=progress, desc=desc))


def iter_inputs(
    func: Callable[[T], R],
    items: Iterable[T],
    *,
    scheduler: Any = None,
    n_workers: int | None = None,
    progress: bool = False,
    desc: str | None = None,
) -> Iterator[R]:
    """:func:`map_inputs` that yields each result in input order as soon as it and those
    before it are done, so the caller can fold large results in one at a time instead of
    holding them all (the cluster keeps the later ones until they are asked for).

    Iterate to the end (or close the generator) to stop the cluster.

    Examples
    --------
    >>> list(iter_inputs(abs, [-1, 2, -3], scheduler="sync"))
    [1, 2, 3]
    """
    jobs = list(items)
    if not jobs:
        return
    if runs_in_process(scheduler, n_workers, len(jobs)):
        for job in _bar(jobs, progress, desc):
            yield func(job)
        return
    n_workers = min(n_workers or default_n_workers(), len(jobs))
    with dask_client(scheduler, n_workers=n_workers) as client:
        futures = client.map(func, jobs, pure=False)
        for future in _bar(futures, progress, desc, total=len(futures)):
            result = future.result()
            future.release()
            yield result


def runs_in_process(scheduler: Any, n_workers: int | None, n_jobs: int) -> bool:
    """Whether :func:`map_inputs` runs ``n_jobs`` jobs one after another in this process
    (no cluster) for this ``scheduler`` and ``n_workers``.

    Examples
    --------
    >>> runs_in_process(None, 1, 10), runs_in_process("sync", None, 10)
    (True, True)
    """
    local_serial = scheduler is None and (n_workers == 1 or n_jobs == 1)
    return scheduler in SYNC_SCHEDULERS or local_serial


def _bar(iterable: Iterable[Any], progress: bool, desc: str | None, total: int | None = None):
    if not progress:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, total=total, unit="job")
