"""STAR files: generic blocks, RELION 3.1 particles (and 3.0 fallback), coordinates."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from emkit.errors import FileFormatError, MismatchError, MissingFileError
from emkit.io import (
    read_coordinates_star,
    read_particles_star,
    read_star,
    relion_image_names,
    write_coordinates_star,
    write_particles_star,
    write_star,
)


def test_star_blocks_round_trip(tmp_path: Path) -> None:
    blocks = {
        "general": {"rlnNrClasses": 3},
        "model": pd.DataFrame(
            {"rlnClassDistribution": [0.5, 0.25], "rlnReferenceImage": ["a", "b"]}
        ),
    }
    path = write_star(tmp_path / "m.star", blocks)
    back = read_star(path)
    assert list(back) == ["general", "model"]
    assert back["general"] == {"rlnNrClasses": 3}
    pd.testing.assert_frame_equal(back["model"], blocks["model"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.star"]


def test_particles_star_relion31_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    n = 7
    euler = np.column_stack(
        [rng.uniform(-180, 180, n), rng.uniform(0, 180, n), rng.uniform(-180, 180, n)]
    )
    shifts = rng.normal(0, 4, (n, 2))
    names = relion_image_names("particles/stack.mrcs", n)
    assert names[0] == "000001@particles/stack.mrcs" and names[-1] == "000007@particles/stack.mrcs"
    path = write_particles_star(
        tmp_path / "p.star",
        euler_deg=euler,
        shifts_A=shifts,
        image_names=names,
        pixel_size_A=1.35,
        voltage_kV=200,
        cs_mm=2.7,
        amplitude_contrast=0.07,
        image_size=96,
        defocus_A=rng.uniform(1e4, 2e4, n),
        extra_columns={"rlnClassNumber": [1] * n},
    )
    blocks = read_star(path)
    assert list(blocks) == ["optics", "particles"]
    particles = blocks["particles"]
    for col in (
        "rlnAngleRot",
        "rlnAngleTilt",
        "rlnAnglePsi",
        "rlnOriginXAngst",
        "rlnOriginYAngst",
        "rlnImageName",
        "rlnOpticsGroup",
        "rlnDefocusU",
    ):
        assert col in particles.columns
    np.testing.assert_allclose(particles["rlnOriginXAngst"], shifts[:, 1], atol=1e-6)

    back = read_particles_star(path)
    np.testing.assert_allclose(back["euler_deg"], euler, atol=1e-6)
    np.testing.assert_allclose(back["shifts_A"], shifts, atol=1e-6)
    assert back["image_names"] == names
    assert back["pixel_size_A"] == pytest.approx(1.35)
    assert back["voltage_kV"] == 200 and back["amplitude_contrast"] == pytest.approx(0.07)
    assert back["image_size"] == 96 and back["optics_group"].tolist() == [1] * n
    assert back["particles"]["rlnClassNumber"].tolist() == [1] * n


def test_particles_star_relion30_pixel_shifts_converted(tmp_path: Path) -> None:
    (tmp_path / "old.star").write_text(
        "\ndata_\n\nloop_\n_rlnImageName #1\n_rlnAngleRot #2\n_rlnAngleTilt #3\n"
        "_rlnAnglePsi #4\n_rlnOriginX #5\n_rlnOriginY #6\n_rlnDetectorPixelSize #7\n"
        "_rlnMagnification #8\n"
        "1@s.mrcs 10.0 20.0 30.0 2.0 -1.0 5.0 25000.0\n"
        "2@s.mrcs 11.0 21.0 31.0 0.5 4.0 5.0 25000.0\n"
    )
    back = read_particles_star(tmp_path / "old.star")
    assert back["pixel_size_A"] == pytest.approx(2.0)  # 5 µm / 25000 x
    np.testing.assert_allclose(back["shifts_A"], [[-2.0, 4.0], [8.0, 1.0]])  # (y, x) Å
    np.testing.assert_allclose(back["euler_deg"][1], [11, 21, 31])
    assert back["optics"] is None
    back = read_particles_star(tmp_path / "old.star", pixel_size_A=1.0)
    np.testing.assert_allclose(back["shifts_A"][0], [-1.0, 2.0])


def test_relion30_pixel_shifts_without_pixel_size_refused(tmp_path: Path) -> None:
    (tmp_path / "nopix.star").write_text(
        "\ndata_\n\nloop_\n_rlnImageName #1\n_rlnOriginX #2\n_rlnOriginY #3\n1@s.mrcs 1.0 2.0\n"
    )
    with pytest.raises(FileFormatError, match="nopix.star: .*pass pixel_size_A"):
        read_particles_star(tmp_path / "nopix.star")


def test_particles_mismatched_lengths_refused_nothing_written(tmp_path: Path) -> None:
    with pytest.raises(MismatchError, match="p.star: euler_deg"):
        write_particles_star(
            tmp_path / "p.star",
            euler_deg=np.zeros((3, 3)),
            image_names=relion_image_names("s.mrcs", 4),
            pixel_size_A=1.0,
            image_size=32,
        )
    assert list(tmp_path.iterdir()) == []


def test_coordinates_star_round_trip(tmp_path: Path) -> None:
    zyx = np.array([[1.0, 2.0, 3.0], [40.5, 50.25, 60.125]])
    path = write_coordinates_star(tmp_path / "c.star", zyx, classes=[2, 5])
    df = read_star(path)[""]
    assert df["rlnCoordinateX"].tolist() == [3.0, 60.125]
    back, classes = read_coordinates_star(path)
    np.testing.assert_allclose(back, zyx)
    assert classes.tolist() == [2, 5]


def test_bad_star_files(tmp_path: Path) -> None:
    with pytest.raises(MissingFileError, match="none.star"):
        read_star(tmp_path / "none.star")
    (tmp_path / "empty.star").write_text("just some text\n")
    with pytest.raises(FileFormatError, match="empty.star"):
        read_star(tmp_path / "empty.star")
    write_star(tmp_path / "other.star", {"x": pd.DataFrame({"rlnFoo": [1, 2]})})
    with pytest.raises(FileFormatError, match="other.star: has no particle block"):
        read_particles_star(tmp_path / "other.star")
    with pytest.raises(FileFormatError, match="other.star: has no rlnCoordinateX"):
        read_coordinates_star(tmp_path / "other.star")
