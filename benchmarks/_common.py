"""Small helpers shared by the benchmarks: timing, peak memory, table printing.

Benchmarks run a peer on the same input in the same process and print ratios; the
machine may be shared, so absolute seconds are noisy and ratios are what to quote.
"""

from __future__ import annotations

import json
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

__all__ = [
    "current_rss_mib",
    "emit_probe",
    "median_time",
    "peak_rss_mib",
    "print_table",
    "probe_in_subprocess",
    "reset_peak_rss",
]


def median_time(fn: Callable[[], Any], *, repeats: int = 3, warmup: int = 0) -> float:
    """Median wall-clock seconds of ``fn()`` over ``repeats`` runs (after ``warmup`` runs)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _status_kib(field: str) -> float | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return float(line.split()[1])
    except OSError:
        return None
    return None


def reset_peak_rss() -> bool:
    """Reset this process's RSS high-water mark (Linux ``clear_refs``); False if unsupported."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return _status_kib("VmHWM") is not None


def current_rss_mib() -> float:
    """Resident memory of this process now, in MiB (0.0 where /proc is missing)."""
    kib = _status_kib("VmRSS")
    return 0.0 if kib is None else kib / 1024.0


def peak_rss_mib() -> float:
    """High-water resident memory in MiB: ``VmHWM`` (resettable) or ``getrusage`` maxrss."""
    kib = _status_kib("VmHWM")
    if kib is None:
        kib = float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)  # KiB on Linux
    return kib / 1024.0


def emit_probe(result: dict[str, Any]) -> None:
    """Print ``result`` as the last stdout line, for :func:`probe_in_subprocess`."""
    print(json.dumps(result), flush=True)


def probe_in_subprocess(argv: Sequence[str], *, timeout_s: float = 1800) -> dict[str, Any]:
    """Run ``python *argv`` in a fresh interpreter and return the JSON of its last line.

    A fresh process per method gives each its own RSS high-water mark.
    """
    proc = subprocess.run(
        [sys.executable, *argv], capture_output=True, text=True, timeout=timeout_s, check=False
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    if proc.returncode != 0 or not lines:
        return {"error": (proc.stderr.strip().splitlines() or ["no output"])[-1]}
    return dict(json.loads(lines[-1]))


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Print a plain-text table with right-aligned columns."""
    cells = [[str(h) for h in headers]] + [
        [f"{v:.3g}" if isinstance(v, float) else str(v) for v in row] for row in rows
    ]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    for k, r in enumerate(cells):
        print("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))))
        if k == 0:
            print("  ".join("-" * w for w in widths))
