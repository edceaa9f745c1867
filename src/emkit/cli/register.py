"""Register serial sections, damaged ones included (folds, cracks): pairs or whole stacks.

A fold or crack makes the tissue on each side move differently, so one global transform
cannot register the section. The Expected Affine method fits an affine per cluster of
feature matches (clustered by a path distance that cannot cross the defect) and blends
them per pixel. Give the defect mask of the moving section (nonzero = fold/crack).

Examples
--------
    emkit register pair fixed.png moving.png --mask moving_mask.png \\
        --output reg/warped.png --field reg/field.npy
    emkit register stack sections/ --masks masks/ --output aligned.tif --workers 2
    emkit sim section fixed.png --output sim/ --kind fold      # a synthetic damaged pair

See `emkit register pair --help` and `emkit register stack --help`.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from emkit.cli._common import add_subcommand, show_progress, write_run_record
from emkit.cli._options import (
    file_path,
    finite_float,
    float_range,
    int_range,
    nonneg_int,
    positive_int,
    seed,
)

logger = logging.getLogger(__name__)

_PAIR_DOC = """Register a (damaged) moving section onto a fixed one.

Writes the warped moving image (OUTPUT, in the input dtype; pixels without data, e.g.
tissue hidden by a fold, get --fill), optionally the displacement field (--field,
float32 .npy of shape (2, H, W): for each fixed pixel (y, x) the (dy, dx) to its
position in the moving image, so warped[y, x] = moving[y + dy, x + dx]), the quality
metrics (NCC, SSIM, NMI to the fixed image outside the defect) as OUTPUT_STEM.metrics.json
and emkit-run.json beside OUTPUT.

Examples
--------
    emkit register pair DOLW7_0.png DOLW7_1.png --mask DOLW7_m.png \\
        --output reg/DOLW7_1_warped.png --field reg/DOLW7_1_field.npy
    emkit register pair a.tif b.tif --output b_on_a.tif --method global-affine
    emkit register pair sim/fixed.png sim/moving.png --mask sim/defect_mask.png \\
        --output reg/warped.png --true-field sim/true_field.npy   # also reports the EPE
"""

_STACK_DOC = """Align a stack of serial sections to a reference section.

Each section is registered to its neighbour towards the reference (in parallel with Dask:
a local cluster of --workers processes, or a running scheduler with --scheduler) and the
fields are chained, so every section lands in the reference's frame. Writes the aligned
stack (TIFF, MRC, Zarr or OME-Zarr by OUTPUT's suffix), one field per section
(FIELDS/section_0000.npy ..., (2, H, W) float32 from reference pixel to section pixel,
and valid_0000.png), and emkit-run.json beside OUTPUT.

INPUT is a folder of images (sorted by name) or one stack file (n, y, x). --masks is a
folder of defect masks named like the sections (same file stem; a section without one
has no defect) or, for a stack file, a mask stack of the same shape.

Examples
--------
    emkit register stack sections/ --masks masks/ --output aligned.tif
    emkit register stack series.mrc --output aligned.ome.zarr --reference 0 --workers 4
    emkit register stack sections/ --output aligned.mrc --scheduler tcp://10.0.0.5:8786
"""

_SIM_DOC = """Make a damaged neighbour of a section (a fold or a crack) with its true field.

Writes, into OUTPUT: moving.png (or the input's format), defect_mask.png (255 = defect),
true_field.npy ((2, H, W) float32, (dy, dx) from each fixed pixel to the moving image;
NaN where the fixed tissue has no counterpart, e.g. hidden by the fold), params.json, and
fixed.png when no IMAGE is given (a built-in cell-like texture is used).

Examples
--------
    emkit sim section --output sim/ --kind fold --seed 1
    emkit sim section DOLW7_0.png --output sim_dolw7/ --kind crack
"""

_IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".mrc", ".jpg", ".jpeg", ".bmp", ".npy")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add ``emkit register`` with its ``pair`` and ``stack`` subcommands."""
    parser = add_subcommand(subparsers, "register", __doc__, func=None)
    sub = parser.add_subparsers(dest="register_command", metavar="WHAT")

    def show_help(args: argparse.Namespace) -> int:
        parser.print_help()
        return 0

    parser.set_defaults(func=show_help)

    pair = add_subcommand(sub, "pair", _PAIR_DOC, func=run_pair)
    pair.add_argument("fixed", type=file_path, help="fixed (reference) section image")
    pair.add_argument("moving", type=file_path, help="moving (damaged) section image")
    pair.add_argument("--mask", type=file_path, help="defect mask of the moving image (nonzero)")
    pair.add_argument(
        "--fixed-mask",
        type=file_path,
        help="defect mask of the fixed image: no features there, excluded from the metrics",
    )
    pair.add_argument("--output", type=file_path, required=True, help="warped moving image")
    pair.add_argument(
        "--field", type=file_path, help="write the displacement field here (.npy)"
    )
    pair.add_argument(
        "--true-field",
        type=file_path,
        help="known field (.npy, NaN = none): report endpoint error",
    )
    pair.add_argument(
        "--compare-global",
        action="store_true",
        help="also run a single global affine and report its metrics",
    )
    _add_method_options(pair)

    stack = add_subcommand(sub, "stack", _STACK_DOC, func=run_stack)
    stack.add_argument(
        "input", type=file_path, help="folder of section images, or a stack file"
    )
    stack.add_argument(
        "--masks", type=file_path, help="folder (or stack file) of defect masks"
    )
    stack.add_argument("--output", type=file_path, required=True, help="aligned stack file")
    stack.add_argument("--fields", type=file_path, help="folder for the per-section fields")
    stack.add_argument(
        "--reference",
        type=nonneg_int,
        help="index of the reference section, from 0 (default: middle)",
    )
    stack.add_argument("--scheduler", help="address of a running Dask scheduler")
    stack.add_argument(
        "--workers",
        type=positive_int,
        help="worker processes of the local cluster, >= 1 (default: cores)",
    )
    stack.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_method_options(stack)


def _add_method_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--method",
        choices=("expected-affine", "global-affine"),
        default="expected-affine",
        help="expected-affine (default) or one global affine (baseline)",
    )
    parser.add_argument(
        "--clusters",
        type=positive_int,
        help="number of match clusters, >= 1 (default: from the data)",
    )
    parser.add_argument(
        "--sift-scale",
        type=float_range(0.05, 1),
        help="scale SIFT runs at, 0.05 to 1 (default: long side <= 1000 px)",
    )
    parser.add_argument(
        "--fill",
        type=finite_float,
        default=0.0,
        help="value of pixels without data (within the image dtype's range; default 0)",
    )
    parser.add_argument("--seed", type=seed, default=0, help="random seed, >= 0 (default 0)")


def add_sim_parsers(sim_subparsers: argparse._SubParsersAction) -> None:
    """Add ``emkit sim section``."""
    parser = add_subcommand(sim_subparsers, "section", _SIM_DOC, func=run_sim_section)
    parser.add_argument(
        "image", type=file_path, nargs="?", help="section image (default: a built-in texture)"
    )
    parser.add_argument("--output", type=file_path, required=True, help="output folder")
    parser.add_argument("--kind", choices=("fold", "crack"), default="fold")
    parser.add_argument("--seed", type=seed, default=0, help="random seed, >= 0 (default 0)")
    parser.add_argument(
        "--size",
        type=int_range(64),
        nargs=2,
        default=(768, 768),
        metavar=("H", "W"),
        help="size of the built-in texture, each >= 64 (default 768 768)",
    )


# --------------------------------------------------------------------------- reading


def _read_section(path: Path, what: str) -> Any:
    """Read one 2D section (a single-image stack is accepted) as a Volume."""
    from emkit.io import read_volume, require_finite, require_ndim

    volume = read_volume(path)
    data = volume.data
    if data.ndim == 3 and data.shape[0] == 1:
        data = data[0]
    require_ndim(data, 2, path, f"{what} image (y, x)")
    require_finite(data, path, f"{what} image")
    volume.data = np.asarray(data)
    return volume


def _read_mask(path: Path, shape: tuple[int, ...], moving_path: Path) -> np.ndarray:
    from emkit.errors import InputError, MismatchError, with_path

    mask = _read_section(path, "defect mask").data
    if mask.shape != shape:
        raise MismatchError(
            with_path(
                path,
                f"defect mask is {mask.shape[0]}x{mask.shape[1]} but {moving_path.name} is "
                f"{shape[0]}x{shape[1]}; give the mask of the moving image",
            )
        )
    mask = mask != 0
    if mask.all():
        raise InputError(
            with_path(path, "the defect mask covers the whole image; mark only the fold/crack")
        )
    return mask


def _pair_options(args: argparse.Namespace) -> dict[str, Any]:
    options: dict[str, Any] = {
        "method": args.method,
        "n_clusters": args.clusters,
        "seed": args.seed,
        "fill_value": args.fill,
    }
    if args.sift_scale is not None:
        options["sift_scale"] = args.sift_scale
    return options


def _check_fill(fill: float, dtype: np.dtype, path: Path) -> None:
    """--fill must be a value the warped image can hold (it is written in the input dtype)."""
    from emkit.errors import InputError, with_path

    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        if not (info.min <= fill <= info.max and float(fill).is_integer()):
            raise InputError(
                with_path(path, f"--fill {fill:g} does not fit its {dtype} pixels; give a "
                          f"whole number from {info.min} to {info.max}")
            )


def _require_registration_memory(
    shape: tuple[int, ...], n_sections: int, n_workers: int, where: Path
) -> None:
    """Refuse, before the work, sections too large to register in the memory available.

    Measured: one pair takes about 150 bytes per pixel at its peak (features, clusters,
    fields, warped image); a stack also keeps every section, field and mask.
    """
    from emkit.cli._options import require_memory

    pixels = int(np.prod(shape))
    need = 200 * pixels * max(1, n_workers) + (24 * pixels * n_sections if n_sections > 2 else 0)
    require_memory(
        need,
        f"registering {n_sections} sections of {shape[0]}x{shape[1]} px from {where}",
        "crop or bin the sections" + (", or use fewer --workers" if n_workers > 1 else ""),
    )


# --------------------------------------------------------------------------- pair


def run_pair(args: argparse.Namespace) -> int:
    """``emkit register pair``."""
    from emkit.errors import EmkitError, InputError, MismatchError, with_path
    from emkit.io import Volume, atomic_output, check_not_input, write_volume
    from emkit.register import register_pair, similarity

    inputs = [args.fixed, args.moving, args.mask, args.fixed_mask, args.true_field]
    metrics_path = args.output.with_name(_stem(args.output) + ".metrics.json")
    overlay_path = args.output.with_name(_stem(args.output) + ".overlay.png")
    for out in (args.output, args.field, metrics_path, overlay_path):
        if out is not None:
            check_not_input(out, inputs)
    _check_outputs_writable(args.output, args.field, metrics_path, overlay_path)
    fixed = _read_section(args.fixed, "fixed")
    moving = _read_section(args.moving, "moving")
    if fixed.data.shape != moving.data.shape:
        raise MismatchError(
            with_path(
                args.moving,
                f"is {moving.data.shape[0]}x{moving.data.shape[1]} but {args.fixed.name} is "
                f"{fixed.data.shape[0]}x{fixed.data.shape[1]} (rows x cols); give sections "
                "of the same size (crop or pad one)",
            )
        )
    _check_fill(args.fill, moving.data.dtype, args.moving)
    _require_registration_memory(moving.data.shape, 2, 1, args.moving)
    mask = _read_mask(args.mask, moving.data.shape, args.moving) if args.mask else None
    fixed_mask = (
        _read_mask(args.fixed_mask, fixed.data.shape, args.fixed) if args.fixed_mask else None
    )
    true_field = _read_true_field(args.true_field, fixed.data.shape) if args.true_field else None

    try:
        result = register_pair(
            fixed.data,
            moving.data,
            defect_mask=mask,
            fixed_mask=fixed_mask,
            **_pair_options(args),
        )
    except EmkitError as error:
        raise type(error)(with_path(args.moving, str(error))) from None

    # Metrics only where both sections have tissue.
    scored_valid = result.valid if fixed_mask is None else result.valid & ~fixed_mask
    metrics: dict[str, Any] = {
        "method": args.method,
        "registered": similarity(fixed.data, result.warped, valid=scored_valid),
        "valid_fraction": result.info["valid_fraction"],
    }
    before_valid = np.ones(fixed.data.shape, bool) if mask is None else ~mask
    if fixed_mask is not None:
        before_valid &= ~fixed_mask
    metrics["unregistered"] = similarity(fixed.data, moving.data, valid=before_valid)
    if args.compare_global and args.method != "global-affine":
        options = dict(_pair_options(args), method="global-affine")
        baseline = register_pair(
            fixed.data, moving.data, defect_mask=mask, fixed_mask=fixed_mask, **options
        )
        common = baseline.valid & scored_valid
        metrics["common_region"] = {
            "expected-affine": similarity(fixed.data, result.warped, valid=common),
            "global-affine": similarity(fixed.data, baseline.warped, valid=common),
        }
    if true_field is not None:
        from emkit.register import endpoint_error

        scored = scored_valid & np.isfinite(true_field).all(axis=0)
        if not scored.any():
            raise InputError(
                with_path(
                    args.true_field,
                    "the known field is NaN wherever the registration has data; give the "
                    "true_field.npy made for these images",
                )
            )
        defect_fixed = None
        if mask is not None:
            # The moving image's defect carried into the fixed frame by the known field,
            # for the error within 50 px of the defect.
            from emkit.register import warp_image

            carried = warp_image(mask.astype(np.float32), np.nan_to_num(true_field))
            defect_fixed = carried > 0.5
        metrics["endpoint_error"] = endpoint_error(
            result.field, np.nan_to_num(true_field), valid=scored, defect_fixed=defect_fixed
        )

    write_volume(
        args.output,
        Volume(data=result.warped, voxel_size=fixed.voxel_size, origin=fixed.origin),
    )
    if args.field is not None:
        with atomic_output(args.field) as tmp:
            np.save(tmp, result.field)
    _write_json(metrics_path, metrics)
    from emkit.report.register import save_overlay

    save_overlay(overlay_path, fixed.data, result.warped, valid=result.valid)
    write_run_record(
        args.output.parent, args, results={"metrics": metrics, "registration": result.info}
    )
    print(_pair_summary(args, metrics))
    return 0


def _check_outputs_writable(
    image: Path, field: Path | None, metrics: Path, overlay: Path
) -> None:
    """Refuse, before any work, outputs that could not be written: a run writes all of
    them or none."""
    from emkit.errors import FileFormatError, OutputExistsError, with_path
    from emkit.io import volume_format

    image_is_folder = volume_format(image, for_writing=True) in ("zarr", "ome-zarr")
    if field is not None and field.suffix.lower() != ".npy":
        # np.save would append .npy to any other name.
        raise FileFormatError(with_path(field, "the field is a NumPy file; give a .npy name"))
    for path in (None if image_is_folder else image, field, metrics, overlay):
        if path is not None and path.is_dir():
            raise OutputExistsError(
                with_path(path, "is a folder; give a file name for this output")
            )


def _read_true_field(path: Path, shape: tuple[int, ...]) -> np.ndarray:
    from emkit.errors import FileFormatError, MismatchError, with_path
    from emkit.io import read_volume

    data = read_volume(path).data
    if data.shape != (2, *shape):
        raise MismatchError(
            with_path(
                path,
                f"field has shape {data.shape}; expected (2, {shape[0]}, {shape[1]}) for "
                "these images",
            )
        )
    if not np.issubdtype(data.dtype, np.floating):
        raise FileFormatError(with_path(path, "field must be a float array (dy, dx) in pixels"))
    return np.asarray(data, dtype=np.float32)


def _pair_summary(args: argparse.Namespace, metrics: dict[str, Any]) -> str:
    reg = metrics["registered"]
    line = (
        f"{args.moving.name} -> {args.output}: NCC {reg['ncc']:.3f}, SSIM {reg['ssim']:.3f}, "
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
    if "common_region" in metrics:
        g = metrics["common_region"]["global-affine"]["ncc"]
        e = metrics["common_region"]["expected-affine"]["ncc"]
        line += f"; common-region NCC expected affine {e:.3f} vs global affine {g:.3f}"
    return line


# --------------------------------------------------------------------------- stack


def _list_sections(folder: Path) -> list[Path]:
    files = sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and _suffix(p) in _IMAGE_SUFFIXES
    )
    return files


def _suffix(path: Path) -> str:
    return path.suffix.lower()


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".ome.zarr", ".ome.tif", ".ome.tiff", ".mrc.gz"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def _is_section_folder(path: Path) -> bool:
    """A folder of section images (a Zarr store is a folder too, but one stack)."""
    return path.is_dir() and not path.name.lower().endswith(".zarr")


def _read_stack_input(args: argparse.Namespace) -> tuple[list[np.ndarray], list[str], Any]:
    """Sections, their names (for messages) and the voxel size to keep."""
    from emkit.errors import InputError, MissingFileError, with_path
    from emkit.io import read_volume, require_finite, require_ndim

    path: Path = args.input
    if not path.exists():
        raise MissingFileError(with_path(path, "does not exist; give a folder or a stack file"))
    if _is_section_folder(path):
        files = _list_sections(path)
        if len(files) < 2:
            raise InputError(
                with_path(path, f"holds {len(files)} section images; a stack needs at least 2")
            )
        sections = [_read_section(f, "section").data for f in files]
        first = read_volume(files[0])
        return sections, [str(f) for f in files], first.voxel_size
    volume = read_volume(path)
    require_ndim(volume.data, 3, path, "stack of sections (n, y, x)")
    require_finite(volume.data, path, "stack")
    if volume.data.shape[0] < 2:
        raise InputError(with_path(path, "holds 1 section; a stack needs at least 2"))
    names = [f"{path}[{i}]" for i in range(volume.data.shape[0])]
    return [np.asarray(s) for s in volume.data], names, volume.voxel_size


def _read_stack_masks(
    args: argparse.Namespace, names: list[str], shape: tuple[int, ...]
) -> list[np.ndarray | None]:
    from emkit.errors import MismatchError, MissingFileError, with_path
    from emkit.io import read_volume

    masks_path: Path = args.masks
    if not masks_path.exists():
        raise MissingFileError(with_path(masks_path, "does not exist; give the masks folder"))
    if masks_path.is_dir():
        files = {p.stem: p for p in _list_sections(masks_path)}
        if _is_section_folder(args.input):
            stems = {Path(name).stem for name in names}
            for stem, mask_file in files.items():
                if stem not in stems:
                    # Ignoring it would leave that section's defect unmasked, silently.
                    raise MismatchError(
                        with_path(
                            mask_file,
                            f"names no section in {args.input}; name each mask like its "
                            "section (same file stem)",
                        )
                    )
            out: list[np.ndarray | None] = []
            for name in names:
                match = files.get(Path(name).stem)
                out.append(_read_mask(match, shape, Path(name)) if match else None)
            return out
        ordered = [files[k] for k in sorted(files)]
        if len(ordered) != len(names):
            raise MismatchError(
                with_path(
                    masks_path,
                    f"holds {len(ordered)} masks for {len(names)} sections; give one each",
                )
            )
        return [_read_mask(p, shape, Path(n)) for p, n in zip(ordered, names)]
    data = read_volume(masks_path).data
    if data.shape != (len(names), *shape):
        raise MismatchError(
            with_path(
                masks_path,
                f"mask stack has shape {data.shape}; expected {(len(names), *shape)} like "
                "the sections",
            )
        )
    return [m != 0 for m in data]


def run_stack(args: argparse.Namespace) -> int:
    """``emkit register stack``."""
    from emkit.errors import InputError, MismatchError, with_path
    from emkit.io import check_not_input, make_output_folder, volume_format, write_volume
    from emkit.register import register_stack

    fields_dir: Path = args.fields or args.output.with_name(_stem(args.output) + "_fields")
    check_not_input(args.output, [args.input, args.masks])
    check_not_input(fields_dir, [args.input, args.masks])
    volume_format(args.output, for_writing=True)  # before the work, not after
    make_output_folder(fields_dir)  # new, empty or emkit's: refused before the work
    sections, names, voxel_size = _read_stack_input(args)
    shape = sections[0].shape
    for section, name in zip(sections, names):
        if section.shape != shape:
            raise MismatchError(
                with_path(
                    name,
                    f"is {section.shape[0]}x{section.shape[1]} but {Path(names[0]).name} is "
                    f"{shape[0]}x{shape[1]}; give sections of one size",
                )
            )
    _check_fill(args.fill, sections[0].dtype, args.input)
    if args.reference is not None and args.reference >= len(sections):
        raise InputError(
            with_path(args.input, f"--reference {args.reference} is out of range: it holds "
                      f"{len(sections)} sections, numbered 0 to {len(sections) - 1}")
        )
    workers = args.workers or (0 if args.scheduler else os.cpu_count() or 1)
    _require_registration_memory(shape, len(sections), min(workers, len(sections) - 1), args.input)
    masks = _read_stack_masks(args, names, shape) if args.masks else None
    result = register_stack(
        sections,
        defect_masks=masks,
        reference=args.reference,
        scheduler=args.scheduler,
        n_workers=args.workers,
        progress=show_progress(args.quiet),
        section_names=[Path(n).name for n in names],
        **{k: v for k, v in _pair_options(args).items() if k != "fill_value"},
        fill_value=args.fill,
    )
    write_volume(args.output, result.aligned, voxel_size=voxel_size)
    _write_stack_fields(fields_dir, result, names)
    summary = [
        {"section": names[i], **_short_info(info)} for i, info in enumerate(result.pair_info)
    ]
    write_run_record(
        args.output.parent,
        args,
        results={"reference": result.reference, "fields": str(fields_dir), "pairs": summary},
    )
    print(
        f"aligned {len(sections)} sections to section {result.reference} -> {args.output} "
        f"(fields in {fields_dir})"
    )
    return 0


def _write_stack_fields(fields_dir: Path, result: Any, names: list[str]) -> None:
    """One field and validity mask per section, and index.json, into emkit's fields folder.

    Files are written one by one into the folder (never replacing it whole); fields of an
    earlier run with more sections are removed once this run's outputs are in place.
    """
    from emkit.io import on_commit, write_volume

    written: set[str] = {"index.json"}
    for i in range(len(names)):
        write_volume(fields_dir / f"section_{i:04d}.npy", result.fields[i])
        write_volume(fields_dir / f"valid_{i:04d}.png", result.valid[i])
        written |= {f"section_{i:04d}.npy", f"valid_{i:04d}.png"}
    _write_json(
        fields_dir / "index.json",
        {
            "reference": result.reference,
            "sections": names,
            "convention": "field[:, y, x] = (dy, dx) from reference pixel to section pixel",
        },
    )

    def remove_older_fields() -> None:
        for pattern in ("section_[0-9][0-9][0-9][0-9].npy", "valid_[0-9][0-9][0-9][0-9].png"):
            for path in fields_dir.glob(pattern):
                if path.name not in written:
                    path.unlink(missing_ok=True)

    on_commit(remove_older_fields)


def _short_info(info: dict[str, Any]) -> dict[str, Any]:
    keys = ("neighbour", "n_matches", "n_clusters", "valid_fraction")
    return {k: info[k] for k in keys if k in info}


# --------------------------------------------------------------------------- sim


def run_sim_section(args: argparse.Namespace) -> int:
    """``emkit sim section``."""
    from emkit.errors import InputError, with_path
    from emkit.io import check_not_input, write_volume
    from emkit.sim.sections import section_texture, simulate_damaged_section

    out: Path = args.output
    if args.image is not None:
        check_not_input(out, [args.image])
        volume = _read_section(args.image, "section")
        fixed = volume.data
        if min(fixed.shape) < 64:
            raise InputError(with_path(args.image, f"is {fixed.shape}; give at least 64x64"))
        _require_section_memory(fixed.shape, str(args.image), "crop or bin the image")
        suffix = _suffix(args.image)
        moving_name = "moving" + (suffix if suffix in (".png", ".tif", ".tiff", ".mrc") else ".png")
        voxel_size = volume.voxel_size
    else:
        h, w = args.size
        if min(h, w) < 64:
            raise InputError(f"--size {h} {w} is too small; give at least 64 64")
        _require_section_memory((h, w), f"--size {h} {w}", "give a smaller --size")
        fixed = section_texture((h, w), seed=args.seed)
        moving_name = "moving.png"
        voxel_size = None
    names = [moving_name, "defect_mask.png", "true_field.npy", "params.json", "emkit-run.json"]
    for name in names:
        check_not_input(out / name, [args.image])
    damaged = simulate_damaged_section(fixed, kind=args.kind, seed=args.seed)
    from emkit.io import make_output_folder

    make_output_folder(out)
    if args.image is None:
        write_volume(out / "fixed.png", fixed)
    write_volume(out / moving_name, damaged.moving, voxel_size=voxel_size)
    write_volume(out / "defect_mask.png", damaged.defect_mask)
    true_field = np.where(damaged.true_valid[None], damaged.true_field, np.nan).astype(np.float32)
    from emkit.io import atomic_output

    with atomic_output(out / "true_field.npy") as tmp:
        np.save(tmp, true_field)
    _write_json(out / "params.json", damaged.params)
    write_run_record(out, args, results={"kind": args.kind, "band_px": damaged.params["band_px"]})
    print(f"{args.kind}: {out / moving_name}, defect_mask.png, true_field.npy in {out}")
    return 0


def _require_section_memory(shape: tuple[int, ...], source: str, hint: str) -> None:
    """The damaged-section simulation peaks at about 160 bytes per pixel (measured)."""
    from emkit.cli._options import require_memory

    h, w = shape[0], shape[1]
    require_memory(
        160 * h * w, f"simulating a {h}x{w} px section ({source})", hint
    )


# --------------------------------------------------------------------------- demo


def run_demo(out_dir: Path, *, seed: int, progress: bool) -> dict[str, Any]:
    """Synthetic fold on a built-in texture: expected vs global affine, with figures.

    Returns the measured endpoint errors (px) of both methods and the NCC outside the
    defect; writes overlays before/after and the field as PNGs into ``out_dir``.
    """
    from emkit.io import make_output_folder, write_volume
    from emkit.register import endpoint_error, register_pair, similarity
    from emkit.report.register import save_field_figure, save_overlay
    from emkit.sim.sections import section_texture, simulate_damaged_section

    out = make_output_folder(out_dir)
    fixed = section_texture((640, 640), seed=seed)
    damaged = simulate_damaged_section(fixed, kind="fold", seed=seed + 1)
    write_volume(out / "fixed.png", fixed)
    write_volume(out / "moving.png", damaged.moving)
    write_volume(out / "defect_mask.png", damaged.defect_mask)
    save_overlay(out / "overlay_before.png", fixed, damaged.moving, valid=~damaged.defect_mask)
    results: dict[str, Any] = {}
    for method, tag in (("expected-affine", "expected_affine"), ("global-affine", "global_affine")):
        reg = register_pair(
            fixed,
            damaged.moving,
            defect_mask=damaged.defect_mask,
            method=method,  # type: ignore[arg-type]
            seed=seed,
        )
        scored = reg.valid & damaged.true_valid
        epe = endpoint_error(
            reg.field, damaged.true_field, valid=scored, defect_fixed=damaged.defect_mask_fixed
        )
        results[f"epe_mean_px_{tag}"] = round(epe["epe_mean_px"], 3)
        results[f"epe_p95_px_{tag}"] = round(epe["epe_p95_px"], 3)
        results[f"ncc_{tag}"] = round(similarity(fixed, reg.warped, valid=scored)["ncc"], 4)
        save_overlay(out / f"overlay_after_{tag}.png", fixed, reg.warped, valid=reg.valid)
        if method == "expected-affine":
            write_volume(out / "warped_expected_affine.png", reg.warped)
            save_field_figure(
                out / "field_expected_affine.png",
                reg.field,
                valid=reg.valid,
                title="expected affine: fixed -> moving displacement",
            )
    _write_json(out / "results.json", results)
    return results


def _write_json(path: Path, payload: Any) -> None:
    from emkit.io import atomic_output

    with atomic_output(path) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, default=_json_default) + "\n")


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return str(value)
