"""SIFT keypoints outside the defect and mutual-nearest-neighbour matching.

Points are kept in OpenCV's ``(x, y)`` order inside this package (that is what
``cv2.estimateAffine2D`` and ``cv2.remap`` take); public functions convert to ``(y, x)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Matches:
    """Putative correspondences between a fixed and a moving image.

    Attributes
    ----------
    fixed_xy, moving_xy : ndarray of float64, shape (n, 2)
        Keypoint positions ``(x, y)`` in full-resolution pixels.
    n_fixed_keypoints, n_moving_keypoints : int
        How many keypoints each image gave (for diagnostics).
    """

    fixed_xy: np.ndarray
    moving_xy: np.ndarray
    n_fixed_keypoints: int
    n_moving_keypoints: int

    def __len__(self) -> int:
        return int(self.fixed_xy.shape[0])


# SIFT runs on images reduced so that the long side is at most this many pixels: on the
# 2080x2752 ZW7L18 pair 1000 px gives the NCC of 1400 px (0.906) in 30 % less time, and
# coarse features are the ones that survive from one section to the next.
SIFT_MAX_SIDE_PX = 1000


def default_sift_scale(shape: tuple[int, ...]) -> float:
    """Detection scale (<= 1) for an image of ``shape``: long side <= SIFT_MAX_SIDE_PX."""
    return min(1.0, SIFT_MAX_SIDE_PX / max(shape))


def to_uint8(image: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """Stretch an image to uint8 by its 0.5-99.5 percentiles (SIFT works on 8 bits).

    Percentiles ignore ``~valid`` pixels (e.g. the defect band) so a dark fold does not
    set the contrast of the tissue.
    """
    data = image.astype(np.float32, copy=False)
    sample = data[valid] if valid is not None and valid.any() else data.ravel()
    if sample.size > 2_000_000:
        sample = sample[:: sample.size // 1_000_000]
    lo, hi = np.percentile(sample, [0.5, 99.5])
    if not np.isfinite(lo) or not np.isfinite(hi) or hi <= lo:
        hi = lo + 1.0
    scaled = (data - lo) * (255.0 / (hi - lo))
    return np.clip(scaled, 0, 255).astype(np.uint8)


def sift_keypoints(
    image_u8: np.ndarray,
    *,
    mask: np.ndarray | None,
    scale: float,
    max_features: int,
) -> tuple[np.ndarray, np.ndarray]:
    """SIFT keypoints and descriptors, detected at ``scale`` and returned at full scale.

    Parameters
    ----------
    image_u8 : ndarray of uint8, shape (H, W)
    mask : ndarray of bool, shape (H, W), or None
        Where keypoints may be detected (True = allowed).
    scale : float
        Detection scale (<= 1): the image is reduced by this factor first, which bounds
        the run time of large sections.
    max_features : int
        Keep at most this many keypoints (the strongest).

    Returns
    -------
    xy : ndarray of float64, shape (n, 2)
        Keypoint positions ``(x, y)`` in full-resolution pixels.
    descriptors : ndarray of float32, shape (n, 128)
    """
    import cv2

    img = image_u8
    det_mask = None if mask is None else mask.astype(np.uint8) * 255
    if scale < 1.0:
        img = cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        if det_mask is not None:
            # A reduced pixel may be used only if every pixel it covers is allowed.
            reduced = cv2.resize(
                det_mask, (img.shape[1], img.shape[0]), interpolation=cv2.INTER_AREA
            )
            det_mask = np.where(reduced == 255, 255, 0).astype(np.uint8)
    sift = cv2.SIFT_create(nfeatures=max_features)  # type: ignore[attr-defined]
    keypoints, descriptors = sift.detectAndCompute(img, det_mask)
    if descriptors is None or len(keypoints) == 0:
        return np.zeros((0, 2)), np.zeros((0, 128), np.float32)
    xy = np.array([kp.pt for kp in keypoints], dtype=np.float64)
    if scale < 1.0:
        # cv2.resize aligns pixel centres: x_full = (x_small + 0.5) / scale - 0.5.
        xy = (xy + 0.5) / scale - 0.5
    return xy, descriptors.astype(np.float32)


def mutual_matches(
    desc_fixed: np.ndarray, desc_moving: np.ndarray, *, ratio: float = 0.8, block: int = 1024
) -> np.ndarray:
    """Mutual nearest neighbours that also pass Lowe's ratio test.

    Descriptors are L2-normalised, so the nearest neighbour is the largest dot product
    in both directions; exact search by blocks of matrix products is deterministic and
    keeps memory at ``block x n_moving`` floats.

    Returns
    -------
    ndarray of int, shape (n, 2)
        Index pairs ``(i_fixed, i_moving)``.
    """
    n_f, n_m = desc_fixed.shape[0], desc_moving.shape[0]
    if n_f < 2 or n_m < 2:
        return np.zeros((0, 2), dtype=np.intp)
    f = _unit_rows(desc_fixed)
    m = _unit_rows(desc_moving)
    best = np.empty(n_f, dtype=np.intp)
    top2 = np.empty((n_f, 2), dtype=np.float32)
    col_max = np.full(n_m, -np.inf, dtype=np.float32)
    col_arg = np.zeros(n_m, dtype=np.intp)
    for start in range(0, n_f, block):
        stop = min(start + block, n_f)
        sim = f[start:stop] @ m.T
        rows = np.arange(stop - start)
        block_col_arg = np.argmax(sim, axis=0)
        block_col_max = sim[block_col_arg, np.arange(n_m)]
        better = block_col_max > col_max
        col_max[better] = block_col_max[better]
        col_arg[better] = block_col_arg[better] + start
        arg = np.argmax(sim, axis=1)
        best[start:stop] = arg
        top2[start:stop, 0] = sim[rows, arg]
        sim[rows, arg] = -np.inf
        top2[start:stop, 1] = sim.max(axis=1)
    # |a - b|^2 = 2 - 2 a.b for unit vectors.
    dist = np.sqrt(np.maximum(2.0 - 2.0 * top2, 0.0))
    ratio_ok = dist[:, 0] < ratio * dist[:, 1]
    rows_all = np.arange(n_f)
    keep = ratio_ok & (col_arg[best] == rows_all)
    return np.stack([rows_all[keep], best[keep]], axis=1)


def _unit_rows(desc: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(desc, axis=1, keepdims=True)
    return (desc / np.maximum(norm, 1e-12)).astype(np.float32)


def find_matches(
    fixed: np.ndarray,
    moving: np.ndarray,
    *,
    fixed_mask: np.ndarray | None = None,
    moving_mask: np.ndarray | None = None,
    scale: float = 1.0,
    max_features: int = 6000,
    ratio: float = 0.9,
) -> Matches:
    """Detect SIFT keypoints in both images (inside the masks) and match them.

    Parameters
    ----------
    fixed, moving : ndarray, shape (H, W)
        The images, any numeric dtype.
    fixed_mask, moving_mask : ndarray of bool, shape (H, W), or None
        Where keypoints may be detected (True = usable tissue).
    scale, max_features, ratio
        See :func:`sift_keypoints` and :func:`mutual_matches`.
    """
    xy_f, d_f = sift_keypoints(
        to_uint8(fixed, fixed_mask), mask=fixed_mask, scale=scale, max_features=max_features
    )
    xy_m, d_m = sift_keypoints(
        to_uint8(moving, moving_mask), mask=moving_mask, scale=scale, max_features=max_features
    )
    pairs = mutual_matches(d_f, d_m, ratio=ratio)
    return Matches(
        fixed_xy=xy_f[pairs[:, 0]],
        moving_xy=xy_m[pairs[:, 1]],
        n_fixed_keypoints=int(xy_f.shape[0]),
        n_moving_keypoints=int(xy_m.shape[0]),
    )


def consistent_matches(
    matches: Matches, *, neighbours: int = 48, tolerance_px: float = 6.0, relative: float = 0.05
) -> np.ndarray:
    """Keep matches whose displacement agrees with at least one nearby match's.

    Tissue moves coherently, so a true match has neighbours (in the moving image) that
    moved by nearly the same vector, while a false match's displacement is random and
    almost never repeated nearby. Agreement means the two displacements differ by less
    than ``tolerance_px + relative * distance`` (rotation and shear make neighbours'
    displacements drift with distance). Pairs across a fold simply do not agree.

    Returns
    -------
    ndarray of bool, shape (n,)
        True for matches to keep.
    """
    from scipy.spatial import cKDTree

    n = len(matches)
    if n < 3:
        return np.ones(n, dtype=bool)
    k = min(neighbours + 1, n)
    dist, idx = cKDTree(matches.moving_xy).query(matches.moving_xy, k)
    disp = matches.fixed_xy - matches.moving_xy
    diff = np.linalg.norm(disp[idx[:, 1:]] - disp[:, None, :], axis=2)
    agree = diff < tolerance_px + relative * dist[:, 1:]
    return agree.any(axis=1)


def subset(matches: Matches, keep: np.ndarray) -> Matches:
    """The matches where ``keep`` is True."""
    return Matches(
        fixed_xy=matches.fixed_xy[keep],
        moving_xy=matches.moving_xy[keep],
        n_fixed_keypoints=matches.n_fixed_keypoints,
        n_moving_keypoints=matches.n_moving_keypoints,
    )
