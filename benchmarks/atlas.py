"""Benchmark: ``emkit atlas build`` on a synthetic tiled mosaic with known tile positions.

Makes the mosaic with ``emkit sim mosaic`` (8-bit TIFF tiles, stage errors of up to
``--error`` px per axis, texture at 1/``--texture-scale`` resolution), then builds the atlas
in a fresh subprocess and reports

- wall time of the build and time per gigapixel of the atlas (W x H / 1e9), and the CPU
  time of the build process (all threads; on a shared machine the steadier number),
- the build process's peak memory (VmHWM from /proc, else ``getrusage`` ru_maxrss),
- the tile position error against the truth (overall translation removed), max and mean,
  and the stage error it started from.

There is no peer tool in the environment (no libvips/``dzsave``, no TrakEM2/BigStitcher),
so no ratio is printed; the machine may be shared, so seconds are noisy.

    .venv/bin/python benchmarks/atlas.py                       # 40,000 x 40,000
    .venv/bin/python benchmarks/atlas.py --size 8192 --workers 2
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit_probe, peak_rss_mib, print_table, probe_in_subprocess


def _table(path: Path) -> dict[str, tuple[float, float]]:
    with open(path, newline="") as fh:
        return {r["file"]: (float(r["x_px"]), float(r["y_px"])) for r in csv.DictReader(fh)}


def _errors(solved: Path, true: Path) -> np.ndarray:
    s, t = _table(solved), _table(true)
    names = sorted(t)
    d = np.array([s[n] for n in names]) - np.array([t[n] for n in names])
    d -= d.mean(axis=0)
    return np.hypot(d[:, 0], d[:, 1])


def _probe_build(csv_path: str, out: str, workers: int) -> None:
    import resource

    from emkit.atlas import build_atlas

    t0 = time.perf_counter()
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    result = build_atlas(csv_path, out, workers=workers)
    seconds = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    emit_probe(
        {
            "seconds": seconds,
            "cpu_seconds": cpu,
            "peak_rss_mib": peak_rss_mib(),
            "width": result.width,
            "height": result.height,
            "levels": result.levels,
            "dzi_tiles": result.dzi_tiles,
            "overlaps": [result.pairs_used, result.pairs_measured],
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=40_000, help="mosaic side, px")
    parser.add_argument("--tile", type=int, default=2048)
    parser.add_argument("--overlap", type=int, default=200)
    parser.add_argument("--error", type=float, default=30.0, help="stage error, px")
    parser.add_argument("--texture-scale", type=float, default=4.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--work", type=Path, help="scratch folder (default: a temporary one)")
    parser.add_argument("--keep", action="store_true", help="keep the mosaic and the atlas")
    parser.add_argument(
        "--probe-build", nargs=3, metavar=("CSV", "OUT", "WORKERS"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.probe_build:
        _probe_build(args.probe_build[0], args.probe_build[1], int(args.probe_build[2]))
        return
    work = args.work or Path(tempfile.mkdtemp(prefix="emkit-atlas-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    sim, out = work / "mosaic", work / "atlas"
    emkit = [sys.executable, "-m", "emkit.cli.main"]
    if not (sim / "positions.csv").is_file():
        t0 = time.perf_counter()
        sim_args = f"--size {args.size} {args.size} --tile {args.tile} --overlap {args.overlap} "
        sim_args += f"--position-error {args.error} --texture-scale {args.texture_scale} "
        sim_args += f"--seed 1 --workers {args.workers}"
        subprocess.run(
            [*emkit, "sim", "mosaic", "--output", str(sim), *sim_args.split()],
            check=True,
        )
        print(f"sim mosaic: {time.perf_counter() - t0:.0f} s", flush=True)
    shutil.rmtree(out, ignore_errors=True)
    probe = probe_in_subprocess(
        [__file__, "--probe-build", str(sim / "positions.csv"), str(out), str(args.workers)],
        timeout_s=6 * 3600,
    )
    if "error" in probe:
        raise SystemExit(f"build failed: {probe['error']}")
    gpix = probe["width"] * probe["height"] / 1e9
    err = _errors(out / "positions.csv", sim / "true_positions.csv")
    stage = _errors(sim / "positions.csv", sim / "true_positions.csv")
    n_tiles = len(err)
    print(
        f"\natlas build, {probe['width']} x {probe['height']} px ({gpix:.2f} Gpx), "
        f"{n_tiles} tiles of {args.tile} px, overlap {args.overlap}, stage error <= "
        f"{args.error:g} px, {args.workers} workers, {os.cpu_count()} cores on this machine"
    )
    print_table(
        ["measure", "value"],
        [
            ["build wall time (s)", probe["seconds"]],
            ["time per gigapixel (s/Gpx)", probe["seconds"] / gpix],
            ["CPU time of the build, all threads (s)", probe["cpu_seconds"]],
            ["CPU time per gigapixel (s/Gpx)", probe["cpu_seconds"] / gpix],
            ["peak RSS of the build (MiB)", probe["peak_rss_mib"]],
            ["pyramid levels / DeepZoom tiles", f"{probe['levels']} / {probe['dzi_tiles']}"],
            ["overlaps used / measured", f"{probe['overlaps'][0]} / {probe['overlaps'][1]}"],
            ["position error max (px)", float(err.max())],
            ["position error mean (px)", float(err.mean())],
            ["stage error before, max (px)", float(stage.max())],
        ],
    )
    print(
        json.dumps(
            {"size": args.size, **probe, "err_max": float(err.max()), "err_mean": float(err.mean())}
        )
    )
    if not args.keep and args.work is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
