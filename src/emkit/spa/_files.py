"""Particle files in and out: a stack (.mrcs) or a RELION STAR, checked; STAR files written."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from emkit.errors import (
    FileFormatError,
    InputError,
    MissingFileError,
    NonFiniteError,
    ShapeError,
    with_path,
)
from emkit.spa._fourier import Optics

__all__ = ["ParticleStack", "particle_stack_shape", "read_particles", "write_orientations_star"]

STAR_SUFFIXES = (".star",)


@dataclass
class ParticleStack:
    """Particle images and what their file says about them.

    Attributes
    ----------
    images : ndarray, shape (n, L, L), float32
    pixel_size_A : float
    image_names : list of str
        RELION names ``index@stack`` (as written in the STAR, or made for a stack).
    euler_deg : ndarray, shape (n, 3), or None
        Angles of the STAR (None for a plain stack, or a STAR without angle columns).
    shifts_px : ndarray, shape (n, 2), or None
        ``(y, x)`` origin offsets in pixels from the STAR.
    optics : Optics
        Pixel size and, when the STAR has rlnDefocusU, the CTF of each image.
    path : Path
    file_box, file_pixel_size_A : int, float, or None
        Box and pixel size of the images in the file, when ``images`` are those images
        Fourier-cropped (:func:`bin_particles`; ``pixel_size_A`` and ``shifts_px`` are then
        of the cropped images); None: as ``images``.
    """

    images: np.ndarray
    pixel_size_A: float
    image_names: list[str]
    euler_deg: np.ndarray | None
    shifts_px: np.ndarray | None
    optics: Optics
    path: Path
    file_box: int | None = None
    file_pixel_size_A: float | None = None


def _is_star(path: Path) -> bool:
    return path.suffix.lower() in STAR_SUFFIXES


def _split_name(name: str, star: Path) -> tuple[int, str]:
    index, at, stack = name.partition("@")
    if not at or not index.strip().isdigit() or int(index) < 1:
        raise FileFormatError(with_path(star, f"image name {name!r} is not 'index@stack.mrcs' "
                                        "with a 1-based index; fix rlnImageName"))
    return int(index), stack.strip()


def _stack_path(stack: str, star: Path) -> Path:
    """RELION names are relative to the project folder: try the STAR's folder, then cwd."""
    candidates = [Path(stack)] if Path(stack).is_absolute() else [star.parent / stack,
                                                                   Path(stack)]
    for c in candidates:
        if c.is_file():
            return c
    raise MissingFileError(with_path(star, f"rlnImageName points to {stack}, which is neither "
                                     f"in {star.parent} nor in the current folder; fix the "
                                     "image names or run from the RELION project folder"))


def _star_images(star: Path, names: list[str]) -> tuple[np.ndarray, float | None]:
    """Read the images a STAR names, from their stacks (memory-mapped)."""
    from emkit.io import read_volume

    parsed = [_split_name(n, star) for n in names]
    stacks: dict[str, Any] = {}
    first_shape: tuple[int, ...] | None = None
    out: list[np.ndarray] = []
    pixel = None
    for index, stack in parsed:
        if stack not in stacks:
            vol = read_volume(_stack_path(stack, star), mmap=True)
            data = vol.data if vol.data.ndim == 3 else vol.data[None]
            stacks[stack] = data
            pixel = pixel or vol.pixel_size
        data = stacks[stack]
        if index > len(data):
            raise InputError(with_path(star, f"image {index}@{stack} does not exist: the stack "
                                       f"holds {len(data)} images; fix rlnImageName"))
        if first_shape is None:
            first_shape = data.shape[1:]
        if data.shape[1:] != first_shape:
            raise ShapeError(with_path(star, f"{stack} has {data.shape[1:]} images, others "
                                       f"{first_shape}; give particles of one box size"))
        out.append(np.asarray(data[index - 1], dtype=np.float32))
    return np.stack(out), pixel


def _check_one_pixel_size(star_path: Path, star: dict[str, Any]) -> None:
    """Refuse particles of optics groups with different pixel sizes (one map, one size)."""
    optics = star["optics"]
    if optics is None or "rlnImagePixelSize" not in optics.columns:
        return
    groups = optics["rlnOpticsGroup"].to_numpy(dtype=np.int64) \
        if "rlnOpticsGroup" in optics.columns else np.arange(1, len(optics) + 1)
    sizes = dict(zip(groups, optics["rlnImagePixelSize"].to_numpy(dtype=np.float64)))
    if "rlnOpticsGroup" not in star["particles"].columns:
        used = np.array(list(sizes.values()))  # no group per particle: any could apply
    else:
        named = np.unique(star["optics_group"])
        unknown = [int(g) for g in named if g not in sizes]
        if unknown:
            raise FileFormatError(with_path(star_path, f"particles name optics group(s) "
                                            f"{unknown[:5]} that the optics block does not "
                                            "list; fix rlnOpticsGroup or the optics block"))
        used = np.array([sizes[g] for g in named])
    if used.size and used.max() - used.min() > 1e-3 * used.max():
        raise InputError(with_path(star_path, f"particles come from optics groups of pixel "
                                   f"sizes {used.min():g}-{used.max():g} Å; emkit makes one "
                                   "map at one pixel size: keep one optics group per STAR "
                                   "(rlnOpticsGroup), or give --pixel-size to treat them as "
                                   "one"))


def _defocus(particles: Any) -> np.ndarray | None:
    if "rlnDefocusU" not in particles.columns:
        return None
    u = particles["rlnDefocusU"].to_numpy(dtype=np.float64)
    v = particles["rlnDefocusV"].to_numpy(dtype=np.float64) if "rlnDefocusV" in particles else u
    a = (particles["rlnDefocusAngle"].to_numpy(dtype=np.float64)
         if "rlnDefocusAngle" in particles else np.zeros_like(u))
    return np.stack([u, v, a], axis=1)


def _check_images(images: np.ndarray, path: Path) -> None:
    if images.ndim != 3:
        raise ShapeError(with_path(path, f"holds an array of shape {images.shape}; particles "
                                   "are a stack of images (n, y, x)"))
    if images.shape[1] != images.shape[2]:
        raise ShapeError(with_path(path, f"images are {images.shape[1]} x {images.shape[2]} "
                                   "pixels; particle images must be square (re-extract them)"))
    if len(images) < 2:
        raise ShapeError(with_path(path, f"holds {len(images)} image; orientation recovery "
                                   "and reconstruction need many particle images"))
    if images.shape[1] < 8:
        raise ShapeError(with_path(path, f"images of {images.shape[1]} px are too small; "
                                   "give a box of at least 8 px"))
    bad = int(np.count_nonzero(~np.isfinite(images)))
    if bad:
        raise NonFiniteError(with_path(path, f"{bad} pixels are NaN or infinite; remove or "
                                       "re-extract those particles"))


def particle_stack_shape(path: str | Path) -> tuple[int, int]:
    """``(n, L)`` of a particle file without reading the images (for memory checks)."""
    from emkit.io import read_particles_star, read_volume

    p = Path(path)
    if _is_star(p):
        star = read_particles_star(p)
        names = star["image_names"] or []
        box = star["image_size"]
        if names:  # the stack's header, not rlnImageSize, which read_particles checks
            _, stack = _split_name(names[0], p)
            box = read_volume(_stack_path(stack, p), mmap=True).data.shape[-1]
        return len(names), int(box or 0)
    shape = read_volume(p, mmap=True).data.shape
    return (int(shape[0]) if len(shape) == 3 else 1), int(shape[-1])


# Images Fourier-cropped at once (their complex spectra are held in float64).
_CROP_CHUNK = 256
# Smallest box a binned stack may have.
MIN_BINNED_BOX = 16


def check_bin(path: Path, box: int, bin_factor: int) -> int:
    """The box ``box // bin_factor`` of binned particles, or a one-line refusal."""
    small = box // bin_factor if bin_factor >= 1 else 0
    if bin_factor < 1 or small < MIN_BINNED_BOX:
        raise InputError(with_path(path, f"--bin {bin_factor} would make boxes of {small} px "
                                   f"from {box}; give a --bin from 1 that leaves at least "
                                   f"{MIN_BINNED_BOX} px"))
    return small


def bin_particles(particles: ParticleStack, bin_factor: int) -> ParticleStack:
    """The particles Fourier-cropped to ``L // bin_factor`` pixels, remembering the file's
    box and pixel size so that a STAR written from them describes the file's images.

    The pixel size, shifts (px) and the CTF's pixel size follow the cropped pixels; values
    are divided by ``L / (L // bin_factor)``, so that a map made from the binned images has
    the voxel values of one made from the file's (a projection sums that many fewer voxels).
    """
    import dataclasses

    from emkit.spa._frame import fourier_crop

    if bin_factor == 1:
        return particles
    big = particles.images.shape[-1]
    small = check_bin(particles.path, big, bin_factor)
    scale = big / small
    images = np.empty((len(particles.images), small, small), dtype=np.float32)
    for a in range(0, len(images), _CROP_CHUNK):
        chunk = particles.images[a:a + _CROP_CHUNK]
        images[a:a + len(chunk)] = fourier_crop(chunk, small) / scale
    return dataclasses.replace(
        particles, images=images, pixel_size_A=particles.pixel_size_A * scale,
        shifts_px=None if particles.shifts_px is None else particles.shifts_px / scale,
        optics=dataclasses.replace(particles.optics,
                                   pixel_size_A=particles.optics.pixel_size_A * scale),
        file_box=big, file_pixel_size_A=particles.pixel_size_A)


def read_particles(path: str | Path, *, pixel_size_A: float | None = None) -> ParticleStack:
    """Read particle images from a stack or a RELION STAR, with every check of bad input.

    Parameters
    ----------
    path : path-like
        ``.mrcs`` (or any stack emkit reads) or ``.star`` (RELION 3.0 or 3.1+).
    pixel_size_A : float, optional
        Overrides the file's pixel size.

    Raises
    ------
    MissingFileError
        A stack named by the STAR is missing.
    InputError, ShapeError, NonFiniteError
        An index beyond its stack, non-square images, fewer than two images, NaN pixels, no
        pixel size.
    """
    from emkit.io import read_particles_star, read_volume, relion_image_names

    p = Path(path)
    euler = shifts = defocus = None
    optics_values: dict[str, Any] = {}
    if _is_star(p):
        star = read_particles_star(p)
        if not star["image_names"]:
            raise FileFormatError(with_path(p, "has no rlnImageName column; a particle STAR "
                                            "must name its images"))
        if pixel_size_A is None:
            _check_one_pixel_size(p, star)
        images, stack_pixel = _star_images(p, star["image_names"])
        names = star["image_names"]
        if star["image_size"] is not None and star["image_size"] != images.shape[-1]:
            raise ShapeError(with_path(p, f"says rlnImageSize {star['image_size']} but its "
                                       f"images are {images.shape[-1]} px; fix the optics "
                                       "block (or the image names)"))
        file_pixel = star["pixel_size_A"] or stack_pixel
        particles = star["particles"]
        if {"rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi"} <= set(particles.columns):
            euler = star["euler_deg"]
        defocus = _defocus(particles)
        optics_values = {k: star[k] for k in ("voltage_kV", "cs_mm", "amplitude_contrast")
                         if star[k] is not None}
    else:
        vol = read_volume(p)
        images = np.asarray(vol.data if vol.data.ndim != 2 else vol.data[None], np.float32)
        names = relion_image_names(p.name, len(images))
        file_pixel = vol.pixel_size
    _check_images(images, p)
    pixel = pixel_size_A if pixel_size_A is not None else file_pixel
    if pixel is None or not pixel > 0:
        raise InputError(with_path(p, "says no pixel size; give --pixel-size"))
    if _is_star(p):
        shifts = star["shifts_A"] / float(pixel)
    optics = Optics(float(pixel), defocus, **optics_values)
    return ParticleStack(images=images, pixel_size_A=float(pixel), image_names=list(names),
                         euler_deg=euler, shifts_px=shifts, optics=optics, path=p)


def write_orientations_star(
    path: str | Path, particles: ParticleStack, rotations: np.ndarray, shifts_px: np.ndarray,
) -> Path:
    """Write a RELION 3.1 particle STAR: the images' names, angles, shifts (Å) and optics.

    Image names are kept as read from a STAR; for a plain stack they name it relative to the
    output's folder (absolute when that is not possible).
    """
    import os

    from emkit.geometry import matrix_to_euler_zyz
    from emkit.io import relion_image_names, write_particles_star

    out = Path(path)
    names = particles.image_names
    if not _is_star(particles.path):
        try:
            rel = os.path.relpath(particles.path.resolve(), out.parent.resolve())
        except ValueError:  # another drive
            rel = str(particles.path.resolve())
        names = relion_image_names(Path(rel).as_posix(), len(particles.images))
    o = particles.optics
    # the file's images (a binned stack's angles and Å shifts hold for them unchanged)
    return write_particles_star(
        out, euler_deg=matrix_to_euler_zyz(rotations),
        shifts_A=np.asarray(shifts_px) * particles.pixel_size_A, image_names=names,
        pixel_size_A=particles.file_pixel_size_A or particles.pixel_size_A,
        voltage_kV=o.voltage_kV, cs_mm=o.cs_mm, amplitude_contrast=o.amplitude_contrast,
        image_size=int(particles.file_box or particles.images.shape[-1]),
        defocus_A=o.defocus_A,
    )
