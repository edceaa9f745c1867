"""napari reader plugin for emkit's outputs (npe2 manifest ``napari.yaml`` in this package).

Install with ``pip install "emkit[napari]"``; napari then opens, through emkit's readers:

- MRC/MRCS (and IMOD's .map/.rec/.st/.ali): an image layer whose ``scale`` is the voxel size
  in Å and ``translate`` the origin in Å;
- particle lists (RELION ``.star`` with coordinates, ``*_particles.tsv``): a points layer,
  ``(z, y, x)`` in voxels with ``scale`` = the voxel size in Å when the file states it, the
  class as the ``class`` feature and the colour;
- meshes (.ply/.obj/.stl/.glb): a surface layer, vertices ``(z, y, x)`` in Å;
- OME-Zarr (``.ome.zarr``): a multiscale image (every level, lazily), ``scale`` from the
  NGFF metadata in Å; a plain ``.zarr`` array: an image.

napari's world unit is therefore the Å for every layer, so a tomogram, its picks and its
meshes overlay. This module does not import napari: the reader returns plain layer-data
tuples ``(data, kwargs, layer_type)``.
"""

from emkit.napari._reader import get_reader, read_layers

__all__ = ["get_reader", "read_layers"]
