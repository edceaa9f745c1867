"""emkit.sim.simulate_tomogram: crowded cryo-ET tomograms with ground truth."""

from __future__ import annotations

import numpy as np
import pytest

from emkit.errors import InputError
from emkit.sim import simulate_tomogram

SMALL = (32, 64, 64)


@pytest.fixture(scope="module")
def sim():
    return simulate_tomogram(SMALL, seed=3, volume_fraction=0.1, n_gold=1)


def test_shapes_and_ground_truth_agree(sim) -> None:
    n = len(sim.centres_zyx)
    assert n > 10
    assert sim.tomogram.shape == SMALL and sim.tomogram.dtype == np.float32
    assert sim.instance_labels.shape == SMALL and sim.instance_labels.dtype == np.int32
    assert sim.class_ids.shape == (n,) and set(sim.class_ids) <= {1, 2, 3}
    assert sim.rotations.shape == (n, 3, 3)
    # every particle has its own non-empty instance, and each instance holds its centre
    assert sorted(set(np.unique(sim.instance_labels)) - {0}) == list(range(1, n + 1))
    idx = np.round(sim.centres_zyx).astype(int)
    assert np.mean(sim.instance_labels[tuple(idx.T)] == np.arange(1, n + 1)) > 0.95
    assert len(sim.tilt_angles_deg) == 41 and sim.tilt_series.shape == (41, 64, 64)


def test_particles_do_not_overlap_and_lie_inside(sim) -> None:
    radii = np.array(sim.radii_A) / sim.voxel_size_A
    r = radii[sim.class_ids - 1]
    d = np.linalg.norm(sim.centres_zyx[:, None] - sim.centres_zyx[None], axis=2)
    np.fill_diagonal(d, np.inf)
    assert np.all(d >= (r[:, None] + r[None]) - 1e-6)
    assert np.all(sim.centres_zyx >= r[:, None] - 1e-6)
    assert np.all(sim.centres_zyx <= np.array(SMALL) - 1 - r[:, None] + 1e-6)


def test_some_particles_sit_on_the_membrane(sim) -> None:
    assert 0 < sim.on_membrane.sum() < len(sim.on_membrane)


def test_same_seed_same_tomogram_other_seed_other() -> None:
    a = simulate_tomogram(SMALL, seed=5, n_gold=0, membrane=False)
    b = simulate_tomogram(SMALL, seed=5, n_gold=0, membrane=False)
    c = simulate_tomogram(SMALL, seed=6, n_gold=0, membrane=False)
    np.testing.assert_array_equal(a.tomogram, b.tomogram)
    np.testing.assert_array_equal(a.centres_zyx, b.centres_zyx)
    assert a.centres_zyx.shape != c.centres_zyx.shape or not np.allclose(
        a.centres_zyx, c.centres_zyx)


def test_protein_is_dark_in_the_noise_free_tomogram() -> None:
    clean = simulate_tomogram(SMALL, seed=2, snr=None, n_gold=0, membrane=False)
    inside = clean.instance_labels > 0
    assert clean.tomogram[inside].mean() < clean.tomogram[~inside].mean()


def test_noise_follows_the_snr() -> None:
    noisy = simulate_tomogram(SMALL, seed=2, snr=0.01, n_gold=0, membrane=False, ice_gradient=0,
                              defocus_um=None)
    clean = simulate_tomogram(SMALL, seed=2, snr=None, n_gold=0, membrane=False, ice_gradient=0,
                              defocus_um=None)
    noise = noisy.tilt_series - clean.tilt_series
    # the particle-only projection variance over the noise variance (no clutter: all signal)
    assert clean.tilt_series.var() / noise.var() == pytest.approx(0.01, rel=0.05)


@pytest.mark.parametrize("kwargs", [
    {"shape": (8, 64, 64)}, {"voxel_size_A": 0}, {"volume_fraction": 0.6},
    {"snr": -1}, {"tilt_range_deg": (60, -60)}, {"templates": ["nope"]},
    {"label_level": 1.5}, {"shape": (16, 16, 16), "voxel_size_A": 5.0},
])
def test_bad_parameters_are_refused(kwargs) -> None:
    args = {"shape": SMALL, **kwargs}
    with pytest.raises(InputError):
        simulate_tomogram(args.pop("shape"), seed=0, **args)


def test_the_default_simulation_is_fast() -> None:
    import time

    start = time.perf_counter()
    sim = simulate_tomogram(seed=11)
    assert sim.tomogram.shape == (64, 160, 160)
    assert time.perf_counter() - start < 60
