"""Atomic models (PDB / mmCIF, optionally gzipped) through gemmi, and model -> density maps."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import numpy as np

from emkit.errors import FileFormatError, InputError, with_path
from emkit.io._paths import PathLike, require_readable_file
from emkit.io._volume import Volume

logger = logging.getLogger(__name__)

STRUCTURE_SUFFIXES = (
    ".pdb",
    ".ent",
    ".cif",
    ".mmcif",
    ".pdb.gz",
    ".ent.gz",
    ".cif.gz",
    ".mmcif.gz",
)

# ChimeraX's molmap: a Gaussian of standard deviation resolution / (pi * sqrt(2)) per atom.
_SIGMA_PER_RESOLUTION = 1.0 / (math.pi * math.sqrt(2.0))
_MARGIN_A = 5.0
# gemmi's refmac-compatible minimum blur (B = 8 pi^2 / 1.1 * spacing^2) as a standard deviation
# in voxels: below it a point-sampled atom aliases on the grid.
_ALIAS_SIGMA_VOXELS = 1.0 / math.sqrt(1.1)
_MAX_OVERSAMPLING = 4
_MAX_FINE_VOXELS = 2**27  # 512 MiB of float32 for the finer grid
# gemmi drops an atom's density where it falls below this (absolute, Å^-2). Its default, 1e-5,
# loses ~2% of the mass of a 12 Å map; 1e-7 loses < 0.05% for ~1.5x the time.
_DENSITY_CUTOFF = 1e-7


def read_structure(path: PathLike) -> Any:
    """Read a PDB or mmCIF model (also ``.gz``) with waters and hydrogens removed.

    Alternative conformations are kept: their occupancies weigh them in densities.

    Returns
    -------
    gemmi.Structure
        Coordinates in Å (x, y, z as in the file).

    Raises
    ------
    MissingFileError, FileFormatError
        Not a readable model, or no atoms left.
    """
    import gemmi

    p = require_readable_file(path)
    try:
        st = gemmi.read_structure(str(p))
    except (RuntimeError, ValueError, OSError) as error:
        raise FileFormatError(with_path(p, f"is not a readable PDB/mmCIF file ({error})")) from None
    st.setup_entities()
    st.remove_waters()
    st.remove_hydrogens()
    st.remove_empty_chains()
    if len(st) == 0 or st[0].count_atom_sites() == 0:
        raise FileFormatError(with_path(p, "holds no atoms (after removing waters and H)"))
    return st


def structure_atoms(structure: Any) -> dict[str, np.ndarray]:
    """Atoms of the first model as arrays.

    Returns
    -------
    dict
        ``zyx_A`` (n, 3) float64 positions in Å in emkit's ``(z, y, x)`` order;
        ``element`` (n,) str; ``occupancy`` (n,) float64; ``b_iso`` (n,) float64;
        ``scattering`` (n,) float64: electron scattering factor at zero angle (gemmi's
        c4322 table) times occupancy, the integral of each atom's density.
    """
    model = structure[0]
    n = model.count_atom_sites()
    zyx = np.empty((n, 3))
    occ = np.empty(n)
    b = np.empty(n)
    weight = np.empty(n)
    elements: list[str] = []
    f0: dict[str, float] = {}
    for i, cra in enumerate(model.all()):
        atom = cra.atom
        zyx[i] = (atom.pos.z, atom.pos.y, atom.pos.x)
        occ[i] = atom.occ
        b[i] = atom.b_iso
        name = atom.element.name
        if name not in f0:
            coefs = atom.element.c4322.get_coefs()
            f0[name] = float(sum(coefs[: len(coefs) // 2]))
        weight[i] = f0[name] * atom.occ
        elements.append(name)
    return {
        "zyx_A": zyx,
        "element": np.asarray(elements),
        "occupancy": occ,
        "b_iso": b,
        "scattering": weight,
    }


def structure_to_density(
    structure: PathLike | Any,
    voxel_size_A: float,
    *,
    box_size: int | None = None,
    resolution_A: float | None = None,
) -> Volume:
    """Electron-scattering density of an atomic model on a cubic grid (gemmi DensityCalculatorE).

    Each atom contributes its electron form factor (International Tables C 4.3.2.2, gemmi's
    c4322) times its occupancy, blurred by its B-factor, or, when ``resolution_A`` is given, by
    a Gaussian of standard deviation ``resolution_A / (pi * sqrt(2))`` (Chimera/ChimeraX
    ``molmap``) with the model's B-factors ignored. Only the first model is used; a file is
    read with :func:`read_structure`, which drops waters and hydrogens.

    A point-sampled Gaussian narrower than ~0.95 voxel aliases (gemmi's refmac rule). When
    ``resolution_A`` asks for less blur than that, the map is computed on a grid up to 4x
    finer and block-averaged, so each voxel holds the mean density over its cube (adding at
    most ``voxel / sqrt(12)`` of box blur per axis rather than clamping the blur to 0.95
    voxel); past that, and in B-factor mode, the blur is raised to the minimum.

    The scattering-weighted centre of the atoms (= the centre of mass of the density)
    lands exactly on voxel ``(n // 2, n // 2, n // 2)`` (the FFT / RELION box centre).
    ``origin`` is set so that the map overlays the model in its own frame (ChimeraX).

    Parameters
    ----------
    structure : path-like or gemmi.Structure
        A model file (read with :func:`read_structure`) or a structure (not modified).
    voxel_size_A : float
        Cubic voxel size in Å.
    box_size : int, optional
        Cube side in voxels; default fits every atom plus a margin (5 Å plus three blur
        standard deviations), rounded up to an even size. A smaller box crops the map
        (computed without wrap-around).
    resolution_A : float, optional
        Target resolution in Å (see above); default: the model's B-factors.

    Returns
    -------
    Volume
        float32 ``(n, n, n)`` ``(z, y, x)`` density in Å^-2 (electron scattering length
        f_e(0), in Å, per Å^3), so that ``data.sum() * voxel_size_A**3`` equals the sum of
        ``structure_atoms(...)["scattering"]`` when the box holds the whole model (to 0.1%
        up to 30 Å resolution: gemmi's per-atom cutoff drops the far tails); times
        ``h^2 / (2 pi m_e e) = 47.88 V Å^2`` it is the (non-relativistic) Coulomb potential
        in volts.
        ``voxel_size = (v, v, v)``; ``origin`` the position of voxel (0, 0, 0) in the model's
        frame (Å, (z, y, x)); ``path`` the file, if one was given.

    Raises
    ------
    MissingFileError, FileFormatError
        ``structure`` is a path that does not exist or is not a model with atoms.
    InputError
        ``voxel_size_A``, ``resolution_A`` or ``box_size`` is not positive, or no atom has
        occupancy > 0.

    Examples
    --------
    >>> vol = structure_to_density("1ake.pdb", 5.0, resolution_A=12.0)  # doctest: +SKIP
    >>> vol.data.shape, vol.voxel_size  # doctest: +SKIP
    ((20, 20, 20), (5.0, 5.0, 5.0))
    """
    import gemmi

    path: Path | None = None
    if hasattr(structure, "clone"):  # a gemmi.Structure: work on a copy
        st = structure.clone()
    else:
        path = Path(structure)
        st = read_structure(path)
    if not (np.isfinite(voxel_size_A) and voxel_size_A > 0):
        raise InputError(with_path(path, f"voxel_size_A must be positive, got {voxel_size_A}"))
    if resolution_A is not None and not (np.isfinite(resolution_A) and resolution_A > 0):
        raise InputError(with_path(path, f"resolution_A must be positive, got {resolution_A}"))
    if box_size is not None and (
        isinstance(box_size, bool) or int(box_size) != box_size or box_size < 1
    ):
        raise InputError(with_path(path, f"box_size must be a positive integer, got {box_size!r}"))
    vs = float(voxel_size_A)
    if len(st) > 1:
        for index in range(len(st) - 1, 0, -1):
            del st[index]
    atoms = structure_atoms(st)
    if atoms["scattering"].sum() <= 0:
        raise InputError(with_path(path, "the model has no atoms with occupancy > 0"))
    centre_zyx = (atoms["zyx_A"] * atoms["scattering"][:, None]).sum(0) / atoms["scattering"].sum()

    if resolution_A is not None:
        sigma = _SIGMA_PER_RESOLUTION * float(resolution_A)
        for cra in st[0].all():
            cra.atom.b_iso = 0.0
            cra.atom.aniso = gemmi.SMat33f(0, 0, 0, 0, 0, 0)
        sigma_total = max(sigma, _ALIAS_SIGMA_VOXELS * vs)
    else:
        b_min = float(atoms["b_iso"].min())
        blur = max(8 * math.pi**2 * (_ALIAS_SIGMA_VOXELS * vs) ** 2 - b_min, 0.0)
        sigma_total = math.sqrt((blur + float(atoms["b_iso"].max())) / (8 * math.pi**2))

    half_extent = float(np.abs(atoms["zyx_A"] - centre_zyx).max())
    # Even side with the centre voxel n // 2 and at least the margin on every side.
    needed = 2 * math.ceil((half_extent + _MARGIN_A + 3 * sigma_total) / vs) + 2
    n = int(box_size) if box_size is not None else needed
    n_big = max(n, needed)
    n_big += (n_big - n) % 2  # same parity, so both boxes share the centre voxel

    factor = 1
    if resolution_A is not None:
        factor = min(math.ceil(_ALIAS_SIGMA_VOXELS * vs / sigma), _MAX_OVERSAMPLING)
        while factor > 1 and (factor * n_big) ** 3 > _MAX_FINE_VOXELS:
            factor -= 1
        fine = vs / factor
        blur = 8 * math.pi**2 * max(sigma, _ALIAS_SIGMA_VOXELS * fine) ** 2
        if sigma < _ALIAS_SIGMA_VOXELS * fine:
            logger.info(
                "resolution %.2f A is finer than %.2f A voxels allow; blurred more",
                resolution_A,
                vs,
            )
    density = _density_on_grid(st, blur, n_big, vs, factor, centre_zyx)
    if n_big != n:
        start = n_big // 2 - n // 2
        density = density[start : start + n, start : start + n, start : start + n]
        logger.info("density cropped from %d to %d voxels per side", n_big, n)
    origin = tuple(float(c - (n // 2) * vs) for c in centre_zyx)
    return Volume(
        data=np.ascontiguousarray(density),
        voxel_size=(vs, vs, vs),
        origin=(origin[0], origin[1], origin[2]),
        path=path,
    )


def _density_on_grid(
    st: Any, blur: float, n: int, voxel_A: float, factor: int, centre_zyx: np.ndarray
) -> np.ndarray:
    """Density of ``st[0]`` (modified in place) on an ``(n, n, n)`` grid, centre on n // 2.

    With ``factor > 1`` it is computed ``factor`` times finer and block-averaged; the fine
    grid is offset by ``(factor - 1) / 2`` fine voxels so block centres are coarse voxels.
    """
    import gemmi

    fine_A = voxel_A / factor
    n_fine = n * factor
    target = (n // 2) * voxel_A + (factor - 1) / 2 * fine_A
    shift = gemmi.Position(*(target - c for c in centre_zyx[::-1]))
    for cra in st[0].all():
        cra.atom.pos = cra.atom.pos + shift
    side = n_fine * fine_A
    st.cell = gemmi.UnitCell(side, side, side, 90, 90, 90)
    st.spacegroup_hm = "P 1"
    calc = gemmi.DensityCalculatorE()
    calc.d_min = 0.0  # grid size is set explicitly below
    calc.grid.set_unit_cell(st.cell)
    calc.grid.spacegroup = gemmi.SpaceGroup("P 1")
    calc.grid.set_size(n_fine, n_fine, n_fine)
    calc.blur = blur
    calc.cutoff = _DENSITY_CUTOFF
    calc.put_model_density_on_grid(st[0])
    # gemmi grids are indexed (x, y, z); emkit volumes are (z, y, x).
    density = np.asarray(calc.grid.array, dtype=np.float32).transpose(2, 1, 0)
    if factor > 1:
        density = density.reshape(n, factor, n, factor, n, factor).mean(axis=(1, 3, 5))
    return np.array(density, dtype=np.float32, copy=True)
