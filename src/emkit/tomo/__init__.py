"""emkit.tomo: fiducial-less tilt-series alignment and reconstruction.

The workflow: :func:`prealign` (stretched neighbour cross-correlation, optional tilt-axis
estimate), :func:`search_tilt_axis` (the axis angle where the joint-alignment model stops
asking to turn), :func:`align_joint` (FLARA-style joint shift + TV reconstruction, coarse to fine)
and :func:`reconstruct` (WBP, SIRT, CGLS); on files: :func:`run_prealign_files`,
:func:`run_align_files`, :func:`run_reconstruct_files` (read, check, run, write).

Conventions
-----------
- Stacks are ``(n, y, x)``; the tilt axis is the image y axis through the centre column
  ``(nx - 1) / 2``; volumes are ``(z, y, x)``. A voxel ``(z, x)`` projects at tilt ``t`` to
  ``(x - cx) cos t + (z - cz) sin t + cx`` (IMOD).
- ``shifts_px[i] = (dy, dx)`` (pixels) *aligns* raw image ``i``:
  ``aligned(y, x) = raw(y - dy, x - dx)``; it is the translation ``(DY, DX)`` of an IMOD
  ``.xf`` line (:func:`emkit.io.xf_from_shifts`).
- Shifts that a translated specimen would make, ``y0`` and ``x0 cos t + z0 sin t``, cannot
  be measured (they only move the tomogram); results have them removed
  (:func:`remove_gauge` with ``gauge="rigid"``) and errors are compared the same way
  (:func:`shift_rmse`).
"""

from emkit.tomo._axis import TiltAxisSearch, search_tilt_axis
from emkit.tomo._commands import (
    AlignFilesResult,
    PrealignFilesResult,
    ReconstructFilesResult,
    run_align_files,
    run_prealign_files,
    run_reconstruct_files,
)
from emkit.tomo._demo import (
    SimulatedSeriesFiles,
    TomoDemo,
    check_simulation_request,
    run_tomo_demo,
    write_simulated_tilt_series,
)
from emkit.tomo._files import TiltSeriesFile, TiltSeriesSource, read_tilt_series
from emkit.tomo._joint import JointAlignment, align_joint
from emkit.tomo._prealign import (
    Prealignment,
    check_tilt_series,
    estimate_tilt_axis,
    prealign,
    stretch_x,
)
from emkit.tomo._reconstruct import (
    METHODS,
    angular_weights,
    reconstruct,
    reconstruct_cgls,
    reconstruct_sirt,
    reconstruct_wbp,
)
from emkit.tomo._stream import StreamOptions
from emkit.tomo._transform import (
    projection_background,
    remove_background,
    remove_gauge,
    shift_images,
    shift_rmse,
    transform_images,
    validity_masks,
)
from emkit.tomo._xf import alignment_from_xf, shifts_from_aln, xf_from_alignment

__all__ = [
    "METHODS",
    "AlignFilesResult",
    "JointAlignment",
    "PrealignFilesResult",
    "Prealignment",
    "ReconstructFilesResult",
    "SimulatedSeriesFiles",
    "StreamOptions",
    "TiltSeriesFile",
    "TiltAxisSearch",
    "TiltSeriesSource",
    "TomoDemo",
    "align_joint",
    "alignment_from_xf",
    "angular_weights",
    "check_simulation_request",
    "check_tilt_series",
    "estimate_tilt_axis",
    "prealign",
    "projection_background",
    "read_tilt_series",
    "reconstruct",
    "reconstruct_cgls",
    "reconstruct_sirt",
    "reconstruct_wbp",
    "remove_background",
    "remove_gauge",
    "run_align_files",
    "run_prealign_files",
    "run_reconstruct_files",
    "run_tomo_demo",
    "search_tilt_axis",
    "shift_images",
    "shift_rmse",
    "shifts_from_aln",
    "stretch_x",
    "transform_images",
    "validity_masks",
    "write_simulated_tilt_series",
    "xf_from_alignment",
]
