"""emkit.segment building blocks: metrics, input checks, meshes, prediction, baselines."""

import numpy as np
import pytest
import torch

from emkit.errors import InputError, MismatchError
from emkit.nn import PercentileNormalisation, TrainedModel, UNet
from emkit.segment import (
    check_training_inputs,
    dice_scores,
    labelled_slices,
    mesh_labels,
    mesh_table,
    per_slice_scores,
    predict_segmentation,
    segment_random_forest,
    train_segmentation,
)
from emkit.segment._objects import class_indices, fallback_labels, keep_largest_object


def test_dice_scores_known_values():
    truth = np.array([0, 0, 1, 1, 2, 2])
    pred = np.array([0, 1, 1, 1, 2, 0])
    np.testing.assert_allclose(dice_scores(pred, truth, 4)[:3], [0.5, 0.8, 2 / 3])
    assert np.isnan(dice_scores(pred, truth, 4)[3])
    mask = np.array([True, True, True, True, False, False])
    np.testing.assert_allclose(dice_scores(pred, truth, 3, mask=mask)[:2], [2 / 3, 0.8])
    with pytest.raises(MismatchError):
        dice_scores(pred, truth[:-1], 3)
    dice, accuracy = per_slice_scores(np.stack([pred, truth]), np.stack([truth, truth]), 3)
    assert dice.shape == (2, 3) and accuracy.tolist() == [4 / 6, 1.0]


def test_labelled_slices_and_training_checks():
    labels = np.zeros((5, 16, 16), np.uint8)
    labels[1, 2:5, 2:5] = 1
    labels[3, :, :8] = 2
    assert labelled_slices(labels) == [1, 3]
    assert labelled_slices(labels, [3, 0]) == [0, 3]
    with pytest.raises(InputError, match="outside the volume"):
        labelled_slices(labels, [5])
    with pytest.raises(InputError, match="repeat"):
        labelled_slices(labels, [1, 1])
    with pytest.raises(InputError, match="no non-zero label"):
        labelled_slices(np.zeros_like(labels))
    tomo = np.random.default_rng(0).normal(size=labels.shape).astype(np.float32)
    assert check_training_inputs(tomo, labels, None) == ([1, 3], 3)
    with pytest.raises(MismatchError):
        check_training_inputs(tomo[:, :8], labels, None)
    with pytest.raises(InputError, match="single class"):
        check_training_inputs(tomo, labels, [0])
    with pytest.raises(InputError, match="whole numbers"):
        check_training_inputs(tomo, labels + 0.5, None)


def _ball(shape, centre, radius):
    grid = np.indices(shape)
    return sum((g - c) ** 2 for g, c in zip(grid, centre)) <= radius**2


@pytest.mark.parametrize("smoothing", [0.0, 1.0])
def test_meshes_are_watertight_and_keep_the_voxel_volume(smoothing):
    shape = (40, 48, 56)
    labels = np.zeros(shape, np.uint8)
    labels[_ball(shape, (20, 24, 20), 10)] = 1
    labels[_ball(shape, (12, 30, 44), 3.5)] = 2  # small: smoothing would shrink it
    labels[_ball(shape, (28, 12, 44), 5)] = 2
    tube = np.zeros(shape, bool)  # a bent tube
    for t in np.linspace(0, np.pi, 40):
        tube |= _ball(shape, (30 + 6 * np.sin(t), 36, 6 + 14 * t / np.pi), 2.5)
    labels[tube & (labels == 0)] = 3
    labels[2:5, 2:5, 2:5] = 4  # 27 voxels: below min_voxels
    meshes = mesh_labels(labels, voxel_size_A=(12.0, 10.0, 10.0), origin_A=(100.0, 0.0, 0.0),
                         class_names=["bg", "cell", "drop", "tube"], min_voxels=50,
                         smoothing_px=smoothing)
    assert [(m.label, m.class_name, m.component) for m in meshes] == [
        (1, "cell", 1), (2, "drop", 1), (2, "drop", 2), (3, "tube", 1)]
    for m in meshes:
        assert m.watertight
        assert m.volume_A3 == pytest.approx(m.voxels * 1200.0, rel=0.05 if smoothing else 0.15)
    ball = meshes[0]
    centre = ball.vertices_zyx_A.mean(axis=0)
    np.testing.assert_allclose(centre, [100 + 20 * 12, 240, 200], atol=3)
    table = mesh_table(meshes).splitlines()
    assert table[0].startswith("label,class_name,component,voxels,volume_A3")
    assert len(table) == 5


def _random_model(n_classes=3, voxel=10.0):
    torch.manual_seed(0)
    net = UNet(out_channels=(n_classes, 1), width=4, depth=2, skip_connections=(True, False))
    return TrainedModel(net.eval(), PercentileNormalisation(), voxel,
                        [f"c{k}" for k in range(n_classes)], "segment")


def test_prediction_ignores_gain_and_offset_and_keeps_the_grid(caplog):
    model = _random_model()
    rng = np.random.default_rng(0)
    tomo = rng.gamma(2.0, size=(6, 24, 32)).astype(np.float32)
    a = predict_segmentation(tomo, model, voxel_size_A=10.0)
    b = predict_segmentation(2.5 * tomo - 3.0, model, voxel_size_A=10.0)
    assert a.labels.shape == tomo.shape and a.labels.dtype == np.uint8
    assert (a.labels == b.labels).mean() > 0.999
    fused = predict_segmentation(tomo, model, axes="zyx", chunk_slices=4)
    assert fused.labels.shape == tomo.shape
    rescaled = predict_segmentation(tomo, model, voxel_size_A=13.0)
    assert rescaled.labels.shape == tomo.shape and rescaled.rescale_factor == pytest.approx(1.3)
    assert "rescaling" in caplog.text
    with pytest.raises(InputError, match="voxel size"):
        predict_segmentation(tomo, model, voxel_size_A=50.0)
    with pytest.raises(InputError):
        predict_segmentation(tomo, model, axes="xy")


def _two_phase_volume(seed):
    rng = np.random.default_rng(seed)
    labels = np.zeros((6, 48, 48), np.uint8)
    for z in range(6):
        labels[z][_ball((48, 48), rng.uniform(12, 36, 2), rng.uniform(6, 12))] = 1
        labels[z][_ball((48, 48), rng.uniform(12, 36, 2), 4)] = 2
    tomo = labels * 1.0 + rng.normal(0, 0.3, labels.shape)
    return tomo.astype(np.float32), labels


def test_random_forest_baseline_learns_an_easy_volume():
    pytest.importorskip("sklearn", reason="the forest baseline needs scikit-learn (test extra)")
    tomo, labels = _two_phase_volume(1)
    pred = segment_random_forest(tomo, labels, slices=[0, 3], n_estimators=10, seed=0,
                                 n_jobs=1)
    other = [1, 2, 4, 5]
    assert np.nanmean(dice_scores(pred[other], labels[other], 3)) > 0.8


def test_training_is_seeded_and_learns_an_easy_volume(tmp_path):
    tomo, labels = _two_phase_volume(2)
    kwargs = dict(slices=[0, 3], width=4, depth=2, patch_size=32, batch_size=4, n_steps=40,
                  validate_every=10, seed=5, voxel_size_A=8.0, learning_rate=1e-2,
                  semi_supervised=False)
    first = train_segmentation(tomo, labels, **kwargs)
    second = train_segmentation(tomo, labels, **kwargs)
    for a, b in zip(first.model.network.state_dict().values(),
                    second.model.network.state_dict().values()):
        assert torch.equal(a, b)
    assert first.model.voxel_size_A == 8.0 and first.slices == [0, 3]
    assert len(first.history.rows) == 4 and "val_dice" in first.history.rows[0]
    pred = predict_segmentation(tomo, first.model).labels
    assert dice_scores(pred, labels, 3)[1] > 0.6


def test_context_slices_train_and_predict_with_neighbours():
    tomo, labels = _two_phase_volume(3)
    training = train_segmentation(tomo, labels, slices=[0, 3], width=4, depth=2, patch_size=32,
                                  batch_size=2, n_steps=3, validate_every=3, seed=0,
                                  context_slices=1)
    assert training.model.network.in_channels == 3
    for axes in ("z", "zyx"):
        result = predict_segmentation(tomo, training.model, axes=axes, chunk_slices=4)
        assert result.labels.shape == tomo.shape
    with pytest.raises(InputError):
        train_segmentation(tomo, labels, slices=[0], context_slices=9)


def test_single_object_keeps_the_largest_piece_and_relabels_the_rest_by_second_choice():
    # class 2 in three pieces: a 4x4x4 block, a 2x2x2 block and one voxel
    labels = np.zeros((10, 10, 10), np.uint8)
    labels[1:5, 1:5, 1:5] = 2
    labels[7:9, 7:9, 7:9] = 2
    labels[0, 9, 9] = 2
    fallback = np.ones_like(labels)
    fallback[8, 8, 8] = 3
    truth = labels.copy()
    truth[7:9, 7:9, 7:9] = 1
    truth[8, 8, 8] = 3
    truth[0, 9, 9] = 1
    assert keep_largest_object(labels, fallback, 2) == 9
    np.testing.assert_array_equal(labels, truth)
    assert keep_largest_object(labels, fallback, 2) == 0  # one piece left: nothing moves
    # diagonal neighbours are apart (6-connectivity), as in scipy's default
    diagonal = np.zeros((3, 3, 3), np.uint8)
    diagonal[0, 0, 0] = diagonal[1, 1, 0] = 2
    assert keep_largest_object(diagonal, np.zeros_like(diagonal), 2) == 1


def test_fallback_is_the_best_class_outside_the_excluded_ones():
    probs = np.array([[0.1, 0.5], [0.2, 0.1], [0.7, 0.4]])  # (class, voxel)
    np.testing.assert_array_equal(fallback_labels(probs, [2]), [1, 0])
    np.testing.assert_array_equal(fallback_labels(probs, [0, 2]), [1, 1])
    assert class_indices(["nucleus", "mito", "nucleus"], ["bg", "nucleus", "mito"]) == (1, 2)
    with pytest.raises(InputError, match="'nucleoli'.*'bg', 'nucleus'"):
        class_indices(["nucleoli"], ["bg", "nucleus"])
    with pytest.raises(InputError, match="background"):
        class_indices(["bg"], ["bg", "nucleus"])


def test_single_object_in_network_and_forest_predictions():
    pytest.importorskip("sklearn", reason="the forest baseline needs scikit-learn (test extra)")
    from scipy import ndimage

    tomo, labels = _two_phase_volume(4)  # class 2: one small ball per slice, apart in 3D
    model = train_segmentation(tomo, labels, slices=[0, 3], width=4, depth=2, patch_size=32,
                               batch_size=4, n_steps=40, validate_every=10, seed=5,
                               learning_rate=1e-2, semi_supervised=False).model
    plain = predict_segmentation(tomo, model)
    single = predict_segmentation(tomo, model, single_object=["class_2"])
    assert ndimage.label(plain.labels == 2)[1] > 1
    assert ndimage.label(single.labels == 2)[1] == 1
    changed = plain.labels != single.labels
    assert single.relabelled_voxels == {"class_2": int(changed.sum())}
    assert (plain.labels[changed] == 2).all() and (single.labels[changed] != 2).all()
    fused = predict_segmentation(tomo, model, axes="zyx", chunk_slices=4,
                                 single_object=["class_2"])
    assert ndimage.label(fused.labels == 2)[1] == 1
    with pytest.raises(InputError, match="does not have"):
        predict_segmentation(tomo, model, single_object=["nucleoli"])
    kwargs = dict(slices=[0, 3], n_estimators=10, seed=0, n_jobs=1)
    forest = segment_random_forest(tomo, labels, **kwargs)
    forest_single = segment_random_forest(tomo, labels, single_object=[2], **kwargs)
    assert ndimage.label(forest == 2)[1] > 1 and ndimage.label(forest_single == 2)[1] == 1
    moved = forest != forest_single
    assert (forest[moved] == 2).all()
    with pytest.raises(InputError, match="single-object"):
        segment_random_forest(tomo, labels, single_object=[7], **kwargs)
    with pytest.raises(InputError, match="background"):
        segment_random_forest(tomo, labels, single_object=[0], **kwargs)


def test_mesh_of_a_component_smoothed_below_the_usual_levels():
    """A one-voxel piece smoothed flat never reaches 0.02: the level is chosen inside the
    field's range (the demo crashed with 'Surface level must be within volume data range')."""
    from emkit.segment._mesh import _component_mesh

    mask = np.zeros((15, 15, 15), bool)
    mask[7, 7, 7] = True
    vertices, faces = _component_mesh(mask, smoothing_px=1.5, voxel_size=np.array([300.0] * 3))
    assert len(vertices) > 0 and len(faces) > 0
