"""Quality of a registration: endpoint error against a known field, similarity to the
fixed image outside the defect."""

from __future__ import annotations

import numpy as np


def endpoint_error(
    field: np.ndarray,
    true_field: np.ndarray,
    *,
    valid: np.ndarray,
    defect_fixed: np.ndarray | None = None,
    near_px: float = 50.0,
) -> dict[str, float]:
    """Endpoint error (EPE) of a field against the true one, in pixels.

    Parameters
    ----------
    field, true_field : ndarray of float32, shape (2, H, W)
        ``(dy, dx)`` per fixed pixel (emkit's field convention).
    valid : ndarray of bool, shape (H, W)
        Pixels to score (e.g. where the true field has a counterpart and the estimate
        has data); pixels of the defect must be False.
    defect_fixed : ndarray of bool, shape (H, W), optional
        The defect as seen in the fixed frame; if given, the error within ``near_px``
        pixels of it is reported too.
    near_px : float
        Distance defining "near the defect", in pixels.

    Returns
    -------
    dict
        ``epe_mean_px``, ``epe_p95_px``, ``epe_max_px``, ``n_pixels`` and, with
        ``defect_fixed``, ``epe_near_defect_mean_px`` and ``epe_near_defect_p95_px``.
    """
    if field.shape != true_field.shape or field.shape[1:] != valid.shape:
        raise ValueError(
            f"field {field.shape}, true field {true_field.shape} and valid {valid.shape} differ"
        )
    err = np.hypot(field[0] - true_field[0], field[1] - true_field[1])
    scored = err[valid]
    if scored.size == 0:
        raise ValueError("no valid pixels to score")
    out = {
        "epe_mean_px": float(scored.mean()),
        "epe_p95_px": float(np.percentile(scored, 95)),
        "epe_max_px": float(scored.max()),
        "n_pixels": int(scored.size),
    }
    if defect_fixed is not None and defect_fixed.any():
        from scipy import ndimage

        near = (ndimage.distance_transform_edt(~defect_fixed) <= near_px) & valid
        if near.any():
            out["epe_near_defect_mean_px"] = float(err[near].mean())
            out["epe_near_defect_p95_px"] = float(np.percentile(err[near], 95))
    return out


def similarity(
    fixed: np.ndarray, warped: np.ndarray, *, valid: np.ndarray | None = None
) -> dict[str, float]:
    """NCC, SSIM and NMI between the fixed image and the warped moving one.

    Only ``valid`` pixels count (outside the defect and inside both images).

    Parameters
    ----------
    fixed, warped : ndarray, shape (H, W)
    valid : ndarray of bool, shape (H, W), optional

    Returns
    -------
    dict
        ``ncc`` (Pearson correlation, -1..1), ``ssim`` (mean of the SSIM map over valid
        pixels, scikit-image, data range of the fixed image), ``nmi`` (scikit-image
        ``normalized_mutual_information``, 1..2, 100 bins), ``n_pixels``.
    """
    from skimage.metrics import normalized_mutual_information, structural_similarity

    f = fixed.astype(np.float32)
    m = warped.astype(np.float32)
    if valid is None:
        valid = np.ones(f.shape, dtype=bool)
    if not valid.any():
        raise ValueError("no valid pixels to compare")
    a = f[valid].astype(np.float64)
    b = m[valid].astype(np.float64)
    a -= a.mean()
    b -= b.mean()
    denom = np.sqrt((a * a).sum() * (b * b).sum())
    ncc = float((a * b).sum() / denom) if denom > 0 else 0.0
    data_range = float(f[valid].max() - f[valid].min()) or 1.0
    _, ssim_map = structural_similarity(f, m, data_range=data_range, full=True)
    ssim = float(ssim_map[valid].mean())
    nmi = float(normalized_mutual_information(f[valid], m[valid], bins=100))
    return {"ncc": ncc, "ssim": ssim, "nmi": nmi, "n_pixels": int(valid.sum())}
