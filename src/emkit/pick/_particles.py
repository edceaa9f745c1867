"""Particle lists for picking: read any list a user has, write what pickers hand on.

Inside emkit a particle list is voxel index coordinates ``(z, y, x)`` (0-based, sub-voxel)
with a 1-based class per particle. Files:

- CSV/TSV with ``x, y, z[, class]`` in voxels (emkit, napari), or the TSV this workflow
  writes (``PositionX/Y/Z`` in Å, ``VolumeX/Y/Z`` in voxels, ``Class``, ``Score``);
- RELION STAR: ``rlnCoordinateX/Y/Z`` in voxels, or RELION 5
  ``rlnCenteredCoordinateX/Y/ZAngst`` (Å from the tomogram's centre: voxel
  ``(c - n / 2) * voxel_size``), with ``rlnClassNumber``;
- DeepFinder XML object lists.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from emkit.errors import FileFormatError, InputError, MismatchError, with_path

__all__ = [
    "ParticleList",
    "read_particle_list",
    "write_particle_star",
    "write_particle_tsv",
    "write_particle_lists",
    "write_simulated_tomogram",
]

PathLike = str | os.PathLike[str]
_CENTRED = ("rlnCenteredCoordinateXAngst", "rlnCenteredCoordinateYAngst",
            "rlnCenteredCoordinateZAngst")


@dataclass
class ParticleList:
    """Particles of one tomogram.

    Attributes
    ----------
    zyx : ndarray, shape (n, 3), float64
        Centres in voxel index coordinates ``(z, y, x)``.
    classes : ndarray, shape (n,), int64
        1-based class of each particle (1 when the file has none).
    scores : ndarray, shape (n,), float64
        Detection score (1 when the file has none).
    voxel_size_A : float or None
        The voxel size the file implies (a TSV with both Å and voxel columns, a STAR file
        with both kinds of coordinates), else None.
    euler_deg : ndarray, shape (n, 3), or None
        RELION ZYZ Euler angles (rot, tilt, psi) when a STAR file has them.
    """

    zyx: np.ndarray
    classes: np.ndarray
    scores: np.ndarray
    voxel_size_A: float | None = None
    euler_deg: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.zyx)


def _read_tsv_positions(path: Path) -> ParticleList | None:
    """Read this workflow's own TSV (``VolumeX/Y/Z`` or ``PositionX/Y/Z``), else None."""
    import pandas as pd

    try:
        df = pd.read_csv(path, sep="\t")
    except (ValueError, pd.errors.ParserError):
        return None
    if not {"VolumeX", "VolumeY", "VolumeZ"} <= set(df.columns):
        return None
    zyx = df[["VolumeZ", "VolumeY", "VolumeX"]].to_numpy(np.float64)
    classes = df["Class"].to_numpy(np.int64) if "Class" in df else np.ones(len(df), np.int64)
    scores = df["Score"].to_numpy(np.float64) if "Score" in df else np.ones(len(df))
    voxel = None
    if "PositionX" in df:
        voxel = _implied_voxel_size(df["PositionX"].to_numpy(np.float64), zyx[:, 2])
    return ParticleList(zyx, classes, scores, voxel)


def _implied_voxel_size(position_A: np.ndarray, voxels: np.ndarray) -> float | None:
    big = np.abs(voxels) > 1
    if not big.any():
        return None
    ratio = position_A[big] / voxels[big]
    return float(np.median(ratio)) if np.allclose(ratio, ratio[0], rtol=1e-3) else None


def _read_star(
    path: Path, shape_zyx: tuple[int, ...] | None, voxel_size_A: float | None
) -> ParticleList:
    from emkit.io import read_star

    blocks = read_star(path)
    tables = [b for b in blocks.values() if hasattr(b, "columns")]
    table = next((t for t in tables if "rlnCoordinateX" in t.columns), None)
    if table is not None:
        zyx = table[["rlnCoordinateZ" if "rlnCoordinateZ" in table else "rlnCoordinateX",
                     "rlnCoordinateY", "rlnCoordinateX"]].to_numpy(np.float64)
        if "rlnCoordinateZ" not in table:
            zyx[:, 0] = 0.0
        voxel = None
        if set(_CENTRED) <= set(table.columns):
            centred = table[_CENTRED[0]].to_numpy(np.float64)
            spread = np.ptp(zyx[:, 2]) if len(zyx) > 1 else 0.0
            if spread > 0:
                voxel = float(np.ptp(centred) / spread)
    else:
        table = next((t for t in tables if set(_CENTRED) <= set(t.columns)), None)
        if table is None:
            raise FileFormatError(with_path(path, "has neither rlnCoordinateX/Y/Z nor "
                                            "rlnCenteredCoordinateX/Y/ZAngst columns"))
        if shape_zyx is None or voxel_size_A is None:
            raise InputError(with_path(path, "holds RELION 5 centred coordinates in Å: "
                                       "the tomogram's shape and voxel size are needed"))
        centred = table[list(_CENTRED[::-1])].to_numpy(np.float64)
        zyx = centred / voxel_size_A + np.asarray(shape_zyx[:3], np.float64) / 2
        voxel = voxel_size_A
    n = len(table)
    classes = (table["rlnClassNumber"].to_numpy(np.int64) if "rlnClassNumber" in table
               else np.ones(n, np.int64))
    scores = (table["rlnAutopickFigureOfMerit"].to_numpy(np.float64)
              if "rlnAutopickFigureOfMerit" in table else np.ones(n))
    angles = ("rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi")
    euler = (table[list(angles)].to_numpy(np.float64) if set(angles) <= set(table.columns)
             else None)
    return ParticleList(zyx, classes, scores, voxel, euler)


def read_particle_list(
    path: PathLike,
    *,
    shape_zyx: tuple[int, ...] | None = None,
    voxel_size_A: float | None = None,
) -> ParticleList:
    """Read a particle list (CSV/TSV, RELION STAR, DeepFinder XML) in voxels.

    Parameters
    ----------
    path : path-like
        The list (see the module notes for the columns read).
    shape_zyx : (nz, ny, nx), optional
        The tomogram's shape: needed for RELION 5 centred coordinates, and when given
        every particle must lie inside it.
    voxel_size_A : float, optional
        The tomogram's voxel size in Å (for RELION 5 centred coordinates).

    Returns
    -------
    ParticleList

    Raises
    ------
    FileFormatError
        Unreadable or without coordinate columns.
    InputError
        Classes below 1, or a particle outside ``shape_zyx`` (a list of another tomogram).
    """
    from emkit.io import read_coordinates
    from emkit.io._paths import require_readable_file, require_suffix

    suffix = require_suffix(path, (".csv", ".tsv", ".star", ".xml"), "particle list")
    p = require_readable_file(path)
    found = _read_tsv_positions(p) if suffix == ".tsv" else None
    if found is None and suffix == ".star":
        found = _read_star(p, shape_zyx, voxel_size_A)
    if found is None:
        zyx, classes = read_coordinates(p)
        n = len(zyx)
        found = ParticleList(np.asarray(zyx, np.float64).reshape(n, 3),
                             np.ones(n, np.int64) if classes is None else classes,
                             np.ones(n))
    if not np.all(np.isfinite(found.zyx)):
        raise FileFormatError(with_path(p, "holds NaN or infinite coordinates"))
    if len(found) and int(found.classes.min()) < 1:
        raise InputError(with_path(p, f"has class {int(found.classes.min())}; classes are "
                                   "numbered from 1"))
    if shape_zyx is not None and len(found):
        dims = np.asarray(shape_zyx[:3], np.float64)
        outside = np.any((found.zyx < -0.5) | (found.zyx > dims - 0.5), axis=1)
        if outside.any():
            i = int(np.argmax(outside))
            z, y, x = found.zyx[i]
            raise MismatchError(with_path(
                p, f"{int(outside.sum())} of {len(found)} particles lie outside the tomogram "
                f"of {int(dims[2])} x {int(dims[1])} x {int(dims[0])} voxels (x, y, z), e.g. "
                f"x={x:g}, y={y:g}, z={z:g}; is it the list of another tomogram or binning?"))
    return found


def write_particle_star(
    path: PathLike, particles: ParticleList, *, voxel_size_A: float,
    shape_zyx: tuple[int, ...], euler_deg: np.ndarray | None = None,
) -> Path:
    """RELION STAR: voxels (``rlnCoordinateX/Y/Z``), RELION 5 centred Å, class, score."""
    import pandas as pd

    from emkit.io import write_star

    zyx = particles.zyx
    centred = (zyx - np.asarray(shape_zyx[:3], np.float64) / 2) * voxel_size_A
    columns: dict[str, Any] = {
        "rlnCoordinateX": zyx[:, 2], "rlnCoordinateY": zyx[:, 1], "rlnCoordinateZ": zyx[:, 0],
        "rlnCenteredCoordinateXAngst": centred[:, 2],
        "rlnCenteredCoordinateYAngst": centred[:, 1],
        "rlnCenteredCoordinateZAngst": centred[:, 0],
        "rlnClassNumber": particles.classes.astype(np.int64),
        "rlnAutopickFigureOfMerit": particles.scores,
    }
    if euler_deg is not None:
        for k, name in enumerate(("rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi")):
            columns[name] = np.asarray(euler_deg)[:, k]
    return write_star(path, {"particles": pd.DataFrame(columns)})


def write_particle_tsv(path: PathLike, particles: ParticleList, *, voxel_size_A: float) -> Path:
    """The original detector's TSV: ``PositionX/Y/Z`` (Å), ``VolumeX/Y/Z`` (voxels),
    plus ``Class`` and ``Score``."""
    import pandas as pd

    from emkit.io import write_text_atomic

    zyx = particles.zyx
    df = pd.DataFrame({
        "PositionX": zyx[:, 2] * voxel_size_A, "PositionY": zyx[:, 1] * voxel_size_A,
        "PositionZ": zyx[:, 0] * voxel_size_A,
        "VolumeX": zyx[:, 2], "VolumeY": zyx[:, 1], "VolumeZ": zyx[:, 0],
        "Class": particles.classes.astype(np.int64), "Score": particles.scores,
    })
    return write_text_atomic(path, df.to_csv(sep="\t", index=False, float_format="%.4f",
                                             lineterminator="\n"))


def write_particle_lists(
    folder: PathLike, stem: str, particles: ParticleList, *, voxel_size_A: float,
    shape_zyx: tuple[int, ...], instance_labels: np.ndarray | None = None,
    rotations: np.ndarray | None = None, formats: tuple[str, ...] = ("star", "tsv"),
) -> list[Path]:
    """Write ``folder/<stem>_particles.<fmt>`` for each format (star, tsv, csv, xml) and,
    with ``instance_labels``, ``folder/<stem>_instances.mrc`` (voxel size kept)."""
    from emkit.io import write_coordinates, write_deepfinder_xml

    out = Path(folder)
    if len(particles.zyx) != len(particles.classes) or len(particles.zyx) != len(
            particles.scores):
        raise MismatchError("particle coordinates, classes and scores differ in length")
    euler = None
    if rotations is not None and len(rotations):
        from emkit.geometry import matrix_to_euler_zyz

        euler = np.asarray(matrix_to_euler_zyz(rotations), np.float64).reshape(-1, 3)
    written = []
    for fmt in formats:
        path = out / f"{stem}_particles.{fmt}"
        if fmt == "star":
            write_particle_star(path, particles, voxel_size_A=voxel_size_A,
                                shape_zyx=shape_zyx, euler_deg=euler)
        elif fmt == "tsv":
            write_particle_tsv(path, particles, voxel_size_A=voxel_size_A)
        elif fmt == "csv":
            write_coordinates(path, particles.zyx, particles.classes)
        elif fmt == "xml":
            write_deepfinder_xml(path, particles.zyx, class_label=particles.classes,
                                 angles_deg=euler)
        else:
            raise InputError(f"unknown particle list format {fmt!r}")
        written.append(path)
    if instance_labels is not None:
        written.append(write_instance_labels(out / f"{stem}_instances.mrc", instance_labels,
                                             voxel_size_A))
    return written


def write_instance_labels(path: PathLike, labels: np.ndarray, voxel_size_A: float) -> Path:
    """Instance labels, written straight from ``labels`` (a memory map stays on disk); as MRC,
    mode 2: float32 holding exact integers up to 2^24, written in slabs."""
    from emkit.io import volume_format, write_volume

    if volume_format(path, for_writing=True) == "mrc" and int(labels.max(initial=0)) >= 2**24:
        raise InputError(with_path(path, "holds more than 2^24 instances, more than float32 "
                                   "labels tell apart"))
    return write_volume(path, labels, voxel_size=voxel_size_A)


def write_simulated_tomogram(folder: PathLike, sim: Any) -> list[Path]:
    """Write a :class:`emkit.sim.SimulatedTomogram` and its ground truth into ``folder``.

    Files: ``tomogram.mrc`` (protein dark), ``tiltseries.mrc`` + ``tiltseries.tlt``,
    ``density.mrc`` (noise-free specimen), ``instances.mrc`` (instance labels),
    ``particles.{star,tsv,csv,xml}`` (centres, classes; Euler angles in STAR and XML) and
    ``classes.csv`` (class number, name, radius in Å).
    """
    from emkit.io import write_text_atomic, write_tlt, write_volume

    out = Path(folder)
    voxel = sim.voxel_size_A
    shape = sim.tomogram.shape
    written = [
        write_volume(out / "tomogram.mrc", sim.tomogram, voxel_size=voxel),
        write_volume(out / "tiltseries.mrc", sim.tilt_series, voxel_size=voxel),
        write_tlt(out / "tiltseries.tlt", sim.tilt_angles_deg),
        write_volume(out / "density.mrc", sim.density, voxel_size=voxel),
        write_instance_labels(out / "instances.mrc", sim.instance_labels, voxel),
    ]
    particles = ParticleList(sim.centres_zyx, sim.class_ids, np.ones(len(sim.class_ids)))
    euler = None
    if len(sim.rotations):
        from emkit.geometry import matrix_to_euler_zyz

        euler = np.asarray(matrix_to_euler_zyz(sim.rotations), np.float64).reshape(-1, 3)
    written.append(write_particle_star(out / "particles.star", particles, voxel_size_A=voxel,
                                       shape_zyx=shape, euler_deg=euler))
    written.append(write_particle_tsv(out / "particles.tsv", particles, voxel_size_A=voxel))
    from emkit.io import write_coordinates, write_deepfinder_xml

    written.append(write_coordinates(out / "particles.csv", particles.zyx, particles.classes))
    written.append(write_deepfinder_xml(out / "particles.xml", particles.zyx,
                                        class_label=particles.classes, angles_deg=euler))
    classes = "\n".join(f"{k + 1},{name},{r:.2f}" for k, (name, r) in
                        enumerate(zip(sim.class_names, sim.radii_A)))
    written.append(write_text_atomic(out / "classes.csv", "class,name,radius_A\n" + classes
                                     + "\n"))
    return written
