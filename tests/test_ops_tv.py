"""Tests of the TV operators for numpy and torch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from emkit.errors import InputError, ShapeError
from emkit.ops import (
    GRADIENT_NORM_3D,
    divergence_3d,
    gradient_3d,
    power_iteration,
    project_l2_ball,
    tv_gradient,
    tv_norm,
)


def _dot(a, b) -> float:
    return float(np.sum(np.asarray(a, np.float64) * np.asarray(b, np.float64)))


@pytest.mark.parametrize("shape", [(7, 9, 5), (1, 6, 4), (12, 3, 8)])
def test_divergence_is_negative_adjoint(shape):
    rng = np.random.default_rng(0)
    u = rng.standard_normal(shape).astype(np.float32)
    p = rng.standard_normal((3, *shape)).astype(np.float32)
    g, d = gradient_3d(u), divergence_3d(p)
    assert g.shape == (3, *shape) and g.dtype == np.float32 and d.shape == shape
    lhs, rhs = _dot(g, p), -_dot(u, d)
    assert abs(lhs - rhs) <= 1e-5 * max(abs(lhs), 1.0)
    gt = gradient_3d(torch.from_numpy(u))
    dt = divergence_3d(torch.from_numpy(p))
    assert isinstance(gt, torch.Tensor) and isinstance(dt, torch.Tensor)
    np.testing.assert_allclose(gt.numpy(), g, atol=1e-6)
    np.testing.assert_allclose(dt.numpy(), d, atol=1e-6)


def test_gradient_values_and_neumann_boundary():
    z, y, x = np.mgrid[:4, :5, :6].astype(np.float64)
    g = gradient_3d(2 * z - y + 0.5 * x)
    np.testing.assert_allclose(g[0, :-1], 2.0)
    np.testing.assert_allclose(g[1, :, :-1], -1.0)
    np.testing.assert_allclose(g[2, :, :, :-1], 0.5)
    assert np.all(g[0, -1] == 0) and np.all(g[1, :, -1] == 0) and np.all(g[2, :, :, -1] == 0)
    np.testing.assert_array_equal(gradient_3d(np.ones((3, 3, 3))), 0.0)


def test_gradient_norm_bound():
    shape = (10, 10, 10)
    norm = power_iteration(gradient_3d, lambda p: -divergence_3d(p), shape, n_iter=200)
    assert norm <= GRADIENT_NORM_3D + 1e-9
    assert norm > 0.95 * GRADIENT_NORM_3D  # the bound is nearly attained (checkerboard)


def test_tv_norm_of_a_cube():
    u = np.zeros((10, 10, 10))
    u[2:6, 3:8, 1:4] = 1.0  # 4 x 5 x 3 block
    area = 2 * (4 * 5 + 5 * 3 + 4 * 3)
    assert tv_norm(u, isotropic=False) == pytest.approx(area)
    iso = tv_norm(u)
    assert area / np.sqrt(3) <= iso <= area
    t = tv_norm(torch.from_numpy(u))
    assert isinstance(t, torch.Tensor) and float(t) == pytest.approx(iso)


def test_tv_gradient_matches_autograd():
    rng = np.random.default_rng(1)
    u = torch.tensor(rng.standard_normal((6, 7, 5)), requires_grad=True)
    eps = 0.1
    g = gradient_3d(u)
    torch.sqrt((g * g).sum(0) + eps**2).sum().backward()
    expected = u.grad.numpy()
    np.testing.assert_allclose(tv_gradient(u.detach().numpy(), eps=eps), expected, atol=1e-10)
    np.testing.assert_allclose(tv_gradient(u.detach(), eps=eps).numpy(), expected, atol=1e-10)
    with pytest.raises(InputError):  # emkit's family (the CLI's exit 2), also a ValueError
        tv_gradient(u.detach(), eps=0.0)
    with pytest.raises(ShapeError):
        divergence_3d(np.zeros((2, 4, 4, 4)))
    with pytest.raises(InputError):
        power_iteration(gradient_3d, divergence_3d, (4, 4, 4), n_iter=0)


def test_project_l2_ball():
    rng = np.random.default_rng(2)
    p = rng.standard_normal((3, 5, 6, 7)) * 3
    out = project_l2_ball(p, 1.5)
    norms = np.sqrt((out**2).sum(0))
    assert norms.max() <= 1.5 + 1e-12
    inside = np.sqrt((p**2).sum(0)) <= 1.5
    np.testing.assert_array_equal(out[:, inside], p[:, inside])
    # Outside the ball the direction is kept.
    cos = (out * p).sum(0) / (norms * np.sqrt((p**2).sum(0)))
    np.testing.assert_allclose(cos, 1.0)
    radius = np.full((5, 6, 7), 0.5)
    out_t = project_l2_ball(torch.from_numpy(p), torch.from_numpy(radius))
    assert isinstance(out_t, torch.Tensor)
    assert float(out_t.square().sum(0).sqrt().max()) <= 0.5 + 1e-12


@pytest.mark.parametrize("kind", ["numpy", "torch"])
def test_out_buffers_give_the_same_results(kind):
    rng = np.random.default_rng(3)
    u = rng.standard_normal((5, 6, 7)).astype(np.float32)
    p = rng.standard_normal((3, 5, 6, 7)).astype(np.float32) * 2
    radius = 0.7 + rng.random((5, 6, 7)).astype(np.float32)
    if kind == "torch":
        u, p, radius = torch.from_numpy(u), torch.from_numpy(p), torch.from_numpy(radius)
        full = torch.full
    else:
        full = np.full
    # Buffers filled with garbage: every element must be written.
    grad = gradient_3d(u, out=full((3, 5, 6, 7), 9.0, dtype=u.dtype))
    np.testing.assert_allclose(np.asarray(grad), np.asarray(gradient_3d(u)), atol=1e-6)
    div = divergence_3d(p, out=full((5, 6, 7), 9.0, dtype=u.dtype))
    np.testing.assert_allclose(np.asarray(div), np.asarray(divergence_3d(p)), atol=1e-6)
    expected = np.asarray(project_l2_ball(p, radius))
    in_place = p.clone() if kind == "torch" else p.copy()
    result = project_l2_ball(in_place, radius, out=in_place)
    assert result is in_place
    np.testing.assert_allclose(np.asarray(in_place), expected, rtol=1e-6)
    with pytest.raises(ShapeError):
        gradient_3d(u, out=full((3, 5, 6, 6), 0.0, dtype=u.dtype))
    with pytest.raises(ShapeError):
        divergence_3d(p, out=full((5, 6, 6), 0.0, dtype=u.dtype))
