"""emkit spa train: a distance model from the user's own structures, usable by spa orient."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

from emkit.cli.main import main


@pytest.fixture(scope="module")
def particles(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("spa_train")
    assert main(["sim", "tiltseries", "--output", str(root / "ts"), "--shape", "16", "24", "24",
                 "--pixel-size", "4"]) == 0
    assert main(["sim", "particles", str(root / "ts" / "tiltseries_volume.mrc"), "--n", "6",
                 "--output", str(root / "sim"), "--box", "24", "--seed", "3"]) == 0
    return root


def test_trains_a_model_that_orient_can_load(particles: Path, tmp_path: Path) -> None:
    from emkit.spa._files import read_particles
    from emkit.spa._siamese import learned_distance_fn, load_distance_model

    out = tmp_path / "model"
    assert main(["spa", "train", "--structures", str(particles / "sim" / "map.mrc"),
                 "--output", str(out), "--steps", "2", "--blobs", "1", "--box", "24",
                 "--threads", "1", "--quiet"]) == 0
    assert {"model.safetensors", "config.json", "training_log.csv"} <= {
        p.name for p in out.iterdir()}
    assert not list(out.glob("*.ckpt*")), "the checkpoint is removed after a finished run"
    model = load_distance_model(out)
    images = read_particles(particles / "sim" / "particles.star").images
    d = learned_distance_fn(model, images)(np.array([[0, 1], [1, 0], [2, 2]]))
    assert d.shape == (3,) and np.all((d >= 0) & (d <= np.pi + 1e-6))
    assert d[0] == pytest.approx(d[1], abs=1e-5)  # symmetric


def test_a_2d_file_is_refused_in_one_line(particles: Path, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    image = tmp_path / "image.mrc"
    from emkit.io import write_volume

    write_volume(image, np.ones((8, 8), np.float32), voxel_size=4.0)
    out = tmp_path / "model"
    assert main(["spa", "train", "--structures", str(image), "--output", str(out),
                 "--steps", "1", "--box", "16", "--blobs", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "image.mrc" in err[0] and "2D" in err[0]
    assert not out.exists()
