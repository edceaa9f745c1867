"""Density templates: small built-in maps of public PDB entries, and PDB -> density.

The built-in templates need no external file, so demos and tests run anywhere. They were made
by :mod:`emkit.sim._make_templates` from PDB entries (CC0) with
:func:`emkit.io.structure_to_density` (electron form factors blurred to 12 Å resolution,
5 Å/voxel); values are in Å^-2 (electron scattering length per Å^3, proportional to the
Coulomb potential), the same absolute scale for every protein, so templates of different
proteins have comparable contrast. Every template has its centre of mass on voxel
``box // 2`` (the cryo-EM box-centre convention), the centre that
:func:`emkit.sim.place_particles` rotates about.
"""

from __future__ import annotations

import functools
import json
import math
import os
from importlib import resources
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from emkit.errors import InputError
from emkit.io import Volume, structure_to_density

__all__ = ["density_from_pdb", "density_template", "list_density_templates"]


@functools.cache
def _catalogue() -> dict[str, dict[str, Any]]:
    text = resources.files("emkit").joinpath("data/templates/templates.json").read_text()
    return {record["name"]: record for record in json.loads(text)}


def list_density_templates() -> list[dict[str, Any]]:
    """Describe the built-in density templates.

    Returns
    -------
    list of dict
        One dict per template with ``name``, ``pdb_id``, ``description``, ``voxel_size_A``,
        ``box`` (z, y, x), ``resolution_A``, ``n_atoms`` and ``how`` (how it was made).
    """
    return [dict(record) for record in _catalogue().values()]


def _resample_centred(
    data: NDArray[np.float32], old_voxel_A: float, new_voxel_A: float
) -> NDArray[np.float32]:
    """Resample a cubic-grid map to another voxel size, keeping voxel ``n // 2`` the centre."""
    factor = new_voxel_A / old_voxel_A
    if factor > 1:
        # low-pass to the new Nyquist frequency first (Gaussian 1/e point at 1 / (2 new voxels))
        data = ndimage.gaussian_filter(data, 0.45 * factor, mode="constant")
    shape_in = np.array(data.shape)
    shape_out = np.maximum(2 * np.ceil(shape_in / factor / 2).astype(int), 2)
    offset = shape_in // 2 - factor * (shape_out // 2)
    out = ndimage.affine_transform(
        data,
        np.full(3, factor),
        offset=offset,
        output_shape=tuple(int(s) for s in shape_out),
        order=1,
        mode="constant",
        cval=0.0,
    )
    return out.astype(np.float32)


def density_template(name: str, *, voxel_size_A: float | None = None) -> Volume:
    """Load a built-in density template.

    Parameters
    ----------
    name : str
        One of the names in :func:`list_density_templates` (``"1ake"``, ``"3enl"``,
        ``"6flr"``, ``"3o21"``, ``"6flr_a"``, ``"6zu5_se0"``); case-insensitive.
    voxel_size_A : float, optional
        Resample to this voxel size in Å (linear interpolation, low-passed first when
        coarsening); the box shrinks or grows to keep the same physical extent. Default: the
        stored 5 Å.

    Returns
    -------
    Volume
        ``data`` is a cubic ``(z, y, x)`` float32 map in Å^-2 (non-negative; the units of
        :func:`emkit.io.structure_to_density`),
        ``voxel_size`` the voxel size in Å, ``origin`` the position of voxel (0, 0, 0) in the
        PDB entry's frame (Å, (z, y, x)).

    Raises
    ------
    InputError
        If ``name`` is not a built-in template or ``voxel_size_A`` is not positive.

    Examples
    --------
    >>> vol = density_template("1ake")
    >>> vol.data.shape, vol.voxel_size
    ((32, 32, 32), (5.0, 5.0, 5.0))
    """
    catalogue = _catalogue()
    key = str(name).lower()
    if key not in catalogue:
        raise InputError(
            f"no built-in density template {name!r}; choose one of {', '.join(catalogue)}"
        )
    record = catalogue[key]
    with resources.files("emkit").joinpath(f"data/templates/{record['file']}").open("rb") as fh:
        with np.load(fh) as npz:
            data = np.maximum(npz["density"].astype(np.float32), 0.0)
    stored_A = float(record["voxel_size_A"])
    origin = np.asarray(record["origin_A_zyx"], dtype=np.float64)
    if voxel_size_A is not None and voxel_size_A != stored_A:
        if not (voxel_size_A > 0 and math.isfinite(voxel_size_A)):
            raise InputError(f"voxel_size_A must be a positive number, got {voxel_size_A}")
        centre_A = origin + stored_A * (np.array(data.shape) // 2)
        data = np.maximum(_resample_centred(data, stored_A, voxel_size_A), 0.0)
        origin = centre_A - voxel_size_A * (np.array(data.shape) // 2)
        stored_A = float(voxel_size_A)
    return Volume(
        data=data,
        voxel_size=(stored_A, stored_A, stored_A),
        origin=(float(origin[0]), float(origin[1]), float(origin[2])),
    )


def density_from_pdb(
    path: str | os.PathLike[str],
    voxel_size_A: float,
    *,
    box_size: int | None = None,
    resolution_A: float | None = None,
) -> Volume:
    """Density map of an atomic model for simulations (PDB or mmCIF, optionally gzipped).

    :func:`emkit.io.structure_to_density` with one difference of default: without
    ``resolution_A`` the map is blurred to the Nyquist resolution ``2 * voxel_size_A``
    rather than by the model's B-factors, so maps of different entries share one blur and
    are as sharp as the grid holds (the way the built-in templates were made, at 12 Å).

    Parameters
    ----------
    path : path-like
        Structure file read with gemmi (first model; waters and hydrogens dropped).
    voxel_size_A : float
        Voxel size in Å.
    box_size : int, optional
        Edge of the cubic box in voxels. Default: the whole model plus a margin (even).
    resolution_A : float, optional
        Resolution in Å that sets the blur (Gaussian of standard deviation
        ``resolution_A / (pi * sqrt(2))``). Default: ``2 * voxel_size_A``.

    Returns
    -------
    Volume
        ``(z, y, x)`` float32 map in Å^-2 (electron scattering length per Å^3; its sum
        times ``voxel_size_A**3`` is the model's total scattering), with the centre of mass
        on voxel ``box_size // 2``, ``voxel_size`` and ``origin`` (position of voxel
        (0, 0, 0) in the model's frame, Å) set and ``path`` the input.

    Raises
    ------
    MissingFileError
        If ``path`` does not exist.
    FileFormatError
        If gemmi cannot read it or it holds no atoms.
    InputError
        If ``voxel_size_A``, ``resolution_A`` or ``box_size`` is not positive.
    """
    if resolution_A is None and voxel_size_A > 0:
        resolution_A = 2.0 * float(voxel_size_A)
    return structure_to_density(path, voxel_size_A, box_size=box_size, resolution_A=resolution_A)
