"""emkit.io: every file format emkit reads and writes, with the metadata kept.

Images and volumes go through one pair of functions chosen by suffix,
:func:`read_volume` / :func:`write_volume` (MRC/MRCS and IMOD's .st/.ali/.rec/.map, TIFF,
PNG, Zarr, OME-Zarr, NPY), returning a :class:`Volume` that carries the voxel size and
origin in Å, ``(z, y, x)``. Every writer is atomic (temporary name, renamed when complete).
"""

from emkit.io._atomic import atomic_output, check_not_input
from emkit.io._checks import count_nonfinite, require_finite, require_ndim
from emkit.io._dispatch import format_keeps_metadata, read_volume, write_volume
from emkit.io._image import png_ready
from emkit.io._paths import VOLUME_SUFFIXES, require_exists, volume_format
from emkit.io._volume import Volume
from emkit.io._zarr import open_zarr_array

__all__ = [
    "VOLUME_SUFFIXES",
    "Volume",
    "atomic_output",
    "check_not_input",
    "count_nonfinite",
    "format_keeps_metadata",
    "open_zarr_array",
    "png_ready",
    "read_volume",
    "require_exists",
    "require_finite",
    "require_ndim",
    "volume_format",
    "write_volume",
]
