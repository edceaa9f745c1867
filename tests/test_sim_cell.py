"""emkit.sim.simulate_cell: labels, absorption, seeding, missing-wedge imaging."""

import numpy as np
import pytest

from emkit.errors import InputError
from emkit.sim import CELL_CLASS_NAMES, simulate_cell


@pytest.fixture(scope="module")
def cell():
    return simulate_cell((40, 96, 96), seed=3)


def test_cell_has_every_class_and_matching_shapes(cell):
    assert cell.tomogram.shape == cell.labels.shape == cell.absorption_per_um.shape
    assert cell.tomogram.dtype == np.float32 and cell.labels.dtype == np.uint8
    assert set(np.unique(cell.labels)) == set(range(len(CELL_CLASS_NAMES)))
    assert cell.voxel_size_A == 300.0
    assert cell.tilt_angles_deg[0] == -65 and cell.tilt_angles_deg[-1] == 65


def test_reconstruction_orders_the_compartments_by_absorption(cell):
    means = [float(cell.tomogram[cell.labels == k].mean()) for k in range(5)]
    # outside (ice) < cytoplasm < nucleus < mitochondria < lipid droplets
    assert means == sorted(means)
    assert abs(means[0]) < 0.02  # relative to ice


def test_missing_wedge_blurs_along_z_more_than_in_plane(cell):
    error = cell.tomogram - cell.absorption_per_um
    gz = np.abs(np.diff(cell.tomogram, axis=0)).mean()
    gx = np.abs(np.diff(cell.tomogram, axis=2)).mean()
    assert gz < gx  # elongation along z
    assert np.corrcoef(cell.tomogram.ravel(), cell.absorption_per_um.ravel())[0, 1] > 0.6
    assert np.abs(error).mean() > 0.005  # not the truth: noise, blur and wedge


def test_same_seed_same_cell_other_seed_other_cell():
    a = simulate_cell((24, 48, 48), seed=1)
    b = simulate_cell((24, 48, 48), seed=1)
    c = simulate_cell((24, 48, 48), seed=2)
    np.testing.assert_array_equal(a.tomogram, b.tomogram)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert (a.labels != c.labels).mean() > 0.05


def test_bad_parameters():
    with pytest.raises(InputError):
        simulate_cell((8, 48, 48))
    with pytest.raises(InputError):
        simulate_cell((24, 48, 48), tilt_range_deg=(60, -60))
    with pytest.raises(InputError):
        simulate_cell((24, 48, 48), photons_per_pixel=0)
