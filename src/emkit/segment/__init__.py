"""emkit.segment: semi-supervised slice-wise segmentation of tomograms and 3D surfaces.

The deep-SXT method (Dyhr et al., PNAS 2023) on :mod:`emkit.nn`: a 2D U-Net with one
shared encoder and two decoders, one predicting labels (trained on a few labelled z
slices) and one reconstructing the image (trained on every other slice of the same
tomogram). :func:`train_segmentation` trains it, :func:`predict_segmentation` applies it
slice by slice (optionally along all three axes, fused), :func:`mesh_labels` turns a label
volume into watertight surfaces in Å, and :func:`segment_random_forest` is the
ilastik-style baseline it is measured against.
"""

from emkit.segment._baseline import segment_random_forest
from emkit.segment._data import check_training_inputs, labelled_slices
from emkit.segment._mesh import LabelMesh, mesh_labels, mesh_table
from emkit.segment._metrics import dice_scores, per_slice_scores
from emkit.segment._predict import SegmentationPrediction, predict_segmentation
from emkit.segment._train import SegmentationTraining, train_segmentation

__all__ = [
    "LabelMesh",
    "SegmentationPrediction",
    "SegmentationTraining",
    "check_training_inputs",
    "dice_scores",
    "labelled_slices",
    "mesh_labels",
    "mesh_table",
    "per_slice_scores",
    "predict_segmentation",
    "segment_random_forest",
    "train_segmentation",
]
