"""Apply a trained slice-wise model to a tomogram, along z or along all three axes."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from emkit.errors import InputError, ShapeError
from emkit.nn import TrainedModel, predict_tiled
from emkit.segment._objects import class_indices, fallback_labels, keep_largest_object

__all__ = ["SegmentationPrediction", "predict_segmentation"]

logger = logging.getLogger(__name__)

AXES = ("z", "zyx")
# Tomograms whose voxel size is within this fraction of the model's are used as they are;
# others are rescaled to the model's voxel size, up to a factor of _MAX_RESCALE.
_VOXEL_TOLERANCE = 0.05
_MAX_RESCALE = 4.0


@dataclass
class SegmentationPrediction:
    """Labels predicted for a tomogram.

    Attributes
    ----------
    labels : ndarray, shape (nz, ny, nx), uint8
        Label of every voxel (index into ``class_names``).
    class_names : list of str
    axes : str
        ``"z"`` (xy slices) or ``"zyx"`` (xy, xz and yz slices, probabilities averaged).
    rescale_factor : float
        Tomogram voxel size / model voxel size (1.0 when no rescaling was needed).
    relabelled_voxels : dict of str to int
        Per single-object class, the voxels of its smaller pieces given another label.
    """

    labels: np.ndarray
    class_names: list[str]
    axes: str
    rescale_factor: float = 1.0
    relabelled_voxels: dict[str, int] = field(default_factory=dict)


def _rescale_factor(voxel_size_A: float | None, model: TrainedModel) -> float:
    if voxel_size_A is None or model.voxel_size_A is None:
        return 1.0
    factor = float(voxel_size_A) / model.voxel_size_A
    if abs(factor - 1.0) <= _VOXEL_TOLERANCE:
        return 1.0
    if not 1 / _MAX_RESCALE <= factor <= _MAX_RESCALE:
        raise InputError(
            f"the tomogram's voxel size ({voxel_size_A:g} Å) is {factor:.2g} times the "
            f"model's ({model.voxel_size_A:g} Å); rescaling by more than {_MAX_RESCALE:g}x "
            "loses the features the model learned: bin the tomogram or train a new model"
        )
    logger.warning(
        "tomogram voxel size %.4g Å differs from the model's %.4g Å: rescaling the "
        "tomogram by %.3g for prediction and the labels back", voxel_size_A,
        model.voxel_size_A, factor,
    )
    return factor


def _accumulate_axis(
    model: TrainedModel, volume: np.ndarray, levels: tuple[float, float], axis: int,
    out: np.ndarray, *, chunk: int, tile_size: int, batch_size: int, device: str | None,
    tick: Callable[[int], None] | None, span: tuple[int, int] | None = None,
) -> None:
    """Add the class probabilities of the slices along ``axis`` (those in ``span``, default
    all) into ``out`` ``(c, ...)``, whose extent along ``axis`` is the span."""
    n = volume.shape[axis]
    first, last = (0, n) if span is None else span
    k = (model.network.in_channels - 1) // 2  # neighbouring slices on each side
    for start in range(first, last, chunk):
        stop = min(last, start + chunk)
        index = np.clip(np.arange(start - k, stop + k), 0, n - 1)
        block = np.moveaxis(np.take(volume, index, axis=axis), axis, 0)
        images = model.normalisation.apply(block, levels)
        if k:  # (n + 2k, a, b) -> (n, 2k + 1, a, b): each slice with its neighbours
            images = np.lib.stride_tricks.sliding_window_view(images, 2 * k + 1, axis=0)
            images = np.ascontiguousarray(np.moveaxis(images, -1, 1))
        probs = predict_tiled(model.network, images, tile_size=tile_size, overlap=32,
                              batch_size=batch_size, device=device)  # (k, c, a, b)
        index_out = [slice(None)] * 4
        index_out[axis + 1] = slice(start - first, stop - first)
        out[tuple(index_out)] += np.moveaxis(probs, 0, axis + 1).astype(out.dtype)
        if tick is not None:
            tick(stop - start)


def predict_segmentation(
    tomogram: np.ndarray,
    model: TrainedModel,
    *,
    voxel_size_A: float | None = None,
    axes: str = "z",
    tile_size: int = 256,
    batch_size: int = 4,
    chunk_slices: int = 16,
    device: str | None = None,
    progress: bool = False,
    single_object: Sequence[str] = (),
) -> SegmentationPrediction:
    """Label every voxel of a tomogram with a model from :func:`train_segmentation`.

    Parameters
    ----------
    tomogram : ndarray, shape (nz, ny, nx)
        Any intensity scale (normalised as the model says, by this tomogram's own
        percentiles).
    model : TrainedModel
        From :func:`train_segmentation` or :func:`emkit.nn.load_model`.
    voxel_size_A : float, optional
        The tomogram's voxel size; if it differs from the model's by more than 5 %, the
        tomogram is rescaled to the model's (a warning is logged) and the labels back.
    axes : {"z", "zyx"}
        Slice along z only, or along z, y and x and average the class probabilities.
    tile_size, batch_size : int
        Tiles of ``tile_size`` pixels, ``batch_size`` at a time.
    chunk_slices : int
        Slices per chunk: memory is the label volume (``"z"``) or the class probabilities
        in float16 (``"zyx"``), plus one chunk's probabilities in float32.
    device : str, optional
    progress : bool
        Show a tqdm bar.
    single_object : sequence of str
        Classes that are one object per tomogram (a cell's nucleus): of each, only the
        largest 6-connected piece is kept and the others take each voxel's most probable
        class outside all the named ones. Slice-wise networks call the missing-wedge haze
        above and below a cell "nucleus"; that haze is not connected to the nucleus in 3D.
        Costs one more uint8 volume and, while each class is labelled, an int32 component
        map and a few bool volumes (about 10 bytes per voxel at the peak).

    Returns
    -------
    SegmentationPrediction
    """
    if axes not in AXES:
        raise InputError(f"axes must be one of {AXES}, got {axes!r}")
    volume = np.asarray(tomogram)
    if volume.ndim != 3:
        raise ShapeError(f"the tomogram must be a volume (z, y, x), got shape {volume.shape}")
    single = class_indices(single_object, model.class_names)
    factor = _rescale_factor(voxel_size_A, model)
    original_shape = volume.shape
    if factor != 1.0:
        from scipy import ndimage

        zoom = (factor if axes == "zyx" else 1.0, factor, factor)
        volume = ndimage.zoom(volume.astype(np.float32, copy=False), zoom, order=1)
    labels, fallback = _predict_labels(model, volume, axes, single, chunk_slices=chunk_slices,
                                       tile_size=tile_size, batch_size=batch_size,
                                       device=device, progress=progress)
    relabelled = {model.class_names[k]: keep_largest_object(labels, fallback, k,
                                                            name=model.class_names[k])
                  for k in single if fallback is not None}
    if labels.shape != original_shape:
        from skimage.transform import resize

        labels = resize(labels, original_shape, order=0, preserve_range=True,
                        anti_aliasing=False).astype(np.uint8)
    return SegmentationPrediction(labels, list(model.class_names), axes, factor, relabelled)


def _predict_labels(
    model: TrainedModel, volume: np.ndarray, axes: str, single: tuple[int, ...], *,
    chunk_slices: int, tile_size: int, batch_size: int, device: str | None, progress: bool,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Labels of every voxel and, when ``single`` names classes, each voxel's most
    probable class outside them (None otherwise)."""
    levels = model.normalisation.levels(volume)
    n_classes = model.network.out_channels[0]
    chosen = (0,) if axes == "z" else (0, 1, 2)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=sum(volume.shape[a] for a in chosen), desc="predict", unit="slice")
    kwargs: dict[str, Any] = dict(chunk=chunk_slices, tile_size=tile_size, batch_size=batch_size,
                  device=device, tick=None if bar is None else bar.update)
    fallback = np.empty(volume.shape, np.uint8) if single else None
    if axes == "z":
        labels = np.empty(volume.shape, np.uint8)
        for start in range(0, volume.shape[0], chunk_slices):
            stop = min(volume.shape[0], start + chunk_slices)
            probs = np.zeros((n_classes, stop - start, *volume.shape[1:]), np.float32)
            _accumulate_axis(model, volume, levels, 0, probs, span=(start, stop), **kwargs)
            labels[start:stop] = probs.argmax(axis=0)
            if fallback is not None:
                fallback[start:stop] = fallback_labels(probs, single)
    else:
        total = np.zeros((n_classes, *volume.shape), np.float16)
        for axis in chosen:
            _accumulate_axis(model, volume, levels, axis, total, **kwargs)
        labels = total.argmax(axis=0).astype(np.uint8)
        if fallback is not None:
            for start in range(0, volume.shape[0], chunk_slices):
                part = slice(start, start + chunk_slices)
                fallback[part] = fallback_labels(total[:, part], single)
    if bar is not None:
        bar.close()
    return labels, fallback
