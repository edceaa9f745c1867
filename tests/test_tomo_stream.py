"""Streamed reconstruction into OME-Zarr: slab by slab it is the in-memory reconstruction."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from emkit.errors import InputError
from emkit.io import read_volume, write_volume
from emkit.io._zarr import read_zarr, zarr_levels
from emkit.tomo import StreamOptions, TiltSeriesSource, reconstruct, run_reconstruct_files
from emkit.tomo._files import beer_lambert
from emkit.tomo._stream import _rows_needed, make_plan, reconstruct_to_zarr, stream_memory_bytes

N_TILTS = 17
ANGLES = np.linspace(-60.0, 60.0, N_TILTS)


def _stack(ny: int, nx: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    data = rng.random((N_TILTS, ny, nx)).astype(np.float32) * 100 + 500
    return ndimage.uniform_filter(data, (1, 3, 3)).astype(np.float32)


@pytest.fixture(scope="module")
def series(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray, np.ndarray]:
    """A 17 x 150 x 64 series on disk (tall, so slabs read only part of each image)."""
    folder = tmp_path_factory.mktemp("stream")
    stack = _stack(150, 64)
    path = folder / "ts.mrc"
    write_volume(path, stack, stack=True, voxel_size=4.0)
    shifts = np.random.default_rng(1).normal(size=(N_TILTS, 2)) * 4
    return path, stack, shifts


def _streamed(path: Path, out: Path, rows: tuple[int, int], **kwargs) -> np.ndarray:
    stack_shape = read_volume(path, mmap=True).data.shape
    plan = make_plan(path, stack_shape, ANGLES, **kwargs)
    reconstruct_to_zarr(plan, out, rows=rows, voxel_size_A=1.0,
                        options=StreamOptions(slab_rows=5, n_workers=1))
    return read_volume(out).data


CASES = [
    # (method, binning, tilt-axis angle, use shifts, z offset)
    ("wbp", 1, 0.0, False, 0.0),
    ("wbp", 1, 0.0, True, 0.0),
    ("wbp", 2, 0.0, True, 3.0),
    ("wbp", 3, 7.5, True, 0.0),
    ("sirt", 2, 0.0, True, 0.0),
    ("sirt", 1, -4.0, True, 0.0),
]


@pytest.mark.parametrize(("method", "binning", "axis", "use_shifts", "z_offset"), CASES)
def test_streamed_equals_in_memory(series, tmp_path, method, binning, axis, use_shifts,
                                   z_offset):
    path, stack, shifts = series
    options = dict(method=method, thickness=24, binning=binning,
                   shifts_px=shifts if use_shifts else None, tilt_axis_angle_deg=axis,
                   iterations=4, z_offset_px=z_offset)
    ref = reconstruct(stack, ANGLES, device="cpu", **options)
    got = _streamed(path, tmp_path / "rec.ome.zarr", (0, 150 // binning), **options)
    assert got.shape == ref.shape and got.dtype == np.float32
    # The projector is bit-identical; only the spline prefilter of a cropped image differs
    # from the whole image's (by 0.268 ** 24 relative).
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-6 * np.abs(ref).max())


def test_integer_shifts_and_a_row_range(series, tmp_path):
    path, stack, shifts = series
    options = dict(method="wbp", thickness=16, shifts_px=np.round(shifts))
    ref = reconstruct(stack, ANGLES, device="cpu", y_range=(37, 101), **options)
    got = _streamed(path, tmp_path / "rows.ome.zarr", (37, 101), **options)
    np.testing.assert_array_equal(got, ref)


@pytest.mark.parametrize("flag", ["log", "invert"])
def test_log_and_invert_as_in_memory(series, tmp_path, flag):
    path, stack, shifts = series
    data = beer_lambert(stack, path) if flag == "log" else -stack
    ref = reconstruct(data, ANGLES, method="wbp", thickness=16, shifts_px=shifts, device="cpu")
    got = _streamed(path, tmp_path / f"{flag}.ome.zarr", (0, 150), method="wbp",
                    thickness=16, shifts_px=shifts, **{flag: True})
    # --log: each image's own I0 instead of the stack's; the median removes it to rounding.
    tol = 1e-5 if flag == "log" else 1e-6
    np.testing.assert_allclose(got, ref, rtol=0, atol=tol * np.abs(ref).max())


def test_a_slab_reads_only_its_rows(series):
    path, stack, shifts = series
    plan = make_plan(path, stack.shape, ANGLES, method="wbp", thickness=16, shifts_px=shifts)
    (r0, r1, c0, c1), _, _ = _rows_needed(plan, 3, (60, 70))
    assert r1 - r0 <= 10 + 2 * (24 + int(np.abs(shifts[3, 0])) + 1)
    assert r0 > 0 and r1 < 150 and (c0, c1) == (0, 64)


def test_memory_estimate_is_per_slab_not_per_stack():
    def need(ny: int, slab_rows: int) -> int:
        return stream_memory_bytes((61, ny, 4096), method="wbp", thickness=1024, binning=2,
                                   slab_rows=slab_rows)

    # Longer images along the axis need no more memory; thicker slabs do.
    assert need(4096, 32) == need(16384, 32) < need(4096, 64)


def test_files_and_two_workers(series, tmp_path):
    """The command path on a local cluster of two worker processes (a few seconds)."""
    path, stack, shifts = series
    (tmp_path / "ts.tlt").write_text("\n".join(f"{a:.2f}" for a in ANGLES) + "\n")
    source = TiltSeriesSource(path, tmp_path / "ts.tlt")
    out = tmp_path / "two.ome.zarr"
    result = run_reconstruct_files(source, out, thickness=16, binning=2,
                                   stream=StreamOptions(slab_rows=8, n_workers=2))
    ref = reconstruct(stack, np.round(ANGLES, 2), thickness=16, binning=2, device="cpu")
    got = read_volume(out)
    assert result.shape_zyx == ref.shape and result.record["streamed"]["slabs"] == 10
    assert got.voxel_size == pytest.approx((8.0, 8.0, 8.0))
    np.testing.assert_allclose(got.data, ref, rtol=0, atol=1e-6 * np.abs(ref).max())
    # The workers also built the lower levels, block by block: the same pyramid as an
    # OME-Zarr written in one process from the same level 0.
    whole = tmp_path / "whole.ome.zarr"
    write_volume(whole, got.data, voxel_size=8.0)
    levels = zarr_levels(out)
    assert len(levels) == len(zarr_levels(whole)) >= 2
    for level in range(1, len(levels)):
        np.testing.assert_array_equal(read_zarr(out, level=level).data,
                                      read_zarr(whole, level=level).data)
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_refusals(series, tmp_path):
    path, stack, _ = series
    with pytest.raises(InputError, match="cgls"):
        make_plan(path, stack.shape, ANGLES, method="cgls", thickness=8)
    source = TiltSeriesSource(path, tilt_axis="auto")
    (path.with_suffix(".tlt")).write_text("\n".join(str(a) for a in ANGLES) + "\n")
    with pytest.raises(InputError, match="auto"):
        run_reconstruct_files(source, tmp_path / "a.ome.zarr", thickness=8)
    with pytest.raises(InputError, match=r"\.ome\.zarr"):
        run_reconstruct_files(TiltSeriesSource(path), tmp_path / "a.mrc", thickness=8,
                              stream=StreamOptions(n_workers=2))
    with pytest.raises(InputError, match=r"--slab-rows.*\.ome\.zarr"):
        run_reconstruct_files(TiltSeriesSource(path), tmp_path / "a.mrc", thickness=8,
                              stream=StreamOptions(slab_rows=16))
    assert not any(tmp_path.iterdir())


def test_too_little_disk_for_the_scratch_and_the_output_is_refused_first(series, tmp_path,
                                                                         monkeypatch):
    from emkit.errors import DiskFullError
    from emkit.io import _tempfiles

    path, _, _ = series
    (path.with_suffix(".tlt")).write_text("\n".join(str(a) for a in ANGLES) + "\n")
    monkeypatch.setattr(_tempfiles, "_free_bytes", lambda _path: 10 * 2**20)
    with pytest.raises(DiskFullError, match="disk full"):
        run_reconstruct_files(TiltSeriesSource(path), tmp_path / "big.ome.zarr", thickness=600,
                              stream=StreamOptions(n_workers=1))
    assert not any(tmp_path.iterdir())


def test_a_plain_zarr_output_is_one_array(series, tmp_path):
    """``.zarr`` is one array everywhere in emkit (``.ome.zarr`` the multiscale image): a
    streamed run keeps to it and writes the same values as level 0 of an OME-Zarr."""
    import zarr

    path, _, shifts = series
    plain = _streamed(path, tmp_path / "plain.zarr", (0, 150), method="wbp", thickness=8,
                      shifts_px=shifts)
    ome = _streamed(path, tmp_path / "multi.ome.zarr", (0, 150), method="wbp", thickness=8,
                    shifts_px=shifts)
    assert isinstance(zarr.open(str(tmp_path / "plain.zarr"), mode="r"), zarr.Array)
    np.testing.assert_array_equal(plain, ome)
    assert read_volume(tmp_path / "plain.zarr").voxel_size == pytest.approx((1.0, 1.0, 1.0))
