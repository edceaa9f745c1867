"""emkit.pick: particle detection in cryo-ET tomograms.

- Particle lists: :func:`read_particle_list` (CSV/TSV, RELION STAR incl. RELION 5 centred
  Å coordinates, DeepFinder XML), :func:`write_particle_lists` (STAR, TSV, CSV, XML and
  the instance label map).
- :func:`particle_label_maps`: instance and class label maps from a list and radii.
- :func:`evaluate_picks`: precision, recall, F1, F-beta 4 with one-to-one matching.
- Baselines: :func:`match_templates` (missing-wedge-aware, locally normalised template
  matching over SO(3)) and :func:`pick_blobs` (Gaussian smoothing + local maxima).
"""

from emkit.pick._evaluate import PickScores, evaluate_picks, f_beta, match_points
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

__all__ = [
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
