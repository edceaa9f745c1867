"""Total variation: discrete gradient and divergence, TV norm, its smoothed gradient, and
the pointwise dual projection used by Chambolle-Pock.

Every function takes numpy arrays or torch tensors and returns the same kind (torch
operations stay differentiable). The gradient uses forward differences with Neumann
boundary conditions (zero difference past the last sample); the divergence is its exact
negative adjoint, ``<grad u, p> = -<u, div p>``. The functions work for any number of
dimensions; the names say 3D because volumes are the main use.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from emkit.errors import InputError, ShapeError

__all__ = [
    "GRADIENT_NORM_3D",
    "divergence_3d",
    "gradient_3d",
    "project_l2_ball",
    "tv_gradient",
    "tv_norm",
]

#: Upper bound of the operator norm of :func:`gradient_3d` (``||grad||^2 <= 4 * 3``).
GRADIENT_NORM_3D = math.sqrt(12.0)


def _is_torch(x: Any) -> bool:
    return type(x).__module__.startswith("torch")


def _zeros(like: Any, shape: tuple[int, ...]) -> Any:
    if _is_torch(like):
        import torch

        return torch.zeros(shape, dtype=like.dtype, device=like.device)
    return np.zeros(shape, dtype=np.result_type(like.dtype, np.float32))


def _cat(parts: list[Any], axis: int) -> Any:
    if _is_torch(parts[0]):
        import torch

        return torch.cat(parts, dim=axis)
    return np.concatenate(parts, axis=axis)


def _sqrt(x: Any) -> Any:
    return x.sqrt() if _is_torch(x) else np.sqrt(x)


def _slice(ndim: int, axis: int, sl: slice) -> tuple[slice, ...]:
    out = [slice(None)] * ndim
    out[axis] = sl
    return tuple(out)


def _forward_difference(u: Any, axis: int) -> Any:
    """``u[i+1] - u[i]`` along ``axis``, 0 at the last index (Neumann)."""
    nd = u.ndim
    diff = u[_slice(nd, axis, slice(1, None))] - u[_slice(nd, axis, slice(None, -1))]
    pad_shape = list(u.shape)
    pad_shape[axis] = 1
    return _cat([diff, _zeros(u, tuple(pad_shape))], axis)


def _check_out(out: Any, shape: tuple[int, ...], name: str) -> None:
    if tuple(out.shape) != shape:
        raise ShapeError(f"{name}: out must have shape {shape}, got {tuple(out.shape)}")


def gradient_3d(u: Any, *, out: Any = None) -> Any:
    """Forward-difference gradient with Neumann boundary.

    Parameters
    ----------
    u : ndarray or torch.Tensor, shape (z, y, x)
        (Any ``d``-dimensional array works; the result then has ``d`` components.)
    out : same kind, shape (3, z, y, x), optional
        Write the result here instead of allocating it (iterative solvers reuse one
        buffer); not differentiable through torch autograd.

    Returns
    -------
    same kind, shape (3, z, y, x)
        Components ``(d/dz, d/dy, d/dx)``; the last slice along each axis is 0. ``out``
        when given.
    """
    if out is not None:
        _check_out(out, (u.ndim, *u.shape), "gradient_3d")
        nd = u.ndim
        for a in range(nd):
            upper = u[_slice(nd, a, slice(1, None))]
            lower = u[_slice(nd, a, slice(None, -1))]
            target = out[a][_slice(nd, a, slice(None, -1))]
            if _is_torch(u):
                import torch

                torch.sub(upper, lower, out=target)
            else:
                np.subtract(upper, lower, out=target)
            out[a][_slice(nd, a, slice(-1, None))] = 0
        return out
    parts = [_forward_difference(u, a) for a in range(u.ndim)]
    if _is_torch(u):
        import torch

        return torch.stack(parts, dim=0)
    return np.stack(parts, axis=0)


def divergence_3d(p: Any, *, out: Any = None) -> Any:
    """Discrete divergence, the exact negative adjoint of :func:`gradient_3d`.

    Parameters
    ----------
    p : ndarray or torch.Tensor, shape (3, z, y, x)
        A vector field (components ``z, y, x``).
    out : same kind, shape (z, y, x), optional
        Write the result here instead of allocating it (must not share memory with ``p``);
        not differentiable through torch autograd.

    Returns
    -------
    same kind, shape (z, y, x)
        ``div p`` with ``<gradient_3d(u), p> = -<u, divergence_3d(p)>``; ``out`` when given.
    """
    ndim = p.ndim - 1
    if p.shape[0] != ndim:
        raise ShapeError(f"p must have shape ({ndim}, ...) for a {ndim}D field, got {p.shape}")
    if out is not None:
        _check_out(out, tuple(p.shape[1:]), "divergence_3d")
        out[...] = 0
        for a in range(ndim):
            inner = p[a][_slice(ndim, a, slice(None, -1))]
            # d[i] = p[i] - p[i-1], with p[-1] = 0 and p[n-1] treated as 0
            out[_slice(ndim, a, slice(None, -1))] += inner
            out[_slice(ndim, a, slice(1, None))] -= inner
        return out
    total = None
    for a in range(ndim):
        comp = p[a]
        inner = comp[_slice(ndim, a, slice(None, -1))]  # p[0 .. n-2]; p[n-1] is unused
        pad_shape = list(comp.shape)
        pad_shape[a] = 1
        zero = _zeros(comp, tuple(pad_shape))
        # d[i] = p[i] - p[i-1], with p[-1] = 0 and p[n-1] treated as 0
        term = _cat([inner, zero], a) - _cat([zero, inner], a)
        total = term if total is None else total + term
    return total


def _magnitude(g: Any, *, isotropic: bool) -> Any:
    if isotropic:
        return _sqrt((g * g).sum(0))
    return abs(g).sum(0)


def tv_norm(u: Any, *, isotropic: bool = True) -> Any:
    """Total variation ``sum |grad u|`` (isotropic: Euclidean norm per voxel; else L1).

    Returns a Python float for numpy input and a 0-d tensor (differentiable) for torch.
    """
    total = _magnitude(gradient_3d(u), isotropic=isotropic).sum()
    return total if _is_torch(u) else float(total)


def tv_gradient(u: Any, *, eps: float) -> Any:
    """Gradient of the smoothed isotropic TV ``sum sqrt(|grad u|^2 + eps^2)``.

    Equals ``-div(grad u / sqrt(|grad u|^2 + eps^2))``; ``eps`` (same units as ``u``)
    rounds the kink at zero gradient, so the result is Lipschitz with constant
    ``12 / eps``.

    Parameters
    ----------
    u : ndarray or torch.Tensor, shape (z, y, x)
    eps : float
        Smoothing (> 0), small relative to the edges' contrast.

    Returns
    -------
    same kind and shape as ``u``
    """
    if eps <= 0:
        raise InputError(f"eps must be > 0, got {eps}")
    g = gradient_3d(u)
    mag = _sqrt((g * g).sum(0) + eps * eps)
    return -divergence_3d(g / mag)


def project_l2_ball(p: Any, radius: Any, *, out: Any = None) -> Any:
    """Project each voxel's vector ``p[:, i]`` onto the ball of radius ``radius``.

    ``p / max(1, |p| / radius)`` with ``|p|`` the Euclidean norm over the first axis: the
    proximal step of the TV dual variable in Chambolle-Pock (``radius`` = TV weight).

    Parameters
    ----------
    p : ndarray or torch.Tensor, shape (3, z, y, x)
    radius : float or array broadcastable to (z, y, x)
        Positive.
    out : same kind and shape as ``p``, optional
        Write the result here (``out=p`` projects in place, allocating only one
        ``(z, y, x)`` array); not differentiable through torch autograd.

    Returns
    -------
    same kind and shape as ``p`` (``out`` when given)
    """
    if out is not None:
        _check_out(out, tuple(p.shape), "project_l2_ball")
        # Sum of squares component by component: no (3, z, y, x) temporary.
        if _is_torch(p):
            import torch

            norm = torch.mul(p[0], p[0])
            for k in range(1, p.shape[0]):
                norm.addcmul_(p[k], p[k])
            norm.sqrt_().div_(radius).clamp_(min=1.0)
            return torch.div(p, norm, out=out)
        norm = np.multiply(p[0], p[0])
        for k in range(1, p.shape[0]):
            norm += p[k] * p[k]
        np.sqrt(norm, out=norm)
        norm /= radius
        np.maximum(norm, 1.0, out=norm)
        return np.divide(p, norm, out=out)
    norm = _sqrt((p * p).sum(0))
    scale = norm / radius
    if _is_torch(p):
        scale = scale.clamp(min=1.0)
    else:
        scale = np.maximum(scale, 1.0)
    return p / scale[None]
