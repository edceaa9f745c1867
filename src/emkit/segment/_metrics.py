"""Agreement between a label volume and the truth: Dice and accuracy, overall and per slice."""

from __future__ import annotations

import numpy as np

from emkit.errors import MismatchError

__all__ = ["dice_scores", "per_slice_scores"]


def dice_scores(
    predicted: np.ndarray, truth: np.ndarray, n_classes: int, *, mask: np.ndarray | None = None
) -> np.ndarray:
    """Dice coefficient of every class, ``2 |P & T| / (|P| + |T|)``.

    Parameters
    ----------
    predicted, truth : integer ndarray, same shape
    n_classes : int
    mask : bool ndarray, optional
        Count only these pixels.

    Returns
    -------
    ndarray, shape (n_classes,), float64
        NaN for a class absent from both.
    """
    if predicted.shape != truth.shape:
        raise MismatchError(f"predicted labels {predicted.shape} and truth {truth.shape} "
                            "differ in shape")
    p = np.asarray(predicted).reshape(-1).astype(np.int64)
    t = np.asarray(truth).reshape(-1).astype(np.int64)
    if mask is not None:
        keep = np.asarray(mask).reshape(-1)
        p, t = p[keep], t[keep]
    p = np.clip(p, 0, n_classes)
    t = np.clip(t, 0, n_classes)
    joint = np.bincount(t * (n_classes + 1) + p, minlength=(n_classes + 1) ** 2)
    confusion = joint.reshape(n_classes + 1, n_classes + 1)[:n_classes, :n_classes]
    tp = np.diag(confusion).astype(np.float64)
    size_p = np.bincount(p, minlength=n_classes + 1)[:n_classes].astype(np.float64)
    size_t = np.bincount(t, minlength=n_classes + 1)[:n_classes].astype(np.float64)
    total = size_p + size_t
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, 2 * tp / total, np.nan)


def per_slice_scores(
    predicted: np.ndarray, truth: np.ndarray, n_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    """Dice of every class and the pixel accuracy of every z slice.

    Returns
    -------
    dice : ndarray, shape (nz, n_classes)
        NaN where a class is absent from both in that slice.
    accuracy : ndarray, shape (nz,)
    """
    if predicted.shape != truth.shape:
        raise MismatchError(f"predicted labels {predicted.shape} and truth {truth.shape} "
                            "differ in shape")
    dice = np.stack([dice_scores(p, t, n_classes) for p, t in zip(predicted, truth)])
    accuracy = (predicted == truth).reshape(len(truth), -1).mean(axis=1)
    return dice, accuracy
