"""A synthetic serial-section stack with ground truth: sections cut from a 3D texture.

Serial-section EM cuts a block of tissue into thin sections; neighbouring sections show
nearly the same structures (cells are many sections deep) but not the same pixels, and
each section is distorted on its own while it is cut and mounted (a small drift, a
smooth stretch, sometimes a fold or a crack). This module makes such a stack with the
true displacement of every section, so a stack registration is scored by its endpoint
error instead of by eye.

The model:

* **The tissue** is a 3D texture defined at every point of space (a function of the seed
  and ``cell_size_px`` only): Voronoi cells of about ``cell_size_px`` across on an
  irregularly warped lattice with dark membranes (fainter where a membrane runs nearly
  parallel to the section, as grazing membranes do), dark elongated organelles (capsules
  of a few sections' depth and more), small vesicles (dark rings that show in one or two
  sections), a grey level per cell and smooth shading that varies slowly in ``z``.
  The cells are stretched along ``z`` by ``cells_z_elongation``: by default they run
  straight through the stack (``inf``, as neurites cut across), so their walls do not
  move from section to section and the truth frame is what an aligner can recover;
  organelles and vesicles (not stretched) come and go, so neighbours still differ.
  With a finite elongation (e.g. 4) walls are oblique and move by a fraction of a pixel
  per section, coherently over many sections; an aligner that follows the tissue follows
  that drift too (it is real structure), and a score against the truth frame then
  measures it as error. Section ``i`` is the plane ``z = i * section_spacing``; with the
  default spacing (``0.12 * cell_size_px``) consecutive unwarped slices have an NCC of
  about 0.94, slices two apart about 0.89, six apart about 0.79 (384x384, seed 1).
* **The truth frame** is the texture's own ``(y, x)`` frame.
* **Each section** is warped on its own (independent draws, not a random walk): a small
  rigid drift (shift up to ``shift_px`` per axis, rotation up to ``rotation_deg`` about
  the centre) plus a smooth random field of at most ``elastic_px`` pixels with a
  correlation length of a quarter of the shorter image side. Section pixels are
  rendered from the texture at their truth positions directly (no resampling).
* **Damage**: ``n_damaged`` sections (never the first or the last, never two adjacent;
  fold and crack alternate) are folded or cracked by
  :func:`emkit.sim.sections.simulate_damaged_section` on top of their own warp (rendered
  with a margin, so the damage moves real tissue into view, not mirrored borders).
* **Noise**: a gain and offset per section and Gaussian noise.

Field convention (as everywhere in emkit): ``true_fields[i]`` has shape ``(2, H, W)``,
float32; for each truth-frame pixel ``p = (y, x)`` it is ``(dy, dx)`` to ``p``'s position
in section ``i``, so ``emkit.register.warp_image(section_i, true_fields[i])`` is the
truth-frame slice (on ``true_valid[i]``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from emkit.errors import InputError, ShapeError
from emkit.sim.sections import simulate_damaged_section, smooth_random_field

__all__ = [
    "SectionStack",
    "StackSection",
    "iter_section_stack",
    "simulate_section_stack",
    "stack_texture_slice",
]

_DEFECT_KINDS = ("fold", "crack")


@dataclass
class SectionStack:
    """A simulated serial-section stack with its ground truth.

    Attributes
    ----------
    sections : ndarray of uint8, shape (n, H, W)
        The sections as imaged.
    defect_masks : ndarray of bool, shape (n, H, W)
        True where section ``i`` shows a fold or a crack (section frame); all False for an
        undamaged section.
    true_fields : ndarray of float32, shape (n, 2, H, W)
        For each truth-frame pixel, ``(dy, dx)`` to its position in section ``i``. Finite
        everywhere; ``true_valid`` says where it means something.
    true_valid : ndarray of bool, shape (n, H, W)
        Truth-frame pixels whose tissue is visible in section ``i``: inside the section
        and not in (or hidden by) its defect.
    damaged : list of (int, str)
        ``(index, "fold" | "crack")`` of each damaged section.
    params : dict
        The texture, per-section warps (``sections``) and damage, for the record.
    """

    sections: np.ndarray
    defect_masks: np.ndarray
    true_fields: np.ndarray
    true_valid: np.ndarray
    damaged: list[tuple[int, str]]
    params: dict[str, Any] = field(default_factory=dict)


class StackSection(NamedTuple):
    """One section of :func:`iter_section_stack`."""

    section_index: int
    section: np.ndarray
    """(H, W) uint8."""
    defect_mask: np.ndarray
    """(H, W) bool, section frame."""
    true_field: np.ndarray
    """(2, H, W) float32, truth pixel -> section pixel."""
    true_valid: np.ndarray
    """(H, W) bool, truth frame."""
    params: dict[str, Any]
    """This section's warp (and damage), JSON-ready."""


def simulate_section_stack(
    n_sections: int = 50,
    shape: tuple[int, int] = (1024, 1024),
    *,
    n_damaged: int = 5,
    elastic_px: float = 8.0,
    seed: int = 0,
    cell_size_px: float = 28.0,
    section_spacing: float | None = None,
    shift_px: float = 4.0,
    rotation_deg: float = 0.4,
    noise: float = 0.03,
    cells_z_elongation: float = float("inf"),
) -> SectionStack:
    """Simulate a serial-section stack with true fields (all sections in memory).

    The parameters are those of :func:`iter_section_stack`, which makes the same stack one
    section at a time (use it when ``n * H * W`` is large: this keeps about 15 bytes per
    pixel per section).

    Examples
    --------
    >>> stack = simulate_section_stack(4, (128, 128), n_damaged=1, seed=1)
    >>> stack.sections.shape, stack.true_fields.shape, stack.damaged
    ((4, 128, 128), (4, 2, 128, 128), [(1, 'crack')])
    """
    h, w = _check_shape(shape)
    n = int(n_sections)
    kwargs: dict[str, Any] = dict(
        n_damaged=n_damaged,
        elastic_px=elastic_px,
        seed=seed,
        cell_size_px=cell_size_px,
        section_spacing=section_spacing,
        shift_px=shift_px,
        rotation_deg=rotation_deg,
        noise=noise,
        cells_z_elongation=cells_z_elongation,
    )
    params = stack_params(n, (h, w), **kwargs)  # also validates before allocating
    sections = np.empty((n, h, w), np.uint8)
    masks = np.empty((n, h, w), bool)
    fields = np.empty((n, 2, h, w), np.float32)
    valid = np.empty((n, h, w), bool)
    per_section = []
    for item in iter_section_stack(n, (h, w), **kwargs):
        i = item.section_index
        sections[i], masks[i], fields[i], valid[i] = (
            item.section,
            item.defect_mask,
            item.true_field,
            item.true_valid,
        )
        per_section.append(item.params)
    params["sections"] = per_section
    damaged = [(int(i), str(k)) for i, k in params["damaged"]]
    return SectionStack(sections, masks, fields, valid, damaged, params)


def stack_params(
    n_sections: int,
    shape: tuple[int, int],
    *,
    n_damaged: int = 5,
    elastic_px: float = 8.0,
    seed: int = 0,
    cell_size_px: float = 28.0,
    section_spacing: float | None = None,
    shift_px: float = 4.0,
    rotation_deg: float = 0.4,
    noise: float = 0.03,
    cells_z_elongation: float = float("inf"),
) -> dict[str, Any]:
    """Validate the stack parameters; the stack-wide record (texture, which are damaged).

    Raises
    ------
    ShapeError
        ``shape`` is below 64x64.
    InputError
        Fewer than 2 sections, more damaged sections than fit (``(n - 1) // 2``: never
        the first or last, never two adjacent), or a negative or non-finite amount.
    """
    h, w = _check_shape(shape)
    n = int(n_sections)
    if n < 2:
        raise InputError(f"a stack needs at least 2 sections, got {n}")
    k = int(n_damaged)
    most = (n - 1) // 2
    if not 0 <= k <= most:
        raise InputError(
            f"{k} damaged sections do not fit in {n} (at most {most}: never the first or "
            "last section, never two adjacent); give fewer damaged sections (--damaged) or more "
            "sections (--sections)"
        )
    for name, value in (
        ("elastic_px", elastic_px),
        ("shift_px", shift_px),
        ("rotation_deg", rotation_deg),
        ("noise", noise),
    ):
        if not np.isfinite(value) or value < 0:
            raise InputError(f"{name} must be a finite number >= 0, got {value}")
    if not cells_z_elongation >= 1:
        raise InputError(
            f"cells_z_elongation must be >= 1 (inf: straight cells), got {cells_z_elongation}"
        )
    if not np.isfinite(cell_size_px) or cell_size_px < 4:
        raise InputError(f"cell_size_px must be >= 4, got {cell_size_px}")
    spacing = _spacing(cell_size_px, section_spacing)
    rng = np.random.default_rng([_u64(seed), 11, n, k])
    damaged = _damaged_indices(n, k, rng)
    first = int(rng.integers(0, 2))
    kinds = [_DEFECT_KINDS[(first + j) % 2] for j in range(k)]
    return {
        "n_sections": n,
        "shape": [h, w],
        "seed": int(seed),
        "damaged": [[int(i), kind] for i, kind in zip(damaged, kinds)],
        "texture": {
            "model": "3D Voronoi cells, membranes, capsule organelles, vesicles, shading",
            "cell_size_px": float(cell_size_px),
            "section_spacing_px": spacing,
            "cells_z_elongation": (
                float(cells_z_elongation) if np.isfinite(cells_z_elongation) else "inf"
            ),
            "z_of_section": "index * section_spacing_px",
        },
        "warp": {
            "shift_px": float(shift_px),
            "rotation_deg": float(rotation_deg),
            "elastic_px": float(elastic_px),
            "elastic_length_px": 0.25 * min(h, w),
            "affine_xy": "section (x, y) -> truth (x, y), before the smooth field",
        },
        "noise": float(noise),
    }


def iter_section_stack(
    n_sections: int = 50,
    shape: tuple[int, int] = (1024, 1024),
    *,
    n_damaged: int = 5,
    elastic_px: float = 8.0,
    seed: int = 0,
    cell_size_px: float = 28.0,
    section_spacing: float | None = None,
    shift_px: float = 4.0,
    rotation_deg: float = 0.4,
    noise: float = 0.03,
    cells_z_elongation: float = float("inf"),
) -> Iterator[StackSection]:
    """Simulate a serial-section stack one section at a time (memory independent of ``n``).

    Parameters
    ----------
    n_sections : int
        Number of sections, >= 2.
    shape : (int, int)
        Section size ``(H, W)``, each >= 64.
    n_damaged : int
        Number of folded or cracked sections, ``0 .. (n - 1) // 2``; never the first or
        the last, never two adjacent; fold and crack alternate.
    elastic_px : float
        Largest displacement of each section's smooth random field, in pixels.
    seed : int
        Random seed; the same seed gives the same stack (and the texture and warps of
        section ``i`` do not depend on ``n_sections``).
    cell_size_px : float
        Typical cell diameter of the texture in pixels (>= 4).
    section_spacing : float, optional
        Distance between sections in texture pixels (default ``0.12 * cell_size_px``).
    shift_px : float
        Largest drift per axis of a section (uniform in ``[-shift_px, shift_px]``).
    rotation_deg : float
        Largest rotation of a section about the image centre, in degrees.
    noise : float
        Standard deviation of the Gaussian noise, as a fraction of the intensity range.
    cells_z_elongation : float
        Stretch of the cells along z (>= 1; default inf: straight through the stack).

    Yields
    ------
    StackSection
        ``(section_index, section, defect_mask, true_field, true_valid, params)``.

    Raises
    ------
    ShapeError, InputError
        See :func:`stack_params` (raised at the first ``next``).
    """
    h, w = _check_shape(shape)
    record = stack_params(
        n_sections,
        (h, w),
        n_damaged=n_damaged,
        elastic_px=elastic_px,
        seed=seed,
        cell_size_px=cell_size_px,
        section_spacing=section_spacing,
        shift_px=shift_px,
        rotation_deg=rotation_deg,
        noise=noise,
        cells_z_elongation=cells_z_elongation,
    )
    spacing = record["texture"]["section_spacing_px"]
    damage: dict[int, Literal["fold", "crack"]] = {int(i): kind for i, kind in record["damaged"]}
    texture = _Texture3D(seed, float(cell_size_px), float(cells_z_elongation))
    for i in range(int(n_sections)):
        yield _make_section(
            texture,
            i,
            i * spacing,
            (h, w),
            thickness=spacing,
            seed=seed,
            kind=damage.get(i),
            elastic_px=float(elastic_px),
            shift_px=float(shift_px),
            rotation_deg=float(rotation_deg),
            noise=float(noise),
        )


def stack_texture_slice(
    shape: tuple[int, int],
    index: int,
    *,
    seed: int = 0,
    cell_size_px: float = 28.0,
    section_spacing: float | None = None,
    cells_z_elongation: float = float("inf"),
) -> np.ndarray:
    """The unwarped, noise-free texture at section ``index`` (truth frame), float32 in [0, 1].

    Examples
    --------
    >>> stack_texture_slice((64, 64), 3, seed=1).shape
    (64, 64)
    """
    h, w = _check_shape(shape, least=1)
    spacing = _spacing(cell_size_px, section_spacing)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    texture = _Texture3D(seed, float(cell_size_px), float(cells_z_elongation))
    return texture.render(yy, xx, int(index) * spacing, spacing)


# --------------------------------------------------------------------------- one section


def _make_section(
    texture: _Texture3D,
    index: int,
    z: float,
    shape: tuple[int, int],
    *,
    thickness: float,
    seed: int,
    kind: Literal["fold", "crack"] | None,
    elastic_px: float,
    shift_px: float,
    rotation_deg: float,
    noise: float,
) -> StackSection:
    """Section ``index``: render its warped slice, damage it if asked, add noise."""
    h, w = shape
    pad = int(32 + 0.035 * max(h, w))  # room for the damage to move tissue into view
    rng = np.random.default_rng([_u64(seed), 23, index])
    shift, angle, elastic, affine = _section_warp(
        rng, shape, pad, elastic_px=elastic_px, shift_px=shift_px, rotation_deg=rotation_deg
    )
    # Render the section at the truth positions of its pixels (with the margin only where
    # the damage needs it).
    r = pad if kind is not None else 0
    qy, qx = np.mgrid[-r : h + r, -r : w + r].astype(np.float32)
    crop = elastic[:, pad - r : pad + h + r, pad - r : pad + w + r]
    ty = affine[1, 0] * qx + affine[1, 1] * qy + affine[1, 2] + crop[0]
    tx = affine[0, 0] * qx + affine[0, 1] * qy + affine[0, 2] + crop[1]
    clean = texture.render(ty.astype(np.float32), tx.astype(np.float32), z, thickness)
    del qy, qx, ty, tx, crop

    py, px = np.mgrid[0:h, 0:w].astype(np.float32)
    qy_, qx_ = _truth_in_section(py, px, affine, elastic if elastic_px > 0 else None, pad)
    section_params: dict[str, Any] = {
        "index": index,
        "z_px": float(z),
        "shift_xy_px": shift.tolist(),
        "rotation_deg": float(np.rad2deg(angle)),
        "affine_xy": affine.tolist(),
        "damage": None,
    }

    if kind is None:
        image = clean
        defect = np.zeros((h, w), bool)
        my, mx = qy_, qx_
        valid_damage = np.ones((h, w), bool)
    else:
        image, defect, my, mx, valid_damage, section_params["damage"] = _damage_section(
            clean, kind, rng, qy_, qx_, shape, pad
        )

    true_field = np.stack([my - py, mx - px]).astype(np.float32)
    true_valid = valid_damage & (mx >= 0) & (mx <= w - 1) & (my >= 0) & (my <= h - 1)
    gain = 1.0 + rng.uniform(-0.04, 0.04)
    offset = rng.uniform(-0.03, 0.03)
    noisy = image * gain + offset + noise * rng.standard_normal((h, w), dtype=np.float32)
    section = np.rint(np.clip(noisy, 0.0, 1.0) * 255.0).astype(np.uint8)
    section_params["gain"] = float(gain)
    section_params["offset"] = float(offset)
    return StackSection(index, section, defect, true_field, true_valid, section_params)


def _section_warp(
    rng: np.random.Generator,
    shape: tuple[int, int],
    pad: int,
    *,
    elastic_px: float,
    shift_px: float,
    rotation_deg: float,
) -> tuple[np.ndarray, float, np.ndarray, np.ndarray]:
    """Draw a section's warp: shift (x, y), angle (rad), padded smooth field, affine (2, 3)."""
    h, w = shape
    hp, wp = h + 2 * pad, w + 2 * pad
    shift = rng.uniform(-1.0, 1.0, 2) * shift_px  # (x, y)
    angle = np.deg2rad(rng.uniform(-1.0, 1.0) * rotation_deg)
    elastic = (
        smooth_random_field((hp, wp), elastic_px, 0.25 * min(h, w), rng)
        if elastic_px > 0
        else np.zeros((2, hp, wp), np.float32)
    )
    # Section (x, y) -> truth (x, y): rotate about the centre, shift; then the smooth field
    # (sampled in the section's padded frame).
    centre = np.array([(w - 1) / 2.0, (h - 1) / 2.0])
    c, s = np.cos(angle), np.sin(angle)
    lin = np.array([[c, -s], [s, c]])
    affine = np.hstack([lin, (centre - lin @ centre + shift)[:, None]])
    return shift, angle, elastic, affine


def _truth_in_section(
    py: np.ndarray, px: np.ndarray, affine: np.ndarray, elastic: np.ndarray | None, pad: int
) -> tuple[np.ndarray, np.ndarray]:
    """Invert the warp: the section position ``(qy, qx)`` of each truth pixel ``(py, px)``."""
    import cv2

    # True field: truth p -> section q solving affine(q) + elastic(q) = p (fixed point; the
    # smooth field's gradient is far below 1).
    inv = np.linalg.inv(np.vstack([affine, [0.0, 0.0, 1.0]]))[:2]
    qx_ = inv[0, 0] * px + inv[0, 1] * py + inv[0, 2]
    qy_ = inv[1, 0] * px + inv[1, 1] * py + inv[1, 2]
    if elastic is not None:
        elastic_hw2 = np.ascontiguousarray(np.moveaxis(elastic, 0, -1))
        for _ in range(10):
            e = cv2.remap(
                elastic_hw2,
                (qx_ + pad).astype(np.float32),
                (qy_ + pad).astype(np.float32),
                cv2.INTER_LINEAR,
                borderMode=cv2.BORDER_REPLICATE,
            )
            rx, ry = px - e[..., 1], py - e[..., 0]
            qx_ = inv[0, 0] * rx + inv[0, 1] * ry + inv[0, 2]
            qy_ = inv[1, 0] * rx + inv[1, 1] * ry + inv[1, 2]
    return qy_, qx_


def _damage_section(
    clean: np.ndarray,
    kind: Literal["fold", "crack"],
    rng: np.random.Generator,
    qy_: np.ndarray,
    qx_: np.ndarray,
    shape: tuple[int, int],
    pad: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
    """Fold or crack the padded section: image, defect, truth->damaged ``my, mx``, valid, record."""
    import cv2

    h, w = shape
    damage_seed = int(rng.integers(0, 2**31 - 1))
    damaged = simulate_damaged_section(
        clean,
        kind=kind,
        seed=damage_seed,
        elastic_px=0.0,
        noise=0.0,
    )
    image = damaged.moving[pad : pad + h, pad : pad + w]
    defect = damaged.defect_mask[pad : pad + h, pad : pad + w]
    # Compose: truth p -> section q (unpadded) -> damaged section q + d(q).
    d_hw2 = np.ascontiguousarray(np.moveaxis(damaged.true_field, 0, -1))
    sx = (qx_ + pad).astype(np.float32)
    sy = (qy_ + pad).astype(np.float32)
    d = cv2.remap(d_hw2, sx, sy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    ok = cv2.remap(
        damaged.true_valid.astype(np.float32),
        sx,
        sy,
        cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0.0,
    )
    valid_damage = ok > 0.999
    my, mx = qy_ + d[..., 0], qx_ + d[..., 1]
    record = {"kind": kind, "seed": damage_seed, **damaged.params}
    return image, defect, my, mx, valid_damage, record


# --------------------------------------------------------------------------- the 3D texture


class _Texture3D:
    """A cell-like EM texture defined at every point of 3D space (pixels; ``z`` too).

    Everything is drawn per cubic tile from a generator seeded by ``(seed, what, tile)``
    (and smooth noise from a hashed lattice), so the texture at a point depends only on
    the seed and the cell size, not on which points are asked for.
    """

    def __init__(self, seed: int, cell_size_px: float, z_elongation: float = np.inf) -> None:
        self.seed = _u64(seed)
        self.cell = float(cell_size_px)
        self.tile = 4.0 * self.cell
        # Cells run along z (as neurites cut across): their walls are steep, so they move
        # little from one section to the next, while organelles and vesicles (not
        # elongated) come and go; the cells' lattice is read at z / z_elongation.
        self.z_elongation = float(z_elongation)

    # ----------------------------------------------------------------- public

    def render(self, y: np.ndarray, x: np.ndarray, z: float, thickness: float) -> np.ndarray:
        """Intensity (float32, [0, 1]) at points ``(y, x)`` (any shape) of the section at
        ``z`` of ``thickness`` pixels."""
        cell = self.cell
        shape = y.shape
        z_cells = z / self.z_elongation
        # Irregular cells: the Voronoi lattice is read at smoothly displaced points.
        wy = self._noise(y, x, z_cells, channel=1, step=0.75 * cell)
        wx = self._noise(y, x, z_cells, channel=2, step=0.75 * cell)
        amp = 0.2 * cell
        vy = (y + amp * wy).ravel()
        vx = (x + amp * wx).ravel()
        del wy, wx
        box = (float(vy.min()), float(vy.max()), float(vx.min()), float(vx.max()))
        points = np.column_stack([vx, vy, np.full(vy.size, z_cells, np.float32)])
        del vy, vx
        # 1. cells and membranes (in the cells' stretched z)
        seeds, grey = self._items(box, z_cells, kind="cells", reach=2.5 * cell)
        tree = cKDTree(seeds)
        dist, idx = tree.query(points, k=3, workers=-1)
        dist = dist.astype(np.float32)
        image = grey[idx[:, 0]].astype(np.float32)
        membrane = np.zeros(len(points), np.float32)
        sigma = max(0.6, 0.032 * cell)
        s1 = seeds[idx[:, 0]]
        for j in (1, 2):
            sep = (seeds[idx[:, j]] - s1).astype(np.float32)
            length = np.sqrt((sep**2).sum(axis=1)) + np.float32(1e-6)
            # distance to the bisector plane of the two seeds
            across = (dist[:, j] ** 2 - dist[:, 0] ** 2) / (2.0 * length)
            # A section has a thickness (the spacing): a tilted membrane is seen projected
            # through it, wider and fainter (the profile convolved with a box of width
            # thickness * |n_z| across the membrane; a Gaussian of the same variance here).
            nz = sep[:, 2] / length
            width2 = sigma**2 + (thickness / self.z_elongation * nz) ** 2 / 12.0
            # Grazing membranes (normal near z) fade further, as in real sections.
            fade = np.float32(0.25) + np.float32(0.75) * np.sqrt(1.0 - nz**2)
            m = np.exp(-0.5 * across**2 / width2) * (sigma / np.sqrt(width2)) * fade
            np.maximum(membrane, m, out=membrane)
        del dist, idx, s1, sep, length, across, nz, width2, fade, m
        image -= 0.5 * membrane
        del membrane
        points[:, 2] = z  # organelles and vesicles: true z
        # 2. organelles: dark capsules with a darker rim
        centres, radius = self._items(box, z, kind="organelles", reach=1.5 * cell)
        if len(centres):
            bound = float(radius.max()) + 4.0
            d, k = cKDTree(centres).query(points, k=1, workers=-1, distance_upper_bound=bound)
            near = np.flatnonzero(np.isfinite(d))
            depth = (radius[k[near]] - d[near]).astype(np.float32)  # > 0 inside
            body = np.clip(0.5 + depth / 1.2, 0.0, 1.0)
            rim = np.exp(-0.5 * (depth / 0.8) ** 2)
            image[near] -= 0.3 * body + 0.2 * rim
            del d, k, near, depth, body, rim
        # 3. vesicles: small dark rings
        centres, radius = self._items(box, z, kind="vesicles", reach=0.5 * cell)
        if len(centres):
            bound = float(radius.max()) + 3.0
            d, k = cKDTree(centres).query(points, k=1, workers=-1, distance_upper_bound=bound)
            near = np.flatnonzero(np.isfinite(d))
            ring = np.exp(-0.5 * ((d[near] - radius[k[near]]) / 0.7) ** 2).astype(np.float32)
            image[near] -= 0.35 * ring
            del d, k, near, ring
        image = image.reshape(shape)
        image += 0.04 * self._noise(y, x, z, channel=3, step=0.5 * cell)
        # Fixed mapping to [0, 1] (no per-image stretch: sections stay comparable).
        return np.clip(image + 0.1, 0.0, 1.0).astype(np.float32)

    # ----------------------------------------------------------------- parts

    def _items(
        self, box: tuple[float, float, float, float], z: float, *, kind: str, reach: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """Points ``(n, 3)`` as ``(x, y, z)`` near the box and plane, with one value each."""
        t = self.tile
        y0, y1, x0, x1 = box
        ky = range(int(np.floor((y0 - reach) / t)), int(np.floor((y1 + reach) / t)) + 1)
        kx = range(int(np.floor((x0 - reach) / t)), int(np.floor((x1 + reach) / t)) + 1)
        reach_z = reach + (1.5 * self.cell if kind == "organelles" else 0.0)
        kz = range(int(np.floor((z - reach_z) / t)), int(np.floor((z + reach_z) / t)) + 1)
        points, values = [], []
        for iz in kz:
            for iy in ky:
                for ix in kx:
                    p, v = self._tile_items(kind, iz, iy, ix)
                    keep = np.abs(p[:, 2] - z) <= reach_z
                    points.append(p[keep])
                    values.append(v[keep])
        return np.concatenate(points), np.concatenate(values)

    def _tile_items(self, kind: str, iz: int, iy: int, ix: int) -> tuple[np.ndarray, np.ndarray]:
        t, cell = self.tile, self.cell
        tag = {"cells": 1, "organelles": 2, "vesicles": 3}[kind]
        off = 1 << 30
        rng = np.random.default_rng([self.seed, tag, iz + off, iy + off, ix + off])
        origin = np.array([ix, iy, iz], float) * t
        volume = t**3
        if kind == "cells":
            n = rng.poisson(volume / cell**3 * 0.6)
            return origin + rng.uniform(0, t, (n, 3)), rng.uniform(0.45, 0.75, n)
        if kind == "vesicles":
            n = rng.poisson(volume / cell**3 * 2.0)
            return origin + rng.uniform(0, t, (n, 3)), rng.uniform(0.05, 0.1, n) * cell
        # organelles: capsules (a segment of sample points, each with the radius)
        n = rng.poisson(volume / (3.0 * cell) ** 3 * 10.0)
        pts, rad = [], []
        for _ in range(n):
            start = origin + rng.uniform(0, t, 3)
            direction = rng.standard_normal(3)
            direction /= max(float(np.linalg.norm(direction)), 1e-9)
            r = rng.uniform(0.12, 0.25) * cell
            length = rng.uniform(0.0, 1.5) * cell
            steps = np.arange(0.0, length + 1e-9, 0.4 * r)
            pts.append(start + steps[:, None] * direction)
            rad.append(np.full(len(steps), r))
        if not pts:
            return np.zeros((0, 3)), np.zeros(0)
        return np.concatenate(pts), np.concatenate(rad)

    def _noise(
        self, y: np.ndarray, x: np.ndarray, z: float, *, channel: int, step: float
    ) -> np.ndarray:
        """Smooth noise of unit standard deviation, correlation length ~ ``step``."""
        import cv2

        sy, sx = y / step, x / step
        iy0 = int(np.floor(float(sy.min()))) - 6
        ix0 = int(np.floor(float(sx.min()))) - 6
        iy1 = int(np.ceil(float(sy.max()))) + 7
        ix1 = int(np.ceil(float(sx.max()))) + 7
        kz = z / step
        k0 = int(np.floor(kz))
        frac = kz - k0
        weights = _bspline_weights(frac)
        iy = np.arange(iy0, iy1)
        ix = np.arange(ix0, ix1)
        grid = np.zeros((len(iy), len(ix)), np.float64)
        for j, wz in enumerate(weights):
            grid += wz * _lattice_values(self.seed, channel, k0 - 1 + j, iy, ix)
        grid = ndimage.gaussian_filter(grid, 1.0, mode="nearest", truncate=4.0)
        grid /= np.sqrt(float((weights**2).sum())) * _GAUSS_NORM
        out = cv2.remap(
            grid.astype(np.float32),
            (sx - ix0).astype(np.float32),
            (sy - iy0).astype(np.float32),
            cv2.INTER_CUBIC,
            borderMode=cv2.BORDER_REPLICATE,
        )
        return out


def _bspline_weights(t: float) -> np.ndarray:
    """Cubic B-spline weights of the 4 lattice planes around fraction ``t``."""
    return np.array(
        [
            (1 - t) ** 3 / 6,
            (3 * t**3 - 6 * t**2 + 4) / 6,
            (-3 * t**3 + 3 * t**2 + 3 * t + 1) / 6,
            t**3 / 6,
        ]
    )


def _gauss_norm() -> float:
    delta = np.zeros(33)
    delta[16] = 1.0
    kernel = ndimage.gaussian_filter1d(delta, 1.0, truncate=4.0)
    return float((kernel**2).sum())  # 2D: (sum k^2)^2, std: its square root


_GAUSS_NORM = _gauss_norm()


def _lattice_values(seed: int, channel: int, k: int, iy: np.ndarray, ix: np.ndarray) -> np.ndarray:
    """Uniform noise of unit variance on the integer lattice plane ``k`` (a hash, no state)."""
    with np.errstate(over="ignore"):
        h = (
            np.uint64(seed) * np.uint64(0x9E3779B97F4A7C15)
            + np.uint64(channel) * np.uint64(0xD1B54A32D192ED03)
            + np.uint64(k & 0xFFFFFFFFFFFFFFFF) * np.uint64(0x94D049BB133111EB)
        )
        a = iy.astype(np.int64).view(np.uint64)[:, None] * np.uint64(0xBF58476D1CE4E5B9)
        b = ix.astype(np.int64).view(np.uint64)[None, :] * np.uint64(0x8CB92BA72F3D8DD7)
        v = (a + b + h).astype(np.uint64)
        v ^= v >> np.uint64(30)
        v *= np.uint64(0xBF58476D1CE4E5B9)
        v ^= v >> np.uint64(27)
        v *= np.uint64(0x94D049BB133111EB)
        v ^= v >> np.uint64(31)
    unit = (v >> np.uint64(11)).astype(np.float64) / float(1 << 53)
    return (unit - 0.5) * np.sqrt(12.0)


# --------------------------------------------------------------------------- helpers


def _check_shape(shape: tuple[int, int], least: int = 64) -> tuple[int, int]:
    try:
        h, w = (int(shape[0]), int(shape[1]))
    except (TypeError, ValueError, IndexError):
        raise ShapeError(f"shape must be (H, W), got {shape!r}") from None
    if len(shape) != 2 or h < least or w < least:
        raise ShapeError(f"section shape {tuple(shape)} too small; give at least {least}x{least}")
    return h, w


def _spacing(cell_size_px: float, section_spacing: float | None) -> float:
    if section_spacing is None:
        return 0.12 * float(cell_size_px)
    value = float(section_spacing)
    if not np.isfinite(value) or value <= 0:
        raise InputError(f"section_spacing must be a finite number > 0, got {section_spacing}")
    return value


def _u64(seed: int) -> int:
    seed = int(seed)
    if seed < 0:
        raise InputError(f"seed must be >= 0, got {seed}")
    return seed & 0xFFFFFFFFFFFFFFFF


def _damaged_indices(n: int, k: int, rng: np.random.Generator) -> list[int]:
    """``k`` indices in ``1 .. n - 2``, no two adjacent, uniformly among such sets."""
    if k == 0:
        return []
    picks = np.sort(rng.choice(n - 2 - (k - 1), size=k, replace=False))
    return [int(p + j + 1) for j, p in enumerate(picks)]
