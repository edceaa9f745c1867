"""Crowded volumes of randomly placed, randomly rotated density templates, with ground truth."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from emkit.errors import InputError, MismatchError, ShapeError
from emkit.geometry import matrix_xyz_to_zyx, random_rotations
from emkit.io import Volume

__all__ = ["PlacedParticles", "place_particles"]

logger = logging.getLogger(__name__)

# A template's radius: distance from its centre to the farthest voxel above this fraction of
# its maximum. Below it the density is blur tail, allowed to overlap a neighbour's.
_RADIUS_LEVEL = 0.02
_CANDIDATES_PER_TRY = 64


class PlacedParticles(NamedTuple):
    """Result of :func:`place_particles` (unpacks as a 4-tuple).

    Attributes
    ----------
    volume : ndarray, shape (z, y, x), float32
        Sum of the placed, rotated templates (0 background).
    centres_zyx : ndarray, shape (n, 3), float64
        Particle centres in voxel index coordinates ``(z, y, x)`` (sub-voxel).
    class_ids : ndarray, shape (n,), int64
        Index into ``templates`` of each particle.
    rotations : ndarray, shape (n, 3, 3), float64
        Rotation of each particle, acting on ``(x, y, z)`` in emkit's (RELION's) sense:
        particle ``i`` is its template turned by ``rotations[i]`` about the template centre
        (voxel ``box // 2``) and moved to ``centres_zyx[i]``, i.e.
        ``V_i(r) = T(rotations[i].T @ (r - centre))``; so ``matrix_to_euler_zyz(rotations)``
        gives its RELION Euler angles.
    """

    volume: NDArray[np.float32]
    centres_zyx: NDArray[np.float64]
    class_ids: NDArray[np.int64]
    rotations: NDArray[np.float64]


def _template_arrays(
    templates: Sequence[NDArray | Volume] | NDArray | Volume,
) -> list[NDArray[np.float32]]:
    if isinstance(templates, (Volume, np.ndarray)):
        templates = [templates]
    arrays: list[NDArray[np.float32]] = []
    voxel_sizes = set()
    for k, t in enumerate(templates):
        if isinstance(t, Volume):
            if t.voxel_size is not None:
                voxel_sizes.add(tuple(round(v, 6) for v in t.voxel_size))
            data = t.data
        else:
            data = np.asarray(t)
        if data.ndim != 3 or min(data.shape) < 1:
            raise ShapeError(f"template {k} must be a 3D (z, y, x) map, got shape {data.shape}")
        if not np.all(np.isfinite(data)):
            raise InputError(f"template {k} contains NaN or infinite values")
        arrays.append(np.asarray(data, dtype=np.float32))
    if not arrays:
        raise InputError("no templates given; give at least one 3D density map")
    if len(voxel_sizes) > 1:
        raise MismatchError(
            f"templates have different voxel sizes {sorted(voxel_sizes)}; resample them to "
            "the volume's voxel size first (e.g. density_template(name, voxel_size_A=...))"
        )
    return arrays


def _template_radius(template: NDArray[np.float32]) -> float:
    centre = np.array(template.shape) // 2
    peak = float(template.max())
    if peak <= 0:
        return 0.5
    idx = np.argwhere(template > _RADIUS_LEVEL * peak)
    return float(np.max(np.linalg.norm(idx - centre, axis=1))) + 0.5


def _render(
    volume: NDArray[np.float32],
    template: NDArray[np.float32],
    centre_zyx: NDArray[np.float64],
    rotation_xyz: NDArray[np.float64],
    order: int,
) -> None:
    """Add ``template`` turned by ``rotation_xyz`` about its centre, at ``centre_zyx``."""
    R = matrix_xyz_to_zyx(rotation_xyz)
    size = int(max(template.shape)) + 3
    start = np.floor(centre_zyx).astype(np.int64) - size // 2
    # output voxel o (patch index j, o = start + j) samples the template at R^T (o - p) + c
    offset = R.T @ (start - centre_zyx) + np.array(template.shape) // 2
    patch = ndimage.affine_transform(
        template,
        R.T,
        offset=offset,
        output_shape=(size, size, size),
        order=order,
        mode="constant",
        cval=0.0,
        prefilter=order > 1,
    )
    lo = np.maximum(start, 0)
    hi = np.minimum(start + size, volume.shape)
    if np.any(hi <= lo):
        return
    src = tuple(slice(int(a - s), int(b - s)) for a, b, s in zip(lo, hi, start))
    dst = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
    volume[dst] += patch[src]


def place_particles(
    volume_shape: Sequence[int],
    templates: Sequence[NDArray | Volume] | NDArray | Volume,
    *,
    seed: int,
    n_particles: int | None = None,
    volume_fraction: float | None = None,
    min_distance: float | None = None,
    rotate: bool = True,
    class_weights: Sequence[float] | None = None,
    max_attempts: int = 2000,
    interpolation_order: int = 1,
) -> PlacedParticles:
    """Fill a volume with randomly rotated copies of density templates, without overlaps.

    Particles are added one at a time (random sequential addition): each gets a class drawn
    from ``class_weights``, a uniformly random rotation (if ``rotate``) and a uniformly
    random sub-voxel centre far enough from the edges that its template lies inside the
    volume, and is kept only if it is at least the minimum distance from every particle
    already placed. Templates are rotated about their centre voxel ``box // 2`` with
    :func:`scipy.ndimage.affine_transform` and summed into the volume.

    Parameters
    ----------
    volume_shape : (int, int, int)
        Shape ``(z, y, x)`` of the output volume.
    templates : sequence of ndarray or Volume
        3D ``(z, y, x)`` maps, all at the voxel size of the output volume (use
        ``density_template(name, voxel_size_A=...)`` to resample); a single map is allowed.
    seed : int
        Same seed, same volume and ground truth.
    n_particles : int, optional
        Number of particles to place; an error if they do not fit.
    volume_fraction : float, optional
        Alternatively, keep adding particles until their bounding spheres fill this fraction
        of the volume (random sequential addition jams near 0.3), or until no more fit.
        Give exactly one of ``n_particles`` and ``volume_fraction``.
    min_distance : float, optional
        Minimum centre-to-centre distance in voxels for every pair. Default: the sum of the
        two templates' radii (the farthest voxel above 2 % of the template's peak), so no two
        particles overlap.
    rotate : bool
        Random uniform rotations; if False every particle has the identity rotation.
    class_weights : sequence of float, optional
        Relative frequency of each template (default: equal).
    max_attempts : int
        Candidate positions tried per particle before giving up.
    interpolation_order : int
        Spline order for rotating templates (1 = trilinear, fast; 3 = cubic).

    Returns
    -------
    PlacedParticles
        ``(volume, centres_zyx, class_ids, rotations)``; see :class:`PlacedParticles`.

    Raises
    ------
    InputError
        On bad parameters, or if ``n_particles`` particles do not fit.
    ShapeError
        If a template is not 3D or ``volume_shape`` is not 3 positive integers.
    MismatchError
        If templates carry different voxel sizes.
    """
    shape, arrays, probs = _check_placement(
        volume_shape,
        templates,
        n_particles=n_particles,
        volume_fraction=volume_fraction,
        min_distance=min_distance,
        class_weights=class_weights,
        interpolation_order=interpolation_order,
    )
    radii = _fitting_radii(arrays, shape)
    dims = np.array(shape, dtype=np.float64)
    rng = np.random.default_rng(seed)
    target = None if n_particles is None else int(n_particles)
    sphere_volume = 4.0 / 3.0 * math.pi * radii**3
    wanted_volume = None if volume_fraction is None else volume_fraction * float(np.prod(dims))

    centres: list[NDArray[np.float64]] = []
    classes: list[int] = []
    filled = 0.0
    while True:
        if target is not None and len(centres) >= target:
            break
        if wanted_volume is not None and filled >= wanted_volume:
            break
        k = int(rng.choice(len(arrays), p=probs))
        centre = _find_free_centre(
            rng, k, radii, dims, centres, classes, min_distance, max_attempts
        )
        if centre is not None:
            centres.append(centre)
            classes.append(k)
            filled += float(sphere_volume[k])
            continue
        if target is not None:
            raise InputError(
                f"could place only {len(centres)} of {target} particles without overlap in "
                f"a volume of shape {shape}; lower n_particles or min_distance, or use a "
                "bigger volume"
            )
        logger.info("volume full after %d particles", len(centres))
        break

    n = len(centres)
    centres_zyx = np.asarray(centres, dtype=np.float64).reshape(n, 3)
    class_ids = np.asarray(classes, dtype=np.int64)
    if rotate and n > 0:
        rotations = random_rotations(n, seed=int(rng.integers(2**31)))
    else:
        rotations = np.broadcast_to(np.eye(3), (n, 3, 3)).copy()
    volume = np.zeros(shape, dtype=np.float32)
    for i in range(n):
        _render(volume, arrays[class_ids[i]], centres_zyx[i], rotations[i], interpolation_order)
    return PlacedParticles(volume, centres_zyx, class_ids, rotations)


def _check_placement(
    volume_shape: Sequence[int],
    templates: Sequence[NDArray | Volume] | NDArray | Volume,
    *,
    n_particles: int | None,
    volume_fraction: float | None,
    min_distance: float | None,
    class_weights: Sequence[float] | None,
    interpolation_order: int,
) -> tuple[tuple[int, ...], list[NDArray[np.float32]], NDArray[np.float64]]:
    """Validate the arguments of :func:`place_particles`: shape, templates, class probabilities."""
    try:
        shape = tuple(int(s) for s in volume_shape)
    except (TypeError, ValueError):
        raise ShapeError(
            f"volume_shape must be 3 positive integers, got {volume_shape!r}"
        ) from None
    if len(shape) != 3 or min(shape) < 1:
        raise ShapeError(f"volume_shape must be 3 positive integers, got {volume_shape!r}")
    arrays = _template_arrays(templates)
    n_classes = len(arrays)
    if (n_particles is None) == (volume_fraction is None):
        raise InputError("give exactly one of n_particles and volume_fraction")
    if n_particles is not None and (
        isinstance(n_particles, bool) or int(n_particles) != n_particles or n_particles < 0
    ):
        raise InputError(f"n_particles must be a non-negative integer, got {n_particles!r}")
    if volume_fraction is not None and not 0 < volume_fraction < 1:
        raise InputError(f"volume_fraction must be between 0 and 1, got {volume_fraction}")
    if min_distance is not None and not (min_distance >= 0 and math.isfinite(min_distance)):
        raise InputError(f"min_distance must be a non-negative number, got {min_distance}")
    if class_weights is None:
        probs = np.full(n_classes, 1.0 / n_classes)
    else:
        probs = np.asarray(class_weights, dtype=np.float64)
        if probs.shape != (n_classes,) or np.any(probs < 0) or probs.sum() <= 0:
            raise InputError(
                f"class_weights must be {n_classes} non-negative numbers (one per template) "
                f"with a positive sum, got {class_weights!r}"
            )
        probs = probs / probs.sum()
    if interpolation_order not in (0, 1, 2, 3, 4, 5):
        raise InputError(f"interpolation_order must be 0..5, got {interpolation_order!r}")
    return shape, arrays, probs


def _fitting_radii(
    arrays: list[NDArray[np.float32]], shape: tuple[int, ...]
) -> NDArray[np.float64]:
    """The templates' radii, checking that each template fits in the volume."""
    radii = np.array([_template_radius(t) for t in arrays])
    dims = np.array(shape, dtype=np.float64)
    for k, r in enumerate(radii):
        if np.any(dims < 2 * r):
            raise InputError(
                f"template {k} (radius {r:.1f} voxels) does not fit in a volume of shape "
                f"{shape}; use a bigger volume or a coarser voxel size"
            )
    return radii


def _find_free_centre(
    rng: np.random.Generator,
    k: int,
    radii: NDArray[np.float64],
    dims: NDArray[np.float64],
    centres: list[NDArray[np.float64]],
    classes: list[int],
    min_distance: float | None,
    max_attempts: int,
) -> NDArray[np.float64] | None:
    """A random centre for class ``k`` clear of the placed particles, or None if none is found."""
    placed_arr = np.asarray(centres).reshape(-1, 3)
    placed_radii = radii[np.asarray(classes, dtype=np.int64)]
    for _ in range(max(1, math.ceil(max_attempts / _CANDIDATES_PER_TRY))):
        low = np.full(3, radii[k])
        cand = rng.uniform(low, dims - 1.0 - low, size=(_CANDIDATES_PER_TRY, 3))
        if len(centres) == 0:
            ok = np.ones(len(cand), dtype=bool)
        else:
            dist = np.linalg.norm(cand[:, None, :] - placed_arr[None, :, :], axis=2)
            need = placed_radii + radii[k] if min_distance is None else float(min_distance)
            ok = np.all(dist >= need, axis=1)
        if ok.any():
            return cand[int(np.argmax(ok))]
    return None
