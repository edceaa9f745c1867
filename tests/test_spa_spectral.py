"""The spectral start: the common-view graph of the images and its eigenvectors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from emkit.cli.main import main
from emkit.errors import InputError, ShapeError
from emkit.sim import density_template
from emkit.sim.particles import centre_in_box, simulate_particles
from emkit.spa import common_view_graph, score_distance_fit, spectral_orientations

L = 32
PIXEL_A = 2.0


@pytest.fixture(scope="module")
def particles() -> object:
    # 1ake has no symmetry; the spectral start assumes none (docs/spa.md)
    volume = centre_in_box(density_template("1ake", voxel_size_A=PIXEL_A).data, L)
    return simulate_particles(volume, 1000, pixel_size_A=PIXEL_A, seed=5, max_shift_px=0.0)


def _measured_vs_true_angles(graph: object, rotations: np.ndarray) -> np.ndarray:
    n, k = graph.neighbours.shape  # type: ignore[attr-defined]
    rows = np.repeat(np.arange(n), k)
    cols = graph.neighbours.reshape(-1)  # type: ignore[attr-defined]
    relative = np.einsum("nab,ncb->nac", rotations[cols], rotations[rows])  # R_j R_i^T
    true = -np.arctan2(relative[:, 1, 0], relative[:, 0, 0])
    measured = graph.angles_rad.reshape(-1)  # type: ignore[attr-defined]
    return np.rad2deg(np.abs(np.angle(np.exp(1j * (measured - true)))))


def test_graph_partners_are_near_views_at_the_right_in_plane_angle(particles: object) -> None:
    graph = common_view_graph(particles.images[:400], n_neighbours=5)  # type: ignore[attr-defined]
    rotations = particles.rotations[:400]  # type: ignore[attr-defined]
    assert graph.neighbours.shape == (400, 5)
    assert not np.any(graph.neighbours == np.arange(400)[:, None])
    assert np.all(np.diff(graph.correlation, axis=1) <= 1e-6)  # best first
    errors = _measured_vs_true_angles(graph, rotations)
    assert np.mean(errors < 10.0) > 0.9
    views = rotations[:, 2, :]  # the beam direction in the map's frame
    cosines = np.einsum("nk,nk->n", views[np.repeat(np.arange(400), 5)],
                        views[graph.neighbours.reshape(-1)])
    assert np.median(np.rad2deg(np.arccos(np.clip(cosines, -1, 1)))) < 15.0


def test_spectral_start_recovers_orientations_without_distances(particles: object) -> None:
    rec = spectral_orientations(particles.images, seed=0)  # type: ignore[attr-defined]
    assert rec.rotations.shape == (1000, 3, 3)
    np.testing.assert_allclose(np.linalg.det(rec.rotations), 1.0, atol=1e-6)
    score = score_distance_fit(rec.quaternions, particles.rotations)  # type: ignore[attr-defined]
    # measured 10.0 deg mean (8.8 median); a random start is about 100 deg off
    assert score.mean_deg < 15.0
    assert np.rad2deg(rec.distance_error_rad) < 3.0  # measured 0.61 deg
    # the unmixing has no local minima here: every random start ends at the same residual
    assert np.ptp(rec.losses) < 1e-6 * max(rec.losses)


def test_spectral_start_warns_when_its_eigenvalues_do_not_stand_out(
    particles: object, caplog: pytest.LogCaptureFixture
) -> None:
    volume = centre_in_box(density_template("1ake", voxel_size_A=PIXEL_A).data, L)
    noisy = simulate_particles(volume, 1000, pixel_size_A=PIXEL_A, seed=5, max_shift_px=0.0,
                               snr=0.125)
    with caplog.at_level("WARNING", logger="emkit.spa._spectral"):
        spectral_orientations(particles.images, restarts=1)  # type: ignore[attr-defined]
    assert "barely stand out" not in caplog.text
    with caplog.at_level("WARNING", logger="emkit.spa._spectral"):
        spectral_orientations(noisy.images, smoothing_px=2.0, restarts=1)
    assert "barely stand out" in caplog.text  # measured gap ratios: 1.81 above, 1.14 here


def test_graph_angle_turns_the_partner_onto_the_image(particles: object) -> None:
    from scipy import ndimage

    image = particles.images[0]  # type: ignore[attr-defined]
    turned = ndimage.rotate(image, 40.0, reshape=False, order=3)  # counter-clockwise as shown
    others = particles.images[1:3]  # type: ignore[attr-defined]
    graph = common_view_graph(np.stack([image, turned, *others]), n_neighbours=1)
    assert list(graph.neighbours[:2, 0]) == [1, 0]
    assert graph.correlation[0, 0] == pytest.approx(1.0, abs=0.01)  # unit-norm images
    # one angular sample is 1.4 deg
    assert np.rad2deg(graph.angles_rad[0, 0]) == pytest.approx(40.0, abs=1.5)
    assert np.rad2deg(graph.angles_rad[1, 0]) == pytest.approx(320.0, abs=1.5)


def test_spectral_start_refuses_what_it_cannot_use(particles: object) -> None:
    with pytest.raises(InputError, match="at least 20 images"):
        spectral_orientations(particles.images[:10])  # type: ignore[attr-defined]
    with pytest.raises(ShapeError, match="square"):
        spectral_orientations(np.zeros((30, 16, 20), dtype=np.float32))
    with pytest.raises(InputError, match="n_neighbours"):
        common_view_graph(particles.images[:30], n_neighbours=30)  # type: ignore[attr-defined]
    bad = particles.images[:30].copy()  # type: ignore[attr-defined]
    bad[3, 5, 5] = np.nan
    bad[7] = 0.0
    with pytest.raises(InputError, match=r"2 particle image\(s\) hold NaN/Inf or are blank "
                                         r"\(index 3, 7\)"):
        common_view_graph(bad, n_neighbours=5)
    with pytest.raises(InputError, match="n_neighbours"):
        common_view_graph(particles.images[:30], n_neighbours=2.5)  # type: ignore[arg-type,attr-defined]
    # one partner each: pairs of images, a graph in pieces
    with pytest.raises(InputError, match="falls apart"):
        spectral_orientations(particles.images[:200], n_neighbours=1)  # type: ignore[attr-defined]


def test_cli_orient_with_the_spectral_start(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from emkit.geometry import euler_zyz_to_matrix
    from emkit.io import read_particles_star, write_volume

    volume = centre_in_box(density_template("1ake", voxel_size_A=PIXEL_A).data, L)
    write_volume(tmp_path / "map.mrc", volume, voxel_size=PIXEL_A)
    sim = tmp_path / "sim"
    assert main(["sim", "particles", str(tmp_path / "map.mrc"), "--n", "800", "--output",
                 str(sim), "--max-shift", "0", "--seed", "3"]) == 0
    out = tmp_path / "orient" / "spectral.star"
    # a model beside the spectral start is refused: one line, exit 2, nothing written
    model = tmp_path / "model"
    model.mkdir()
    assert main(["spa", "orient", str(sim / "particles.star"), "--output", str(out),
                 "--distances", "spectral", "--model", str(model)]) == 2
    assert not out.exists() and "drop --model" in capsys.readouterr().err
    assert main(["spa", "orient", str(sim / "particles.star"), "--output", str(out),
                 "--distances", "spectral", "--refine", "2", "--threads", "1"]) == 0
    printed = capsys.readouterr().out
    assert "(the spectral start, no distances)" in printed and "in-plane angle residual" in printed
    star = read_particles_star(out)
    truth = read_particles_star(sim / "particles.star")
    from emkit.spa import score_orientations

    score = score_orientations(euler_zyz_to_matrix(star["euler_deg"]),
                               euler_zyz_to_matrix(truth["euler_deg"]))
    # measured: median 5.7 deg, mean 8.9 after 2 rounds (a random start: about 90 deg)
    assert score.median_deg < 10.0
