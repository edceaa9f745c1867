"""Elastic refinement of a registration: patch cross-correlation relaxed as a cut mesh.

Expected Affine models each side of a fold as a blend of affines; real tissue also
stretches smoothly. This module measures what is left after the model — the shift of
each patch of the fixed image in the warped moving image, on a regular grid of nodes —
and relaxes those measurements as an elastic mesh: every node is pulled towards its
measured shift (with a weight from the correlation's reliability) and tied to its grid
neighbours by springs. The mesh is cut along the defect: a node belongs to one *side*
(a connected piece of tissue of the fixed frame, see :func:`side_labels`), no spring joins
nodes of different sides, no patch reads pixels of another side, and the correction is
interpolated to pixels from nodes of the pixel's own side only. So the two sides of a fold
or a crack are refined independently, as the method's path distance treats them.

The correction ``u`` (fixed pixel ``p`` is seen at ``p + u(p)`` in the warped image) is
composed with the field: ``field'(p) = u(p) + field(p + u(p))``, and the loop repeats at
a smaller search range (coarse to fine).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage, sparse
from scipy.sparse import linalg as sparse_linalg

from emkit.register._field import warp_image

__all__ = ["ElasticOptions", "invert_field", "refine_elastic", "side_labels"]

# A field that changes by more than this many pixels from one pixel to the next is a cut
# (the two sides of a crack meet there in the fixed frame); smooth tissue changes by far less.
_JUMP_PX = 0.5


@dataclass(frozen=True)
class ElasticOptions:
    """Parameters of :func:`refine_elastic` (defaults suit EM sections of 0.5-10k px).

    Attributes
    ----------
    spacing_px : int or None
        Distance between mesh nodes in pixels (default: about 4,000 nodes, 16-64 px).
    patch_px : int or None
        Side of the square patch correlated at each node (default: 2 x spacing, >= 32;
        smaller when the image is too small for it and the search range).
    search_px : tuple of int
        Largest shift searched in each pass, in pixels: one pass per entry.
    stiffness : float
        Spring constant between neighbouring nodes, relative to a fully trusted
        measurement (larger: smoother correction).
    min_ncc : float
        Patches whose correlation peak is lower are not trusted (weight 0).
    outlier_px : float
        A node whose measurement differs from the relaxed mesh by more than this is
        dropped and the mesh relaxed again (consistency check).
    """

    spacing_px: int | None = None
    patch_px: int | None = None
    search_px: tuple[int, ...] = (12, 3)
    stiffness: float = 0.3
    min_ncc: float = 0.3
    outlier_px: float = 2.0


@dataclass
class _Mesh:
    """Nodes on a regular grid, cut along the defect: one copy of the grid per side.

    Node ``(i, j)`` sits at pixel ``(i*s + (s-1)/2, j*s + (s-1)/2)``, which makes
    :func:`cv2.resize` by ``s`` interpolate node values bilinearly at the pixels. Side
    ``c`` owns the nodes whose interpolation reaches a pixel of side ``c``
    (``owned[c - 1]``); a node next to the cut is owned by both sides, and each side's
    copy moves on its own.
    """

    spacing: int
    shape: tuple[int, int]
    y: np.ndarray
    x: np.ndarray
    owned: list[np.ndarray]


def side_labels(field: np.ndarray, valid: np.ndarray, *, min_pixels: int = 64) -> np.ndarray:
    """Label the connected pieces of tissue of the fixed frame (0: no tissue or a cut).

    A piece is a 4-connected set of ``valid`` pixels across which ``field`` changes by
    less than 0.5 px per pixel: the two sides of a fold are separated by the tissue the
    fold hides (invalid in the fixed frame), the two sides of a crack by the jump of the
    field where they meet. Pieces smaller than ``min_pixels`` are dropped.
    """
    open_ = valid.copy()
    for axis in (1, 2):
        step = np.abs(np.diff(field, axis=axis)).max(axis=0) > _JUMP_PX
        if axis == 1:
            open_[:-1] &= ~step
            open_[1:] &= ~step
        else:
            open_[:, :-1] &= ~step
            open_[:, 1:] &= ~step
    labels, n = ndimage.label(open_)
    if n:
        sizes = np.bincount(labels.ravel(), minlength=n + 1)
        small = sizes < min_pixels
        small[0] = True
        renumber = np.cumsum(~small) * ~small
        labels = renumber[labels]
    return labels.astype(np.int32)


def _fill_labels(labels: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Give the valid pixels on a cut (label 0) the label of the nearest labelled pixel."""
    missing = valid & (labels == 0)
    if not missing.any() or not (labels > 0).any():
        return labels
    _, (iy, ix) = ndimage.distance_transform_edt(labels == 0, return_indices=True)
    out = labels.copy()
    out[missing] = labels[iy[missing], ix[missing]]
    return out


def _build_mesh(labels: np.ndarray, spacing: int) -> _Mesh:
    h, w = labels.shape
    gh, gw = -(-h // spacing), -(-w // spacing)
    centre = (spacing - 1) / 2.0
    y = np.arange(gh) * spacing + centre
    x = np.arange(gw) * spacing + centre
    # Pixel (py, px) reads the nodes floor((p - centre) / s) and the next one.
    cell_y = np.clip(np.floor((np.arange(h) - centre) / spacing).astype(int), 0, gh - 1)
    cell_x = np.clip(np.floor((np.arange(w) - centre) / spacing).astype(int), 0, gw - 1)
    owned = []
    for side in range(1, int(labels.max()) + 1):
        cells = np.zeros((gh, gw), bool)
        py, px = np.nonzero(labels == side)
        cells[cell_y[py], cell_x[px]] = True
        mine = cells.copy()
        mine[1:] |= cells[:-1]
        mine[:, 1:] |= mine[:, :-1].copy()
        owned.append(mine)
    return _Mesh(spacing, (gh, gw), y, x, owned)


def _default_spacing(shape: tuple[int, int]) -> int:
    return int(np.clip(round(np.sqrt(shape[0] * shape[1] / 4000.0)), 16, 64))


def _subpixel_peak(score: np.ndarray) -> tuple[float, float, float]:
    """Peak of a correlation map: (dy, dx) offset of the peak from the map's centre, value."""
    iy, ix = np.unravel_index(int(np.argmax(score)), score.shape)
    value = float(score[iy, ix])
    offsets = []
    for pos, axis_len, line in (
        (iy, score.shape[0], score[:, ix]),
        (ix, score.shape[1], score[iy, :]),
    ):
        delta = 0.0
        if 0 < pos < axis_len - 1:
            a, b, c = float(line[pos - 1]), float(line[pos]), float(line[pos + 1])
            curvature = a - 2.0 * b + c
            if curvature < 0:
                delta = float(np.clip(0.5 * (a - c) / curvature, -0.5, 0.5))
        offsets.append(pos + delta - (axis_len - 1) / 2.0)
    return offsets[0], offsets[1], value


@dataclass
class _Measurements:
    """Patch shifts: where (pixel ``y, x``: the centroid of the patch's own-side pixels),
    which side, the shift ``(dy, dx)`` and its weight."""

    y: np.ndarray
    x: np.ndarray
    side: np.ndarray
    shift: np.ndarray
    weight: np.ndarray


def _measure(
    fixed: np.ndarray,
    warped: np.ndarray,
    labels: np.ndarray,
    mesh: _Mesh,
    patch: int,
    search: int,
    min_ncc: float,
) -> _Measurements:
    """Shift of each node's fixed patch in the warped image, once per side in the patch.

    Each patch keeps only the pixels of one side (a masked normalised correlation), so a
    patch beside the cut gives one measurement per side, placed at the centroid of that
    side's pixels. A side with less than a quarter of the patch, a flat patch, a peak on
    the search border or below ``min_ncc`` gives no measurement.
    """
    import cv2

    h, w = fixed.shape
    half = patch // 2
    # Windows are moved inside the image (patch and search range), so no correlation
    # reads padding; border nodes are then set by the mesh from the measurements inside.
    centres_y = np.unique(np.clip(np.rint(mesh.y).astype(int), half + search, h - half - search))
    centres_x = np.unique(np.clip(np.rint(mesh.x).astype(int), half + search, w - half - search))
    offsets = np.arange(-half, half, dtype=np.float64)
    rows: list[tuple[float, float, int, float, float, float]] = []
    for cy in centres_y:
        for cx in centres_x:
            window = labels[cy - half : cy + half, cx - half : cx + half]
            template = fixed[cy - half : cy + half, cx - half : cx + half]
            around = np.s_[
                cy - half - search : cy + half + search, cx - half - search : cx + half + search
            ]
            region, region_labels = warped[around], labels[around]
            for side, own in _pieces(window):
                if float(template[own].std()) < 1e-6:
                    continue
                region_own = region_labels == side
                if own.all() and region_own.all():
                    score = cv2.matchTemplate(region, template, cv2.TM_CCOEFF_NORMED)
                else:
                    score = _masked_ncc(region, region_own, template, own)
                score = np.nan_to_num(score, nan=-1.0, posinf=-1.0, neginf=-1.0)
                dy, dx, value = _subpixel_peak(score)
                if value < min_ncc or max(abs(dy), abs(dx)) >= search - 0.5:
                    continue
                oy, ox = np.nonzero(own)
                rows.append(
                    (cy + offsets[oy].mean(), cx + offsets[ox].mean(), side, dy, dx, value**2)
                )
    table = np.array(rows, dtype=np.float64).reshape(-1, 6)
    return _Measurements(
        y=table[:, 0],
        x=table[:, 1],
        side=table[:, 2].astype(int),
        shift=table[:, 3:5].T.copy(),
        weight=table[:, 5].copy(),
    )


def _masked_ncc(
    region: np.ndarray, region_mask: np.ndarray, template: np.ndarray, template_mask: np.ndarray
) -> np.ndarray:
    """Normalised cross-correlation with a mask on both images (Padfield 2012), valid mode.

    Each shift is scored on the pixels both masks keep, so the defect and the other side
    of a cut (on either image) do not pull the peak; shifts where fewer than a third of
    the template's pixels overlap score -1.
    """
    import cv2

    n_mask = region_mask.astype(np.float32)
    t_mask = template_mask.astype(np.float32)
    w_ = region.astype(np.float32) * n_mask
    t_ = template.astype(np.float32) * t_mask

    def corr(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
        return cv2.matchTemplate(image, kernel, cv2.TM_CCORR).astype(np.float64)

    count = corr(n_mask, t_mask)
    enough = count >= max(1.0, float(t_mask.sum()) / 3.0)
    count = np.maximum(count, 1.0)
    sum_t = corr(n_mask, t_)
    sum_w = corr(w_, t_mask)
    numerator = corr(w_, t_) - sum_t * sum_w / count
    var_t = corr(n_mask, t_ * t_) - sum_t**2 / count
    var_w = corr(w_ * w_, t_mask) - sum_w**2 / count
    denominator = np.sqrt(np.maximum(var_t, 0.0) * np.maximum(var_w, 0.0))
    scale = max(float(denominator.max()), 1e-12)
    ok = enough & (denominator > 1e-6 * scale)
    return np.where(ok, numerator / np.where(ok, denominator, 1.0), -1.0).astype(np.float32)


def _pieces(window: np.ndarray) -> list[tuple[int, np.ndarray]]:
    """The pieces of tissue in a window: per side, each connected part of at least a quarter.

    A window that a cut crosses (the defect, or the jump where a crack's sides meet) gives
    one piece per side of it, so no patch mixes the two sides.
    """
    low, high = int(window.min()), int(window.max())
    if low == high:
        return [(low, np.ones(window.shape, bool))] if low > 0 else []
    quarter = 0.25 * window.size
    out = []
    for side in np.flatnonzero(np.bincount(window.ravel())):
        if side == 0:
            continue
        mine = window == side
        if mine.sum() < quarter:
            continue
        parts, n = ndimage.label(mine)
        if n == 1:
            out.append((int(side), mine))
            continue
        sizes = np.bincount(parts.ravel())
        out += [(int(side), parts == k) for k in range(1, n + 1) if sizes[k] >= quarter]
    return out


def _interpolation(y: np.ndarray, x: np.ndarray, mesh: _Mesh) -> tuple[np.ndarray, np.ndarray]:
    """Bilinear weights ``(n, 4)`` and flat node indices ``(n, 4)`` of points on the grid."""
    gh, gw = mesh.shape
    s = mesh.spacing
    centre = (s - 1) / 2.0
    fy = np.clip((y - centre) / s, 0.0, gh - 1.0)
    fx = np.clip((x - centre) / s, 0.0, gw - 1.0)
    i0 = np.minimum(np.floor(fy).astype(int), max(gh - 2, 0))
    j0 = np.minimum(np.floor(fx).astype(int), max(gw - 2, 0))
    ty, tx = fy - i0, fx - j0
    i1, j1 = np.minimum(i0 + 1, gh - 1), np.minimum(j0 + 1, gw - 1)
    index = np.stack([i0 * gw + j0, i0 * gw + j1, i1 * gw + j0, i1 * gw + j1], axis=1)
    weight = np.stack([(1 - ty) * (1 - tx), (1 - ty) * tx, ty * (1 - tx), ty * tx], axis=1)
    return weight, index


def _relax_side(
    data: _Measurements, pick: np.ndarray, owned: np.ndarray, mesh: _Mesh, stiffness: float
) -> np.ndarray:
    """Solve one side's mesh: data springs at the measurements, springs between its nodes.

    Minimises ``sum_m w_m |B_m u - d_m|^2 + k sum_(i,j) |u_i - u_j|^2 + eps |u|^2``, where
    ``B_m`` interpolates the mesh bilinearly at measurement ``m`` and the springs join the
    side's 8-neighbour nodes (diagonals at half strength). Returns ``(2, gh, gw)``.
    """
    gh, gw = mesh.shape
    n = gh * gw
    idx = np.arange(n).reshape(gh, gw)
    flat_owned = owned.ravel()
    rows, cols, vals = [], [], []
    for dy, dx, k in ((0, 1, 1.0), (1, 0, 1.0), (1, 1, 0.5), (1, -1, 0.5)):
        a = idx[: gh - dy, max(0, -dx) : gw - max(0, dx)].ravel()
        b = idx[dy:, max(0, dx) : gw + min(0, dx)].ravel()
        keep = flat_owned[a] & flat_owned[b]
        a, b = a[keep], b[keep]
        c = stiffness * k
        rows += [a, b, a, b]
        cols += [a, b, b, a]
        vals += [np.full(a.size, c)] * 2 + [np.full(a.size, -c)] * 2
    weight, index = _interpolation(data.y[pick], data.x[pick], mesh)
    wm = data.weight[pick]
    # Data term B^T W B and B^T W d.
    for p in range(4):
        for q in range(4):
            rows.append(index[:, p])
            cols.append(index[:, q])
            vals.append(wm * weight[:, p] * weight[:, q])
    ridge = np.where(flat_owned, 1e-4 * stiffness, 1.0)
    matrix = (
        sparse.coo_matrix(
            (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n)
        ).tocsr()
        + sparse.diags(ridge)
    ).tocsc()
    solve = sparse_linalg.factorized(matrix)
    out = np.zeros((2, gh, gw))
    for c in range(2):
        rhs = np.zeros(n)
        np.add.at(rhs, index.ravel(), (wm[:, None] * weight * data.shift[c][pick][:, None]).ravel())
        out[c] = solve(rhs).reshape(gh, gw)
    out[:, ~owned] = 0.0
    return out


def _sample_side(
    nodes: np.ndarray, data: _Measurements, pick: np.ndarray, mesh: _Mesh
) -> np.ndarray:
    weight, index = _interpolation(data.y[pick], data.x[pick], mesh)
    flat = nodes.reshape(2, -1)
    return np.stack([(flat[c][index] * weight).sum(axis=1) for c in range(2)])


def _relax(
    data: _Measurements, mesh: _Mesh, options: ElasticOptions
) -> tuple[list[np.ndarray | None], int]:
    """Relax each side's mesh; drop measurements far from it and relax again (twice at most).

    Returns the node values per side (None for a side without measurements) and the
    number of measurements kept.
    """
    solutions: list[np.ndarray | None] = []
    kept = 0
    for side, owned in enumerate(mesh.owned, start=1):
        pick = np.nonzero((data.side == side) & (data.weight > 0))[0]
        if pick.size == 0:
            solutions.append(None)
            continue
        nodes = _relax_side(data, pick, owned, mesh, options.stiffness)
        for _ in range(2):
            misfit = np.sqrt(
                ((_sample_side(nodes, data, pick, mesh) - data.shift[:, pick]) ** 2).sum(0)
            )
            bad = misfit > options.outlier_px
            if not bad.any() or bad.all():
                break
            pick = pick[~bad]
            nodes = _relax_side(data, pick, owned, mesh, options.stiffness)
        kept += pick.size
        solutions.append(nodes)
    return solutions, kept


def _to_pixels(solutions: list[np.ndarray | None], mesh: _Mesh, labels: np.ndarray) -> np.ndarray:
    """Interpolate each side's mesh bilinearly to that side's pixels."""
    import cv2

    h, w = labels.shape
    s = mesh.spacing
    gh, gw = mesh.shape
    out = np.zeros((2, h, w), np.float32)
    for side, nodes in enumerate(solutions, start=1):
        if nodes is None:
            continue
        pixels = labels == side
        for c in range(2):
            grid = nodes[c].astype(np.float32)
            up = cv2.resize(grid, (gw * s, gh * s), interpolation=cv2.INTER_LINEAR)[:h, :w]
            out[c][pixels] = up[pixels]
    return out


def _compose(correction: np.ndarray, field: np.ndarray, labels_f: np.ndarray) -> np.ndarray:
    """``u(p) + field(p + u(p))``; where ``p + u`` lands on another side, ``u + field(p)``.

    ``labels_f`` is the side label map as float32 (read with nearest-neighbour).
    """
    import cv2

    _, h, w = field.shape
    sy = np.arange(h, dtype=np.float32)[:, None] + correction[0]
    sx = np.arange(w, dtype=np.float32)[None, :] + correction[1]
    out = np.empty_like(correction)
    landed = cv2.remap(labels_f, sx, sy, cv2.INTER_NEAREST, borderMode=cv2.BORDER_REPLICATE)
    other = landed != labels_f
    for c in range(2):
        moved = cv2.remap(field[c], sx, sy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        np.copyto(moved, field[c], where=other)
        np.add(moved, correction[c], out=out[c])
    return out


def _checked(options: ElasticOptions) -> ElasticOptions:
    from emkit.errors import InputError

    if options.spacing_px is not None and int(options.spacing_px) < 4:
        raise InputError(f"elastic spacing_px must be >= 4, got {options.spacing_px}")
    if options.patch_px is not None and int(options.patch_px) < 8:
        raise InputError(f"elastic patch_px must be >= 8, got {options.patch_px}")
    if not options.search_px or min(int(v) for v in options.search_px) < 1:
        raise InputError(f"elastic search_px must be >= 1 px each, got {options.search_px}")
    if not (np.isfinite(options.stiffness) and options.stiffness > 0):
        raise InputError(f"elastic stiffness must be > 0, got {options.stiffness}")
    if not (np.isfinite(options.outlier_px) and options.outlier_px > 0):
        raise InputError(f"elastic outlier_px must be > 0, got {options.outlier_px}")
    return options


def _fitting_searches(searches: tuple[int, ...], patch: int, shape: tuple[int, ...]) -> list[int]:
    """The passes whose search range leaves room for a patch of at least 16 px."""
    room = min(shape[0], shape[1]) - 2
    return [int(s) for s in searches if room - 2 * int(s) >= max(16, min(patch, 16))]


def _as_float(image: np.ndarray) -> np.ndarray:
    out = np.asarray(image, dtype=np.float32)
    return np.ascontiguousarray(out)


def refine_elastic(
    fixed: np.ndarray,
    moving: np.ndarray,
    field: np.ndarray,
    valid: np.ndarray,
    *,
    defect_mask: np.ndarray | None = None,
    fixed_mask: np.ndarray | None = None,
    options: ElasticOptions | None = None,
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Refine a registration field elastically, side by side of the defect.

    Parameters
    ----------
    fixed, moving : ndarray, shape (H, W)
        The two sections (any real dtype).
    field : ndarray of float32, shape (2, H, W)
        The registration to refine: ``(dy, dx)`` from each fixed pixel to the moving image.
    valid : ndarray of bool, shape (H, W)
        Fixed pixels with a counterpart (inside the moving image, off its defect).
    defect_mask : ndarray of bool, shape (H, W), optional
        The moving image's defect (to recompute ``valid`` after refinement).
    fixed_mask : ndarray of bool, shape (H, W), optional
        The fixed image's own defect: it cuts the mesh like the moving one and no patch
        reads it.
    options : ElasticOptions, optional

    Returns
    -------
    field : ndarray of float32, shape (2, H, W)
        The refined field (same convention).
    valid : ndarray of bool, shape (H, W)
        Where it has a counterpart.
    info : dict
        Nodes, trusted nodes per pass, mean/largest correction, seconds.
    """
    import time

    from emkit.register._field import field_validity

    opts = _checked(options or ElasticOptions())
    t0 = time.perf_counter()
    # Zero-mean copies: the correlations sum products, which lose precision in float32 on
    # data with a large offset (e.g. 16-bit counts around 30,000 with little contrast).
    fixed_f = _as_float(fixed)
    fixed_f -= np.float32(fixed_f.mean())
    moving_f = _as_float(moving)
    moving_f -= np.float32(moving_f.mean())
    spacing = int(opts.spacing_px or _default_spacing(fixed_f.shape))
    patch = int(opts.patch_px or max(32, 2 * spacing))
    patch += patch % 2
    searches = _fitting_searches(opts.search_px, patch, fixed_f.shape)
    if not searches:
        # Too small for even one patch and its search range: nothing to refine.
        info = {"skipped": f"image {fixed_f.shape} smaller than a patch and its search"}
        return np.asarray(field, np.float32), valid, info
    patch = min(patch, min(fixed_f.shape) - 2 * max(searches) - 2)
    patch -= patch % 2
    tissue = valid if fixed_mask is None else valid & ~np.asarray(fixed_mask, bool)
    labels = _fill_labels(side_labels(field, tissue), tissue)
    mesh = _build_mesh(labels, spacing)
    labels_f = labels.astype(np.float32)
    current = np.ascontiguousarray(field, dtype=np.float32)
    total = np.zeros_like(current)
    passes: list[dict[str, Any]] = []
    mean_fill = float(fixed_f[valid].mean()) if valid.any() else 0.0
    for search in searches:
        warped = warp_image(moving_f, current, valid=valid, fill_value=mean_fill)
        data = _measure(fixed_f, warped, labels, mesh, patch, int(search), opts.min_ncc)
        solutions, kept = _relax(data, mesh, opts)
        correction = _to_pixels(solutions, mesh, labels)
        current = _compose(correction, current, labels_f)
        total += correction
        passes.append(
            {
                "search_px": int(search),
                "measurements": int(data.weight.size),
                "trusted": int(kept),
                "mean_correction_px": round(
                    float(np.sqrt((correction**2).sum(axis=0))[labels > 0].mean())
                    if (labels > 0).any()
                    else 0.0,
                    3,
                ),
            }
        )
    # Pixels the model could not map (no side) stay without a counterpart; the fixed
    # image's defect keeps its (unrefined) field.
    mapped = labels > 0 if fixed_mask is None else (labels > 0) | np.asarray(fixed_mask, bool)
    new_valid = valid & mapped & field_validity(current, defect_mask, moving_f.shape)
    magnitude = np.sqrt((total**2).sum(axis=0))[labels > 0]
    info = {
        "spacing_px": spacing,
        "patch_px": patch,
        "nodes": int(sum(int(o.sum()) for o in mesh.owned)),
        "sides": int(labels.max()),
        "passes": passes,
        "correction_mean_px": round(float(magnitude.mean()), 3) if magnitude.size else 0.0,
        "correction_max_px": round(float(magnitude.max()), 3) if magnitude.size else 0.0,
        "seconds": round(time.perf_counter() - t0, 3),
    }
    return current, new_valid, info


def invert_field(field: np.ndarray, start: np.ndarray, *, iterations: int = 8) -> np.ndarray:
    """The inverse of ``field`` (fixed -> moving): for each moving pixel, its fixed position.

    Solves ``p + field(p) = q`` for ``p = q + inverse(q)`` by fixed-point steps
    ``p <- q - field(p)`` from ``start`` (an inverse that is already right about which
    side of a defect each pixel is on, e.g. the affine model's forward field).
    """
    import cv2

    _, h, w = field.shape
    qy = np.arange(h, dtype=np.float32)[:, None]
    qx = np.arange(w, dtype=np.float32)[None, :]
    hw2 = np.ascontiguousarray(np.moveaxis(field, 0, -1).astype(np.float32))
    inverse = np.asarray(start, dtype=np.float32).copy()
    for _ in range(iterations):
        py = (qy + inverse[0]).astype(np.float32)
        px = (qx + inverse[1]).astype(np.float32)
        at = cv2.remap(hw2, px, py, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        inverse = -np.moveaxis(at, -1, 0)
    return inverse.astype(np.float32)
