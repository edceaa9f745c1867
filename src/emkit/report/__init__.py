"""Figures for people to look at (PNG), one module per workflow.

Figures are drawn on detached matplotlib figures (no pyplot state, no backend switch) and
written atomically.
"""

from emkit.report.register import overlay_image, save_field_figure, save_overlay
from emkit.report.tomo import plot_iteration, plot_shift_errors, plot_slices

__all__ = [
    "overlay_image",
    "plot_iteration",
    "plot_shift_errors",
    "plot_slices",
    "save_field_figure",
    "save_overlay",
]
