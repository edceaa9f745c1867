"""Find particles in cryo-ET tomograms: train, detect, template matching, evaluation.

Particle lists are CSV/TSV (x, y, z in voxels, optional class), RELION STAR
(rlnCoordinateX/Y/Z in voxels or RELION 5 rlnCenteredCoordinateX/Y/ZAngst) or DeepFinder
XML; classes are numbered from 1.

Examples
--------
    emkit sim tomogram --output sim/ --seed 1          # crowded tomogram + ground truth
    emkit pick detect sim/tomogram.mrc --output picks/   # the shipped model
    emkit pick train a.mrc b.mrc --particles a.star b.star --radius-A 40,49,62 --output model/
    emkit pick match sim/tomogram.mrc --template 1ake 3enl 6flr --output tm/
    emkit pick evaluate tm/tomogram_particles.tsv sim/particles.star --radius-A 40,49,62 \\
        --output scores/
    emkit pick labels sim/particles.csv --like sim/tomogram.mrc --radius-A 40,49,62 \\
        --output labels.mrc

See `emkit pick train --help`, `emkit pick detect --help`, `emkit pick match --help`,
`emkit pick evaluate --help`, `emkit pick labels --help`.
"""

from __future__ import annotations

import argparse
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
    int_range,
    nonneg_int,
    positive_float,
    positive_int,
    seed,
)
from emkit.io._paths import file_stem as _stem

_EVALUATE_DOC = """Score picked particles against the truth: precision, recall, F1, F-beta 4.

PRED and GT are particle lists (CSV/TSV, STAR, DeepFinder XML). A prediction is a hit when
it lies within --fraction (0.5) of its class's radius from a true particle of the same
class, each particle matched at most once (Hungarian matching, the most pairs at the least
total distance). F-beta with beta 4 is the CZII cryo-ET challenge score. Writes
DIR/evaluation.csv (per class and overall) and DIR/evaluation.png.

Examples
--------
    emkit pick evaluate picks/tomogram_particles.tsv sim/particles.star --radius-A 40,49,62 \\
        --output scores/
    emkit pick evaluate picks.csv truth.csv --radius-A 50 --pixel-size 10 --output scores/
"""

_LABELS_DOC = """Label maps from a particle list: balls of each class's radius, or template shapes.

Writes OUT (instance labels: 0 background, i for the i-th particle) and, with
--class-output, a class map (0 background, else the class). The grid (shape, voxel size)
is that of --like TOMO; overlapping balls are split between the nearest centres. With
--template (one per class: a built-in name or a density map) each particle gets its
template's shape above 10 % of its peak, turned by the list's RELION Euler angles.

Examples
--------
    emkit pick labels particles.csv --like tomogram.mrc --radius-A 55,49,47 --output inst.mrc
    emkit pick labels sim/particles.star --like sim/tomogram.mrc --template 1ake 3enl 6flr \\
        --output inst.mrc
"""

_TRAIN_DOC = """Train the picking network (mask, centre, class heads) on tomograms + particle lists.

One --particles list per TOMO, in the same order (CSV x,y,z[,class] in voxels, RELION STAR
in voxels or RELION 5 centred Å, DeepFinder XML; classes from 1). Training targets are
balls of 0.7 x --radius-A (one radius per class, Å) about each particle, or the --labels
instance maps. Patches around particles and anywhere, flipped at random; the last 20 % of
each tomogram's x range is held out for validation; the best-validating weights are kept
and training stops early. Starts from the shipped model (trained on emkit's simulations)
unless --from-scratch or --init MODEL_DIR. Writes MODEL_DIR/model.safetensors,
config.json, training_log.csv, training_curves.png; --resume continues from
MODEL_DIR/training.ckpt.safetensors.

Examples
--------
    emkit pick train a.mrc b.mrc --particles a.star b.star --radius-A 55,49,47 --output model/
    emkit pick train a.mrc --particles a.csv --radius-A 60 --output model/ --from-scratch \\
        --steps 3000 --resume
"""

_DETECT_DOC = """Find particles with a trained model (default: the shipped one).

Tiled, overlapping, blended inference, then the original detector's post-processing at
its defaults (bugs fixed): mask threshold, small-object removal, centre peaks, splitting
of components with several peaks, k-nearest-neighbour outlier filter. A tomogram of
another voxel size than the model's is rescaled to it (with a warning), up to a factor 2.
--chunk N reads the tomogram lazily (memory-mapped MRC, Zarr) and works chunk by chunk,
each with a margin that holds a whole particle: memory stays bounded. The chunks run on a
local Dask cluster of --workers processes, or on the running scheduler at --scheduler
(whose workers must see the same file), each task reading only its chunk.
Writes DIR/<stem>_instances.mrc (instance labels, voxel size kept),
DIR/<stem>_particles.star (voxels, RELION 5 centred Å, class, score) and
DIR/<stem>_particles.tsv (PositionX/Y/Z Å, VolumeX/Y/Z voxels, Class, Score).

Examples
--------
    emkit pick detect sim/tomogram.mrc --output picks/
    emkit pick detect tomo.mrc --model model/ --output picks/ --mask-threshold 0.3 \\
        --outlier-neighbours 0
    emkit pick detect huge.ome.zarr --output picks/ --chunk 192
    emkit pick detect huge.ome.zarr --output picks/ --chunk 192 --workers 2
"""

_MATCH_DOC = """Template matching, the baseline picker: FFT cross-correlation over an SO(3) grid.

Each --template (a built-in name such as 3enl, or a density map with its voxel size in the
header, protein positive) is resampled to TOMO's voxel size, turned through --rotations
orientations, multiplied by the missing wedge of a +-(--tilt-range) tilt series and
correlated with TOMO under a spherical mask, normalised by the local standard deviation
(scores in [-1, 1]). Peaks above --threshold (default: mean + 4 sd of the score map), at
least the smallest template radius apart, are the picks; the class is the template that
scored best. Writes DIR/<stem>_particles.star (voxels, RELION 5 centred Å, class, score,
angles), DIR/<stem>_particles.tsv (PositionX/Y/Z Å, VolumeX/Y/Z voxels, Class, Score),
DIR/<stem>_instances.mrc (balls of the template radii) and DIR/<stem>_scores.mrc.

Examples
--------
    emkit pick match sim/tomogram.mrc --template 1ake 3enl 6flr --output tm/
    emkit pick match tomo.mrc --template ribosome.mrc --rotations 500 --threshold 0.2 \\
        --output tm/
"""

_SIM_DOC = """Simulate a crowded cryo-ET tomogram of several particle species, with ground truth.

The built-in PDB-derived templates (default 1ake, 3enl, 6flr; also 3o21, 6flr_a and
6zu5_se0; or --pdb files) at the tomogram's voxel size, randomly rotated, placed without
overlap (part of them on both faces of a curved membrane), with gold beads and an ice
gradient; a tilt series through
the shared projector with CTF and noise at --snr per projection, phase-flipped and
reconstructed by weighted back-projection (the real missing wedge). Protein is dark.
Writes OUT/tomogram.mrc, tiltseries.mrc/.tlt, density.mrc, instances.mrc,
particles.star/.tsv/.csv/.xml (centres in voxels, class; angles in STAR and XML) and
classes.csv (class, name, radius).

Examples
--------
    emkit sim tomogram --output sim/ --seed 1
    emkit sim tomogram --output sim/ --shape 64 256 256 --snr 0.05 --templates 3enl,6flr
    emkit sim tomogram --output sim/ --templates 3enl,6flr_a,6zu5_se0   # all ~48 Å radius
"""


def _float_list(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be {radii.constraint} (got {text!r})") from None
    if not values or not all(np.isfinite(v) and v > 0 for v in values):
        raise argparse.ArgumentTypeError(f"must be {radii.constraint} (got {text!r})")
    return values


radii = OptionType("radii", _float_list, "comma-separated positive numbers, one per class",
                   ["", "a", "0", "-5", "50,,49", "nan", "inf"])


def _names(text: str) -> list[str]:
    names = [n.strip().lower() for n in text.split(",")]
    if not all(names) or len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(f"must be {template_names.constraint} (got {text!r})")
    return names


template_names = OptionType("template_names", _names,
                            "distinct comma-separated names",
                            ["", ",", "a,,b", "a,a"])


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add ``emkit pick`` with its subcommands."""
    parser = add_subcommand(subparsers, "pick", __doc__, func=None)
    sub = parser.add_subparsers(dest="pick_command", metavar="WHAT")
    parser.set_defaults(func=lambda args: parser.print_help())

    ev = add_subcommand(sub, "evaluate", _EVALUATE_DOC, func=run_evaluate)
    ev.add_argument("predicted", type=file_path, metavar="PRED", help="picked particles")
    ev.add_argument("truth", type=file_path, metavar="GT", help="true particles")
    ev.add_argument("--radius-A", type=radii, required=True, dest="radius_A",
                    help="particle radius per class in Å, e.g. 55,49,47")
    ev.add_argument("--pixel-size", type=positive_float,
                    help="voxel size in Å (default: implied by a TSV/STAR list)")
    ev.add_argument("--fraction", type=float_range(0, 2, lo_inclusive=False), default=0.5,
                    help="a hit lies within this fraction of the radius (0.5)")
    ev.add_argument("--ignore-classes", action="store_true",
                    help="match regardless of class (detection only)")
    ev.add_argument("--output", type=file_path, required=True, help="output folder")

    _add_train(sub)
    _add_detect(sub)
    _add_match(sub)
    lab = add_subcommand(sub, "labels", _LABELS_DOC, func=run_labels)
    lab.add_argument("particles", type=file_path, metavar="LIST", help="particle list")
    lab.add_argument("--like", type=file_path, required=True, metavar="TOMO",
                     help="tomogram whose grid the labels take")
    size = lab.add_mutually_exclusive_group(required=True)
    size.add_argument("--radius-A", type=radii, dest="radius_A",
                      help="particle radius per class in Å (balls)")
    size.add_argument("--template", type=file_path, nargs="+", metavar="MAP",
                      help="built-in template name or density map per class (shapes, "
                      "turned by the list's RELION angles)")
    lab.add_argument("--output", type=file_path, required=True, help="instance labels (.mrc)")
    lab.add_argument("--class-output", type=file_path, dest="field", metavar="CLASS_MAP",
                     help="class map (.mrc), optional")


def _add_train(sub: argparse._SubParsersAction) -> None:
    train = add_subcommand(sub, "train", _TRAIN_DOC, func=run_train)
    train.add_argument("tomograms", type=file_path, nargs="+", metavar="TOMO",
                       help="tomograms (z, y, x)")
    train.add_argument("--particles", type=file_path, nargs="+", required=True,
                       metavar="LIST", help="one particle list per tomogram")
    train.add_argument("--radius-A", type=radii, required=True, dest="radius_A",
                       help="particle radius per class in Å, e.g. 55,49,47")
    train.add_argument("--output", type=file_path, required=True, help="model folder")
    train.add_argument("--labels", type=file_path, nargs="+", metavar="MAP",
                       help="instance label maps, one per tomogram (instead of balls)")
    train.add_argument("--class-names", type=template_names,
                       help="name of each class (fine-tuning keeps the initial model's output "
                            "for a class of the same name, e.g. 3enl)")
    train.add_argument("--from-scratch", action="store_true",
                       help="do not start from the shipped model")
    train.add_argument("--init", type=file_path, metavar="MODEL_DIR",
                       help="start from this model instead of the shipped one")
    train.add_argument("--pixel-size", type=positive_float,
                       help="voxel size in Å (default: header)")
    train.add_argument("--steps", type=positive_int, default=800, help="training steps (800)")
    train.add_argument("--patch", type=int_range(16, 256), default=32,
                       help="patch side, voxels, a multiple of 4 (32)")
    train.add_argument("--batch", type=int_range(1, 256), default=4, help="batch size (4)")
    train.add_argument("--width", type=int_range(1, 256), default=8,
                       help="channels of the first level when training from scratch (8)")
    train.add_argument("--lr", type=float_range(0, 1, lo_inclusive=False), default=2e-3,
                       help="learning rate (0.002)")
    train.add_argument("--seed", type=seed, default=0, help="random seed (0)")
    train.add_argument("--resume", action="store_true", help="continue an interrupted run")
    train.add_argument("--device", type=device, help="cpu, cuda, cuda:N (default: auto)")
    train.add_argument("--threads", type=positive_int, help="CPU threads (default: all)")
    train.add_argument("--quiet", action="store_true", help="no progress bar")


def _add_detect(sub: argparse._SubParsersAction) -> None:
    det = add_subcommand(sub, "detect", _DETECT_DOC, func=run_detect)
    det.add_argument("tomogram", type=file_path, metavar="TOMO", help="tomogram (z, y, x)")
    det.add_argument("--model", type=file_path, metavar="MODEL_DIR",
                     help="model folder (default: the shipped model)")
    det.add_argument("--output", type=file_path, required=True, help="output folder")
    det.add_argument("--mask-threshold", type=float_range(0, 1, hi_inclusive=False),
                     default=0.1, help="mask probability threshold (0.1)")
    det.add_argument("--centre-threshold", type=float_range(0, 1, hi_inclusive=False),
                     default=0.1, help="centre-map threshold for peaks (0.1)")
    det.add_argument("--min-size", type=nonneg_int, default=64,
                     help="remove mask components smaller than this, voxels (64)")
    det.add_argument("--peak-order", type=int_range(1, 20), default=1,
                     help="centre peaks are maxima over (2N+1)^3 voxels (1)")
    det.add_argument("--no-split", action="store_true",
                     help="do not split components holding several centre peaks")
    det.add_argument("--outlier-neighbours", type=nonneg_int, default=3,
                     help="kNN outlier filter: neighbours that must be near (3; 0: off)")
    det.add_argument("--outlier-distance", type=positive_float, default=30.0,
                     help="kNN outlier filter: within this distance, voxels (30)")
    det.add_argument("--pixel-size", type=positive_float,
                     help="voxel size in Å (default: header)")
    det.add_argument("--tile", type=int_range(16, 1024), default=64,
                     help="tile side, voxels (64)")
    det.add_argument("--batch", type=int_range(1, 256), default=2, help="tiles per pass (2)")
    det.add_argument("--chunk", type=int_range(16, 4096),
                     help="process chunks of this side (voxels), reading the tomogram "
                     "lazily: bounded memory for tomograms larger than memory")
    det.add_argument("--workers", type=positive_int,
                     help="with --chunk: worker processes of a local Dask cluster, >= 1 "
                     "(default 1: this process)")
    det.add_argument("--scheduler",
                     help="with --chunk: address of a running Dask scheduler whose workers "
                     "see the same file")
    det.add_argument("--device", type=device, help="cpu, cuda, cuda:N (default: auto)")
    det.add_argument("--threads", type=positive_int,
                     help="CPU threads (default: all; with --workers each worker takes its "
                     "share of the cores instead)")
    det.add_argument("--quiet", action="store_true", help="no progress bar")


def _add_match(sub: argparse._SubParsersAction) -> None:
    match = add_subcommand(sub, "match", _MATCH_DOC, func=run_match)
    match.add_argument("tomogram", type=file_path, metavar="TOMO", help="tomogram (z, y, x)")
    match.add_argument("--template", type=file_path, nargs="+", required=True,
                       metavar="MAP", help="built-in template name or density map, per class")
    match.add_argument("--output", type=file_path, required=True, help="output folder")
    match.add_argument("--rotations", type=int_range(1, 100000), default=120,
                       help="orientations searched (120, about 40 deg apart)")
    match.add_argument("--tilt-range", type=float_range(1, 90), default=60.0,
                       help="the tilt series covered -A..+A degrees (60); 90: no wedge")
    match.add_argument("--threshold", type=float_range(-1, 1),
                       help="score threshold (default: mean + 4 sd of the score map)")
    match.add_argument("--bright-protein", action="store_true",
                       help="protein is bright in TOMO (default: dark, as cryo-ET shows it)")
    match.add_argument("--pixel-size", type=positive_float,
                       help="voxel size in Å (default: header)")
    match.add_argument("--quiet", action="store_true", help="no progress bar")


def add_sim_parsers(sim_subparsers: argparse._SubParsersAction) -> None:
    """Add ``emkit sim tomogram``."""
    parser = add_subcommand(sim_subparsers, "tomogram", _SIM_DOC, func=run_sim)
    parser.add_argument("--output", type=file_path, required=True, help="output folder")
    parser.add_argument("--shape", type=int_range(16, 4096), nargs=3, default=(64, 160, 160),
                        metavar=("NZ", "NY", "NX"), help="tomogram size (64 160 160)")
    parser.add_argument("--pixel-size", type=positive_float, default=10.0,
                        help="voxel size, Å (10)")
    parser.add_argument("--templates", type=template_names,
                        help="built-in templates, one per class (1ake,3enl,6flr)")
    parser.add_argument("--pdb", type=file_path, nargs="+", metavar="MODEL",
                        help="PDB/mmCIF models instead of built-in templates")
    parser.add_argument("--fraction", type=float_range(0, 0.5, hi_inclusive=False),
                        default=0.12, help="volume fraction of particles (0.12)")
    parser.add_argument("--membrane-fraction", type=float_range(0, 1), default=0.25,
                        help="fraction of particles on the membrane (0.25)")
    parser.add_argument("--no-membrane", action="store_true", help="no membrane")
    parser.add_argument("--gold", type=nonneg_int, default=3, help="gold beads (3)")
    parser.add_argument("--snr", type=positive_float, default=0.01,
                        help="SNR per projection (0.01)")
    parser.add_argument("--defocus", type=float_range(0, 20, lo_inclusive=False, unit="in µm"),
                        default=3.0,
                        help="underfocus, µm (3)")
    parser.add_argument("--tilt-range", type=float_range(1, 89), default=60.0,
                        help="tilts from -A to +A degrees (60)")
    parser.add_argument("--tilt-step", type=float_range(0.1, 30), default=3.0,
                        help="tilt step, degrees (3)")
    parser.add_argument("--seed", type=seed, default=0, help="random seed (0)")


# --------------------------------------------------------------------------- commands




def run_evaluate(args: argparse.Namespace) -> int:
    """``emkit pick evaluate``."""
    from emkit.cli._options import require_memory
    from emkit.io import make_output_folder, write_text_atomic
    from emkit.pick import evaluate_particle_files
    from emkit.report.pick import plot_pick_scores

    # the two tables as text and as arrays, and the matching
    size = sum(p.stat().st_size for p in (args.predicted, args.truth) if p.is_file())
    require_memory(20 * size + 200 * 2**20, "reading and matching two particle lists",
                   "split the lists into smaller ones")
    scores = evaluate_particle_files(
        args.predicted, args.truth, radius_A=args.radius_A, voxel_size_A=args.pixel_size,
        fraction=args.fraction, ignore_classes=args.ignore_classes)
    out = make_output_folder(args.output)
    write_text_atomic(out / "evaluation.csv", scores.to_csv())
    plot_pick_scores(out / "evaluation.png", {"picks": scores.rows})
    write_run_record(out, args, results={"overall": scores.overall})
    for row in scores.rows:
        print(f"class {row['class']}: {row['tp']}/{row['n_true']} found, {row['fp']} false; "
              f"P {row['precision']:.3f} R {row['recall']:.3f} F1 {row['f1']:.3f} "
              f"F-beta4 {row['f_beta4']:.3f}")
    return 0


def run_labels(args: argparse.Namespace) -> int:
    """``emkit pick labels``."""
    from emkit.pick import labels_from_particle_file, write_instance_labels

    # instance labels (int32), class map, nearest distances (float32), room to spare
    _require_memory(args.like, 14, "label maps on the grid of a tomogram",
                    "crop or bin the tomogram first")

    instances, classes, voxel = labels_from_particle_file(
        args.particles, args.like, radius_A=args.radius_A, templates=args.template)
    write_instance_labels(args.output, instances, voxel)
    if args.field is not None:
        write_instance_labels(args.field, classes, voxel)
    print(f"pick labels: {int(instances.max())} particles -> {args.output}")
    return 0






def run_train(args: argparse.Namespace) -> int:
    """``emkit pick train``."""
    from emkit.cli._options import check_device
    from emkit.io import make_output_folder
    from emkit.pick import check_class_names, train_picker_from_files
    from emkit.report.pick import plot_training_curves

    check_device(args.device)
    check_class_names(args.class_names, len(args.radius_A))
    # each tomogram, its normalised copy and four targets
    for tomo in args.tomograms:
        _require_memory(tomo, 28 * len(args.tomograms), "training on tomograms",
                        "crop or bin the tomograms first")
    _set_threads(args.threads)
    out = make_output_folder(args.output)
    start = time.perf_counter()
    training = train_picker_from_files(
        args.tomograms, args.particles, radius_A=args.radius_A, labels=args.labels,
        voxel_size_A=args.pixel_size, from_scratch=args.from_scratch, initial_model=args.init,
        class_names=args.class_names, width=args.width, patch_size=args.patch,
        batch_size=args.batch, n_steps=args.steps, learning_rate=args.lr, seed=args.seed,
        device=args.device, checkpoint=out / "training.ckpt.safetensors", resume=args.resume,
        log_csv=out / "training_log.csv", progress=show_progress(args.quiet))
    from emkit.nn import save_model

    save_model(out, training.model)
    plot_training_curves(out / "training_curves.png", training.history.rows)
    seconds = round(time.perf_counter() - start, 1)
    write_run_record(out, args, results={
        "validation": training.validation, "best_step": training.history.best_step,
        "steps_run": training.history.steps_run, "stopped_early": training.history.stopped_early,
        "fine_tuned": training.model.extra.get("fine_tuned"), "seconds": seconds})
    print(f"pick train: {training.history.steps_run} steps in {seconds:g} s "
          f"({'fine-tuned' if training.model.extra.get('fine_tuned') else 'from scratch'}); "
          f"held-out loss {training.history.best_validation_loss:.4f} -> {out}/")
    return 0


def run_detect(args: argparse.Namespace) -> int:
    """``emkit pick detect``."""
    from emkit.cli._options import check_device
    from emkit.errors import InputError
    from emkit.io import make_output_folder
    from emkit.pick import PostProcessing, detect_particles_in_file, write_particle_lists

    check_device(args.device)
    if (args.workers or args.scheduler) and not args.chunk:
        raise InputError("--workers and --scheduler run the chunks of --chunk N on Dask; "
                         "give --chunk too (e.g. --chunk 128)")
    if args.workers and args.scheduler:
        raise InputError("--workers starts a local cluster, --scheduler uses a running one; "
                         "give one of them")
    if args.chunk:
        # the label map (unless it goes to a temporary file), and per local worker one
        # chunk with its margins: its data and about ten maps
        from emkit.cli._options import require_memory
        from emkit.pick import label_map_on_disk, lazy_tomogram_shape

        shape = lazy_tomogram_shape(args.tomogram)  # header only: a Zarr store is not read
        labels = 0 if label_map_on_disk(shape) else 4 * float(np.prod(shape, dtype=np.float64))
        workers = 1 if args.scheduler else (args.workers or 1)
        require_memory(labels + workers * (48 * float(args.chunk + 64) ** 3 + 300 * 2**20),
                       f"the label map and {workers} chunk(s) of {args.chunk}^3 voxels",
                       "use a smaller --chunk or fewer --workers")
    else:
        # the tomogram, its normalised copy, about six float32 maps, labels, a resampled copy
        _require_memory(args.tomogram, 48, "detecting particles in a tomogram",
                        "use --chunk, or crop or bin the tomogram first")
    _set_threads(args.threads)
    params = PostProcessing(
        mask_threshold=args.mask_threshold, centre_threshold=args.centre_threshold,
        min_size_voxels=args.min_size, peak_order=args.peak_order,
        split_components=not args.no_split, outlier_neighbours=args.outlier_neighbours,
        outlier_distance_px=args.outlier_distance)
    start = time.perf_counter()
    result = detect_particles_in_file(args.tomogram, model=args.model,
                                      voxel_size_A=args.pixel_size, params=params,
                                      tile_size=args.tile, batch_size=args.batch,
                                      device=args.device, chunk=args.chunk,
                                      progress=show_progress(args.quiet),
                                      scheduler=args.scheduler, n_workers=args.workers or 1)
    out = make_output_folder(args.output)
    stem = _stem(args.tomogram)
    write_particle_lists(out, stem, result.particles, voxel_size_A=result.voxel_size_A,
                         shape_zyx=result.instances.shape, instance_labels=result.instances)
    seconds = round(time.perf_counter() - start, 1)
    counts = np.bincount(result.particles.classes, minlength=len(result.class_names) + 1)[1:]
    write_run_record(out, args, results={**result.info, "n_particles": len(result.particles),
                                         "per_class": dict(zip(result.class_names,
                                                               counts.tolist())),
                                         "seconds": seconds})
    per_class = ", ".join(f"{n} {c}" for n, c in zip(counts, result.class_names))
    print(f"pick detect: {len(result.particles)} particles ({per_class}) in {seconds:g} s "
          f"-> {out}/{stem}_particles.star, .tsv, _instances.mrc")
    return 0


def run_match(args: argparse.Namespace) -> int:
    """``emkit pick match``."""
    from emkit.io import make_output_folder, write_volume
    from emkit.pick import run_template_matching, write_particle_lists

    # tomogram, its square, two spectra (complex), score, class and rotation maps, one
    # correlation: about 48 bytes per voxel
    _require_memory(args.tomogram, 48, "template matching on a tomogram",
                    "crop or bin the tomogram first")
    start = time.perf_counter()
    result = run_template_matching(
        args.tomogram, args.template, n_rotations=args.rotations,
        tilt_range_deg=None if args.tilt_range >= 90 else args.tilt_range,
        threshold=args.threshold, dark_protein=not args.bright_protein,
        voxel_size_A=args.pixel_size, progress=show_progress(args.quiet))
    out = make_output_folder(args.output)
    stem = _stem(args.tomogram)
    write_particle_lists(out, stem, result.particles, voxel_size_A=result.voxel_size_A,
                         shape_zyx=result.instances.shape, instance_labels=result.instances,
                         rotations=result.rotations)
    write_volume(out / f"{stem}_scores.mrc", result.score_map,
                 voxel_size=result.voxel_size_A)
    seconds = round(time.perf_counter() - start, 1)
    write_run_record(out, args, results={**result.info, "n_particles": len(result.particles),
                                         "seconds": seconds})
    print(f"pick match: {len(result.particles)} particles above {result.info['threshold']:.3f} "
          f"({result.info['n_rotations']} rotations x {len(result.class_names)} templates) "
          f"in {seconds:g} s -> {out}/{stem}_particles.star, .tsv, _instances.mrc")
    return 0


def run_sim(args: argparse.Namespace) -> int:
    """``emkit sim tomogram``."""
    from emkit.cli._options import require_memory
    from emkit.io import make_output_folder
    from emkit.pick import write_simulated_tomogram
    from emkit.sim import DEFAULT_TOMOGRAM_TEMPLATES, density_from_pdb, simulate_tomogram

    shape = tuple(args.shape)
    require_memory(48 * float(np.prod(shape, dtype=np.float64)) + 300 * 2**20,
                   f"simulating a tomogram of {' x '.join(map(str, shape))} voxels",
                   "use a smaller --shape")
    templates: list[Any] = list(args.templates or DEFAULT_TOMOGRAM_TEMPLATES)
    if args.pdb:
        templates = [density_from_pdb(p, args.pixel_size) for p in args.pdb]
    start = time.perf_counter()
    sim = simulate_tomogram(
        shape, voxel_size_A=args.pixel_size, templates=templates,
        volume_fraction=args.fraction, membrane=not args.no_membrane,
        membrane_fraction=args.membrane_fraction, n_gold=args.gold, snr=args.snr,
        defocus_um=args.defocus, tilt_range_deg=(-args.tilt_range, args.tilt_range),
        tilt_step_deg=args.tilt_step, seed=args.seed)
    out = make_output_folder(args.output)
    write_simulated_tomogram(out, sim)
    write_run_record(out, args, results={"simulation": sim.info})
    seconds = round(time.perf_counter() - start, 1)
    counts = np.bincount(sim.class_ids, minlength=len(sim.class_names) + 1)[1:]
    per_class = ", ".join(f"{n} {c}" for n, c in zip(counts, sim.class_names))
    print(f"sim tomogram: {sim.tomogram.shape} voxels of {sim.voxel_size_A:g} Å, "
          f"{len(sim.class_ids)} particles ({per_class}) in {seconds:g} s -> {out}/")
    return 0


# --------------------------------------------------------------------------- demo


def run_demo(out_dir: Path, *, seed: int, progress: bool) -> dict[str, Any]:
    """Simulate a crowded tomogram, pick with the shipped model and with template matching,
    score both against the truth; figures and lists."""
    from emkit.pick._demo import run_pick_demo
    from emkit.report.pick import plot_pick_scores, plot_picks

    _set_threads(None)
    demo = run_pick_demo(out_dir, seed=seed, progress=progress)
    sim = demo.sim
    if demo.network_zyx is not None:
        plot_picks(demo.output_dir / "network_picks.png", sim.tomogram, demo.network_zyx,
                   truth_zyx=sim.centres_zyx)
    names = {k + 1: n for k, n in enumerate(sim.class_names)}
    plot_pick_scores(demo.output_dir / "scores.png", demo.rows, class_names=names)
    return demo.numbers
