"""emkit.ops: projectors with exact adjoints, filters, CTF, FSC and total variation.

Submodules load on first use, so ``import emkit.ops`` stays cheap and torch is imported
only when a projector is needed.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from emkit.ops.linalg import power_iteration
    from emkit.ops.projector_3d import backproject_3d, project_3d
    from emkit.ops.single_axis import SingleAxisProjector, single_axis_system_matrix

_WHERE = {
    "SingleAxisProjector": "single_axis",
    "single_axis_system_matrix": "single_axis",
    "power_iteration": "linalg",
    "project_3d": "projector_3d",
    "backproject_3d": "projector_3d",
}

__all__ = [
    "SingleAxisProjector",
    "backproject_3d",
    "power_iteration",
    "project_3d",
    "single_axis_system_matrix",
]


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        module = importlib.import_module(f"emkit.ops.{_WHERE[name]}")
        return getattr(module, name)
    raise AttributeError(f"module 'emkit.ops' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
