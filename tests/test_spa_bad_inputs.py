"""Bad particle inputs: one line, exit 2, nothing written, inputs unchanged."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from emkit.cli.main import main
from emkit.io import relion_image_names, write_particles_star, write_volume

L = 16


def _stack(path: Path, images: np.ndarray) -> Path:
    write_volume(path, images.astype(np.float32), voxel_size=3.0, stack=True)
    return path


def _star(path: Path, names: list[str], euler: bool = True) -> Path:
    n = len(names)
    angles = np.random.default_rng(0).uniform(0, 90, (n, 3)) if euler else np.zeros((n, 3))
    write_particles_star(path, euler_deg=angles, image_names=names, pixel_size_A=3.0,
                         image_size=L)
    return path


@pytest.fixture()
def good(tmp_path: Path) -> Path:
    rng = np.random.default_rng(1)
    _stack(tmp_path / "p.mrcs", rng.standard_normal((6, L, L)))
    _star(tmp_path / "p.star", relion_image_names("p.mrcs", 6))
    return tmp_path


def _digest(root: Path) -> dict[str, str]:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _refused(argv: list[str], out: Path, capsys: pytest.CaptureFixture[str], *words: str) -> None:
    status = main(argv)
    err = capsys.readouterr().err
    assert status == 2, err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("emkit: error: "), err
    for word in words:
        assert word in lines[0], lines[0]
    assert not out.exists()


def _orient(star: Path, out: Path) -> list[str]:
    return ["spa", "orient", str(star), "--output", str(out / "o.star"), "--distances",
            "exact", "--quiet", "--threads", "1"]


def _reconstruct(star: Path, angles: Path, out: Path) -> list[str]:
    return ["spa", "reconstruct", str(star), "--angles", str(angles), "--output",
            str(out / "m.mrc"), "--threads", "1"]


def test_star_naming_a_missing_stack(good: Path, capsys: pytest.CaptureFixture[str]) -> None:
    star = _star(good / "missing.star", relion_image_names("gone.mrcs", 6))
    before = _digest(good)
    _refused(_orient(star, good / "out"), good / "out", capsys, "missing.star", "gone.mrcs")
    _refused(_reconstruct(star, good / "p.star", good / "out"), good / "out", capsys,
             "gone.mrcs")
    assert _digest(good) == before


def test_star_index_beyond_the_stack(good: Path, capsys: pytest.CaptureFixture[str]) -> None:
    names = relion_image_names("p.mrcs", 6)[:5] + ["000009@p.mrcs"]
    star = _star(good / "beyond.star", names)
    _refused(_orient(star, good / "out"), good / "out", capsys, "9@p.mrcs", "holds 6")


def test_bad_image_name(good: Path, capsys: pytest.CaptureFixture[str]) -> None:
    star = _star(good / "name.star", ["p.mrcs"] * 6)
    _refused(_orient(star, good / "out"), good / "out", capsys, "index@stack")


def test_non_square_images(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    stack = _stack(tmp_path / "rect.mrcs", np.ones((6, L, L + 4)))
    _refused(_orient(stack, tmp_path / "out"), tmp_path / "out", capsys, "rect.mrcs", "square")


def test_stack_of_one_image(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    stack = _stack(tmp_path / "one.mrcs", np.ones((1, L, L)))
    _refused(_orient(stack, tmp_path / "out"), tmp_path / "out", capsys, "one.mrcs", "1 image")


def test_nan_pixels(good: Path, capsys: pytest.CaptureFixture[str]) -> None:
    images = np.random.default_rng(2).standard_normal((6, L, L))
    images[3, 2, 2] = np.nan
    _stack(good / "p.mrcs", images)
    _refused(_orient(good / "p.star", good / "out"), good / "out", capsys, "NaN")
    _refused(_reconstruct(good / "p.star", good / "p.star", good / "out"), good / "out", capsys,
             "NaN")


def test_exact_distances_need_true_angles(good: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _refused(_orient(good / "p.mrcs", good / "out"), good / "out", capsys, "--distances exact")


def test_angles_for_another_number_of_particles(
    good: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    angles = _star(good / "four.star", relion_image_names("p.mrcs", 4))
    _refused(_reconstruct(good / "p.star", angles, good / "out"), good / "out", capsys,
             "four.star", "4 orientations for 6")


def test_a_folder_that_is_not_a_distance_model(
    good: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (good / "notamodel").mkdir()
    argv = ["spa", "orient", str(good / "p.star"), "--output", str(good / "out" / "o.star"),
            "--model", str(good / "notamodel"), "--quiet"]
    _refused(argv, good / "out", capsys, "notamodel")


def test_output_must_not_be_an_input(good: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = _digest(good)
    status = main(["spa", "orient", str(good / "p.star"), "--output", str(good / "p.star"),
                   "--distances", "exact"])
    assert status == 2 and "p.star" in capsys.readouterr().err
    assert _digest(good) == before
