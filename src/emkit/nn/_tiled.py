"""Apply a network to images larger than memory allows: overlapping tiles, smooth blending."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from emkit.errors import InputError, ShapeError
from emkit.nn._model_folder import choose_device
from emkit.nn._unet import UNet

__all__ = ["predict_tiled", "blend_window"]


def blend_window(tile_shape: tuple[int, ...], overlap: int) -> np.ndarray:
    """Weights of one tile: a raised-cosine ramp over ``overlap`` pixels at every edge.

    Neighbouring tiles cross-fade over their overlap, so no seam shows; the weights never
    reach zero, so a pixel that only one tile covers (the image border) keeps its value.
    """
    window = np.ones(tile_shape, dtype=np.float32)
    for axis, n in enumerate(tile_shape):
        ramp = np.ones(n, dtype=np.float32)
        width = min(int(overlap), n // 2)
        if width > 0:
            t = (np.arange(width, dtype=np.float32) + 0.5) / width
            edge = 0.5 - 0.5 * np.cos(np.pi * t)
            ramp[:width] = edge
            ramp[n - width :] = edge[::-1]
        shape = [1] * len(tile_shape)
        shape[axis] = n
        window = window * np.maximum(ramp, 1e-3).reshape(shape)
    return window


def _starts(length: int, tile: int, step: int) -> list[int]:
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile, step))
    return [*starts, length - tile]


def _padded_size(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def _tiles(
    padded: tuple[int, ...], tile: tuple[int, ...], overlap: int, multiple: int
) -> Iterator[tuple[slice, ...]]:
    per_axis = []
    for length, t in zip(padded, tile):
        step = max(multiple, (t - overlap) // multiple * multiple)
        per_axis.append([slice(s, s + t) for s in _starts(length, t, step)])
    yield from itertools.product(*per_axis)


def predict_tiled(
    network: UNet,
    images: np.ndarray,
    *,
    tile_size: int = 256,
    overlap: int = 32,
    head: int = 0,
    activation: str | None = "softmax",
    batch_size: int = 4,
    device: str | torch.device | None = None,
) -> np.ndarray:
    """Run ``network`` over images or volumes in overlapping tiles and blend the outputs.

    Each tile's output is weighted by :func:`blend_window` and the weighted sum divided by
    the summed weights, so overlapping tiles cross-fade. Memory: the output array plus
    ``batch_size`` tiles at a time. Sizes are padded (reflect) to multiples of
    ``network.size_multiple`` and cropped back.

    Parameters
    ----------
    network : UNet
        The network (put in eval mode here).
    images : ndarray, float32
        Already normalised. For a 2D network: ``(y, x)`` or a batch ``(n, y, x)``; for a 3D
        network: ``(z, y, x)``. A network with several input channels takes them after the
        batch axis: ``(c, y, x)``, ``(n, c, y, x)`` or ``(c, z, y, x)``.
    tile_size : int
        Tile side in pixels (rounded down to a multiple of ``network.size_multiple``).
    overlap : int
        Overlap between neighbouring tiles in pixels.
    head : int
        Which output head to compute.
    activation : {"softmax", "sigmoid", None}
        Applied to each tile's output before blending.
    batch_size : int
        Tiles per forward pass.
    device : str, optional
        Torch device (None: CUDA when available).

    Returns
    -------
    ndarray, float32
        ``(c, y, x)``, ``(n, c, y, x)`` or ``(c, z, y, x)``: the head's channels first.
    """
    dims = network.spatial_dims
    arr = np.asarray(images, dtype=np.float32)
    channels = network.in_channels > 1
    single = arr.ndim == dims + int(channels)
    if arr.ndim not in (dims + int(channels), dims + 1 + int(channels)) or (
        dims == 3 and not channels and arr.ndim != 3
    ):
        layout = "(z, y, x)" if dims == 3 else "(y, x) or (n, y, x)"
        if channels:
            layout = "(c, z, y, x)" if dims == 3 else "(c, y, x) or (n, c, y, x)"
        raise ShapeError(f"this network takes {layout} arrays, got shape {arr.shape}")
    if channels and arr.shape[-dims - 1] != network.in_channels:
        raise ShapeError(f"the network takes {network.in_channels} channels, got "
                         f"{arr.shape[-dims - 1]} (shape {arr.shape})")
    if activation not in ("softmax", "sigmoid", None):
        raise InputError(f"activation must be 'softmax', 'sigmoid' or None, got {activation!r}")
    batch = arr[None] if single else arr
    if not channels:
        batch = batch[:, None]
    m = network.size_multiple
    spatial = batch.shape[2:]
    padded = tuple(_padded_size(max(s, m), m) for s in spatial)
    tile = tuple(min(p, max(m, tile_size // m * m)) for p in padded)
    pads = [(0, 0), (0, 0)] + [(0, p - s) for p, s in zip(padded, spatial)]
    mode: Any = "reflect" if all(p - s < s for p, s in zip(padded, spatial)) else "edge"
    if any(p != s for p, s in zip(padded, spatial)):
        batch = np.pad(batch, pads, mode=mode)
    dev = choose_device(device)
    network = network.to(dev).eval()
    n_out = network.out_channels[head]
    out = np.zeros((batch.shape[0], n_out, *padded), dtype=np.float32)
    weight_sum = np.zeros(padded, dtype=np.float32)
    window = blend_window(tile, overlap)
    jobs = [(i, sl) for sl in _tiles(padded, tile, overlap, m) for i in range(batch.shape[0])]
    for sl in _tiles(padded, tile, overlap, m):
        weight_sum[sl] += window
    with torch.inference_mode():
        for start in range(0, len(jobs), max(1, batch_size)):
            chunk = jobs[start : start + max(1, batch_size)]
            tiles = np.stack([batch[(i, slice(None)) + tuple(sl)] for i, sl in chunk])
            x = torch.from_numpy(tiles).to(dev)
            y = network(x, heads=(head,))[0]
            if activation == "softmax":
                y = torch.softmax(y, dim=1)
            elif activation == "sigmoid":
                y = torch.sigmoid(y)
            y_np = y.float().cpu().numpy()
            for (i, sl), values in zip(chunk, y_np):
                out[(i, slice(None)) + tuple(sl)] += values * window
    out /= weight_sum
    crop = (slice(None), slice(None), *(slice(0, s) for s in spatial))
    result = np.ascontiguousarray(out[crop])
    return result[0] if single else result
