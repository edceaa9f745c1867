"""Benchmark: emkit's expected affine against OpenCV's SIFT + RANSAC global affine.

For each damaged pair (DOLW7 1000x1000 and ZW7L18 2080x2752 from ../shared/data/sections,
or synthetic folds of the same sizes when that folder is absent) it runs, in this
process on the same input:

- ``expected-affine``: ``emkit.register.register_pair`` (default settings);
- ``emkit global``: the same emkit matching with one RANSAC affine (``method="global-affine"``);
- ``opencv global``: OpenCV only, with the same SIFT settings (detection scale, 6000
  features, no keypoints on the defect): ``SIFT`` -> ``BFMatcher.knnMatch`` with Lowe's
  ratio 0.9 -> ``estimateAffine2D`` (RANSAC, 3 px) -> ``warpAffine``.

It prints the median wall time over ``--repeats`` runs and its ratio to OpenCV's, the
peak memory of each method measured in a fresh subprocess (RSS high-water mark, VmHWM
from /proc reset just before the run, else ``getrusage`` ru_maxrss; both the absolute
peak of that process and the increase over its RSS just before the run), and the NCC /
SSIM to the fixed image on the pixels every method covers outside the defect.

    python benchmarks/register.py            # both pairs, 3 repeats
    python benchmarks/register.py --quick    # DOLW7 only, 1 repeat
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (
    current_rss_mib,
    emit_probe,
    median_time,
    peak_rss_mib,
    print_table,
    probe_in_subprocess,
    reset_peak_rss,
)

SECTIONS = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "sections"
PAIRS = {"DOLW7": (1000, 1000), "ZW7L18": (2080, 2752)}
METHODS = ("expected-affine", "emkit global", "opencv global")


def load_pair(name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """(fixed, moving, defect mask, source) for a named pair; synthetic when data are absent."""
    import cv2

    paths = [SECTIONS / f"{name}_{s}.png" for s in ("0", "1", "m")]
    if all(p.is_file() for p in paths):
        fixed, moving, mask = (cv2.imread(str(p), cv2.IMREAD_UNCHANGED) for p in paths)
        return fixed, moving, mask > 0, "real"
    from emkit.sim.sections import section_texture, simulate_damaged_section

    fixed = section_texture(PAIRS[name], seed=0)
    damaged = simulate_damaged_section(fixed, kind="fold", seed=1)
    return fixed, damaged.moving, damaged.defect_mask, "synthetic fold (data absent)"


def opencv_global(
    fixed: np.ndarray, moving: np.ndarray, mask: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """OpenCV's SIFT + ratio test + RANSAC affine + warpAffine; (warped, valid)."""
    import cv2

    from emkit.register._features import default_sift_scale, to_uint8
    from emkit.register._pathdist import blocked_pixels

    h, w = fixed.shape
    scale = default_sift_scale((h, w))  # emkit's default detection scale
    allowed = ~blocked_pixels(mask, (h, w))
    f8 = to_uint8(fixed)
    m8 = to_uint8(moving, allowed)
    m_mask = allowed.astype(np.uint8) * 255
    if scale < 1.0:
        f8 = cv2.resize(f8, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        m8 = cv2.resize(m8, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        m_mask = cv2.resize(m_mask, (m8.shape[1], m8.shape[0]), interpolation=cv2.INTER_AREA)
        m_mask = np.where(m_mask == 255, 255, 0).astype(np.uint8)
    sift = cv2.SIFT_create(nfeatures=6000)
    kf, df = sift.detectAndCompute(f8, None)
    km, dm = sift.detectAndCompute(m8, m_mask)
    knn = cv2.BFMatcher(cv2.NORM_L2).knnMatch(dm, df, k=2)
    good = [p[0] for p in knn if len(p) == 2 and p[0].distance < 0.9 * p[1].distance]
    src = (np.array([km[g.queryIdx].pt for g in good]) + 0.5) / scale - 0.5
    dst = (np.array([kf[g.trainIdx].pt for g in good]) + 0.5) / scale - 0.5
    affine, _ = cv2.estimateAffine2D(
        src.astype(np.float32),
        dst.astype(np.float32),
        method=cv2.RANSAC,
        ransacReprojThreshold=3.0,
    )
    warped = cv2.warpAffine(moving, affine, (w, h), flags=cv2.INTER_LINEAR)
    tissue = (~grow_mask(mask)).astype(np.uint8)
    valid = cv2.warpAffine(tissue, affine, (w, h), flags=cv2.INTER_NEAREST) > 0
    warped[~valid] = 0
    return warped, valid


def grow_mask(mask: np.ndarray) -> np.ndarray:
    from emkit.register._pathdist import grow

    return grow(mask, 1)


def run_method(method: str, fixed: np.ndarray, moving: np.ndarray, mask: np.ndarray):
    from emkit.register import register_pair

    if method == "opencv global":
        return opencv_global(fixed, moving, mask)
    kind = "expected-affine" if method == "expected-affine" else "global-affine"
    result = register_pair(fixed, moving, defect_mask=mask, method=kind)
    return result.warped, result.valid


def probe(method: str, pair: str) -> None:
    """Child process: peak memory of one run of one method."""
    fixed, moving, mask, _ = load_pair(pair)
    import cv2  # noqa: F401  (imports count as baseline, not as the method's memory)

    import emkit.register  # noqa: F401

    before = current_rss_mib()
    exact = reset_peak_rss()
    t0 = time.perf_counter()
    run_method(method, fixed, moving, mask)
    seconds = time.perf_counter() - t0
    peak = peak_rss_mib()
    emit_probe(
        {
            "peak_mib": peak,
            "increase_mib": peak - before,
            "seconds": seconds,
            "peak_source": "VmHWM (reset)" if exact else "ru_maxrss",
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="DOLW7 only, 1 repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--pairs", nargs="*", choices=tuple(PAIRS), default=None)
    parser.add_argument("--probe", nargs=2, metavar=("METHOD", "PAIR"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.probe:
        probe(args.probe[0], args.probe[1])
        return
    from emkit.register import similarity

    pairs = args.pairs or (["DOLW7"] if args.quick else list(PAIRS))
    repeats = 1 if args.quick else args.repeats
    for name in pairs:
        fixed, moving, mask, source = load_pair(name)
        print(f"\n== {name} {fixed.shape[0]}x{fixed.shape[1]} ({source}), {repeats} repeat(s)")
        outputs: dict[str, Any] = {}
        times: dict[str, float] = {}
        for method in METHODS:
            outputs[method] = run_method(method, fixed, moving, mask)  # also a warm-up
            times[method] = median_time(
                lambda m=method, f=fixed, mv=moving, k=mask: run_method(m, f, mv, k),
                repeats=repeats,
            )
        common = np.logical_and.reduce([valid for _, valid in outputs.values()])
        rows = []
        for method in METHODS:
            mem = probe_in_subprocess([__file__, "--probe", method, name])
            sim = similarity(fixed, outputs[method][0], valid=common)
            rows.append(
                [
                    method,
                    times[method],
                    times[method] / times["opencv global"],
                    mem.get("peak_mib", float("nan")),
                    mem.get("increase_mib", float("nan")),
                    sim["ncc"],
                    sim["ssim"],
                ]
            )
        print_table(
            ["method", "seconds", "x opencv", "peak MiB", "+MiB in run", "NCC", "SSIM"], rows
        )
        print(
            f"   NCC/SSIM on the {common.mean():.1%} of pixels all methods cover outside the "
            f"defect; memory: {mem.get('peak_source', '?')} in a fresh process per method"
        )


if __name__ == "__main__":
    main()
