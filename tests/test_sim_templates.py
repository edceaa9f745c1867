"""Built-in density templates, PDB -> density, and crowded particle volumes."""

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from emkit.errors import FileFormatError, InputError, MismatchError, MissingFileError
from emkit.geometry import matrix_xyz_to_zyx, rotation_angle_between
from emkit.io import read_structure, structure_atoms, structure_to_density
from emkit.io._volume import Volume
from emkit.sim import (
    density_from_pdb,
    density_template,
    list_density_templates,
    place_particles,
)

SHARED = Path(__file__).parents[1] / ".." / "shared" / "data"
STRUCTURES = SHARED / "structures"
needs_shared = pytest.mark.skipif(
    not STRUCTURES.is_dir(), reason="shared reference data (../shared/data) not available"
)
TEMPLATE_DIR = Path(__file__).parents[1] / "src" / "emkit" / "data" / "templates"


def _centre_of_mass_offset(data):
    return np.array(ndimage.center_of_mass(data)) - np.array(data.shape) // 2


def test_catalogue_lists_six_templates_with_metadata():
    records = list_density_templates()
    assert [r["name"] for r in records] == ["1ake", "3enl", "6flr", "3o21", "6flr_a", "6zu5_se0"]
    for r in records:
        assert {"pdb_id", "chain", "voxel_size_A", "box", "resolution_A", "units",
                "how"} <= set(r)
        assert r["total_scattering_A"] > 0
        assert 4.0 <= r["voxel_size_A"] <= 6.0 and 32 <= r["box"][0] <= 48


def test_shipped_templates_are_small():
    total = sum(p.stat().st_size for p in TEMPLATE_DIR.iterdir())
    assert total < 1_000_000
    assert json.loads((TEMPLATE_DIR / "templates.json").read_text())


@pytest.mark.parametrize("name", ["1ake", "3enl", "6flr", "3o21", "6flr_a", "6zu5_se0"])
def test_templates_load_centred_non_negative(name):
    vol = density_template(name)
    assert isinstance(vol, Volume)
    assert vol.voxel_size == (5.0, 5.0, 5.0)
    assert vol.data.dtype == np.float32 and vol.data.ndim == 3
    assert vol.data.min() >= 0.0 and vol.data.max() > 0.07  # Å^-2; protein peaks ~0.14
    # the whole model's scattering is in the box (float16 storage costs < 0.1%)
    record = {r["name"]: r for r in list_density_templates()}[name]
    assert vol.data.sum() * 5.0**3 == pytest.approx(record["total_scattering_A"], rel=2e-3)
    assert np.abs(_centre_of_mass_offset(vol.data)).max() < 1.0
    # zero at the box faces: room to rotate
    faces = [vol.data[0], vol.data[-1], vol.data[:, 0], vol.data[:, :, -1]]
    assert max(float(f.max()) for f in faces) < 0.01 * vol.data.max()


def test_one_chain_templates_are_smaller_than_their_complex_and_of_similar_size():
    """6flr_a is one of 6flr's two chains (about half its mass); 3enl, 6flr_a and 6zu5_se0
    are the pick benchmark's three species of similar size (radii 45-55 Å at 10 Å)."""
    from emkit.sim._placement import _template_radius

    whole, chain = density_template("6flr").data.sum(), density_template("6flr_a").data.sum()
    assert 0.4 < chain / whole < 0.6
    for name in ("3enl", "6flr_a", "6zu5_se0"):
        radius_A = 10.0 * _template_radius(density_template(name, voxel_size_A=10.0).data)
        assert 45.0 <= radius_A <= 55.0, (name, radius_A)


@needs_shared
def test_shipped_templates_are_made_from_the_shared_structures(tmp_path):
    """``python -m emkit.sim._make_templates`` reproduces every shipped file exactly."""
    from emkit.sim._make_templates import make_templates

    make_templates(STRUCTURES, tmp_path)
    for shipped in TEMPLATE_DIR.iterdir():
        assert (tmp_path / shipped.name).read_bytes() == shipped.read_bytes(), shipped.name


def test_bigger_proteins_have_more_mass():
    mass = [density_template(n).data.sum() for n in ("1ake", "3enl", "6flr", "3o21")]
    assert mass == sorted(mass)


def test_template_resampling_keeps_mass_and_centre():
    ref = density_template("6flr")
    coarse = density_template("6flr", voxel_size_A=10.0)
    fine = density_template("6flr", voxel_size_A=2.5)
    assert coarse.voxel_size == (10.0, 10.0, 10.0) and coarse.data.shape == (16, 16, 16)
    assert fine.data.shape == (64, 64, 64)
    mass = ref.data.sum() * 5.0**3
    assert coarse.data.sum() * 10.0**3 == pytest.approx(mass, rel=0.01)
    assert fine.data.sum() * 2.5**3 == pytest.approx(mass, rel=0.01)
    assert np.abs(_centre_of_mass_offset(coarse.data)).max() < 0.5
    # the physical position of the box centre is unchanged
    for v in (coarse, fine):
        centre = np.array(v.origin) + np.array(v.voxel_size) * (np.array(v.data.shape) // 2)
        ref_centre = np.array(ref.origin) + 5.0 * (np.array(ref.data.shape) // 2)
        np.testing.assert_allclose(centre, ref_centre, atol=1e-9)


def test_unknown_template_names_the_choices():
    with pytest.raises(InputError, match="choose one of 1ake"):
        density_template("nope")
    with pytest.raises(InputError):
        density_template("1ake", voxel_size_A=-1.0)


@needs_shared
def test_density_from_pdb_matches_shipped_template():
    vol = density_from_pdb(STRUCTURES / "1ake.pdb", 5.0, box_size=32, resolution_A=12.0)
    assert vol.voxel_size == (5.0, 5.0, 5.0) and vol.data.shape == (32, 32, 32)
    assert vol.path == STRUCTURES / "1ake.pdb"
    shipped = density_template("1ake").data
    np.testing.assert_allclose(vol.data, shipped, atol=2e-3 * shipped.max())
    assert np.abs(_centre_of_mass_offset(vol.data)).max() < 1.0


@needs_shared
def test_density_from_pdb_default_box_fits_and_reads_gzipped_cif(tmp_path):
    vol = density_from_pdb(STRUCTURES / "3enl.pdb", 6.0)
    n = vol.data.shape[0]
    assert n % 2 == 0 and 12 <= n <= 40
    # all mass inside: the total equals the model's summed electron scattering factors
    scattering = structure_atoms(read_structure(STRUCTURES / "3enl.pdb"))["scattering"].sum()
    assert vol.data.sum() * 6.0**3 == pytest.approx(scattering, rel=1e-3)
    assert np.abs(_centre_of_mass_offset(vol.data)).max() < 0.05
    # the same model as gzipped mmCIF gives the same map
    cif = tmp_path / "3enl.cif.gz"
    with gzip.open(cif, "wt") as fh:
        fh.write(read_structure(STRUCTURES / "3enl.pdb").make_mmcif_document().as_string())
    from_cif = density_from_pdb(cif, 6.0)
    assert from_cif.path == cif
    np.testing.assert_allclose(from_cif.data, vol.data, atol=1e-4 * vol.data.max())


def test_density_from_pdb_is_io_density_at_nyquist_resolution(tmp_path):
    # a few carbons with large B-factors: the sim default ignores them and blurs to 2 voxels
    pdb = tmp_path / "tiny.pdb"
    pdb.write_text(
        "".join(
            f"ATOM  {i + 1:5d}  CA  GLY A{i + 1:4d}    {x:8.3f}{y:8.3f}{z:8.3f}  1.00 80.00"
            "           C\n"
            for i, (x, y, z) in enumerate([(0, 0, 0), (6, 1, -2), (3, 7, 4), (-5, 2, 1)])
        )
        + "END\n"
    )
    vol = density_from_pdb(pdb, 2.0)
    np.testing.assert_array_equal(vol.data, structure_to_density(pdb, 2.0, resolution_A=4.0).data)
    with_b = structure_to_density(pdb, 2.0)
    assert vol.data.max() > 3 * with_b.data.max()
    np.testing.assert_allclose(vol.origin, with_b.origin)  # same centre of mass
    with pytest.raises(InputError):
        density_from_pdb(pdb, -1.0)
    with pytest.raises(InputError):
        density_from_pdb(pdb, 2.0, box_size=12.5)


def test_density_from_pdb_bad_files(tmp_path):
    missing = tmp_path / "missing.pdb"
    with pytest.raises(MissingFileError, match="missing.pdb"):
        density_from_pdb(missing, 5.0)
    junk = tmp_path / "junk.cif"
    junk.write_text("this is not a structure\n")
    with pytest.raises(FileFormatError, match="junk.cif"):
        density_from_pdb(junk, 5.0)


# ---------------------------------------------------------------- place_particles


@pytest.fixture(scope="module")
def coarse_templates():
    return [density_template(n, voxel_size_A=10.0) for n in ("1ake", "6flr", "3o21")]


def test_place_particles_ground_truth(coarse_templates):
    out = place_particles((48, 96, 96), coarse_templates, seed=1, n_particles=40)
    volume, centres, classes, rotations = out
    assert volume.shape == (48, 96, 96) and volume.dtype == np.float32
    assert centres.shape == (40, 3) and classes.shape == (40,) and rotations.shape == (40, 3, 3)
    assert set(classes) == {0, 1, 2}
    np.testing.assert_allclose(np.linalg.det(rotations), 1.0, atol=1e-9)
    # density peaks at the particles: every centre is well above the background
    at_centres = ndimage.map_coordinates(volume, centres.T, order=1)
    peak = max(float(t.data.max()) for t in coarse_templates)
    background = np.median(volume)
    assert background < 3e-3 * peak
    assert at_centres.min() > 0.3 * peak
    # templates do not overlap: centres at least r_i + r_j apart, all inside the volume
    d = np.linalg.norm(centres[:, None] - centres[None], axis=2)
    np.fill_diagonal(d, np.inf)
    assert d.min() >= 4.0
    assert np.all(centres >= 0) and np.all(centres <= np.array(volume.shape) - 1)
    # the whole mass of every particle is inside
    mass = sum(coarse_templates[k].data.sum() for k in classes)
    assert volume.sum() == pytest.approx(mass, rel=0.01)


def test_place_particles_min_distance_and_reproducibility(coarse_templates):
    a = place_particles(
        (40, 80, 80), coarse_templates[:1], seed=3, n_particles=30, min_distance=12.0
    )
    b = place_particles(
        (40, 80, 80), coarse_templates[:1], seed=3, n_particles=30, min_distance=12.0
    )
    np.testing.assert_array_equal(a.volume, b.volume)
    d = np.linalg.norm(a.centres_zyx[:, None] - a.centres_zyx[None], axis=2)
    np.fill_diagonal(d, np.inf)
    assert d.min() >= 12.0
    c = place_particles((40, 80, 80), coarse_templates[:1], seed=4, n_particles=30)
    assert not np.allclose(a.centres_zyx, c.centres_zyx)


def test_place_particles_rotation_convention():
    # undo the returned rotation around the returned centre: the template comes back
    template = density_template("6flr").data
    out = place_particles((44, 44, 44), [template], seed=5, n_particles=1, interpolation_order=3)
    R, p = out.rotations[0], out.centres_zyx[0]
    assert rotation_angle_between(np.eye(3), R) > 20

    def sample_back(matrix_xyz):
        # T_est(q) = V(matrix @ (q - c) + p), q over the template grid
        M = matrix_xyz_to_zyx(matrix_xyz)
        c = np.array(template.shape) // 2
        return ndimage.affine_transform(
            out.volume, M, offset=p - M @ c, output_shape=template.shape, order=1
        )

    def ncc(a, b):
        a, b = a - a.mean(), b - b.mean()
        return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))

    assert ncc(sample_back(R), template) > 0.97
    assert ncc(sample_back(R.T), template) < 0.9  # the other convention does not fit


def test_place_particles_volume_fraction_and_identity(coarse_templates):
    out = place_particles(
        (32, 64, 64), coarse_templates[:2], seed=6, volume_fraction=0.1, rotate=False
    )
    assert len(out.class_ids) > 5
    np.testing.assert_array_equal(out.rotations, np.broadcast_to(np.eye(3), out.rotations.shape))


def test_place_particles_bad_requests(coarse_templates):
    with pytest.raises(InputError, match="could place only"):
        place_particles((24, 24, 24), coarse_templates, seed=0, n_particles=500)
    with pytest.raises(InputError, match="exactly one"):
        place_particles((24, 24, 24), coarse_templates, seed=0)
    with pytest.raises(InputError, match="does not fit"):
        place_particles((8, 64, 64), [density_template("3o21")], seed=0, n_particles=1)
    with pytest.raises(MismatchError, match="voxel sizes"):
        place_particles(
            (64, 64, 64), [density_template("1ake"), coarse_templates[0]], seed=0, n_particles=1
        )
