"""limit_threads: the process-wide thread settings come back when overlapping bodies end."""

from __future__ import annotations

import threading

import pytest
import torch

from emkit.parallel import limit_threads


@pytest.fixture(autouse=True)
def process_wide_count(monkeypatch: pytest.MonkeyPatch) -> None:
    """torch's count as one process-wide value (as the BLAS/OpenMP limits and torch's own
    pool are; torch's OpenMP setting is also kept per thread, which would hide the race),
    starting at 3, a count no body below sets."""
    count = {"n": 3}
    monkeypatch.setattr(torch, "get_num_threads", lambda: count["n"])
    monkeypatch.setattr(torch, "set_num_threads", lambda n: count.update(n=n))


def test_restores_torch_threads_after_nesting() -> None:
    with limit_threads(1):
        assert torch.get_num_threads() == 1
        with limit_threads(2):
            assert torch.get_num_threads() == 2
        assert torch.get_num_threads() == 1  # the outer body's count again
    assert torch.get_num_threads() == 3


def test_overlapping_threads_leave_the_process_as_it_was() -> None:
    """Two tasks of one Dask worker, entered A, B and left A, B: saving and restoring per
    body would leave torch at A's limit (1) for good."""
    entered_a, entered_b, left_a = threading.Event(), threading.Event(), threading.Event()

    def task_a() -> None:
        with limit_threads(1):
            entered_a.set()
            entered_b.wait(10)
        left_a.set()

    def task_b() -> None:
        entered_a.wait(10)
        with limit_threads(1):
            entered_b.set()
            left_a.wait(10)

    threads = [threading.Thread(target=task_a), threading.Thread(target=task_b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert torch.get_num_threads() == 3


def test_each_thread_gets_its_own_count_back(monkeypatch: pytest.MonkeyPatch) -> None:
    """torch's count as a per-thread value (OpenMP's): a thread whose body ended while
    another's ran on gets back what it had, not the other body's limit."""
    local = threading.local()
    monkeypatch.setattr(torch, "get_num_threads", lambda: getattr(local, "n", 3))
    monkeypatch.setattr(torch, "set_num_threads", lambda n: setattr(local, "n", n))
    entered_a, left_a, done_b = threading.Event(), threading.Event(), threading.Event()
    after: dict[str, int] = {}

    def task_a() -> None:
        with limit_threads(1):
            entered_a.set()
        after["a"] = torch.get_num_threads()
        left_a.set()

    def task_b() -> None:
        entered_a.wait(10)
        with limit_threads(1):
            left_a.wait(10)
        after["b"] = torch.get_num_threads()
        done_b.set()

    threads = [threading.Thread(target=task_a), threading.Thread(target=task_b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert after == {"a": 3, "b": 3}
