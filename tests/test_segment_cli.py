"""`emkit segment train/predict/mesh` and `emkit sim cell` in-process: outputs, bad input."""

import json

import mrcfile
import numpy as np
import pytest

from emkit.cli.main import main
from emkit.io import read_volume, write_volume

TINY = ["--steps", "4", "--patch", "32", "--width", "4", "--depth", "2", "--batch", "2",
        "--quiet"]


@pytest.fixture(scope="module")
def cell(tmp_path_factory):
    out = tmp_path_factory.mktemp("cell")
    assert main(["sim", "cell", "--output", str(out), "--shape", "24", "48", "48",
                 "--seed", "2"]) == 0
    return out


@pytest.fixture(scope="module")
def model(cell, tmp_path_factory):
    out = tmp_path_factory.mktemp("model") / "model"
    assert main(["segment", "train", str(cell / "cell.mrc"), "--labels",
                 str(cell / "cell_labels.mrc"), "--slices", "6,12,18", "--output", str(out),
                 *TINY]) == 0
    return out


def test_sim_cell_writes_tomogram_and_integer_labels(cell):
    assert sorted(p.name for p in cell.iterdir()) == [".emkit", "cell.mrc", "cell_labels.mrc",
                                                      "emkit-run.json", "report.html"]
    with mrcfile.open(cell / "cell_labels.mrc") as mrc:
        assert mrc.data.dtype == np.int8 and mrc.data.shape == (24, 48, 48)
        assert float(mrc.voxel_size.x) == pytest.approx(300.0)
        assert set(np.unique(mrc.data)) <= {0, 1, 2, 3, 4}


def test_train_writes_model_folder_log_and_curves(model):
    names = sorted(p.name for p in model.iterdir())
    assert names == [".emkit", "config.json", "emkit-run.json", "model.safetensors",
                     "report.html", "training_curves.png", "training_log.csv"]
    config = json.loads((model / "config.json").read_text())
    assert config["voxel_size_A"] == pytest.approx(300.0)
    assert config["extra"]["training"]["slices"] == [6, 12, 18]
    record = json.loads((model / "emkit-run.json").read_text())
    assert record["results"]["slices"] == [6, 12, 18]


@pytest.mark.parametrize("suffix", [".mrc", ".tif", ".ome.zarr"])
def test_predict_writes_integer_labels_with_voxel_size(cell, model, tmp_path, suffix):
    out = tmp_path / f"seg{suffix}"
    assert main(["segment", "predict", str(cell / "cell.mrc"), "--model", str(model),
                 "--output", str(out), "--quiet"]) == 0
    labels = read_volume(out)
    assert labels.data.shape == (24, 48, 48)
    assert np.issubdtype(labels.data.dtype, np.integer)
    assert labels.voxel_size is not None and labels.voxel_size[2] == pytest.approx(300.0)


def test_predict_single_object_is_recorded_and_checks_the_class_name(cell, model, tmp_path,
                                                                     capsys):
    out = tmp_path / "seg.mrc"
    assert main(["segment", "predict", str(cell / "cell.mrc"), "--model", str(model),
                 "--output", str(out), "--single-object", "class_2", "--quiet"]) == 0
    record = json.loads((tmp_path / "seg.emkit-run.json").read_text())
    moved = record["results"]["single_object_relabelled_voxels"]
    assert list(moved) == ["class_2"]
    from scipy import ndimage

    plain = tmp_path / "plain.mrc"
    assert main(["segment", "predict", str(cell / "cell.mrc"), "--model", str(model),
                 "--output", str(plain), "--quiet"]) == 0
    single, before = read_volume(out).data, read_volume(plain).data
    assert ndimage.label(single == 2)[1] == min(1, ndimage.label(before == 2)[1])
    assert moved["class_2"] == int((single != before).sum())
    bad = tmp_path / "bad.mrc"
    _fails(capsys, ["segment", "predict", str(cell / "cell.mrc"), "--model", str(model),
                    "--output", str(bad), "--single-object", "nucleoli"], match="nucleoli")
    assert not bad.exists()


def test_predict_zyx_and_rescaled_tomogram(cell, model, tmp_path, caplog):
    assert main(["segment", "predict", str(cell / "cell.mrc"), "--model", str(model),
                 "--output", str(tmp_path / "zyx.mrc"), "--axes", "zyx", "--quiet"]) == 0
    assert read_volume(tmp_path / "zyx.mrc").data.shape == (24, 48, 48)
    # 20 % finer voxels: warned about and rescaled, labels come back on the input grid
    assert main(["segment", "predict", str(cell / "cell.mrc"), "--model", str(model),
                 "--output", str(tmp_path / "fine.mrc"), "--pixel-size", "240",
                 "--quiet"]) == 0
    assert "rescaling" in caplog.text
    assert read_volume(tmp_path / "fine.mrc").data.shape == (24, 48, 48)


def test_mesh_writes_surfaces_and_table(cell, tmp_path):
    out = tmp_path / "meshes"
    assert main(["segment", "mesh", str(cell / "cell_labels.mrc"), "--output", str(out),
                 "--min-voxels", "30", "--format", "obj", "--class-names",
                 "outside,cytoplasm,nucleus,mitochondria,lipid droplets"]) == 0
    table = (out / "cell_labels_meshes.csv").read_text().splitlines()
    assert table[0] == "label,class_name,component,voxels,volume_A3,area_A2,watertight"
    assert all(line.endswith("True") for line in table[1:])
    assert (out / "cell_labels_nucleus_1.obj").exists()
    assert (out / "cell_labels_meshes.png").exists() and (out / "emkit-run.json").exists()


def _fails(capsys, argv, *, match):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and match in err, err


def test_bad_training_input_is_one_line_and_writes_nothing(cell, tmp_path, capsys):
    tomo, labels = str(cell / "cell.mrc"), cell / "cell_labels.mrc"
    out = tmp_path / "m"
    data = read_volume(labels).data
    write_volume(tmp_path / "small.mrc", data[:, :40].astype(np.float32), voxel_size=300)
    write_volume(tmp_path / "zeros.mrc", np.zeros(data.shape, np.float32), voxel_size=300)
    write_volume(tmp_path / "one.mrc", (data > 0).astype(np.float32), voxel_size=300)
    base = ["segment", "train", tomo, "--output", str(out), *TINY]
    _fails(capsys, [*base, "--labels", str(tmp_path / "small.mrc")], match="shape")
    _fails(capsys, [*base, "--labels", str(tmp_path / "zeros.mrc")], match="no non-zero label")
    _fails(capsys, [*base, "--labels", str(labels), "--slices", "3,24"], match="outside")
    _fails(capsys, [*base, "--labels", str(labels), "--slices", "0"], match="single class")
    _fails(capsys, [*base, "--labels", str(tmp_path / "one.mrc"), "--slices", "0"],
           match="single class")
    with pytest.raises(SystemExit) as exit_info:  # refused by the option's type
        main([*base, "--labels", str(labels), "--slices", "6", "--patch", "4"])
    assert exit_info.value.code == 2 and "--patch" in capsys.readouterr().err
    assert not out.exists()


def test_bad_model_folder_is_one_line_and_writes_nothing(cell, model, tmp_path, capsys):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(model, broken)
    out = tmp_path / "seg.mrc"
    base = ["segment", "predict", str(cell / "cell.mrc"), "--output", str(out), "--quiet"]
    (broken / "model.safetensors").write_bytes(b"\x00" * 50)
    _fails(capsys, [*base, "--model", str(broken)], match="corrupt")
    (broken / "model.safetensors").unlink()
    _fails(capsys, [*base, "--model", str(broken)], match="model.safetensors")
    (broken / "config.json").write_text("{")
    _fails(capsys, [*base, "--model", str(broken)], match="config.json")
    _fails(capsys, [*base, "--model", str(tmp_path / "none")], match="does not exist")
    _fails(capsys, [*base, "--model", str(model), "--pixel-size", "3000"], match="voxel size")
    _fails(capsys, ["segment", "predict", str(cell / "cell.mrc"), "--model", str(model),
                    "--output", str(tmp_path / "seg.png")], match="suffix")
    assert not out.exists() and not (tmp_path / "emkit-run.json").exists()


def test_mesh_of_empty_labels_is_an_error(tmp_path, capsys):
    write_volume(tmp_path / "empty.mrc", np.zeros((8, 8, 8), np.float32), voxel_size=5)
    _fails(capsys, ["segment", "mesh", str(tmp_path / "empty.mrc"), "--output",
                    str(tmp_path / "m")], match="no non-zero label")
    assert not (tmp_path / "m").exists()


def test_demo_part_writes_every_figure(tmp_path):
    from emkit.cli.segment import run_demo

    result = run_demo(tmp_path / "segment", seed=1, progress=False, shape=(24, 64, 64), steps=4)
    names = {p.name for p in (tmp_path / "segment").iterdir()}
    assert {"cell.mrc", "cell_labels.mrc", "cell_seg.mrc", "model", "meshes", "meshes.png",
            "slice_scores.png", "error_overlays.png", "training_curves.png"} <= names
    assert (tmp_path / "segment" / "model" / "model.safetensors").exists()
    assert "dice_nucleus" in result and result["training_steps"] == 8
