"""emkit.nn: U-Net shapes (table-driven), model folder round trip, tiling, determinism."""

import json

import numpy as np
import pytest
import torch

from emkit.errors import FileFormatError, InputError, MissingFileError
from emkit.nn import (
    PercentileNormalisation,
    TrainedModel,
    UNet,
    blend_window,
    fit,
    load_model,
    predict_tiled,
    save_model,
    seed_everything,
)


@pytest.mark.parametrize(
    ("dims", "shape", "heads", "width", "depth"),
    [
        (2, (2, 1, 32, 48), (3,), 4, 2),
        (2, (1, 1, 16, 16), (5, 1), 4, 3),
        (3, (1, 1, 16, 16, 8), (2,), 2, 1),
        (3, (2, 1, 8, 8, 8), (4, 1, 2), 2, 2),
        (2, (1, 1, 12, 12), (2,), 4, 0),
    ],
)
def test_unet_output_shapes(dims, shape, heads, width, depth):
    net = UNet(spatial_dims=dims, out_channels=heads, width=width, depth=depth)
    outputs = net(torch.zeros(shape))
    assert [tuple(o.shape) for o in outputs] == [(shape[0], c, *shape[2:]) for c in heads]


def test_unet_rejects_bad_arguments_and_sizes():
    with pytest.raises(InputError):
        UNet(spatial_dims=4)
    with pytest.raises(InputError):
        UNet(out_channels=(2, 1), skip_connections=(True,))
    with pytest.raises(InputError):
        UNet(depth=2)(torch.zeros(1, 1, 10, 12))


def test_head_without_skips_differs_from_head_with_skips():
    net = UNet(out_channels=(1, 1), width=4, depth=2, skip_connections=(True, False))
    assert net.decoders[0].blocks[0][0].in_channels == 2 * net.decoders[1].blocks[0][0].in_channels


def _model(seed=0):
    torch.manual_seed(seed)
    net = UNet(out_channels=(3, 1), width=4, depth=2, skip_connections=(True, False))
    return TrainedModel(net, PercentileNormalisation(1, 99), 12.5, ["a", "b", "c"], "segment",
                        extra={"slices": [1, 2]})


def test_model_folder_round_trip(tmp_path):
    model = _model()
    # non-trivial BatchNorm running statistics must survive too
    model.network.train()
    model.network(torch.randn(2, 1, 16, 16))
    model.network.eval()
    save_model(tmp_path / "m", model)
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == [".emkit", "config.json",
                                                                   "model.safetensors"]
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["architecture"]["out_channels"] == [3, 1]
    assert config["voxel_size_A"] == 12.5 and config["class_names"] == ["a", "b", "c"]
    assert "emkit_version" in config
    loaded = load_model(tmp_path / "m", task="segment", device="cpu")
    x = torch.randn(1, 1, 16, 16)
    with torch.no_grad():
        for a, b in zip(model.network(x), loaded.network(x)):
            np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert loaded.extra == {"slices": [1, 2]} and loaded.voxel_size_A == 12.5


def test_model_folder_missing_or_corrupt_files(tmp_path):
    save_model(tmp_path / "m", _model())
    with pytest.raises(InputError, match="not a 'pick' model"):
        load_model(tmp_path / "m", task="pick")
    weights = tmp_path / "m" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(FileFormatError, match="model.safetensors"):
        load_model(tmp_path / "m")
    weights.unlink()
    with pytest.raises(MissingFileError, match="model.safetensors"):
        load_model(tmp_path / "m")
    (tmp_path / "m" / "config.json").write_text("{not json")
    with pytest.raises(FileFormatError, match="config.json"):
        load_model(tmp_path / "m")
    with pytest.raises(MissingFileError):
        load_model(tmp_path / "nothing")


def test_weights_that_do_not_fit_the_config_are_a_format_error(tmp_path):
    save_model(tmp_path / "m", _model())
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    config["architecture"]["width"] = 8
    (tmp_path / "m" / "config.json").write_text(json.dumps(config))
    with pytest.raises(FileFormatError, match="do not agree"):
        load_model(tmp_path / "m")


def test_tiled_equals_untiled():
    net = _model().network.eval()
    rng = np.random.default_rng(0)
    image = rng.normal(size=(2, 40, 56)).astype(np.float32)
    whole = predict_tiled(net, image, tile_size=64, overlap=0, device="cpu")
    assert whole.shape == (2, 3, 40, 56)
    np.testing.assert_allclose(whole.sum(axis=1), 1.0, atol=1e-5)
    padded = np.pad(image, ((0, 0), (0, 0), (0, 0)))
    with torch.no_grad():
        direct = torch.softmax(net(torch.from_numpy(padded[:, None]))[0], 1).numpy()
    np.testing.assert_allclose(whole, direct, atol=1e-5)
    tiled = predict_tiled(net, image, tile_size=24, overlap=12, batch_size=3, device="cpu")
    assert tiled.shape == whole.shape
    # differences only from zero padding at tile edges, which the blending down-weights
    assert np.abs(tiled - whole).mean() < 0.02


def test_tiled_3d_and_blend_window():
    net = UNet(spatial_dims=3, out_channels=2, width=2, depth=1).eval()
    vol = np.random.default_rng(1).normal(size=(6, 10, 12)).astype(np.float32)
    out = predict_tiled(net, vol, tile_size=8, overlap=4, device="cpu")
    assert out.shape == (2, 6, 10, 12)
    w = blend_window((8, 8), 3)
    assert w.min() > 0 and w[4, 4] == pytest.approx(1.0) and w[0, 0] < 0.1


def test_normalisation_ignores_gain_and_offset():
    norm = PercentileNormalisation(1, 99)
    data = np.random.default_rng(0).gamma(2.0, size=(20, 20)).astype(np.float32)
    np.testing.assert_allclose(norm.apply(data), norm.apply(3.0 * data + 7.0), atol=1e-4)
    assert PercentileNormalisation.from_dict(norm.to_dict()) == norm
    with pytest.raises(InputError):
        PercentileNormalisation(50, 10)


def _toy_problem(seed):
    rng = seed_everything(seed)
    net = UNet(out_channels=2, width=4, depth=1)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    x = torch.from_numpy(np.random.default_rng(0).normal(size=(4, 1, 8, 8)).astype(np.float32))
    y = (x[:, 0] > 0).long()

    def step(i):
        idx = torch.from_numpy(rng.choice(4, size=2, replace=False))
        loss = torch.nn.functional.cross_entropy(net(x[idx])[0], y[idx])
        return {"loss": loss}

    def validate():
        return {"loss": float(torch.nn.functional.cross_entropy(net(x)[0], y))}

    return net, opt, step, validate, rng


def test_fit_is_seeded_and_resumes_like_an_uninterrupted_run(tmp_path):
    net_a, opt, step, validate, rng = _toy_problem(3)
    hist_a = fit(net_a, opt, step, validate, n_steps=12, validate_every=3, rng=rng,
                 log_csv=tmp_path / "a.csv")
    net_b, opt, step, validate, rng = _toy_problem(3)
    fit(net_b, opt, step, validate, n_steps=12, validate_every=3, rng=rng)
    for a, b in zip(net_a.state_dict().values(), net_b.state_dict().values()):
        assert torch.equal(a, b)
    assert (tmp_path / "a.csv").read_text().startswith("step,train_loss,val_loss,seconds")
    assert len(hist_a.rows) == 4
    # interrupted after 6 steps (checkpoint kept by raising in the step), then resumed
    net_c, opt, step, validate, rng = _toy_problem(3)
    ckpt = tmp_path / "c.safetensors"

    def failing_step(i):
        if i == 8:
            raise KeyboardInterrupt
        return step(i)

    with pytest.raises(KeyboardInterrupt):
        fit(net_c, opt, failing_step, validate, n_steps=12, validate_every=3, rng=rng,
            checkpoint=ckpt, fingerprint="x")
    assert ckpt.exists()
    net_c, opt, step, validate, rng = _toy_problem(3)
    with pytest.raises(InputError, match="other data"):
        fit(net_c, opt, step, validate, n_steps=12, validate_every=3, rng=rng,
            checkpoint=ckpt, resume=True, fingerprint="y")
    hist_c = fit(net_c, opt, step, validate, n_steps=12, validate_every=3, rng=rng,
                 checkpoint=ckpt, resume=True, fingerprint="x")
    assert hist_c.resumed_from_step == 6 and not ckpt.exists()
    for a, b in zip(net_a.state_dict().values(), net_c.state_dict().values()):
        torch.testing.assert_close(a, b)
    assert hist_c.best_step == hist_a.best_step


def test_fit_stops_early():
    net, opt, step, validate, rng = _toy_problem(0)
    history = fit(net, opt, step, lambda: {"loss": 1.0}, n_steps=100, validate_every=2,
                  patience=2, rng=rng)
    assert history.stopped_early and history.steps_run == 6 and history.best_step == 2
