"""Tests of the single-tilt-axis projector: adjoint, geometry, autograd, norm, SIRT."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from emkit.errors import InputError, ShapeError
from emkit.ops import SingleAxisProjector, single_axis_system_matrix


def _dot(a, b) -> float:
    return float(np.sum(np.asarray(a, np.float64) * np.asarray(b, np.float64)))


ADJOINT_CASES = [
    # (volume_shape, angles_deg, n_detector)
    ((16, 12, 16), np.linspace(-60, 60, 41), None),
    ((9, 7, 20), [0.0, 90.0, -90.0, 45.0, -45.0, 30.0], None),
    ((20, 5, 11), np.linspace(-90, 90, 37), 17),
    ((13, 6, 24), [-72.5, -3.0, 0.0, 12.25, 89.9, 135.0, 181.0], 19),
    ((8, 3, 8), [0.0], 8),
]


@pytest.mark.parametrize(("shape", "angles", "nd"), ADJOINT_CASES)
def test_adjoint_is_exact_transpose(shape, angles, nd):
    rng = np.random.default_rng(0)
    p = SingleAxisProjector(shape, angles, n_detector=nd, device="cpu")
    x = rng.standard_normal(shape).astype(np.float32)
    y = rng.standard_normal(p.projection_shape).astype(np.float32)
    ax = p.forward(x)
    aty = p.adjoint(y)
    assert ax.shape == p.projection_shape and ax.dtype == np.float32
    assert aty.shape == shape and aty.dtype == np.float32
    lhs, rhs = _dot(ax, y), _dot(x, aty)
    assert abs(lhs - rhs) <= 1e-4 * max(abs(lhs), abs(rhs))


def test_projection_at_zero_is_sum_over_z():
    rng = np.random.default_rng(1)
    vol = rng.random((11, 6, 14), dtype=np.float32)
    p = SingleAxisProjector(vol.shape, [0.0], device="cpu")
    np.testing.assert_allclose(p.forward(vol)[0], vol.sum(axis=0), rtol=1e-5, atol=1e-5)
    # A wider detector (even difference) is the same sum, centred, with zero margins.
    wide = SingleAxisProjector(vol.shape, [0.0], n_detector=18, device="cpu").forward(vol)[0]
    np.testing.assert_allclose(wide[:, 2:-2], vol.sum(axis=0), rtol=1e-5, atol=1e-5)
    assert np.all(wide[:, :2] == 0) and np.all(wide[:, -2:] == 0)


@pytest.mark.parametrize("angle", [60.0, -60.0, 25.0])
def test_point_projects_where_geometry_predicts(angle):
    nz, ny, nx, nd = 21, 5, 31, 35
    z0, y0, x0 = 15, 2, 9
    vol = np.zeros((nz, ny, nx), np.float32)
    vol[z0, y0, x0] = 1.0
    p = SingleAxisProjector(vol.shape, [angle], n_detector=nd, device="cpu")
    proj = p.forward(vol)[0]
    assert np.all(proj[np.arange(ny) != y0] == 0)
    row = proj[y0].astype(np.float64)
    theta = np.deg2rad(angle)
    expected_u = (x0 - (nx - 1) / 2) * np.cos(theta) + (z0 - (nz - 1) / 2) * np.sin(theta)
    expected_u += (nd - 1) / 2
    centroid = float((row * np.arange(nd)).sum() / row.sum())
    assert abs(centroid - expected_u) < 0.15
    # A voxel above the centre plane moves towards +x for positive tilts (the documented sign).
    assert (centroid > (x0 + (nd - nx) / 2)) == (angle > 0)


def test_torch_input_matches_numpy_and_keeps_type():
    rng = np.random.default_rng(2)
    vol = rng.random((10, 4, 12), dtype=np.float32)
    p = SingleAxisProjector(vol.shape, np.linspace(-50, 50, 11), device="cpu")
    out = p.forward(torch.from_numpy(vol))
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32
    np.testing.assert_allclose(out.numpy(), p.forward(vol), rtol=1e-6)
    back = p.adjoint(out)
    assert isinstance(back, torch.Tensor)
    np.testing.assert_allclose(back.numpy(), p.adjoint(p.forward(vol)), rtol=1e-6)


def test_autograd_matches_adjoint_and_gradcheck():
    rng = np.random.default_rng(3)
    shape = (5, 3, 6)
    p = SingleAxisProjector(shape, [-40.0, 0.0, 33.0, 90.0], n_detector=7, dtype=torch.float64)
    x = torch.tensor(rng.standard_normal(shape), dtype=torch.float64, requires_grad=True)
    y = torch.tensor(rng.standard_normal(p.projection_shape), dtype=torch.float64)
    (p.project(x) * y).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), p.adjoint(y.numpy()), rtol=1e-12, atol=1e-12)
    assert torch.autograd.gradcheck(p.project, (x.detach().requires_grad_(),))
    assert torch.autograd.gradcheck(p.backproject, (y.clone().requires_grad_(),))


def test_operator_norm_matches_dense_svd():
    shape = (9, 2, 10)
    p = SingleAxisProjector(shape, np.linspace(-60, 60, 13), n_detector=12, device="cpu")
    dense = p.matrix.toarray().astype(np.float64)
    sigma_max = np.linalg.svd(dense, compute_uv=False)[0]
    assert p.operator_norm(n_iter=100) == pytest.approx(sigma_max, rel=1e-3)
    # The 3D operator (every y-slice the same) has the same norm.
    vol_norms = []
    rng = np.random.default_rng(4)
    for _ in range(3):
        v = rng.standard_normal(shape).astype(np.float32)
        vol_norms.append(np.linalg.norm(p.forward(v)) / np.linalg.norm(v))
    assert max(vol_norms) <= sigma_max * 1.0001


def test_system_matrix_is_cached_and_compact():
    a = single_axis_system_matrix((16, 16), [-30.0, 0.0, 30.0])
    b = single_axis_system_matrix((16, 16), [-30.0, 0.0, 30.0])
    assert a is b
    assert a.shape == (3 * 16, 256) and a.dtype == np.float32 and a.indices.dtype == np.int32
    assert a.nnz <= 3 * 16 * 16 * 2


def _phantom(n: int) -> np.ndarray:
    z, y, x = np.mgrid[:n, :n, :n].astype(np.float32) / (n - 1) - 0.5
    vol = ((x / 0.35) ** 2 + (y / 0.4) ** 2 + (z / 0.3) ** 2 < 1).astype(np.float32)
    vol -= 0.6 * (((x - 0.1) / 0.12) ** 2 + (y / 0.2) ** 2 + ((z + 0.05) / 0.1) ** 2 < 1)
    vol += 0.8 * ((np.abs(x + 0.15) < 0.06) & (np.abs(y - 0.1) < 0.1) & (np.abs(z) < 0.08))
    return vol


def test_cgls_reconstruction_recovers_phantom():
    # CGLS (conjugate gradients on the normal equations) uses forward and adjoint alike:
    # a wrong sign or a non-transpose adjoint stalls it far above this threshold.
    n = 32
    truth = _phantom(n)
    p = SingleAxisProjector(truth.shape, np.arange(-90, 90, 2.0), device="cpu")
    b = p.forward(truth)
    x = np.zeros_like(truth)
    r = b.copy()
    d = p.adjoint(r)
    gamma = _dot(d, d)
    for _ in range(40):
        q = p.forward(d)
        alpha = gamma / _dot(q, q)
        x += alpha * d
        r -= alpha * q
        s = p.adjoint(r)
        gamma_new = _dot(s, s)
        d = s + (gamma_new / gamma) * d
        gamma = gamma_new
    rel_err = np.linalg.norm(x - truth) / np.linalg.norm(truth)
    assert rel_err < 0.08, rel_err  # measured 0.050


def test_ray_and_voxel_sums():
    p = SingleAxisProjector((6, 2, 8), [0.0, 90.0], device="cpu")
    rays = p.ray_sums()
    np.testing.assert_allclose(rays[0], 6.0, rtol=1e-6)  # 0 deg: each ray crosses nz voxels
    np.testing.assert_allclose(rays[1, 1:7], 8.0, rtol=1e-6)  # 90 deg: rays cross nx voxels
    np.testing.assert_allclose(p.voxel_sums(), 2.0, rtol=1e-6)


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ShapeError):
        SingleAxisProjector((4, 4), [0.0])
    with pytest.raises(InputError):
        SingleAxisProjector((4, 4, 4), [])
    with pytest.raises(InputError):
        SingleAxisProjector((4, 4, 4), [0.0, np.nan])
    p = SingleAxisProjector((4, 5, 6), [0.0, 10.0], device="cpu")
    with pytest.raises(ShapeError, match=r"\(4, 5, 6\)"):
        p.forward(np.zeros((4, 6, 5), np.float32))
    with pytest.raises(ShapeError):
        p.adjoint(np.zeros((3, 5, 6), np.float32))


def test_torch_sparse_path_matches_scipy_path():
    # The GPU path (torch.sparse CSR products) forced onto the CPU, so its layout logic is
    # checked on machines without a GPU.
    rng = np.random.default_rng(5)
    shape = (9, 4, 11)
    angles = [-70.0, -10.0, 0.0, 45.0, 90.0]
    ref = SingleAxisProjector(shape, angles, n_detector=13, device="cpu")
    p = SingleAxisProjector(shape, angles, n_detector=13, device="cpu")
    p._torch_sparse = True
    vol = rng.standard_normal(shape).astype(np.float32)
    sino = rng.standard_normal(ref.projection_shape).astype(np.float32)
    np.testing.assert_allclose(p.forward(vol), ref.forward(vol), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(p.adjoint(sino), ref.adjoint(sino), rtol=1e-5, atol=1e-5)
    x = torch.from_numpy(vol).requires_grad_(True)
    (p.project(x) * torch.from_numpy(sino)).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), ref.adjoint(sino), rtol=1e-5, atol=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_matches_cpu():
    rng = np.random.default_rng(6)
    shape = (16, 8, 20)
    angles = np.linspace(-60, 60, 21)
    cpu = SingleAxisProjector(shape, angles, device="cpu")
    gpu = SingleAxisProjector(shape, angles, device="cuda")
    vol = rng.standard_normal(shape).astype(np.float32)
    np.testing.assert_allclose(gpu.forward(vol), cpu.forward(vol), rtol=1e-4, atol=1e-4)
    t = torch.from_numpy(vol).cuda().requires_grad_(True)
    out = gpu.project(t)
    assert out.device.type == "cuda"
    out.square().sum().backward()
    expected = cpu.adjoint(2 * cpu.forward(vol))
    np.testing.assert_allclose(t.grad.cpu().numpy(), expected, rtol=1e-4, atol=1e-3)
