"""The ``emkit sim stack`` writer: a synthetic serial-section stack with true fields on disk.

Sections are simulated and written one at a time, so memory does not grow with the
number of sections. The layout is the one ``emkit register stack`` reads::

    OUTPUT/sections/section_0000.png ...     the sections (uint8)
    OUTPUT/masks/section_0007.png ...        defect masks (255 = defect), damaged ones only
    OUTPUT/true_fields/section_0000.npy ...  (2, H, W) float32, truth pixel -> section
                                             pixel (dy, dx); NaN where not visible
    OUTPUT/params.json                       texture, per-section warps, damage
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from emkit.register._files import MemoryCheck, no_memory_check, write_json


@dataclass
class SimulatedStackFiles:
    """What :func:`write_simulated_stack` wrote into ``output_dir``."""

    output_dir: Path
    n_sections: int
    damaged: list[tuple[int, str]]


def write_simulated_stack(
    output_dir: Path,
    *,
    n_sections: int = 50,
    size: tuple[int, int] = (1024, 1024),
    n_damaged: int = 5,
    elastic_px: float = 8.0,
    seed: int = 0,
    cells_z_elongation: float = float("inf"),
    require_memory: MemoryCheck = no_memory_check,
    progress: bool = False,
) -> SimulatedStackFiles:
    """Simulate a serial-section stack and write it section by section.

    Parameters are those of :func:`emkit.sim.stack.iter_section_stack`. Every parameter is
    checked before anything is written (:class:`~emkit.errors.InputError` otherwise).
    """
    from emkit.io import atomic_output, make_output_folder, write_volume
    from emkit.sim.stack import iter_section_stack, stack_params

    h, w = int(size[0]), int(size[1])
    options = dict(
        n_damaged=n_damaged, elastic_px=elastic_px, seed=seed, cells_z_elongation=cells_z_elongation
    )
    record = stack_params(n_sections, (h, w), **options)
    # The padded render, the damage simulation and the true field: about 200 bytes a pixel.
    require_memory(
        200 * (h + 140) * (w + 140),
        f"simulating {h}x{w} px sections",
        "give a smaller --size",
    )
    out = make_output_folder(output_dir)
    folders = {name: make_output_folder(out / name) for name in ("sections", "true_fields")}
    if record["damaged"]:
        folders["masks"] = make_output_folder(out / "masks")
    per_section: list[dict[str, Any]] = []
    iterator = iter_section_stack(n_sections, (h, w), **options)
    if progress:
        from tqdm import tqdm

        iterator = tqdm(iterator, total=n_sections, desc="sections", unit="section")
    for item in iterator:
        name = f"section_{item.section_index:04d}"
        write_volume(folders["sections"] / f"{name}.png", item.section)
        if item.params["damage"] is not None:
            mask = item.defect_mask.astype(np.uint8) * np.uint8(255)
            write_volume(folders["masks"] / f"{name}.png", mask)
        field = np.where(item.true_valid[None], item.true_field, np.float32(np.nan))
        with atomic_output(folders["true_fields"] / f"{name}.npy") as tmp:
            np.save(tmp, field.astype(np.float32))
        per_section.append(item.params)
    record["sections"] = per_section
    record["files"] = {
        "sections": "sections/section_NNNN.png (uint8)",
        "masks": "masks/section_NNNN.png for damaged sections only (255 = defect)",
        "true_fields": "true_fields/section_NNNN.npy: (2, H, W) float32 (dy, dx) from each "
        "truth-frame pixel to its position in the section; NaN where its tissue is not "
        "visible (outside the section, in or under the defect)",
    }
    write_json(out / "params.json", record)
    damaged = [(int(i), str(kind)) for i, kind in record["damaged"]]
    return SimulatedStackFiles(out, int(n_sections), damaged)
