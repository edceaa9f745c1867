"""Tests of the CTF model, CTF application and phase flipping."""

from __future__ import annotations

import numpy as np
import pytest

from emkit.errors import InputError, MismatchError
from emkit.ops import apply_ctf, ctf_2d, electron_wavelength_A, phase_flip


def test_electron_wavelength():
    assert electron_wavelength_A(300) == pytest.approx(0.019687, rel=1e-4)
    assert electron_wavelength_A(200) == pytest.approx(0.025079, rel=1e-4)
    assert electron_wavelength_A(100) == pytest.approx(0.037014, rel=1e-4)


def test_zeros_at_analytic_positions_for_cs0():
    n, px, dz = 2048, 1.0, 20000.0
    ctf = ctf_2d((2, n), pixel_size_A=px, defocus_A=dz, cs_mm=0.0, amplitude_contrast=0.0)
    line = ctf[0, : n // 2]  # along +x, k = i / (n px)
    k = np.arange(n // 2) / (n * px)
    lam = electron_wavelength_A(300)
    crossings = np.nonzero(np.diff(np.sign(line[1:])) != 0)[0] + 1  # skip the DC zero
    # sign changes between samples i and i+1; zero n of sin(pi lam dz k^2) at sqrt(n/(lam dz))
    zeros = np.sqrt(np.arange(1, 200) / (lam * dz))
    zeros = zeros[zeros < k[-1]]
    assert len(crossings) == len(zeros)
    k_cross = k[crossings] + 0.5 / (n * px)
    np.testing.assert_allclose(k_cross, zeros, atol=0.5 / (n * px) + 1e-12)


def test_sign_amplitude_contrast_and_envelope():
    ctf = ctf_2d((64, 64), pixel_size_A=2.0, defocus_A=15000.0, amplitude_contrast=0.07)
    assert ctf[0, 0] == pytest.approx(0.07, abs=1e-6)  # positive at DC (RELION's sign)
    flat = ctf_2d((64, 64), pixel_size_A=2.0, defocus_A=15000.0, bfactor_A2=0.0)
    damped = ctf_2d((64, 64), pixel_size_A=2.0, defocus_A=15000.0, bfactor_A2=200.0)
    k2 = np.fft.fftfreq(64, 2.0)[None, :] ** 2 + np.fft.fftfreq(64, 2.0)[:, None] ** 2
    np.testing.assert_allclose(damped, flat * np.exp(-50.0 * k2), atol=1e-6)
    phase = ctf_2d((8, 8), pixel_size_A=2.0, defocus_A=0.0, cs_mm=0.0, amplitude_contrast=0.0,
                   phase_shift_deg=90.0)
    np.testing.assert_allclose(phase, 1.0, atol=1e-6)  # Volta phase plate, in focus


def test_layouts_and_astigmatism():
    kw = dict(pixel_size_A=1.5, voltage_kV=300, cs_mm=2.7)
    full = ctf_2d((32, 40), defocus_A=(20000.0, 12000.0, 30.0), **kw)
    half = ctf_2d((32, 40), defocus_A=(20000.0, 12000.0, 30.0), layout="rfft", **kw)
    centred = ctf_2d((32, 40), defocus_A=(20000.0, 12000.0, 30.0), layout="centered", **kw)
    assert half.shape == (32, 21)
    np.testing.assert_allclose(half[:, :20], full[:, :20], atol=1e-6)
    # rfft's Nyquist column is +x; the full grid's is -x, i.e. the point reflection k -> -k
    rows = np.r_[0:16, 17:32]  # (the corner row y = Nyquist is ambiguous in both)
    np.testing.assert_allclose(half[rows, 20], full[(-rows) % 32, 20], atol=1e-6)
    np.testing.assert_allclose(centred, np.fft.fftshift(full), atol=1e-6)
    # Along the major-axis direction the defocus is du; along the minor axis, dv.
    n = 256
    astig = ctf_2d((n, n), defocus_A=(20000.0, 12000.0, 0.0), layout="centered", **kw)
    iso_u = ctf_2d((n, n), defocus_A=20000.0, layout="centered", **kw)
    iso_v = ctf_2d((n, n), defocus_A=12000.0, layout="centered", **kw)
    c = n // 2
    np.testing.assert_allclose(astig[c, c:], iso_u[c, c:], atol=1e-5)  # along +x
    np.testing.assert_allclose(astig[c:, c], iso_v[c:, c], atol=1e-5)  # along +y
    with pytest.raises(InputError):
        ctf_2d((8, 8), pixel_size_A=1.0, defocus_A=(1.0, 2.0))


def test_apply_and_flip():
    rng = np.random.default_rng(0)
    images = rng.standard_normal((3, 48, 48)).astype(np.float32)
    kw = dict(pixel_size_A=2.0, defocus_A=18000.0)
    blurred = apply_ctf(images, **kw)
    assert blurred.dtype == np.float32 and blurred.shape == images.shape
    ctf = ctf_2d((48, 48), layout="rfft", **kw)
    np.testing.assert_allclose(np.fft.rfft2(blurred), np.fft.rfft2(images) * ctf, atol=2e-3)
    # Flipping the phases of a CTF-modulated image leaves a non-negative transfer |CTF|.
    flipped = phase_flip(blurred, **kw)
    ratio = np.fft.rfft2(flipped) / np.fft.rfft2(images)
    np.testing.assert_allclose(ratio.real, np.broadcast_to(np.abs(ctf), ratio.shape), atol=1e-3)
    # One image alone gives the same result as in the stack.
    np.testing.assert_allclose(apply_ctf(images[1], **kw), blurred[1], atol=1e-5)


def test_per_image_defocus():
    rng = np.random.default_rng(1)
    images = rng.standard_normal((4, 32, 32)).astype(np.float32)
    dz = np.array([10000.0, 15000.0, 20000.0, 25000.0])
    out = apply_ctf(images, pixel_size_A=2.0, defocus_A=dz)
    for i in range(4):
        single = apply_ctf(images[i], pixel_size_A=2.0, defocus_A=float(dz[i]))
        np.testing.assert_allclose(out[i], single, atol=1e-5)
    with pytest.raises(MismatchError):
        apply_ctf(images, pixel_size_A=2.0, defocus_A=np.ones((3, 3)) * 1e4)
