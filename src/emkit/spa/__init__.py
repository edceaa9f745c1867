"""Single-particle orientation recovery from learned distances (Banjac et al. 2021).

- :func:`load_distance_model`, :func:`learned_distance_fn`, :func:`train_distance_model`:
  the Siamese network whose output is the angle between two particle images' orientations.
"""

from emkit.spa._siamese import learned_distance_fn, load_distance_model, train_distance_model

__all__ = ["learned_distance_fn", "load_distance_model", "train_distance_model"]
