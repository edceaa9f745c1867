"""File-level training and detection (what ``emkit pick train`` and ``detect`` call)."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from emkit.errors import InputError, MismatchError, with_path
from emkit.pick._files import PickResult, read_tomogram
from emkit.pick._particles import read_particle_list

__all__ = ["detect_particles_in_file", "shipped_model_folder", "train_picker_from_files"]

logger = logging.getLogger(__name__)

PathLike = str | os.PathLike[str]


def shipped_model_folder() -> Path | None:
    """The model shipped inside emkit (``emkit/data/pick_model``), or None if absent."""
    folder = Path(str(resources.files("emkit").joinpath("data/pick_model")))
    return folder if (folder / "config.json").is_file() else None


def _load_model(folder: PathLike | None, device: str | None) -> Any:
    from emkit.nn import load_model

    if folder is None:
        folder = shipped_model_folder()
        if folder is None:
            raise InputError("this emkit has no shipped pick model; give --model MODEL_DIR "
                             "(train one with emkit pick train)")
    model = load_model(folder, task="pick", device=device)
    if tuple(model.network.out_channels[:2]) != (1, 1) or len(model.network.out_channels) != 3:
        raise InputError(with_path(folder, "is not a picking network (mask, centre and class "
                                   "heads)"))
    return model


def train_picker_from_files(
    tomograms: Sequence[PathLike], particle_lists: Sequence[PathLike], *,
    radius_A: Sequence[float], labels: Sequence[PathLike] | None = None,
    voxel_size_A: float | None = None, from_scratch: bool = False,
    initial_model: PathLike | None = None, **training: Any,
) -> Any:
    """Read tomograms and their particle lists (checked), then :func:`train_picker`.

    Starts from ``initial_model`` or the shipped model unless ``from_scratch``.

    Raises
    ------
    MismatchError
        Not one list (and label map) per tomogram, voxel sizes that differ, particles
        outside their tomogram.
    InputError
        A class without a radius, no voxel size anywhere.
    """
    from emkit.pick._train import train_picker

    if len(particle_lists) != len(tomograms):
        raise MismatchError(f"{len(tomograms)} tomograms but {len(particle_lists)} particle "
                            "lists; give one --particles list per tomogram, in the same order")
    if labels is not None and len(labels) != len(tomograms):
        raise MismatchError(f"{len(tomograms)} tomograms but {len(labels)} --labels maps")
    volumes, lists, maps, voxels = [], [], [], set()
    for i, path in enumerate(tomograms):
        data, voxel = read_tomogram(path)
        voxel = voxel_size_A or voxel
        if voxel is None:
            raise InputError(with_path(path, "has no voxel size in its header; give "
                                       "--pixel-size"))
        voxels.add(round(float(voxel), 4))
        found = read_particle_list(particle_lists[i], shape_zyx=data.shape, voxel_size_A=voxel)
        if len(found) == 0:
            raise InputError(with_path(particle_lists[i], "holds no particles"))
        volumes.append(np.asarray(data, np.float32))
        lists.append((found.zyx, found.classes))
        if labels is not None:
            label_data, _ = read_tomogram(labels[i])
            if label_data.shape != data.shape:
                raise MismatchError(with_path(labels[i], f"has shape {label_data.shape}, the "
                                              f"tomogram {data.shape}"))
            maps.append(np.asarray(label_data).astype(np.int32))
    if len(voxels) > 1:
        raise MismatchError(f"the tomograms have different voxel sizes {sorted(voxels)} Å; "
                            "bin them to one voxel size first")
    initial = None
    if not from_scratch and initial_model is None and shipped_model_folder() is None:
        logger.warning("no shipped pick model in this emkit; training from scratch")
    elif not from_scratch:
        initial = _load_model(initial_model, training.get("device"))
        if initial is not None and initial.voxel_size_A is not None and abs(
                initial.voxel_size_A - next(iter(voxels))) > 0.02 * initial.voxel_size_A:
            logger.warning("fine-tuning a model trained at %.4g Å voxels on %.4g Å tomograms",
                           initial.voxel_size_A, next(iter(voxels)))
    return train_picker(volumes, lists, radius_A=radius_A, voxel_size_A=next(iter(voxels)),
                        instances=maps or None, initial_model=initial, **training)


def _lazy_tomogram(path: PathLike) -> tuple[Any, float | None]:
    """The tomogram without reading it: a memory map (MRC, TIFF, NPY) or a Zarr array."""
    from emkit.errors import ShapeError
    from emkit.io import open_zarr_array, read_volume, volume_format
    from emkit.io._zarr import zarr_metadata

    if volume_format(path) in ("zarr", "ome-zarr"):
        meta = zarr_metadata(Path(path))
        data: Any = open_zarr_array(path)
        voxel = meta["voxel_size"][2] if meta.get("voxel_size") else None
    else:
        volume = read_volume(path, mmap=True)
        data, voxel = volume.data, volume.pixel_size
    if len(data.shape) != 3:
        raise ShapeError(with_path(path, f"has shape {tuple(data.shape)}; a tomogram is a "
                                   "volume (z, y, x)"))
    return data, (float(voxel) if voxel else None)


def detect_particles_in_file(
    tomogram: PathLike, *, model: PathLike | None = None, voxel_size_A: float | None = None,
    params: Any = None, tile_size: int = 64, overlap: int = 16, batch_size: int = 2,
    device: str | None = None, chunk: int | None = None, progress: bool = False,
    scheduler: Any = None, n_workers: int | None = 1,
) -> PickResult:
    """Detect particles in a tomogram file with a model folder (default: the shipped one).

    With ``chunk`` the tomogram is read lazily and processed chunk by chunk
    (:func:`detect_particles_chunked`: bounded memory, for tomograms larger than memory;
    its voxel size must then match the model's), the chunks on a local Dask cluster of
    ``n_workers`` processes or at ``scheduler`` (see there).
    """
    from emkit.pick._chunked import detect_particles_chunked
    from emkit.pick._detect import _rescale_factor, detect_particles

    trained = _load_model(model, device)
    data, voxel = _lazy_tomogram(tomogram) if chunk else read_tomogram(tomogram)
    voxel = voxel_size_A or voxel
    if voxel is None:
        logger.warning("%s: no voxel size in the header (give --pixel-size); assuming the "
                       "model's %s Å", tomogram, trained.voxel_size_A)
        voxel = trained.voxel_size_A or 1.0
    if chunk:
        if _rescale_factor(voxel, trained) != 1.0:
            raise InputError(with_path(tomogram, f"has {voxel:g} Å voxels, the model "
                                       f"{trained.voxel_size_A:g} Å; --chunk does not "
                                       "rescale: resample the tomogram first or omit --chunk"))
        found = detect_particles_chunked(tomogram, trained, params=params, chunk=chunk,
                                         tile_size=tile_size, overlap=overlap,
                                         batch_size=batch_size, device=device,
                                         progress=progress, scheduler=scheduler,
                                         n_workers=n_workers)
        found["centre"] = None
    else:
        found = detect_particles(data, trained, voxel_size_A=voxel, params=params,
                                 tile_size=tile_size, overlap=overlap,
                                 batch_size=batch_size, device=device)
    particles = found["particles"]
    particles.voxel_size_A = float(voxel)
    names = list(trained.class_names[1:])
    return PickResult(particles, found["instances"], found["centre"], None, float(voxel),
                      names, {"rescale_factor": found["rescale_factor"],
                              "postprocessing": found["params"],
                              "model_voxel_size_A": trained.voxel_size_A})
