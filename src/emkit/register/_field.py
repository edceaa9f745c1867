"""Per-pixel affines on the moving image, their inverse as a field, and warping.

The expected affine ``A(p)`` is stored on the coarse grid (7 numbers per cell: six affine
parameters and a has-value flag) plus, for full-resolution pixels next to the defect, the
index of the pixel whose affine they take (:func:`._pathdist.band_sources`). Nothing of
size ``n_clusters x H x W`` is ever held.

The field of the fixed image is the inverse map: for each fixed pixel ``q`` the moving
position ``p`` with ``A(p) p = q``, found by Newton steps ``p <- p - J^-1 (A(p) p - q)``
(``J`` the linear part of ``A(p)``), first on a sparse grid, then at every pixel.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from emkit.register._pathdist import CoarseGrid

_STRIP_ROWS = 256


@dataclass
class AffineMap:
    """The per-pixel expected affine of the moving image (moving -> fixed, ``(x, y)``).

    Attributes
    ----------
    grid : CoarseGrid
    params : ndarray of float32, shape (h, w, 8)
        Affine parameters premultiplied by the has-value flag (6), the flag, and a pad.
    band_src : ndarray of int32, shape (H, W) or None
        See :func:`._pathdist.band_sources`; None when nothing is blocked.
    fallback : ndarray, shape (2, 3)
        Affine for pixels that no cluster reaches (the global affine).
    """

    grid: CoarseGrid
    params: np.ndarray
    band_src: np.ndarray | None
    fallback: np.ndarray

    @classmethod
    def build(
        cls,
        grid: CoarseGrid,
        cell_params: np.ndarray,
        band_src: np.ndarray | None,
        fallback: np.ndarray,
    ) -> AffineMap:
        has = cell_params[..., 6:7]
        packed = np.zeros(cell_params.shape[:2] + (8,), dtype=np.float32)
        packed[..., :6] = cell_params[..., :6] * has
        packed[..., 6:7] = has
        return cls(grid=grid, params=packed, band_src=band_src, fallback=fallback)

    def __post_init__(self) -> None:
        # cv2.remap takes at most 4 channels, contiguous.
        self.params_lo = np.ascontiguousarray(self.params[..., :4])
        self.params_hi = np.ascontiguousarray(self.params[..., 4:])

    def sample(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Affine parameters at full-resolution positions.

        Parameters
        ----------
        x, y : ndarray of float32, same 2D shape
            Positions in the moving image (pixels).

        Returns
        -------
        ndarray of float32, shape x.shape + (6,)
        """
        import cv2

        h_full, w_full = self.grid.image_shape
        x = x.astype(np.float32, copy=False)
        y = y.astype(np.float32, copy=False)
        no_value = np.zeros(x.shape, dtype=bool)
        if self.band_src is not None:
            xi = np.clip(np.rint(x), 0, w_full - 1).astype(np.intp)
            yi = np.clip(np.rint(y), 0, h_full - 1).astype(np.intp)
            src = self.band_src[yi, xi]
            in_band = src >= 0
            if in_band.any():
                x = x.copy()
                y = y.copy()
                x[in_band] = (src[in_band] % w_full).astype(np.float32)
                y[in_band] = (src[in_band] // w_full).astype(np.float32)
            no_value = src == -2
        b = float(self.grid.bin_px)
        cx = (x + 0.5) / b - 0.5
        cy = (y + 0.5) / b - 0.5
        lo = cv2.remap(self.params_lo, cx, cy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        hi = cv2.remap(self.params_hi, cx, cy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        weight = hi[..., 2]
        out = np.empty(x.shape + (6,), dtype=np.float32)
        out[..., :4] = lo
        out[..., 4:] = hi[..., :2]
        ok = (weight > 1e-3) & ~no_value
        out[ok] /= weight[ok, None]
        out[~ok] = self.fallback.ravel().astype(np.float32)
        return out


def _newton(
    amap: AffineMap, qx: np.ndarray, qy: np.ndarray, px: np.ndarray, py: np.ndarray, n_iter: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Newton steps towards ``A(p) p = q``; returns ``(px, py, residual_px)``."""
    residual = np.full(qx.shape, np.inf, dtype=np.float32)
    for _ in range(n_iter):
        a = amap.sample(px, py)
        rx = a[..., 0] * px + a[..., 1] * py + a[..., 2] - qx
        ry = a[..., 3] * px + a[..., 4] * py + a[..., 5] - qy
        det = a[..., 0] * a[..., 4] - a[..., 1] * a[..., 3]
        det = np.where(np.abs(det) > 1e-6, det, 1.0)
        px = px - (a[..., 4] * rx - a[..., 1] * ry) / det
        py = py - (-a[..., 3] * rx + a[..., 0] * ry) / det
    a = amap.sample(px, py)
    rx = a[..., 0] * px + a[..., 1] * py + a[..., 2] - qx
    ry = a[..., 3] * px + a[..., 4] * py + a[..., 5] - qy
    residual = np.hypot(rx, ry)
    return px, py, residual


def invert_affine_map(
    amap: AffineMap,
    fixed_shape: tuple[int, int],
    *,
    start_affine: np.ndarray,
    step: int | None = None,
    coarse_iter: int = 10,
    fine_iter: int = 4,
    tolerance_px: float = 0.1,
    smooth_px: float = 0.05,
    defect: np.ndarray | None = None,
    candidates: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The field of the fixed image: for each fixed pixel, its position in the moving one.

    Newton iterations run on a grid of every ``step``-th pixel. Where the result is smooth
    (second differences below ``smooth_px`` and converged) it is interpolated bilinearly;
    in grid cells beside a jump (along the defect) every pixel gets its own iterations.

    Parameters
    ----------
    amap : AffineMap
        Per-pixel affine, moving ``(x, y)`` -> fixed ``(x, y)``.
    fixed_shape : (int, int)
        ``(H, W)`` of the fixed image.
    start_affine : ndarray, shape (2, 3)
        A global affine (moving -> fixed) whose inverse starts the iterations.
    defect : ndarray of bool, shape (H_m, W_m), optional
        Moving pixels without tissue. Defect pixels carry the affine of the nearest
        tissue, so a solution can fall inside the defect although the fixed pixel has a
        true counterpart on the other side (a crack); such pixels are solved again from
        each of ``candidates``.
    candidates : ndarray, shape (k, 2, 3), optional
        The cluster affines (moving -> fixed) used as restarts.

    Returns
    -------
    field : ndarray of float32, shape (2, H, W)
        ``(dy, dx)`` to the moving position.
    converged : ndarray of bool, shape (H, W)
        Where ``A(p) p = q`` holds within ``tolerance_px``; elsewhere (e.g. tissue that a
        fold hides) the fixed pixel has no counterpart.
    """
    import cv2
    from scipy import ndimage

    h, w = fixed_shape
    if step is None:
        # About 150,000 grid nodes; bilinear interpolation of a smooth field between them
        # errs by at most smooth_px / 8.
        step = max(4, int(np.ceil(np.sqrt(h * w / 150_000))))
    inv = cv2.invertAffineTransform(start_affine.astype(np.float64))
    gy = np.arange(0, (h - 1) + step, step, dtype=np.float32)
    gx = np.arange(0, (w - 1) + step, step, dtype=np.float32)
    qx, qy = np.meshgrid(gx, gy)
    px = (inv[0, 0] * qx + inv[0, 1] * qy + inv[0, 2]).astype(np.float32)
    py = (inv[1, 0] * qx + inv[1, 1] * qy + inv[1, 2]).astype(np.float32)
    px, py, residual = _newton(amap, qx, qy, px, py, coarse_iter)
    grid_d = np.stack([px - qx, py - qy], axis=-1).astype(np.float32)

    # Grid nodes where bilinear interpolation cannot be trusted: not converged, or the
    # field bends (a jump across the defect shows as a large second difference).
    rough = residual >= tolerance_px
    for axis in (0, 1):
        second = np.abs(np.diff(grid_d, n=2, axis=axis)).max(axis=-1) > smooth_px
        pad = [(0, 0), (0, 0)]
        pad[axis] = (1, 1)
        rough |= np.pad(second, pad)
    rough = ndimage.binary_dilation(rough, structure=np.ones((3, 3), bool))
    # A pixel is interpolated from the 4 nodes of its cell; the cell is rough if any is.
    rough_cell = rough[:-1, :-1] | rough[1:, :-1] | rough[:-1, 1:] | rough[1:, 1:]

    field = np.empty((2, h, w), dtype=np.float32)
    converged = np.ones((h, w), dtype=bool)
    per_pixel = np.zeros((h, w), dtype=bool)
    xs = np.arange(w, dtype=np.float32)
    cell_x = np.minimum(np.arange(w) // step, rough_cell.shape[1] - 1)
    for top in range(0, h, _STRIP_ROWS):
        bottom = min(top + _STRIP_ROWS, h)
        ys = np.arange(top, bottom, dtype=np.float32)
        sy, sx = np.meshgrid(ys, xs, indexing="ij")
        d = cv2.remap(
            grid_d, sx / step, sy / step, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
        )
        cell_y = np.minimum(np.arange(top, bottom) // step, rough_cell.shape[0] - 1)
        todo = rough_cell[cell_y[:, None], cell_x[None, :]]
        per_pixel[top:bottom] = todo
        if todo.any():
            tx, ty = sx[todo], sy[todo]
            fx, fy, res = _newton_flat(
                amap, tx, ty, tx + d[..., 0][todo], ty + d[..., 1][todo], fine_iter
            )
            d[..., 0][todo] = fx - tx
            d[..., 1][todo] = fy - ty
            converged[top:bottom][todo] = res < tolerance_px
        field[0, top:bottom] = d[..., 1]
        field[1, top:bottom] = d[..., 0]
    if defect is not None and candidates is not None and len(candidates) > 1:
        # Only pixels beside a jump of the field can have landed in the defect.
        _restart_in_defect(amap, field, converged, per_pixel, defect, candidates, tolerance_px)
    return field, converged


def _restart_in_defect(
    amap: AffineMap,
    field: np.ndarray,
    converged: np.ndarray,
    where: np.ndarray,
    defect: np.ndarray,
    candidates: np.ndarray,
    tolerance_px: float,
) -> None:
    """Solve again, from each candidate affine's inverse, the fixed pixels (among
    ``where``) whose solution lies in the defect; keep the first converged solution off
    it (otherwise the solution in the defect stays: the pixel has no data)."""
    import cv2

    h_m, w_m = defect.shape
    h, w = converged.shape

    def in_defect(px: np.ndarray, py: np.ndarray) -> np.ndarray:
        ix = np.clip(np.rint(px), 0, w_m - 1).astype(np.intp)
        iy = np.clip(np.rint(py), 0, h_m - 1).astype(np.intp)
        return defect[iy, ix]

    # Pixels that did not converge are tissue a fold hides (no solution anywhere); those
    # that converged into the defect may have a true solution on the other side.
    ys, xs = np.nonzero(where & converged)
    bad = in_defect(xs + field[1, ys, xs], ys + field[0, ys, xs])
    yb, xb = ys[bad], xs[bad]
    if yb.size == 0:
        return
    # Clusters on one side of a fold have nearly the same affine: one restart is enough.
    corners = np.array([[0, 0, 1], [w - 1, 0, 1], [0, h - 1, 1], [w - 1, h - 1, 1]], float).T
    distinct: list[np.ndarray] = []
    for affine in candidates:
        if all(np.abs((affine - other) @ corners).max() > 2.0 for other in distinct):
            distinct.append(affine)
    qx = xb.astype(np.float32)
    qy = yb.astype(np.float32)
    todo = np.ones(yb.size, dtype=bool)
    for affine in distinct:
        if not todo.any():
            break
        inv = cv2.invertAffineTransform(affine.astype(np.float64))
        sx = inv[0, 0] * qx[todo] + inv[0, 1] * qy[todo] + inv[0, 2]
        sy = inv[1, 0] * qx[todo] + inv[1, 1] * qy[todo] + inv[1, 2]
        fx, fy, res = _newton_flat(amap, qx[todo], qy[todo], sx, sy, 6)
        ok = (res < tolerance_px) & ~in_defect(fx, fy)
        idx = np.flatnonzero(todo)[ok]
        field[0, yb[idx], xb[idx]] = fy[ok] - qy[idx]
        field[1, yb[idx], xb[idx]] = fx[ok] - qx[idx]
        converged[yb[idx], xb[idx]] = True
        todo[idx] = False


def _newton_flat(
    amap: AffineMap, qx: np.ndarray, qy: np.ndarray, px: np.ndarray, py: np.ndarray, n_iter: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`_newton` on 1D arrays (cv2.remap needs 2D maps narrower than 32767)."""
    n = qx.size
    width = 4096
    rows = -(-n // width)
    pad = rows * width - n

    def shape2d(a: np.ndarray) -> np.ndarray:
        return np.pad(a.astype(np.float32), (0, pad), mode="edge").reshape(rows, width)

    fx, fy, res = _newton(amap, shape2d(qx), shape2d(qy), shape2d(px), shape2d(py), n_iter)
    return fx.ravel()[:n], fy.ravel()[:n], res.ravel()[:n]


def forward_map_field(amap: AffineMap, shape: tuple[int, int]) -> np.ndarray:
    """For each moving pixel ``p``, ``(dy, dx)`` from ``p`` to ``A(p) p`` in the fixed image.

    Returns
    -------
    ndarray of float32, shape (2, H, W)
    """
    h, w = shape
    out = np.empty((2, h, w), dtype=np.float32)
    xs = np.arange(w, dtype=np.float32)
    for top in range(0, h, _STRIP_ROWS):
        bottom = min(top + _STRIP_ROWS, h)
        sy, sx = np.meshgrid(np.arange(top, bottom, dtype=np.float32), xs, indexing="ij")
        a = amap.sample(sx, sy)
        out[1, top:bottom] = a[..., 0] * sx + a[..., 1] * sy + a[..., 2] - sx
        out[0, top:bottom] = a[..., 3] * sx + a[..., 4] * sy + a[..., 5] - sy
    return out


def affine_field(affine: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Field ``(2, H, W)`` of one global affine given as moving -> fixed ``(x, y)``."""
    import cv2

    h, w = shape
    inv = cv2.invertAffineTransform(affine.astype(np.float64))
    yy = np.arange(h, dtype=np.float64)[:, None]
    xx = np.arange(w, dtype=np.float64)[None, :]
    field = np.empty((2, h, w), dtype=np.float32)
    field[1] = inv[0, 0] * xx + inv[0, 1] * yy + inv[0, 2] - xx
    field[0] = inv[1, 0] * xx + inv[1, 1] * yy + inv[1, 2] - yy
    return field


def field_validity(
    field: np.ndarray, defect_mask: np.ndarray | None, moving_shape: tuple[int, int]
) -> np.ndarray:
    """Fixed pixels whose moving position lies inside the image and off the defect.

    The defect is grown by one pixel because a bilinear read touches the 2x2 pixels around
    the position.
    """
    from emkit.register._pathdist import grow

    h_m, w_m = moving_shape
    _, h, w = field.shape
    py = np.arange(h, dtype=np.float32)[:, None] + field[0]
    px = np.arange(w, dtype=np.float32)[None, :] + field[1]
    valid = (px >= 0) & (px <= w_m - 1) & (py >= 0) & (py <= h_m - 1)
    if defect_mask is not None and defect_mask.any():
        grown = grow(defect_mask, 1)
        iy = np.clip(np.rint(py), 0, h_m - 1).astype(np.intp)
        ix = np.clip(np.rint(px), 0, w_m - 1).astype(np.intp)
        valid &= ~grown[iy, ix]
    return valid


def warp_image(
    moving: np.ndarray,
    field: np.ndarray,
    *,
    valid: np.ndarray | None = None,
    fill_value: float = 0.0,
) -> np.ndarray:
    """Resample ``moving`` onto the fixed grid: ``warped[y, x] = moving[y + dy, x + dx]``.

    Bilinear (``cv2.remap``); positions outside ``moving`` and pixels where ``valid`` is
    False get ``fill_value``.

    Parameters
    ----------
    moving : ndarray, shape (H_m, W_m)
        Any real dtype; the result has the same dtype (integers are rounded).
    field : ndarray of float32, shape (2, H, W)
        ``(dy, dx)`` per fixed pixel.
    valid : ndarray of bool, shape (H, W), optional
    fill_value : float

    Returns
    -------
    ndarray, shape (H, W), dtype of ``moving``
    """
    import cv2

    _, h, w = field.shape
    native = moving.dtype in (np.uint8, np.uint16, np.int16, np.float32, np.float64)
    src = moving if native else moving.astype(np.float32)
    out = np.empty((h, w), dtype=src.dtype)
    xs = np.arange(w, dtype=np.float32)
    for top in range(0, h, _STRIP_ROWS * 4):
        bottom = min(top + _STRIP_ROWS * 4, h)
        sy = np.arange(top, bottom, dtype=np.float32)[:, None] + field[0, top:bottom]
        sx = xs[None, :] + field[1, top:bottom]
        out[top:bottom] = cv2.remap(
            src,
            sx.astype(np.float32),
            sy.astype(np.float32),
            cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=float(fill_value),
        )
    if valid is not None:
        out[~valid] = fill_value
    if not native:
        if np.issubdtype(moving.dtype, np.integer):
            info = np.iinfo(moving.dtype)
            out = np.clip(np.rint(out), info.min, info.max)
        out = out.astype(moving.dtype)
    return out


def compose_fields(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """Chain two fields: first ``outer`` (frame A -> B), then ``inner`` (frame B -> C).

    ``result(q) = outer(q) + inner(q + outer(q))``, with ``inner`` read bilinearly (edge
    values repeat outside). Both are ``(2, H, W)`` float32 in the module's convention.
    """
    import cv2

    _, h, w = outer.shape
    sy = (np.arange(h, dtype=np.float32)[:, None] + outer[0]).astype(np.float32)
    sx = (np.arange(w, dtype=np.float32)[None, :] + outer[1]).astype(np.float32)
    inner_hw2 = np.ascontiguousarray(np.moveaxis(inner, 0, -1))
    moved = cv2.remap(inner_hw2, sx, sy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return (outer + np.moveaxis(moved, -1, 0)).astype(np.float32)


def mask_at(mask: np.ndarray, field: np.ndarray) -> np.ndarray:
    """``mask`` read at ``q + field(q)`` for every pixel ``q`` (nearest pixel; False outside)."""
    h, w = mask.shape
    py = np.rint(np.arange(h)[:, None] + field[0]).astype(np.intp)
    px = np.rint(np.arange(w)[None, :] + field[1]).astype(np.intp)
    inside = (py >= 0) & (py < h) & (px >= 0) & (px < w)
    out = np.zeros((h, w), dtype=bool)
    out[inside] = mask[py[inside], px[inside]]
    return out
