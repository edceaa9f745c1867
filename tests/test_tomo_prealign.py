"""Pre-alignment: correlation peaks, accuracy on a known misaligned series, tilt axis."""

import numpy as np
import pytest
from scipy import ndimage

from emkit.errors import InputError, MismatchError, NonFiniteError
from emkit.sim import simulate_tilt_series
from emkit.tomo import estimate_tilt_axis, prealign, shift_images, shift_rmse
from emkit.tomo._correlate import bandpass_filter, correlation_peak


@pytest.fixture(scope="module")
def series():
    """The acceptance series: 61 tilts over +-60 deg, shifts up to 10 px, SNR 1."""
    return simulate_tilt_series(shape=(32, 128, 128), max_shift_px=10.0, snr=1.0, seed=0)


def test_correlation_peak_finds_a_subpixel_shift():
    rng = np.random.default_rng(0)
    image = ndimage.gaussian_filter(rng.normal(size=(96, 96)), 2.0)
    true = np.array([3.3, -5.72])
    moved = np.fft.ifft2(
        np.fft.fft2(image)
        * np.exp(-2j * np.pi * (np.fft.fftfreq(96)[:, None] * true[0]
                                + np.fft.fftfreq(96)[None, :] * true[1]))
    ).real
    shift, peak = correlation_peak(moved, image, filt=bandpass_filter((96, 96)))
    np.testing.assert_allclose(shift, true, atol=0.03)
    assert 0.9 < peak <= 1.01
    limited, _ = correlation_peak(moved, image, max_shift_px=2.0)
    assert np.all(np.abs(limited) <= 2.0)
    # The true peak (3.3, -5.72) lies outside: the best allowed shift sits on the window's
    # edge towards it, as the plain search of the window alone finds it.
    np.testing.assert_allclose(limited, [2.0, -2.0], atol=1e-9)
    inside, _ = correlation_peak(moved, image, max_shift_px=(4.0, 6.0))
    np.testing.assert_allclose(inside, true, atol=0.05)


@pytest.mark.slow
def test_prealign_meets_one_pixel(series):
    result = prealign(series.stack, series.tilt_angles_deg)
    angles, truth = series.tilt_angles_deg, series.shifts_px
    assert result.shifts_px.shape == (61, 2)
    assert shift_rmse(result.shifts_px, truth) <= 1.0
    assert shift_rmse(result.shifts_px, truth, angles, gauge="rigid") <= 1.0
    before = shift_rmse(np.zeros_like(truth), truth, angles, gauge="rigid")
    assert before > 4.0
    assert result.masks.shape == series.stack.shape and result.masks.mean() > 0.7
    assert result.peaks.min() > 0.3
    # The least-squares pass over 3 neighbours on each side beats the plain walk.
    walk = prealign(series.stack, series.tilt_angles_deg, network_passes=0)
    walk_error = shift_rmse(walk.shifts_px, truth, angles, gauge="rigid")
    assert shift_rmse(result.shifts_px, truth, angles, gauge="rigid") < walk_error


def test_binned_prealign_is_still_subpixel(series):
    result = prealign(series.stack, series.tilt_angles_deg, binning=2)
    rmse = shift_rmse(result.shifts_px, series.shifts_px, series.tilt_angles_deg, gauge="rigid")
    assert rmse <= 1.0


def test_unshifted_series_stays_unshifted():
    sim = simulate_tilt_series(shape=(24, 96, 96), tilt_step_deg=3.0, max_shift_px=0.0, seed=5)
    result = prealign(sim.stack, sim.tilt_angles_deg)
    zero = np.zeros_like(sim.shifts_px)
    # Pair-wise errors add up along the walk (a random walk of ~0.1 px steps at SNR 1):
    # pre-alignment is good to a pixel; joint alignment removes the rest.
    assert shift_rmse(result.shifts_px, zero, sim.tilt_angles_deg, gauge="rigid") < 1.0
    assert shift_rmse(result.shifts_px, zero) < 1.0


def test_known_shift_of_one_image_is_recovered():
    sim = simulate_tilt_series(shape=(16, 96, 96), tilt_step_deg=4.0, max_shift_px=0.0,
                               snr=None, seed=2)
    stack = sim.stack.copy()
    k = 20  # +20 deg
    stack[k] = shift_images(stack[k][None], np.array([[-2.5, 4.25]]))[0]
    result = prealign(stack, sim.tilt_angles_deg)
    relative = result.shifts_px[k] - 0.5 * (result.shifts_px[k - 1] + result.shifts_px[k + 1])
    np.testing.assert_allclose(relative, [2.5, -4.25], atol=0.1)


@pytest.mark.slow
def test_tilt_axis_estimate():
    sim = simulate_tilt_series(shape=(24, 96, 96), tilt_step_deg=3.0, tilt_axis_angle_deg=-35.0,
                               snr=1.0, seed=3)
    estimate = estimate_tilt_axis(sim.stack, sim.tilt_angles_deg)
    assert abs(estimate - (-35.0)) < 2.0


def test_bad_input_is_refused():
    stack = np.zeros((5, 32, 32), np.float32)
    with pytest.raises(MismatchError, match="4 tilt angles"):
        prealign(stack, np.arange(4.0))
    with pytest.raises(InputError, match="at least 3"):
        prealign(stack[:2], np.arange(2.0))
    bad = stack.copy()
    bad[1, 3, 3] = np.nan
    with pytest.raises(NonFiniteError):
        prealign(bad, np.arange(5.0))
    with pytest.raises(InputError):
        prealign(stack, np.array([0, 10, 20, 30, 95.0]))
