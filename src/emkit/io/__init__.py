"""emkit.io: every file format emkit reads and writes, with the metadata kept.

Images and volumes go through one pair of functions chosen by suffix,
:func:`read_volume` / :func:`write_volume` (MRC/MRCS and IMOD's .st/.ali/.rec/.map, TIFF,
PNG, Zarr, OME-Zarr, NPY), returning a :class:`Volume` that carries the voxel size and
origin in Å, ``(z, y, x)``. Tables and models have their own readers and writers: IMOD
``.tlt``/``.xf``, AreTomo ``.aln``, STAR (RELION particles and coordinates), CSV/TSV and
DeepFinder XML coordinates, PDB/mmCIF models, PLY/OBJ/STL/GLB meshes. :func:`describe`
summarises any of them (``emkit info``).

Conventions: arrays ``(z, y, x)`` / ``(n, y, x)`` / ``(y, x)``; Å at every interface;
coordinates in pixels, ``(z, y, x)``; angles in degrees. Every writer is atomic (temporary
name beside the target, renamed when complete) and never leaves a partial file.
"""

from emkit.io._atomic import (
    atomic_output,
    check_not_input,
    make_output_folder,
    require_output_folder,
    write_text_atomic,
)
from emkit.io._checks import count_nonfinite, require_finite, require_ndim
from emkit.io._coords import (
    read_coordinates,
    read_deepfinder_xml,
    write_coordinates,
    write_deepfinder_xml,
)
from emkit.io._describe import array_statistics, describe, image_contrast
from emkit.io._dispatch import format_keeps_metadata, read_volume, write_volume
from emkit.io._image import png_ready
from emkit.io._imod import (
    read_aln,
    read_tlt,
    read_xf,
    shifts_from_xf,
    write_tlt,
    write_xf,
    xf_from_shifts,
)
from emkit.io._mesh import read_mesh, write_mesh
from emkit.io._paths import VOLUME_SUFFIXES, file_stem, require_exists, volume_format
from emkit.io._serialem import Autodoc, MdocTiltSeries, read_autodoc, read_mdoc_tilt_angles
from emkit.io._star import (
    read_coordinates_star,
    read_particles_star,
    read_star,
    relion_image_names,
    write_coordinates_star,
    write_particles_star,
    write_star,
)
from emkit.io._structure import read_structure, structure_atoms, structure_to_density
from emkit.io._tempfiles import remove_stale_temps, require_free_space
from emkit.io._transaction import (
    OutputRun,
    commit_pending_outputs,
    current_run,
    on_commit,
    output_run,
)
from emkit.io._volume import Volume
from emkit.io._zarr import create_zarr_array, open_group_for_write, open_zarr_array

__all__ = [
    "VOLUME_SUFFIXES",
    "Volume",
    "array_statistics",
    "atomic_output",
    "check_not_input",
    "commit_pending_outputs",
    "file_stem",
    "current_run",
    "make_output_folder",
    "on_commit",
    "output_run",
    "OutputRun",
    "remove_stale_temps",
    "require_free_space",
    "require_output_folder",
    "count_nonfinite",
    "describe",
    "image_contrast",
    "format_keeps_metadata",
    "open_zarr_array",
    "create_zarr_array",
    "open_group_for_write",
    "png_ready",
    "read_aln",
    "read_coordinates",
    "read_coordinates_star",
    "read_deepfinder_xml",
    "read_mesh",
    "read_particles_star",
    "read_star",
    "read_structure",
    "read_tlt",
    "read_autodoc",
    "read_mdoc_tilt_angles",
    "Autodoc",
    "MdocTiltSeries",
    "read_volume",
    "read_xf",
    "relion_image_names",
    "require_exists",
    "require_finite",
    "require_ndim",
    "shifts_from_xf",
    "structure_atoms",
    "structure_to_density",
    "volume_format",
    "write_coordinates",
    "write_coordinates_star",
    "write_deepfinder_xml",
    "write_mesh",
    "write_particles_star",
    "write_star",
    "write_text_atomic",
    "write_tlt",
    "write_volume",
    "write_xf",
    "xf_from_shifts",
]
