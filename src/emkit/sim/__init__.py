"""Synthetic data with ground truth: phantoms, density templates, crowded particle volumes,
soft X-ray tomograms of whole cells, damaged sections and serial-section stacks."""

from emkit.sim._placement import PlacedParticles, place_particles
from emkit.sim.cell import (
    CELL_CLASS_NAMES,
    WATER_WINDOW_ABSORPTION_PER_UM,
    SimulatedCell,
    simulate_cell,
)
from emkit.sim.phantoms import SHEPP_LOGAN_3D_TABLE, random_ellipsoids, shepp_logan_3d
from emkit.sim.sections import DamagedSection, section_texture, simulate_damaged_section
from emkit.sim.stack import (
    SectionStack,
    StackSection,
    iter_section_stack,
    simulate_section_stack,
    stack_texture_slice,
)
from emkit.sim.templates import density_from_pdb, density_template, list_density_templates
from emkit.sim.tiltseries import PHANTOMS, SimulatedTiltSeries, simulate_tilt_series
from emkit.sim.tomogram import DEFAULT_TOMOGRAM_TEMPLATES, SimulatedTomogram, simulate_tomogram

__all__ = [
    "CELL_CLASS_NAMES",
    "SimulatedCell",
    "WATER_WINDOW_ABSORPTION_PER_UM",
    "simulate_cell",
    "DamagedSection",
    "section_texture",
    "simulate_damaged_section",
    "SectionStack",
    "StackSection",
    "iter_section_stack",
    "simulate_section_stack",
    "stack_texture_slice",
    "SHEPP_LOGAN_3D_TABLE",
    "PlacedParticles",
    "density_from_pdb",
    "density_template",
    "list_density_templates",
    "place_particles",
    "random_ellipsoids",
    "shepp_logan_3d",
    "PHANTOMS",
    "SimulatedTiltSeries",
    "simulate_tilt_series",
    "DEFAULT_TOMOGRAM_TEMPLATES",
    "SimulatedTomogram",
    "simulate_tomogram",
]
