"""Single-particle orientations and maps: orient particle images, reconstruct a map.

Orientations come from the images' common-view graph (the default for thousands of images
of a particle without symmetry) or from distances between the orientations of image pairs
(learned by a Siamese network, or exact ones from a STAR's true angles) fitted with one unit
quaternion per image; then they are refined by projection matching against the map they
make. Angles are written in RELION's convention (rlnAngleRot/Tilt/Psi, rlnOriginX/YAngst).

Examples
--------
    emkit sim particles 5j0n.mrc --n 5000 --output sim/ --snr 0.125 --seed 1
    emkit spa orient sim/particles.star --output sim/orient.star
    emkit spa reconstruct sim/particles.star --angles sim/orient.star --output sim/map.mrc

See `emkit spa orient --help` and `emkit spa reconstruct --help`.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from emkit.cli._common import add_subcommand, write_run_record
from emkit.cli._options import (
    file_path,
    float_range,
    int_range,
    positive_float,
    require_memory,
    seed,
)

# Largest origin shift a simulation may draw, px (checked against the box when it is known).
nonneg_float_px = float_range(0, 1000)

_ORIENT_DOC = """Recover the orientation (and shift) of every particle image; write a STAR.

PARTICLES is a stack (.mrcs) or a RELION STAR (3.0 or 3.1) naming the images. The start
(--distances): "spectral" uses no distances: each image's best rotationally correlated
partners and their in-plane angles make a graph whose eigenvectors give the orientations,
its edges weighted in noise by how well the paths around them agree (needs thousands of
images and no symmetry); "learned" predicts the distances between the orientations of many
image pairs with a Siamese network (--model, or the one shipped with emkit, which is not
accurate yet on structures it was not trained on) and fits one unit quaternion per image to
them; "exact" takes the distances from the true angles of a simulated STAR (a check of
everything after them); "auto" (the default) is "learned" when --model is given and
"spectral" otherwise. The image-side rotation that distances cannot see is then found from
the images, and --refine rounds of projection matching against the map they make refine
angles and shifts (0: no refinement); docs/spa.md says where each start works.
Writes OUT.star (RELION 3.1: rlnAngleRot, rlnAngleTilt,
rlnAnglePsi, rlnOriginXAngst, rlnOriginYAngst, optics) and, when PARTICLES holds angles,
OUT_errors.png (errors against them after a global rotation).

Examples
--------
    emkit spa orient particles.star --output orient.star
    emkit spa orient particles.mrcs --output orient.star --pixel-size 3.667 --refine 8
    emkit spa orient sim/particles.star --output check.star --distances exact
    emkit spa orient particles.star --output orient.star --model my_model/
"""

_RECONSTRUCT_DOC = """Reconstruct a map from particle images and their angles, with half-maps, FSC.

Direct Fourier inversion (RELION's conventions: map on the particles' box, centre voxel
L//2, pixel size from the STAR or the stack), CTF-aware when the STAR gives defocus. Writes
MAP.mrc, MAP_half1.mrc, MAP_half2.mrc (random halves), MAP_fsc.csv and MAP_fsc.png beside
it; prints the FSC 0.5 and 0.143 resolutions.

Examples
--------
    emkit spa reconstruct particles.star --angles orient.star --output map.mrc
    emkit spa reconstruct particles.mrcs --angles orient.star --output map.mrc --pixel-size 3.667
"""

_TRAIN_DOC = """Train the distance network on simulated projections of your own structures.

Each atomic model (PDB/mmCIF, gzipped too) becomes a density at two scales in the box; a
map (.mrc) is used as it is, centred in the box. Projections at many orientations, with
in-plane turns, shifts, CTF and noise, teach the network the angle between the orientations
of two images; held-out blob assemblies pick the weights to keep. Train on structures
OTHER than the one you will orient (the model must transfer). Writes MODEL_DIR
(model.safetensors + config.json, training_log.csv); --resume continues from
MODEL_DIR/training.ckpt.safetensors. Use it with `emkit spa orient --model MODEL_DIR`.

Examples
--------
    emkit spa train --structures 1ake.pdb 3enl.pdb 6zu5.cif.gz --output model/
    emkit spa train --structures a.pdb b.mrc --output model/ --box 48 --pixel-size 4.2 \\
        --steps 3000 --resume
"""

_SIM_DOC = """Simulate particle images of a map or an atomic model with their true orientations.

Projections at orientations drawn uniformly on SO(3) (or with tilts in --tilt-range), through
emkit's 3D projector, shifted (--max-shift), CTF-filtered (--defocus) and with white noise
(--snr: variance of the images over that of the noise). MAP_OR_PDB is an MRC map (padded or
cropped to a cube of --box about its centre) or a PDB/mmCIF model (density at --pixel-size).
Writes DIR/particles.mrcs, DIR/particles.star (RELION 3.1, the true angles and shifts) and
DIR/map.mrc (the projected map).

Examples
--------
    emkit sim particles 5j0n.mrc --n 5000 --output sim/ --seed 1
    emkit sim particles 1ake.pdb --n 2000 --output sim/ --pixel-size 3 --box 48 --snr 0.125
    emkit sim particles 5j0n.mrc --n 1000 --output sim/ --defocus 10000 25000 --max-shift 3
"""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add ``emkit spa`` with ``orient``, ``train`` and ``reconstruct``."""
    parser = add_subcommand(subparsers, "spa", __doc__, func=None)
    sub = parser.add_subparsers(dest="spa_command", metavar="WHAT")
    parser.set_defaults(func=lambda args: parser.print_help())

    orient = add_subcommand(sub, "orient", _ORIENT_DOC, func=run_orient)
    orient.add_argument("particles", type=file_path, metavar="PARTICLES",
                        help="particle stack (.mrcs) or RELION STAR")
    orient.add_argument("--output", type=file_path, required=True, help="output STAR file")
    orient.add_argument("--model", type=file_path,
                        help="distance model folder (learned distances; the shipped one "
                             "with --distances learned and no --model)")
    orient.add_argument("--refine", type=int_range(0, 100), default=6,
                        help="projection-matching rounds, 0 for none (6)")
    orient.add_argument("--distances", choices=("auto", "spectral", "learned", "exact"),
                        default="auto",
                        help="the start: spectral (no distances: the images' common-view "
                             "graph), learned (the network's distances; the shipped model "
                             "is not accurate yet, docs/spa.md), exact (from the STAR's "
                             "true angles); auto (default): learned with --model, else "
                             "spectral")
    _add_bin(orient, "orient")
    _add_common(orient)

    train = add_subcommand(sub, "train", _TRAIN_DOC, func=run_train)
    train.add_argument("--structures", type=file_path, nargs="+", required=True,
                       metavar="FILE", help="atomic models (.pdb, .cif) or maps (.mrc)")
    train.add_argument("--output", type=file_path, required=True, help="model folder")
    train.add_argument("--box", type=int_range(16, 512), default=64,
                       help="particle box in px of the images to orient (64)")
    train.add_argument("--steps", type=int_range(1, 10_000_000), default=1200,
                       help="training steps (1200)")
    train.add_argument("--blobs", type=int_range(0, 1000), default=20,
                       help="extra random blob assemblies for variety (20)")
    train.add_argument("--resume", action="store_true", help="continue an interrupted run")
    _add_common(train, pixel_default="3.667, 5j0n's; the atomic models' densities are made "
                "at it")

    rec = add_subcommand(sub, "reconstruct", _RECONSTRUCT_DOC, func=run_reconstruct)
    rec.add_argument("particles", type=file_path, metavar="PARTICLES",
                     help="particle stack (.mrcs) or RELION STAR")
    rec.add_argument("--angles", type=file_path, required=True,
                     help="STAR with rlnAngleRot/Tilt/Psi (and origins) of every particle")
    rec.add_argument("--output", type=file_path, required=True, help="output map (.mrc)")
    _add_bin(rec, "reconstruct")
    _add_common(rec)


def _add_bin(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--bin", type=int_range(1, 16), default=1, dest="bin_factor",
                        help=f"{what} from the images Fourier-cropped to box // BIN (large "
                             "boxes on a small machine; the pixel size grows by as much) (1)")


def _add_common(parser: argparse.ArgumentParser, pixel_default: str = "from the STAR or "
                "the stack") -> None:
    parser.add_argument("--pixel-size", type=positive_float,
                        help=f"pixel size in Å (default: {pixel_default})")
    parser.add_argument("--seed", type=seed, default=0, help="random seed (0)")
    parser.add_argument("--threads", type=int_range(1, 1024),
                        help="CPU threads (default: all cores)")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")


def add_sim_parsers(sim_subparsers: argparse._SubParsersAction) -> None:
    """Add ``emkit sim particles``."""
    parser = add_subcommand(sim_subparsers, "particles", _SIM_DOC, func=run_sim)
    parser.add_argument("source", type=file_path, metavar="MAP_OR_PDB",
                        help="map (.mrc) or atomic model (.pdb, .cif, .gz)")
    parser.add_argument("--n", type=int_range(2, 10_000_000), default=5000,
                        help="number of particles (5000)")
    parser.add_argument("--output", type=file_path, required=True, help="output folder")
    parser.add_argument("--snr", type=positive_float, help="signal-to-noise ratio (no noise)")
    parser.add_argument("--seed", type=seed, default=0, help="random seed (0)")
    parser.add_argument("--box", type=int_range(8, 1024),
                        help="particle box in px (default: the map's largest side, even)")
    parser.add_argument("--pixel-size", type=positive_float,
                        help="pixel size in Å (map: its header; model: 4)")
    parser.add_argument("--max-shift", type=nonneg_float_px, default=0.0,
                        help="largest origin shift in px, drawn in a disc (0)")
    parser.add_argument("--defocus", type=float_range(100, 200_000, unit="in Å"),
                        nargs=2, metavar=("MIN", "MAX"),
                        help="defocus range in Å (RELION's unit: 10000 25000 is 1-2.5 µm) "
                             "for a CTF (default: no CTF)")
    parser.add_argument("--tilt-range", type=float_range(0, 180), nargs=2, metavar=("LO", "HI"),
                        default=(0.0, 180.0), help="tilt angles allowed, degrees (0 180)")


def _threads(args: argparse.Namespace) -> None:
    from emkit.cli._common import set_torch_threads

    set_torch_threads(args.threads)


# --------------------------------------------------------------------------- commands


def run_orient(args: argparse.Namespace) -> int:
    """``emkit spa orient``."""
    from emkit.io import file_stem
    from emkit.report.spa import plot_orientation_errors
    from emkit.spa._commands import run_orient_files

    _threads(args)
    result = run_orient_files(
        args.particles, args.output, model=args.model, distances=args.distances,
        refine=args.refine, seed=args.seed, pixel_size_A=args.pixel_size,
        progress=not args.quiet, require_memory=require_memory, bin_factor=args.bin_factor)
    record: dict[str, Any] = {"n": result.n, "box": result.box, "seconds": result.seconds,
                              "refinement": result.history}
    source = ("the spectral start, no distances" if result.distances == "spectral"
              else f"{result.distances} distances")
    print(f"oriented {result.n} particles ({source}) -> {args.output}")
    if result.score is not None:
        series = {"distance fit (both sides aligned)": result.fit_score.errors_deg,
                  "before refinement": result.score_before_refine.errors_deg,
                  "final": result.score.errors_deg}
        plot_orientation_errors(args.output.with_name(f"{file_stem(args.output)}_errors.png"),
                                series)
        record["errors_vs_input_angles"] = {"fit": result.fit_score.summary(),
                                            "before_refinement":
                                                result.score_before_refine.summary(),
                                            "final": result.score.summary()}
        print(f"   error vs the input STAR's angles: mean {result.score.mean_deg:.2f} deg, "
              f"median {result.score.median_deg:.2f} deg")
    write_run_record(args.output.parent, args, named_after=args.output, results=record)
    return 0


def run_train(args: argparse.Namespace) -> int:
    """``emkit spa train``."""
    from emkit.io import make_output_folder
    from emkit.nn import save_model
    from emkit.spa._train import train_from_structures

    _threads(args)
    # projection banks of every map (float32) and the network's batches
    n_maps = 2 * len(args.structures) + args.blobs + 2
    require_memory(n_maps * (args.box**3 + 1200 * args.box**2) * 4.0 + 300 * 2**20,
                   f"{n_maps} training maps of {args.box}^3 px", "use fewer --structures, "
                   "fewer --blobs or a smaller --box")
    out = make_output_folder(args.output)
    model = train_from_structures(
        args.structures, box_px=args.box,
        voxel_size_A=3.667 if args.pixel_size is None else args.pixel_size,
        n_steps=args.steps, n_blobs=args.blobs, seed=args.seed,
        checkpoint=out / "training.ckpt.safetensors", resume=args.resume,
        log_csv=out / "training_log.csv", progress=not args.quiet)
    save_model(out, model)
    results = {k: model.extra[k] for k in ("trained_steps", "best_step", "validation")
               if k in model.extra}
    write_run_record(out, args, results=results)
    print(f"distance model trained on {len(args.structures)} structure(s) -> {args.output}")
    return 0


def run_reconstruct(args: argparse.Namespace) -> int:
    """``emkit spa reconstruct``."""
    from emkit.io import file_stem
    from emkit.report.spa import plot_fsc
    from emkit.spa._commands import run_reconstruct_files

    _threads(args)
    result = run_reconstruct_files(args.particles, args.angles, args.output,
                                   pixel_size_A=args.pixel_size, seed=args.seed,
                                   require_memory=require_memory, bin_factor=args.bin_factor)
    rec = result.reconstruction
    plot_fsc(args.output.with_name(f"{file_stem(args.output)}_fsc.png"), rec.freq_invA, rec.fsc,
             resolution_05_A=rec.resolution_05_A, resolution_0143_A=rec.resolution_0143_A)
    write_run_record(args.output.parent, args, named_after=args.output, results={
        "n": result.n, "box": result.box, "fsc_05_A": rec.resolution_05_A,
        "fsc_0143_A": rec.resolution_0143_A})
    print(f"map of {result.n} particles -> {args.output} (half-maps, FSC beside it); "
          f"FSC 0.5: {rec.resolution_05_A:.1f} Å, 0.143: {rec.resolution_0143_A:.1f} Å")
    return 0


def run_sim(args: argparse.Namespace) -> int:
    """``emkit sim particles``."""
    from emkit.errors import InputError
    from emkit.spa._commands import write_simulated_particles

    lo, hi = args.tilt_range
    if not lo < hi:
        raise InputError(f"--tilt-range {lo:g} {hi:g}: give LO < HI")
    if args.defocus is not None and args.defocus[0] > args.defocus[1]:
        raise InputError(f"--defocus {args.defocus[0]:g} {args.defocus[1]:g}: give MIN <= MAX")
    sim = write_simulated_particles(
        args.source, args.output, n=args.n, seed=args.seed, snr=args.snr, box=args.box,
        pixel_size_A=args.pixel_size, max_shift_px=args.max_shift,
        defocus_range_A=None if args.defocus is None else tuple(args.defocus),
        tilt_range_deg=(lo, hi), require_memory=require_memory)
    write_run_record(sim.output_dir, args, results={"box": sim.box,
                                                    "pixel_size_A": sim.pixel_size_A,
                                                    "noise_sigma": sim.noise_sigma})
    print(f"{sim.n} particles of {sim.box} px ({sim.pixel_size_A:g} Å) -> {sim.stack}, "
          f"{sim.star.name}, {sim.map.name}")
    return 0


def run_demo(out_dir: Path, *, seed: int, progress: bool) -> dict[str, Any]:
    """Simulated particles of a built-in template: orient (exact distances), refine, map."""
    from emkit.report.spa import plot_fsc, plot_orientation_errors
    from emkit.spa._demo import run_spa_demo

    demo = run_spa_demo(out_dir, seed=seed, progress=progress)
    plot_orientation_errors(demo.output_dir / "orientation_errors.png", demo.errors_deg)
    rec = demo.reconstruction
    plot_fsc(demo.output_dir / "map_fsc.png", rec.freq_invA, rec.fsc,
             resolution_05_A=rec.resolution_05_A, resolution_0143_A=rec.resolution_0143_A)
    return demo.numbers
