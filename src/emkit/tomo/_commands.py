"""The tomo commands on files: prealign, align and reconstruct a tilt series on disk.

Each ``run_*_files`` function validates its inputs (before any work), runs the step and
writes IMOD-compatible outputs through the emkit.io writers, and returns a small result
with the paths written and the numbers worth keeping in a run record.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from emkit.tomo._files import (
    DeviceCheck,
    MemoryCheck,
    TiltSeriesFile,
    TiltSeriesSource,
    alignment_outputs,
    check_alignment_options,
    check_binning,
    input_record,
    no_device_check,
    no_memory_check,
    parse_tilt_axis,
    read_alignment,
    read_mask_stack,
    require_prealign_memory,
    require_tomo_memory,
    thickness_px,
    write_alignment,
)
from emkit.tomo._stream import StreamOptions

PlotIteration = Callable[..., None]
"""``plot(path, volume, shifts_px, tilt_angles_deg, record=record)`` draws one iteration."""


@dataclass
class PrealignFilesResult:
    """What ``run_prealign_files`` wrote (``paths``) and measured (``record``)."""

    n_images: int
    tilt_axis_angle_deg: float
    largest_shift_px: float
    paths: dict[str, Path]
    record: dict[str, Any]


@dataclass
class AlignFilesResult:
    """What ``run_align_files`` wrote (``paths``), measured (``record``) and ran (``history``)."""

    paths: dict[str, Path]
    record: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class ReconstructFilesResult:
    """The tomogram written to ``output``: its shape (z, y, x) and voxel size (Å)."""

    output: Path
    shape_zyx: tuple[int, ...]
    voxel_size_A: float
    record: dict[str, Any]


def run_prealign_files(
    source: TiltSeriesSource,
    output_dir: Path,
    *,
    binning: int = 1,
    max_shift_px: float | None = None,
    lowpass: float = 0.15,
    fill: str = "mean",
    progress: bool = False,
    require_memory: MemoryCheck = no_memory_check,
) -> PrealignFilesResult:
    """Pre-align ``tilts``; write ``output_dir/<stem>.xf`` and ``<stem>_ali.mrc``.

    ``fill`` (``"mean"`` or ``"zero"``) is what the aligned stack holds outside the data.
    """
    from emkit.tomo._prealign import prealign

    series = source.read()
    check_binning("--bin", [binning], series)
    require_prealign_memory(series, require_memory)
    paths = alignment_outputs(output_dir, series.stem, [series.path, series.angles_path])
    axis = parse_tilt_axis(source.tilt_axis)
    start = time.perf_counter()
    result = prealign(
        series.stack,
        series.angles,
        binning=binning,
        tilt_axis_angle_deg=axis,
        max_shift_px=max_shift_px,
        lowpass=lowpass,
        progress=progress,
    )
    write_alignment(paths, series, result.shifts_px, result.tilt_axis_angle_deg, fill=fill)
    largest_shift_px = float(np.abs(result.shifts_px).max())
    record = {
        "input": input_record(series),
        "tilt_axis_angle_deg": result.tilt_axis_angle_deg,
        "largest_shift_px": largest_shift_px,
        "lowest_peak": float(result.peaks.min()),
        "seconds": round(time.perf_counter() - start, 2),
        "outputs": {k: str(v) for k, v in paths.items() if k != "tomogram"},
    }
    return PrealignFilesResult(
        len(series.angles), result.tilt_axis_angle_deg, largest_shift_px, paths, record
    )


# --------------------------------------------------------------------------- align


@dataclass
class _AlignSetUp:
    series: TiltSeriesFile
    paths: dict[str, Path]
    thickness: int
    levels: list[int]
    iterations: int | list[int] | None
    masks: np.ndarray | None


def _set_up_align(
    source: TiltSeriesSource,
    output_dir: Path,
    *,
    thickness: int | None,
    iterations: list[int] | None,
    binning_levels: list[int],
    xf: Path | None,
    mask: Path | None,
    device: str | None,
    require_memory: MemoryCheck,
    check_device: DeviceCheck,
    refine_axis: bool = False,
) -> _AlignSetUp:
    """Read and check everything the joint alignment needs, before any work."""
    from emkit.errors import InputError

    check_alignment_options(source.tilt_axis, xf=xf)
    if refine_axis and xf is not None:
        raise InputError("--refine-tilt-axis cannot be combined with --xf: the transforms "
                         "fix the axis; drop one of them")
    series = source.read()
    inputs: list[Path | None] = [series.path, series.angles_path, xf, mask]
    paths = alignment_outputs(output_dir, series.stem, inputs)
    nz = thickness_px(thickness, series)
    levels = list(binning_levels)
    check_binning("--bin", levels, series)
    check_device(device)
    require_tomo_memory(series, require_memory, thickness=nz, binning=min(levels), n_volumes=12)
    if nz // max(levels) < 1:
        raise InputError(f"--thickness {nz} is thinner than the coarsest binning")
    per_level = iterations[0] if iterations is not None and len(iterations) == 1 else iterations
    if isinstance(per_level, (list, tuple)) and len(per_level) != len(levels):
        raise InputError(
            f"--iterations has {len(per_level)} values for {len(levels)} binning levels"
        )
    masks = read_mask_stack(mask, series.stack.shape) if mask else None
    return _AlignSetUp(series, paths, nz, levels, per_level, masks)


@dataclass
class _Start:
    """Where joint alignment starts: shifts, tilt-axis angle, their source, the search."""

    shifts_px: np.ndarray
    axis_deg: float
    source: str
    search: dict[str, Any] | None = None


def _start_alignment(
    series: TiltSeriesFile, xf: Path | None, tilt_axis: float | str | None, *, verbose: bool,
    refine_axis: bool = False, thickness: int = 1, masks: np.ndarray | None = None,
    device: str | None = None,
) -> _Start:
    """Start shifts and tilt-axis angle: from --xf, or a pre-alignment; with --tilt-axis
    auto or ``refine_axis`` the angle is searched first (:func:`search_tilt_axis`)."""
    from emkit.tomo._axis import search_tilt_axis
    from emkit.tomo._prealign import prealign

    initial = read_alignment(series, xf=xf)
    if initial is not None:
        return _Start(initial[0], initial[1], f"{xf}")
    # Correlating images much larger than ~1k px gains nothing for a coarse start.
    pre_bin = max(1, int(np.ceil(max(series.stack.shape[1:]) / 1024)))
    axis_option = parse_tilt_axis(tilt_axis)
    pre = prealign(series.stack, series.angles, binning=pre_bin,
                   tilt_axis_angle_deg=axis_option, progress=False)
    search = None
    if refine_axis or axis_option == "auto":
        found = search_tilt_axis(series.stack, series.angles, thickness=thickness,
                                 start_deg=pre.tilt_axis_angle_deg, masks=masks, device=device)
        coarse = found.coarse_angle_deg
        search = {"start_deg": found.start_deg, "angle_deg": found.angle_deg,
                  "binning": found.binning, "converged": found.converged,
                  "coarse_angle_deg": round(coarse, 4) if np.isfinite(coarse) else None,
                  "fine_binning": found.fine_binning,
                  "trials": [[round(a, 4), s] for a, s in found.evaluations]}
        if verbose:
            refined = f", refined at bin {found.fine_binning}" if found.fine_binning else ""
            print(f"tilt axis: {found.angle_deg:.2f} deg (from {found.start_deg:.2f}, "
                  f"{len(found.evaluations)} trial angles at bin {found.binning}{refined})",
                  flush=True)
        pre = prealign(series.stack, series.angles, binning=pre_bin,
                       tilt_axis_angle_deg=found.angle_deg, progress=False)
    if verbose:
        print(f"prealign: tilt axis {pre.tilt_axis_angle_deg:.2f} deg, largest shift "
              f"{np.abs(pre.shifts_px).max():.2f} px", flush=True)
    return _Start(pre.shifts_px, pre.tilt_axis_angle_deg, "prealign", search)


def _start_key(
    source: TiltSeriesSource, xf: Path | None, refine_axis: bool, thickness: int,
    mask: Path | None,
) -> dict[str, Any]:
    """What a saved start depends on: the series file (size, time) and the options."""
    def stamp(path: Path | None) -> list[Any] | None:
        if path is None:
            return None
        info = Path(path).stat()
        return [str(Path(path).resolve()), info.st_size, info.st_mtime_ns]

    return {
        "tilts": stamp(source.tilts), "angles": stamp(source.angles), "xf": stamp(xf),
        "mask": stamp(mask), "tilt_axis": str(source.tilt_axis), "refine_axis": refine_axis,
        "thickness": int(thickness), "invert": bool(source.invert), "log": bool(source.log),
    }


def _save_start(path: Path, key: dict[str, Any], begin: _Start) -> None:
    from emkit.io import atomic_output

    payload = {"key": key, "shifts_px": np.asarray(begin.shifts_px, float).tolist(),
               "axis_deg": float(begin.axis_deg), "source": begin.source, "search": begin.search}
    with atomic_output(path, immediate=True) as tmp:
        tmp.write_text(json.dumps(payload))


def _load_start(path: Path, key: dict[str, Any]) -> _Start | None:
    """The start a run saved beside its checkpoint, if it was made from these inputs."""
    try:
        payload = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if payload.get("key") != json.loads(json.dumps(key)):
        return None
    return _Start(np.asarray(payload["shifts_px"], float), float(payload["axis_deg"]),
                  str(payload["source"]), payload.get("search"))


def _iteration_reporter(
    series: TiltSeriesFile,
    *,
    verbose: bool,
    plot_dir: Path | None,
    plot_iteration: PlotIteration | None,
) -> Callable[[dict[str, Any], np.ndarray, np.ndarray], None]:
    """The per-iteration callback: one line, and one figure into ``plot_dir``."""

    def report(record: dict[str, Any], shifts: np.ndarray, volume: np.ndarray) -> None:
        if verbose:
            change = record["relative_change"]
            change_text = "   start" if change != change else f"{100 * change:+7.3f} %"
            what = (", whole thickness, shifts fixed" if record.get("whole_thickness") else
                    f", max shift change {record['max_shift_change_px']:.3f} px")
            print(
                f"bin {int(record['level'])} it {int(record['iteration']):3d}: objective "
                f"{change_text}, unexplained {100 * record['residual_fraction']:5.1f} % of the "
                f"data{what}",
                flush=True,
            )
        if plot_dir is not None and plot_iteration is not None:
            whole = "_whole" if record.get("whole_thickness") else ""
            name = f"iter_bin{int(record['level'])}{whole}_{int(record['iteration']):03d}.png"
            plot_iteration(plot_dir / name, volume, shifts, series.angles, record=record)

    return report


def run_align_files(
    source: TiltSeriesSource,
    output_dir: Path,
    *,
    thickness: int | None = None,
    box_fraction: float = 1.0,
    lam: float = 1.0,
    iterations: list[int] | None = None,
    inner_iterations: int = 10,
    cg_iterations: int = 10,
    binning_levels: list[int] | None = None,
    xf: Path | None = None,
    mask: Path | None = None,
    plot_dir: Path | None = None,
    plot_iteration: PlotIteration | None = None,
    resume: bool = False,
    device: str | None = None,
    fill: str = "mean",
    refine_axis: bool = False,
    verbose: bool = False,
    require_memory: MemoryCheck = no_memory_check,
    check_device: DeviceCheck = no_device_check,
) -> AlignFilesResult:
    """Joint alignment and TV reconstruction; write ``<stem>.xf``, ``_ali.mrc``, ``_rec.mrc``.

    ``box_fraction``: the shifts are found in a box of this fraction of ``thickness``,
    the tomogram then filled over the whole thickness (:func:`align_joint`).

    ``refine_axis`` (implied by ``source.tilt_axis == "auto"``; not with ``xf``) searches
    the tilt-axis angle before the joint alignment (:func:`search_tilt_axis`). ``fill``
    (``"mean"`` or ``"zero"``) is what the aligned stack holds outside the data;
    ``plot_iteration`` (e.g. :func:`emkit.report.tomo.plot_iteration`) draws each
    iteration into ``plot_dir``; ``verbose`` prints one line per iteration.
    """
    from emkit.io import make_output_folder, on_commit, write_volume
    from emkit.tomo._joint import align_joint
    from emkit.tomo._transform import remove_gauge

    setup = _set_up_align(
        source, output_dir, thickness=thickness, iterations=iterations,
        binning_levels=binning_levels or [4, 2, 1], xf=xf, mask=mask, device=device,
        require_memory=require_memory, check_device=check_device, refine_axis=refine_axis,
    )
    series, paths = setup.series, setup.paths
    start = time.perf_counter()
    start_file = output_dir / f"{series.stem}_align.start.json"
    start_key = _start_key(source, xf, refine_axis, setup.thickness, mask)
    begin = _load_start(start_file, start_key) if resume else None
    if begin is None:
        begin = _start_alignment(series, xf, source.tilt_axis, verbose=verbose,
                                 refine_axis=refine_axis, thickness=setup.thickness,
                                 masks=setup.masks, device=device)
        # Kept for --resume: the axis search is not run again, and the very same start
        # (shifts as float64, angle) matches the checkpoint's fingerprint.
        begin.shifts_px = np.asarray(begin.shifts_px, float)
        _save_start(start_file, start_key, begin)
    shifts0, axis = begin.shifts_px, begin.axis_deg
    checkpoint = output_dir / f"{series.stem}_align.ckpt.npz"
    if plot_dir is not None:
        make_output_folder(plot_dir)
    result = align_joint(
        series.stack,
        series.angles,
        thickness=setup.thickness,
        initial_shifts_px=remove_gauge(shifts0, series.angles, gauge="rigid"),
        box_fraction=box_fraction,
        lam=lam,
        iterations=setup.iterations,
        inner_iterations=inner_iterations,
        cg_iterations=cg_iterations,
        binning_levels=setup.levels,
        tilt_axis_angle_deg=axis,
        masks=setup.masks,
        device=device,
        callback=_iteration_reporter(
            series, verbose=verbose, plot_dir=plot_dir, plot_iteration=plot_iteration
        ),
        checkpoint=checkpoint,
        resume=resume,
    )
    write_alignment(paths, series, result.shifts_px, axis, fill=fill)
    write_volume(
        paths["tomogram"], result.volume, voxel_size=series.pixel_size_A * result.binning
    )
    # The checkpoint goes only once the outputs are in place: a failed commit can resume.
    def remove_resume_files() -> None:
        checkpoint.unlink(missing_ok=True)
        start_file.unlink(missing_ok=True)

    on_commit(remove_resume_files)
    record = _align_record(series, paths, begin, result.history, time.perf_counter() - start)
    return AlignFilesResult(paths, record, result.history)


def _align_record(
    series: TiltSeriesFile, paths: dict[str, Path], begin: _Start,
    history: list[dict[str, float]], seconds: float,
) -> dict[str, Any]:
    """What ``emkit-run.json`` says of a joint alignment."""
    return {
        "input": input_record(series),
        "start": begin.source,
        "tilt_axis_angle_deg": begin.axis_deg,
        "tilt_axis_search": begin.search,
        "final": history[-1] if history else {},
        # the last iteration that moved shifts (after it the volume may fill the thickness)
        "final_alignment": next((h for h in reversed(history) if "whole_thickness" not in h),
                                {}),
        "iterations_run": len(history),
        # the schedule that ran: outer iterations per binning level, in order
        "iterations_per_level": _iterations_per_level(history),
        "seconds": round(seconds, 2),
        "outputs": {k: str(v) for k, v in paths.items()},
    }


def _iterations_per_level(history: list[dict[str, float]]) -> list[list[int]]:
    """``[[binning, iterations], ...]`` of the aligning iterations, in the order run."""
    counts: list[list[int]] = []
    for h in history:
        if "whole_thickness" in h:
            continue
        level = int(h["level"])
        if counts and counts[-1][0] == level:
            counts[-1][1] += 1
        else:
            counts.append([level, 1])
    return counts


# --------------------------------------------------------------------------- reconstruct


def _check_reconstruct_request(
    series: TiltSeriesFile,
    *,
    method: str,
    thickness: int,
    binning: int,
    y_range: tuple[int, int] | None,
    require_memory: MemoryCheck,
) -> None:
    """The row range lies inside the binned images; the tomogram fits in memory."""
    _stream_rows(series, binning, y_range)
    rows = None if y_range is None else y_range[1] - y_range[0]
    require_tomo_memory(
        series,
        require_memory,
        thickness=thickness,
        binning=binning,
        n_volumes={"wbp": 3, "sirt": 5, "cgls": 6}[method],
        rows=rows,
    )


def _progress_bar(
    method: str, iterations: int | None, progress: bool
) -> tuple[Any, Callable[[int, np.ndarray], None] | None]:
    """A tqdm bar over the SIRT/CGLS iterations and its callback (none for WBP)."""
    if method == "wbp" or not progress:
        return None, None
    from tqdm import tqdm

    total = iterations or (50 if method == "sirt" else 20)
    bar = tqdm(total=total, desc=method, unit="it")

    def callback(iteration: int, volume: np.ndarray) -> None:
        bar.update(1)

    return bar, callback


def run_reconstruct_files(
    source: TiltSeriesSource,
    output: Path,
    *,
    method: str = "wbp",
    thickness: int | None = None,
    binning: int = 1,
    iterations: int | None = None,
    cutoff: float = 1.0,
    window: str = "hann",
    z_offset_px: float = 0.0,
    y_range: tuple[int, int] | None = None,
    xf: Path | None = None,
    aln: Path | None = None,
    device: str | None = None,
    progress: bool = False,
    require_memory: MemoryCheck = no_memory_check,
    check_device: DeviceCheck = no_device_check,
    stream: StreamOptions | None = None,
) -> ReconstructFilesResult:
    """Reconstruct ``tilts`` (aligned first by ``xf`` or ``aln``) into the MRC ``output``.

    An OME-Zarr (or Zarr) ``output`` is streamed instead: slab by slab, on a local Dask
    cluster or ``stream.scheduler``, never holding the stack or the tomogram in memory
    (:mod:`emkit.tomo._stream`).
    """
    from emkit.io import check_not_input, write_volume
    from emkit.tomo._reconstruct import reconstruct

    if _is_zarr(output):
        return _run_reconstruct_streamed(
            source, output, method=method, thickness=thickness, binning=binning,
            iterations=iterations, cutoff=cutoff, window=window, z_offset_px=z_offset_px,
            y_range=y_range, xf=xf, aln=aln, options=stream or StreamOptions(),
            device=device, require_memory=require_memory, check_device=check_device,
        )
    _refuse_stream_options(stream, output)
    check_alignment_options(source.tilt_axis, xf=xf, aln=aln)
    series = source.read()
    check_not_input(output, [series.path, series.angles_path, xf, aln])
    nz = thickness_px(thickness, series)
    check_binning("--bin", [binning], series)
    check_device(device)
    _check_reconstruct_request(
        series, method=method, thickness=nz, binning=binning, y_range=y_range,
        require_memory=require_memory,
    )
    shifts, axis = _shifts_and_axis(source, series, xf=xf, aln=aln)
    start = time.perf_counter()
    bar, callback = _progress_bar(method, iterations, progress)
    volume = reconstruct(
        series.stack,
        series.angles,
        method=method,
        callback=callback,
        thickness=nz,
        binning=binning,
        shifts_px=shifts,
        tilt_axis_angle_deg=axis,
        iterations=iterations,
        cutoff=cutoff,
        window=window,
        z_offset_px=z_offset_px,
        y_range=y_range,
        device=device,
    )
    if bar is not None:
        bar.close()
    write_volume(output, volume, voxel_size=series.pixel_size_A * binning)
    seconds = round(time.perf_counter() - start, 2)
    record = {
        "input": input_record(series),
        "shape_zyx": list(volume.shape),
        "seconds": seconds,
        "output": str(output),
    }
    return ReconstructFilesResult(output, volume.shape, series.pixel_size_A * binning, record)


def _refuse_stream_options(stream: StreamOptions | None, output: Path) -> None:
    """Refuse streaming options beside an output that is not streamed (an MRC)."""
    if stream is not None and (stream.scheduler is not None or stream.n_workers is not None
                               or stream.slab_rows is not None):
        from emkit.errors import InputError

        raise InputError("--workers, --scheduler and --slab-rows stream the tomogram slab by "
                         "slab into OME-Zarr; give an --output ending in .ome.zarr, not "
                         f"{output.name}")


def _shifts_and_axis(
    source: TiltSeriesSource, series: Any, *, xf: Path | None, aln: Path | None
) -> tuple[np.ndarray | None, float]:
    """Per-image shifts and tilt axis: from ``xf``/``aln``, else the given or found axis."""
    from emkit.tomo._prealign import estimate_tilt_axis

    alignment = read_alignment(series, xf=xf, aln=aln)
    if alignment is not None:
        shifts, axis = alignment
        return shifts, axis
    given = parse_tilt_axis(source.tilt_axis)
    axis = estimate_tilt_axis(series.stack, series.angles) if given == "auto" else float(given)
    return None, axis


def _is_zarr(path: Path) -> bool:
    return path.name.lower().endswith(".zarr")


def _run_reconstruct_streamed(
    source: TiltSeriesSource,
    output: Path,
    *,
    method: str,
    thickness: int | None,
    binning: int,
    iterations: int | None,
    cutoff: float,
    window: str,
    z_offset_px: float,
    y_range: tuple[int, int] | None,
    xf: Path | None,
    aln: Path | None,
    options: StreamOptions,
    device: str | None,
    require_memory: MemoryCheck,
    check_device: DeviceCheck,
) -> ReconstructFilesResult:
    """The OME-Zarr path of :func:`run_reconstruct_files`: checks, one pass, the slabs."""
    from emkit.errors import InputError
    from emkit.io import check_not_input
    from emkit.tomo._files import open_tilt_series
    from emkit.tomo._stream import make_plan, reconstruct_to_zarr, require_stream_memory

    check_alignment_options(source.tilt_axis, xf=xf, aln=aln)
    series = open_tilt_series(source.tilts, source.angles, pixel_size_A=source.pixel_size_A,
                              invert=source.invert, log=source.log)
    check_not_input(output, [series.path, series.angles_path, xf, aln])
    nz = thickness_px(thickness, series)
    check_binning("--bin", [binning], series)
    check_device(device)
    rows = _stream_rows(series, binning, y_range)
    alignment = read_alignment(series, xf=xf, aln=aln)
    shifts, axis = (None, parse_tilt_axis(source.tilt_axis)) if alignment is None else alignment
    if axis == "auto":
        raise InputError("--tilt-axis auto needs the whole stack in memory; give the angle "
                         "(or an --xf/--aln) to stream into OME-Zarr")
    require_stream_memory(series.stack.shape, require_memory, method=method, thickness=nz,
                          binning=binning, options=options, shifts_px=shifts)
    start = time.perf_counter()
    plan = make_plan(
        series.path, series.stack.shape, series.angles, method=method, thickness=nz,
        binning=binning, shifts_px=shifts, tilt_axis_angle_deg=float(axis),
        iterations=iterations, cutoff=cutoff, window=window, z_offset_px=z_offset_px,
        log=source.log, invert=source.invert, device=device,
    )
    result = reconstruct_to_zarr(plan, output, rows=rows,
                                 voxel_size_A=series.pixel_size_A * binning, options=options)
    record = {
        "input": input_record(series),
        "shape_zyx": list(result.shape_zyx),
        "seconds": round(time.perf_counter() - start, 2),
        "streamed": {"slabs": result.n_slabs, "slab_rows": options.rows_per_slab,
                     "workers": options.n_workers, "scheduler": options.scheduler,
                     "reconstruct_s": round(result.reconstruct_s, 2),
                     "write_s": round(result.write_s, 2)},
        "output": str(output),
    }
    return ReconstructFilesResult(
        output, result.shape_zyx, series.pixel_size_A * binning, record
    )


def _stream_rows(
    series: TiltSeriesFile, binning: int, y_range: tuple[int, int] | None
) -> tuple[int, int]:
    """The binned rows to reconstruct: all, or ``--y-range`` checked against them."""
    from emkit.errors import InputError, with_path

    n_rows = series.stack.shape[1] // binning
    if y_range is None:
        return 0, n_rows
    if not 0 <= y_range[0] < y_range[1] <= n_rows:
        raise InputError(
            with_path(series.path, f"--y-range {y_range[0]}:{y_range[1]} is outside "
                      f"the {n_rows} rows of the images binned by {binning}")
        )
    return int(y_range[0]), int(y_range[1])
