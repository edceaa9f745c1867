"""Reconstruction: the RELION STAR round trip (conventions), half-maps, FSC, CTF."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from emkit.cli.main import main
from emkit.errors import ShapeError
from emkit.geometry import matrix_xyz_to_zyx, random_rotations
from emkit.io import read_volume, relion_image_names, write_particles_star, write_volume
from emkit.ops import fourier_shell_correlation, fsc_resolution
from emkit.sim import density_template
from emkit.sim.particles import centre_in_box, simulate_particles
from emkit.spa import Optics, reconstruct_half_maps, reconstruct_map

L = 32
PIXEL_A = 2.5


@pytest.fixture(scope="module")
def true_map() -> np.ndarray:
    return centre_in_box(density_template("3enl", voxel_size_A=PIXEL_A).data, L)


def _relion_projection(volume: np.ndarray, A: np.ndarray, origin_yx: np.ndarray) -> np.ndarray:
    """RELION's image model written independently of emkit's projector.

    The particle is the map turned by A (V_p(r) = V(A.T r), about voxel L//2), summed along
    z, and its content displaced by +origin.
    """
    c = np.full(3, L // 2, dtype=np.float64)
    m = matrix_xyz_to_zyx(A.T)
    turned = ndimage.affine_transform(volume, m, offset=c - m @ c, order=3, mode="constant")
    return ndimage.shift(turned.sum(axis=0), origin_yx, order=3, mode="constant")


def _relion_particles(folder: Path, volume: np.ndarray, seed: int, origin_seed: int,
                      max_origin_px: float, n: int = 400) -> tuple[np.ndarray, ...]:
    """p.mrcs + p.star in ``folder``: RELION-model projections at random orientations with
    origins up to ``max_origin_px``; returns the rotations, origins (px) and images."""
    from emkit.geometry import matrix_to_euler_zyz

    rotations = random_rotations(n, seed=seed)
    origins = np.random.default_rng(origin_seed).uniform(-max_origin_px, max_origin_px, (n, 2))
    images = np.stack([_relion_projection(volume, a, o) for a, o in zip(rotations, origins,
                                                                            strict=True)])
    write_volume(folder / "p.mrcs", images.astype(np.float32), voxel_size=PIXEL_A)
    write_particles_star(folder / "p.star", euler_deg=matrix_to_euler_zyz(rotations),
                         shifts_A=origins * PIXEL_A, image_names=relion_image_names("p.mrcs", n),
                         pixel_size_A=PIXEL_A, image_size=L)
    return rotations, origins, images


def _map_fsc_05_px(rec: np.ndarray, truth: np.ndarray) -> float:
    freq, fsc = fourier_shell_correlation(rec, truth)
    return fsc_resolution(freq, fsc, 0.5)


def test_star_round_trip_proves_the_conventions(true_map: np.ndarray, tmp_path: Path) -> None:
    """Images made by RELION's model with a STAR's rot/tilt/psi and origins -> the true map."""
    rotations, origins, images = _relion_particles(tmp_path, true_map, 11, 4, 2.0)
    out = tmp_path / "rec" / "map.mrc"
    assert main(["spa", "reconstruct", str(tmp_path / "p.star"), "--angles",
                 str(tmp_path / "p.star"), "--output", str(out), "--threads", "1"]) == 0
    rec = read_volume(out)
    assert rec.data.shape == (L, L, L) and rec.pixel_size == pytest.approx(PIXEL_A)
    assert _map_fsc_05_px(rec.data, true_map) <= 3.0
    for name in ("map_half1.mrc", "map_half2.mrc", "map_fsc.csv", "map_fsc.png",
                 "map.report.html", "map.emkit-run.json"):
        assert (out.parent / name).is_file(), name
    # a wrong convention (angles read as the inverse rotation) does not reconstruct the map
    wrong = reconstruct_map(images, np.transpose(rotations, (0, 2, 1)), shifts_px=origins)
    assert _map_fsc_05_px(wrong, true_map) > 6.0


def test_shifts_are_removed_with_their_sign(true_map: np.ndarray) -> None:
    sim = simulate_particles(true_map, 300, pixel_size_A=PIXEL_A, seed=2, max_shift_px=3)
    good = reconstruct_map(sim.images, sim.rotations, shifts_px=sim.shifts_px)
    flipped = reconstruct_map(sim.images, sim.rotations, shifts_px=-sim.shifts_px)
    assert _map_fsc_05_px(good, true_map) <= 3.0
    assert _map_fsc_05_px(flipped, true_map) > 4.0


def test_ctf_aware_reconstruction(true_map: np.ndarray) -> None:
    sim = simulate_particles(true_map, 400, pixel_size_A=PIXEL_A, seed=3,
                             defocus_range_A=(6000.0, 12000.0))
    optics = Optics(PIXEL_A, sim.defocus_A)
    with_ctf = reconstruct_map(sim.images, sim.rotations, optics=optics)
    without = reconstruct_map(sim.images, sim.rotations)
    assert _map_fsc_05_px(with_ctf, true_map) <= 3.5
    assert _map_fsc_05_px(without, true_map) > _map_fsc_05_px(with_ctf, true_map) + 1.0


def test_half_maps_and_fsc_drop_with_noise(true_map: np.ndarray) -> None:
    clean = simulate_particles(true_map, 300, pixel_size_A=PIXEL_A, seed=5)
    noisy = simulate_particles(true_map, 300, pixel_size_A=PIXEL_A, seed=5, snr=0.05)
    a = reconstruct_half_maps(clean.images, clean.rotations, pixel_size_A=PIXEL_A)
    b = reconstruct_half_maps(noisy.images, noisy.rotations, pixel_size_A=PIXEL_A)
    assert a.in_half1.sum() == 150
    assert a.resolution_0143_A < 2.5 * PIXEL_A
    assert b.resolution_0143_A > a.resolution_0143_A + PIXEL_A
    assert a.resolution_05_A >= a.resolution_0143_A


@pytest.mark.parametrize("size", [16, 15])
def test_half_grid_holds_what_the_full_grid_does(size: int) -> None:
    """The kx >= 0 half grid (Friedel mates folded in as samples are inserted) equals the
    full grid's kx >= 0 half made by inserting half planes and adding every voxel's mate,
    with CTF and shifts; and a solve that may not overwrite leaves its grids alone."""
    from emkit.spa import _fourier as fr
    from emkit.spa._reconstruct import accumulate, solve_map

    rng = np.random.default_rng(size)
    n, p = 40, 2 * size
    images = rng.normal(size=(n, size, size))
    rotations = random_rotations(n, seed=size)
    shifts = rng.uniform(-2, 2, (n, 2))
    optics = Optics(2.0, rng.uniform(1e4, 2e4, n))
    numerator, weights = accumulate(images, rotations, shifts_px=shifts, optics=optics)
    values, k_xy, keep = fr.padded_image_spectra(images, 2, shifts)
    ctf = np.stack([optics.ctf(i, (p, p), "rfft")[keep] for i in range(n)])
    full_num = np.zeros(p**3, dtype=np.complex128)
    full_wgt = np.zeros(p**3)
    fr.insert_slices(full_num, full_wgt, values, ctf, rotations, k_xy)
    full_num, full_wgt = fr.hermitian_complete(full_num, full_wgt, p)
    half = (slice(None), slice(None), slice(p // 2, p))  # kx = 0 .. p/2 - 1 of the centred grid
    np.testing.assert_allclose(numerator[:, :, : p // 2], full_num[half], atol=1e-9)
    np.testing.assert_allclose(weights[:, :, : p // 2], full_wgt[half], atol=1e-9)
    assert not numerator[:, :, p // 2].any()  # beyond the kept frequencies
    before = numerator.copy(), weights.copy()
    solve_map(numerator, weights, size)
    np.testing.assert_array_equal(numerator, before[0])
    np.testing.assert_array_equal(weights, before[1])
    with pytest.raises(ShapeError, match="even"):
        accumulate(images[:, :15, :15], rotations, pad=3)


def _fourier_crop_3d(volume: np.ndarray, size: int) -> np.ndarray:
    big = volume.shape[0]
    spec = np.fft.fftshift(np.fft.fftn(np.fft.ifftshift(volume)))
    a = big // 2 - size // 2
    crop = spec[a:a + size, a:a + size, a:a + size]
    return np.fft.fftshift(np.fft.ifftn(np.fft.ifftshift(crop))).real


def test_binned_particles_give_the_binned_map_and_a_star_of_the_files_images(
    true_map: np.ndarray, tmp_path: Path
) -> None:
    """--bin 2: the map of box L/2 at twice the pixel size matches the true map cropped the
    same way, shifts are halved with the pixels (origins up to 4 px, so a shift left in the
    file's pixels would blur it), and spa orient's STAR describes the file's images (its
    pixel size and box)."""
    from emkit.geometry import euler_zyz_to_matrix
    from emkit.io import read_particles_star
    from emkit.spa import score_orientations

    rotations, _, _ = _relion_particles(tmp_path, true_map, 12, 5, 4.0)
    out = tmp_path / "rec" / "map.mrc"
    argv = ["spa", "reconstruct", str(tmp_path / "p.star"), "--angles", str(tmp_path / "p.star"),
            "--output", str(out), "--threads", "1"]
    assert main(argv + ["--bin", "2"]) == 0
    rec = read_volume(out)
    assert rec.data.shape == (L // 2,) * 3 and rec.pixel_size == pytest.approx(2 * PIXEL_A)
    truth = _fourier_crop_3d(true_map, L // 2)
    assert _map_fsc_05_px(rec.data, truth) <= 2.5
    from emkit.spa._commands import _angles_for
    from emkit.spa._files import bin_particles, read_particles

    binned = bin_particles(read_particles(tmp_path / "p.star"), 2)
    turns, shifts_px = _angles_for(binned, tmp_path / "p.star")
    unhalved = reconstruct_map(binned.images, turns, shifts_px=2 * shifts_px)
    assert _map_fsc_05_px(unhalved, truth) > 3.5  # measured 4.3 px (halved: 2.0)
    # orient from the binned images: the STAR names the file's pixel size and box
    star_out = tmp_path / "orient" / "o.star"
    assert main(["spa", "orient", str(tmp_path / "p.star"), "--output", str(star_out),
                 "--distances", "exact", "--refine", "0", "--bin", "2", "--threads", "1",
                 "--quiet"]) == 0
    star = read_particles_star(star_out)
    assert star["pixel_size_A"] == pytest.approx(PIXEL_A) and star["image_size"] == L
    score = score_orientations(euler_zyz_to_matrix(star["euler_deg"]), rotations)
    assert score.median_deg < 6.0  # measured 3.7 deg from the frame step on 16-px images


@pytest.mark.parametrize("box", [32, 33])
def test_binning_keeps_the_centre_scales_pixels_shifts_and_ctf(box: int, tmp_path: Path) -> None:
    """bin_particles on boxes that divide and that do not: a Gaussian displaced by +shift
    stays at small // 2 + shift / scale; the pixel size, the CTF's pixel size and the shifts
    follow the cropped pixels, a constant's value is divided by the scale; a STAR written
    from the binned stack gives the file's pixel size and box and the shifts in Å."""
    from emkit.io import read_particles_star
    from emkit.spa._files import ParticleStack, bin_particles, write_orientations_star

    y, x = np.mgrid[:box, :box] - box // 2
    shift = np.array([3.0, -2.0])
    blob = np.exp(-((y - shift[0]) ** 2 + (x - shift[1]) ** 2) / (2 * 3.0**2))
    images = np.stack([blob, np.full((box, box), 3.0)]).astype(np.float32)
    stack = ParticleStack(images=images, pixel_size_A=2.0, image_names=["1@p.mrcs", "2@p.mrcs"],
                          euler_deg=None, shifts_px=np.array([shift, shift]),
                          optics=Optics(2.0, np.array([1e4, 1e4])), path=tmp_path / "p.mrcs")
    binned = bin_particles(stack, 2)
    small = box // 2
    scale = box / small
    assert binned.images.shape == (2, small, small)
    assert binned.pixel_size_A == pytest.approx(2.0 * scale)
    assert binned.optics.pixel_size_A == pytest.approx(2.0 * scale)
    np.testing.assert_allclose(binned.shifts_px, stack.shifts_px / scale)
    yy, xx = np.mgrid[:small, :small] - small // 2
    weight = binned.images[0].clip(min=0)
    centroid = np.array([(yy * weight).sum(), (xx * weight).sum()]) / weight.sum()
    np.testing.assert_allclose(centroid, shift / scale, atol=0.05)
    np.testing.assert_allclose(binned.images[1], 3.0 / scale, rtol=1e-5)
    star = write_orientations_star(tmp_path / "o.star", binned, np.stack([np.eye(3)] * 2),
                                   binned.shifts_px)
    read = read_particles_star(star)
    assert read["pixel_size_A"] == pytest.approx(2.0) and read["image_size"] == box
    np.testing.assert_allclose(read["shifts_A"], [shift * 2.0] * 2, atol=1e-4)
