"""The register commands on files: register a pair of sections or a whole stack on disk.

Each ``run_*_files`` function validates its inputs (before any work), registers, writes
the outputs through the emkit.io writers, and returns a small result with the paths
written and the numbers worth keeping in a run record.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from emkit.io._paths import file_stem
from emkit.register._files import (
    MemoryCheck,
    check_fill,
    check_pair_outputs_writable,
    no_memory_check,
    read_defect_mask,
    read_section,
    read_true_field,
    require_registration_memory,
    write_json,
)


@dataclass
class PairFilesResult:
    """What ``run_pair_files`` wrote and measured; the images an overlay is drawn from."""

    output: Path
    metrics_path: Path
    overlay_path: Path
    metrics: dict[str, Any]
    info: dict[str, Any]
    fixed: np.ndarray
    warped: np.ndarray
    valid: np.ndarray


@dataclass
class StackFilesResult:
    """What ``run_stack_files`` wrote: the aligned stack and a folder of fields, and what
    the report draws (small thumbnails of the aligned sections, residual per section)."""

    output: Path
    fields_dir: Path
    n_sections: int
    reference: int | None
    record: dict[str, Any]
    thumbnails: dict[int, tuple[np.ndarray, np.ndarray]]
    residual_px: np.ndarray
    work_dir: Path | None
    report_dir: Path


@dataclass(frozen=True)
class PairOptions:
    """How each pair is registered: the options of :func:`register_pair`.

    ``sift_scale`` None lets register_pair choose (long side <= 1000 px); ``fill_value``
    is the value of pixels without data.
    """

    method: str = "expected-affine"
    n_clusters: int | None = None
    sift_scale: float | None = None
    fill_value: float = 0.0
    seed: int = 0
    refine: str = "elastic"

    def keywords(self) -> dict[str, Any]:
        """Keyword arguments of :func:`register_pair` (``sift_scale`` only when given)."""
        options: dict[str, Any] = {
            "method": self.method,
            "n_clusters": self.n_clusters,
            "seed": self.seed,
            "fill_value": self.fill_value,
            "refine": self.refine,
        }
        if self.sift_scale is not None:
            options["sift_scale"] = self.sift_scale
        return options


# --------------------------------------------------------------------------- pair


@dataclass
class _PairInputs:
    fixed: Any
    moving: Any
    mask: np.ndarray | None
    fixed_mask: np.ndarray | None
    true_field: np.ndarray | None


def _read_pair(
    fixed_path: Path,
    moving_path: Path,
    *,
    mask: Path | None,
    fixed_mask: Path | None,
    true_field: Path | None,
    fill_value: float,
    require_memory: MemoryCheck,
) -> _PairInputs:
    """Read and check both sections, their masks and the known field, before any work."""
    from emkit.errors import MismatchError, with_path

    fixed = read_section(fixed_path, "fixed")
    moving = read_section(moving_path, "moving")
    if fixed.data.shape != moving.data.shape:
        raise MismatchError(
            with_path(
                moving_path,
                f"is {moving.data.shape[0]}x{moving.data.shape[1]} but {fixed_path.name} is "
                f"{fixed.data.shape[0]}x{fixed.data.shape[1]} (rows x cols); give sections "
                "of the same size (crop or pad one)",
            )
        )
    check_fill(fill_value, moving.data.dtype, moving_path)
    require_registration_memory(require_memory, moving.data.shape, 2, 1, moving_path)
    defect = read_defect_mask(mask, moving.data.shape, moving_path) if mask else None
    fixed_defect = (
        read_defect_mask(fixed_mask, fixed.data.shape, fixed_path) if fixed_mask else None
    )
    known = read_true_field(true_field, fixed.data.shape) if true_field else None
    return _PairInputs(fixed, moving, defect, fixed_defect, known)


def _endpoint_metrics(
    pair: _PairInputs,
    true_field: np.ndarray,
    result: Any,
    scored_valid: np.ndarray,
    true_field_path: Path | None,
) -> dict[str, Any]:
    """Endpoint error of the field against the known one, also near the defect."""
    from emkit.errors import InputError, with_path
    from emkit.register._field import warp_image
    from emkit.register._metrics import endpoint_error

    scored = scored_valid & np.isfinite(true_field).all(axis=0)
    if not scored.any():
        raise InputError(
            with_path(
                true_field_path,
                "the known field is NaN wherever the registration has data; give the "
                "true_field.npy made for these images",
            )
        )
    defect_fixed = None
    if pair.mask is not None:
        # The moving image's defect carried into the fixed frame by the known field,
        # for the error within 50 px of the defect.
        carried = warp_image(pair.mask.astype(np.float32), np.nan_to_num(true_field))
        defect_fixed = carried > 0.5
    return endpoint_error(
        result.field, np.nan_to_num(true_field), valid=scored, defect_fixed=defect_fixed
    )


def _pair_metrics(
    pair: _PairInputs,
    result: Any,
    options: dict[str, Any],
    *,
    compare_global: bool,
    true_field_path: Path | None,
) -> dict[str, Any]:
    """NCC, SSIM, NMI before and after (where both sections have tissue); EPE if known."""
    from emkit.register._field import warp_image
    from emkit.register._metrics import similarity
    from emkit.register._pair import register_pair

    fixed, mask, fixed_mask = pair.fixed.data, pair.mask, pair.fixed_mask
    scored_valid = result.valid if fixed_mask is None else result.valid & ~fixed_mask
    metrics: dict[str, Any] = {
        "method": options["method"],
        "registered": similarity(fixed, result.warped, valid=scored_valid),
        "valid_fraction": result.info["valid_fraction"],
    }
    before_valid = np.ones(fixed.shape, bool) if mask is None else ~mask
    if fixed_mask is not None:
        before_valid &= ~fixed_mask
    metrics["unregistered"] = similarity(fixed, pair.moving.data, valid=before_valid)
    if result.unrefined_field is not None:
        # The same model without the elastic refinement, on the pixels both cover.
        unrefined = warp_image(
            pair.moving.data,
            result.unrefined_field,
            valid=result.unrefined_valid,
            fill_value=options["fill_value"],
        )
        common = scored_valid & result.unrefined_valid
        metrics["refinement"] = {
            "elastic": similarity(fixed, result.warped, valid=common),
            "none": similarity(fixed, unrefined, valid=common),
        }
    if compare_global and options["method"] != "global-affine":
        # The usual baseline: one global affine, not refined.
        baseline = register_pair(
            fixed,
            pair.moving.data,
            defect_mask=mask,
            fixed_mask=fixed_mask,
            **dict(options, method="global-affine", refine="none"),
        )
        common = baseline.valid & scored_valid
        metrics["common_region"] = {
            options["method"]: similarity(fixed, result.warped, valid=common),
            "global-affine": similarity(fixed, baseline.warped, valid=common),
        }
    if pair.true_field is not None:
        metrics["endpoint_error"] = _endpoint_metrics(
            pair, pair.true_field, result, scored_valid, true_field_path
        )
    return metrics


def run_pair_files(
    fixed: Path,
    moving: Path,
    output: Path,
    *,
    mask: Path | None = None,
    fixed_mask: Path | None = None,
    field: Path | None = None,
    true_field: Path | None = None,
    compare_global: bool = False,
    options: PairOptions = PairOptions(),
    require_memory: MemoryCheck = no_memory_check,
) -> PairFilesResult:
    """Register ``moving`` onto ``fixed``; write the warped image, field and metrics."""
    from emkit.errors import EmkitError, with_path
    from emkit.io import Volume, atomic_output, check_not_input, write_volume
    from emkit.register._pair import register_pair

    inputs = [fixed, moving, mask, fixed_mask, true_field]
    metrics_path = output.with_name(file_stem(output) + ".metrics.json")
    overlay_path = output.with_name(file_stem(output) + ".overlay.png")
    for out in (output, field, metrics_path, overlay_path):
        if out is not None:
            check_not_input(out, inputs)
    check_pair_outputs_writable(output, field, metrics_path, overlay_path)
    pair = _read_pair(
        fixed,
        moving,
        mask=mask,
        fixed_mask=fixed_mask,
        true_field=true_field,
        fill_value=options.fill_value,
        require_memory=require_memory,
    )
    keywords = options.keywords()
    try:
        result = register_pair(
            pair.fixed.data,
            pair.moving.data,
            defect_mask=pair.mask,
            fixed_mask=pair.fixed_mask,
            **keywords,
        )
    except EmkitError as error:
        raise type(error)(with_path(moving, str(error))) from None
    metrics = _pair_metrics(
        pair, result, keywords, compare_global=compare_global, true_field_path=true_field
    )
    write_volume(
        output,
        Volume(data=result.warped, voxel_size=pair.fixed.voxel_size, origin=pair.fixed.origin),
    )
    if field is not None:
        with atomic_output(field) as tmp:
            np.save(tmp, result.field)
    write_json(metrics_path, metrics)
    return PairFilesResult(
        output,
        metrics_path,
        overlay_path,
        metrics,
        result.info,
        pair.fixed.data,
        result.warped,
        result.valid,
    )


def pair_summary(moving: Path, output: Path, metrics: dict[str, Any]) -> str:
    """The one line that reports a pair registration."""
    reg = metrics["registered"]
    line = (
        f"{moving.name} -> {output}: NCC {reg['ncc']:.3f}, SSIM {reg['ssim']:.3f}, "
        f"NMI {reg['nmi']:.3f} outside the defect (unregistered NCC "
        f"{metrics['unregistered']['ncc']:.3f})"
    )
    if "endpoint_error" in metrics:
        epe = metrics["endpoint_error"]
        line += f"; EPE mean {epe['epe_mean_px']:.3f} px, p95 {epe['epe_p95_px']:.3f} px"
        if "epe_near_defect_mean_px" in epe:
            line += (
                f" (within 50 px of the defect: mean {epe['epe_near_defect_mean_px']:.3f},"
                f" p95 {epe['epe_near_defect_p95_px']:.3f} px)"
            )
    if "refinement" in metrics:
        r = metrics["refinement"]
        line += (
            f"; NCC with elastic refinement {r['elastic']['ncc']:.3f} vs without "
            f"{r['none']['ncc']:.3f}"
        )
    if "common_region" in metrics:
        g = metrics["common_region"]["global-affine"]["ncc"]
        e = metrics["common_region"][metrics["method"]]["ncc"]
        line += f"; common-region NCC {metrics['method']} {e:.3f} vs global affine {g:.3f}"
    return line


# --------------------------------------------------------------------------- stack


def run_stack_files(
    input_path: Path,
    output: Path,
    *,
    masks: Path | None = None,
    fields_dir: Path | None = None,
    reference: int | None = None,
    relax: str = "global",
    links: int = 2,
    work_dir: Path | None = None,
    resume: bool = False,
    scheduler: str | None = None,
    workers: int | None = None,
    progress: bool = False,
    options: PairOptions = PairOptions(),
    require_memory: MemoryCheck = no_memory_check,
) -> StackFilesResult:
    """Align a folder of sections (or a stack file); stream the stack and fields to disk."""
    from emkit.errors import InputError
    from emkit.io import check_not_input, make_output_folder, volume_format
    from emkit.register import _stack_files as sf

    fields = fields_dir or output.with_name(file_stem(output) + "_fields")
    work = work_dir or output.with_name(file_stem(output) + "_work")
    report = output.with_name(file_stem(output) + "_report")
    for out in (output, fields, work, report):
        check_not_input(out, [input_path, masks])
    volume_format(output, for_writing=True)  # before the work, not after
    if relax == "chain" and (resume or work_dir is not None):
        raise InputError(
            "--resume and --work-dir keep pairs for the global relaxation; --relax chain "
            "registers every pair again: leave them out"
        )
    source, voxel_size = sf.open_file_sections(input_path, masks)
    check_fill(options.fill_value, source.dtype, input_path)
    _check_reference(reference, source, input_path, relax)
    n_workers = sf.cpu_workers(workers, scheduler)
    # Chaining keeps every section and field; TIFF and MRC writers take the stack whole.
    whole = relax == "chain" or not output.name.lower().endswith(".zarr")
    require_registration_memory(
        require_memory,
        source.shape,
        source.n if whole else 2,
        min(n_workers, source.n - 1),
        input_path,
    )
    make_output_folder(fields)  # new, empty or emkit's: refused before the work
    make_output_folder(report)
    if relax == "chain":
        return _run_stack_chain(
            source,
            output,
            fields,
            voxel_size,
            reference,
            scheduler,
            workers,
            progress,
            options,
            report,
        )
    work = sf.prepare_work_dir(work, resume=resume)
    return _run_stack_global(
        source,
        output,
        fields,
        work,
        voxel_size,
        reference,
        links,
        scheduler,
        workers,
        progress,
        options,
        report,
    )


def _check_reference(reference: int | None, source: Any, input_path: Path, relax: str) -> None:
    """--reference in range, and (global relaxation) an undamaged section."""
    from emkit.errors import InputError, with_path

    if reference is None:
        return
    if reference >= source.n:
        raise InputError(
            with_path(
                input_path,
                f"--reference {reference} is out of range: it holds {source.n} sections, "
                f"numbered 0 to {source.n - 1}",
            )
        )
    if relax == "global" and source.damaged()[reference]:
        raise InputError(
            with_path(
                source.names[reference],
                "is damaged (it has a defect mask); give an undamaged --reference, or none "
                "(the stack's common frame)",
            )
        )


def _run_stack_global(
    source: Any,
    output: Path,
    fields: Path,
    work: Path,
    voxel_size: Any,
    reference: int | None,
    links: int,
    scheduler: str | None,
    workers: int | None,
    progress: bool,
    options: PairOptions,
    report: Path,
) -> StackFilesResult:
    """Register pairs (kept in ``work``), relax, stream every section to disk."""
    import zarr

    from emkit.io import write_volume
    from emkit.io._zarr import create_zarr_array
    from emkit.register import _stack_files as sf
    from emkit.register._stack import register_stack

    h, w = source.shape
    scratch_path = sf.scratch_path(output)
    try:
        create_zarr_array(
            scratch_path, (source.n, h, w), source.dtype, chunks=(1, min(h, 1024), min(w, 1024))
        )
        sink = sf.StackSink(zarr.open_array(str(scratch_path), mode="r+"), fields)
        result = register_stack(
            source,
            reference=reference,
            links=links,
            scheduler=scheduler,
            n_workers=workers,
            progress=progress,
            work_dir=work,
            sink=sink,
            **options.keywords(),
        )
        aligned = zarr.open_array(str(scratch_path), mode="r")
        if not output.name.lower().endswith(".zarr"):
            # TIFF and MRC writers take the stack whole (Zarr is written chunk by chunk).
            aligned = aligned[:]
        write_volume(output, aligned, voxel_size=voxel_size)
    finally:
        sf.remove_scratch(scratch_path)
    return _finish_stack(source, result, sink, output, fields, work, report, "global")


def _run_stack_chain(
    source: Any,
    output: Path,
    fields: Path,
    voxel_size: Any,
    reference: int | None,
    scheduler: str | None,
    workers: int | None,
    progress: bool,
    options: PairOptions,
    report: Path,
) -> StackFilesResult:
    """The chaining baseline: every section in memory, fields composed to a reference."""
    from emkit.io import write_volume
    from emkit.register import _stack_files as sf
    from emkit.register._stack import register_stack

    result = register_stack(
        source,
        reference=reference,
        relax="chain",
        scheduler=scheduler,
        n_workers=workers,
        progress=progress,
        **options.keywords(),
    )
    assert result.aligned is not None and result.fields is not None and result.valid is not None
    write_volume(output, result.aligned, voxel_size=voxel_size)
    sink = sf.StackSink({}, fields)
    for i in range(source.n):
        sink(i, result.aligned[i], result.fields[i], result.valid[i])
    return _finish_stack(source, result, sink, output, fields, None, report, "chain")


def _finish_stack(
    source: Any, result: Any, sink: Any, output: Path, fields: Path, work: Path | None,
    report: Path, relax: str,
) -> StackFilesResult:
    """index.json and the fields clean-up; the run record's numbers and what the report draws."""
    from emkit.register import _stack_files as sf

    _finish_fields(fields, sink.written, result.reference, source.names)
    record = sf.record_of(result, source.names, fields, relax)
    return StackFilesResult(
        output, fields, source.n, result.reference, sf.json_safe(record), sink.thumbnails,
        result.residual_px, work, report,
    )


def _finish_fields(
    fields_dir: Path, written: set[str], reference: int | None, names: list[str]
) -> None:
    """index.json, and the fields of an earlier run with more sections removed once this
    run's outputs are in place (files are written one by one, never the folder whole)."""
    from emkit.io import on_commit
    from emkit.register._stack_files import write_index

    write_index(fields_dir, reference, names)
    keep = written | {"index.json"}

    def remove_older_fields() -> None:
        for pattern in ("section_[0-9][0-9][0-9][0-9].npy", "valid_[0-9][0-9][0-9][0-9].png"):
            for path in fields_dir.glob(pattern):
                if path.name not in keep:
                    path.unlink(missing_ok=True)

    on_commit(remove_older_fields)
