"""Label maps from a particle list: balls of each class's radius (what training needs when
a user has only coordinates; the original detector left this tool out)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from emkit.errors import InputError

__all__ = ["particle_label_maps", "radii_for_classes", "template_label_maps"]


def radii_for_classes(
    classes: np.ndarray, radii: Sequence[float] | Mapping[int, float], what: str = "--radius-A"
) -> dict[int, float]:
    """Radius of every class present; a class without one is an error.

    ``radii`` is a sequence (class ``k`` gets ``radii[k - 1]``) or a mapping class -> radius.
    """
    table = ({k + 1: float(r) for k, r in enumerate(radii)} if not isinstance(radii, Mapping)
             else {int(k): float(r) for k, r in radii.items()})
    present = sorted({int(c) for c in np.unique(classes)})
    missing = [c for c in present if c not in table]
    if missing:
        raise InputError(f"class {missing[0]} appears in the particle list but {what} gives "
                         f"only {len(table)} radius(es); give one radius per class")
    bad = [r for r in table.values() if not (r > 0 and np.isfinite(r))]
    if bad:
        raise InputError(f"radii must be positive, got {bad[0]}")
    return table


def particle_label_maps(
    shape_zyx: Sequence[int],
    zyx: np.ndarray,
    classes: np.ndarray,
    radius_px: Sequence[float] | Mapping[int, float],
) -> tuple[np.ndarray, np.ndarray]:
    """Instance and class label maps: a ball of its class's radius about each particle.

    Where balls overlap, each voxel goes to the nearest centre (so touching particles stay
    separate instances).

    Parameters
    ----------
    shape_zyx : (nz, ny, nx)
    zyx : ndarray, shape (n, 3)
        Centres in voxel index coordinates ``(z, y, x)``.
    classes : ndarray, shape (n,)
        1-based classes.
    radius_px : sequence or mapping
        Radius in voxels per class (``radius_px[k - 1]`` for class ``k``, or a mapping).

    Returns
    -------
    instances : ndarray, (nz, ny, nx), int32
        0 background, ``i + 1`` for particle ``i``.
    class_map : ndarray, (nz, ny, nx), uint8
        0 background, else the particle's class.
    """
    dims = tuple(int(s) for s in shape_zyx)
    pts = np.asarray(zyx, np.float64).reshape(-1, 3)
    cls = np.asarray(classes, np.int64).reshape(-1)
    if len(cls) != len(pts):
        raise InputError(f"{len(cls)} classes for {len(pts)} particles")
    table = radii_for_classes(cls, radius_px)
    if len(table) and max(table) > 255:
        raise InputError("at most 255 classes")
    instances = np.zeros(dims, np.int32)
    class_map = np.zeros(dims, np.uint8)
    best = np.full(dims, np.inf, np.float32)
    for i, (centre, k) in enumerate(zip(pts, cls)):
        r = table[int(k)]
        lo = np.maximum(np.floor(centre - r).astype(int), 0)
        hi = np.minimum(np.ceil(centre + r).astype(int) + 1, dims)
        if np.any(hi <= lo):
            continue
        box = tuple(slice(a, b) for a, b in zip(lo, hi))
        grid = np.ogrid[box]
        d2 = sum((g - c) ** 2 for g, c in zip(grid, centre)).astype(np.float32)
        take = (d2 <= r * r) & (d2 < best[box])
        best[box][take] = d2[take]
        instances[box][take] = i + 1
        class_map[box][take] = int(k)
    return instances, class_map


def template_label_maps(
    shape_zyx: Sequence[int],
    zyx: np.ndarray,
    classes: np.ndarray,
    templates: Mapping[int, np.ndarray],
    rotations: np.ndarray | None = None,
    *,
    level: float = 0.1,
) -> tuple[np.ndarray, np.ndarray]:
    """Instance and class maps of the particles' own shapes: each class's template, turned
    by the particle's rotation, above ``level`` times its peak.

    Parameters
    ----------
    templates : mapping
        Class -> density map ``(z, y, x)`` at the tomogram's voxel size, centred on voxel
        ``box // 2``.
    rotations : ndarray, (n, 3, 3), optional
        Rotation of each particle on ``(x, y, z)`` (RELION sense; identity when None).

    Returns
    -------
    instances : int32, class_map : uint8
        As :func:`particle_label_maps`; where two particles' shapes overlap the first keeps
        the voxel.
    """
    from emkit.sim._placement import _render

    dims = tuple(int(s) for s in shape_zyx)
    pts = np.asarray(zyx, np.float64).reshape(-1, 3)
    cls = np.asarray(classes, np.int64).reshape(-1)
    missing = sorted({int(c) for c in cls} - set(int(k) for k in templates))
    if missing:
        raise InputError(f"class {missing[0]} appears in the particle list but has no template")
    if not 0 < level < 1:
        raise InputError(f"level must be between 0 and 1, got {level}")
    rots = np.broadcast_to(np.eye(3), (len(pts), 3, 3)) if rotations is None else rotations
    instances = np.zeros(dims, np.int32)
    class_map = np.zeros(dims, np.uint8)
    for i, (centre, k, rot) in enumerate(zip(pts, cls, rots)):
        template = np.asarray(templates[int(k)], np.float32)
        size = int(max(template.shape)) + 3
        start = np.floor(centre).astype(np.int64) - size // 2
        local = np.zeros((size + 2,) * 3, np.float32)
        _render(local, template, centre - start + 1, np.asarray(rot), 1)
        lo = np.maximum(start - 1, 0)
        hi = np.minimum(start - 1 + size + 2, dims)
        if np.any(hi <= lo):
            continue
        src = tuple(slice(int(a - s + 1), int(b - s + 1)) for a, b, s in zip(lo, hi, start))
        dst = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
        take = (local[src] > level * float(template.max())) & (instances[dst] == 0)
        instances[dst][take] = i + 1
        class_map[dst][take] = int(k)
    return instances, class_map
