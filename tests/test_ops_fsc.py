"""Tests of the Fourier shell correlation and the resolution estimate."""

from __future__ import annotations

import math

import numpy as np
import pytest

from emkit.errors import MismatchError, NonFiniteError
from emkit.ops import fourier_shell_correlation, fsc_resolution, lowpass_gaussian


def _shell_counts(shape: tuple[int, ...]) -> np.ndarray:
    n = min(shape)
    mesh = np.meshgrid(*[np.fft.fftfreq(s) for s in shape], indexing="ij", sparse=True)
    shell = np.rint(np.sqrt(sum(g**2 for g in mesh)) * n).astype(int)
    return np.bincount(shell.ravel())[: n // 2 + 1]


def test_map_with_itself_is_one_everywhere():
    vol = np.random.default_rng(0).standard_normal((24, 24, 24)).astype(np.float32)
    freq, fsc = fourier_shell_correlation(vol, vol, voxel_size_A=2.0)
    assert freq.shape == fsc.shape == (13,)
    assert freq[-1] == pytest.approx(0.25)  # Nyquist of 2 Å voxels
    np.testing.assert_allclose(fsc, 1.0, atol=1e-10)


def test_independent_noise_is_uncorrelated():
    rng = np.random.default_rng(1)
    shape = (32, 32, 32)
    a, b = rng.standard_normal(shape), rng.standard_normal(shape)
    _, fsc = fourier_shell_correlation(a, b)
    counts = _shell_counts(shape)
    # Hermitian pairs make a shell carry count/2 independent values; 4/sqrt(count) is
    # still ~2.8 sigma of those.
    assert np.all(np.abs(fsc[1:]) < 4 / np.sqrt(counts[1:]))


def test_crosses_half_near_lowpass_cutoff():
    rng = np.random.default_rng(2)
    vol = rng.standard_normal((48, 48, 48))
    noise = 0.1 * rng.standard_normal(vol.shape)
    for cutoff in (0.15, 0.3):
        # FSC ignores a per-shell scale, so a little noise makes the filtered-out shells
        # decorrelate: FSC = r / sqrt(r^2 + 0.01) with r the filter response.
        low = lowpass_gaussian(vol, cutoff=cutoff, sigma=0.01, ndim=3) + noise
        freq, fsc = fourier_shell_correlation(vol, low, voxel_size_A=1.5)
        res = fsc_resolution(freq, fsc, threshold=0.5)
        # FSC = 0.5 where r = 0.1 / sqrt(3), i.e. 2.4 sigma past the cutoff
        f_half = cutoff + 0.01 * np.sqrt(2 * np.log(np.sqrt(3) / 0.1))  # cycles/voxel
        assert res == pytest.approx(1.5 / f_half, rel=0.04)
        assert res == pytest.approx(1.5 / cutoff, rel=0.2)


def test_frc_for_images_and_mask():
    rng = np.random.default_rng(3)
    img = rng.standard_normal((40, 40))
    freq, frc = fourier_shell_correlation(img, img + 0.01 * rng.standard_normal((40, 40)))
    assert freq.shape == (21,) and np.all(frc > 0.99)
    mask = np.zeros((40, 40))
    mask[5:35, 5:35] = 1.0
    _, masked = fourier_shell_correlation(img, img, mask=mask)
    np.testing.assert_allclose(masked, 1.0, atol=1e-10)
    with pytest.raises(MismatchError):
        fourier_shell_correlation(img, img[:-1])
    with pytest.raises(NonFiniteError):
        fourier_shell_correlation(img, np.full_like(img, np.nan))


def test_resolution_edge_cases():
    freq = np.linspace(0, 0.5, 6)  # 0, .1, ... .5 per Å
    assert fsc_resolution(freq, np.ones(6), 0.143) == pytest.approx(2.0)  # Nyquist
    assert fsc_resolution(freq, [1, 0.1, 0, 0, 0, 0], 0.143) == math.inf
    # 1 -> 0.9 -> 0.3 -> 0.1: crosses 0.5 two thirds of the way from 0.2 to 0.3 per Å
    res = fsc_resolution(freq, [1, 0.9, 0.9, 0.3, 0.1, 0.0], 0.5)
    assert res == pytest.approx(1 / (0.2 + 0.1 * (0.4 / 0.6)))
    # A NaN shell counts as below the threshold (no information there).
    assert fsc_resolution(freq, [1, 0.9, np.nan, 0.3, 0.1, 0.0], 0.5) == pytest.approx(1 / 0.1)
