"""Synthetic damaged sections on disk: the ``emkit sim section`` writer and the demo."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

if TYPE_CHECKING:
    from emkit.register._pair import Method, Refine

from emkit.register._files import (
    MemoryCheck,
    file_suffix,
    no_memory_check,
    read_section,
    require_section_memory,
    write_json,
)


@dataclass
class SimulatedSectionFiles:
    """The files ``write_simulated_section`` wrote into ``output_dir``."""

    output_dir: Path
    moving_name: str
    band_px: Any


def _fixed_image(
    image: Path | None, size: tuple[int, int], seed: int, require_memory: MemoryCheck
) -> tuple[np.ndarray, str, Any]:
    """The fixed section (``image`` or the built-in texture), the moving file name, voxel size."""
    from emkit.errors import InputError, with_path
    from emkit.sim.sections import section_texture

    if image is not None:
        volume = read_section(image, "section")
        fixed = volume.data
        if min(fixed.shape) < 64:
            raise InputError(with_path(image, f"is {fixed.shape}; give at least 64x64"))
        require_section_memory(require_memory, fixed.shape, str(image), "crop or bin the image")
        suffix = file_suffix(image)
        moving_name = "moving" + (suffix if suffix in (".png", ".tif", ".tiff", ".mrc") else ".png")
        return fixed, moving_name, volume.voxel_size
    h, w = size
    if min(h, w) < 64:
        raise InputError(f"--size {h} {w} is too small; give at least 64 64")
    require_section_memory(require_memory, (h, w), f"--size {h} {w}", "give a smaller --size")
    return section_texture((h, w), seed=seed), "moving.png", None


def write_simulated_section(
    output_dir: Path,
    *,
    image: Path | None = None,
    kind: Literal["fold", "crack"] = "fold",
    seed: int = 0,
    size: tuple[int, int] = (768, 768),
    elastic_px: float = 0.0,
    require_memory: MemoryCheck = no_memory_check,
) -> SimulatedSectionFiles:
    """Make a damaged neighbour of ``image`` (or a texture); write it with its true field."""
    from emkit.io import atomic_output, check_not_input, make_output_folder, write_volume
    from emkit.sim.sections import simulate_damaged_section

    out = output_dir
    if image is not None:
        check_not_input(out, [image])
    fixed, moving_name, voxel_size = _fixed_image(image, size, seed, require_memory)
    names = [moving_name, "defect_mask.png", "true_field.npy", "params.json", "emkit-run.json"]
    for name in names:
        check_not_input(out / name, [image])
    damaged = simulate_damaged_section(fixed, kind=kind, seed=seed, elastic_px=elastic_px)
    make_output_folder(out)
    if image is None:
        write_volume(out / "fixed.png", fixed)
    write_volume(out / moving_name, damaged.moving, voxel_size=voxel_size)
    write_volume(out / "defect_mask.png", damaged.defect_mask)
    true_field = np.where(damaged.true_valid[None], damaged.true_field, np.nan).astype(np.float32)
    with atomic_output(out / "true_field.npy") as tmp:
        np.save(tmp, true_field)
    write_json(out / "params.json", damaged.params)
    return SimulatedSectionFiles(out, moving_name, damaged.params["band_px"])


# --------------------------------------------------------------------------- demo


@dataclass
class RegisterDemo:
    """The demo's numbers and the images its figures are drawn from."""

    output_dir: Path
    fixed: np.ndarray
    moving: np.ndarray
    defect_mask: np.ndarray
    registrations: dict[str, Any] = field(default_factory=dict)
    """Per method tag (``expected_affine``, ``global_affine``): its PairRegistration."""
    numbers: dict[str, Any] = field(default_factory=dict)


def run_register_demo(out_dir: Path, *, seed: int) -> RegisterDemo:
    """Synthetic fold, each side also stretched by a smooth 6 px warp: the expected affine
    with its elastic refinement (the default), the expected affine alone, one global affine.

    Writes the images, the default method's warped image and results.json into
    ``out_dir``; returns the measured endpoint errors (px) of the three and their NCC
    outside the defect, with the registrations to draw.
    """
    from emkit.io import make_output_folder, write_volume
    from emkit.register._metrics import endpoint_error, similarity
    from emkit.register._pair import register_pair
    from emkit.sim.sections import section_texture, simulate_damaged_section

    out = make_output_folder(out_dir)
    fixed = section_texture((640, 640), seed=seed)
    damaged = simulate_damaged_section(fixed, kind="fold", seed=seed + 1, elastic_px=6.0)
    write_volume(out / "fixed.png", fixed)
    write_volume(out / "moving.png", damaged.moving)
    write_volume(out / "defect_mask.png", damaged.defect_mask)
    demo = RegisterDemo(out, fixed, damaged.moving, damaged.defect_mask)
    results = demo.numbers
    variants: tuple[tuple[Method, Refine, str], ...] = (
        ("expected-affine", "elastic", "expected_affine_elastic"),
        ("expected-affine", "none", "expected_affine"),
        ("global-affine", "none", "global_affine"),
    )
    for method, refine, tag in variants:
        reg = register_pair(
            fixed,
            damaged.moving,
            defect_mask=damaged.defect_mask,
            method=method,
            refine=refine,
            seed=seed,
        )
        scored = reg.valid & damaged.true_valid
        epe = endpoint_error(
            reg.field, damaged.true_field, valid=scored, defect_fixed=damaged.defect_mask_fixed
        )
        results[f"epe_mean_px_{tag}"] = round(epe["epe_mean_px"], 3)
        results[f"epe_p95_px_{tag}"] = round(epe["epe_p95_px"], 3)
        results[f"ncc_{tag}"] = round(similarity(fixed, reg.warped, valid=scored)["ncc"], 4)
        demo.registrations[tag] = reg
        if tag == "expected_affine_elastic":
            write_volume(out / "warped.png", reg.warped)
    write_json(out / "results.json", results)
    return demo
