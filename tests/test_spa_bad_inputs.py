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


def _relion30_star_without_angles(path: Path, stack: str, n: int) -> Path:
    """A RELION 3.0 particle STAR as extraction writes it: CTF and pixel size
    (rlnMagnification, rlnDetectorPixelSize), no orientations."""
    rows = "\n".join(f"{i}@{stack} 15301.1 14916.4 5.28 300 2.7 0.07 60000 18"
                     for i in range(1, n + 1))
    path.write_text("data_\n\nloop_\n_rlnImageName #1\n_rlnDefocusU #2\n_rlnDefocusV #3\n"
                    "_rlnDefocusAngle #4\n_rlnVoltage #5\n_rlnSphericalAberration #6\n"
                    "_rlnAmplitudeContrast #7\n_rlnMagnification #8\n"
                    "_rlnDetectorPixelSize #9\n" + rows + "\n")
    return path


def test_an_angles_star_without_orientations(
    good: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An extraction STAR (no rlnAngle* columns) given as --angles: refused, not read as
    every particle at rot = tilt = psi = 0."""
    angles = _relion30_star_without_angles(good / "extract.star", "p.mrcs", 6)
    _refused(_reconstruct(good / "p.star", angles, good / "out"), good / "out", capsys,
             "extract.star", "rlnAngleRot", "no orientations")


def test_star_image_size_that_is_not_the_stacks(
    good: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    star = good / "size.star"
    write_particles_star(star, euler_deg=np.zeros((6, 3)),
                         image_names=relion_image_names("p.mrcs", 6), pixel_size_A=3.0,
                         image_size=4 * L)
    _refused(_orient(star, good / "out"), good / "out", capsys, "size.star",
             f"rlnImageSize {4 * L}", f"{L} px")


def _two_optics_groups(path: Path, stack: str, pixel_sizes_A: tuple[float, float]) -> Path:
    """A RELION 3.1+ STAR (version comment, '#N' column numbers, as RELION 5 writes) whose
    six particles come from two optics groups."""
    optics = "\n".join(f"opticsGroup{g} {g} 300 2.7 0.1 {px} {L} 2"
                       for g, px in zip((1, 2), pixel_sizes_A))
    rows = "\n".join(f"{i}@{stack} {1 + (i > 3)} 10.0 {5.0 * i} 20.0 0.0 0.0"
                     for i in range(1, 7))
    path.write_text(
        "\n# version 50001\n\ndata_optics\n\nloop_ \n_rlnOpticsGroupName #1 \n"
        "_rlnOpticsGroup #2 \n_rlnVoltage #3 \n_rlnSphericalAberration #4 \n"
        "_rlnAmplitudeContrast #5 \n_rlnImagePixelSize #6 \n_rlnImageSize #7 \n"
        "_rlnImageDimensionality #8 \n" + optics + "\n \n\n# version 50001\n\n"
        "data_particles\n\nloop_ \n_rlnImageName #1 \n_rlnOpticsGroup #2 \n"
        "_rlnAngleRot #3 \n_rlnAngleTilt #4 \n_rlnAnglePsi #5 \n_rlnOriginXAngst #6 \n"
        "_rlnOriginYAngst #7 \n" + rows + "\n\n")
    return path


def test_optics_groups_of_different_pixel_sizes(
    good: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """One map has one pixel size: particles of 1.25 and 1.035 Å groups are refused unless
    --pixel-size says to treat them as one; groups of one size are read as usual."""
    mixed = _two_optics_groups(good / "mixed.star", "p.mrcs", (1.25, 1.035))
    _refused(_reconstruct(mixed, mixed, good / "out"), good / "out", capsys, "mixed.star",
             "1.035-1.25", "--pixel-size")
    assert main(_reconstruct(mixed, mixed, good / "out") + ["--pixel-size", "1.25"]) == 0
    # no rlnOpticsGroup per particle beside groups of two sizes; a group the block lacks
    text = mixed.read_text()
    cut = text.replace("_rlnOpticsGroup #2 \n_rlnAngleRot #3 \n_rlnAngleTilt #4 \n"
                       "_rlnAnglePsi #5 \n_rlnOriginXAngst #6 \n_rlnOriginYAngst #7 \n",
                       "_rlnAngleRot #2 \n_rlnAngleTilt #3 \n_rlnAnglePsi #4 \n"
                       "_rlnOriginXAngst #5 \n_rlnOriginYAngst #6 \n")
    rows = [line for line in cut.splitlines() if "@p.mrcs" in line]
    for row in rows:
        cut = cut.replace(row, " ".join(row.split()[:1] + row.split()[2:]))
    (good / "nogroup.star").write_text(cut)
    _refused(_reconstruct(good / "nogroup.star", good / "nogroup.star", good / "o3"),
             good / "o3", capsys, "nogroup.star", "1.035-1.25")
    (good / "unknown.star").write_text(text.replace("@p.mrcs 2 ", "@p.mrcs 7 "))
    _refused(_reconstruct(good / "unknown.star", good / "unknown.star", good / "o4"),
             good / "o4", capsys, "unknown.star", "[7]", "rlnOpticsGroup")
    same = _two_optics_groups(good / "same.star", "p.mrcs", (1.25, 1.25))
    assert main(_reconstruct(same, same, good / "out2")) == 0
    from emkit.io import read_volume

    assert read_volume(good / "out2" / "m.mrc").pixel_size == pytest.approx(1.25)


def test_too_few_images_for_the_default_start(
    good: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Six images and no --model: the default start (spectral) needs 20; the refusal names
    the file and the way out."""
    argv = ["spa", "orient", str(good / "p.star"), "--output", str(good / "out" / "o.star"),
            "--quiet"]
    _refused(argv, good / "out", capsys, "p.star", "6 images", "default start", "--model")


def test_a_bin_that_leaves_too_small_a_box(good: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _refused(_reconstruct(good / "p.star", good / "p.star", good / "out") + ["--bin", "2"],
             good / "out", capsys, "p.star", "--bin 2", f"{L // 2} px")
