"""A trained model on disk: ``model.safetensors`` + ``config.json``; never a pickle."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from emkit.errors import FileFormatError, InputError, MissingFileError, with_path
from emkit.nn._normalise import PercentileNormalisation
from emkit.nn._siamese import PolarSiameseNet
from emkit.nn._unet import UNet

__all__ = ["TrainedModel", "load_model", "save_model", "choose_device"]

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"

# The network classes a model folder may hold, by the ``name`` in its architecture entry
# (folders written before there was a second class have "UNet" there).
ARCHITECTURES: dict[str, type[UNet] | type[PolarSiameseNet]] = {
    "UNet": UNet,
    "PolarSiameseNet": PolarSiameseNet,
}


def choose_device(device: str | torch.device | None = None) -> torch.device:
    """The torch device to use: ``device`` if given, else CUDA when torch sees a GPU."""
    if isinstance(device, torch.device):
        return device
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(device)
    except RuntimeError as error:
        raise InputError(f"unknown torch device {device!r} ({error})") from None


@dataclass
class TrainedModel:
    """A network with what it needs to be applied again.

    Attributes
    ----------
    network : UNet or PolarSiameseNet
        The network (in eval mode after loading); one of :data:`ARCHITECTURES`.
    normalisation : PercentileNormalisation
        Applied to every input, in training and inference alike.
    voxel_size_A : float or None
        Voxel size of the training data in Å.
    class_names : list of str
        Name of each label value (index = label).
    task : str
        What the model does (``"segment"``, ``"pick"``...), checked on loading.
    extra : dict
        Anything else the workflow stores (training slices, heads, metrics).
    """

    network: UNet | PolarSiameseNet
    normalisation: PercentileNormalisation
    voxel_size_A: float | None
    class_names: list[str]
    task: str
    extra: dict[str, Any] = field(default_factory=dict)

    def config(self) -> dict[str, Any]:
        """The ``config.json`` content."""
        from emkit import __version__

        return {
            "format": "emkit-model",
            "format_version": 1,
            "emkit_version": __version__,
            "task": self.task,
            "architecture": self.network.config(),
            "normalisation": self.normalisation.to_dict(),
            "voxel_size_A": self.voxel_size_A,
            "class_names": list(self.class_names),
            **({"extra": self.extra} if self.extra else {}),
        }


def save_model(folder: str | os.PathLike[str], model: TrainedModel) -> Path:
    """Write ``folder/model.safetensors`` and ``folder/config.json`` (atomically, together).

    The weights are written first and the config last, each under a temporary name; a
    folder without config.json is not a model, so an interrupted save is never loaded.
    """
    from safetensors.torch import save_file

    from emkit.io import atomic_output, make_output_folder

    out = make_output_folder(folder)  # new, empty or emkit's; marked as emkit's
    state = {k: v.detach().cpu().contiguous() for k, v in model.network.state_dict().items()}
    with atomic_output(out / WEIGHTS_NAME) as tmp:
        save_file(state, str(tmp), metadata={"format": "emkit-model"})
    with atomic_output(out / CONFIG_NAME) as tmp:
        tmp.write_text(json.dumps(model.config(), indent=2) + "\n")
    return out


def _read_config(folder: Path) -> dict[str, Any]:
    path = folder / CONFIG_NAME
    if not path.is_file():
        raise MissingFileError(
            with_path(folder, f"no {CONFIG_NAME}: not an emkit model folder (train one with "
                      "emkit segment train)")
        )
    try:
        config = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise FileFormatError(with_path(path, f"is not valid JSON ({error})")) from None
    if not isinstance(config, dict) or config.get("format") != "emkit-model":
        raise FileFormatError(with_path(path, "is not an emkit model config"))
    return config


def load_model(
    folder: str | os.PathLike[str], *, task: str | None = None, device: str | None = None
) -> TrainedModel:
    """Read a model folder written by :func:`save_model`; loading never executes code.

    Raises
    ------
    MissingFileError
        The folder, its config.json or its model.safetensors is missing.
    FileFormatError
        Either file is corrupt, or the weights do not fit the architecture.
    InputError
        The model was trained for another ``task``.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(folder)
    if not path.is_dir():
        raise MissingFileError(with_path(path, "model folder does not exist"))
    config = _read_config(path)
    if task is not None and config.get("task") != task:
        raise InputError(
            with_path(path, f"is a {config.get('task')!r} model, not a {task!r} model")
        )
    weights = path / WEIGHTS_NAME
    if not weights.is_file():
        raise MissingFileError(with_path(path, f"no {WEIGHTS_NAME}: the model folder is "
                                         "incomplete; train the model again"))
    try:
        architecture = config["architecture"]
        network_class = ARCHITECTURES[architecture.get("name", "UNet")]
        network = network_class.from_config(architecture)
        normalisation = PercentileNormalisation.from_dict(config["normalisation"])
        state = load_file(str(weights))
        network.load_state_dict(state, strict=True)
    except (SafetensorError, OSError) as error:
        raise FileFormatError(with_path(weights, f"is corrupt ({error})")) from None
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as error:
        raise FileFormatError(
            with_path(path, f"weights and config.json do not agree ({type(error).__name__}: "
                      f"{str(error).splitlines()[0] if str(error) else ''})")
        ) from None
    network.to(choose_device(device)).eval()
    voxel = config.get("voxel_size_A")
    names = config.get("class_names") or []
    return TrainedModel(
        network=network,
        normalisation=normalisation,
        voxel_size_A=None if voxel is None else float(voxel),
        class_names=[str(n) for n in names],
        task=str(config.get("task", "")),
        extra=dict(config.get("extra", {})),
    )

