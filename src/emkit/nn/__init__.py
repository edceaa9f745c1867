"""emkit.nn: the torch parts the learned workflows share (segment now; pick and spa next).

- :class:`UNet`: one U-Net for 2D and 3D (``spatial_dims``), depth, width and the number of
  decoder heads configurable, one shared encoder.
- :func:`fit`: a seeded training loop with early stopping on a validation set, safetensors
  checkpoints and resume, a CSV loss log and a progress bar.
- :class:`PolarSiameseNet`: a Siamese network whose output is the angle between two
  projections' orientations (single-particle work), rotation-equivariant polar encoder.
- :func:`predict_tiled`: overlapping tiles, raised-cosine blending, bounded memory.
- :class:`PercentileNormalisation`: the same normalisation in training and inference,
  stored with the model.
- :func:`save_model` / :func:`load_model`: a model folder = ``model.safetensors`` +
  ``config.json`` (architecture, normalisation, voxel size, class names, emkit version);
  never a pickle.

Everything runs on the GPU when torch sees one (:func:`choose_device`).
"""

from emkit.nn._model_folder import TrainedModel, choose_device, load_model, save_model
from emkit.nn._normalise import PercentileNormalisation
from emkit.nn._siamese import PolarSiameseNet
from emkit.nn._tiled import blend_window, predict_tiled
from emkit.nn._train import TrainingHistory, fit, seed_everything
from emkit.nn._unet import UNet

__all__ = [
    "PercentileNormalisation",
    "PolarSiameseNet",
    "TrainedModel",
    "TrainingHistory",
    "UNet",
    "blend_window",
    "choose_device",
    "fit",
    "load_model",
    "predict_tiled",
    "save_model",
    "seed_everything",
]
