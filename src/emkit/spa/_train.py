"""``emkit spa train``: the distance network trained on the user's own structures.

Each atomic model (PDB/mmCIF) becomes a density at two scales in the box (the particle
spanning 55 % and 95 % of it, resolution 2-3.5 px, as the shipped model's training data);
a map (MRC) is used as it is, padded or cropped to the box about its centre voxel. Seeded
blob assemblies may be added for variety; two more blob assemblies (other seeds) are the
held-out validation set that picks the weights to keep, so the kept model is the one that
transfers best to shapes it did not see.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from emkit.errors import InputError, with_path

if TYPE_CHECKING:
    from emkit.nn import TrainedModel

__all__ = ["training_maps", "train_from_structures"]

FILLS = (0.55, 0.95)


def _map_volume(path: Path, box_px: int) -> NDArray[np.float32]:
    from emkit.spa._commands import _source_map

    # the same checked reading as `sim particles` (3D, finite, centred in the box); the
    # pixel size plays no part here, so a header without one is not refused
    data, _ = _source_map(path, 1.0, box_px)
    volume = np.maximum(data, 0.0)
    if not volume.max() > 0:
        raise InputError(with_path(path, "has no positive density inside the box; give a "
                                   "map with the particle at its centre, or a larger --box"))
    return np.asarray(volume / volume.max(), dtype=np.float32)


def training_maps(
    structures: Sequence[Path], *, box_px: int, n_blobs: int, seed: int
) -> tuple[list[NDArray[np.float32]], list[NDArray[np.float32]], list[str]]:
    """Training maps (and their names) from structure files plus blobs; validation blobs."""
    from emkit.io._structure import STRUCTURE_SUFFIXES
    from emkit.spa._make_model import blob_assembly, structure_volume

    rng = np.random.default_rng(seed)
    train: list[NDArray[np.float32]] = []
    names: list[str] = []
    for path in structures:
        path = Path(path)
        if path.name.lower().endswith(STRUCTURE_SUFFIXES):
            for fill in FILLS:
                train.append(structure_volume(path, fill, float(rng.uniform(2.0, 3.5)), box_px))
                names.append(f"{path.name}@{fill}")
        else:
            train.append(_map_volume(path, box_px))
            names.append(path.name)
    train += [blob_assembly(seed + k, box_px) for k in range(n_blobs)]
    names += [f"blobs{seed + k}" for k in range(n_blobs)]
    validation = [blob_assembly(seed + 10_000 + k, box_px) for k in range(2)]
    return train, validation, names


def train_from_structures(
    structures: Sequence[Path], *, box_px: int = 64, voxel_size_A: float = 3.667,
    n_steps: int = 1200, n_blobs: int = 20, seed: int = 0,
    checkpoint: str | os.PathLike[str] | None = None, resume: bool = False,
    log_csv: str | os.PathLike[str] | None = None, progress: bool = False,
) -> TrainedModel:
    """Train the Siamese distance network on simulated projections of ``structures``.

    Parameters
    ----------
    structures : sequence of Path
        Atomic models (``.pdb``, ``.cif``, gzipped too) or maps (``.mrc``), none of them
        the structure the model will be used on.
    box_px : int
        Particle box of the images the model will see (the network resamples to 32 px).
    voxel_size_A : float
        Pixel size in Å of the images the model will see (sets the CTF's scale).
    n_steps, n_blobs, seed : int
        Training steps, extra blob assemblies, seed (same seed, same weights).
    checkpoint, resume, log_csv, progress : optional
        See :func:`emkit.nn.fit`.

    Returns
    -------
    emkit.nn.TrainedModel
        Save with :func:`emkit.nn.save_model`; use with ``emkit spa orient --model``.
    """
    from emkit.spa._siamese import train_distance_model

    if not structures:
        raise InputError("no structure given; list atomic models or maps after --structures")
    train, validation, names = training_maps(structures, box_px=box_px, n_blobs=n_blobs,
                                             seed=seed)
    model = train_distance_model(
        train, voxel_size_A=voxel_size_A, box_px=box_px, n_steps=n_steps, seed=seed,
        validation_volumes=validation, checkpoint=checkpoint, resume=resume, log_csv=log_csv,
        progress=progress)
    model.extra["training_data"] = {"volumes": names, "validation": "2 blob assemblies",
                                    "how": "emkit spa train"}
    return model
