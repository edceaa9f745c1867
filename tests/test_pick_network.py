"""emkit.pick network: targets, post-processing (hand-made maps), training and detection."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from emkit.cli.main import main
from emkit.errors import InputError
from emkit.pick import PostProcessing, postprocess, read_particle_list
from emkit.pick._data import centre_map, make_targets


def _ball_maps(centres, radius, shape=(24, 40, 40), classes=None):
    """Mask probability, centre map and class probabilities of ideal particles."""
    grid = np.indices(shape).astype(np.float64)
    mask = np.zeros(shape, np.float32)
    centre = np.zeros(shape, np.float32)
    n_cls = 3
    prob = np.zeros((n_cls + 1, *shape), np.float32)
    prob[0] = 1
    for i, c in enumerate(centres):
        d = np.sqrt(sum((grid[a] - c[a]) ** 2 for a in range(3)))
        inside = d <= radius
        mask[inside] = 0.9
        centre = np.maximum(centre, np.clip(1 - d / radius, 0, 1).astype(np.float32))
        k = 1 if classes is None else classes[i]
        prob[:, inside] = 0.05
        prob[k, inside] = 0.85
    return mask, centre, prob


def test_centre_map_is_one_at_the_centre_and_zero_outside() -> None:
    inst = np.zeros((15, 15, 15), np.int32)
    g = np.indices(inst.shape) - 7
    inst[(g**2).sum(0) <= 16] = 1
    c = centre_map(inst)
    assert c[7, 7, 7] == pytest.approx(1.0) and c[0, 0, 0] == 0
    assert 0 < c[7, 7, 10] < 1


def test_touching_particles_are_split_and_none_is_lost() -> None:
    mask, centre, prob = _ball_maps([(12, 20, 14), (12, 20, 22)], 4.5, classes=[1, 2])
    inst, parts = postprocess(mask, centre, prob, PostProcessing(outlier_neighbours=0))
    assert len(parts) == 2 and sorted(np.unique(inst).tolist()) == [0, 1, 2]
    order = np.argsort(parts.zyx[:, 2])
    np.testing.assert_allclose(parts.zyx[order], [[12, 20, 14], [12, 20, 22]], atol=0.3)
    assert parts.classes[order].tolist() == [1, 2]
    # without splitting the two touching particles are one
    _, merged = postprocess(mask, centre, prob,
                            PostProcessing(outlier_neighbours=0, split_components=False))
    assert len(merged) == 1


def test_centres_are_sub_voxel() -> None:
    mask, centre, prob = _ball_maps([(12.5, 20.25, 18.0)], 4.0)
    _, parts = postprocess(mask, centre, prob, PostProcessing(outlier_neighbours=0))
    np.testing.assert_allclose(parts.zyx, [[12.5, 20.25, 18.0]], atol=0.2)


def test_small_objects_and_outliers_are_removed() -> None:
    centres = [(6, 8, 8), (6, 8, 16), (6, 16, 8), (6, 16, 16), (18, 34, 34)]
    mask, centre, prob = _ball_maps(centres, 3.5)
    mask[2, 36, 2] = 0.9  # one stray voxel
    _, parts = postprocess(mask, centre, prob, PostProcessing(min_size_voxels=10,
                                                              outlier_neighbours=0))
    assert len(parts) == 5
    _, parts = postprocess(mask, centre, prob, PostProcessing(min_size_voxels=10,
                                                              outlier_neighbours=3,
                                                              outlier_distance_px=12))
    assert len(parts) == 4 and np.all(parts.zyx[:, 0] < 10)


def test_bad_postprocessing_parameters() -> None:
    with pytest.raises(InputError):
        PostProcessing(mask_threshold=1.5)
    with pytest.raises(InputError):
        PostProcessing(peak_order=0)


def test_targets_and_validation_region() -> None:
    image = np.zeros((20, 30, 50), np.float32)
    zyx = np.array([[10.0, 15, 10], [10.0, 15, 45]])
    t = make_targets(image, zyx, np.array([1, 2]), {1: 4.0, 2: 4.0},
                     label_radius_fraction=1.0, validation_fraction=0.2)
    assert t.mask[10, 15, 10] == 1 and t.classes[10, 15, 45] == 2
    assert t.centre[10, 15, 10] == pytest.approx(1.0)
    assert t.train_region[:40].all() and not t.train_region[40:].any()


@pytest.fixture(scope="module")
def tiny_sims(tmp_path_factory):
    root = tmp_path_factory.mktemp("picksim")
    for s in (1, 2):
        assert main(["sim", "tomogram", "--output", str(root / f"s{s}"), "--shape", "32", "48",
                     "48", "--snr", "0.5", "--seed", str(s), "--gold", "0"]) == 0
    return root


def test_train_and_detect_from_the_command_line(tiny_sims: Path, tmp_path: Path) -> None:
    model = tmp_path / "model"
    assert main(["pick", "train", str(tiny_sims / "s1" / "tomogram.mrc"),
                 "--particles", str(tiny_sims / "s1" / "particles.star"),
                 "--radius-A", "40,49,62", "--output", str(model), "--from-scratch",
                 "--steps", "6", "--width", "2", "--patch", "16", "--batch", "2",
                 "--quiet"]) == 0
    for name in ("model.safetensors", "config.json", "training_log.csv",
                 "training_curves.png"):
        assert (model / name).is_file(), name
    assert not (model / "training.ckpt.safetensors").exists()
    out = tmp_path / "picks"
    assert main(["pick", "detect", str(tiny_sims / "s2" / "tomogram.mrc"), "--model",
                 str(model), "--output", str(out), "--tile", "32"]) == 0
    for name in ("tomogram_instances.mrc", "tomogram_particles.star",
                 "tomogram_particles.tsv"):
        assert (out / name).is_file(), name
    header = (out / "tomogram_particles.tsv").read_text().splitlines()[0].split("\t")
    assert header == ["PositionX", "PositionY", "PositionZ", "VolumeX", "VolumeY", "VolumeZ",
                      "Class", "Score"]
    from emkit.io import read_volume

    inst = read_volume(out / "tomogram_instances.mrc")
    assert inst.voxel_size == (10.0, 10.0, 10.0) and inst.data.shape == (32, 48, 48)
    picks = read_particle_list(out / "tomogram_particles.star")
    assert int(inst.data.max()) == len(picks)
    # chunk by chunk, reading the tomogram lazily: the same outputs
    out2 = tmp_path / "chunked"
    assert main(["pick", "detect", str(tiny_sims / "s2" / "tomogram.mrc"), "--model",
                 str(model), "--output", str(out2), "--tile", "32", "--chunk", "16",
                 "--quiet"]) == 0
    chunked = read_volume(out2 / "tomogram_instances.mrc")
    assert chunked.data.shape == (32, 48, 48) and chunked.voxel_size == (10.0, 10.0, 10.0)
    assert int(chunked.data.max()) == len(read_particle_list(out2 / "tomogram_particles.tsv"))


@pytest.mark.parametrize("case", ["outside", "no-radius", "2d", "count", "names"])
def test_bad_training_input_is_one_line_and_writes_nothing(
    case: str, tiny_sims: Path, tmp_path: Path, capsys
) -> None:
    tomo = str(tiny_sims / "s1" / "tomogram.mrc")
    lst = tmp_path / "list.csv"
    lst.write_text("x,y,z,class\n10,10,10,1\n20,20,20,2\n")
    radius = "40,49"
    if case == "outside":
        lst.write_text("x,y,z\n10,10,10\n100,20,20\n")  # a list of a bigger tomogram
    elif case == "no-radius":
        radius = "40"
    elif case == "2d":
        from emkit.io import write_volume

        tomo = str(tmp_path / "image.mrc")
        write_volume(tomo, np.zeros((40, 40), np.float32), voxel_size=10.0)
    argv = ["pick", "train", tomo, "--particles", str(lst), "--radius-A", radius,
            "--output", str(tmp_path / "model"), "--from-scratch", "--steps", "2"]
    if case == "count":
        argv[4:4] = [str(lst)]
    elif case == "names":
        argv += ["--class-names", "a,b,c"]
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("emkit: error:"), err
    expected = {"outside": "outside the tomogram", "no-radius": "class 2", "2d": "2D",
                "count": "one --particles list per tomogram",
                "names": "one name per class"}[case]
    assert expected in err[0]
    assert not (tmp_path / "model").exists()


def test_fine_tuning_keeps_the_class_output_only_for_the_same_classes(caplog) -> None:
    """The class decoder carries over; of its output layer (one channel per class) the
    background and each class the initial model also has, found by name: another model's
    species must not be inherited, and unnamed classes inherit none."""
    import torch

    from emkit.nn import PercentileNormalisation, TrainedModel
    from emkit.pick import build_pick_network
    from emkit.pick._train import _network_from

    torch.manual_seed(0)
    old = build_pick_network(3, width=2)
    initial = TrainedModel(old, PercentileNormalisation(), 10.0,
                           ["background", "1ake", "3enl", "6flr"], "pick", {})
    before = old.state_dict()
    same = _network_from(initial, ["1ake", "3enl", "6flr"], 3, 8, 2).state_dict()
    other = _network_from(initial, ["6flr_a", "3enl", "6zu5_se0"], 3, 8, 2).state_dict()
    assert "no class of the initial model" not in caplog.text
    fewer = _network_from(initial, ["a", "b"], 2, 8, 2).state_dict()
    assert "no class of the initial model (1ake, 3enl, 6flr)" in caplog.text
    unnamed = _network_from(initial, None, 3, 8, 2).state_dict()
    for key, value in before.items():
        assert torch.equal(same[key], value), key
        if key.startswith("decoders.2.out."):
            # background and 3enl (old channel 2, now channel 2 of 6flr_a, 3enl, 6zu5_se0)
            assert torch.equal(other[key][[0, 2]], value[[0, 2]]), key
            assert not torch.equal(other[key][1], value[1]), key
            assert not torch.equal(other[key][3], value[3]), key
            assert fewer[key].shape[0] == 3 and torch.equal(fewer[key][0], value[0]), key
            assert not torch.equal(fewer[key][1:], value[1:3]), key
            assert torch.equal(unnamed[key][0], value[0]), key
            assert not any(torch.equal(unnamed[key][i], value[i]) for i in (1, 2, 3)), key
        else:
            for net in (other, fewer, unnamed):
                assert torch.equal(net[key], value), key
    moved = _network_from(initial, ["6flr", "1ake"], 2, 8, 2).state_dict()
    w = "decoders.2.out.weight"
    assert torch.equal(moved[w][1], before[w][3]) and torch.equal(moved[w][2], before[w][1])


def test_class_names_are_one_distinct_name_per_class() -> None:
    from emkit.pick import check_class_names

    check_class_names(None, 3)
    check_class_names(["a", "b"], 2)
    for names, n in ((["a"], 2), (["a", "a"], 2), (["background", "a"], 2)):
        with pytest.raises(InputError):
            check_class_names(names, n)


def test_model_of_another_voxel_size(tiny_sims: Path, tmp_path: Path, capsys,
                                     caplog) -> None:
    from emkit.nn import PercentileNormalisation, TrainedModel, load_model, save_model
    from emkit.pick import build_pick_network

    for voxel, status in ((15.0, 0), (40.0, 2)):
        folder = tmp_path / f"m{voxel:g}"
        net = build_pick_network(3, width=2)
        save_model(folder, TrainedModel(net, PercentileNormalisation(), voxel,
                                        ["background", "a", "b", "c"], "pick",
                                        {"radii_A": [40, 49, 62]}))
        assert load_model(folder, task="pick").voxel_size_A == voxel
        out = tmp_path / f"out{voxel:g}"
        capsys.readouterr()
        assert main(["pick", "detect", str(tiny_sims / "s2" / "tomogram.mrc"), "--model",
                     str(folder), "--output", str(out), "--tile", "32"]) == status
        err = capsys.readouterr().err
        if status == 2:
            assert "factor" in err and not out.exists()
        else:
            assert "rescaling" in caplog.text
            from emkit.io import read_volume

            assert read_volume(out / "tomogram_instances.mrc").data.shape == (32, 48, 48)


def test_shipped_model_recipe_numbers_each_species_by_its_place_in_the_list() -> None:
    """``python -m emkit.pick._make_model``: each simulation draws some species; its class
    numbers are the species' places in the whole list (the class head's channels)."""
    from emkit.pick._make_model import SPECIES, _simulate, simulation_settings

    settings = simulation_settings(6, SPECIES, 2)
    assert settings == simulation_settings(6, SPECIES, 2)
    assert all(len(s["species"]) == 2 and set(s["species"]) <= set(SPECIES) for s in settings)
    assert len({tuple(s["species"]) for s in settings}) > 1
    first = settings[0]
    a, b = first["species"]
    _, lists_ab, radius_ab = _simulate([first], (a, b))
    _, lists_ba, radius_ba = _simulate([first], (b, a))
    assert set(np.unique(lists_ab[0][1])) == {1, 2}
    np.testing.assert_array_equal(lists_ba[0][1], 3 - lists_ab[0][1])
    assert radius_ba == radius_ab[::-1] and radius_ab[0] != radius_ab[1]
    other = next(n for n in SPECIES if n not in first["species"])
    with pytest.raises(SystemExit, match="no simulation drew"):
        _simulate([first], (a, b, other))
    # the default recipe is the shipped model's (its config records its simulations)
    from emkit.nn import load_model
    from emkit.pick import shipped_model_folder
    from emkit.pick._make_model import DEFAULT_TOMOGRAMS

    folder = shipped_model_folder()
    assert folder is not None
    recorded = load_model(folder, task="pick").extra["training_data"]["simulations"]
    assert len(recorded) == DEFAULT_TOMOGRAMS
    default = simulation_settings(DEFAULT_TOMOGRAMS)
    assert [{k: d[k] for k in r} for d, r in zip(default, recorded)] == recorded
    assert all(d["species"] == list(SPECIES) for d in default)


def test_demo_renumbers_the_models_classes_by_species_name() -> None:
    """A model's classes are scored by species name, whatever their order, and a species the
    simulation lacks is a wrong class with its radius."""
    from types import SimpleNamespace

    from emkit.pick import classes_by_name

    model = SimpleNamespace(class_names=["background", "1ake", "3enl", "6flr", "3o21"],
                            extra={"radii_A": [40.0, 49.0, 62.0, 84.0]})
    sim = SimpleNamespace(class_names=["3enl", "1ake"], radii_A=[49.0, 40.0],
                          voxel_size_A=10.0)
    classes, radii = classes_by_name(np.array([1, 2, 3, 4, 2]), model, sim)
    np.testing.assert_array_equal(classes, [2, 1, 3, 4, 1])
    assert radii == {1: 4.9, 2: 4.0, 3: 6.2, 4: 8.4}


def test_chunks_go_to_a_cluster_only_from_a_file() -> None:
    from emkit.nn import load_model
    from emkit.pick import detect_particles_chunked, shipped_model_folder

    folder = shipped_model_folder()
    if folder is None:
        pytest.skip("this emkit has no shipped pick model")
    model = load_model(folder, task="pick")
    with pytest.raises(InputError, match="give the tomogram's path"):
        detect_particles_chunked(np.zeros((40, 40, 40), np.float32), model, chunk=16,
                                 n_workers=2)


def test_a_large_label_map_goes_to_a_temporary_file_with_the_same_result(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import emkit.pick._chunked as chunked
    from emkit.nn import load_model
    from emkit.pick import shipped_model_folder
    from emkit.sim import simulate_tomogram

    folder = shipped_model_folder()
    if folder is None:
        pytest.skip("this emkit has no shipped pick model")
    model = load_model(folder, task="pick")
    tomogram = simulate_tomogram((32, 64, 64), seed=5, snr=0.05, n_gold=0).tomogram
    in_memory = chunked.detect_particles_chunked(tomogram, model, chunk=32)
    assert type(in_memory["instances"]) is np.ndarray
    monkeypatch.setattr(chunked, "LABEL_MAP_IN_MEMORY_BYTES", 1000)
    monkeypatch.setattr(chunked, "_RENUMBER_VOXELS", 500)  # several slabs
    on_disk = chunked.detect_particles_chunked(tomogram, model, chunk=32)
    assert isinstance(on_disk["instances"], np.memmap)
    assert len(on_disk["particles"]) == len(in_memory["particles"]) > 0
    np.testing.assert_array_equal(on_disk["instances"], in_memory["instances"])
    np.testing.assert_array_equal(on_disk["particles"].zyx, in_memory["particles"].zyx)


def test_no_room_for_a_large_label_map_is_one_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import errno
    import os

    import emkit.pick._chunked as chunked
    from emkit.errors import DiskFullError

    def full(fd: int, offset: int, length: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(chunked, "LABEL_MAP_IN_MEMORY_BYTES", 1000)
    monkeypatch.setattr(os, "posix_fallocate", full)
    with pytest.raises(DiskFullError, match="TMPDIR"):
        chunked._new_label_map((16, 16, 16))
