"""Segment organelles in tomograms from a few labelled slices, and mesh them: train, predict, mesh.

The deep-SXT method: a 2D U-Net with one shared encoder and two decoders, one predicting
labels (trained on the labelled z slices) and one reconstructing the image (trained on
every other slice of the same tomogram), so a few labelled slices suffice. Trains on a
CPU in minutes; uses the GPU when torch sees one.

Examples
--------
    emkit sim cell --output cell/ --seed 1                  # a cell tomogram + true labels
    emkit segment train cell/cell.mrc --labels cell/cell_labels.mrc --slices 20,48,76 \\
        --output model/
    emkit segment predict cell/cell.mrc --model model/ --output cell_seg.mrc
    emkit segment mesh cell_seg.mrc --output meshes/ --min-voxels 200

See `emkit segment train --help`, `emkit segment predict --help`, `emkit segment mesh --help`.
"""

from __future__ import annotations

import argparse
import logging
import re
import time
from pathlib import Path
from typing import Any

import numpy as np

from emkit.cli._common import (
    add_subcommand,
    show_progress,
    write_run_record,
)
from emkit.cli._common import require_memory_for_volume as _require_memory
from emkit.cli._common import set_torch_threads as _set_threads
from emkit.cli._options import (
    OptionType,
    device,
    file_path,
    float_range,
    int_list,
    int_range,
    positive_float,
    positive_int,
    seed,
)
from emkit.io._paths import file_stem as _stem

logger = logging.getLogger(__name__)

_TRAIN_DOC = """Train a segmentation model from a tomogram and a few labelled z slices.

LABELS is a label volume on TOMO's grid (0, 1, 2, ...; MRC, TIFF, Zarr). Only the --slices
are read as labelled (default: every z slice holding a non-zero label); the other slices
are the unlabelled set. A block-wise 15 % of each labelled slice is held out for
validation; training keeps the best-validating weights and stops early. Writes
MODEL_DIR/model.safetensors and config.json (the model), training_log.csv and
training_curves.png; --resume continues from MODEL_DIR/training.ckpt.safetensors.

Examples
--------
    emkit segment train cell.mrc --labels cell_labels.mrc --slices 20,48,76 --output model/
    emkit segment train tomo.mrc --labels painted.tif --output model/ \\
        --class-names background,cytoplasm,nucleus --steps 3000 --resume
"""

_PREDICT_DOC = """Label every voxel of a tomogram with a trained model.

OUT is .mrc (mode 0, int8), .tif/.tiff (uint8) or .ome.zarr / .zarr (uint8): labels as
integers with the tomogram's voxel size. --axes zyx predicts xy, xz and yz slices and
averages the class probabilities. --single-object nucleus keeps only the largest
connected piece of the nucleus: a slice-wise network takes the missing-wedge haze above
and below a cell for nucleus, and that haze is apart from the nucleus in 3D (the other
pieces take each voxel's next most probable class). A tomogram of another voxel size
than the model's is rescaled to the model's (with a warning) and the labels back; beyond a
factor of 4 it is refused.

Examples
--------
    emkit segment predict cell.mrc --model model/ --output cell_seg.mrc --single-object nucleus
    emkit segment predict big.mrc --model model/ --output big_seg.ome.zarr --axes zyx
"""

_MESH_DOC = """Mesh a label volume: a watertight surface per label and connected component.

Each component above --min-voxels is smoothed, meshed by marching cubes at the level that
keeps its voxel volume, and cleaned to a watertight manifold; coordinates in Å. Writes
DIR/<stem>_<class>_<k>.ply (or --format obj|stl|glb), DIR/<stem>_meshes.csv (label, class
name, component, voxels, volume_A3, area_A2, watertight) and DIR/<stem>_meshes.png (a 3D
preview).

Examples
--------
    emkit segment mesh cell_seg.mrc --output meshes/
    emkit segment mesh cell_seg.mrc --output meshes/ --min-voxels 500 --format glb \\
        --class-names outside,cytoplasm,nucleus,mitochondria,lipid-droplets
"""

_SIM_DOC = """Simulate a soft X-ray tomogram of a whole cell with organelle labels.

A cell with membrane, nucleus (with nucleoli), branched mitochondria, lipid droplets and
unlabelled distractors (vesicles, ER-like sheets), with water-window absorption
coefficients, projected over +-65 deg about y, blurred, with photon noise, and
reconstructed (WBP), so it carries the missing-wedge artefacts. Writes OUT/cell.mrc and
OUT/cell_labels.mrc (0 outside, 1 cytoplasm, 2 nucleus, 3 mitochondria, 4 lipid droplets).

Examples
--------
    emkit sim cell --output cell/ --seed 1
    emkit sim cell --output cell/ --shape 64 128 128 --photons 1000 --seed 7
"""

_CELL_CLASSES = "outside,cytoplasm,nucleus,mitochondria,lipid droplets"


def _names_option(name: str, constraint: str) -> OptionType:
    def convert(text: str) -> list[str]:
        names = [n.strip() for n in text.split(",")]
        if not all(names) or len(set(names)) != len(names):
            raise argparse.ArgumentTypeError(f"must be {constraint} (got {text!r})")
        return names

    return OptionType(name, convert, constraint, ["", ",", "a,,b", "a,a"])


class_names = _names_option("class_names", "distinct comma-separated names, one per label value")
single_object_names = _names_option("single_object", "distinct comma-separated class names")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add ``emkit segment`` with ``train``, ``predict`` and ``mesh``."""
    parser = add_subcommand(subparsers, "segment", __doc__, func=None)
    sub = parser.add_subparsers(dest="segment_command", metavar="WHAT")
    parser.set_defaults(func=lambda args: parser.print_help())

    train = add_subcommand(sub, "train", _TRAIN_DOC, func=run_train)
    train.add_argument("tomogram", type=file_path, metavar="TOMO", help="tomogram (z, y, x)")
    train.add_argument("--labels", type=file_path, required=True,
                       help="label volume on TOMO's grid")
    train.add_argument("--slices", type=int_list(0), help="labelled z slices, e.g. 20,48,76")
    train.add_argument("--output", type=file_path, required=True, help="model folder")
    train.add_argument("--class-names", type=class_names,
                       help="name of each label, comma-separated")
    train.add_argument("--pixel-size", type=positive_float,
                       help="voxel size in Å (default: header)")
    train.add_argument("--steps", type=positive_int, default=1200,
                       help="labelled steps (1200); as many unlabelled ones come between")
    train.add_argument("--labelled-only", action="store_true",
                       help="train on the labelled slices alone (no unlabelled decoder steps)")
    train.add_argument("--width", type=int_range(1, 256), default=16,
                       help="U-Net channels, level 1 (16)")
    train.add_argument("--depth", type=int_range(1, 5), default=3, help="U-Net poolings (3)")
    train.add_argument("--patch", type=int_range(16, 4096), default=96,
                       help="training patch side, px (96)")
    train.add_argument("--batch", type=int_range(1, 1024), default=4, help="patches per step (4)")
    train.add_argument("--context-slices", type=int_range(0, 8), default=0,
                       help="also feed this many neighbouring z slices on each side (0)")
    train.add_argument("--seed", type=seed, default=0, help="random seed (0)")
    train.add_argument("--resume", action="store_true", help="continue an interrupted run")
    _add_device_options(train)

    predict = add_subcommand(sub, "predict", _PREDICT_DOC, func=run_predict)
    predict.add_argument("tomogram", type=file_path, metavar="TOMO", help="tomogram (z, y, x)")
    predict.add_argument("--model", type=file_path, required=True, help="model folder")
    predict.add_argument("--output", type=file_path, required=True,
                         help="label volume (.mrc, .tif, .ome.zarr)")
    predict.add_argument("--axes", choices=("z", "zyx"), default="z",
                         help="slice along z (default) or along z, y and x, fused")
    predict.add_argument("--pixel-size", type=positive_float,
                         help="voxel size in Å (default: header)")
    predict.add_argument("--tile", type=int_range(16, 8192), default=256,
                         help="tile side, px (256)")
    predict.add_argument("--batch", type=int_range(1, 1024), default=4, help="tiles per pass (4)")
    predict.add_argument("--single-object", type=single_object_names, default=[],
                         metavar="CLASSES",
                         help="classes that are one object per tomogram (e.g. nucleus): keep "
                              "the largest connected piece of each, relabel the rest")
    _add_device_options(predict)

    mesh = add_subcommand(sub, "mesh", _MESH_DOC, func=run_mesh)
    mesh.add_argument("labels", type=file_path, metavar="LABELS", help="label volume (z, y, x)")
    mesh.add_argument("--output", type=file_path, required=True, help="output folder")
    mesh.add_argument("--min-voxels", type=positive_int, default=100,
                      help="skip components smaller than this (100)")
    mesh.add_argument("--format", choices=("ply", "obj", "stl", "glb"), default="ply",
                      help="mesh file format (ply)")
    mesh.add_argument("--smoothing", type=float_range(0, 10), default=1.0,
                      help="Gaussian smoothing of each mask before meshing, voxels (1)")
    mesh.add_argument("--class-names", type=class_names, help="name of each label, comma-separated")
    mesh.add_argument("--pixel-size", type=positive_float, help="voxel size in Å (default: header)")


def _add_device_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", type=device,
                        help="cpu, cuda, cuda:N or auto (default: the GPU if there is one)")
    parser.add_argument("--threads", type=int_range(1, 1024),
                        help="CPU threads (default: all cores)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def add_sim_parsers(sim_subparsers: argparse._SubParsersAction) -> None:
    """Add ``emkit sim cell``."""
    parser = add_subcommand(sim_subparsers, "cell", _SIM_DOC, func=run_sim)
    parser.add_argument("--output", type=file_path, required=True, help="output folder")
    parser.add_argument("--shape", type=int_range(24, 4096), nargs=3, default=(96, 192, 192),
                        metavar=("NZ", "NY", "NX"), help="tomogram size (96 192 192)")
    parser.add_argument("--pixel-size", type=positive_float, default=300.0,
                        help="voxel size, Å (300)")
    parser.add_argument("--photons", type=positive_float, default=3000.0,
                        help="incident photons per pixel and image (3000)")
    parser.add_argument("--blur", type=float_range(0, 20), default=1.0,
                        help="detector blur sigma, px (1)")
    parser.add_argument("--seed", type=seed, default=0, help="random seed (0)")


# --------------------------------------------------------------------------- helpers






def _read_volume_3d(path: Path, what: str, pixel_size: float | None) -> tuple[Any, float | None]:
    """Read a 3D volume; return it and its voxel size in Å (option, header or None)."""
    from emkit.errors import ShapeError, with_path
    from emkit.io import read_volume, require_finite

    volume = read_volume(path)
    if volume.data.ndim != 3:
        raise ShapeError(with_path(path, f"is a {volume.data.ndim}D array of shape "
                                   f"{volume.data.shape}; a {what} is a volume (z, y, x)"))
    require_finite(volume.data, path, what)
    voxel = pixel_size if pixel_size is not None else volume.pixel_size
    if pixel_size is not None and not pixel_size > 0:
        from emkit.errors import InputError

        raise InputError(f"--pixel-size must be positive, got {pixel_size}")
    return volume, (float(voxel) if voxel is not None and voxel > 0 else None)


def _write_labels(path: Path, labels: np.ndarray, voxel_size_A: float | None,
                  origin: tuple[float, float, float]) -> None:
    """Labels as integers: MRC mode 0 (int8, or mode 1 int16 beyond 127), else uint8."""
    from emkit.io import atomic_output, volume_format, write_volume

    if volume_format(path, for_writing=True) != "mrc":
        write_volume(path, labels.astype(np.uint8), voxel_size=voxel_size_A, origin=origin)
        return
    import mrcfile

    dtype = np.int8 if int(labels.max(initial=0)) < 128 else np.int16
    with atomic_output(path) as tmp:
        with mrcfile.new(tmp, overwrite=True) as mrc:
            mrc.set_data(labels.astype(dtype))
            if voxel_size_A is not None:
                mrc.voxel_size = voxel_size_A
            mrc.header.origin.z, mrc.header.origin.y, mrc.header.origin.x = origin




def _check_label_output(path: Path) -> None:
    from emkit.errors import FileFormatError, with_path
    from emkit.io import volume_format

    if volume_format(path, for_writing=True) not in ("mrc", "tiff", "zarr", "ome-zarr"):
        raise FileFormatError(with_path(path, "labels are written as .mrc, .tif/.tiff, "
                                        ".zarr or .ome.zarr; choose one of these suffixes"))


# --------------------------------------------------------------------------- commands


def run_train(args: argparse.Namespace) -> int:
    """``emkit segment train``."""
    from emkit.cli._options import check_device
    from emkit.errors import EmkitError, InputError, with_path
    from emkit.io import check_not_input, make_output_folder
    from emkit.segment import check_training_inputs

    check_device(args.device)
    # tomogram, its normalised copy and the labels as read
    _require_memory(args.tomogram, 16, "training on a tomogram",
                    "crop or bin the tomogram (and its labels) first")
    out = make_output_folder(args.output)
    names = ("model.safetensors", "config.json", "training_log.csv", "training_curves.png")
    for name in names:
        check_not_input(out / name, [args.tomogram, args.labels])
    tomogram, voxel = _read_volume_3d(args.tomogram, "tomogram", args.pixel_size)
    labels, _ = _read_volume_3d(args.labels, "label volume", None)
    try:
        slices, n_classes = check_training_inputs(tomogram.data, labels.data, args.slices)
    except EmkitError as error:
        raise type(error)(with_path(args.labels, str(error))) from None
    if args.class_names is not None and len(args.class_names) < n_classes:
        raise InputError(
            f"--class-names gives {len(args.class_names)} names for labels 0..{n_classes - 1}"
        )
    if voxel is None:
        logger.warning("%s: no voxel size in the header (give --pixel-size); the model "
                       "will not check the voxel size of the tomograms it is applied to",
                       args.tomogram)
    _set_threads(args.threads)
    from emkit.nn import save_model
    from emkit.report.segment import plot_training_curves
    from emkit.segment import train_segmentation

    start = time.perf_counter()
    training = train_segmentation(
        np.asarray(tomogram.data, dtype=np.float32), labels.data, slices=slices,
        voxel_size_A=voxel, class_names=args.class_names,
        semi_supervised=not args.labelled_only, width=args.width, depth=args.depth,
        patch_size=args.patch, batch_size=args.batch, n_steps=args.steps, seed=args.seed,
        context_slices=args.context_slices,
        device=args.device, checkpoint=out / "training.ckpt.safetensors", resume=args.resume,
        log_csv=out / "training_log.csv", progress=show_progress(args.quiet),
    )
    save_model(out, training.model)
    plot_training_curves(out / "training_curves.png", training.history.rows)
    seconds = round(time.perf_counter() - start, 1)
    write_run_record(out, args, results={
        "slices": slices, "class_names": training.model.class_names,
        "validation_dice": training.validation_dice, "best_step": training.history.best_step,
        "steps_run": training.history.steps_run, "stopped_early": training.history.stopped_early,
        "seconds": seconds})
    dice = ", ".join(f"{k} {v:.3f}" for k, v in training.validation_dice.items())
    print(f"segment train: {len(slices)} labelled slices {slices}, {training.history.steps_run} "
          f"steps in {seconds:g} s; held-out Dice: {dice} -> {out}/")
    return 0


def run_predict(args: argparse.Namespace) -> int:
    """``emkit segment predict``."""
    from emkit.cli._options import check_device
    from emkit.io import check_not_input
    from emkit.nn import load_model
    from emkit.segment import predict_segmentation

    _check_label_output(args.output)
    check_not_input(args.output, [args.tomogram, args.model])
    check_device(args.device)
    # tomogram, labels, one normalised chunk; --axes zyx adds float16 class probabilities
    _require_memory(args.tomogram, 9 if args.axes == "z" else 9 + 2 * 8,
                    f"predicting (--axes {args.axes}) a tomogram",
                    "use --axes z, or crop or bin the tomogram first")
    _set_threads(args.threads)
    model = load_model(args.model, task="segment", device=args.device)
    tomogram, voxel = _read_volume_3d(args.tomogram, "tomogram", args.pixel_size)
    if voxel is None and model.voxel_size_A is not None:
        logger.warning("%s: no voxel size in the header (give --pixel-size); assuming the "
                       "model's %.4g Å", args.tomogram, model.voxel_size_A)
    start = time.perf_counter()
    result = predict_segmentation(
        np.asarray(tomogram.data, dtype=np.float32), model, voxel_size_A=voxel,
        axes=args.axes, tile_size=args.tile, batch_size=args.batch, device=args.device,
        progress=show_progress(args.quiet), single_object=args.single_object,
    )
    _write_labels(args.output, result.labels, voxel, tomogram.origin)
    counts = np.bincount(result.labels.reshape(-1), minlength=len(result.class_names))
    seconds = round(time.perf_counter() - start, 1)
    fractions = {name: round(float(c) / result.labels.size, 5)
                 for name, c in zip(result.class_names, counts)}
    write_run_record(args.output.parent, args, named_after=args.output, results={
        "output": str(args.output), "axes": args.axes, "class_fractions": fractions,
        "rescale_factor": result.rescale_factor,
        "single_object_relabelled_voxels": result.relabelled_voxels, "seconds": seconds})
    print(f"segment predict ({args.axes}): {result.labels.shape} voxels in {seconds:g} s "
          f"-> {args.output}")
    return 0


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") or "label"


def run_mesh(args: argparse.Namespace) -> int:
    """``emkit segment mesh``."""
    from emkit.errors import InputError, with_path
    from emkit.io import check_not_input, make_output_folder, write_mesh, write_text_atomic
    from emkit.report.segment import plot_meshes
    from emkit.segment import mesh_labels, mesh_table

    out = make_output_folder(args.output)
    stem = _stem(args.labels)
    check_not_input(out / f"{stem}_meshes.csv", [args.labels])
    # labels as read, connected components (int32) and one mask
    _require_memory(args.labels, 16, "meshing a label volume", "crop or bin the labels first")
    volume, voxel = _read_volume_3d(args.labels, "label volume", args.pixel_size)
    if voxel is None:
        logger.warning("%s: no voxel size in the header (give --pixel-size); using 1 Å",
                       args.labels)
        voxel = 1.0
    data = np.asarray(volume.data)
    if not np.any(data != 0):
        raise InputError(with_path(args.labels, "holds no non-zero label; nothing to mesh"))
    start = time.perf_counter()
    meshes = mesh_labels(data, voxel_size_A=voxel, origin_A=volume.origin,
                         class_names=args.class_names, min_voxels=args.min_voxels,
                         smoothing_px=args.smoothing)
    if not meshes:
        raise InputError(with_path(args.labels, f"no connected component has "
                                   f"{args.min_voxels} voxels or more; lower --min-voxels"))
    files = []
    for m in meshes:
        path = out / f"{stem}_{_safe_name(m.class_name)}_{m.component}.{args.format}"
        write_mesh(path, m.vertices_zyx_A, m.faces)
        files.append(path.name)
    write_text_atomic(out / f"{stem}_meshes.csv", mesh_table(meshes))
    plot_meshes(out / f"{stem}_meshes.png", meshes)
    seconds = round(time.perf_counter() - start, 1)
    n_tight = sum(m.watertight for m in meshes)
    write_run_record(out, args, results={"meshes": len(meshes), "watertight": n_tight,
                                         "files": files, "seconds": seconds})
    print(f"segment mesh: {len(meshes)} surfaces ({n_tight} watertight) in {seconds:g} s "
          f"-> {out}/{stem}_*.{args.format}, {stem}_meshes.csv")
    return 0


def run_sim(args: argparse.Namespace) -> int:
    """``emkit sim cell``."""
    from emkit.cli._options import require_memory
    from emkit.io import make_output_folder, write_volume
    from emkit.sim import simulate_cell

    shape = tuple(args.shape)
    # about twenty float32 volumes: shapes, distance maps, noise fields, the reconstruction
    require_memory(80 * float(np.prod(shape, dtype=np.float64)) + 300 * 2**20,
                   f"simulating a cell of {' x '.join(map(str, shape))} voxels",
                   "use a smaller --shape")
    out = make_output_folder(args.output)
    cell = simulate_cell(tuple(args.shape), voxel_size_A=args.pixel_size,
                         photons_per_pixel=args.photons, blur_px=args.blur, seed=args.seed)
    write_volume(out / "cell.mrc", cell.tomogram, voxel_size=cell.voxel_size_A)
    _write_labels(out / "cell_labels.mrc", cell.labels, cell.voxel_size_A, (0.0, 0.0, 0.0))
    write_run_record(out, args, results={"simulation": cell.info})
    print(f"sim cell: {cell.tomogram.shape} voxels of {cell.voxel_size_A:g} Å -> {out}/cell.mrc, "
          f"cell_labels.mrc (labels: {_CELL_CLASSES})")
    return 0


# --------------------------------------------------------------------------- demo


def run_demo(
    out_dir: Path, *, seed: int, progress: bool, shape: tuple[int, int, int] = (48, 128, 128),
    steps: int = 400,
) -> dict[str, Any]:
    """Simulate a cell, train from 3 labelled slices, predict, mesh; figures + Dice."""
    from emkit.io import make_output_folder, write_mesh, write_text_atomic, write_volume
    from emkit.nn import save_model
    from emkit.report.segment import (
        plot_error_overlays,
        plot_meshes,
        plot_slice_scores,
        plot_training_curves,
    )
    from emkit.segment import (
        dice_scores,
        mesh_labels,
        mesh_table,
        per_slice_scores,
        predict_segmentation,
        train_segmentation,
    )
    from emkit.sim import CELL_CLASS_NAMES, simulate_cell

    out_dir = make_output_folder(out_dir)
    _set_threads(None)
    cell = simulate_cell(shape, seed=seed)
    nz = cell.tomogram.shape[0]
    slices = [nz // 4, nz // 2, 3 * nz // 4]
    write_volume(out_dir / "cell.mrc", cell.tomogram, voxel_size=cell.voxel_size_A)
    _write_labels(out_dir / "cell_labels.mrc", cell.labels, cell.voxel_size_A, (0.0, 0.0, 0.0))
    if progress:
        print(f"   simulated a {cell.tomogram.shape} cell; training from z slices {slices}",
              flush=True)
    make_output_folder(out_dir / "model")  # the log is written into it first
    training = train_segmentation(cell.tomogram, cell.labels, slices=slices,
                                  voxel_size_A=cell.voxel_size_A, class_names=CELL_CLASS_NAMES,
                                  n_steps=steps, seed=seed, progress=progress,
                                  log_csv=out_dir / "model" / "training_log.csv")
    save_model(out_dir / "model", training.model)
    plot_training_curves(out_dir / "training_curves.png", training.history.rows)
    predicted = predict_segmentation(cell.tomogram, training.model,
                                     voxel_size_A=cell.voxel_size_A,
                                     single_object=["nucleus"]).labels
    _write_labels(out_dir / "cell_seg.mrc", predicted, cell.voxel_size_A, (0.0, 0.0, 0.0))
    other = np.setdiff1d(np.arange(nz), slices)
    dice = dice_scores(predicted[other], cell.labels[other], len(CELL_CLASS_NAMES))
    per_slice, accuracy = per_slice_scores(predicted, cell.labels, len(CELL_CLASS_NAMES))
    plot_slice_scores(out_dir / "slice_scores.png", {"deep-SXT": per_slice},
                      CELL_CLASS_NAMES, accuracy={"deep-SXT": accuracy}, labelled_slices=slices)
    plot_error_overlays(out_dir / "error_overlays.png", cell.tomogram, predicted, cell.labels,
                        slices=[nz // 3, 2 * nz // 3], class_names=CELL_CLASS_NAMES)
    meshes = mesh_labels(predicted, voxel_size_A=cell.voxel_size_A,
                         class_names=CELL_CLASS_NAMES, min_voxels=50)
    for m in meshes:
        write_mesh(out_dir / "meshes" / f"cell_seg_{_safe_name(m.class_name)}_{m.component}.ply",
                   m.vertices_zyx_A, m.faces)
    write_text_atomic(out_dir / "meshes" / "cell_seg_meshes.csv", mesh_table(meshes))
    plot_meshes(out_dir / "meshes.png", meshes)
    result: dict[str, Any] = {
        f"dice_{_safe_name(name)}": round(float(dice[k]), 3)
        for k, name in enumerate(CELL_CLASS_NAMES) if k > 0 and np.isfinite(dice[k])
    }
    result["meshes"] = len(meshes)
    result["meshes_watertight"] = sum(m.watertight for m in meshes)
    result["training_steps"] = training.history.steps_run
    return result
