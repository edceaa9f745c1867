"""Learned distances between the orientations of two particle images (Banjac et al. 2021).

A Siamese network (:class:`emkit.nn.PolarSiameseNet`) reads two projections and returns
the geodesic angle between their orientations (radians, ``[0, pi]``). It is trained on
projections of *other* structures than the one it is used on, made to look like particle
images (in-plane turns, CTF, shifts, noise at many SNRs; :mod:`emkit.spa._siamese_data`).
The shipped model lives in ``emkit/data/spa_model`` (``python -m emkit.spa._make_model``).

>>> model = load_distance_model()                              # doctest: +SKIP
>>> distance = learned_distance_fn(model, particles)           # doctest: +SKIP
>>> distance(np.array([[0, 1], [0, 2]]))                       # doctest: +SKIP
array([0.41, 2.03])
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from emkit.errors import InputError, NonFiniteError, ShapeError, with_path
from emkit.nn import TrainedModel

logger = logging.getLogger(__name__)

__all__ = ["learned_distance_fn", "load_distance_model", "train_distance_model"]

TASK = "spa-distance"
# Smallest particle box the network accepts: it works on 32 x 32 images and upsampling an
# image more than 2x invents nothing.
MIN_BOX_PX = 16
DEFAULT_PREPROCESSING = {"image_size": 32, "centre": True, "centre_sigma_px": 1.5,
                         "lower_percentile": 1.0, "upper_percentile": 99.0}


def shipped_model_folder() -> Path:
    """The folder of the model shipped with emkit (``emkit/data/spa_model``)."""
    return Path(str(resources.files("emkit").joinpath("data/spa_model")))


def load_distance_model(path: str | os.PathLike[str] | None = None) -> TrainedModel:
    """Load a distance model folder (``model.safetensors`` + ``config.json``).

    Parameters
    ----------
    path : path-like, optional
        A folder written by :func:`train_distance_model` + :func:`emkit.nn.save_model`
        (``emkit spa train``); default: the model shipped in the package.

    Returns
    -------
    TrainedModel
        ``network`` a :class:`emkit.nn.PolarSiameseNet` in eval mode on the CPU;
        ``extra["preprocessing"]`` how images are brought to its input and
        ``extra["box_px"]`` the particle box it was trained on (other boxes are resampled).

    Raises
    ------
    MissingFileError, FileFormatError
        The folder or one of its files is missing or corrupt.
    InputError
        The folder holds another kind of model (e.g. a segment or pick model).
    """
    from emkit.nn import PolarSiameseNet, load_model

    folder = shipped_model_folder() if path is None else Path(path)
    model = load_model(folder, task=TASK, device="cpu")
    if path is None:
        logger.warning("the shipped distance model is not accurate yet: on 5j0n, a structure "
                       "it was not trained on, its orientations came out ~100 deg off (mean; "
                       "docs/spa.md); for thousands of images of a particle without symmetry "
                       "the spectral start (--distances spectral) was measured at 0.3-6 deg "
                       "after refinement")
    if not isinstance(model.network, PolarSiameseNet):
        raise InputError(with_path(folder, "is not a distance model (its network is not a "
                                   "PolarSiameseNet); train one with emkit spa train"))
    return model


def _check_images(images: Any) -> NDArray[np.float32]:
    stack = np.asarray(images)
    if stack.ndim != 3 or stack.shape[1] != stack.shape[2]:
        raise ShapeError(f"particle images must be a stack of square images (n, L, L), got shape "
                         f"{stack.shape}; crop or pad them to a square box")
    if stack.shape[1] < MIN_BOX_PX:
        raise ShapeError(f"particle box {stack.shape[1]} px is too small for the distance "
                         f"network (at least {MIN_BOX_PX} px); extract the particles in a "
                         "larger box")
    stack = stack.astype(np.float32, copy=False)
    if not np.isfinite(stack).all():
        raise NonFiniteError("particle images contain NaN or infinite pixels; remove or fix "
                             "those particles")
    return stack


def embed_images(model: TrainedModel, images: Any, *, batch_size: int = 1024) -> Any:
    """Embeddings ``(n, channels, n_angles)`` (a torch tensor) of particle images ``(n, L, L)``.

    Any square box is accepted: images are Fourier-resampled to the network's input size
    (``model.extra["preprocessing"]["image_size"]``).
    """
    import torch

    from emkit.spa._siamese_data import prepare_images

    stack = _check_images(images)
    settings = dict(model.extra.get("preprocessing", DEFAULT_PREPROCESSING))
    net = model.network.eval()
    parts = []
    with torch.no_grad():
        for start in range(0, stack.shape[0], batch_size):
            chunk = torch.from_numpy(np.ascontiguousarray(stack[start:start + batch_size]))
            parts.append(net.embed(prepare_images(chunk, settings)))  # type: ignore[operator]
    return torch.cat(parts)


def learned_distance_fn(
    model: TrainedModel, images: Any, *, batch_size: int = 1024
) -> Callable[[NDArray[np.integer]], NDArray[np.float64]]:
    """A function of index pairs that returns the learned distances between their orientations.

    All images are embedded once (the expensive part, with the per-image parts of the
    comparison); each call then compares the requested pairs in batches of ``batch_size``.

    Parameters
    ----------
    model : TrainedModel
        From :func:`load_distance_model`.
    images : ndarray, shape (n, L, L), float32
        Particle images ``(n, y, x)``, any square box of at least 16 px (resampled to the
        network's input).
    batch_size : int
        Pairs compared at once (small batches stay in cache: ~15,000 pairs/s on one core).

    Returns
    -------
    callable
        ``distance(pairs)`` with ``pairs`` an int array ``(m, 2)`` of image indices; returns
        ``(m,)`` float64 angles in radians, in ``[0, pi]``, symmetric in the two indices;
        an image paired with itself is at distance 0.

    Raises
    ------
    ShapeError, NonFiniteError
        The images are not a stack of square images of at least 16 px, or hold NaN.
    """
    import torch

    net = model.network
    with torch.no_grad():
        spectra, achiral = net.spectra(embed_images(model, images))  # type: ignore[operator]
    n = spectra.shape[0]

    def distance(pairs: NDArray[np.integer]) -> NDArray[np.float64]:
        index = np.asarray(pairs)
        if index.ndim != 2 or index.shape[1] != 2 or not np.issubdtype(index.dtype, np.integer):
            raise ShapeError(f"pairs must be an integer array (m, 2), got {index.dtype} "
                             f"{index.shape}")
        if index.size and (index.min() < 0 or index.max() >= n):
            raise InputError(f"pair indices must be in [0, {n}), got {index.min()}..{index.max()}")
        out = np.empty(index.shape[0], dtype=np.float64)
        with torch.no_grad():
            for start in range(0, index.shape[0], batch_size):
                rows = torch.from_numpy(index[start:start + batch_size].astype(np.int64))
                a, b = rows[:, 0], rows[:, 1]
                d = net.distance_from_spectra(  # type: ignore[operator]
                    spectra[a], achiral[a], spectra[b], achiral[b])
                out[start:start + rows.shape[0]] = d.double().numpy()
        out[index[:, 0] == index[:, 1]] = 0.0  # the same image: the same orientation
        return out

    return distance


def _fingerprint(volumes: Sequence[NDArray[np.floating]], settings: dict[str, Any]) -> str:
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    for volume in volumes:
        digest.update(np.ascontiguousarray(volume, dtype=np.float32).tobytes())
    return digest.hexdigest()[:16]


def _fit_box(volume: NDArray[np.floating], box_px: int) -> NDArray[np.float32]:
    """Crop or zero-pad a cubic volume to ``box_px``, keeping voxel ``n // 2`` the centre."""
    vol = np.asarray(volume, dtype=np.float32)
    if vol.ndim != 3 or len(set(vol.shape)) != 1:
        raise ShapeError(f"training volumes must be cubic (n, n, n), got {vol.shape}; pad them "
                         "to a cube")
    if not np.isfinite(vol).all():
        raise NonFiniteError("a training volume contains NaN or infinite values")
    n = vol.shape[0]
    out = np.zeros((box_px,) * 3, dtype=np.float32)
    src = max(0, n // 2 - box_px // 2)
    dst = max(0, box_px // 2 - n // 2)
    size = min(n, box_px)
    out[dst:dst + size, dst:dst + size, dst:dst + size] = vol[src:src + size, src:src + size,
                                                              src:src + size]
    return out


def _pair_loss(predicted: Any, true: Any) -> Any:
    """Huber loss (0.05 rad) weighted towards pairs that are, or are called, near: those a
    fit relies on most, and a far pair called near misleads it most."""
    import torch
    import torch.nn.functional as F

    weight = 1.0 + 2.0 * (-torch.minimum(true, predicted.detach()) / 0.6).exp()
    per_pair = F.huber_loss(predicted, true, reduction="none", delta=0.05)
    return (weight * per_pair).sum() / weight.sum()


def _validation_set(banks: list[Any], augment: Any, settings: dict[str, Any], n_pairs: int,
                    seed: int) -> tuple[Any, Any, Any]:
    import torch

    from emkit.spa._siamese_data import augment_pairs, prepare_images

    gen = torch.Generator().manual_seed(int(seed))
    a, b, d = augment_pairs(banks, n_pairs, augment, gen)
    return prepare_images(a, settings), prepare_images(b, settings), d


def _make_banks(volumes: Sequence[NDArray[np.floating]], box_px: int, n_groups: int,
                group: int, seed: int) -> list[Any]:
    from emkit.spa._siamese_data import make_bank

    return [make_bank(_fit_box(v, box_px), n_groups, group, seed + 7919 * k)
            for k, v in enumerate(volumes)]


def _pair_data(
    train: list[NDArray[np.floating]], held_out: list[NDArray[np.floating]], *, box_px: int,
    voxel_size_A: float, n_groups: int, group: int, seed: int, settings: dict[str, Any],
    progress: bool,
) -> tuple[list[Any], Any, tuple[Any, Any, Any]]:
    """The training banks, the augmentation (shifts, CTF bank) and the fixed validation
    pairs of :func:`train_distance_model` (from the held-out banks, else the training ones)."""
    from emkit.spa._siamese_data import AugmentSettings, ctf_table

    augment = AugmentSettings(max_shift_px=4.0 * box_px / 64,
                              ctf_bank=ctf_table(box_px, voxel_size_A, 256, seed))
    if progress:  # the banks take minutes before the first training step
        print(f"   projecting {len(train) + len(held_out)} maps of {box_px}^3 px for the "
              "training pairs", flush=True)
    banks = _make_banks(train, box_px, n_groups, group, seed)
    val_banks = _make_banks(held_out, box_px, max(n_groups // 3, 8), group, seed + 1) \
        if held_out else banks
    return banks, augment, _validation_set(val_banks, augment, settings, 1024, seed + 2)


def train_distance_model(
    volumes: Sequence[NDArray[np.floating]],
    *,
    voxel_size_A: float,
    box_px: int,
    n_steps: int,
    seed: int,
    validation_volumes: Sequence[NDArray[np.floating]] | None = None,
    n_groups: int = 300,
    group: int = 4,
    pairs_per_step: int = 192,
    learning_rate: float = 3e-3,
    network: dict[str, Any] | None = None,
    validate_every: int = 100,
    patience: int = 10,
    checkpoint: str | os.PathLike[str] | None = None,
    resume: bool = False,
    log_csv: str | os.PathLike[str] | None = None,
    progress: bool = False,
) -> TrainedModel:
    """Train the Siamese distance network on simulated particle images of ``volumes``.

    Each volume is projected once at ``n_groups * group`` orientations (groups of neighbours
    up to 30 degrees apart); each step draws ``pairs_per_step`` pairs, turns them in plane,
    applies CTF (70 %), shifts (up to 4 px on a 64 px box, scaled with the box) and noise
    (SNR 1/32..2, 25 % noise-free) and fits the network's output to the geodesic angle
    between the two orientations. The weights that validate best on ``validation_volumes``
    (other structures, so the measure is transfer) are kept.

    Parameters
    ----------
    volumes : sequence of ndarray, each (n, n, n)
        Training maps ``(z, y, x)``, centred on voxel ``n // 2``; cropped or padded to
        ``box_px``. Use structures other than the ones the model will be used on.
    voxel_size_A : float
        Their voxel size in Å (sets the CTF's scale; stored with the model).
    box_px : int
        Particle box in pixels (the images the model will mostly see).
    n_steps, seed : int
        Training steps; seed of everything random (same seed, same weights).
    validation_volumes : sequence of ndarray, optional
        Held-out maps for early stopping; default: the last training volume is held out
        when there are three or more, else validation pairs come from the training banks.
    n_groups, group, pairs_per_step, learning_rate, validate_every, patience
        Bank size, batch, Adam learning rate (cosine decay), early stopping.
    network : dict, optional
        :class:`emkit.nn.PolarSiameseNet` arguments (default: its defaults).
    checkpoint, resume, log_csv, progress
        As :func:`emkit.nn.fit`.

    Returns
    -------
    TrainedModel
        ``task = "spa-distance"``; ``extra`` holds the preprocessing, ``box_px``, the
        training settings and the best validation metrics (``val_mae_deg``).
    """
    import torch

    from emkit.nn import PercentileNormalisation, PolarSiameseNet, fit, seed_everything
    from emkit.spa._siamese_data import prepare_images

    if not volumes or box_px < MIN_BOX_PX or voxel_size_A <= 0:
        raise InputError(f"need at least one volume, box_px >= {MIN_BOX_PX} and a positive "
                         f"voxel size; got {len(volumes)}, {box_px}, {voxel_size_A}")
    train, held_out = list(volumes), list(validation_volumes or [])
    if not held_out and len(train) >= 3:
        train, held_out = train[:-1], train[-1:]
    rng = seed_everything(seed)
    settings = dict(DEFAULT_PREPROCESSING)
    net = PolarSiameseNet(**(network or {}), image_size=settings["image_size"])
    banks, augment, (val_a, val_b, val_d) = _pair_data(
        train, held_out, box_px=box_px, voxel_size_A=voxel_size_A, n_groups=n_groups,
        group=group, seed=seed, settings=settings, progress=progress)
    optimizer = torch.optim.Adam(net.parameters(), lr=learning_rate)
    gen = torch.Generator().manual_seed(int(rng.integers(2**31)))

    def step(i: int) -> dict[str, Any]:
        from emkit.spa._siamese_data import augment_pairs

        for g in optimizer.param_groups:
            g["lr"] = learning_rate * 0.5 * (1 + np.cos(np.pi * min(i / n_steps, 1.0)))
        a, b, d = augment_pairs(banks, pairs_per_step, augment, gen)
        predicted = net(prepare_images(a, settings), prepare_images(b, settings))
        return {"loss": _pair_loss(predicted, d),
                "mae_deg": (predicted - d).abs().mean().detach() * 180 / np.pi}

    def validate() -> dict[str, float]:
        predicted = net(val_a, val_b)
        error = (predicted - val_d).abs()
        near = val_d < np.deg2rad(30)
        return {"loss": float(_pair_loss(predicted, val_d)),
                "mae_deg": float(error.mean()) * 180 / np.pi,
                "near_mae_deg": float(error[near].mean()) * 180 / np.pi,
                "correlation": float(np.corrcoef(predicted.numpy(), val_d.numpy())[0, 1])}

    recipe = {"box_px": box_px, "voxel_size_A": voxel_size_A, "n_steps": n_steps, "seed": seed,
              "n_groups": n_groups, "group": group, "pairs_per_step": pairs_per_step,
              "learning_rate": learning_rate, "network": net.config()}
    history = fit(net, optimizer, step, validate, n_steps=n_steps, validate_every=validate_every,
                  patience=patience, rng=rng, checkpoint=checkpoint, resume=resume,
                  fingerprint=_fingerprint(list(volumes) + held_out, recipe), log_csv=log_csv,
                  progress=progress)
    best = [r for r in history.rows if r["step"] == history.best_step]
    return TrainedModel(
        network=net.cpu().eval(),
        normalisation=PercentileNormalisation(settings["lower_percentile"],
                                              settings["upper_percentile"]),
        voxel_size_A=float(voxel_size_A), class_names=[], task=TASK,
        extra={"preprocessing": settings, "box_px": int(box_px), "training": recipe,
               "trained_steps": history.steps_run, "best_step": history.best_step,
               "seconds_training": history.seconds, "n_training_volumes": len(train),
               "n_validation_volumes": len(held_out),
               "validation": {k: v for k, v in best[-1].items() if k.startswith("val_")}
               if best else {}})
