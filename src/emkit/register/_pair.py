"""Register one damaged section to its neighbour: expected affine or one global affine."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from typing import Any, Literal

import numpy as np

from emkit.errors import InputError, MismatchError, NonFiniteError, ShapeError
from emkit.register import _expected as ex
from emkit.register._elastic import ElasticOptions, invert_field, refine_elastic
from emkit.register._features import (
    Matches,
    consistent_matches,
    default_sift_scale,
    find_matches,
    subset,
)
from emkit.register._field import (
    AffineMap,
    affine_field,
    field_validity,
    forward_map_field,
    invert_affine_map,
    warp_image,
)
from emkit.register._pathdist import (
    CoarseGrid,
    band_sources,
    blocked_pixels,
    build_coarse_grid,
    choose_bin,
)

logger = logging.getLogger(__name__)

Method = Literal["expected-affine", "global-affine"]
Refine = Literal["elastic", "none"]
# Below this many matches a registration is a guess, not a measurement.
_MIN_MATCHES = 6


@dataclass
class PairRegistration:
    """The result of :func:`register_pair`.

    Attributes
    ----------
    field : ndarray of float32, shape (2, H, W)
        For each fixed pixel ``(y, x)``, the displacement ``(dy, dx)`` in pixels to its
        position in the moving image: ``warped[y, x] = moving[y + dy, x + dx]``. Finite
        everywhere; see ``valid``.
    valid : ndarray of bool, shape (H, W)
        Fixed pixels that have a counterpart in the moving image: inside it, off the
        defect, and (expected affine) where the per-pixel affine could be inverted.
    warped : ndarray, shape (H, W)
        The moving image resampled onto the fixed grid, in the moving image's dtype;
        ``fill_value`` where ``valid`` is False.
    forward_field : ndarray of float32, shape (2, H, W), or None
        With ``forward=True``: for each *moving* pixel, ``(dy, dx)`` to its position in
        the fixed image (the per-pixel affine itself; defect pixels take their side's).
    defined : ndarray of bool, shape (H, W)
        Where ``field`` is the model's exact inverse (it may point into the defect): usable
        for chaining fields through a stack, though the moving image has no tissue there
        when ``valid`` is False.
    affines : ndarray of float64, shape (k, 2, 3)
        The affine of each kept cluster (one for the global method), mapping moving
        ``(x, y)`` to fixed ``(x, y)`` in pixels.
    info : dict
        Numbers of keypoints, matches, inliers and clusters, and the seconds per step
        (with ``refine="elastic"`` also ``info["elastic"]``, see :func:`refine_elastic`).
    unrefined_field, unrefined_valid : ndarray or None
        With ``refine="elastic"``: the field and validity before the elastic refinement
        (the affine model alone), for comparison.
    """

    field: np.ndarray
    valid: np.ndarray
    warped: np.ndarray
    affines: np.ndarray
    defined: np.ndarray
    forward_field: np.ndarray | None
    info: dict[str, Any] = dataclass_field(default_factory=dict)
    unrefined_field: np.ndarray | None = None
    unrefined_valid: np.ndarray | None = None


def _check_inputs(
    fixed: np.ndarray, moving: np.ndarray, defect_mask: np.ndarray | None
) -> np.ndarray | None:
    if fixed.ndim != 2 or moving.ndim != 2:
        raise ShapeError(
            f"need 2D images, got fixed {fixed.shape} and moving {moving.shape}; "
            "give one section per file"
        )
    if fixed.shape != moving.shape:
        raise MismatchError(
            f"fixed image is {fixed.shape[0]}x{fixed.shape[1]} but moving is "
            f"{moving.shape[0]}x{moving.shape[1]} (rows x cols); give sections of the same size"
        )
    for name, image in (("fixed", fixed), ("moving", moving)):
        if not np.issubdtype(image.dtype, np.number) or np.iscomplexobj(image):
            raise InputError(f"{name} image has dtype {image.dtype}; give a real-valued image")
        if np.issubdtype(image.dtype, np.floating) and not np.isfinite(image).all():
            raise NonFiniteError(f"{name} image contains NaN or infinite values; fix or crop it")
    if defect_mask is None:
        return None
    return _check_mask(defect_mask, moving.shape, "moving")


def _check_mask(defect_mask: np.ndarray, shape: tuple[int, ...], which: str) -> np.ndarray:
    mask = np.asarray(defect_mask)
    if mask.ndim == 3 and mask.shape[-1] in (3, 4):
        mask = mask[..., 0]
    if mask.shape != shape:
        raise MismatchError(
            f"defect mask is {'x'.join(map(str, mask.shape))} but the {which} image is "
            f"{shape[0]}x{shape[1]}; give a mask of the {which} image's size"
        )
    mask = mask != 0
    if mask.all():
        raise InputError("defect mask covers the whole image; mark only the fold or crack")
    return mask


def register_pair(
    fixed: np.ndarray,
    moving: np.ndarray,
    *,
    defect_mask: np.ndarray | None = None,
    fixed_mask: np.ndarray | None = None,
    method: Method = "expected-affine",
    n_clusters: int | None = None,
    max_clusters: int = 8,
    matches_per_cluster: int = 150,
    min_inliers: int = 12,
    knn: int = 4,
    sift_scale: float | None = None,
    max_features: int = 6000,
    ratio: float = 0.9,
    ransac_threshold_px: float = 3.0,
    refine_iterations: int = 1,
    grid_cells: int = 40_000,
    fill_value: float = 0.0,
    seed: int = 0,
    forward: bool = False,
    refine: Refine = "elastic",
    elastic: ElasticOptions | None = None,
) -> PairRegistration:
    """Register a (damaged) moving section onto a fixed one.

    The expected-affine method (Xin et al. 2022): SIFT matches outside the defect are
    clustered by path distance (paths cannot cross the defect), each cluster gets a
    RANSAC affine, and each pixel gets the mean of the cluster affines weighted by a
    k-nearest-neighbour density of each cluster's inliers under the path distance. The
    tissue on each side of a fold or crack thus follows its own affine. Without a defect
    mask it is a smooth piecewise affine (with one cluster, one global affine).

    Parameters
    ----------
    fixed, moving : ndarray, shape (H, W)
        Sections of the same size, any real dtype (uint8, uint16, float ...).
    defect_mask : ndarray, shape (H, W), optional
        Nonzero where the moving section is damaged (fold, crack). No keypoints are taken
        there, no path crosses it, and fixed pixels that map into it get ``fill_value``.
    fixed_mask : ndarray, shape (H, W), optional
        Nonzero where the fixed section is damaged: no keypoints and no elastic patches
        are taken there, and, carried into the moving frame by the global affine, it
        blocks paths as the moving defect does (both sections of a pair may be damaged).
    method : {"expected-affine", "global-affine"}
        ``"global-affine"`` is the usual baseline: one RANSAC affine from the same matches.
    n_clusters : int, optional
        Number of clusters; by default from the data: at least one per piece of tissue the
        defect cuts off, and about one per ``matches_per_cluster`` matches, at most
        ``max_clusters``.
    min_inliers : int
        A cluster with fewer RANSAC inliers is dropped.
    knn : int
        Neighbours for the k-NN density (see :func:`._expected.knn_weights`).
    sift_scale : float, optional
        Scale at which SIFT runs (<= 1); by default so that the long side is <= 1000 px.
    max_features : int
        SIFT keypoints kept per image.
    ratio : float
        Lowe's ratio for matching. Mutual nearest neighbours passing it are then kept
        only if a nearby match moved the same way (see
        :func:`._features.consistent_matches`).
    ransac_threshold_px : float
        RANSAC inlier threshold in full-resolution pixels.
    refine_iterations : int
        Rounds of re-fitting the cluster affines to all matches the expected affine
        explains (weighted by each cluster's weight at the match).
    grid_cells : int
        About how many coarse cells carry the path distances (sets the cell size).
    fill_value : float
        Value of warped pixels without data.
    seed : int
        Seed of the clustering (same seed, same result).
    forward : bool
        Also compute ``forward_field``: where each moving pixel lands in the fixed image.
    refine : {"elastic", "none"}
        ``"elastic"`` (default): after the affine model, measure the shift left at each
        node of a grid by patch cross-correlation and relax it as an elastic mesh cut
        along the defect (:func:`emkit.register.refine_elastic`), so smooth non-affine
        stretching inside each side is followed. ``"none"``: the affine model alone.
    elastic : ElasticOptions, optional
        Parameters of the elastic refinement (grid spacing, patch, search, stiffness).

    Returns
    -------
    PairRegistration
        Field ``(2, H, W)`` float32 ``(dy, dx)`` fixed -> moving, validity, warped image.

    Raises
    ------
    ShapeError, MismatchError
        Images not 2D or of different sizes; a mask of another size.
    InputError
        An all-defect mask, or too few matches (images without shared texture).

    Examples
    --------
    >>> from emkit.sim.sections import section_texture, simulate_damaged_section
    >>> fixed = section_texture((384, 384), seed=0)
    >>> damaged = simulate_damaged_section(fixed, kind="fold", seed=1)
    >>> result = register_pair(fixed, damaged.moving, defect_mask=damaged.defect_mask)
    >>> result.field.shape
    (2, 384, 384)
    """
    fixed = np.asarray(fixed)
    moving = np.asarray(moving)
    mask = _check_inputs(fixed, moving, defect_mask)
    fmask = None if fixed_mask is None else _check_mask(fixed_mask, fixed.shape, "fixed")
    _check_choices(method, refine)
    h, w = fixed.shape
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    scale = default_sift_scale((h, w)) if sift_scale is None else float(sift_scale)
    if not 0.05 <= scale <= 1.0:
        raise InputError(f"sift_scale {scale} out of range; give a value in [0.05, 1]")

    matches, global_affine, blocked, info = _match_and_fit_global(
        fixed,
        moving,
        mask,
        fmask,
        method=method,
        scale=scale,
        max_features=max_features,
        ratio=ratio,
        ransac_threshold_px=ransac_threshold_px,
        timings=timings,
        t0=t0,
    )
    model = _ModelOptions(
        n_clusters=n_clusters, max_clusters=max_clusters,
        matches_per_cluster=matches_per_cluster, min_inliers=min_inliers, knn=knn,
        ransac_threshold_px=ransac_threshold_px, refine_iterations=refine_iterations,
        grid_cells=grid_cells, seed=seed,
    )
    affines, fld, converged, forward_field = _fit_model(
        matches, blocked, global_affine, (h, w), method=method, forward=forward,
        model=model, info=info, timings=timings,
    )
    return _refine_and_warp(
        fixed,
        moving,
        fld,
        converged,
        mask,
        fmask,
        affines=affines,
        forward_field=forward_field,
        refine=refine,
        elastic=elastic,
        fill_value=fill_value,
        info=info,
        timings=timings,
        t0=t0,
    )


def _check_choices(method: str, refine: str) -> None:
    """The errors :func:`register_pair` raises for an unknown method or refinement."""
    if method not in ("expected-affine", "global-affine"):
        raise InputError(f"unknown method {method!r}; use 'expected-affine' or 'global-affine'")
    if refine not in ("elastic", "none"):
        raise InputError(f"unknown refinement {refine!r}; use 'elastic' or 'none'")


def _fit_model(
    matches: Matches,
    blocked: np.ndarray,
    global_affine: np.ndarray,
    shape: tuple[int, int],
    *,
    method: str,
    forward: bool,
    model: _ModelOptions,
    info: dict[str, Any],
    timings: dict[str, float],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """``(affines, field, converged, forward_field)`` of the method's model: one global
    affine, or the expected affine (whose numbers are added to ``info``)."""
    import cv2

    h, w = shape
    t1 = time.perf_counter()
    forward_field = None
    if method == "global-affine":
        affines = global_affine[None]
        fld = affine_field(global_affine, (h, w))
        converged = np.ones((h, w), dtype=bool)
        if forward:
            forward_field = affine_field(cv2.invertAffineTransform(global_affine), (h, w))
        timings["model_s"] = time.perf_counter() - t1
    else:
        affines, fld, converged, amap, model_info = _expected_affine(
            matches, blocked, global_affine, (h, w), model, timings
        )
        info.update(model_info)
        if forward:
            forward_field = forward_map_field(amap, (h, w))
    return affines, fld, converged, forward_field


def _match_and_fit_global(
    fixed: np.ndarray,
    moving: np.ndarray,
    mask: np.ndarray | None,
    fmask: np.ndarray | None,
    *,
    method: str,
    scale: float,
    max_features: int,
    ratio: float,
    ransac_threshold_px: float,
    timings: dict[str, float],
    t0: float,
) -> tuple[Matches, np.ndarray, np.ndarray, dict[str, Any]]:
    """SIFT matches off the defects, the consistency filter, one global RANSAC affine;
    the pixels that block paths (the moving defect, and the fixed one carried over)."""
    import cv2

    h, w = fixed.shape
    blocked = blocked_pixels(mask, (h, w))
    matches = find_matches(
        fixed,
        moving,
        fixed_mask=None if fmask is None else ~blocked_pixels(fmask, (h, w)),
        moving_mask=None if mask is None else ~blocked,
        scale=scale,
        max_features=max_features,
        ratio=ratio,
    )
    n_putative = len(matches)
    matches = subset(matches, consistent_matches(matches))
    timings["matching_s"] = time.perf_counter() - t0
    info: dict[str, Any] = {
        "method": method,
        "n_keypoints_fixed": matches.n_fixed_keypoints,
        "n_keypoints_moving": matches.n_moving_keypoints,
        "n_matches_putative": n_putative,
        "n_matches": len(matches),
        "sift_scale": scale,
    }
    if len(matches) < _MIN_MATCHES:
        raise InputError(
            f"found only {len(matches)} matching features between the sections "
            f"({matches.n_fixed_keypoints} and {matches.n_moving_keypoints} keypoints); "
            "the images need shared texture: check they are neighbouring sections"
        )
    global_affine, global_inliers = ex.fit_affine_ransac(
        matches.moving_xy, matches.fixed_xy, threshold_px=ransac_threshold_px
    )
    if global_affine is None:
        raise InputError(
            f"no affine fits the {len(matches)} matches; the sections share too little "
            "texture: check they are neighbouring sections"
        )
    info["n_inliers_global"] = int(global_inliers.sum())
    if fmask is not None and fmask.any():
        # The fixed section's own defect, carried into the moving frame by the global
        # affine, blocks paths too: both sections' defects cut the tissue.
        carried = cv2.warpAffine(
            fmask.astype(np.uint8),
            global_affine,
            (w, h),
            flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP,
            borderValue=0,
        ).astype(bool)
        blocked = blocked | blocked_pixels(carried, (h, w))

    return matches, global_affine, blocked, info


def _refine_and_warp(
    fixed: np.ndarray,
    moving: np.ndarray,
    fld: np.ndarray,
    converged: np.ndarray,
    mask: np.ndarray | None,
    fmask: np.ndarray | None,
    *,
    affines: np.ndarray,
    forward_field: np.ndarray | None,
    refine: str,
    elastic: ElasticOptions | None,
    fill_value: float,
    info: dict[str, Any],
    timings: dict[str, float],
    t0: float,
) -> PairRegistration:
    """The elastic refinement (if asked), the warp, and the result."""
    t2 = time.perf_counter()
    valid = field_validity(fld, mask, moving.shape) & converged
    unrefined: tuple[np.ndarray, np.ndarray] | None = None
    if refine == "elastic":
        unrefined = (fld, valid)
        fld, valid, info["elastic"] = refine_elastic(
            fixed, moving, fld, valid, defect_mask=mask, fixed_mask=fmask, options=elastic
        )
        if forward_field is not None:
            forward_field = invert_field(fld, forward_field)
        timings["elastic_s"] = time.perf_counter() - t2
        t2 = time.perf_counter()
    warped = warp_image(moving, fld, valid=valid, fill_value=fill_value)
    timings["warp_s"] = time.perf_counter() - t2
    timings["total_s"] = time.perf_counter() - t0
    info["valid_fraction"] = float(valid.mean())
    info["seconds"] = {k: round(v, 3) for k, v in timings.items()}
    return PairRegistration(
        field=fld,
        valid=valid,
        warped=warped,
        affines=affines,
        defined=converged,
        forward_field=forward_field,
        info=info,
        unrefined_field=None if unrefined is None else unrefined[0],
        unrefined_valid=None if unrefined is None else unrefined[1],
    )


@dataclass(frozen=True)
class _ModelOptions:
    """The expected-affine model's parameters, as :func:`register_pair` takes them."""

    n_clusters: int | None
    max_clusters: int
    matches_per_cluster: int
    min_inliers: int
    knn: int
    ransac_threshold_px: float
    refine_iterations: int
    grid_cells: int
    seed: int


def _clusters(
    grid: CoarseGrid, matches: Matches, global_affine: np.ndarray, model: _ModelOptions
) -> tuple[ex.ClusterAffines, int]:
    """The matches clustered by path distance and one affine fitted per cluster (the
    global affine alone when no cluster is large enough), and the number asked for."""
    nodes = grid.nodes_of(matches.moving_xy)
    if model.n_clusters is None:
        k = ex.choose_n_clusters(
            grid,
            nodes,
            matches_per_cluster=model.matches_per_cluster,
            max_clusters=model.max_clusters,
            min_inliers=model.min_inliers,
        )
    else:
        if model.n_clusters < 1:
            raise InputError(f"n_clusters is {model.n_clusters}; give 1 or more")
        k = int(model.n_clusters)
    labels = ex.geodesic_kmeans(grid, nodes, matches.moving_xy, k, seed=model.seed)
    clusters = ex.cluster_affines(
        labels,
        matches.moving_xy,
        matches.fixed_xy,
        threshold_px=model.ransac_threshold_px,
        min_inliers=model.min_inliers,
    )
    if clusters.affines.shape[0] == 0:
        # Every cluster too small for its own affine: the global one is all there is.
        clusters = ex.ClusterAffines(
            affines=global_affine[None],
            inlier_xy=[matches.moving_xy],
            inlier_fixed_xy=[matches.fixed_xy],
            labels=np.zeros(len(matches), dtype=np.intp),
        )
    return clusters, k


def _expected_affine(
    matches: Matches,
    blocked: np.ndarray,
    global_affine: np.ndarray,
    shape: tuple[int, int],
    model: _ModelOptions,
    timings: dict[str, float],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, AffineMap, dict[str, Any]]:
    """Clusters -> affines -> weights -> per-pixel affine -> inverse field."""
    t = time.perf_counter()
    grid = build_coarse_grid(blocked, choose_bin(shape, model.grid_cells))
    clusters, k = _clusters(grid, matches, global_affine, model)
    timings["clusters_s"] = time.perf_counter() - t
    t = time.perf_counter()
    weights = ex.knn_weights(grid, clusters, knn=model.knn, seed=model.seed)
    affines = clusters.affines
    for _ in range(model.refine_iterations):
        residual = _match_residuals(grid, weights, affines, matches)
        affines = ex.refit_affines(
            grid,
            weights,
            matches.moving_xy,
            matches.fixed_xy,
            residual,
            threshold_px=model.ransac_threshold_px,
            old=affines,
        )
    cell_params = ex.expected_affine_grid(grid, weights, affines)
    timings["weights_s"] = time.perf_counter() - t
    t = time.perf_counter()
    band_src = band_sources(grid, blocked) if grid.blocked.any() else None
    amap = AffineMap.build(grid, cell_params, band_src, global_affine)
    timings["band_s"] = time.perf_counter() - t
    t = time.perf_counter()
    fld, converged = invert_affine_map(
        amap, shape, start_affine=global_affine, defect=blocked, candidates=affines
    )
    timings["inverse_s"] = time.perf_counter() - t
    info = {
        "n_clusters": int(affines.shape[0]),
        "n_clusters_requested": int(k),
        "n_inliers_clusters": [int(len(x)) for x in clusters.inlier_xy],
        "grid_bin_px": int(grid.bin_px),
    }
    return affines, fld, converged, amap, info


def _match_residuals(
    grid: CoarseGrid, weights: np.ndarray, affines: np.ndarray, matches: Matches
) -> np.ndarray:
    """Distance in fixed pixels between each match and its expected-affine prediction."""
    nodes = grid.nodes_of(matches.moving_xy)
    params = np.einsum("kn,kp->np", weights[:, nodes], affines.reshape(-1, 6))
    has = weights[:, nodes].sum(axis=0) > 0.5
    x, y = matches.moving_xy[:, 0], matches.moving_xy[:, 1]
    px = params[:, 0] * x + params[:, 1] * y + params[:, 2]
    py = params[:, 3] * x + params[:, 4] * y + params[:, 5]
    residual = np.hypot(px - matches.fixed_xy[:, 0], py - matches.fixed_xy[:, 1])
    return np.where(has, residual, np.inf)
