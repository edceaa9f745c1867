"""The tilt-axis search: derivatives against finite differences, the root finder, accuracy."""

import numpy as np
import pytest
from scipy import ndimage

from emkit.errors import InputError
from emkit.ops import SingleAxisProjector
from emkit.sim import simulate_tilt_series
from emkit.tomo import search_tilt_axis, transform_images
from emkit.tomo._axis import _bracket, _illinois, detail_ratio, fine_binning_for, wrap_axis_deg
from emkit.tomo._joint import _axis_derivative, _rotation_derivative


def _smooth(shape, seed):
    rng = np.random.default_rng(seed)
    return ndimage.gaussian_filter(rng.normal(size=shape), 2.5).astype(np.float32)


def test_rotation_derivative_is_the_derivative_of_turning_an_image():
    images = _smooth((2, 48, 60), 0)
    step = 0.2
    turned = [transform_images(images, np.zeros((2, 2)), tilt_axis_angle_deg=a, fill=0.0)
              for a in (step, -step)]
    numeric = (turned[0] - turned[1]) / (2 * step)
    inner = (slice(None), slice(8, -8), slice(8, -8))
    analytic = _rotation_derivative(images)
    ratio = np.sum(numeric[inner] * analytic[inner]) / np.sum(analytic[inner] ** 2)
    assert ratio == pytest.approx(1.0, abs=0.05)
    assert np.corrcoef(numeric[inner].ravel(), analytic[inner].ravel())[0, 1] > 0.99


def test_turning_images_and_volume_together_changes_nothing_at_tilt_zero():
    volume = _smooth((8, 40, 40), 1)
    angles = np.array([-60.0, 0.0, 60.0])
    projector = SingleAxisProjector(volume.shape, angles, device="cpu")
    model = np.asarray(projector.forward(volume), dtype=np.float32)
    change = _axis_derivative(model, volume, projector)
    inner = (slice(4, -4), slice(4, -4))
    untilted = np.abs(change[1][inner]).max()
    tilted = np.abs(change[0][inner]).max()
    assert untilted < 0.05 * tilted
    # the images alone would change at every tilt
    assert np.abs(_rotation_derivative(model)[1][inner]).max() > 10 * untilted


def test_root_finder_brackets_and_converges_on_a_known_function():
    calls = []

    def f(a):  # a shrunk, slightly curved step towards 7.3 degrees
        calls.append(a)
        return 0.02 * (7.3 - a) + 0.0004 * (7.3 - a) ** 3

    bracket = _bracket(f, -20.0, 2.0, 45.0)
    assert bracket is not None and bracket[1] > 0 > bracket[3]
    assert _illinois(f, *bracket, 0.01, 30) == pytest.approx(7.3, abs=0.02)
    assert len(calls) < 20
    assert _bracket(lambda a: 1.0, 0.0, 2.0, 10.0) is None  # never changes sign
    tried = []
    far = _bracket(lambda a: tried.append(a) or 35.0 - a, 0.0, 2.0, 45.0)
    assert far is not None and tried == [0.0, 2.0, 6.0, 14.0, 30.0, 45.0]  # the limit is tried
    assert wrap_axis_deg(91.0) == -89.0 and wrap_axis_deg(-90.0) == 90.0


@pytest.mark.slow
@pytest.mark.parametrize(("axis_deg", "start_deg", "seed"), [(6.0, -3.0, 41), (-8.0, 4.0, 42)])
def test_search_finds_the_axis_from_a_start_degrees_off(axis_deg, start_deg, seed):
    """61 tilts, shifts up to 10 px, SNR 1, a 40-px slab; the start is 9 and 12 degrees off.

    At 128^2 and this noise the search is biased by up to a degree (docs/tomo.md, a bias
    that grows with the noise), not within the issue's 0.3: this checks that it converges
    from far and that the refinement stays at the coarse level here."""
    sim = simulate_tilt_series(shape=(40, 128, 128), tilt_range_deg=(-60.0, 60.0),
                               tilt_step_deg=2.0, max_shift_px=10.0, snr=1.0,
                               tilt_axis_angle_deg=axis_deg, seed=seed)
    found = search_tilt_axis(sim.stack, sim.tilt_angles_deg, thickness=40,
                             start_deg=start_deg)
    assert found.converged and found.binning == 4
    # SNR 1 at 128 px: the refinement stays at the coarse level (bin 2 is mostly noise)
    assert found.fine_binning == 4 and abs(found.coarse_angle_deg - axis_deg) <= 1.5
    assert abs(found.angle_deg - axis_deg) <= 1.0
    assert len(found.evaluations) <= 24


def test_detail_ratio_tells_noise_from_smooth_signal():
    """White noise loses 3/4 of its variance to each 2x binning (ratio 1/3); a smooth
    specimen keeps almost all of it. The refinement level follows."""
    rng = np.random.default_rng(3)
    noise = rng.normal(size=(6, 128, 128)).astype(np.float32)
    assert detail_ratio(noise, 2) == pytest.approx(1 / 3, abs=0.03)
    smooth = ndimage.gaussian_filter(rng.normal(size=(6, 128, 128)), 6).astype(np.float32)
    smooth /= smooth.std()
    assert detail_ratio(smooth, 2) > 20
    assert fine_binning_for(smooth, 32, 4) == 2  # 64 px images of mostly signal
    # SNR 1/2.25 per pixel: noise dominates what a 2x binning at bin 2 removes
    assert fine_binning_for(smooth + noise * 1.5, 32, 4) == 4
    assert fine_binning_for(smooth, 32, 2) == 2  # never coarser than the bracket level


def test_search_refuses_bad_parameters():
    stack = np.zeros((3, 16, 16), np.float32)
    with pytest.raises(InputError):
        search_tilt_axis(stack[0], np.zeros(3), thickness=4, start_deg=0.0)
    with pytest.raises(InputError):
        search_tilt_axis(stack, np.zeros(3), thickness=4, start_deg=0.0, tolerance_deg=0)


def test_search_keeps_the_start_where_nothing_can_be_measured(caplog):
    """A blank series gives no axis step (NaN), which must not read as 'found at the start'."""
    stack = np.zeros((5, 24, 24), np.float32)
    angles = np.linspace(-40.0, 40.0, 5)
    found = search_tilt_axis(stack, angles, thickness=8, start_deg=3.0, binning=1)
    assert not found.converged and found.angle_deg == 3.0
    assert "too few valid pixels" in caplog.text
    with pytest.raises(InputError):
        search_tilt_axis(stack, angles, thickness=8, start_deg=0.0, iterations=0)


def test_a_refinement_that_finds_no_root_keeps_the_coarse_one(monkeypatch, caplog):
    """The fine level asking to turn the same way everywhere must not read as refined."""
    import emkit.tomo._axis as axis_module

    def step(stack, angles, angle_deg, *, binning, **kwargs):
        return 3.0 - angle_deg if binning == 4 else 1.0

    monkeypatch.setattr(axis_module, "_axis_step_at", step)
    stack = np.zeros((3, 16, 16), np.float32)
    found = search_tilt_axis(stack, np.zeros(3), thickness=8, start_deg=0.0, binning=4,
                             fine_binning=2)
    assert found.converged and found.angle_deg == pytest.approx(3.0, abs=0.05)
    assert found.coarse_angle_deg == found.angle_deg and found.fine_binning == 0
    assert "keeping that angle" in caplog.text


def _axis_root_deg(stack, sim, thickness):
    """The zero of the bin-4 axis step near the true angle, ``-F(0) / slope`` from ``F`` at 0
    and +-1 degree, with the true shifts held (60 iterations, no TV term)."""
    from emkit.tomo import align_joint

    def step(offset_deg):
        joint = align_joint(stack, sim.tilt_angles_deg, thickness=thickness,
                            initial_shifts_px=sim.shifts_px, lam=0.0, iterations=60,
                            binning_levels=(4,), update_shifts=False, box_fraction=1.0,
                            tilt_axis_angle_deg=sim.tilt_axis_angle_deg + offset_deg,
                            measure_tilt_axis=True)
        return joint.history[-1]["tilt_axis_step_deg"]

    return -step(0.0) / ((step(1.0) - step(-1.0)) / 2)


@pytest.mark.slow
def test_the_step_derivative_from_a_smoothed_volume_keeps_noise_out_of_the_zero(monkeypatch):
    """256^2, 61 tilts, a 96-px slab, the axis at -10 deg: noise-free the zero is unbiased;
    with one realisation of SNR-0.5 noise where the derivative of the fitted (noisy) volume
    put it 1.6 deg off, the smoothed volume's keeps it within 0.4 (ten realisations: RMS 0.86
    -> 0.34 deg, docs/tomo.md)."""
    import emkit.tomo._joint as joint_module

    sim = simulate_tilt_series(shape=(96, 256, 256), tilt_range_deg=(-60.0, 60.0),
                               tilt_step_deg=2.0, max_shift_px=20.0, snr=None,
                               tilt_axis_angle_deg=-10.0, seed=380)
    clean = sim.stack.astype(np.float32)
    noise = np.random.default_rng(1007).normal(0, np.sqrt(clean.var() / 0.5), clean.shape)
    noisy = clean + noise.astype(np.float32)
    assert abs(_axis_root_deg(clean, sim, 96)) < 0.05
    assert abs(_axis_root_deg(noisy, sim, 96)) < 0.4
    monkeypatch.setattr(joint_module, "_AXIS_VOLUME_SMOOTHING_VOX", 0.0)
    assert abs(_axis_root_deg(noisy, sim, 96)) > 1.0
