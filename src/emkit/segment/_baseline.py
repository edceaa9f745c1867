"""The ilastik-style baseline: a random forest on multiscale pixel features, per z slice."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from emkit.errors import InputError
from emkit.nn import PercentileNormalisation
from emkit.segment._data import check_training_inputs
from emkit.segment._objects import keep_largest_object

__all__ = ["fit_forest", "predict_forest", "segment_random_forest"]


def _features(image: np.ndarray, sigma_max: float) -> np.ndarray:
    from skimage.feature import multiscale_basic_features

    return multiscale_basic_features(
        image, intensity=True, edges=True, texture=True, sigma_min=0.7, sigma_max=sigma_max
    ).astype(np.float32)


def segment_random_forest(
    tomogram: np.ndarray,
    labels: np.ndarray,
    *,
    slices: Sequence[int] | None = None,
    n_estimators: int = 100,
    max_samples_per_class: int = 20_000,
    sigma_max: float = 16.0,
    seed: int = 0,
    n_jobs: int | None = None,
    single_object: Sequence[int] = (),
) -> np.ndarray:
    """Label a tomogram with a random forest trained on the labelled z slices.

    Pixel features are :func:`skimage.feature.multiscale_basic_features` of each
    normalised xy slice (intensity, edges and texture at Gaussian scales from 0.7 to
    ``sigma_max`` pixels), as in ilastik's pixel classification; the forest is
    scikit-learn's (``pip install scikit-learn``; it is in emkit's ``test`` extra).

    Parameters
    ----------
    tomogram : ndarray, shape (nz, ny, nx)
    labels : integer ndarray, shape (nz, ny, nx)
        Only ``slices`` are read (default: every slice with a non-zero label).
    slices : sequence of int, optional
    n_estimators : int
        Trees in the forest.
    max_samples_per_class : int
        Training pixels drawn per class (at most), so rare classes count.
    sigma_max : float
        Largest feature scale in pixels.
    seed : int
    n_jobs : int, optional
        Parallel jobs of the forest (default: all cores).
    single_object : sequence of int
        Label values that are one object per tomogram: as in
        :func:`emkit.segment.predict_segmentation`, only the largest piece of each is kept
        and the others take each voxel's most probable other class.

    Returns
    -------
    ndarray, shape (nz, ny, nx), uint8
    """
    forest = fit_forest(tomogram, labels, slices=slices, n_estimators=n_estimators,
                        max_samples_per_class=max_samples_per_class, sigma_max=sigma_max,
                        seed=seed, n_jobs=n_jobs)
    return predict_forest(forest, tomogram, sigma_max=sigma_max, single_object=single_object)


def fit_forest(
    tomogram: np.ndarray, labels: np.ndarray, *, slices: Sequence[int] | None,
    n_estimators: int = 100, max_samples_per_class: int = 20_000, sigma_max: float = 16.0,
    seed: int = 0, n_jobs: int | None = None,
) -> Any:
    """Train the forest of :func:`segment_random_forest` (a fitted scikit-learn classifier)."""
    try:
        from sklearn.ensemble import RandomForestClassifier
    except ImportError:
        raise InputError("the random-forest baseline needs scikit-learn: pip install "
                         "scikit-learn") from None
    chosen, _ = check_training_inputs(np.asarray(tomogram), np.asarray(labels), slices)
    normalisation = PercentileNormalisation(1.0, 99.0)
    levels = normalisation.levels(tomogram)
    rng = np.random.default_rng(seed)
    x_parts, y_parts = [], []
    for z in chosen:
        features = _features(normalisation.apply(tomogram[z], levels), sigma_max)
        x_parts.append(features.reshape(-1, features.shape[-1]))
        y_parts.append(np.asarray(labels[z]).reshape(-1))
    x_all, y_all = np.concatenate(x_parts), np.concatenate(y_parts)
    keep = []
    for value in np.unique(y_all):
        members = np.flatnonzero(y_all == value)
        keep.append(rng.choice(members, size=min(members.size, max_samples_per_class),
                               replace=False))
    index = np.concatenate(keep)
    forest = RandomForestClassifier(n_estimators=n_estimators, max_depth=None,
                                    n_jobs=n_jobs if n_jobs is not None else -1,
                                    random_state=seed)
    forest.fit(x_all[index], y_all[index])
    return forest


def predict_forest(
    forest: Any, tomogram: np.ndarray, *, sigma_max: float = 16.0,
    single_object: Sequence[int] = (),
) -> np.ndarray:
    """Labels ``(nz, ny, nx)`` uint8 of every z slice from a forest of :func:`fit_forest`
    (``single_object``: see :func:`segment_random_forest`)."""
    classes = np.asarray(forest.classes_)
    unknown = sorted(set(single_object) - set(classes.tolist()))
    if unknown:
        raise InputError(f"single-object labels {unknown} are not among the forest's "
                         f"classes {classes.tolist()}")
    if 0 in set(single_object):
        raise InputError("the single-object labels cannot include the background (0): name "
                         "the classes that are one object per tomogram")
    allowed = ~np.isin(classes, list(single_object))
    if single_object and not allowed.any():
        raise InputError("every class of the forest is named single-object; leave at least "
                         "one class for the other pieces to go to")
    normalisation = PercentileNormalisation(1.0, 99.0)
    levels = normalisation.levels(tomogram)
    out = np.empty(tomogram.shape, np.uint8)
    fallback = np.empty(tomogram.shape, np.uint8) if single_object else None
    for z in range(tomogram.shape[0]):
        features = _features(normalisation.apply(tomogram[z], levels), sigma_max)
        probabilities = forest.predict_proba(features.reshape(-1, features.shape[-1]))
        out[z] = classes[probabilities.argmax(axis=1)].reshape(tomogram.shape[1:])
        if fallback is not None:
            best = probabilities[:, allowed].argmax(axis=1)
            fallback[z] = classes[allowed][best].reshape(tomogram.shape[1:])
    if fallback is not None:
        for value in sorted(set(single_object)):
            keep_largest_object(out, fallback, int(value))
    return out
