"""Atomic models -> density: centred on voxel n // 2, mass proportional to atom content."""

from __future__ import annotations

from pathlib import Path

import gemmi
import numpy as np
import pytest
from scipy import ndimage

from emkit.errors import FileFormatError, InputError, MissingFileError
from emkit.io import read_structure, structure_atoms, structure_to_density, write_volume

SHARED = Path(__file__).parents[1] / ".." / "shared" / "data"
needs_shared = pytest.mark.skipif(
    not (SHARED / "structures").is_dir(), reason="../shared/data (reference data) is absent"
)


def _carbons(
    positions_xyz: list[tuple[float, float, float]], b_iso: float = 20.0
) -> gemmi.Structure:
    st = gemmi.Structure()
    model = gemmi.Model("1")
    chain = gemmi.Chain("A")
    for i, pos in enumerate(positions_xyz):
        residue = gemmi.Residue()
        residue.name = "GLY"
        residue.seqid = gemmi.SeqId(i + 1, " ")
        atom = gemmi.Atom()
        atom.name = "CA"
        atom.element = gemmi.Element("C")
        atom.pos = gemmi.Position(*pos)
        atom.occ = 1.0
        atom.b_iso = b_iso
        residue.add_atom(atom)
        chain.add_residue(residue)
    model.add_chain(chain)
    st.add_model(model)
    st.setup_entities()
    return st


def _com_in_voxels(atoms_zyx: np.ndarray, weights: np.ndarray, vol: object) -> np.ndarray:
    centre = (atoms_zyx * weights[:, None]).sum(0) / weights.sum()
    return (centre - np.asarray(vol.origin)) / np.asarray(vol.voxel_size)  # type: ignore[attr-defined]


def test_tiny_structure_density_centred_and_proportional_to_atoms() -> None:
    few = _carbons([(0.0, 0.0, 0.0), (6.0, 1.0, -2.0), (3.0, 7.0, 4.0)])
    many = _carbons(
        [
            (0.0, 0.0, 0.0),
            (6.0, 1.0, -2.0),
            (3.0, 7.0, 4.0),
            (-5.0, 2.0, 1.0),
            (1.0, -6.0, 3.0),
            (-2.0, -1.0, -7.0),
        ]
    )
    mass = []
    for st in (few, many):
        vol = structure_to_density(st, 1.0, box_size=40)
        assert vol.data.shape == (40, 40, 40) and vol.data.dtype == np.float32
        assert vol.voxel_size == (1.0, 1.0, 1.0)
        com = np.array(ndimage.center_of_mass(vol.data))
        np.testing.assert_allclose(com, [20, 20, 20], atol=0.05)  # n // 2
        atoms = structure_atoms(st)
        np.testing.assert_allclose(
            _com_in_voxels(atoms["zyx_A"], atoms["scattering"], vol), com, atol=0.05
        )
        total = float(vol.data.sum())  # voxel volume 1 Å^3
        assert total == pytest.approx(atoms["scattering"].sum(), rel=0.02)
        mass.append(total)
    assert mass[1] / mass[0] == pytest.approx(2.0, rel=0.01)


def test_resolution_blurs_more_and_box_default_fits() -> None:
    st = _carbons([(0.0, 0.0, 0.0)], b_iso=0.0)
    sharp = structure_to_density(st, 1.0)
    blurred = structure_to_density(st, 1.0, resolution_A=8.0)
    assert sharp.data.shape[0] % 2 == 0 and blurred.data.shape[0] > sharp.data.shape[0]
    assert blurred.data.max() < 0.2 * sharp.data.max()
    assert float(blurred.data.sum()) == pytest.approx(float(sharp.data.sum()), rel=0.02)
    # Gaussian of sigma = resolution / (pi sqrt 2) per axis: check the second moment.
    d = blurred.data.astype(np.float64)
    c = blurred.data.shape[0] // 2
    profile = d.sum(axis=(0, 1))
    x = np.arange(d.shape[2]) - c
    sigma = np.sqrt((profile * x**2).sum() / profile.sum())
    assert sigma == pytest.approx(8.0 / (np.pi * np.sqrt(2)), rel=0.05)


def _form_factor_variance_A2(element: str) -> float:
    """Per-axis variance (Å^2) of an unblurred atom's c4322 density (mix of Gaussians)."""
    coefs = gemmi.Element(element).c4322.get_coefs()
    a, b = np.array(coefs[:5]), np.array(coefs[5:])
    return float((a * b).sum() / a.sum() / (8 * np.pi**2))


@pytest.mark.parametrize(("voxel_A", "resolution_A"), [(2.0, 6.0), (5.0, 12.0)])
def test_resolution_near_nyquist_is_kept_not_clamped(voxel_A: float, resolution_A: float) -> None:
    # Asked-for sigma < 0.95 voxel: computed 2x finer and block-averaged, so the map's
    # width is the requested Gaussian plus the form factor plus a 2-sample box, not
    # gemmi's 0.95-voxel minimum blur.
    st = _carbons([(0.3, -0.7, 1.1)], b_iso=60.0)
    vol = structure_to_density(st, voxel_A, resolution_A=resolution_A)
    d = vol.data.astype(np.float64)
    n = d.shape[0]
    np.testing.assert_allclose(ndimage.center_of_mass(d), [n // 2] * 3, atol=1e-3)
    atoms = structure_atoms(st)
    assert d.sum() * voxel_A**3 == pytest.approx(atoms["scattering"].sum(), rel=1e-4)
    x = (np.arange(n) - n // 2) * voxel_A
    sigma = np.sqrt((d.sum(axis=(0, 1)) * x**2).sum() / d.sum())
    asked = resolution_A / (np.pi * np.sqrt(2))
    box = 3 / 12 * (voxel_A / 2) ** 2  # variance of a box of two samples
    expected = np.sqrt(asked**2 + _form_factor_variance_A2("C") + box)
    assert sigma == pytest.approx(expected, rel=0.02)
    clamped = np.sqrt((voxel_A / np.sqrt(1.1)) ** 2 + _form_factor_variance_A2("C"))
    assert sigma < 0.85 * clamped


@needs_shared
def test_protein_mass_is_all_there_at_low_resolution() -> None:
    # gemmi's default density cutoff dropped ~2% of a 12 Å map's mass
    path = SHARED / "structures" / "1ake.pdb"
    vol = structure_to_density(path, 5.0, resolution_A=12.0)
    total = structure_atoms(read_structure(path))["scattering"].sum()
    assert vol.data.sum() * 5.0**3 == pytest.approx(total, rel=1e-3)
    assert vol.data.min() >= 0.0


def test_odd_box_and_cropping_keep_centre_on_n_floor_half() -> None:
    st = _carbons([(0.0, 0.0, 0.0), (20.0, 0.0, 0.0)])
    vol = structure_to_density(st, 1.0, box_size=15)  # smaller than the model: cropped
    assert vol.data.shape == (15, 15, 15)
    np.testing.assert_allclose(ndimage.center_of_mass(vol.data)[:2], [7, 7], atol=0.05)


@needs_shared
def test_1ake_density_centre_matches_atoms(tmp_path: Path) -> None:
    st = read_structure(SHARED / "structures" / "1ake.pdb")
    atoms = structure_atoms(st)
    assert len(atoms["zyx_A"]) == 1661  # no waters, no hydrogens
    vol = structure_to_density(SHARED / "structures" / "1ake.pdb", 2.0)
    n = vol.data.shape[0]
    com = np.array(ndimage.center_of_mass(vol.data))
    np.testing.assert_allclose(com, [n // 2] * 3, atol=0.5)
    # unweighted mean of the atoms, mapped into voxels through the origin
    np.testing.assert_allclose(
        _com_in_voxels(atoms["zyx_A"], np.ones(len(atoms["zyx_A"])), vol), com, atol=0.5
    )
    assert vol.data.min() >= -1e-3 * vol.data.max()
    back = write_volume(tmp_path / "1ake.mrc", vol)
    assert back.exists()


@needs_shared
def test_gzipped_mmcif_reads() -> None:
    st = read_structure(SHARED / "structures" / "6zu5.cif.gz")
    assert st[0].count_atom_sites() > 100_000


def test_bad_structure_input(tmp_path: Path) -> None:
    with pytest.raises(MissingFileError, match="none.pdb"):
        read_structure(tmp_path / "none.pdb")
    (tmp_path / "junk.cif").write_text("this is not a model\n")
    with pytest.raises(FileFormatError, match="junk.cif"):
        read_structure(tmp_path / "junk.cif")
    (tmp_path / "water.pdb").write_text(
        "HETATM    1  O   HOH A   1       0.000   0.000   0.000  1.00 10.00           O\nEND\n"
    )
    with pytest.raises(FileFormatError, match="water.pdb: holds no atoms"):
        read_structure(tmp_path / "water.pdb")
    with pytest.raises(InputError):
        structure_to_density(_carbons([(0.0, 0.0, 0.0)]), 0.0)


def test_each_atom_lands_on_its_own_voxel_through_the_origin() -> None:
    # Centre-of-mass checks cannot see an axis swap or flip (the centre is on n // 2 by
    # construction); separate, asymmetrically placed atoms can: every density peak must sit
    # where (position - origin) / voxel_size puts its atom, in (z, y, x) order.
    xyz = [(9.0, 0.0, 0.0), (0.0, -6.0, 0.0), (0.0, 0.0, 4.0), (-3.0, 5.0, -7.0)]
    st = _carbons(xyz, b_iso=5.0)
    vol = structure_to_density(st, 1.0, box_size=40)
    atoms = structure_atoms(st)
    expected = (atoms["zyx_A"] - np.asarray(vol.origin)) / np.asarray(vol.voxel_size)
    np.testing.assert_allclose(atoms["zyx_A"], np.array(xyz)[:, ::-1])
    d = vol.data.astype(np.float64)
    # an atom half-way between voxels gives two equal maxima: one labelled peak
    labels, n_peaks = ndimage.label((d == ndimage.maximum_filter(d, size=5)) & (d > 0.2 * d.max()))
    assert n_peaks == len(xyz)
    found = np.array(ndimage.center_of_mass(d, labels, range(1, n_peaks + 1)))
    for position in expected:
        nearest = np.rint(found[np.argmin(np.linalg.norm(found - position, axis=1))]).astype(int)
        window = tuple(slice(c - 2, c + 3) for c in nearest)
        local = np.array(ndimage.center_of_mass(d[window])) + nearest - 2
        np.testing.assert_allclose(local, position, atol=0.15)
