"""emkit.register: serial-section registration of damaged sections (Expected Affine).

A fold or crack makes the tissue on each side of it move differently, so one global
transform cannot register the section. :func:`register_pair` clusters feature matches by
path distance (paths cannot cross the defect), fits an affine per cluster and blends them
per pixel; :func:`register_stack` aligns a whole stack to a reference section.

Field convention: ``field`` has shape ``(2, H, W)``, float32; for each fixed pixel
``(y, x)`` it holds ``(dy, dx)`` such that ``warped[y, x] = moving[y + dy, x + dx]``.
"""

from emkit.register._field import compose_fields, field_validity, warp_image
from emkit.register._metrics import endpoint_error, similarity
from emkit.register._pair import PairRegistration, register_pair
from emkit.register._stack import StackRegistration, neighbour_pairs, register_stack

__all__ = [
    "PairRegistration",
    "StackRegistration",
    "compose_fields",
    "endpoint_error",
    "field_validity",
    "neighbour_pairs",
    "register_pair",
    "register_stack",
    "similarity",
    "warp_image",
]
