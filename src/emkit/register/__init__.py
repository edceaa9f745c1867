"""emkit.register: serial-section registration of damaged sections (Expected Affine).

A fold or crack makes the tissue on each side of it move differently, so one global
transform cannot register the section. :func:`register_pair` clusters feature matches by
path distance (paths cannot cross the defect), fits an affine per cluster and blends them
per pixel, then (by default) :func:`refine_elastic` follows the smooth stretching
inside each side with an elastic mesh cut along the defect; :func:`register_stack`
aligns a whole stack to a reference section.
On files: :func:`run_pair_files` and :func:`run_stack_files` (read, check, register, write).

Field convention: ``field`` has shape ``(2, H, W)``, float32; for each fixed pixel
``(y, x)`` it holds ``(dy, dx)`` such that ``warped[y, x] = moving[y + dy, x + dx]``.
"""

from emkit.register._commands import (
    PairFilesResult,
    PairOptions,
    StackFilesResult,
    pair_summary,
    run_pair_files,
    run_stack_files,
)
from emkit.register._demo import (
    RegisterDemo,
    SimulatedSectionFiles,
    run_register_demo,
    write_simulated_section,
)
from emkit.register._elastic import ElasticOptions, invert_field, refine_elastic
from emkit.register._field import compose_fields, field_validity, warp_image
from emkit.register._metrics import endpoint_error, similarity
from emkit.register._pair import PairRegistration, register_pair
from emkit.register._stack import StackRegistration, register_stack
from emkit.register._stack_chain import neighbour_pairs

__all__ = [
    "ElasticOptions",
    "PairFilesResult",
    "PairOptions",
    "PairRegistration",
    "RegisterDemo",
    "SimulatedSectionFiles",
    "StackFilesResult",
    "StackRegistration",
    "compose_fields",
    "endpoint_error",
    "field_validity",
    "invert_field",
    "neighbour_pairs",
    "pair_summary",
    "register_pair",
    "refine_elastic",
    "register_stack",
    "run_pair_files",
    "run_register_demo",
    "run_stack_files",
    "similarity",
    "warp_image",
    "write_simulated_section",
]
