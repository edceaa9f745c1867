"""Tests of the Fourier filters, tapering and binning."""

from __future__ import annotations

import numpy as np
import pytest

from emkit.errors import InputError, ShapeError
from emkit.ops import (
    SingleAxisProjector,
    bin_image,
    bin_volume,
    lowpass_gaussian,
    ramp_filter,
    ramp_filter_response,
    taper_edges,
)


@pytest.mark.parametrize("n_padded", [64, 256, 1000])
def test_ramp_response_is_abs_frequency_with_tiny_dc(n_padded):
    h = ramp_filter_response(n_padded)
    f = np.fft.rfftfreq(n_padded)
    # The spatially discretised ramp: |f| up to an offset of ~1/(pi^2 P), nearly no DC.
    np.testing.assert_allclose(h, f, atol=0.25 / n_padded)
    assert 0 <= h[0] < 0.25 / n_padded


def test_ramp_windows_and_cutoff():
    f = np.fft.rfftfreq(512)
    hann = ramp_filter_response(512, window="hann")
    assert hann[-1] == pytest.approx(0.0, abs=1e-9)
    np.testing.assert_allclose(hann[1:30], ramp_filter_response(512)[1:30], rtol=0.05)
    for window in ("ram-lak", "shepp-logan", "cosine", "hann"):
        half = ramp_filter_response(512, window=window, cutoff=0.5)
        assert np.all(half[f > 0.25] == 0) and np.all(half[(f > 0.01) & (f < 0.2)] > 0)
    with pytest.raises(InputError):
        ramp_filter_response(64, window="hamming")  # type: ignore[arg-type]
    with pytest.raises(InputError):
        ramp_filter_response(64, cutoff=1.5)


def test_ramp_filter_keeps_dtype_shape_and_axis():
    rng = np.random.default_rng(0)
    p = rng.random((3, 5, 40), dtype=np.float32)
    out = ramp_filter(p)
    assert out.shape == p.shape and out.dtype == np.float32
    along1 = ramp_filter(np.swapaxes(p, 1, 2).copy(), axis=1)
    np.testing.assert_allclose(np.swapaxes(along1, 1, 2), out, rtol=1e-5, atol=1e-6)


def test_filtered_backprojection_recovers_disk_without_offset():
    n = 64
    yy, xx = np.mgrid[:n, :n] - (n - 1) / 2
    disk = ((xx**2 + yy**2) < 18**2).astype(np.float32)
    vol = disk[:, None, :]  # (z, y=1, x)
    angles = np.arange(0, 180, 1.0)
    p = SingleAxisProjector(vol.shape, angles, device="cpu")
    rec = np.pi / len(angles) * p.adjoint(ramp_filter(p.forward(vol)))
    rec = rec[:, 0, :]
    r = np.sqrt(xx**2 + yy**2)
    inside, outside = rec[r < 15], rec[(r > 21) & (r < 30)]
    # measured: 0.99985, 3e-5, 0.036 (the scale pi / n_angles is right and there is no DC)
    assert abs(inside.mean() - 1.0) < 0.01
    assert abs(outside.mean()) < 0.005
    assert np.abs(rec - disk)[(r < 15) | ((r > 21) & (r < 30))].max() < 0.08


def test_lowpass_gaussian_response():
    n = 128
    x = np.arange(n)
    image = np.ones((n, n), np.float32)
    np.testing.assert_allclose(lowpass_gaussian(image, cutoff=0.1, sigma=0.02), 1.0, rtol=1e-5)
    low = np.cos(2 * np.pi * 8 / n * x)[None, :].repeat(n, 0)  # 0.0625 cycles/px
    high = np.cos(2 * np.pi * 18 / n * x)[None, :].repeat(n, 0)  # 0.1406 cycles/px
    np.testing.assert_allclose(lowpass_gaussian(low, cutoff=0.1, sigma=0.02), low, atol=1e-9)
    expected = np.exp(-((18 / n - 0.1) ** 2) / (2 * 0.02**2))
    out = lowpass_gaussian(high, cutoff=0.1, sigma=0.02)
    np.testing.assert_allclose(out, expected * high, atol=1e-9)
    vol = np.random.default_rng(1).random((8, 16, 16)).astype(np.float32)
    assert lowpass_gaussian(vol, cutoff=0.2, sigma=0.05, ndim=3).dtype == np.float32
    with pytest.raises(InputError):
        lowpass_gaussian(image, cutoff=0.1, sigma=0.0)


def test_taper_edges():
    rng = np.random.default_rng(2)
    stack = rng.random((2, 40, 50)).astype(np.float32) + np.array([0, 5], np.float32)[:, None, None]
    out = taper_edges(stack, 8)
    assert out.dtype == np.float32 and out.shape == stack.shape
    np.testing.assert_array_equal(out[:, 8:-8, 8:-8], stack[:, 8:-8, 8:-8])
    for i in range(2):
        mean = stack[i].mean()
        assert abs(out[i, 0, 0] - mean) < 0.01 * abs(stack[i, 0, 0] - mean) + 1e-6
        assert np.abs(out[i, 0, :] - mean).max() < 0.05 * np.abs(stack[i, 0, :] - mean).max()
    with pytest.raises(ShapeError):
        taper_edges(np.zeros(5), 2)


def test_binning_means_and_crops():
    img = np.arange(5 * 7, dtype=np.float32).reshape(5, 7)
    b = bin_image(img, 2)
    assert b.shape == (2, 3) and b.dtype == np.float32
    assert b[0, 0] == pytest.approx(img[:2, :2].mean())
    assert b[1, 2] == pytest.approx(img[2:4, 4:6].mean())
    stack = np.stack([img, 2 * img])
    np.testing.assert_allclose(bin_image(stack, 2)[1], 2 * b)
    vol = np.random.default_rng(3).random((6, 7, 9))
    bv = bin_volume(vol, 3)
    assert bv.shape == (2, 2, 3)
    assert bv[1, 1, 2] == pytest.approx(vol[3:6, 3:6, 6:9].mean())
    with pytest.raises(ShapeError):
        bin_volume(img, 2)
    with pytest.raises(InputError):
        bin_image(img, 0)
