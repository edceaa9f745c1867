"""Benchmark: emkit's registration of damaged sections against OpenCV (and SOFIMA) peers.

Real pairs (DOLW7 1000x1000 and ZW7L18 2080x2752 from ../shared/data/sections, or
synthetic folds of the same sizes when that folder is absent). Methods, on the same input:

- ``expected-affine``: ``emkit.register.register_pair(..., refine="none")``, the affine
  model alone;
- ``EA + elastic``: ``register_pair`` with its defaults (expected affine, then the elastic
  refinement cut along the defect);
- ``emkit global``: the same emkit matching with one RANSAC affine
  (``method="global-affine", refine="none"``);
- ``opencv global``: OpenCV only, with the same SIFT settings (detection scale, 6000
  features, no keypoints on the defect): ``SIFT`` -> ``BFMatcher.knnMatch`` with Lowe's
  ratio 0.9 -> ``estimateAffine2D`` (RANSAC, 3 px) -> ``warpAffine``;
- ``opencv DIS``: OpenCV's dense DIS optical flow (``DISOpticalFlow``, preset ``DIS_PRESET``)
  from the fixed image to the moving one directly;
- ``global + DIS``: DIS started from the emkit global affine (moving warped by it, flow
  fixed -> warped, composed with the affine). DIS knows nothing of the defect: it is only
  told the images;
- ``global + SOFIMA`` (optional): SOFIMA's masked patch cross-correlation flow
  (``flow_field.JAXMaskedXCorrWithStatsCalculator``, patch 160, stride 40, the defect and
  the area outside the pre-aligned image masked) -> ``flow_utils.clean_flow`` ->
  ``mesh.relax_mesh`` -> ``map_utils.invert_map``, with the settings of SOFIMA's
  ``em_alignment`` notebook, started from the emkit global affine. It runs on CPU JAX in
  its own interpreter: set ``SOFIMA_PYTHON`` to a Python with ``sofima``'s dependencies and
  ``jax[cpu]``, and ``SOFIMA_PATH`` to a folder holding the ``sofima`` package (the PyPI
  release 0.1 installs no modules: its wheel has only metadata; unpack its sdist as
  ``SOFIMA_PATH/sofima``, and pin ``jax[cpu]==0.4.30``, since its masked correlation calls
  ``jnp.clip(a_min=...)``, which newer JAX removed; SOFIMA's GitHub head runs on current
  JAX). Skipped, with the reason printed, when it is not set or does not run.

For each real pair it prints the median wall time over ``--repeats`` runs (after a
warm-up) and its ratio to OpenCV's global affine, the peak memory of each method measured
in a fresh subprocess (RSS high-water mark, VmHWM from /proc reset just before the run,
else ``getrusage`` ru_maxrss; the absolute peak of that process and the increase over its
RSS just before the run), and the NCC / SSIM to the fixed image on the pixels every method
covers outside the defect, and ``folded %``: the share of those pixels where the method's
field is not one-to-one (Jacobian determinant of ``p -> p + field(p)`` <= 0), which a
dense flow can use to raise NCC without following the tissue. (SOFIMA's time is its own
process's, JIT warm-up excluded, plus emkit global's; its memory is its own process's
peak, JAX included.)

``--synthetic`` (on by default; ``--no-synthetic`` skips it) scores the fields against a
known answer: damaged pairs from ``emkit.sim.sections.simulate_damaged_section`` (fold and
crack, texture and damage seeds 41-44, 512 and 1024 px), each with a smooth 8 px
non-affine warp per side (``elastic_px=8``) and without (``elastic_px=0``). Endpoint error
(EPE) mean and 95th percentile on ``true_valid & ~defect_mask_fixed & result.valid`` for
emkit and the OpenCV global affine, and on ``true_valid & ~defect_mask_fixed`` (the true
field's tissue outside the defect) for DIS and SOFIMA, which have no notion of the defect.
``expected-affine`` there is the unrefined field of the default run (the same model). The
printed cell is the mean over the seeds, and the worst seed in brackets.

Field convention (emkit's): ``(2, H, W)`` float32, ``(dy, dx)`` from each fixed pixel to
its position in the moving image, ``warped[y, x] = moving[y + dy, x + dx]``. OpenCV's
``dis.calc(fixed, moving)`` returns ``(dx, dy)`` per pixel with
``fixed(p) ~ moving(p + flow(p))`` (checked with a known shift: a moving image shifted by
(+5, +3) px gives flow (+5, +3)), i.e. the same field with its channels swapped.

    python benchmarks/register.py                      # both pairs, 3 repeats, synthetic
    python benchmarks/register.py --quick              # DOLW7 only, 1 repeat, 512 px only
    SOFIMA_PYTHON=/tmp/sofima_venv/bin/python SOFIMA_PATH=/tmp/sofima_src \\
        python benchmarks/register.py                  # with SOFIMA
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
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
METHODS = (
    "expected-affine",
    "EA + elastic",
    "emkit global",
    "opencv global",
    "opencv DIS",
    "global + DIS",
)
SOFIMA = "global + SOFIMA"
# DIS preset: MEDIUM had the lowest endpoint error of ULTRAFAST / FAST / MEDIUM on synthetic
# folds and cracks started from the global affine (seeds 51-52, not those reported).
DIS_PRESET = "MEDIUM"
SYNTH_SEEDS = (41, 42, 43, 44)  # 1-4 and 31-34 tuned the method and its tests
SYNTH_SIZES = (512, 1024)
SOFIMA_PATCH, SOFIMA_STRIDE = 160, 40


# ---------------------------------------------------------------------------- inputs


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


# ---------------------------------------------------------------------------- methods


def opencv_global(
    fixed: np.ndarray, moving: np.ndarray, mask: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """OpenCV's SIFT + ratio test + RANSAC affine + warpAffine; (warped, valid, affine)."""
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
    return warped, valid, affine


def grow_mask(mask: np.ndarray) -> np.ndarray:
    from emkit.register._pathdist import grow

    return grow(mask, 1)


def dis_flow(fixed: np.ndarray, moving: np.ndarray, moving_valid: np.ndarray | None = None):
    """DIS optical flow fixed -> moving as an emkit field ``(2, H, W)`` (dy, dx)."""
    import cv2

    from emkit.register._features import to_uint8

    dis = cv2.DISOpticalFlow_create(getattr(cv2, f"DISOPTICAL_FLOW_PRESET_{DIS_PRESET}"))
    flow = dis.calc(to_uint8(fixed), to_uint8(moving, moving_valid), None)
    return np.ascontiguousarray(np.moveaxis(flow, -1, 0)[::-1]).astype(np.float32)


def compose_affine(correction: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Field ``u(p) + g(p + u(p))`` for ``g`` the field of ``affine`` (moving -> fixed x, y).

    ``g`` is evaluated exactly (no interpolation, no border effects).
    """
    import cv2

    _, h, w = correction.shape
    inv = cv2.invertAffineTransform(affine.astype(np.float64))
    x = np.arange(w, dtype=np.float64)[None, :] + correction[1]
    y = np.arange(h, dtype=np.float64)[:, None] + correction[0]
    field = np.empty_like(correction)
    field[1] = inv[0, 0] * x + inv[0, 1] * y + inv[0, 2] - np.arange(w)[None, :]
    field[0] = inv[1, 0] * x + inv[1, 1] * y + inv[1, 2] - np.arange(h)[:, None]
    return field


def global_dis(fixed: np.ndarray, moving: np.ndarray, glob: Any) -> np.ndarray:
    """DIS from an emkit global registration ``glob``: flow fixed -> warped, composed."""
    u = dis_flow(fixed, glob.warped, glob.valid)
    return compose_affine(u, glob.affines[0])


def run_method(
    method: str, fixed: np.ndarray, moving: np.ndarray, mask: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """One method on one pair: (warped, valid, field or None)."""
    from emkit.register import register_pair, warp_image
    from emkit.register._field import field_validity

    if method == "opencv global":
        warped, valid, _ = opencv_global(fixed, moving, mask)
        return warped, valid, None
    if method in ("opencv DIS", "global + DIS"):
        if method == "opencv DIS":
            field = dis_flow(fixed, moving, ~mask)
        else:
            glob = register_pair(
                fixed, moving, defect_mask=mask, method="global-affine", refine="none"
            )
            field = global_dis(fixed, moving, glob)
        valid = field_validity(field, mask, moving.shape)
        return warp_image(moving, field, valid=valid), valid, field
    kind = "global-affine" if method == "emkit global" else "expected-affine"
    refine = "elastic" if method == "EA + elastic" else "none"
    result = register_pair(fixed, moving, defect_mask=mask, method=kind, refine=refine)
    return result.warped, result.valid, result.field


def folded_percent(field: np.ndarray | None, region: np.ndarray) -> float:
    """Percentage of ``region`` (eroded by one pixel) where the field folds over itself.

    That is where the Jacobian determinant of ``p -> p + field(p)`` is <= 0: the map is not
    one-to-one there (a tear or overlap a smooth tissue deformation cannot produce). 0 for
    an affine (``field`` None).
    """
    import cv2

    if field is None:
        return 0.0
    inner = cv2.erode(region.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    dy_y, dy_x = np.gradient(field[0])
    dx_y, dx_x = np.gradient(field[1])
    det = (1 + dx_x) * (1 + dy_y) - dx_y * dy_x
    return float(100.0 * np.mean(det[inner] <= 0)) if inner.any() else float("nan")


# ---------------------------------------------------------------------------- SOFIMA


def sofima_worker(npz_in: str, json_out: str, repeats: int) -> None:
    """Child process (SOFIMA's interpreter, no emkit): fields for every pair in ``npz_in``.

    ``npz_in`` holds ``fixed_i``, ``moving_i`` (already pre-aligned) and ``mask_i`` (True =
    no data in ``moving_i``). Writes ``field_i`` (emkit convention, fixed -> moving_i) to
    ``npz_in + ".out.npz"`` and times / peak memory to ``json_out``.
    """
    if os.environ.get("SOFIMA_PATH"):
        sys.path.insert(0, os.environ["SOFIMA_PATH"])
    import jax
    from connectomics.common import bounding_box
    from scipy import ndimage
    from sofima import flow_field, flow_utils, map_utils, mesh

    data = np.load(npz_in)
    n = len([k for k in data.files if k.startswith("fixed_")])
    patch, stride = SOFIMA_PATCH, SOFIMA_STRIDE
    # sofima 0.1 (PyPI) takes a float stride, its GitHub head a tuple
    tuple_stride = "tuple" in str(mesh.IntegrationConfig.__annotations__.get("stride"))
    config = mesh.IntegrationConfig(  # SOFIMA's em_alignment notebook
        dt=0.001,
        gamma=0.0,
        k0=0.01,
        k=0.1,
        stride=(float(stride),) * 2 if tuple_stride else float(stride),
        num_iters=1000,
        max_iters=100000,
        stop_v_max=0.005,
        dt_max=1000,
        start_cap=0.01,
        final_cap=10,
        prefer_orig_order=True,
    )

    def one(fixed: np.ndarray, moving: np.ndarray, mask: np.ndarray) -> np.ndarray:
        h, w = fixed.shape
        mfc = flow_field.JAXMaskedXCorrWithStatsCalculator()
        flow = mfc.flow_field(
            fixed, moving, (patch, patch), (stride, stride), post_mask=mask, batch_size=256
        )
        pad = patch // 2 // stride  # node k of the padded grid sits at pixel k * stride
        flow = np.pad(flow, [[0, 0], [pad, pad], [pad, pad]], constant_values=np.nan)[:, None]
        flow = flow_utils.clean_flow(
            flow, min_peak_ratio=1.6, min_peak_sharpness=1.6, max_magnitude=80, max_deviation=20
        )
        x, _, _ = mesh.relax_mesh(np.zeros_like(flow), flow, config)
        x = np.asarray(x)
        box = bounding_box.BoundingBox(start=(0, 0, 0), size=(x.shape[-1], x.shape[-2], 1))
        inv = np.asarray(map_utils.invert_map(x, box, box, stride))[:, 0]  # (dx, dy) nodes
        holes = ~np.isfinite(inv).all(axis=0)
        if holes.all():
            raise RuntimeError("SOFIMA found no reliable flow")
        if holes.any():  # nodes without an answer take the nearest node's
            idx = ndimage.distance_transform_edt(holes, return_distances=False, return_indices=True)
            inv = inv[:, idx[0], idx[1]]
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32) / stride
        field = np.empty((2, h, w), dtype=np.float32)
        for c, ch in ((0, 1), (1, 0)):  # emkit (dy, dx) from SOFIMA (dx, dy)
            field[c] = ndimage.map_coordinates(inv[ch], [yy, xx], order=1, mode="nearest")
        return field

    exact = reset_peak_rss()
    fields, seconds = {}, []
    for i in range(n):
        args = (data[f"fixed_{i}"], data[f"moving_{i}"], data[f"mask_{i}"])
        runs = []
        for _ in range(max(repeats, 1) + (1 if repeats > 0 else 0)):
            t0 = time.perf_counter()
            fields[f"field_{i}"] = one(*args)
            runs.append(time.perf_counter() - t0)
        # with repeats: the first run (JIT compilation) is a warm-up
        seconds.append(float(np.median(runs[1:] if repeats > 0 else runs)))
    np.savez(npz_in + ".out.npz", **fields)
    Path(json_out).write_text(
        json.dumps(
            {
                "seconds": seconds,
                "peak_mib": peak_rss_mib(),
                "peak_source": "VmHWM (reset)" if exact else "ru_maxrss",
                "jax": jax.__version__,
                "device": str(jax.devices()[0]),
            }
        )
    )


def run_sofima(
    items: list[tuple[np.ndarray, np.ndarray, np.ndarray]], repeats: int
) -> tuple[list[np.ndarray] | None, dict[str, Any]]:
    """Run :func:`sofima_worker` on ``items`` in ``SOFIMA_PYTHON``; (fields, info) or
    (None, {"skip": reason})."""
    python = os.environ.get("SOFIMA_PYTHON")
    if not python:
        return None, {"skip": "SOFIMA_PYTHON not set"}
    with tempfile.TemporaryDirectory() as tmp:
        npz = str(Path(tmp) / "pairs.npz")
        arrays = {}
        for i, (f, m, k) in enumerate(items):
            arrays.update({f"fixed_{i}": f, f"moving_{i}": m, f"mask_{i}": k})
        np.savez(npz, **arrays)
        out = str(Path(tmp) / "out.json")
        proc = subprocess.run(
            [python, __file__, "--sofima-worker", npz, out, str(repeats)],
            capture_output=True,
            text=True,
            check=False,
            timeout=3600,
        )
        if proc.returncode != 0:
            tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            return None, {"skip": f"SOFIMA failed: {tail}"}
        info = json.loads(Path(out).read_text())
        got = np.load(npz + ".out.npz")
        return [got[f"field_{i}"] for i in range(len(items))], info


def sofima_inputs(fixed: np.ndarray, glob: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """SOFIMA's input from an emkit global registration: (fixed, pre-aligned moving, mask)."""
    return (
        fixed.astype(np.float32),
        glob.warped.astype(np.float32),
        ~glob.valid,  # the defect and the area outside the moving image: no data
    )


# ---------------------------------------------------------------------------- probes


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


# ---------------------------------------------------------------------------- reports


def real_pairs(pairs: list[str], repeats: int) -> None:
    from emkit.register import register_pair, similarity, warp_image

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
        mems = {m: probe_in_subprocess([__file__, "--probe", m, name]) for m in METHODS}
        methods = list(METHODS)
        glob = register_pair(fixed, moving, defect_mask=mask, method="global-affine", refine="none")
        fields, info = run_sofima([sofima_inputs(fixed, glob)], repeats)
        if fields is None:
            print(f"   {SOFIMA}: skipped ({info['skip']})")
        else:
            from emkit.register._field import field_validity

            field = compose_affine(fields[0], glob.affines[0])
            valid = field_validity(field, mask, moving.shape)
            outputs[SOFIMA] = (warp_image(moving, field, valid=valid), valid, field)
            times[SOFIMA] = info["seconds"][0] + times["emkit global"]
            mems[SOFIMA] = {"peak_mib": info["peak_mib"], "increase_mib": float("nan")}
            methods.append(SOFIMA)
            print(f"   {SOFIMA}: jax {info['jax']} on {info['device']}")
        common = np.logical_and.reduce([outputs[m][1] for m in methods])
        rows = []
        for method in methods:
            mem = mems[method]
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
                    folded_percent(outputs[method][2], common),
                ]
            )
        print_table(
            ["method", "seconds", "x opencv", "peak MiB", "+MiB in run", "NCC", "SSIM", "folded %"],
            rows,
        )
        print(
            f"   NCC/SSIM on the {common.mean():.1%} of pixels all methods cover outside the "
            f"defect; memory: {mems['expected-affine'].get('peak_source', '?')} in a fresh "
            "process per method; folded %: pixels there where the field is not one-to-one "
            "(Jacobian determinant <= 0)"
        )


def synthetic(sizes: tuple[int, ...], seeds: tuple[int, ...]) -> None:
    from emkit.register import endpoint_error, register_pair
    from emkit.register._field import affine_field
    from emkit.sim.sections import section_texture, simulate_damaged_section

    names = ["expected-affine", "EA + elastic", "emkit global", "opencv global"]
    names += ["opencv DIS", "global + DIS"]
    scores: dict[tuple[int, str, float], dict[str, list[tuple[float, float]]]] = {}
    sofima_items, sofima_keys = [], []
    t_start = time.perf_counter()
    for size in sizes:
        for elastic_px in (8.0, 0.0):
            for kind in ("fold", "crack"):
                group = scores.setdefault((size, kind, elastic_px), {})
                for seed in seeds:
                    fixed = section_texture((size, size), seed=seed)
                    dmg = simulate_damaged_section(
                        fixed, kind=kind, seed=seed, elastic_px=elastic_px
                    )
                    moving, mask = dmg.moving, dmg.defect_mask
                    outside = dmg.true_valid & ~dmg.defect_mask_fixed
                    ea = register_pair(fixed, moving, defect_mask=mask)
                    glob = register_pair(
                        fixed, moving, defect_mask=mask, method="global-affine", refine="none"
                    )
                    _, cv_valid, cv_affine = opencv_global(fixed, moving, mask)
                    fields = {
                        "expected-affine": (ea.unrefined_field, ea.unrefined_valid),
                        "EA + elastic": (ea.field, ea.valid),
                        "emkit global": (glob.field, glob.valid),
                        "opencv global": (affine_field(cv_affine, (size, size)), cv_valid),
                        "opencv DIS": (dis_flow(fixed, moving, ~mask), np.True_),
                        "global + DIS": (global_dis(fixed, moving, glob), np.True_),
                    }
                    for name, (field, valid) in fields.items():
                        e = endpoint_error(field, dmg.true_field, valid=outside & valid)
                        group.setdefault(name, []).append((e["epe_mean_px"], e["epe_p95_px"]))
                    sofima_items.append(sofima_inputs(fixed, glob))
                    sofima_keys.append(((size, kind, elastic_px), glob.affines[0], dmg, outside))
    print(f"   (emkit and OpenCV: {time.perf_counter() - t_start:.0f} s for all pairs)")
    fields_s, info = run_sofima(sofima_items, 0)
    if fields_s is None:
        print(f"   {SOFIMA}: skipped ({info['skip']})")
    else:
        names.append(SOFIMA)
        for field, (key, affine, dmg, outside) in zip(fields_s, sofima_keys):
            e = endpoint_error(compose_affine(field, affine), dmg.true_field, valid=outside)
            scores[key].setdefault(SOFIMA, []).append((e["epe_mean_px"], e["epe_p95_px"]))
        print(
            f"   {SOFIMA}: jax {info['jax']} on {info['device']}, "
            f"{np.mean(info['seconds']):.1f} s per pair on average (JIT included)"
        )
    for which, label in ((0, "EPE mean"), (1, "EPE p95")):
        rows = []
        for (size, kind, elastic_px), group in scores.items():
            cells = [f"{size} {kind} elastic {elastic_px:g} px"]
            for name in names:
                vals = [v[which] for v in group[name]]
                cells.append(f"{np.mean(vals):.3f} [{np.max(vals):.3f}]")
            rows.append(cells)
        print(f"\n   {label} (px): mean over seeds {list(seeds)} [worst seed]")
        print_table(["pair"] + names, rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="DOLW7, 1 repeat, 512 px synthetic")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--pairs", nargs="*", choices=tuple(PAIRS), default=None)
    parser.add_argument(
        "--synthetic",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="endpoint error on simulated pairs with a known field (default: on)",
    )
    parser.add_argument("--sizes", nargs="*", type=int, default=None)
    parser.add_argument("--probe", nargs=2, metavar=("METHOD", "PAIR"), help=argparse.SUPPRESS)
    parser.add_argument("--sofima-worker", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.sofima_worker:
        sofima_worker(args.sofima_worker[0], args.sofima_worker[1], int(args.sofima_worker[2]))
        return
    if args.probe:
        probe(args.probe[0], args.probe[1])
        return
    pairs = args.pairs if args.pairs is not None else (["DOLW7"] if args.quick else list(PAIRS))
    repeats = 1 if args.quick else args.repeats
    real_pairs(pairs, repeats)
    if args.synthetic:
        sizes = tuple(args.sizes or ((512,) if args.quick else SYNTH_SIZES))
        print(f"\n== synthetic folds and cracks, sizes {list(sizes)}, seeds {list(SYNTH_SEEDS)}")
        synthetic(sizes, SYNTH_SEEDS)


if __name__ == "__main__":
    main()
