"""Single-particle orientation recovery, refinement and reconstruction (``emkit spa``).

The learned-distance method (Banjac et al. 2021) and what real single-particle software
does after it:

1. distances between the orientations of image pairs: exact (:func:`exact_distance_fn`,
   from known orientations) or learned (:func:`learned_distance_fn`), each a
   ``distance_fn(pairs: (m, 2) int) -> (m,) radians``;
   :func:`load_distance_model` / :func:`train_distance_model` are its Siamese network;
2. :func:`recover_orientations` fits one unit quaternion per image to them (or, with no
   distances, :func:`spectral_orientations` reads them off the eigenvectors of the images'
   common-view graph, :func:`common_view_graph`, its edges weighted in noise by
   :func:`path_consistency`);
3. :func:`resolve_frame` fixes the image-side rotation that distances cannot see;
4. :func:`refine_orientations` reconstructs and re-assigns every image by projection
   matching, coarse to fine;
5. :func:`reconstruct_half_maps` / :func:`reconstruct_map` make the map (direct Fourier
   inversion, CTF-aware) with its FSC; :func:`score_orientations` measures errors against
   a known truth.

Conventions are RELION's throughout (see :mod:`emkit.geometry`): maps and images centred on
``L // 2``, ``rlnAngleRot/Tilt/Psi`` through :func:`emkit.geometry.euler_zyz_to_matrix`,
image content displaced by ``+rlnOrigin``.
"""

from emkit.spa._fourier import Optics
from emkit.spa._frame import FrameResolution, fourier_crop, resolve_frame
from emkit.spa._reconstruct import Reconstruction, reconstruct_half_maps, reconstruct_map
from emkit.spa._recover import (
    DistanceFunction,
    RecoveredOrientations,
    exact_distance_fn,
    recover_orientations,
)
from emkit.spa._refine import RefinementResult, refine_orientations
from emkit.spa._score import (
    OrientationScore,
    align_quaternions_o4,
    score_distance_fit,
    score_orientations,
)
from emkit.spa._siamese import learned_distance_fn, load_distance_model, train_distance_model
from emkit.spa._spectral import (
    CommonViewGraph,
    common_view_graph,
    path_consistency,
    spectral_orientations,
)

__all__ = [
    "CommonViewGraph",
    "DistanceFunction",
    "FrameResolution",
    "Optics",
    "OrientationScore",
    "RecoveredOrientations",
    "Reconstruction",
    "RefinementResult",
    "align_quaternions_o4",
    "common_view_graph",
    "exact_distance_fn",
    "fourier_crop",
    "learned_distance_fn",
    "load_distance_model",
    "path_consistency",
    "reconstruct_half_maps",
    "reconstruct_map",
    "recover_orientations",
    "refine_orientations",
    "resolve_frame",
    "score_distance_fit",
    "score_orientations",
    "spectral_orientations",
    "train_distance_model",
]
