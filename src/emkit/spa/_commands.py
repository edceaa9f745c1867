"""The spa workflows on files: simulate particles, recover orientations, reconstruct.

Each function validates its inputs, checks memory, runs, writes its outputs through
:mod:`emkit.io` (atomic) and returns a small result object; the CLI prints and draws.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from emkit.errors import FileFormatError, InputError, with_path
from emkit.spa._files import (
    ParticleStack,
    bin_particles,
    check_bin,
    particle_stack_shape,
    read_particles,
    write_orientations_star,
)
from emkit.spa._recover import DistanceFunction

__all__ = ["OrientResult", "ReconstructResult", "SimulatedParticleFiles", "run_orient_files",
           "run_reconstruct_files", "write_simulated_particles"]

MemoryCheck = Callable[[float, str, str], None]

# First rotation step of the refinement (it halves each round): about the start's error.
# A distance fit with good distances starts within a few degrees; the spectral start is
# 7-8 deg off noise-free and 18 deg at SNR 1/8 (2,000 5j0n particles: 6 rounds from 12 deg
# ended at 6.0 deg mean where 6 deg ended at 10.1, and at 0.32 deg noise-free vs 0.52).
_FIT_START_STEP_DEG = 6.0
_SPECTRAL_START_STEP_DEG = 12.0


_GRID_BYTES_PER_VOXEL = 60.0


def no_memory_check(n_bytes: float, what: str, hint: str) -> None:
    """The library default: no check (the CLI passes :func:`emkit.cli._options.require_memory`)."""


def _require_particle_memory(require_memory: MemoryCheck, n: int, size: int, name: str,
                             hint: str, extra_bytes: float = 0.0, bin_factor: int = 1) -> None:
    # images (float32 + float64 + spectra), the reconstruction's half grids and their
    # solve (measured peaks 56 B per voxel of the padded (2L)^3 grid from L 128 to 160, 14.8
    # GB in all for 7 images of 320 px), the insertion's point chunks, and what the
    # orientation start needs beside them (``extra_bytes``)
    # (with --bin the images are read and checked at full size, then cropped)
    small = size // bin_factor
    need = (n * size * size * (8.0 if bin_factor > 1 else 0.0) + n * small * small * 40.0
            + _GRID_BYTES_PER_VOXEL * (2 * small) ** 3 + 600 * 2**20 + extra_bytes)
    if bin_factor > 1:
        name = f"{name} (binned to {small} px)"
    require_memory(need, f"{n} particle images of {size} x {size} px from {name}", hint)


# --------------------------------------------------------------------------- simulate


@dataclass
class SimulatedParticleFiles:
    """What :func:`write_simulated_particles` wrote and the truth it used."""

    output_dir: Path
    stack: Path
    star: Path
    map: Path
    n: int
    box: int
    pixel_size_A: float
    noise_sigma: float


def _source_map(source: Path, pixel_size_A: float | None, box: int | None) -> tuple[
    np.ndarray, float
]:
    """The map to project: a map file (padded/cropped to a cube) or a model's density."""
    from emkit.io import read_volume
    from emkit.io._structure import STRUCTURE_SUFFIXES
    from emkit.sim import density_from_pdb
    from emkit.sim.particles import centre_in_box

    if source.name.lower().endswith(STRUCTURE_SUFFIXES):
        voxel = 4.0 if pixel_size_A is None else pixel_size_A
        vol = density_from_pdb(source, voxel, box_size=box)
        return centre_in_box(vol.data, box or max(vol.data.shape)), voxel
    vol = read_volume(source)
    if vol.data.ndim != 3:
        raise InputError(with_path(source, f"is {vol.data.ndim}D; give a map (z, y, x) or a "
                                   "PDB/mmCIF model"))
    header = pixel_size_A if pixel_size_A is not None else vol.pixel_size
    if header is None or not header > 0:
        raise InputError(with_path(source, "says no voxel size; give --pixel-size"))
    size = box or int(2 * np.ceil(max(vol.data.shape) / 2))
    from emkit.io import require_finite

    require_finite(vol.data, source, "map")
    return centre_in_box(vol.data, size), float(header)


def write_simulated_particles(
    source: Path, output_dir: Path, *, n: int, seed: int = 0, snr: float | None = None,
    box: int | None = None, pixel_size_A: float | None = None, max_shift_px: float = 0.0,
    defocus_range_A: tuple[float, float] | None = None,
    tilt_range_deg: tuple[float, float] = (0.0, 180.0),
    require_memory: MemoryCheck = no_memory_check,
) -> SimulatedParticleFiles:
    """Simulate particle images of a map or model; write stack, STAR (truth) and map.

    Writes ``particles.mrcs`` (float32 stack), ``particles.star`` (RELION 3.1: true
    ``rlnAngleRot/Tilt/Psi``, ``rlnOriginX/YAngst``, defocus when a CTF was applied) and
    ``map.mrc`` (the projected map on the particle box) into ``output_dir``.
    """
    from emkit.io import (
        check_not_input,
    )
    from emkit.sim.particles import simulate_particles

    if box is not None:
        _require_particle_memory(require_memory, n, box, f"--box {box}", "lower --n or --box")
    for name in ("particles.mrcs", "particles.star", "map.mrc"):
        check_not_input(output_dir / name, [source])
    volume, voxel = _source_map(source, pixel_size_A, box)
    size = volume.shape[0]
    _require_particle_memory(require_memory, n, size, source.name, "lower --n or --box")
    sim = simulate_particles(volume, n, pixel_size_A=voxel, seed=seed, snr=snr,
                             max_shift_px=max_shift_px, defocus_range_A=defocus_range_A,
                             tilt_range_deg=tilt_range_deg)
    return write_particle_files(output_dir, sim)


def write_particle_files(output_dir: Path, sim: Any) -> SimulatedParticleFiles:
    """Write a :class:`emkit.sim.particles.SimulatedParticles` as stack, STAR and map."""
    from emkit.io import make_output_folder, relion_image_names, write_particles_star, write_volume

    out = make_output_folder(output_dir)
    voxel, n, size = sim.pixel_size_A, len(sim.images), sim.images.shape[-1]
    stack = write_volume(out / "particles.mrcs", sim.images, voxel_size=voxel, stack=True)
    star = write_particles_star(
        out / "particles.star", euler_deg=sim.euler_deg, shifts_A=sim.shifts_px * voxel,
        image_names=relion_image_names("particles.mrcs", n), pixel_size_A=voxel,
        image_size=size, defocus_A=sim.defocus_A)
    vol_path = write_volume(out / "map.mrc", sim.volume, voxel_size=voxel)
    return SimulatedParticleFiles(out, stack, star, vol_path, n, size, voxel, sim.noise_sigma)


# --------------------------------------------------------------------------- orient


@dataclass
class OrientResult:
    """What :func:`run_orient_files` did.

    ``score_*`` compare with the angles of the input STAR (None when it had none);
    ``fit_distance_error_deg`` the fit's median distance error (with ``distances``
    "spectral": the median in-plane angle residual over the graph's pairs);
    ``fit_score`` is the distance fit's error after the both-sided alignment (only with
    known angles); ``history`` the refinement rounds.
    """

    output: Path
    n: int
    box: int
    distances: str
    rotations: np.ndarray
    shifts_px: np.ndarray
    fit_distance_error_deg: float
    frame_score: float
    score_before_refine: Any = None
    score: Any = None
    fit_score: Any = None
    resolution_0143_A: float | None = None
    history: list[dict[str, float]] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)


def _distance_function(particles: ParticleStack, distances: str, model: Path | None) -> Any:
    from emkit.geometry import euler_zyz_to_matrix
    from emkit.spa._recover import exact_distance_fn

    if distances == "exact":
        if particles.euler_deg is None:
            raise InputError(with_path(particles.path, "--distances exact needs the true angles "
                                       "(rlnAngleRot/Tilt/Psi) in a particle STAR; give one, or "
                                       "use the learned distances (--distances learned)"))
        return exact_distance_fn(euler_zyz_to_matrix(particles.euler_deg))
    if distances == "spectral":
        if model is not None:
            raise InputError(with_path(model, "is a distance model, but --distances spectral "
                                       "uses no distances: drop --model, or use --distances "
                                       "learned"))
        return None  # no distances: orient_particles starts from the common-view graph
    if distances != "learned":
        raise InputError(f"unknown distances {distances!r}; use 'auto', 'learned', 'exact' "
                         "or 'spectral'")
    try:
        from emkit.spa import _siamese
    except ImportError as error:  # pragma: no cover - the network module ships with emkit
        raise InputError(f"learned distances are not available ({error}); use "
                         "--distances exact with a STAR that holds true angles") from None
    net = _siamese.load_distance_model(model)
    return _siamese.learned_distance_fn(net, particles.images)


def _score_against_star(particles: ParticleStack, rotations: np.ndarray) -> Any:
    if particles.euler_deg is None:
        return None
    from emkit.geometry import euler_zyz_to_matrix
    from emkit.spa._score import score_orientations

    return score_orientations(rotations, euler_zyz_to_matrix(particles.euler_deg))


def orient_particles(
    particles: ParticleStack, distance_fn: DistanceFunction | None, *, refine: int, seed: int,
    progress: bool,
    fit_options: dict[str, Any] | None = None, frame_options: dict[str, Any] | None = None,
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Fit, resolve the frame, refine: the orientation pipeline on images in memory.

    ``distance_fn`` None: the spectral start (:func:`emkit.spa.spectral_orientations`)
    instead of a distance fit. ``fit_options`` and ``frame_options`` go to the fit
    (:func:`emkit.spa.recover_orientations` or the spectral start) and
    :func:`emkit.spa.resolve_frame`. Returns rotations ``(n, 3, 3)``, shifts ``(n, 2)`` px
    and what each step measured.
    """
    from emkit.spa._frame import resolve_frame
    from emkit.spa._recover import recover_orientations
    from emkit.spa._refine import refine_orientations

    images = particles.images
    info: dict[str, Any] = {"seconds": {}}
    t0 = time.perf_counter()
    if distance_fn is None:
        from emkit.spa._spectral import spectral_orientations

        if progress:
            print(f"   orienting {len(images)} images from their common-view graph", flush=True)
        fit = spectral_orientations(images, seed=seed, **(fit_options or {}))
        what = "in-plane angle residual"
    else:
        if progress:
            print(f"   fitting {len(images)} orientations to their distances", flush=True)
        fit = recover_orientations(distance_fn, len(images), seed=seed, **(fit_options or {}))
        what = "median residual of the fitted distances"
    info["fit"] = fit
    t1 = time.perf_counter()
    if progress:
        print(f"   fit: {what} {np.rad2deg(fit.distance_error_rad):.2f} deg "
              f"({t1 - t0:.0f} s); finding the image-side rotation", flush=True)
    frame = resolve_frame(images, fit.rotations, seed=seed, **(frame_options or {}))
    info["frame"] = frame
    t2 = time.perf_counter()
    info["seconds"].update(fit=round(t1 - t0, 1), frame=round(t2 - t1, 1))
    shifts = np.zeros((len(images), 2))
    rotations = frame.rotations
    if refine > 0:
        step = _SPECTRAL_START_STEP_DEG if distance_fn is None else _FIT_START_STEP_DEG
        ref = refine_orientations(images, rotations, pixel_size_A=particles.pixel_size_A,
                                  optics=particles.optics, iterations=refine, seed=seed,
                                  start_step_deg=step, progress=progress)
        rotations, shifts = ref.rotations, ref.shifts_px
        info["refinement"] = ref
    info["seconds"]["refine"] = round(time.perf_counter() - t2, 1)
    return rotations, shifts, info


def resolve_distances(distances: str, model: Path | None) -> str:
    """The start ``"auto"`` stands for: learned distances when a model is given, else the
    spectral start (the shipped distance model is ~100 deg off on structures it was not
    trained on, the spectral start 7-18 deg on thousands of 5j0n images; docs/spa.md)."""
    if distances != "auto":
        return distances
    return "learned" if model is not None else "spectral"


def run_orient_files(
    particles_path: Path, output: Path, *, model: Path | None = None,
    distances: str = "auto", refine: int = 6, seed: int = 0,
    pixel_size_A: float | None = None, progress: bool = False,
    require_memory: MemoryCheck = no_memory_check, bin_factor: int = 1,
) -> OrientResult:
    """``emkit spa orient``: orientations (and shifts) of particle images, to a STAR file.

    ``distances``: ``"learned"`` (``model`` or the shipped one), ``"exact"`` (the STAR's true
    angles), ``"spectral"`` (no distances) or ``"auto"`` (:func:`resolve_distances`).
    ``bin_factor``: orient the images Fourier-cropped to ``L // bin_factor`` (the STAR
    written describes the file's images).
    """
    from emkit.io import check_not_input
    from emkit.spa._spectral import MIN_SPECTRAL_IMAGES, spectral_working_bytes

    check_not_input(output, [particles_path] + ([model] if model else []))
    chosen, distances = distances, resolve_distances(distances, model)
    n, size = particle_stack_shape(particles_path)
    check_bin(particles_path, size, bin_factor)
    if distances == "spectral" and n < MIN_SPECTRAL_IMAGES:
        default = " (the default start without --model)" if chosen == "auto" else ""
        raise InputError(with_path(particles_path, f"holds {n} images; the spectral start"
                                   f"{default} needs at least {MIN_SPECTRAL_IMAGES} (thousands "
                                   "to be accurate): give more particles, or a distance model "
                                   "with --model"))
    _require_particle_memory(require_memory, n, size, particles_path.name,
                             "split the particles into several STAR files, or give --bin",
                             spectral_working_bytes(n) if distances == "spectral" else 0.0,
                             bin_factor=bin_factor)
    particles = bin_particles(read_particles(particles_path, pixel_size_A=pixel_size_A),
                              bin_factor)
    t0 = time.perf_counter()
    distance_fn = _distance_function(particles, distances, model)
    rotations, shifts, info = orient_particles(particles, distance_fn, refine=refine, seed=seed,
                                               progress=progress)
    info["seconds"]["distances_setup"] = round(time.perf_counter() - t0 - sum(
        info["seconds"].values()), 1)
    write_orientations_star(output, particles, rotations, shifts)
    result = OrientResult(
        output=output, n=len(particles.images), box=size, distances=distances,
        rotations=rotations, shifts_px=shifts,
        fit_distance_error_deg=float(np.rad2deg(info["fit"].distance_error_rad)),
        frame_score=info["frame"].score, history=[], seconds=info["seconds"])
    if "refinement" in info:
        result.history = info["refinement"].history
        result.resolution_0143_A = info["refinement"].reconstruction.resolution_0143_A
    if particles.euler_deg is not None:
        from emkit.geometry import euler_zyz_to_matrix
        from emkit.spa._score import score_distance_fit

        result.fit_score = score_distance_fit(info["fit"].quaternions,
                                              euler_zyz_to_matrix(particles.euler_deg))
        result.score_before_refine = _score_against_star(particles, info["frame"].rotations)
        result.score = _score_against_star(particles, rotations)
    return result


# --------------------------------------------------------------------------- reconstruct


@dataclass
class ReconstructResult:
    """What :func:`run_reconstruct_files` wrote and measured."""

    output: Path
    half_maps: tuple[Path, Path]
    fsc_csv: Path
    reconstruction: Any
    n: int
    box: int


def _angles_for(particles: ParticleStack, angles: Path) -> tuple[np.ndarray, np.ndarray]:
    """Rotations and shifts (px) of every particle, from the angles STAR (matched by name)."""
    from emkit.errors import MismatchError
    from emkit.geometry import euler_zyz_to_matrix
    from emkit.io import read_particles_star

    # shifts in pixels (RELION 3.0) are the file's pixels; Å are converted to the images'
    star = read_particles_star(angles, pixel_size_A=particles.file_pixel_size_A
                               or particles.pixel_size_A)
    missing = [c for c in ("rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi")
               if c not in star["particles"].columns]
    if missing:
        raise FileFormatError(with_path(angles, f"has no {'/'.join(missing)} column(s): it "
                                        "gives no orientations; give the STAR written by "
                                        "emkit spa orient or a refinement"))
    n = len(particles.images)
    if len(star["euler_deg"]) != n:
        raise MismatchError(with_path(angles, f"gives {len(star['euler_deg'])} orientations "
                                      f"for {n} particles; give one row per particle"))
    euler, shifts_A = star["euler_deg"], star["shifts_A"]
    names = star["image_names"]
    if names is not None and list(names) != list(particles.image_names):
        own = {name.split("@")[0] + "@" + Path(name.split("@")[-1]).name: i
               for i, name in enumerate(names)}
        keys = [nm.split("@")[0] + "@" + Path(nm.split("@")[-1]).name
                for nm in particles.image_names]
        if len(own) == n and all(k in own for k in keys):
            order = np.array([own[k] for k in keys])
            euler, shifts_A = euler[order], shifts_A[order]
    return euler_zyz_to_matrix(euler), shifts_A / particles.pixel_size_A


def run_reconstruct_files(
    particles_path: Path, angles: Path, output: Path, *, pixel_size_A: float | None = None,
    seed: int = 0, require_memory: MemoryCheck = no_memory_check, bin_factor: int = 1,
) -> ReconstructResult:
    """``emkit spa reconstruct``: map, half-maps and FSC (CSV) from particles and angles.

    Writes ``OUTPUT`` (the map on the particle box, centre voxel ``L // 2``, the particles'
    pixel size), ``<stem>_half1.mrc``, ``<stem>_half2.mrc`` and ``<stem>_fsc.csv`` beside it.
    ``bin_factor``: from the images Fourier-cropped to ``L // bin_factor`` (a map of that
    box, its pixel size scaled by ``L / (L // bin_factor)``).
    """
    from emkit.io import check_not_input, file_stem, write_text_atomic, write_volume
    from emkit.spa._reconstruct import reconstruct_half_maps

    stem = file_stem(output)
    half_paths = (output.with_name(f"{stem}_half1.mrc"), output.with_name(f"{stem}_half2.mrc"))
    csv = output.with_name(f"{stem}_fsc.csv")
    for path in (output, *half_paths, csv):
        check_not_input(path, [particles_path, angles])
    n, size = particle_stack_shape(particles_path)
    check_bin(particles_path, size, bin_factor)
    _require_particle_memory(require_memory, n, size, particles_path.name,
                             "split the particles into several STAR files, or give --bin",
                             bin_factor=bin_factor)
    particles = bin_particles(read_particles(particles_path, pixel_size_A=pixel_size_A),
                              bin_factor)
    rotations, shifts = _angles_for(particles, angles)
    rec = reconstruct_half_maps(particles.images, rotations, pixel_size_A=particles.pixel_size_A,
                                shifts_px=shifts, optics=particles.optics, seed=seed)
    voxel = particles.pixel_size_A
    write_volume(output, rec.volume, voxel_size=voxel)
    write_volume(half_paths[0], rec.half1, voxel_size=voxel)
    write_volume(half_paths[1], rec.half2, voxel_size=voxel)
    rows = ["shell,frequency_invA,resolution_A,fsc"]
    for i, (f, c) in enumerate(zip(rec.freq_invA, rec.fsc, strict=True)):
        rows.append(f"{i},{f:.6f},{(1 / f if f > 0 else float('inf')):.3f},{c:.6f}")
    write_text_atomic(csv, "\n".join(rows) + "\n")
    # the map's box (the file's box // --bin)
    return ReconstructResult(output, half_paths, csv, rec, len(particles.images),
                             int(particles.images.shape[-1]))
