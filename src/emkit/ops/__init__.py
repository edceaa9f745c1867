"""emkit.ops: projectors with exact adjoints, filters, CTF, FSC and total variation.

* :class:`SingleAxisProjector` -- tilt-series projector (tilt axis = y), sparse, exact adjoint.
* :func:`project_3d` / :func:`backproject_3d` -- any orientation (single-particle work).
* filters: :func:`ramp_filter`, :func:`lowpass_gaussian`, :func:`taper_edges`,
  :func:`bin_image`, :func:`bin_volume`.
* CTF: :func:`ctf_2d`, :func:`apply_ctf`, :func:`phase_flip`.
* resolution: :func:`fourier_shell_correlation`, :func:`fsc_resolution`.
* total variation: :func:`gradient_3d`, :func:`divergence_3d`, :func:`tv_norm`,
  :func:`tv_gradient`, :func:`project_l2_ball`, ``GRADIENT_NORM_3D``.
* :func:`power_iteration` -- operator norms.

Submodules load on first use, so ``import emkit.ops`` stays cheap and torch is imported
only when a projector (or a torch input) needs it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from emkit.ops.ctf import apply_ctf, ctf_2d, electron_wavelength_A, phase_flip
    from emkit.ops.filters import (
        bin_image,
        bin_volume,
        lowpass_gaussian,
        ramp_filter,
        ramp_filter_response,
        taper_edges,
    )
    from emkit.ops.fsc import fourier_shell_correlation, fsc_resolution
    from emkit.ops.linalg import power_iteration
    from emkit.ops.projector_3d import backproject_3d, project_3d
    from emkit.ops.single_axis import SingleAxisProjector, single_axis_system_matrix
    from emkit.ops.tv import (
        GRADIENT_NORM_3D,
        divergence_3d,
        gradient_3d,
        project_l2_ball,
        tv_gradient,
        tv_norm,
    )

__all__ = [
    "GRADIENT_NORM_3D",
    "SingleAxisProjector",
    "apply_ctf",
    "backproject_3d",
    "bin_image",
    "bin_volume",
    "ctf_2d",
    "divergence_3d",
    "electron_wavelength_A",
    "fourier_shell_correlation",
    "fsc_resolution",
    "gradient_3d",
    "lowpass_gaussian",
    "phase_flip",
    "power_iteration",
    "project_3d",
    "project_l2_ball",
    "ramp_filter",
    "ramp_filter_response",
    "single_axis_system_matrix",
    "taper_edges",
    "tv_gradient",
    "tv_norm",
]

_MODULES = {
    "ctf": ("apply_ctf", "ctf_2d", "electron_wavelength_A", "phase_flip"),
    "filters": (
        "bin_image", "bin_volume", "lowpass_gaussian", "ramp_filter", "ramp_filter_response",
        "taper_edges",
    ),
    "fsc": ("fourier_shell_correlation", "fsc_resolution"),
    "linalg": ("power_iteration",),
    "projector_3d": ("backproject_3d", "project_3d"),
    "single_axis": ("SingleAxisProjector", "single_axis_system_matrix"),
    "tv": (
        "GRADIENT_NORM_3D", "divergence_3d", "gradient_3d", "project_l2_ball", "tv_gradient",
        "tv_norm",
    ),
}
_WHERE = {name: module for module, names in _MODULES.items() for name in names}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        module = importlib.import_module(f"emkit.ops.{_WHERE[name]}")
        return getattr(module, name)
    raise AttributeError(f"module 'emkit.ops' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
