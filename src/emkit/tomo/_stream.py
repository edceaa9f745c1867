"""Streamed reconstruction: a tilt series larger than memory, y-slab by y-slab, into OME-Zarr.

With a single tilt axis along y every y-slice of the tomogram depends only on the same rows
of the aligned projections, so WBP and SIRT of a slab of rows are exactly the slab of the
whole reconstruction. Each task reads the raw rows its slab needs (plus a margin for the
shift/rotation and the cubic spline), aligns, bins, filters and back-projects them, and
writes its rows of the tomogram into level 0 of the output (under its temporary name);
later tasks fill the lower resolution levels block by block; no task holds more than its
slab. The tasks run on a local Dask cluster or a running scheduler (:mod:`emkit.parallel`);
the workers read the input and write the output by path, so with a remote scheduler they
need the same file system.

A slab gives the in-memory :func:`emkit.tomo.reconstruct` result to float rounding: the
projector products are bit-identical, and the spline prefilter of a cropped image differs
from the whole image's by ``0.268 ** 24`` (1e-14) relative at the margin kept.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from emkit.errors import InputError
from emkit.tomo._reconstruct import reconstruct_sirt, reconstruct_wbp, reconstruction_shifts

# The cubic spline prefilter's response falls by 0.268 per pixel: 24 px of margin around
# the rows a slab needs make a cropped image's interpolation equal the whole image's to 1e-14.
_SPLINE_MARGIN_PX = 24
# Float32 bytes the pre-pass over the stack reads at once (per-image background and mean):
# 4 images of 2048^2, one of 4096^2 (it holds a few copies of them).
_PREPASS_BYTES = 64 << 20
STREAM_METHODS = ("wbp", "sirt")


@dataclass(frozen=True)
class StreamPlan:
    """What every slab task needs (picklable, sent to the workers once per task).

    ``background`` and ``fill`` are per image (the median subtracted first, and the mean of
    the image after that, which fills where the alignment brings in no data); ``shifts_px``
    already hold the slab offset and the binning-centre correction.
    """

    path: str
    raw_shape: tuple[int, int, int]
    angles_deg: np.ndarray
    background: np.ndarray
    fill: np.ndarray
    log_i0: np.ndarray | None
    invert: bool
    shifts_px: np.ndarray
    tilt_axis_angle_deg: float
    binning: int
    nz: int
    method: str
    iterations: int
    window: str
    cutoff: float
    store: str
    first_row: int
    threads: int
    device: str | None = "cpu"

    @property
    def binned_shape(self) -> tuple[int, int]:
        """``(ny, nx)`` of the cropped, binned images."""
        _, ny, nx = self.raw_shape
        return ny // self.binning, nx // self.binning


@dataclass
class StreamResult:
    """The tomogram written (``shape_zyx``) and where the time went, per slab task."""

    shape_zyx: tuple[int, int, int]
    n_slabs: int
    slab_seconds: list[float]
    reconstruct_s: float
    write_s: float  # the lower resolution levels (level 0 is written by the slab tasks)


# --------------------------------------------------------------------------- reading


def _preprocess(raw: np.ndarray, plan: StreamPlan, images: slice | np.ndarray) -> np.ndarray:
    """Raw values as stored -> the float32 projections ``reconstruct`` starts from."""
    data = np.asarray(raw, dtype=np.float32)
    if plan.log_i0 is not None:
        i0 = plan.log_i0[images].reshape(-1, 1, 1)
        data = (-np.log(data.astype(np.float64) / i0)).astype(np.float32)
    if plan.invert:
        data = -data
    return data - plan.background[images].reshape(-1, 1, 1).astype(np.float32)


def image_statistics(
    path: Path, n_images: int, *, log: bool, invert: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """One pass over the stack, a few images at a time: background, fill and log ``I0``.

    Refuses (one line naming ``path``) NaN or infinite values and, with ``log``,
    intensities that are not all positive. ``I0`` of ``-ln(I / I0)`` is each image's 99.9th
    percentile: it only adds a constant per image, which the median removes (the in-memory
    path takes the whole stack's; the tomograms agree to float rounding).
    """
    from emkit.io import read_volume, require_finite
    from emkit.tomo._files import _LOG_I0_PERCENTILE, require_positive_for_log
    from emkit.tomo._transform import projection_background

    background = np.zeros(n_images)
    fill = np.zeros(n_images)
    log_i0 = np.ones(n_images) if log else None
    image_bytes = 4 * int(np.prod(read_volume(path, mmap=True).data.shape[1:], dtype=np.int64))
    per_read = max(1, _PREPASS_BYTES // max(1, image_bytes))
    for start in range(0, n_images, per_read):
        part = slice(start, min(n_images, start + per_read))
        # A fresh mapping per read, dropped after it: resident pages do not pile up.
        raw = np.asarray(read_volume(path, mmap=True).data[part], dtype=np.float32)
        require_finite(raw, path, "tilt series")
        if log_i0 is not None:
            require_positive_for_log(float(raw.min()), path)
            flat = raw.reshape(len(raw), -1)
            log_i0[part] = np.percentile(flat, _LOG_I0_PERCENTILE, axis=1)
            raw = (-np.log(raw.astype(np.float64) / log_i0[part, None, None])).astype(np.float32)
        if invert:
            raw = -raw
        background[part] = projection_background(raw)
        centred = raw - background[part, None, None].astype(np.float32)
        fill[part] = [float(image.mean()) for image in centred]
    return background, fill, log_i0


def _rows_needed(
    plan: StreamPlan, image: int, rows: tuple[int, int]
) -> tuple[tuple[int, int, int, int], np.ndarray, np.ndarray]:
    """Raw box ``(r0, r1, c0, c1)`` that aligned ``rows`` of ``image`` read, and the affine map."""
    from emkit.geometry import tilt_axis_rotation_xy
    from emkit.tomo._transform import _affine_yx, image_center

    _, ny, nx = plan.raw_shape
    a, b = rows
    shift = plan.shifts_px[image]
    matrix, offset = _affine_yx(
        tilt_axis_rotation_xy(plan.tilt_axis_angle_deg), shift, image_center(plan.raw_shape)
    )
    corners = np.array([[a, a, b - 1, b - 1], [0, nx - 1, 0, nx - 1]], dtype=np.float64)
    src = matrix @ corners + offset[:, None]
    m = _SPLINE_MARGIN_PX
    lo, hi = src.min(axis=1), src.max(axis=1)
    box = (
        max(0, int(np.floor(lo[0])) - m), min(ny, int(np.ceil(hi[0])) + m + 1),
        max(0, int(np.floor(lo[1])) - m), min(nx, int(np.ceil(hi[1])) + m + 1),
    )
    if plan.tilt_axis_angle_deg == 0.0 and np.all(shift == np.round(shift)):
        # An integer shift is a copy in place of the crop: it must hold the output rows too.
        box = (min(box[0], a), max(box[1], b), 0, nx)
    return box, matrix, offset


def _aligned_rows(plan: StreamPlan, image: int, rows: tuple[int, int]) -> np.ndarray:
    """Rows ``a:b`` of aligned image ``image`` (full width), as transform_images makes them."""
    from scipy import ndimage

    from emkit.io import read_volume
    from emkit.tomo._transform import _integer_shift

    (r0, r1, c0, c1), matrix, offset = _rows_needed(plan, image, rows)
    a, b = rows
    nx = plan.raw_shape[2]
    cval = float(plan.fill[image])
    if r1 <= r0 or c1 <= c0:  # nothing of the raw image lands in these rows
        return np.full((b - a, nx), cval, np.float32)
    raw = read_volume(plan.path, mmap=True).data[image : image + 1, r0:r1, c0:c1]
    crop = _preprocess(raw, plan, np.array([image]))[0]
    shift = plan.shifts_px[image]
    if plan.tilt_axis_angle_deg == 0.0 and np.all(shift == np.round(shift)):
        shifted = _integer_shift(crop, shift.astype(int), cval)
        return np.asarray(shifted[a - r0 : b - r0], dtype=np.float32)
    local = matrix @ np.array([a, 0.0]) + offset - np.array([r0, c0], dtype=np.float64)
    if plan.tilt_axis_angle_deg == 0.0:
        # A diagonal matrix runs the same interpolation as ndimage.shift, on the output
        # rows only (not on the margin around them).
        matrix = np.ones(2)
    out = ndimage.affine_transform(
        crop, matrix, offset=local, output_shape=(b - a, nx), order=3, mode="constant", cval=cval
    )
    return np.asarray(out, dtype=np.float32)


def _unbinned_rows(plan: StreamPlan, rows_binned: tuple[int, int]) -> tuple[tuple[int, int], slice]:
    """Aligned rows ``(a, b)`` of binned rows ``y0:y1``, and the columns the binning keeps
    (the images are cropped centrally to multiples of the binning first)."""
    b = plan.binning
    _, ny, nx = plan.raw_shape
    ry, rx = ny % b, nx % b
    a = ry // 2 + rows_binned[0] * b
    return (a, a + (rows_binned[1] - rows_binned[0]) * b), slice(rx // 2, nx - (rx - rx // 2))


def slab_projections(plan: StreamPlan, rows_binned: tuple[int, int]) -> np.ndarray:
    """The aligned, binned projections of binned rows ``y0:y1`` (n, y1 - y0, nx_binned)."""
    from emkit.ops import bin_image

    rows, columns = _unbinned_rows(plan, rows_binned)
    aligned = np.stack([_aligned_rows(plan, i, rows) for i in range(plan.raw_shape[0])])
    aligned = aligned[:, :, columns]
    if plan.binning > 1:
        aligned = bin_image(aligned, plan.binning) / np.float32(plan.binning)
    return np.ascontiguousarray(aligned, dtype=np.float32)


def slab_masks(plan: StreamPlan, rows_binned: tuple[int, int]) -> np.ndarray:
    """Validity masks of binned rows ``y0:y1`` (SIRT ignores data brought in from outside)."""
    from emkit.ops import bin_image
    from emkit.tomo._transform import validity_masks

    rows, columns = _unbinned_rows(plan, rows_binned)
    masks = validity_masks(plan.raw_shape, plan.shifts_px, rows=rows,
                           tilt_axis_angle_deg=plan.tilt_axis_angle_deg)
    masks = masks[:, :, columns].astype(np.float32)
    return masks > 0.5 if plan.binning == 1 else bin_image(masks, plan.binning) > 0.999


# --------------------------------------------------------------------------- one slab


def reconstruct_slab(task: tuple[StreamPlan, int, int]) -> float:
    """Reconstruct binned rows ``y0:y1`` and write them into the plan's store; seconds taken.

    A module-level function of one picklable argument: the unit of work of a Dask worker.
    """
    import zarr

    from emkit.parallel import limit_threads

    plan, y0, y1 = task
    start = time.perf_counter()
    with limit_threads(plan.threads):
        proj = slab_projections(plan, (y0, y1))
        if plan.method == "wbp":
            volume = reconstruct_wbp(
                proj, plan.angles_deg, thickness=plan.nz, window=plan.window,
                cutoff=plan.cutoff, device=plan.device,
            )
        else:
            volume = reconstruct_sirt(
                proj, plan.angles_deg, thickness=plan.nz, iterations=plan.iterations,
                masks=slab_masks(plan, (y0, y1)), device=plan.device,
            )
    store = zarr.open_array(plan.store, mode="r+")
    store[:, y0 - plan.first_row : y1 - plan.first_row] = volume
    return time.perf_counter() - start


# --------------------------------------------------------------------------- the whole run


def slab_bounds(rows: tuple[int, int], slab_rows: int) -> list[tuple[int, int]]:
    """``[(y0, y1), ...]`` covering ``rows``, each ``slab_rows`` long (the last shorter)."""
    y0, y1 = rows
    return [(a, min(a + slab_rows, y1)) for a in range(y0, y1, slab_rows)]


def run_slabs(
    plan: StreamPlan,
    slabs: list[tuple[int, int]],
    *,
    scheduler: Any = None,
    n_workers: int | None = None,
    progress: bool = False,
) -> list[float]:
    """Every slab task on the cluster (or in this process for one worker); seconds each."""
    from emkit.parallel import map_inputs

    tasks = [(plan, y0, y1) for y0, y1 in slabs]
    return map_inputs(
        reconstruct_slab, tasks, scheduler=scheduler, n_workers=n_workers, progress=progress,
        desc=plan.method,
    )


DEFAULT_SLAB_ROWS = 32


@dataclass(frozen=True)
class StreamOptions:
    """How to run a streamed reconstruction: slab size, workers, cluster."""

    slab_rows: int | None = None  # None: DEFAULT_SLAB_ROWS
    scheduler: Any = None
    n_workers: int | None = None
    threads_per_worker: int | None = None
    progress: bool = False

    @property
    def rows_per_slab(self) -> int:
        """Binned y rows per task: ``slab_rows`` as given, or ``DEFAULT_SLAB_ROWS``."""
        return DEFAULT_SLAB_ROWS if self.slab_rows is None else int(self.slab_rows)


def threads_per_worker(options: StreamOptions) -> int:
    """Threads each task uses: given, or this machine's cores shared by the local workers."""
    from emkit.parallel import default_n_workers

    if options.threads_per_worker is not None:
        return max(1, int(options.threads_per_worker))
    if options.scheduler is not None:
        return 1  # a remote worker's cores are its own threads' business
    cores = default_n_workers()
    return max(1, cores // max(1, options.n_workers or cores))


def _pyramid_tasks(path: Path, shapes: list[tuple[int, ...]], slab_rows: int, level: int
                   ) -> list[tuple[str, int, int, int]]:
    """Tasks filling level ``level`` in blocks of whole chunk rows (``slab_rows`` of its y)."""
    ny = shapes[level][1]
    return [(str(path), level, y0, min(y0 + slab_rows, ny)) for y0 in range(0, ny, slab_rows)]


def fill_pyramid_block(task: tuple[str, int, int, int]) -> float:
    """One block of a lower resolution level (a Dask task of one picklable argument)."""
    from emkit.io._zarr import fill_ome_zarr_level

    path, level, y0, y1 = task
    start = time.perf_counter()
    fill_ome_zarr_level(path, level, (y0, y1))
    return time.perf_counter() - start


def reconstruct_to_zarr(
    plan: StreamPlan,
    output: Path,
    *,
    rows: tuple[int, int],
    voxel_size_A: float,
    options: StreamOptions,
) -> StreamResult:
    """Run every slab of binned ``rows`` and write the OME-Zarr ``output`` (atomically).

    The workers write their slabs straight into level 0 of the OME-Zarr (one chunk row
    per slab, so no two tasks share a chunk), then fill the lower levels block by block,
    in parallel too; the folder gets its final name only when all of it is written. An
    ``output`` ending in ``.zarr`` but not ``.ome.zarr`` is one plain array (no levels).
    """
    import dataclasses

    from emkit.io import atomic_output
    from emkit.io._zarr import create_ome_zarr, create_plain_zarr
    from emkit.parallel import map_inputs, shared_scheduler

    shape = (plan.nz, rows[1] - rows[0], plan.binned_shape[1])
    slab_rows = options.rows_per_slab
    voxels = int(np.prod(shape, dtype=np.int64))
    # level 0 and the smaller levels (at most 1/7 more), uncompressed at worst
    chunks = (min(plan.nz, 64), slab_rows, min(shape[2], 256))
    ome = output.name.lower().endswith(".ome.zarr")  # else one plain array, as write_volume
    with atomic_output(output, directory=True, size_bytes=4 * voxels * 8 // 7) as tmp:
        if ome:
            shapes = create_ome_zarr(
                tmp, shape, np.float32, voxel_size=(voxel_size_A,) * 3,
                origin=(0.0, 0.0, 0.0), chunks=chunks, name=output.name.split(".")[0],
            )
        else:
            create_plain_zarr(tmp, shape, np.float32, voxel_size=(voxel_size_A,) * 3,
                              origin=(0.0, 0.0, 0.0), chunks=chunks)
            shapes = [shape]
        plan = dataclasses.replace(
            plan, store=str(tmp / "0") if ome else str(tmp), first_row=rows[0],
            threads=threads_per_worker(options),
        )
        slabs = slab_bounds(rows, slab_rows)
        with shared_scheduler(options.scheduler, n_workers=options.n_workers,
                              n_jobs=len(slabs)) as scheduler:
            t0 = time.perf_counter()
            seconds = run_slabs(plan, slabs, scheduler=scheduler,
                                n_workers=options.n_workers, progress=options.progress)
            t1 = time.perf_counter()
            for level in range(1, len(shapes)):
                map_inputs(fill_pyramid_block, _pyramid_tasks(tmp, shapes, slab_rows, level),
                           scheduler=scheduler, n_workers=options.n_workers)
            t2 = time.perf_counter()
    return StreamResult(shape, len(slabs), list(seconds), t1 - t0, t2 - t1)


def make_plan(
    path: Path,
    raw_shape: tuple[int, int, int],
    angles_deg: np.ndarray,
    *,
    method: str,
    thickness: int,
    binning: int = 1,
    shifts_px: np.ndarray | None = None,
    tilt_axis_angle_deg: float = 0.0,
    iterations: int | None = None,
    cutoff: float = 1.0,
    window: str = "hann",
    z_offset_px: float = 0.0,
    log: bool = False,
    invert: bool = False,
    device: str | None = "cpu",
) -> StreamPlan:
    """Check the request and make one pass over the stack for the per-image statistics.

    ``device`` is the torch device of each slab's projector (None: CUDA when a worker's
    torch sees one); the alignment and filtering run on the CPU.
    """
    if method not in STREAM_METHODS:
        raise InputError(
            f"a streamed reconstruction runs {' or '.join(STREAM_METHODS)}, not {method!r} "
            "(CGLS couples all slabs); write an .mrc for --method cgls"
        )
    if binning < 1:
        raise InputError(f"binning must be >= 1, got {binning}")
    nz = int(thickness) // binning
    if nz < 1:
        raise InputError(f"thickness {thickness} is less than one binned voxel ({binning} px)")
    angles = np.asarray(angles_deg, dtype=np.float64)
    background, fill, log_i0 = image_statistics(path, raw_shape[0], log=log, invert=invert)
    shifts = reconstruction_shifts(shifts_px, angles, raw_shape, binning=binning,
                                   z_offset_px=z_offset_px)
    return StreamPlan(
        path=str(path), raw_shape=raw_shape, angles_deg=angles, background=background,
        fill=fill, log_i0=log_i0, invert=invert, shifts_px=shifts,
        tilt_axis_angle_deg=float(tilt_axis_angle_deg), binning=int(binning), nz=nz,
        method=method, iterations=50 if iterations is None else int(iterations),
        window=window, cutoff=float(cutoff), store="", first_row=0, threads=1, device=device,
    )


def stream_memory_bytes(
    raw_shape: tuple[int, int, int],
    *,
    method: str,
    thickness: int,
    binning: int,
    slab_rows: int,
    largest_shift_px: float = 0.0,
) -> int:
    """Peak bytes of one worker: the projector matrix (built once per worker process) and
    one slab's raw rows, aligned images and volumes.

    ``A.T`` holds about 16 bytes per (tilt x z x x) voxel and is built a group of tilts at
    a time, each group dropped once copied: 24 bytes per voxel covers the build (measured:
    a 61 x 4096^2 series to bin 2 peaks at 1.69 GB per worker, this says 2.3 GB); SIRT
    holds ``A`` too (48 bytes per voxel); a slab
    reads ``slab_rows * binning`` rows plus the shift and the spline margin from every
    image and holds about three float32 copies of them, and 3 (WBP) or 5 (SIRT) volumes of
    the slab.
    """
    n, ny, nx = raw_shape
    nz, nxb = thickness // binning, nx // binning
    raw_rows = min(ny, slab_rows * binning + 2 * (_SPLINE_MARGIN_PX + int(largest_shift_px) + 1))
    volumes = 3 if method == "wbp" else 5
    matrix = 24 if method == "wbp" else 48  # SIRT also holds A
    return int(matrix * n * nz * nxb + 4 * 3 * n * raw_rows * nx
               + 4 * volumes * nz * slab_rows * nxb)


def require_stream_memory(
    raw_shape: tuple[int, int, int],
    require_memory: Any,
    *,
    method: str,
    thickness: int,
    binning: int,
    options: StreamOptions,
    shifts_px: np.ndarray | None,
) -> None:
    """Refuse, before the work, a streamed run whose local workers cannot fit in memory."""
    from emkit.parallel import default_n_workers

    largest = 0.0 if shifts_px is None else float(np.abs(shifts_px).max())
    per_worker = stream_memory_bytes(raw_shape, method=method, thickness=thickness,
                                     binning=binning, slab_rows=options.rows_per_slab,
                                     largest_shift_px=largest)
    # The workers of a running scheduler use their own machines' memory.
    workers = 0 if options.scheduler is not None else options.n_workers or default_n_workers()
    n, ny, nx = raw_shape
    require_memory(
        per_worker * workers,
        f"{workers} worker(s) streaming a {thickness // binning} x {ny // binning} x "
        f"{nx // binning} tomogram in slabs of {options.rows_per_slab} rows",
        "use fewer --workers, a smaller --slab-rows, a larger --bin or a smaller --thickness",
    )
