"""emkit.pick: particle detection in cryo-ET tomograms.

- Particle lists: :func:`read_particle_list` (CSV/TSV, RELION STAR incl. RELION 5 centred
  Å coordinates, DeepFinder XML), :func:`write_particle_lists` (STAR, TSV, CSV, XML and
  the instance label map).
- :func:`particle_label_maps`: instance and class label maps from a list and radii.
- :func:`evaluate_picks`: precision, recall, F1, F-beta 4 with one-to-one matching.
- The picking network: :func:`train_picker` (one 3D U-Net of :mod:`emkit.nn`, mask,
  centre and class heads), :func:`detect_particles` (tiled inference and the original
  detector's post-processing, :class:`PostProcessing`), file-level
  :func:`train_picker_from_files` / :func:`detect_particles_in_file`.
- Baselines: :func:`match_templates` (missing-wedge-aware, locally normalised template
  matching over SO(3)) and :func:`pick_blobs` (Gaussian smoothing + local maxima).
"""

from emkit.pick._chunked import (
    detect_particles_chunked,
    label_map_on_disk,
    lazy_tomogram_shape,
)
from emkit.pick._detect import PostProcessing, detect_particles, postprocess, predict_pick_maps
from emkit.pick._evaluate import (
    PickScores,
    classes_by_name,
    evaluate_picks,
    f_beta,
    match_points,
)
from emkit.pick._files import (
    PickResult,
    evaluate_particle_files,
    labels_from_particle_file,
    load_templates,
    read_tomogram,
    run_template_matching,
)
from emkit.pick._labels import particle_label_maps, radii_for_classes
from emkit.pick._match import TemplateMatch, find_peaks, match_templates, pick_blobs, wedge_mask
from emkit.pick._particles import (
    ParticleList,
    read_particle_list,
    write_instance_labels,
    write_particle_lists,
    write_particle_star,
    write_particle_tsv,
    write_simulated_tomogram,
)
from emkit.pick._run import (
    detect_particles_in_file,
    shipped_model_folder,
    train_picker_from_files,
)
from emkit.pick._train import (
    PickTraining,
    build_pick_network,
    check_class_names,
    pick_losses,
    train_picker,
)

__all__ = [
    "PickTraining",
    "PostProcessing",
    "build_pick_network",
    "classes_by_name",
    "check_class_names",
    "detect_particles",
    "detect_particles_chunked",
    "detect_particles_in_file",
    "label_map_on_disk",
    "lazy_tomogram_shape",
    "pick_losses",
    "postprocess",
    "predict_pick_maps",
    "shipped_model_folder",
    "train_picker",
    "train_picker_from_files",
    "ParticleList",
    "PickResult",
    "TemplateMatch",
    "find_peaks",
    "load_templates",
    "match_templates",
    "pick_blobs",
    "run_template_matching",
    "wedge_mask",
    "PickScores",
    "evaluate_particle_files",
    "evaluate_picks",
    "labels_from_particle_file",
    "f_beta",
    "match_points",
    "particle_label_maps",
    "radii_for_classes",
    "read_particle_list",
    "read_tomogram",
    "write_instance_labels",
    "write_particle_lists",
    "write_particle_star",
    "write_particle_tsv",
    "write_simulated_tomogram",
]
