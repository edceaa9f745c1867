"""Benchmark: emkit's single-axis projector against ASTRA (CPU 2D) and scikit-image.

Same process, same seeded random float32 volume (size^3), ``--tilts`` tilts over ±60°.
Times forward projection and back-projection (median of ``--repeats`` runs; emkit's
operator build is timed separately), prints ratios peer / emkit, the peak memory of each
method (RSS high-water mark from ``getrusage`` in a fresh subprocess per method, minus the
same process's RSS just before the projection), and checks that emkit's and ASTRA's
sinograms agree once the geometry is matched.

    python benchmarks/projector.py            # 256^3, 61 tilts
    python benchmarks/projector.py --quick    # 128^3 smoke run
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
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

METHODS = ("emkit", "torch-sparse", "astra", "skimage")


def _volume(n: int) -> np.ndarray:
    return np.random.default_rng(0).random((n, n, n), dtype=np.float32)


def _angles(n_tilts: int) -> np.ndarray:
    return np.linspace(-60.0, 60.0, n_tilts)


# ---------------------------------------------------------------- the methods
class _Emkit:
    name = "emkit (scipy CSR, threaded)"

    def __init__(self, n: int, angles: np.ndarray) -> None:
        from emkit.ops.single_axis import SingleAxisProjector, _clear_matrix_cache

        _clear_matrix_cache()
        t0 = time.perf_counter()
        self.p = SingleAxisProjector((n, n, n), angles, device="cpu")
        for adjoint in (False, True):  # build A and A.T now, not in the first call
            self.p._product(adjoint=adjoint)
        self.build_s = time.perf_counter() - t0

    def forward(self, vol: np.ndarray) -> np.ndarray:
        return self.p.forward(vol)

    def back(self, sino: np.ndarray) -> np.ndarray:
        return self.p.adjoint(sino)


class _TorchSparse:
    """The same matrix as emkit, applied with torch's CPU sparse CSR kernels (for the choice)."""

    name = "torch.sparse CSR (same A)"

    def __init__(self, n: int, angles: np.ndarray) -> None:
        import torch

        from emkit.ops import single_axis_system_matrix

        a = single_axis_system_matrix((n, n), angles)
        a_t = a.T.tocsr()

        def to_torch(m: Any) -> Any:
            return torch.sparse_csr_tensor(
                torch.from_numpy(m.indptr.astype(np.int64)),
                torch.from_numpy(m.indices.astype(np.int64)),
                torch.from_numpy(m.data),
                size=m.shape,
            )

        self.a, self.a_t = to_torch(a), to_torch(a_t)
        self.n, self.t = n, len(angles)
        self.build_s = float("nan")

    def forward(self, vol: np.ndarray) -> np.ndarray:
        import torch

        n, t = self.n, self.t
        v = torch.from_numpy(vol).permute(0, 2, 1).reshape(n * n, n)
        return (self.a @ v).view(t, n, n).transpose(1, 2).contiguous().numpy()

    def back(self, sino: np.ndarray) -> np.ndarray:
        import torch

        n, t = self.n, self.t
        s = torch.from_numpy(sino).permute(0, 2, 1).reshape(t * n, n)
        return (self.a_t @ s).view(n, n, n).transpose(1, 2).contiguous().numpy()


class _Astra:
    """ASTRA's CPU 'linear' (Joseph) 2D projector looped over the y-slices.

    Each y-slice is the 2D image with rows = z and columns = x. ASTRA's image y axis points
    up the rows (row 0 is +y), so emkit's angle θ is ASTRA's -θ.
    """

    name = "ASTRA CPU 2D 'linear', loop over y"

    def __init__(self, n: int, angles: np.ndarray) -> None:
        import astra

        self.astra = astra
        self.n, self.t = n, len(angles)
        vg = astra.create_vol_geom(n, n)
        pg = astra.create_proj_geom("parallel", 1.0, n, np.deg2rad(-angles))
        self.proj_id = astra.create_projector("linear", pg, vg)
        self.vol_id = astra.data2d.create("-vol", vg, 0.0)
        self.sino_id = astra.data2d.create("-sino", pg, 0.0)
        fp = astra.astra_dict("FP")
        fp.update(ProjectorId=self.proj_id, VolumeDataId=self.vol_id, ProjectionDataId=self.sino_id)
        bp = astra.astra_dict("BP")
        bp.update(ProjectorId=self.proj_id, ReconstructionDataId=self.vol_id)
        bp.update(ProjectionDataId=self.sino_id)
        self.fp_id = astra.algorithm.create(fp)
        self.bp_id = astra.algorithm.create(bp)
        self.build_s = float("nan")

    def forward(self, vol: np.ndarray) -> np.ndarray:
        a = self.astra
        out = np.empty((self.t, self.n, self.n), np.float32)
        for y in range(vol.shape[1]):
            a.data2d.store(self.vol_id, vol[:, y, :])
            a.algorithm.run(self.fp_id)
            out[:, y, :] = a.data2d.get_shared(self.sino_id)
        return out

    def back(self, sino: np.ndarray) -> np.ndarray:
        a = self.astra
        out = np.empty((self.n, self.n, self.n), np.float32)
        for y in range(sino.shape[1]):
            a.data2d.store(self.sino_id, sino[:, y, :])
            a.algorithm.run(self.bp_id)
            out[:, y, :] = a.data2d.get_shared(self.vol_id)
        return out


class _Skimage:
    """scikit-image ``radon`` / unfiltered ``iradon`` on a subset of slices, scaled up."""

    name = "skimage radon/iradon (no filter)"

    def __init__(self, n: int, angles: np.ndarray, n_slices: int) -> None:
        self.angles = angles
        self.n = n
        self.n_slices = min(n_slices, n)
        self.build_s = float("nan")

    def forward(self, vol: np.ndarray) -> list[np.ndarray]:
        from skimage.transform import radon

        return [
            radon(vol[:, y, :], self.angles, circle=False, preserve_range=True)
            for y in range(self.n_slices)
        ]

    def back(self, sinos: list[np.ndarray]) -> list[np.ndarray]:
        from skimage.transform import iradon

        return [
            iradon(s, self.angles, filter_name=None, circle=False, output_size=self.n)
            for s in sinos
        ]


def _make(method: str, n: int, angles: np.ndarray, skimage_slices: int) -> Any:
    if method == "emkit":
        return _Emkit(n, angles)
    if method == "torch-sparse":
        return _TorchSparse(n, angles)
    if method == "astra":
        return _Astra(n, angles)
    return _Skimage(n, angles, skimage_slices)


def _astra_available() -> bool:
    try:
        import astra  # noqa: F401
    except ImportError:
        return False
    return True


# ---------------------------------------------------------------- memory probe
def _probe(method: str, n: int, n_tilts: int, skimage_slices: int) -> None:
    import torch  # imported before the baseline so that its own footprint is not counted

    del torch
    warnings.filterwarnings("ignore", message="Sparse")
    vol = _volume(n)
    angles = _angles(n_tilts)
    reset = reset_peak_rss()
    before = current_rss_mib() if reset else peak_rss_mib()
    m = _make(method, n, angles, skimage_slices)
    sino = m.forward(vol)
    m.back(sino)
    emit_probe({"baseline_mib": before, "peak_mib": peak_rss_mib()})


# ---------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256, help="volume edge in voxels (256)")
    parser.add_argument("--tilts", type=int, default=61, help="number of tilts over ±60° (61)")
    parser.add_argument("--quick", action="store_true", help="128^3 smoke run")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per method (3)")
    parser.add_argument(
        "--skimage-slices", type=int, default=8, help="slices timed for scikit-image (8)"
    )
    parser.add_argument("--no-memory", action="store_true", help="skip the memory probes")
    parser.add_argument("--probe", choices=METHODS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    n = 128 if args.quick else args.size
    if args.probe:
        _probe(args.probe, n, args.tilts, args.skimage_slices)
        return 0

    import torch

    warnings.filterwarnings("ignore", message="Sparse")
    vol = _volume(n)
    angles = _angles(args.tilts)
    print(f"volume {n}^3 float32 (seeded random), {args.tilts} tilts over ±60°, "
          f"{torch.get_num_threads()} torch/emkit threads; median of {args.repeats} runs")

    methods = ["emkit", "torch-sparse"]
    if _astra_available():
        methods.append("astra")
    else:
        print("astra not installed: pip install emkit[astra]")
    methods.append("skimage")

    results: dict[str, dict[str, Any]] = {}
    outputs: dict[str, tuple[Any, Any]] = {}
    for method in methods:
        m = _make(method, n, angles, args.skimage_slices)
        repeats = 1 if method == "skimage" else args.repeats
        sino = m.forward(vol)
        back = m.back(sino)
        fwd_s = median_time(lambda m=m: m.forward(vol), repeats=repeats)
        back_s = median_time(lambda m=m, s=sino: m.back(s), repeats=repeats)
        note = ""
        if method == "skimage":
            scale = n / m.n_slices
            fwd_s, back_s = fwd_s * scale, back_s * scale
            note = f"timed on {m.n_slices} of {n} slices, scaled x{scale:g}"
        elif method == "astra":
            note = "single-threaded"
        elif method == "emkit":
            a = m.p.matrix
            note = (f"build {m.build_s:.2f} s; A {a.nnz / 1e6:.1f} M nonzeros; "
                    f"A + A.T {m.p.nbytes / 2**20:.0f} MiB")
        results[method] = {"name": m.name, "fwd": fwd_s, "back": back_s, "note": note}
        outputs[method] = (sino, back)
        del m

    if not args.no_memory:
        script = str(Path(__file__).resolve())
        for method in methods:
            r = probe_in_subprocess(
                [script, "--probe", method, "--size", str(n), "--tilts", str(args.tilts),
                 "--skimage-slices", str(args.skimage_slices)]
            )
            if "error" in r:
                results[method]["mem"] = f"error: {r['error']}"
            else:
                results[method]["mem"] = f"{r['peak_mib'] - r['baseline_mib']:.0f}"
                results[method]["mem_total"] = f"{r['peak_mib']:.0f}"

    ref = results["emkit"]
    rows = []
    for method in methods:
        r = results[method]
        rows.append([
            r["name"], r["fwd"], r["back"], r["fwd"] / ref["fwd"], r["back"] / ref["back"],
            r.get("mem", "-"), r.get("mem_total", "-"), r["note"],
        ])
    print()
    print_table(
        ["method", "forward s", "back s", "fwd ratio", "back ratio",
         "extra peak MiB", "peak RSS MiB", "note"],
        rows,
    )
    print("ratio = method time / emkit time (>1: emkit is faster).\nMemory: a fresh process "
          "per method loads torch and the volume, resets its RSS high-water mark (Linux "
          "clear_refs), sets the method up and runs one forward + back projection; 'extra' is "
          "the high-water mark (VmHWM) minus the RSS before set-up. skimage runs only its "
          "timed subset of slices.")

    if "astra" in outputs:
        s_e, b_e = outputs["emkit"]
        s_a, b_a = outputs["astra"]
        rel_f = np.linalg.norm(s_e - s_a) / np.linalg.norm(s_a)
        rel_b = np.linalg.norm(b_e - b_a) / np.linalg.norm(b_a)
        print(f"\nemkit vs ASTRA (emkit angle θ = ASTRA angle -θ, slice rows = z): relative "
              f"difference of sinograms {rel_f:.2e}, of back-projections {rel_b:.2e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
