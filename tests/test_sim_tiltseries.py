"""Simulated tilt series: shapes, seeds, the SNR definition, and that the shifts are true."""

import numpy as np
import pytest

from emkit.errors import InputError
from emkit.sim import simulate_tilt_series
from emkit.tomo import transform_images, validity_masks

SMALL = {"shape": (12, 48, 48), "tilt_step_deg": 6.0, "max_shift_px": 4.0}


def test_shapes_angles_and_metadata():
    sim = simulate_tilt_series(**SMALL, seed=1, pixel_size_A=7.5)
    assert sim.stack.shape == (21, 48, 48) and sim.stack.dtype == np.float32
    assert sim.volume.shape == (12, 48, 48)
    np.testing.assert_allclose(sim.tilt_angles_deg, np.arange(-60, 61, 6.0))
    assert sim.shifts_px.shape == (21, 2) and np.abs(sim.shifts_px).max() <= 4.0
    assert sim.pixel_size_A == 7.5 and sim.info["seed"] == 1


def test_same_seed_same_series_other_seed_other_series():
    a = simulate_tilt_series(**SMALL, seed=4)
    b = simulate_tilt_series(**SMALL, seed=4)
    c = simulate_tilt_series(**SMALL, seed=5)
    np.testing.assert_array_equal(a.stack, b.stack)
    np.testing.assert_array_equal(a.shifts_px, b.shifts_px)
    assert not np.array_equal(a.shifts_px, c.shifts_px)


@pytest.mark.parametrize("noise", ["gaussian", "poisson"])
def test_snr_is_signal_variance_over_noise_variance(noise):
    clean = simulate_tilt_series(**SMALL, seed=2, snr=None)
    noisy = simulate_tilt_series(**SMALL, seed=2, snr=0.5, noise=noise)
    residual = noisy.stack - clean.stack
    measured = clean.stack.var() / residual.var()
    assert measured == pytest.approx(0.5, rel=0.1)


def test_true_shifts_align_the_raw_images():
    sim = simulate_tilt_series(**SMALL, seed=3, snr=None)
    aligned = transform_images(sim.stack, sim.shifts_px)
    valid = validity_masks(sim.stack.shape, sim.shifts_px, margin_px=2)
    error = (aligned - sim.clean)[valid]
    # Only interpolation differs (cubic here, a twice finer sampling in the simulation),
    # most at the phantom's sharp edges.
    assert np.sqrt(np.mean(error**2)) < 0.1 * np.sqrt(np.mean(sim.clean**2))
    unaligned = (sim.stack - sim.clean)[valid]
    assert np.sqrt(np.mean(unaligned**2)) > 5 * np.sqrt(np.mean(error**2))


def test_tilt_axis_rotation_and_ctf_and_phantoms_run():
    rotated = simulate_tilt_series(**SMALL, seed=0, snr=None, tilt_axis_angle_deg=10.0)
    aligned = transform_images(
        rotated.stack, rotated.shifts_px, tilt_axis_angle_deg=10.0, fill=0.0
    )
    centre = (slice(None), slice(14, 34), slice(14, 34))
    error = aligned[centre] - rotated.clean[centre]
    assert np.sqrt(np.mean(error**2)) < 0.1 * np.sqrt(np.mean(rotated.clean[centre] ** 2))
    ctf = simulate_tilt_series(**SMALL, seed=0, snr=None, defocus_um=2.0)
    assert np.isfinite(ctf.stack).all() and not np.allclose(ctf.stack, rotated.clean)
    for phantom in ("shepp-logan", "particles"):
        sim = simulate_tilt_series(**SMALL, seed=0, phantom=phantom, snr=None)
        assert sim.volume.max() > 0 and np.isfinite(sim.stack).all()


def test_bad_parameters():
    with pytest.raises(InputError):
        simulate_tilt_series(**SMALL, phantom="teapot")
    with pytest.raises(InputError):
        simulate_tilt_series(shape=(8, 32, 32), tilt_range_deg=(-2, 2), tilt_step_deg=3)
    with pytest.raises(InputError):
        simulate_tilt_series(**SMALL, snr=0.0)
