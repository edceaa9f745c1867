"""Simulated particle images: RELION's conventions, noise level, seeds, and the CLI files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from emkit.cli.main import main
from emkit.geometry import euler_zyz_to_matrix
from emkit.io import read_particles_star, read_volume
from emkit.sim.particles import centre_in_box, project_centred, simulate_particles

L = 32
C = L // 2


def _blob(z: int, y: int, x: int) -> np.ndarray:
    v = np.zeros((L, L, L), np.float32)
    v[C + z, C + y, C + x] = 1.0
    return ndimage.gaussian_filter(v, 1.0).astype(np.float32)


@pytest.mark.parametrize("method", ["real", "fourier"])
@pytest.mark.parametrize(
    ("euler", "expected_yx"),
    [
        # RELION: rot = 90 alone sends the reference x axis to particle -y
        ((0.0, 0.0, 0.0), (C, C + 6)),
        ((90.0, 0.0, 0.0), (C - 6, C)),
        # tilt = 90 sends x to the beam (z): the blob projects onto the centre
        ((0.0, 90.0, 0.0), (C, C)),
        ((0.0, 0.0, 90.0), (C - 6, C)),
    ],
)
def test_projection_follows_relion_angles(method: str, euler: tuple, expected_yx: tuple) -> None:
    image = project_centred(_blob(0, 0, 6), euler_zyz_to_matrix([euler]), method=method)[0]
    assert np.unravel_index(image.argmax(), image.shape) == expected_yx


def test_origin_shift_moves_the_content_by_plus_origin() -> None:
    image = project_centred(_blob(0, 0, 0), np.eye(3)[None], shifts_px=np.array([[-3.0, 2.0]]))
    assert np.unravel_index(image[0].argmax(), image[0].shape) == (C - 3, C + 2)


def test_centre_in_box_keeps_voxel_n_over_2() -> None:
    v = np.zeros((7, 9, 10), np.float32)
    v[3, 4, 5] = 1.0
    out = centre_in_box(v, 16)
    assert out.shape == (16, 16, 16) and out[8, 8, 8] == 1.0


def test_noise_level_seed_and_tilt_range() -> None:
    v = _blob(0, 2, 3)
    a = simulate_particles(v, 200, pixel_size_A=4.0, seed=5, snr=0.25, max_shift_px=2,
                           tilt_range_deg=(30.0, 60.0))
    b = simulate_particles(v, 200, pixel_size_A=4.0, seed=5, snr=0.25, max_shift_px=2,
                           tilt_range_deg=(30.0, 60.0))
    assert np.array_equal(a.images, b.images)
    clean = project_centred(v, a.rotations, shifts_px=a.shifts_px)
    ratio = clean.var() / (a.images - clean).var()
    assert 0.23 < ratio < 0.27
    assert np.all((a.euler_deg[:, 1] >= 30.0) & (a.euler_deg[:, 1] <= 60.0))
    assert np.all(np.linalg.norm(a.shifts_px, axis=1) <= 2.0)


def test_ctf_changes_the_images_and_is_recorded() -> None:
    v = _blob(0, 2, 3)
    sim = simulate_particles(v, 10, pixel_size_A=2.0, seed=1, defocus_range_A=(8000, 9000))
    assert sim.defocus_A is not None and np.all((sim.defocus_A >= 8000) & (sim.defocus_A <= 9000))
    plain = project_centred(v, sim.rotations, shifts_px=sim.shifts_px)
    assert not np.allclose(plain, sim.images, atol=1e-3)


def test_cli_writes_stack_star_and_map(tmp_path: Path) -> None:
    src = tmp_path / "blob.mrc"
    from emkit.io import write_volume

    write_volume(src, _blob(1, 2, 3)[:, :, 2:], voxel_size=3.0)  # not cubic: padded
    out = tmp_path / "sim"
    assert main(["sim", "particles", str(src), "--n", "12", "--output", str(out), "--box", "24",
                 "--max-shift", "1.5", "--seed", "3"]) == 0
    stack = read_volume(out / "particles.mrcs")
    star = read_particles_star(out / "particles.star")
    assert stack.data.shape == (12, 24, 24) and stack.pixel_size == pytest.approx(3.0)
    assert star["pixel_size_A"] == pytest.approx(3.0) and star["image_size"] == 24
    assert star["image_names"][0] == "000001@particles.mrcs"
    rebuilt = project_centred(read_volume(out / "map.mrc").data,
                              euler_zyz_to_matrix(star["euler_deg"]),
                              shifts_px=star["shifts_A"] / 3.0)
    assert np.allclose(rebuilt, stack.data, atol=1e-4 * float(np.abs(stack.data).max()))
