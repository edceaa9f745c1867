"""Loss terms of the deep-SXT model: labels (cross-entropy + Dice), images (SSIM + Huber)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["dice_loss", "label_loss", "reconstruction_loss", "ssim"]

IGNORE = -1  # label value of pixels that do not count (unlabelled or held out)


def dice_loss(logits: torch.Tensor, target: torch.Tensor, *, eps: float = 1.0) -> torch.Tensor:
    """1 - mean soft Dice over the classes present in ``target`` (ignored pixels excluded).

    Parameters
    ----------
    logits : tensor, shape (b, c, y, x)
    target : long tensor, shape (b, y, x), class index or ``IGNORE``
    """
    n_classes = logits.shape[1]
    valid = (target != IGNORE).unsqueeze(1).to(logits.dtype)
    probs = torch.softmax(logits, dim=1) * valid
    onehot = F.one_hot(target.clamp(min=0), n_classes).movedim(-1, 1).to(logits.dtype) * valid
    dims = (0, 2, 3)
    intersection = (probs * onehot).sum(dims)
    total = probs.sum(dims) + onehot.sum(dims)
    present = onehot.sum(dims) > 0
    dice = (2 * intersection + eps) / (total + eps)
    if not bool(present.any()):
        return logits.sum() * 0.0
    return 1.0 - dice[present].mean()


def label_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy plus Dice; pixels labelled ``IGNORE`` do not count."""
    if bool((target == IGNORE).all()):
        return logits.sum() * 0.0
    ce = F.cross_entropy(logits, target, ignore_index=IGNORE)
    return ce + dice_loss(logits, target)


def _gaussian_window(size: int, sigma: float, device: torch.device) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float32, device=device) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :])[None, None]


def ssim(a: torch.Tensor, b: torch.Tensor, *, data_range: float = 1.0) -> torch.Tensor:
    """Mean structural similarity of two image batches ``(b, 1, y, x)`` (Gaussian window 7)."""
    window = _gaussian_window(7, 1.5, a.device).to(a.dtype)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mu_a, mu_b = F.conv2d(a, window), F.conv2d(b, window)
    var_a = F.conv2d(a * a, window) - mu_a**2
    var_b = F.conv2d(b * b, window) - mu_b**2
    cov = F.conv2d(a * b, window) - mu_a * mu_b
    num = (2 * mu_a * mu_b + c1) * (2 * cov + c2)
    den = (mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2)
    return (num / den).mean()


def reconstruction_loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(1 - SSIM) + Huber: structure and intensity of the reconstructed image."""
    return (1.0 - ssim(output, target)) + F.huber_loss(output, target, delta=0.1) * 10.0
