"""Parallel-beam projector about a single tilt axis, with an exact sparse adjoint.

Every y-slice of a tomogram is a 2D ``(z, x)`` image that projects the same way, so one
2D system matrix ``A`` of shape ``(n_tilts * n_detector, nz * nx)`` serves the whole volume:
projecting is the sparse-times-dense product ``A @ V`` with ``V`` the volume arranged as
``(nz * nx, ny)``, and back-projecting is ``A.T @ P``. ``A`` is built once per geometry
(Joseph's ray-driven method) and cached.
"""

from __future__ import annotations

import collections
import functools
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from numpy.typing import ArrayLike

from emkit.errors import InputError, ShapeError
from emkit.ops.linalg import power_iteration

__all__ = ["SingleAxisProjector", "single_axis_system_matrix"]

# y rows per slab of a CPU product: the transposed slab of a 256^3 volume (8 MiB) or of
# 61 x 512^2 projections (4 MiB) stays in the cache; measured in docs/tomo.md.
DEFAULT_SLAB_ROWS = 32

# Angles closer than this to a multiple of 90° are snapped, so that cos(90°) is exactly 0
# and the 0°/90° projections are exact sums instead of interpolations at 1e-17 offsets.
_SNAP = 1e-12


def single_axis_system_matrix(
    volume_shape_zx: tuple[int, int],
    tilt_angles_deg: ArrayLike,
    *,
    n_detector: int | None = None,
) -> sp.csr_matrix:
    """The 2D projection matrix of one y-slice (Joseph's method), as float32 CSR.

    Parameters
    ----------
    volume_shape_zx : (int, int)
        ``(nz, nx)`` of the slice in voxels.
    tilt_angles_deg : array_like, shape (n_tilts,)
        Tilt angles in degrees.
    n_detector : int, optional
        Detector width in pixels (default ``nx``).

    Returns
    -------
    scipy.sparse.csr_matrix, shape (n_tilts * n_detector, nz * nx), float32
        Row ``t * n_detector + u`` is the ray of detector pixel ``u`` at tilt ``t``; column
        ``z * nx + x`` is voxel ``(z, x)``. Indices are int32 and sorted. See
        :class:`SingleAxisProjector` for the geometry. The result is cached (do not modify it).
    """
    nz, nx = (int(v) for v in volume_shape_zx)
    nd = nx if n_detector is None else int(n_detector)
    angles = tuple(float(a) for a in np.asarray(tilt_angles_deg, dtype=np.float64).ravel())
    return _matrix((nz, nx, angles, nd), adjoint=False)


_Key = tuple[int, int, tuple[float, ...], int]
# Per geometry, A and/or A.T (~50 MiB each for 256^2 slices x 61 tilts), hence a small cache.
_MATRICES: collections.OrderedDict[_Key, dict[bool, sp.csr_matrix]] = collections.OrderedDict()
_MATRICES_MAX = 4
_MATRICES_LOCK = threading.Lock()


def _matrix(key: _Key, *, adjoint: bool, keep: bool = True) -> sp.csr_matrix:
    """``A`` (or ``A.T``) of a geometry, built on first use and cached (``keep``).

    ``A.T`` is transposed from an ``A`` that is dropped unless it was cached already. The
    slab products keep their own copy (``keep=False``), so a weighted back-projection
    holds one matrix, not two.
    """
    with _MATRICES_LOCK:
        entry = _MATRICES.get(key, {})
        if adjoint not in entry:
            a = entry[False] if False in entry else _joseph_matrix(*key)
            if adjoint:
                m = a.T.tocsr()
                m.sort_indices()
            else:
                m = a
            if not keep:
                return m
            entry[adjoint] = m
        _MATRICES[key] = entry
        _MATRICES.move_to_end(key)
        while len(_MATRICES) > _MATRICES_MAX:
            _MATRICES.popitem(last=False)
        return entry[adjoint]


# The slab products hold their own (column-blocked) copy of a matrix, cached per geometry.
@functools.lru_cache(maxsize=4)
def _slab_product(key: _Key, adjoint: bool, unit: int, dtype: np.dtype) -> _SlabProduct:
    """The product of ``A`` (or ``A.T``), from a cached matrix or one built and dropped.

    ``A.T`` not cached is built a group of tilts at a time: its column blocks are the
    transposes of ``A``'s row blocks, so neither ``A`` nor the whole ``A.T`` is ever held.
    """
    with _MATRICES_LOCK:
        cached = _MATRICES.get(key, {})
    if adjoint and not cached:
        return _SlabProduct.adjoint_by_tilt_groups(key, unit, dtype, DEFAULT_SLAB_ROWS)
    m = _matrix(key, adjoint=adjoint, keep=False)
    return _SlabProduct(m.astype(dtype, copy=False), unit, slab_rows=DEFAULT_SLAB_ROWS)


def _system_matrices(
    nz: int, nx: int, angles_deg: tuple[float, ...], nd: int
) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """``A`` and ``A.T`` (both CSR, float32, int32 indices); cached per geometry."""
    key = (nz, nx, angles_deg, nd)
    return _matrix(key, adjoint=False), _matrix(key, adjoint=True)


def _clear_matrix_cache() -> None:
    """Forget every cached matrix (benchmarks time the build with it)."""
    with _MATRICES_LOCK:
        _MATRICES.clear()
    _slab_product.cache_clear()


def _joseph_matrix(
    nz: int, nx: int, angles_deg: tuple[float, ...], nd: int
) -> sp.csr_matrix:
    """Build ``A`` (CSR, float32, int32 indices, sorted)."""
    cz, cx, cu = (nz - 1) / 2.0, (nx - 1) / 2.0, (nd - 1) / 2.0
    u = np.arange(nd, dtype=np.float64) - cu
    data_parts: list[np.ndarray] = []
    index_parts: list[np.ndarray] = []
    count_parts: list[np.ndarray] = []
    for theta in np.deg2rad(np.asarray(angles_deg, dtype=np.float64)):
        c, s = float(np.cos(theta)), float(np.sin(theta))
        c = 0.0 if abs(c) < _SNAP else c
        s = 0.0 if abs(s) < _SNAP else s
        # Joseph: step one voxel at a time along the axis the ray is closest to, interpolate
        # linearly along the other axis; each step covers a path length of 1/|cos| (1/|sin|).
        if abs(c) >= abs(s):  # ray runs mostly along z: step through rows z
            steps = np.arange(nz)
            pos = (u[:, None] - (steps[None, :] - cz) * s) / c + cx  # x position, (nd, nz)
            n_interp, step_stride, interp_stride = nx, nx, 1
            length = 1.0 / abs(c)
        else:  # mostly along x: step through columns x
            steps = np.arange(nx)
            pos = (u[:, None] - (steps[None, :] - cx) * c) / s + cz  # z position, (nd, nx)
            n_interp, step_stride, interp_stride = nz, 1, nx
            length = 1.0 / abs(s)
        i0f = np.floor(pos)
        frac = pos - i0f
        i0 = i0f.astype(np.int64)
        base = steps[None, :] * step_stride
        cols = np.stack([base + i0 * interp_stride, base + (i0 + 1) * interp_stride], axis=-1)
        weights = np.stack([(1.0 - frac) * length, frac * length], axis=-1)
        valid = np.stack([(i0 >= 0) & (i0 < n_interp), (i0 >= -1) & (i0 < n_interp - 1)], -1)
        valid &= weights > 0.0
        cols = cols.reshape(nd, -1)
        weights = weights.reshape(nd, -1)
        valid = valid.reshape(nd, -1)
        data_parts.append(weights[valid].astype(np.float32))
        index_parts.append(cols[valid].astype(np.int32))
        count_parts.append(valid.sum(axis=1))
    counts = np.concatenate(count_parts) if count_parts else np.zeros(0, np.int64)
    nnz = int(counts.sum())
    index_dtype = np.int32 if nnz < 2**31 else np.int64
    indptr = np.zeros(len(counts) + 1, dtype=index_dtype)
    np.cumsum(counts, out=indptr[1:])
    data = np.concatenate(data_parts) if data_parts else np.zeros(0, np.float32)
    indices = np.concatenate(index_parts) if index_parts else np.zeros(0, np.int32)
    a = sp.csr_matrix((data, indices, indptr), shape=(len(angles_deg) * nd, nz * nx))
    a.sort_indices()
    return a


@functools.lru_cache(maxsize=4)
def _torch_system_matrices(
    key: tuple[int, int, tuple[float, ...], int], device: str, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """``A`` and ``A.T`` as torch sparse CSR tensors on ``device``; cached per geometry."""
    np_dtype = np.float32 if dtype == torch.float32 else np.float64
    mats = []
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        for m in _system_matrices(*key):  # a GPU holds both
            mats.append(
                torch.sparse_csr_tensor(
                    torch.from_numpy(m.indptr.astype(np.int64)),
                    torch.from_numpy(m.indices.astype(np.int64)),
                    torch.from_numpy(m.data.astype(np_dtype)),
                    size=m.shape,
                    check_invariants=False,
                ).to(device)
            )
    return mats[0], mats[1]


def _find_matvecs() -> Any:
    """scipy's own kernel of ``A @ X``, which adds into a given output (``A @ X`` allocates
    it); None in a scipy without it (the blocks then run through ``A @ X``)."""
    try:
        from scipy.sparse import _sparsetools
    except ImportError:  # pragma: no cover
        return None
    return getattr(_sparsetools, "csr_matvecs", None)


_MATVECS: Any = _find_matvecs()
# Part of a slab one column block reads: it stays in a core's cache (1 MiB L2 here).
_BLOCK_BYTES = 2 * 2**20

_POOL: ThreadPoolExecutor | None = None
_POOL_SIZE = 0
_POOL_LOCK = threading.Lock()


def _n_threads() -> int:
    return max(1, int(torch.get_num_threads()))


def _pool() -> ThreadPoolExecutor:
    """A process-wide thread pool, created on first use (scipy's sparse kernels drop the GIL)."""
    global _POOL, _POOL_SIZE
    with _POOL_LOCK:
        n = _n_threads()
        if _POOL is None or _POOL_SIZE != n:
            _POOL = ThreadPoolExecutor(max_workers=n, thread_name_prefix="emkit-ops")
            _POOL_SIZE = n
        return _POOL


def _split(n: int, k: int) -> list[tuple[int, int]]:
    bounds = np.linspace(0, n, max(1, min(k, n)) + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]


def _row_view(matrix: sp.csr_matrix, start: int, stop: int) -> sp.csr_matrix:
    """Rows ``start:stop`` of a CSR matrix sharing its data (slicing would copy it)."""
    lo, hi = int(matrix.indptr[start]), int(matrix.indptr[stop])
    indptr = matrix.indptr[start : stop + 1] - lo
    block = sp.csr_matrix(
        (matrix.data[lo:hi], matrix.indices[lo:hi], indptr),
        shape=(stop - start, matrix.shape[1]),
        copy=False,
    )
    block.has_sorted_indices = True
    return block


def _column_block_bounds(matrix: sp.csr_matrix, edges: np.ndarray) -> np.ndarray:
    """``bounds[k, i]``: where the columns from ``edges[k]`` on start in row ``i``.

    The indices of each row are sorted, so ``row * n_cols + column`` is sorted over the
    whole matrix and one binary search per row and edge finds it (a few million non-zeros
    at a time, to bound the temporary keys).
    """
    indptr = matrix.indptr.astype(np.int64)
    n_rows, n_cols = matrix.shape
    bounds = np.empty((len(edges), n_rows), dtype=np.int64)
    for r0, r1 in _split(n_rows, max(1, matrix.nnz // 2**22)):
        lo, hi = int(indptr[r0]), int(indptr[r1])
        rows = np.repeat(np.arange(r0, r1, dtype=np.int64), np.diff(indptr[r0 : r1 + 1]))
        keys = rows * n_cols + matrix.indices[lo:hi]
        starts = np.arange(r0, r1, dtype=np.int64) * n_cols
        for k, edge in enumerate(edges):
            bounds[k, r0:r1] = lo + np.searchsorted(keys, starts + int(edge))
    return bounds


def _n_column_blocks(n_cols: int, slab_rows: int, dtype: np.dtype) -> int:
    """Column blocks that keep the part of a slab each one reads near ``_BLOCK_BYTES``."""
    if _MATVECS is None:
        return 1
    slab_bytes = n_cols * slab_rows * np.dtype(dtype).itemsize
    return max(1, min(n_cols, -(-slab_bytes // _BLOCK_BYTES)))


class _SlabProduct:
    """A CSR matrix applied to a stack y-slab by y-slab, the slabs in parallel.

    The matrix maps ``(units_in * cols, ny)`` to ``(units_out * unit, ny)``: the input stack
    ``(units_in, ny, cols)`` (volume or projections) is read a slab of ``slab_rows`` rows at a
    time, transposed into a contiguous ``(units_in * cols, rows)`` block, and the product is
    written transposed into ``out[:, y0:y1]`` of shape ``(units_out, ny, unit)``. The
    non-zeros are stored column block by column block (z-ranges of the volume, tilt ranges
    of the projections), each block a CSR matrix of its own, and applied one after the other
    into the same output rows: the part of the slab a block reads (about 2 MiB) stays in the
    core's cache while every ray passes over it. Projecting the whole stack at once instead
    re-read 64 MiB for every block of tilts (docs/tomo.md, "Where the time goes"). Each
    output element is the same sum in the same order as the plain product, so neither the
    slabs nor the blocks change a bit.

    When there are fewer slabs than threads (thin stacks), the matrix rows are split too,
    so that every thread still has work.
    """

    def __init__(self, matrix: sp.csr_matrix, unit: int, *, slab_rows: int) -> None:
        self.shape = matrix.shape
        self.dtype = matrix.dtype
        self.unit = unit
        self.n_units = matrix.shape[0] // unit
        n_cols = matrix.shape[1]
        n_blocks = _n_column_blocks(n_cols, slab_rows, matrix.dtype)
        edges = np.linspace(0, n_cols, n_blocks + 1).round().astype(np.int64)
        bounds = _column_block_bounds(matrix, edges)
        self.data = np.empty_like(matrix.data)
        self.indices = np.empty_like(matrix.indices)
        self.indptrs: list[np.ndarray] = []
        offset = 0
        for k in range(n_blocks):
            lengths = bounds[k + 1] - bounds[k]
            indptr = np.zeros(self.shape[0] + 1, dtype=np.int64)
            np.cumsum(lengths, out=indptr[1:])
            indptr += offset
            self._gather_block(matrix, bounds[k], lengths, indptr)
            self.indptrs.append(indptr.astype(matrix.indptr.dtype))
            offset = int(indptr[-1])

    @classmethod
    def adjoint_by_tilt_groups(
        cls, key: _Key, unit: int, dtype: np.dtype, slab_rows: int
    ) -> _SlabProduct:
        """``A.T`` in column blocks of whole tilts, each the transpose of ``A``'s rows of
        those tilts (built group by group): the same non-zeros in the same row order."""
        nz, nx, angles, nd = key
        n_blocks = _n_column_blocks(len(angles) * nd, slab_rows, dtype)
        blocks = []
        for t0, t1 in _split(len(angles), n_blocks):
            block = _joseph_matrix(nz, nx, angles[t0:t1], nd).T.tocsr()
            block.sort_indices()
            blocks.append((t0 * nd, block))
        nnz = sum(b.nnz for _, b in blocks)
        index_dtype = np.int32 if nnz < 2**31 and len(angles) * nd < 2**31 else np.int64
        self = cls.__new__(cls)
        self.shape = (nz * nx, len(angles) * nd)
        self.dtype = np.dtype(dtype)
        self.unit, self.n_units = unit, nz * nx // unit
        self.data = np.empty(nnz, dtype=self.dtype)
        self.indices = np.empty(nnz, dtype=index_dtype)
        self.indptrs = []
        offset = 0
        # Each block is dropped once copied: the empty arrays take memory only as they are
        # written, so the peak is about one matrix and one block, not two matrices.
        blocks.reverse()
        while blocks:
            column0, block = blocks.pop()
            self.data[offset : offset + block.nnz] = block.data
            self.indices[offset : offset + block.nnz] = block.indices
            self.indices[offset : offset + block.nnz] += column0
            self.indptrs.append(block.indptr.astype(index_dtype) + offset)
            offset += block.nnz
            del block
        return self

    def _gather_block(
        self, matrix: sp.csr_matrix, starts: np.ndarray, lengths: np.ndarray, indptr: np.ndarray
    ) -> None:
        """Copy one column block's runs into place, a few million non-zeros at a time."""
        for r0, r1 in _split(self.shape[0], max(1, matrix.nnz // 2**22)):
            lo, hi = int(indptr[r0]), int(indptr[r1])
            gather = np.repeat(starts[r0:r1] - indptr[r0:r1], lengths[r0:r1])
            gather += np.arange(lo, hi)
            self.data[lo:hi] = matrix.data[gather]
            self.indices[lo:hi] = matrix.indices[gather]

    def _tasks(self, ny: int, slab_rows: int) -> list[tuple[int, int, int, int]]:
        slabs = _split(ny, -(-ny // slab_rows))
        n_blocks = -(-_n_threads() // len(slabs))
        return [(y0, y1, a, b) for y0, y1 in slabs for a, b in _split(self.n_units, n_blocks)]

    def _rows_times(
        self, rows: tuple[int, int], x: np.ndarray, y: np.ndarray, data: np.ndarray
    ) -> None:
        """``y += A[rows] @ x``, block after block (``x``, ``y`` C-contiguous 2D, ``data``
        the non-zeros in their dtype)."""
        a, b = rows
        for indptr in self.indptrs:
            ptr = indptr[a : b + 1]
            if _MATVECS is None:
                lo, hi = int(ptr[0]), int(ptr[-1])
                block = sp.csr_matrix(
                    (data[lo:hi], self.indices[lo:hi], ptr - lo),
                    shape=(b - a, self.shape[1]), copy=False,
                )
                y += block @ x
            else:
                _MATVECS(b - a, self.shape[1], x.shape[1], ptr, self.indices, data,
                         x.ravel(), y.ravel())

    def apply(self, src: np.ndarray, out: np.ndarray, slab_rows: int) -> None:
        def run(task: tuple[int, int, int, int]) -> None:
            y0, y1, a, b = task
            x = np.ascontiguousarray(src[:, y0:y1].transpose(0, 2, 1), dtype=self.dtype)
            prod = np.zeros(((b - a) * self.unit, y1 - y0), dtype=self.dtype)
            rows = (a * self.unit, b * self.unit)
            self._rows_times(rows, x.reshape(-1, y1 - y0), prod, self.data)
            out[a:b, y0:y1] = prod.reshape(b - a, self.unit, y1 - y0).transpose(0, 2, 1)

        list(_pool().map(run, self._tasks(src.shape[1], slab_rows)))

    def row_sums(self) -> np.ndarray:
        """``A @ 1`` in float64, summed in the order of the plain CSR product."""
        ones = np.ones((self.shape[1], 1), dtype=np.float64)
        sums = np.zeros((self.shape[0], 1), dtype=np.float64)
        self._rows_times((0, self.shape[0]), ones, sums, self.data.astype(np.float64))
        return sums[:, 0]


class _Project(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, volume: torch.Tensor, projector: SingleAxisProjector) -> torch.Tensor:
        ctx.projector = projector
        return projector._apply_tensor(volume, adjoint=False)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return ctx.projector._apply_tensor(grad.contiguous(), adjoint=True), None


class _Backproject(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, proj: torch.Tensor, projector: SingleAxisProjector) -> torch.Tensor:
        ctx.projector = projector
        return projector._apply_tensor(proj, adjoint=True)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return ctx.projector._apply_tensor(grad.contiguous(), adjoint=False), None


class SingleAxisProjector:
    """Parallel-beam projector and exact back-projector for a single tilt axis (y).

    Geometry (IMOD convention): the tilt axis is the volume and image **y** axis; each
    y-slice is a 2D ``(z, x)`` image rotated about y by the tilt angle θ. The voxel centre
    ``(z, x)`` lands on the detector at::

        u = (x - cx) cos θ + (z - cz) sin θ + cu,   cx = (nx-1)/2, cz = (nz-1)/2, cu = (nd-1)/2

    so at θ = 0 a projection is the sum over z, and for positive θ a voxel above the
    centre plane (z > cz) appears shifted towards +x (its shift is ``(z - cz) sin θ``); at
    θ = +90° the detector axis points along +z. This is the projection IMOD's ``tilt`` and
    ``tiltalign`` use (x cos θ + z sin θ). Values are line integrals in voxel units
    (Joseph's ray-driven method: linear interpolation between the two voxels the ray
    passes between, path length ``1/max(|cos θ|, |sin θ|)`` per step; rays outside the
    volume add zero), close to ASTRA's ``'linear'`` parallel-beam projector.

    Parameters
    ----------
    volume_shape : (int, int, int)
        ``(nz, ny, nx)`` of the volume in voxels.
    tilt_angles_deg : array_like, shape (n_tilts,)
        Tilt angles in degrees (any order, any range; ±90° allowed).
    n_detector : int, optional
        Detector width in pixels (default ``nx``), centred on the volume.
    device : str, optional
        ``"cpu"``, ``"cuda"`` (or ``"cuda:1"``...); None picks CUDA when torch sees one.
        On the CPU the products run in scipy's sparse kernels on a thread pool of
        ``torch.get_num_threads()`` threads (faster than torch's CPU sparse kernels); on a
        GPU they are ``torch.sparse`` CSR products.
    dtype : torch.dtype
        ``torch.float32`` (default) or ``torch.float64``; inputs are cast to it.
    slab_rows : int
        On the CPU, y rows per slab (default 32): the stack is projected one y-slab at a
        time so that the slab stays in the cache (the result does not depend on it).

    Attributes
    ----------
    volume_shape : (int, int, int)
    tilt_angles_deg : ndarray, shape (n_tilts,), float64 (read-only)
    projection_shape : (int, int, int)
        ``(n_tilts, ny, n_detector)``.
    device : torch.device
    dtype : torch.dtype

    Examples
    --------
    >>> import numpy as np
    >>> p = SingleAxisProjector((32, 40, 48), np.arange(-60, 61, 3))
    >>> sino = p.forward(np.ones((32, 40, 48), np.float32))   # (41, 40, 48)
    >>> back = p.adjoint(sino)                                # (32, 40, 48)
    """

    def __init__(
        self,
        volume_shape: tuple[int, int, int],
        tilt_angles_deg: ArrayLike,
        *,
        n_detector: int | None = None,
        device: str | None = None,
        dtype: torch.dtype = torch.float32,
        slab_rows: int = DEFAULT_SLAB_ROWS,
    ) -> None:
        shape = tuple(int(v) for v in volume_shape)
        if len(shape) != 3 or min(shape) < 1:
            raise ShapeError(f"volume_shape must be 3 positive sizes (nz, ny, nx), got {shape}")
        angles = np.array(tilt_angles_deg, dtype=np.float64).ravel()
        if angles.size == 0:
            raise InputError("no tilt angles given; give at least one angle in degrees")
        if not np.all(np.isfinite(angles)):
            raise InputError("tilt angles contain NaN or infinity; give finite angles in degrees")
        nd = shape[2] if n_detector is None else int(n_detector)
        if nd < 1:
            raise InputError(f"n_detector must be a positive number of pixels, got {nd}")
        if dtype not in (torch.float32, torch.float64):
            raise InputError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
        if int(slab_rows) < 1:
            raise InputError(f"slab_rows must be a positive number of rows, got {slab_rows}")
        self.slab_rows = int(slab_rows)
        angles.setflags(write=False)
        self.volume_shape: tuple[int, int, int] = (shape[0], shape[1], shape[2])
        self.tilt_angles_deg: np.ndarray = angles
        self.n_detector = nd
        self.projection_shape: tuple[int, int, int] = (angles.size, shape[1], nd)
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        self.dtype = dtype
        self._np_dtype = np.float32 if dtype == torch.float32 else np.float64
        self._key = (shape[0], shape[2], tuple(float(a) for a in angles), nd)
        # scipy's threaded kernels on the CPU (faster there), torch.sparse elsewhere
        self._torch_sparse = self.device.type != "cpu"
        self._cpu_products: dict[bool, _SlabProduct] = {}
        self._torch_mats: tuple[torch.Tensor, torch.Tensor] | None = None
        self._norm: dict[tuple[int, int], float] = {}

    # ------------------------------------------------------------------ matrices
    @property
    def matrix(self) -> sp.csr_matrix:
        """The 2D system matrix ``A``, ``(n_tilts * n_detector, nz * nx)`` float32 CSR."""
        return _matrix(self._key, adjoint=False)

    @property
    def nbytes(self) -> int:
        """Bytes held by ``A`` and ``A.T`` (data, indices, row pointers)."""
        a, a_t = _system_matrices(*self._key)
        return sum(m.data.nbytes + m.indices.nbytes + m.indptr.nbytes for m in (a, a_t))

    def _product(self, *, adjoint: bool) -> _SlabProduct:
        """The forward or adjoint slab product (builds ``A`` or ``A.T`` on first use)."""
        if adjoint not in self._cpu_products:
            unit = self.volume_shape[2] if adjoint else self.n_detector
            self._cpu_products[adjoint] = _slab_product(
                self._key, adjoint, unit, np.dtype(self._np_dtype)
            )
        return self._cpu_products[adjoint]

    def _torch_matrices(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self._torch_mats is None:
            self._torch_mats = _torch_system_matrices(self._key, str(self.device), self.dtype)
        return self._torch_mats

    # ------------------------------------------------------------------ core products
    def _apply_numpy(self, arr: np.ndarray, *, adjoint: bool) -> np.ndarray:
        shape = self.volume_shape if adjoint else self.projection_shape
        out = np.empty(shape, dtype=self._np_dtype)
        self._product(adjoint=adjoint).apply(arr, out, self.slab_rows)
        return out

    def _apply_tensor(self, t: torch.Tensor, *, adjoint: bool) -> torch.Tensor:
        """The product on a tensor already on ``self.device`` with ``self.dtype`` (no grad)."""
        if not self._torch_sparse:
            res = self._apply_numpy(t.detach().numpy(), adjoint=adjoint)
            return torch.from_numpy(res)
        a, a_t = self._torch_matrices()
        if adjoint:
            n_tilts, ny, nd = self.projection_shape
            x = t.detach().transpose(1, 2).reshape(n_tilts * nd, ny)
            nz, _, nx = self.volume_shape
            return (a_t @ x).view(nz, nx, ny).transpose(1, 2).contiguous()
        nz, ny, nx = self.volume_shape
        x = t.detach().transpose(1, 2).reshape(nz * nx, ny)
        n_tilts, _, nd = self.projection_shape
        return (a @ x).view(n_tilts, nd, ny).transpose(1, 2).contiguous()

    def _check(self, arr: Any, expected: tuple[int, ...], what: str) -> None:
        if tuple(arr.shape) != expected:
            raise ShapeError(
                f"{what} has shape {tuple(arr.shape)}; this projector expects {expected} "
                f"(volume (nz, ny, nx) = {self.volume_shape}, "
                f"projections (n_tilts, ny, n_detector) = {self.projection_shape})"
            )

    def _dispatch(self, arr: Any, *, adjoint: bool) -> Any:
        expected = self.projection_shape if adjoint else self.volume_shape
        self._check(arr, expected, "projections" if adjoint else "volume")
        if isinstance(arr, torch.Tensor):
            t = arr.detach().to(device=self.device, dtype=self.dtype)
            return self._apply_tensor(t, adjoint=adjoint).to(arr.device)
        a = np.asarray(arr)
        if not self._torch_sparse:
            return self._apply_numpy(a, adjoint=adjoint)
        t = torch.from_numpy(np.ascontiguousarray(a, dtype=self._np_dtype)).to(self.device)
        return self._apply_tensor(t, adjoint=adjoint).cpu().numpy()

    # ------------------------------------------------------------------ public API
    def forward(self, volume: Any) -> Any:
        """Project a volume: ``(nz, ny, nx)`` -> ``(n_tilts, ny, n_detector)``.

        Parameters
        ----------
        volume : ndarray or torch.Tensor, shape (nz, ny, nx)
            Cast to the projector's dtype. Not differentiable (use :meth:`project`).

        Returns
        -------
        ndarray or torch.Tensor, shape (n_tilts, ny, n_detector)
            Same kind as the input (a tensor comes back on the input's device).
        """
        return self._dispatch(volume, adjoint=False)

    def adjoint(self, projections: Any) -> Any:
        """Back-project (exact transpose of :meth:`forward`): ``(n_tilts, ny, nd)`` -> volume.

        Parameters
        ----------
        projections : ndarray or torch.Tensor, shape (n_tilts, ny, n_detector)

        Returns
        -------
        ndarray or torch.Tensor, shape (nz, ny, nx)
            Same kind as the input; ``<A x, y> = <x, A^T y>`` up to float rounding.
        """
        return self._dispatch(projections, adjoint=True)

    def project(self, volume_tensor: torch.Tensor) -> torch.Tensor:
        """Differentiable projection of a tensor ``(nz, ny, nx)`` (backward = adjoint).

        Computed on the projector's device and returned on the input's device.
        """
        self._check(volume_tensor, self.volume_shape, "volume")
        t = volume_tensor.to(device=self.device, dtype=self.dtype)
        out = _Project.apply(t, self)
        return out.to(volume_tensor.device)

    def backproject(self, proj_tensor: torch.Tensor) -> torch.Tensor:
        """Differentiable back-projection of ``(n_tilts, ny, nd)`` (backward = forward)."""
        self._check(proj_tensor, self.projection_shape, "projections")
        t = proj_tensor.to(device=self.device, dtype=self.dtype)
        out = _Backproject.apply(t, self)
        return out.to(proj_tensor.device)

    def operator_norm(self, *, n_iter: int = 30, seed: int = 0) -> float:
        """``||A||_2`` of the full 3D operator, by power iteration (cached).

        The 3D operator is the 2D slice matrix applied to every y-slice independently, so
        its norm equals the 2D matrix's norm, which is what is iterated (cheap).
        """
        key = (n_iter, seed)
        if key not in self._norm:
            a, a_t = _system_matrices(*self._key)
            self._norm[key] = power_iteration(
                lambda x: a @ x, lambda y: a_t @ y, (a.shape[1],), n_iter=n_iter, seed=seed
            )
        return self._norm[key]

    def ray_sums(self) -> np.ndarray:
        """``A @ 1`` per slice: the length of each ray inside the volume, ``(n_tilts, nd)``.

        The same for every y; broadcast as ``ray_sums()[:, None, :]`` against projections
        (SIRT's row normalisation).
        """
        sums = _slab_product(self._key, False, self.n_detector, np.dtype(np.float32)).row_sums()
        return sums.astype(np.float32).reshape(len(self.tilt_angles_deg), -1)

    def voxel_sums(self) -> np.ndarray:
        """``A.T @ 1`` per slice, ``(nz, nx)``; broadcast as ``voxel_sums()[:, None, :]``."""
        nz, _, nx = self.volume_shape
        sums = _slab_product(self._key, True, nx, np.dtype(np.float32)).row_sums()
        return sums.astype(np.float32).reshape(nz, nx)

    def __repr__(self) -> str:
        a = self.tilt_angles_deg
        return (
            f"SingleAxisProjector(volume_shape={self.volume_shape}, n_tilts={a.size} "
            f"[{a.min():.1f}..{a.max():.1f} deg], n_detector={self.n_detector}, "
            f"device={self.device}, dtype={self.dtype})"
        )
