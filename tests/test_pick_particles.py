"""emkit.pick particle lists and label maps: formats, round trips, bad input, the CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from emkit.cli.main import main
from emkit.errors import InputError, MismatchError
from emkit.pick import (
    ParticleList,
    particle_label_maps,
    read_particle_list,
    write_particle_lists,
)

SHAPE = (20, 40, 50)


def _particles() -> ParticleList:
    zyx = np.array([[5.0, 10, 12], [10.5, 30.25, 40], [15, 20, 25]])
    return ParticleList(zyx, np.array([1, 2, 2]), np.array([0.9, 0.5, 0.7]))


@pytest.mark.parametrize("fmt", ["star", "tsv", "csv", "xml"])
def test_round_trip_every_format(tmp_path: Path, fmt: str) -> None:
    p = _particles()
    (path,) = write_particle_lists(tmp_path, "t", p, voxel_size_A=10.0, shape_zyx=SHAPE,
                                   formats=(fmt,))
    back = read_particle_list(path, shape_zyx=SHAPE, voxel_size_A=10.0)
    np.testing.assert_allclose(back.zyx, p.zyx, atol=1e-4)
    np.testing.assert_array_equal(back.classes, p.classes)
    if fmt in ("star", "tsv"):
        np.testing.assert_allclose(back.scores, p.scores, atol=1e-4)
        assert back.voxel_size_A == pytest.approx(10.0)


def test_tsv_has_the_original_columns(tmp_path: Path) -> None:
    (path,) = write_particle_lists(tmp_path, "t", _particles(), voxel_size_A=8.0,
                                   shape_zyx=SHAPE, formats=("tsv",))
    header, first = path.read_text().splitlines()[:2]
    assert header.split("\t") == ["PositionX", "PositionY", "PositionZ", "VolumeX", "VolumeY",
                                  "VolumeZ", "Class", "Score"]
    assert float(first.split("\t")[0]) == pytest.approx(12 * 8.0)


def test_relion5_centred_coordinates(tmp_path: Path) -> None:
    star = tmp_path / "r5.star"
    star.write_text(
        "data_particles\n\nloop_\n_rlnCenteredCoordinateXAngst #1\n"
        "_rlnCenteredCoordinateYAngst #2\n_rlnCenteredCoordinateZAngst #3\n"
        "_rlnClassNumber #4\n0.0 -50.0 20.0 2\n")
    with pytest.raises(InputError, match="shape and voxel size"):
        read_particle_list(star)
    p = read_particle_list(star, shape_zyx=SHAPE, voxel_size_A=10.0)
    np.testing.assert_allclose(p.zyx, [[12.0, 15.0, 25.0]])
    assert p.classes.tolist() == [2]


def test_coordinates_outside_the_tomogram_are_refused(tmp_path: Path) -> None:
    csv = tmp_path / "a.csv"
    csv.write_text("x,y,z\n10,10,10\n300,10,10\n")
    with pytest.raises(MismatchError, match="outside the tomogram"):
        read_particle_list(csv, shape_zyx=SHAPE)
    assert len(read_particle_list(csv)) == 2


def test_class_zero_is_refused(tmp_path: Path) -> None:
    csv = tmp_path / "a.csv"
    csv.write_text("x,y,z,class\n10,10,10,0\n")
    with pytest.raises(InputError, match="numbered from 1"):
        read_particle_list(csv)


def test_label_maps_balls_and_nearest_split() -> None:
    zyx = np.array([[10.0, 10, 10], [10.0, 10, 16]])
    inst, cls = particle_label_maps((20, 20, 30), zyx, np.array([1, 2]), [4.0, 4.0])
    assert inst[10, 10, 10] == 1 and inst[10, 10, 16] == 2 and inst[10, 10, 13] in (1, 2)
    assert inst[10, 10, 12] == 1 and inst[10, 10, 14] == 2
    assert cls[10, 10, 16] == 2 and inst[0, 0, 0] == 0
    # a lone ball has the volume of a ball
    inst, _ = particle_label_maps((30, 30, 30), np.array([[15.0, 15, 15]]), [1], [5.0])
    assert (inst == 1).sum() == pytest.approx(4 / 3 * np.pi * 125, rel=0.05)


def test_label_maps_need_a_radius_per_class() -> None:
    with pytest.raises(InputError, match="class 2"):
        particle_label_maps((8, 8, 8), np.zeros((1, 3)), np.array([2]), [3.0])


def test_cli_sim_evaluate_labels(tmp_path: Path) -> None:
    sim = tmp_path / "sim"
    assert main(["sim", "tomogram", "--output", str(sim), "--shape", "32", "64", "64",
                 "--seed", "2"]) == 0
    for name in ("tomogram.mrc", "instances.mrc", "particles.star", "particles.tsv",
                 "particles.csv", "particles.xml", "classes.csv", "tiltseries.tlt"):
        assert (sim / name).is_file(), name
    truth = read_particle_list(sim / "particles.star")
    from emkit.io import read_volume

    tomo = read_volume(sim / "tomogram.mrc")
    assert tomo.voxel_size == (10.0, 10.0, 10.0)
    assert main(["pick", "evaluate", str(sim / "particles.tsv"), str(sim / "particles.xml"),
                 "--radius-A", "40,49,62", "--output", str(tmp_path / "ev")]) == 0
    rows = (tmp_path / "ev" / "evaluation.csv").read_text().splitlines()
    assert rows[-1].startswith(f"all,{len(truth)},{len(truth)},{len(truth)},0,0,1.0000")
    assert (tmp_path / "ev" / "evaluation.png").is_file()
    assert main(["pick", "labels", str(sim / "particles.csv"), "--like",
                 str(sim / "tomogram.mrc"), "--radius-A", "40,49,62", "--output",
                 str(tmp_path / "lab.mrc")]) == 0
    labels = read_volume(tmp_path / "lab.mrc").data
    assert int(labels.max()) == len(truth)


def test_cli_evaluate_bad_input_is_one_line(tmp_path: Path, capsys) -> None:
    a = tmp_path / "a.csv"
    a.write_text("x,y,z,class\n1,2,3,1\n4,5,6,3\n")
    out = tmp_path / "ev"
    assert main(["pick", "evaluate", str(a), str(a), "--radius-A", "40,49",
                 "--pixel-size", "10", "--output", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "class 3" in err[0]
    assert main(["pick", "evaluate", str(a), str(a), "--radius-A", "40,49,50",
                 "--output", str(out)]) == 2
    assert "--pixel-size" in capsys.readouterr().err
    assert not out.exists()


def test_template_labels_reproduce_the_simulated_instances(tmp_path: Path) -> None:
    sim = tmp_path / "sim"
    assert main(["sim", "tomogram", "--output", str(sim), "--shape", "32", "64", "64",
                 "--seed", "4", "--gold", "0"]) == 0
    out = tmp_path / "lab.mrc"
    assert main(["pick", "labels", str(sim / "particles.star"), "--like",
                 str(sim / "tomogram.mrc"), "--template", "1ake", "3enl", "6flr",
                 "--output", str(out)]) == 0
    from emkit.io import read_volume

    made = read_volume(out).data
    truth = read_volume(sim / "instances.mrc").data
    # the same particles, the same rotations (from the STAR angles), the same level
    assert np.mean((made > 0) == (truth > 0)) > 0.995
    assert np.mean(made[truth > 0] == truth[truth > 0]) > 0.98
