"""A seeded training loop: early stopping on validation, checkpoints, resume, loss log.

The loop knows nothing about the task: the caller gives a ``step`` function (one
optimisation step's loss) and a ``validate`` function (a validation loss). Checkpoints are
``safetensors`` (model, best model, optimizer tensors, torch RNG) plus JSON (step, history,
numpy RNG state, fingerprint): nothing is pickled, so resuming from a file a user hands you
executes no code.
"""

from __future__ import annotations

import csv
import io
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from emkit.errors import FileFormatError, InputError, with_path

__all__ = ["TrainingHistory", "fit", "seed_everything"]


def seed_everything(seed: int) -> np.random.Generator:
    """Seed torch (CPU and CUDA) and return a numpy Generator for the data pipeline."""
    torch.manual_seed(int(seed))
    return np.random.default_rng(int(seed))


@dataclass
class TrainingHistory:
    """What happened during :func:`fit`.

    Attributes
    ----------
    rows : list of dict
        One row per validation: ``step``, the mean of each training loss term since the last
        row (over the steps that returned it), the validation metrics, ``seconds`` since the start.
    best_step : int
        Step of the lowest validation loss (the weights the model ends with).
    best_validation_loss : float
    stopped_early : bool
    steps_run : int
    seconds : float
    resumed_from_step : int or None
    """

    rows: list[dict[str, float]] = field(default_factory=list)
    best_step: int = 0
    best_validation_loss: float = float("inf")
    stopped_early: bool = False
    steps_run: int = 0
    seconds: float = 0.0
    resumed_from_step: int | None = None

    def to_csv(self) -> str:
        """The rows as CSV text (header from the union of the keys)."""
        keys: list[str] = []
        for row in self.rows:
            keys.extend(k for k in row if k not in keys)
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=keys, lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows)
        return buffer.getvalue()


def _optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], Any]:
    state = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    plain: dict[str, dict[str, Any]] = {}
    for index, entry in state["state"].items():
        for key, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optimizer.{index}.{key}"] = value.detach().cpu().contiguous()
            else:
                plain.setdefault(str(index), {})[key] = value
    return tensors, {"param_groups": state["param_groups"], "plain": plain}


def _restore_optimizer(
    optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict[str, Any]
) -> None:
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        if name.startswith("optimizer."):
            _, index, key = name.split(".", 2)
            state.setdefault(int(index), {})[key] = value
    for index, entry in meta["plain"].items():
        state.setdefault(int(index), {}).update(entry)
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def _save_checkpoint(
    path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
    best_state: dict[str, torch.Tensor], meta: dict[str, Any],
) -> None:
    from safetensors.torch import save_file

    from emkit.io import atomic_output

    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    tensors.update({f"best.{k}": v.detach().cpu().contiguous() for k, v in best_state.items()})
    opt_tensors, opt_meta = _optimizer_tensors(optimizer)
    tensors.update(opt_tensors)
    tensors["rng.torch"] = torch.get_rng_state()
    meta = {**meta, "optimizer": opt_meta}
    # immediate: a checkpoint must survive the interrupted run it exists for
    with atomic_output(path, immediate=True) as tmp:
        save_file(tensors, str(tmp), metadata={"emkit": json.dumps(meta, default=float)})


def _load_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = json.loads((f.metadata() or {})["emkit"])
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, KeyError, json.JSONDecodeError) as error:
        raise FileFormatError(with_path(path, f"is not a readable checkpoint ({error}); "
                                        "delete it to start over")) from None
    return tensors, meta


def _write_log(path: Path | None, history: TrainingHistory) -> None:
    if path is None:
        return
    from emkit.io import atomic_output

    # immediate: the log is rewritten at every validation, to be watched while it grows
    with atomic_output(path, immediate=True) as tmp:
        tmp.write_text(history.to_csv(), encoding="utf-8")


def _resume(
    checkpoint: Path, fingerprint: str, model: torch.nn.Module,
    optimizer: torch.optim.Optimizer, rng: np.random.Generator | None,
) -> tuple[int, dict[str, torch.Tensor], TrainingHistory, int]:
    tensors, meta = _load_checkpoint(checkpoint)
    if meta.get("fingerprint") != fingerprint:
        raise InputError(with_path(checkpoint, "was written by a run with other data or "
                                   "settings; delete it or rerun without --resume"))
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    best = {k[5:]: v for k, v in tensors.items() if k.startswith("best.")}
    _restore_optimizer(optimizer, tensors, meta["optimizer"])
    torch.set_rng_state(tensors["rng.torch"])
    if rng is not None and meta.get("numpy_rng") is not None:
        rng.bit_generator.state = meta["numpy_rng"]
    history = TrainingHistory(
        rows=meta["rows"], best_step=meta["best_step"],
        best_validation_loss=meta["best_validation_loss"],
        resumed_from_step=meta["step"],
    )
    return int(meta["step"]), best, history, int(meta["since_best"])


def fit(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    step: Callable[[int], dict[str, torch.Tensor]],
    validate: Callable[[], dict[str, float]],
    *,
    n_steps: int,
    validate_every: int = 50,
    patience: int = 6,
    rng: np.random.Generator | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
    resume: bool = False,
    fingerprint: str = "",
    log_csv: str | os.PathLike[str] | None = None,
    progress: bool = False,
    callback: Callable[[dict[str, float]], None] | None = None,
) -> TrainingHistory:
    """Train ``model`` for up to ``n_steps`` steps; keep the weights that validate best.

    Parameters
    ----------
    model, optimizer : torch objects
        Trained in place; at the end ``model`` holds the best-validating weights, in eval mode.
    step : callable ``step(i) -> dict of loss tensors``
        One optimisation step's losses; ``"loss"`` is the one differentiated, the other
        entries are logged (detached).
    validate : callable ``validate() -> dict of floats``
        Called in eval mode (no gradients); ``"loss"`` decides what is best.
    n_steps, validate_every : int
        Budget in steps, and steps between validations (and checkpoints).
    patience : int
        Stop after this many validations without improvement.
    rng : numpy Generator, optional
        The data pipeline's generator; its state goes into checkpoints so a resumed run
        continues as the uninterrupted one would.
    checkpoint : path, optional
        ``.safetensors`` file written after every validation (deleted once the run's
        outputs are committed).
    resume : bool
        Continue from ``checkpoint`` if it exists; its ``fingerprint`` must match.
    fingerprint : str
        What shaped the run (data, settings); recorded in the checkpoint.
    log_csv : path, optional
        Loss log, rewritten (atomically) after every validation.
    progress : bool
        Show a tqdm bar.
    callback : callable, optional
        Called with each history row.

    Returns
    -------
    TrainingHistory
    """
    if n_steps < 1 or validate_every < 1:
        raise InputError(f"need n_steps >= 1 and validate_every >= 1, got {n_steps}, "
                         f"{validate_every}")
    ckpt = None if checkpoint is None else Path(checkpoint)
    start_step, since_best = 0, 0
    history = TrainingHistory()
    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    if resume and ckpt is not None and ckpt.exists():
        start_step, best_state, history, since_best = _resume(
            ckpt, fingerprint, model, optimizer, rng
        )
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=n_steps, initial=start_step, desc="train", unit="step")
    t0 = time.perf_counter() - (history.rows[-1]["seconds"] if history.rows else 0.0)
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    model.train()
    current = start_step
    for current in range(start_step + 1, n_steps + 1):
        losses = step(current)
        optimizer.zero_grad(set_to_none=True)
        losses["loss"].backward()
        optimizer.step()
        for key, value in losses.items():
            sums[key] = sums.get(key, 0.0) + float(value.detach())
            counts[key] = counts.get(key, 0) + 1
        if bar is not None:
            bar.update(1)
        if current % validate_every and current != n_steps:
            continue
        model.eval()
        with torch.no_grad():
            metrics = validate()
        model.train()
        row = {"step": float(current),
               **{f"train_{k}": v / counts[k] for k, v in sums.items()},
               **{f"val_{k}": float(v) for k, v in metrics.items()},
               "seconds": round(time.perf_counter() - t0, 2)}
        history.rows.append(row)
        sums, counts = {}, {}
        if metrics["loss"] < history.best_validation_loss:
            history.best_validation_loss, history.best_step = float(metrics["loss"]), current
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            since_best = 0
        else:
            since_best += 1
        if bar is not None:
            bar.set_postfix(val=f"{metrics['loss']:.4f}", best=history.best_step)
        if callback is not None:
            callback(row)
        _write_log(None if log_csv is None else Path(log_csv), history)
        if since_best >= patience:
            history.stopped_early = True
            break
        if ckpt is not None:
            meta = {"step": current, "rows": history.rows, "best_step": history.best_step,
                    "best_validation_loss": history.best_validation_loss,
                    "since_best": since_best, "fingerprint": fingerprint,
                    "numpy_rng": None if rng is None else rng.bit_generator.state}
            _save_checkpoint(ckpt, model, optimizer, best_state, meta)
    if bar is not None:
        bar.close()
    model.load_state_dict(best_state)
    model.eval()
    history.steps_run = current
    history.seconds = round(time.perf_counter() - t0, 2)
    if ckpt is not None:
        from emkit.io import on_commit

        # once the run's outputs are in place (at once outside a CLI run)
        on_commit(lambda: ckpt.unlink(missing_ok=True))
    return history
