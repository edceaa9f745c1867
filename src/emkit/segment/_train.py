"""Deep-SXT training: one encoder, a label decoder and an image decoder, a few labelled slices.

Labelled steps (patches of the labelled slices) train the label head with cross-entropy +
Dice and, with a small weight, the image head; unlabelled steps (patches of every other
slice) train the image head alone with SSIM + Huber. The two alternate, so the shared
encoder learns the tomogram's own image features from all its slices and the label head
needs only a few labelled ones. Both are augmented (90-degree rotations, flips, intensity
gain/offset/noise).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from emkit.errors import InputError
from emkit.nn import (
    PercentileNormalisation,
    TrainedModel,
    TrainingHistory,
    UNet,
    choose_device,
    fit,
    predict_tiled,
    seed_everything,
)
from emkit.segment._data import (
    PatchSampler,
    check_training_inputs,
    context_stack,
    validation_mask,
)
from emkit.segment._losses import IGNORE, label_loss, reconstruction_loss
from emkit.segment._metrics import dice_scores

__all__ = ["SegmentationTraining", "train_segmentation"]


@dataclass
class SegmentationTraining:
    """A trained slice-wise segmentation model and how it got there.

    Attributes
    ----------
    model : TrainedModel
        Save with :func:`emkit.nn.save_model`; apply with :func:`predict_segmentation`.
    history : TrainingHistory
        Loss log (one row per validation).
    slices : list of int
        The labelled z slices used.
    validation_dice : dict
        Class name -> Dice on the held-out pixels of the labelled slices (best weights).
    settings : dict
        The training settings (for run records).
    """

    model: TrainedModel
    history: TrainingHistory
    slices: list[int]
    validation_dice: dict[str, float] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)


def _fingerprint(tomogram: np.ndarray, labels: np.ndarray, settings: dict[str, Any]) -> str:
    digest = hashlib.sha256()
    for array in (tomogram, labels):
        flat = np.ascontiguousarray(array).reshape(-1)
        digest.update(np.ascontiguousarray(flat[:: max(1, flat.size // 1_000_000)]).tobytes())
        digest.update(str(array.shape).encode())
    digest.update(json.dumps(settings, sort_keys=True, default=str).encode())
    return digest.hexdigest()[:16]


def _class_names(names: Sequence[str] | None, n_classes: int) -> list[str]:
    if names is None:
        return ["background"] + [f"class_{k}" for k in range(1, n_classes)]
    names = [str(n) for n in names]
    if len(names) < n_classes:
        raise InputError(f"{len(names)} class names for labels 0..{n_classes - 1}; give one "
                         "name per label value")
    return names


def _validator(
    network: UNet, images: np.ndarray, targets: np.ndarray, n_classes: int, device: Any
) -> Callable[[], dict[str, float]]:
    """Validation on the held-out pixels: NLL + (1 - mean Dice of the classes present)."""
    held = targets != IGNORE

    def validate() -> dict[str, float]:
        probs = predict_tiled(network, images, tile_size=256, overlap=32, device=device)
        truth = np.where(held, targets, 0)
        picked = np.take_along_axis(probs, truth[:, None], axis=1)[:, 0]
        nll = float(-np.log(np.maximum(picked[held], 1e-6)).mean())
        dice = dice_scores(probs.argmax(axis=1), truth, n_classes, mask=held)
        mean_dice = float(np.nanmean(dice)) if np.any(np.isfinite(dice)) else 0.0
        return {"loss": nll + (1.0 - mean_dice), "nll": nll, "dice": mean_dice}

    return validate


def _step_function(
    network: UNet, optimizer: Any, sampler: PatchSampler, *, semi_supervised: bool,
    batch_size: int, image_weight: float, learning_rate: float, total_steps: int,
    context_slices: int, device: Any,
) -> Callable[[int], dict[str, Any]]:
    """One optimisation step's losses: odd steps labelled, even steps (semi) unlabelled."""
    import torch

    centre = slice(context_slices, context_slices + 1)  # the slice the image head rebuilds

    def step(i: int) -> dict[str, torch.Tensor]:
        # cosine decay of the learning rate over the run (a function of i: resumes exactly)
        for group in optimizer.param_groups:
            decay = 0.5 * (1 + np.cos(np.pi * i / total_steps))
            group["lr"] = learning_rate * (0.05 + 0.95 * decay)
        if semi_supervised and i % 2 == 0:
            x = torch.from_numpy(sampler.unlabelled(batch_size)).to(device)
            loss = reconstruction_loss(network(x, heads=(1,))[0], x[:, centre])
            return {"loss": loss, "unlabelled": loss}
        images, target = sampler.labelled(batch_size)
        x = torch.from_numpy(images).to(device)
        logits, rebuilt = network(x)
        labelled = label_loss(logits, torch.from_numpy(target).to(device))
        image = reconstruction_loss(rebuilt, x[:, centre])
        return {"loss": labelled + image_weight * image, "labelled": labelled}

    return step


def train_segmentation(
    tomogram: np.ndarray,
    labels: np.ndarray,
    *,
    slices: Sequence[int] | None = None,
    voxel_size_A: float | None = None,
    class_names: Sequence[str] | None = None,
    semi_supervised: bool = True,
    width: int = 16,
    depth: int = 3,
    patch_size: int = 96,
    batch_size: int = 4,
    n_steps: int = 1200,
    validate_every: int = 50,
    patience: int = 8,
    learning_rate: float = 2e-3,
    validation_fraction: float = 0.15,
    image_weight: float = 0.1,
    context_slices: int = 0,
    seed: int = 0,
    device: str | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
    resume: bool = False,
    log_csv: str | os.PathLike[str] | None = None,
    progress: bool = False,
) -> SegmentationTraining:
    """Train the deep-SXT model on a tomogram with a few labelled z slices.

    Parameters
    ----------
    tomogram : ndarray, shape (nz, ny, nx)
        Any intensity scale (each volume is normalised by its own 1st..99th percentiles).
    labels : integer ndarray, shape (nz, ny, nx)
        Labels on the tomogram's grid (0, 1, ..., n_classes - 1); only ``slices`` are read.
    slices : sequence of int, optional
        Labelled z slices; default: every slice with a non-zero label.
    voxel_size_A : float, optional
        Stored with the model (prediction rescales tomograms of another voxel size).
    class_names : sequence of str, optional
        Name of each label value.
    semi_supervised : bool
        Alternate labelled and unlabelled steps (True), or train on the labelled slices
        alone (False; the baseline the method is measured against).
    width, depth : int
        U-Net size (channels of the first level, number of poolings).
    patch_size, batch_size, n_steps, validate_every, patience, learning_rate : optional
        Training schedule, counted in labelled steps: semi-supervised training takes an
        unlabelled step after each labelled one (``2 * n_steps`` in all), so both modes see
        the same labelled batches. The learning rate decays on a cosine; training keeps the
        weights that validate best and stops after ``patience`` validations without
        improvement.
    validation_fraction : float
        Fraction of each labelled slice held out for validation (whole blocks).
    image_weight : float
        Weight of the image term in the labelled loss.
    context_slices : int
        Also give the network this many neighbouring z slices on each side as input
        channels (2.5D; 0: one slice, as deep-SXT). The image head rebuilds the centre slice.
    seed : int
        Same seed, same model (on the same device and thread count).
    device : str, optional
        Torch device (default: CUDA when available).
    checkpoint, resume, log_csv, progress : optional
        See :func:`emkit.nn.fit`.

    Returns
    -------
    SegmentationTraining
    """
    import torch

    tomogram = np.asarray(tomogram)
    chosen, n_classes = check_training_inputs(tomogram, np.asarray(labels), slices)
    names = _class_names(class_names, n_classes)
    if not 0 <= context_slices <= 8:
        raise InputError(f"context slices must be 0..8, got {context_slices}")
    if not 0 < validation_fraction < 0.5:
        raise InputError(f"validation fraction must be in (0, 0.5), got {validation_fraction}")
    settings = {"slices": chosen, "semi_supervised": semi_supervised, "width": width,
                "depth": depth, "patch_size": patch_size, "batch_size": batch_size,
                "n_steps": n_steps, "validate_every": validate_every, "patience": patience,
                "learning_rate": learning_rate, "validation_fraction": validation_fraction,
                "image_weight": image_weight, "context_slices": context_slices, "seed": seed,
                "n_classes": n_classes}
    rng = seed_everything(seed)
    dev = choose_device(device)
    normalisation = PercentileNormalisation(1.0, 99.0)
    volume = normalisation.apply(tomogram)
    label_slices = np.asarray(labels[chosen], dtype=np.int64)
    targets = label_slices.copy()
    for k in range(len(chosen)):
        targets[k][validation_mask(targets.shape[1:], rng, validation_fraction)] = IGNORE
    held_out = np.where(targets == IGNORE, label_slices, IGNORE)
    multiple = 2**depth
    side = max(multiple, min(patch_size, *tomogram.shape[1:]) // multiple * multiple)
    unlabelled = [z for z in range(tomogram.shape[0]) if z not in chosen] or chosen
    sampler = PatchSampler(volume, targets, chosen, (side, side), rng, unlabelled,
                           context_slices)
    network = UNet(spatial_dims=2, in_channels=2 * context_slices + 1,
                   out_channels=(n_classes, 1), width=width, depth=depth,
                   skip_connections=(True, False)).to(dev)
    optimizer = torch.optim.Adam(network.parameters(), lr=learning_rate)

    total_steps = 2 * n_steps if semi_supervised else n_steps
    step = _step_function(network, optimizer, sampler, semi_supervised=semi_supervised,
                          batch_size=batch_size, image_weight=image_weight,
                          learning_rate=learning_rate, total_steps=total_steps,
                          context_slices=context_slices, device=dev)
    inputs = np.stack([context_stack(volume, z, context_slices) for z in chosen])
    if context_slices == 0:
        inputs = inputs[:, 0]
    validate = _validator(network, inputs, held_out, n_classes, dev)
    history = fit(network, optimizer, step, validate, n_steps=total_steps,
                  validate_every=validate_every * (2 if semi_supervised else 1),
                  patience=patience, rng=rng,
                  checkpoint=checkpoint, resume=resume,
                  fingerprint=_fingerprint(tomogram, label_slices, settings),
                  log_csv=log_csv, progress=progress)
    probs = predict_tiled(network, inputs, device=dev)
    held = held_out != IGNORE
    dice = dice_scores(probs.argmax(axis=1), np.where(held, held_out, 0), n_classes, mask=held)
    validation = {names[k]: round(float(d), 4) for k, d in enumerate(dice) if np.isfinite(d)}
    model = TrainedModel(network.cpu().eval(), normalisation,
                         None if voxel_size_A is None else float(voxel_size_A), names,
                         "segment", extra={"training": settings,
                                           "validation_dice": validation})
    return SegmentationTraining(model, history, chosen, validation, settings)
