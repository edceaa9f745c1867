"""WBP, SIRT and CGLS on simulated series with known shifts."""

import numpy as np
import pytest

from emkit.errors import InputError
from emkit.sim import simulate_tilt_series
from emkit.tomo import angular_weights, reconstruct, reconstruct_cgls, reconstruct_sirt


def psnr(volume, truth):
    mse = np.mean((volume.astype(np.float64) - truth) ** 2)
    return 10 * np.log10((truth.max() - truth.min()) ** 2 / mse)


@pytest.fixture(scope="module")
def clean():
    return simulate_tilt_series(shape=(24, 64, 96), tilt_step_deg=3.0, snr=None, seed=7)


def test_angular_weights():
    np.testing.assert_allclose(angular_weights(np.arange(-60, 61, 2.0)), np.deg2rad(2.0))
    w = angular_weights(np.array([10.0, -10.0, 0.0, 30.0]))
    np.testing.assert_allclose(np.rad2deg(w), [15, 10, 10, 20])


@pytest.mark.parametrize(("method", "iterations", "min_psnr"),
                         [("wbp", None, 23.5), ("sirt", 50, 24.5), ("cgls", 15, 24.5)])
def test_methods_reconstruct_the_phantom(clean, method, iterations, min_psnr):
    rec = reconstruct(clean.stack, clean.tilt_angles_deg, method=method, thickness=24,
                      shifts_px=clean.shifts_px, iterations=iterations)
    assert rec.shape == (24, 64, 96) and rec.dtype == np.float32
    good = psnr(rec, clean.volume)
    unaligned = reconstruct(clean.stack, clean.tilt_angles_deg, method=method, thickness=24,
                            iterations=iterations)
    assert good > min_psnr
    assert good > psnr(unaligned, clean.volume) + 1.5


def test_binning_keeps_the_density_scale(clean):
    full = reconstruct(clean.stack, clean.tilt_angles_deg, method="sirt", thickness=24,
                       shifts_px=clean.shifts_px, iterations=30)
    binned = reconstruct(clean.stack, clean.tilt_angles_deg, method="sirt", thickness=24,
                         shifts_px=clean.shifts_px, iterations=30, binning=2)
    assert binned.shape == (12, 32, 48)
    assert binned.mean() == pytest.approx(full.mean(), rel=0.05)


def test_slab_offset_and_y_range(clean):
    centred = reconstruct(clean.stack, clean.tilt_angles_deg, method="wbp", thickness=24,
                          shifts_px=clean.shifts_px)
    slab = reconstruct(clean.stack, clean.tilt_angles_deg, method="wbp", thickness=12,
                       shifts_px=clean.shifts_px, z_offset_px=6.0)
    # The slab centred 6 px above the axis holds the upper half of the full tomogram.
    inner = (slice(2, 10), slice(8, -8), slice(8, -8))
    upper = centred[12:24][inner]
    assert np.corrcoef(slab[inner].ravel(), upper.ravel())[0, 1] > 0.95
    part = reconstruct(clean.stack, clean.tilt_angles_deg, thickness=24, y_range=(10, 20),
                       shifts_px=clean.shifts_px)
    np.testing.assert_allclose(part, centred[:, 10:20], atol=1e-4 * np.abs(centred).max())
    with pytest.raises(InputError):
        reconstruct(clean.stack, clean.tilt_angles_deg, thickness=24, y_range=(50, 90))


def test_iterative_methods_reduce_the_masked_residual(clean):
    from emkit.ops import SingleAxisProjector

    b = clean.clean
    masks = np.ones(b.shape, bool)
    masks[:, :, :5] = False
    projector = SingleAxisProjector((24, 64, 96), clean.tilt_angles_deg)
    for solver in (reconstruct_sirt, reconstruct_cgls):
        residuals: list[float] = []

        def record(k, u, residuals=residuals):
            residuals.append(float(np.sum(((projector.forward(u) - b) * masks) ** 2)))

        solver(b, clean.tilt_angles_deg, thickness=24, iterations=8, masks=masks,
               callback=record)
        assert residuals[-1] < 0.5 * residuals[0]
        assert all(b2 <= a * 1.0001 for a, b2 in zip(residuals, residuals[1:]))


def test_bad_reconstruction_options(clean):
    with pytest.raises(InputError):
        reconstruct(clean.stack, clean.tilt_angles_deg, method="art", thickness=24)
    with pytest.raises(InputError):
        reconstruct(clean.stack, clean.tilt_angles_deg, thickness=1, binning=2)
