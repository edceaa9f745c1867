"""Training the picking network on emkit.nn: one 3D U-Net, three heads.

Design: one shared encoder with three decoders (:class:`emkit.nn.UNet` with
``out_channels=(1, 1, n_classes + 1)``): the mask head (sigmoid, soft Dice loss; the
original MaskNet), the centre head (sigmoid, mean squared error against the normalised
distance-to-boundary map, 1 at the centre; the original CenterNet) and a class head
(softmax over background and the classes, cross-entropy over all voxels plus
cross-entropy among the particle classes inside particles). The original trained two
separate U-Nets; sharing the encoder halves the CPU time of training and of inference
(one encoder pass per tile for all three outputs) and lets the three tasks regularise one
another, which matters when training on two tomograms.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from emkit.errors import InputError

logger = logging.getLogger(__name__)

__all__ = ["PickTraining", "build_pick_network", "train_picker", "PICK_HEADS"]

PICK_HEADS = ("mask", "centre", "class")
_CENTRE_WEIGHT = 5.0
_CLASS_WEIGHT = 0.5
# the class decoder's last (1x1x1) layer: its channels are the classes
_CLASS_OUTPUT = "decoders.2.out."


def build_pick_network(n_classes: int, *, width: int = 8, depth: int = 2) -> Any:
    """The picking U-Net: 3D, heads ``(1, 1, n_classes + 1)`` (mask, centre, class)."""
    from emkit.nn import UNet

    if n_classes < 1:
        raise InputError(f"need at least one particle class, got {n_classes}")
    return UNet(spatial_dims=3, in_channels=1, out_channels=(1, 1, n_classes + 1),
                width=width, depth=depth)


@dataclass
class PickTraining:
    """Result of :func:`train_picker`: the model, its history, held-out losses."""

    model: Any
    history: Any
    validation: dict[str, float] = field(default_factory=dict)


def pick_losses(outputs: Sequence[Any], mask: Any, centre: Any, classes: Any
                ) -> dict[str, Any]:
    """Soft Dice (mask), MSE (centre map) and cross-entropy (classes: over every voxel, plus
    over the particles' voxels among the particle classes alone); ``loss`` their sum."""
    import torch
    import torch.nn.functional as F

    prob = torch.sigmoid(outputs[0][:, 0])
    inter = (prob * mask).sum()
    dice = 1 - (2 * inter + 1.0) / (prob.sum() + mask.sum() + 1.0)
    mse = F.mse_loss(torch.sigmoid(outputs[1][:, 0]), centre)
    ce = F.cross_entropy(outputs[2], classes)
    inside = classes > 0
    if bool(inside.any()):
        # which species, inside particles only: background voxels dominate the first term
        logits = outputs[2][:, 1:].permute(0, 2, 3, 4, 1)[inside]
        ce = ce + F.cross_entropy(logits, classes[inside] - 1)
    loss = dice + _CENTRE_WEIGHT * mse + _CLASS_WEIGHT * ce
    return {"loss": loss, "dice": dice.detach(), "mse": mse.detach(), "ce": ce.detach()}


def check_class_names(class_names: Sequence[str] | None, n_classes: int) -> None:
    """Refuse class names that are not one distinct name per class (InputError)."""
    if class_names is None:
        return
    names = list(class_names)
    if len(names) != n_classes:
        raise InputError(f"{len(names)} class names for {n_classes} classes (one per "
                         "--radius-A); give one name per class")
    if len(set(names)) != len(names) or "background" in names:
        raise InputError(f"class names {', '.join(names)}: give distinct names, none of them "
                         "'background'")


def _network_from(initial: Any, class_names: Sequence[str] | None, n_classes: int, width: int,
                  depth: int) -> Any:
    """A fresh network, or the initial model's weights. The class decoder's layers carry
    over too; of its output layer (one channel per class) the background channel and the
    channel of every class whose name the initial model also has (only when names are
    given): another channel would mean another species."""
    net = build_pick_network(n_classes, width=width, depth=depth)
    if initial is None:
        return net
    old = initial.network
    net = build_pick_network(n_classes, width=old.width, depth=old.depth)
    state = {k: v for k, v in old.state_dict().items() if not k.startswith(_CLASS_OUTPUT)}
    net.load_state_dict(state, strict=False)
    old_names = list(initial.class_names)[1:]
    if len(old_names) + 1 != old.out_channels[2]:
        logger.warning("the initial model names %d classes for %d class channels: only its "
                       "background channel carries over", len(old_names),
                       old.out_channels[2] - 1)
        old_names = []
    pairs = [(0, 0)] + [(i + 1, old_names.index(name) + 1)
                        for i, name in enumerate(class_names or []) if name in old_names]
    if old_names and len(pairs) == 1:
        logger.warning("no class of the initial model (%s) among the classes to train: their "
                       "outputs start fresh (give --class-names to keep a species' channel)",
                       ", ".join(old_names))
    import torch

    with torch.no_grad():
        new_state, old_state = net.state_dict(), old.state_dict()
        for key in (_CLASS_OUTPUT + "weight", _CLASS_OUTPUT + "bias"):
            for new_i, old_i in pairs:
                new_state[key][new_i] = old_state[key][old_i].to(new_state[key].device)
    return net


def _tensors(batch: tuple[np.ndarray, ...], dev: Any) -> list[Any]:
    import torch

    image, mask, centre, cls = batch
    return [torch.from_numpy(np.ascontiguousarray(image)).to(dev),
            torch.from_numpy(np.ascontiguousarray(mask, np.float32)).to(dev),
            torch.from_numpy(np.ascontiguousarray(centre, np.float32)).to(dev),
            torch.from_numpy(np.ascontiguousarray(cls, np.int64)).to(dev)]


def _validation_losses(net: Any, val: tuple[np.ndarray, ...] | None, batch_size: int,
                       dev: Any) -> dict[str, float]:
    if val is None:
        return {"loss": float(-len(net.state_dict()))}  # nothing held out: never stop
    totals: dict[str, float] = {}
    for start in range(0, len(val[0]), batch_size):
        x, m, c, k = _tensors(tuple(a[start:start + batch_size] for a in val), dev)
        for key, value in pick_losses(net(x), m, c, k).items():
            totals[key] = totals.get(key, 0.0) + float(value) * len(x)
    return {k: v / len(val[0]) for k, v in totals.items()}


def _fingerprint(data: Sequence[Any], settings: dict[str, Any]) -> str:
    h = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode())
    for d in data:
        h.update(np.ascontiguousarray(d.image[::7, ::7, ::7]).tobytes())
        h.update(np.ascontiguousarray(d.particles_zyx).tobytes())
    return h.hexdigest()[:16]


def _check_training_inputs(
    tomograms: Sequence[np.ndarray], particles: Sequence[tuple[np.ndarray, np.ndarray]],
    radius_A: Sequence[float], class_names: Sequence[str] | None, patch_size: int, depth: int,
) -> tuple[dict[int, float], int]:
    """The radius of each class (Å) and the number of classes; InputError before any work
    when the lists, radii, names or patch size do not fit together."""
    from emkit.pick._labels import radii_for_classes

    if len(tomograms) != len(particles) or not tomograms:
        raise InputError(f"{len(tomograms)} tomograms and {len(particles)} particle lists; "
                         "give one list per tomogram")
    all_classes = np.concatenate([np.asarray(c, np.int64) for _, c in particles])
    table = radii_for_classes(all_classes, radius_A)
    n_classes = max(len(radius_A), int(all_classes.max(initial=1)))
    check_class_names(class_names, n_classes)
    if patch_size % 2**depth:
        raise InputError(f"patch size {patch_size} must be a multiple of {2**depth}")
    return table, n_classes


def _best_validation(history: Any) -> dict[str, float]:
    """The validation losses at the step whose weights were kept."""
    rows = [r for r in history.rows if r["step"] == history.best_step]
    return {k: v for k, v in rows[-1].items() if k.startswith("val_")} if rows else {}


def train_picker(
    tomograms: Sequence[np.ndarray],
    particles: Sequence[tuple[np.ndarray, np.ndarray]],
    *,
    radius_A: Sequence[float],
    voxel_size_A: float,
    class_names: Sequence[str] | None = None,
    instances: Sequence[np.ndarray | None] | None = None,
    initial_model: Any = None,
    width: int = 8,
    depth: int = 2,
    patch_size: int = 32,
    batch_size: int = 4,
    n_steps: int = 800,
    learning_rate: float = 2e-3,
    validate_every: int = 50,
    patience: int = 6,
    label_radius_fraction: float = 0.7,
    validation_fraction: float = 0.2,
    seed: int = 0,
    device: str | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
    resume: bool = False,
    log_csv: str | os.PathLike[str] | None = None,
    progress: bool = False,
) -> PickTraining:
    """Train (or fine-tune) the picking network on tomograms with particle lists.

    Parameters
    ----------
    tomograms : sequence of ndarray, each (z, y, x)
        Raw tomograms at ``voxel_size_A`` (normalised here, per tomogram).
    particles : sequence of (zyx, classes)
        Per tomogram: centres ``(n, 3)`` in voxels and 1-based classes ``(n,)``.
    radius_A : sequence of float
        Particle radius per class in Å (targets are balls of ``label_radius_fraction``
        times it, unless ``instances`` are given).
    voxel_size_A : float
    class_names : sequence of str, optional
    instances : sequence of ndarray or None, optional
        Instance label maps per tomogram (then the masks come from them).
    initial_model : TrainedModel, optional
        Start from its weights (fine-tuning); its width and depth are kept.
    width, depth, patch_size, batch_size, n_steps, learning_rate : int, float
        Network and optimisation (patch_size a multiple of ``2**depth``).
    validate_every, patience : int
        Validation interval (steps) and early-stopping patience (validations).
    validation_fraction : float
        Part of each tomogram's x range held out for validation.
    seed : int
    device, checkpoint, resume, log_csv, progress
        As :func:`emkit.nn.fit`.

    Returns
    -------
    PickTraining
    """
    import torch

    from emkit.nn import (
        PercentileNormalisation,
        TrainedModel,
        choose_device,
        fit,
        seed_everything,
    )
    from emkit.pick._data import PatchSampler, make_targets

    table, n_classes = _check_training_inputs(tomograms, particles, radius_A, class_names,
                                              patch_size, depth)
    rng = seed_everything(seed)
    norm = PercentileNormalisation()
    radius_px = {k: r / voxel_size_A for k, r in table.items()}
    data = [make_targets(norm.apply(t), np.asarray(p[0], np.float64), np.asarray(p[1]),
                         radius_px, instances=None if instances is None else instances[i],
                         label_radius_fraction=label_radius_fraction,
                         validation_fraction=validation_fraction)
            for i, (t, p) in enumerate(zip(tomograms, particles))]
    sampler = PatchSampler(data, patch_size, rng)
    val = sampler.validation_set(max(8, 2 * batch_size))
    dev = choose_device(device)
    net = _network_from(initial_model, class_names, n_classes, width, depth).to(dev)
    optimizer = torch.optim.AdamW(net.parameters(), lr=learning_rate, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=n_steps,
                                                          eta_min=learning_rate * 0.05)

    def step(i: int) -> dict[str, Any]:
        if i > 1:
            schedule.step()
        x, m, c, k = _tensors(sampler.batch(batch_size), dev)
        return pick_losses(net(x), m, c, k)

    def validate() -> dict[str, float]:
        return _validation_losses(net, val, batch_size, dev)

    settings = {"n_classes": n_classes, "radius_A": list(radius_A), "patch": patch_size,
                "batch": batch_size, "steps": n_steps, "lr": learning_rate, "seed": seed,
                "width": net.width, "depth": net.depth, "voxel": voxel_size_A,
                "initial": initial_model is not None, "fraction": label_radius_fraction}
    history = fit(net, optimizer, step, validate, n_steps=n_steps,
                  validate_every=validate_every, patience=patience, rng=rng,
                  checkpoint=checkpoint, resume=resume, fingerprint=_fingerprint(data, settings),
                  log_csv=log_csv, progress=progress)
    names = list(class_names) if class_names else [f"class{k}" for k in range(1, n_classes + 1)]
    model = TrainedModel(
        network=net.cpu().eval(), normalisation=norm, voxel_size_A=float(voxel_size_A),
        class_names=["background", *names], task="pick",
        extra={"heads": list(PICK_HEADS),
               "radii_A": [float(table[k]) for k in range(1, n_classes + 1)],
               "label_radius_fraction": label_radius_fraction,
               "patch_size": patch_size, "trained_steps": history.steps_run,
               "fine_tuned": initial_model is not None})
    return PickTraining(model=model, history=history, validation=_best_validation(history))
