"""map_inputs: results in order, errors with their type, in-process and on a local cluster."""

from __future__ import annotations

import pytest

from emkit.errors import InputError
from emkit.parallel import dask_client, default_n_workers, map_inputs


def _square(x: int) -> int:
    return x * x


def _fail_on_three(x: int) -> int:
    if x == 3:
        raise InputError("item 3 is bad")
    return x


def test_sync_keeps_order():
    assert map_inputs(_square, range(6), scheduler="sync") == [0, 1, 4, 9, 16, 25]
    assert map_inputs(_square, [], scheduler="sync") == []
    # One worker also runs in this process (no cluster start).
    assert map_inputs(_square, [3, 1], n_workers=1) == [9, 1]


def test_sync_error_keeps_its_type():
    with pytest.raises(InputError, match="item 3"):
        map_inputs(_fail_on_three, range(5), scheduler="sync")


def test_default_workers_positive():
    assert default_n_workers() >= 1


@pytest.mark.slow
def test_local_cluster_order_and_errors():
    """A real local cluster of 2 processes (a few seconds to start)."""
    items = list(range(10, 0, -1))
    assert map_inputs(_square, items, n_workers=2, progress=False) == [x * x for x in items]
    with pytest.raises(InputError, match="item 3"):
        map_inputs(_fail_on_three, range(5), n_workers=2)


def test_unreachable_scheduler_is_a_user_error():
    with (
        pytest.raises(InputError, match="cannot reach"),
        dask_client("tcp://127.0.0.1:9", timeout_s=1.0),
    ):
        pass


def test_an_address_that_is_not_a_dask_scheduler_is_a_user_error():
    """Something else listening there (it answers garbage) must not crash with a traceback."""
    import socket
    import threading

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]

    def answer_garbage():
        conn, _ = server.accept()
        conn.sendall(b"\xff" * 64)
        conn.recv(1)  # hold the connection until the client gives up
        conn.close()

    thread = threading.Thread(target=answer_garbage, daemon=True)
    thread.start()
    try:
        with (
            pytest.raises(InputError, match="cannot reach"),
            dask_client(f"tcp://127.0.0.1:{port}", timeout_s=2.0),
        ):
            pass
    finally:
        server.close()


def test_shared_scheduler_runs_here_or_passes_the_given_one_on():
    from emkit.parallel import map_inputs, shared_scheduler

    with shared_scheduler(None, n_workers=1, n_jobs=5) as scheduler:
        assert scheduler == "sync"
        assert map_inputs(abs, [-1, 2], scheduler=scheduler) == [1, 2]
    with shared_scheduler(None, n_workers=4, n_jobs=1) as scheduler:
        assert scheduler == "sync"  # one job: no cluster to start
    given = object()
    with shared_scheduler(given, n_workers=4, n_jobs=9) as scheduler:
        assert scheduler is given
