"""Benchmark: a whole synthetic stack aligned with the global relaxation and by chaining.

Makes a stack with ``emkit sim stack`` (default 50 sections of 1024 x 1024, 5 of them
folded or cracked, each section with its own drift and 8 px smooth warp), aligns it with
``emkit register stack`` (the CLI, as a user would: sections read from the folder one at
a time, the aligned stack streamed to OME-Zarr), once with the global relaxation and
once chaining to the middle section, and prints per section the mean endpoint error of
each to the true fields.

The error is measured after removing what no alignment of the sections to each other can
observe: a deformation shared by every section (the mean over sections of estimated minus
true field, per pixel). Without it the error would measure the choice of frame, not the
alignment.

With ``--memory`` it also runs the global alignment on the first 25 sections and on all
of them with one worker (so everything runs in one process) and prints the peak RSS of
each run (VmHWM of that process): it should not grow with the number of sections.

    python benchmarks/register_stack.py                     # 50 x 1024^2, 2 workers
    python benchmarks/register_stack.py --memory            # also 25 vs 50 peak memory
    python benchmarks/register_stack.py --sections 12 --size 512   # quick look
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

EMKIT = [sys.executable, "-m", "emkit"]


def run(args: list[str]) -> tuple[float, float]:
    """Run an emkit command in a fresh process; (seconds, peak RSS MiB of that process)."""
    code = (
        "import resource, sys, runpy; sys.argv = ['emkit'] + sys.argv[1:];\n"
        "from emkit.cli.main import main\n"
        "rc = main(sys.argv[1:])\n"
        # VmHWM, not ru_maxrss: ru_maxrss keeps the parent's RSS at the fork.
        "status = open('/proc/self/status').read()\n"
        "peak = int(status.split('VmHWM:')[1].split()[0])\n"
        "print('PEAK_KIB', peak, file=sys.stderr)\n"
        "sys.exit(rc)\n"
    )
    t0 = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, check=False
    )
    seconds = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"emkit {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    peak = [line for line in done.stderr.splitlines() if line.startswith("PEAK_KIB")]
    return seconds, float(peak[-1].split()[1]) / 1024.0 if peak else float("nan")


def errors(sim: Path, fields: Path, n: int) -> np.ndarray:
    """Per-section mean endpoint error to the truth, the shared deformation removed."""
    est, true, ok = [], [], []
    for i in range(n):
        f = np.load(fields / f"section_{i:04d}.npy")
        t = np.load(sim / "true_fields" / f"section_{i:04d}.npy")
        v = _read_png(fields / f"valid_{i:04d}.png") & np.isfinite(t).all(axis=0)
        est.append(f)
        true.append(np.nan_to_num(t))
        ok.append(v)
    diff = np.stack(est) - np.stack(true)
    valid = np.stack(ok)
    weight = valid.astype(np.float64)
    shared = (diff * weight[:, None]).sum(axis=0) / np.maximum(weight.sum(axis=0), 1)[None]
    return np.array(
        [np.sqrt(((diff[i] - shared) ** 2).sum(axis=0))[valid[i]].mean() for i in range(n)]
    )


def _read_png(path: Path) -> np.ndarray:
    import cv2

    return cv2.imread(str(path), cv2.IMREAD_UNCHANGED) > 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sections", type=int, default=50)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--damaged", type=int, default=5)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--memory", action="store_true", help="also 25 vs all, peak RSS")
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it")
    parser.add_argument(
        "--skip-accuracy", action="store_true", help="only the memory runs (with --memory)"
    )
    args = parser.parse_args()

    root = args.keep or Path(tempfile.mkdtemp(prefix="emkit-stack-bench-"))
    sim = root / "sim"
    n = args.sections
    if not (sim / "params.json").is_file():
        secs, _ = run(
            [
                "sim",
                "stack",
                "--output",
                str(sim),
                "--sections",
                str(n),
                "--size",
                str(args.size),
                str(args.size),
                "--damaged",
                str(args.damaged),
                "--seed",
                str(args.seed),
                "--quiet",
            ]
        )
        print(f"simulated {n} sections of {args.size}^2 in {secs:.0f} s")
    damaged = json.loads((sim / "params.json").read_text())["damaged"]
    print(f"damaged sections: {damaged}")
    results = {}
    for relax in () if args.skip_accuracy else ("global", "chain"):
        out = root / relax / "aligned.ome.zarr"
        secs, peak = run(
            [
                "register",
                "stack",
                str(sim / "sections"),
                "--masks",
                str(sim / "masks"),
                "--output",
                str(out),
                "--relax",
                relax,
                "--workers",
                str(args.workers),
                "--quiet",
            ]
        )
        err = errors(sim, root / relax / "aligned_fields", n)
        results[relax] = err
        print(
            f"{relax}: {secs:.0f} s with {args.workers} workers, main process peak "
            f"{peak:.0f} MiB; EPE mean over sections {err.mean():.3f} px, largest "
            f"{err.max():.3f} px (section {int(err.argmax())})"
        )
    print("\nper-section mean EPE (px), shared deformation removed")
    print("section " + " ".join(f"{i:5d}" for i in range(n)))
    for relax, err in results.items():
        print(f"{relax:7s} " + " ".join(f"{e:5.2f}" for e in err))
    middle = n // 2
    for relax, err in results.items():  # (empty with --skip-accuracy)
        ends = float(np.mean([err[0], err[-1]]))
        print(f"{relax}: middle section {err[middle]:.3f} px, end sections {ends:.3f} px")
    if args.memory:
        half = n // 2
        part = root / "half"
        part.mkdir(exist_ok=True)
        (part / "sections").mkdir(exist_ok=True)
        (part / "masks").mkdir(exist_ok=True)
        for i in range(half):
            name = f"section_{i:04d}.png"
            for sub in ("sections", "masks"):
                src = sim / sub / name
                if src.is_file() and not (part / sub / name).exists():
                    (part / sub / name).symlink_to(src)
        for label, folder, count in (("half", part, half), ("all", sim, n)):
            out = root / f"mem_{label}" / "aligned.ome.zarr"
            secs, peak = run(
                [
                    "register",
                    "stack",
                    str(folder / "sections"),
                    "--masks",
                    str(folder / "masks"),
                    "--output",
                    str(out),
                    "--workers",
                    "1",
                    "--quiet",
                ]
            )
            print(f"memory: {count} sections, one process: peak RSS {peak:.0f} MiB ({secs:.0f} s)")
    print(f"\n(files in {root})")


if __name__ == "__main__":
    main()
