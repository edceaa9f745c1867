"""Regenerate the built-in density templates in ``emkit/data/templates/``.

Run from a checkout that has the shared reference structures::

    python -m emkit.sim._make_templates [STRUCTURES_DIR]

``STRUCTURES_DIR`` defaults to ``../shared/data/structures`` relative to the repository root.
Each template is the electron-scattering density (:func:`emkit.io.structure_to_density`) of a
public PDB entry (PDB data are CC0), at 5 Å/voxel and 12 Å resolution, stored as float16 in a
compressed ``.npz`` with its metadata in ``templates.json``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from emkit.io import atomic_output, read_structure, structure_atoms, structure_to_density

VOXEL_SIZE_A = 5.0
RESOLUTION_A = 12.0

# name, file, chain (None: the whole model), box (voxels), description (from the entry's
# TITLE / COMPND and the shared data README). 3enl, 6flr_a and 6zu5_se0 are three species of
# similar size (radius 47-49 Å at 10 Å voxels) but different shape: the pick workflow's test.
TEMPLATES = (
    ("1ake", "1ake.pdb", None, 32, "adenylate kinase (small, ~1.7k atoms)"),
    ("3enl", "3enl.pdb", None, 32, "yeast enolase (~3.3k atoms)"),
    ("6flr", "6flr.pdb", None, 32,
     "AMPA receptor GluA3 N-terminal domain, super-open (~6k atoms)"),
    ("3o21", "3o21.pdb", None, 40, "AMPA receptor GluA3 N-terminal domain (~12k atoms)"),
    ("6flr_a", "6flr.pdb", "A", 32,
     "chain A of 6flr: one GluA3 N-terminal domain, clamshell (~3k atoms)"),
    ("6zu5_se0", "6zu5.cif.gz", "SE0", 32,
     "chain SE0 of 6zu5: ribosomal protein eS4 of the Paranosema locustae ribosome"),
)


TEMPLATE_DIR = Path(__file__).resolve().parents[1] / "data" / "templates"


def _structure_of(path: Path, chain: str | None):
    """The structure of ``path``, only ``chain`` of its first model when one is named."""
    structure = read_structure(path)
    if chain is None:
        return structure
    for index in range(len(structure) - 1, 0, -1):
        del structure[index]
    model = structure[0]
    names = [c.name for c in model]
    if chain not in names:
        raise ValueError(f"{path}: no chain {chain} (chains: {', '.join(names)})")
    for name in names:
        if name != chain:
            model.remove_chain(name)
    return structure


def make_templates(structures_dir: Path, out_dir: Path = TEMPLATE_DIR) -> list[dict]:
    """Compute every template from ``structures_dir`` and write it to ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    records = []
    for name, filename, chain, box, description in TEMPLATES:
        model = _structure_of(structures_dir / filename, chain)
        atoms = structure_atoms(model)
        vol = structure_to_density(model, VOXEL_SIZE_A, box_size=box, resolution_A=RESOLUTION_A)
        with atomic_output(out_dir / f"{name}.npz") as tmp:
            with open(tmp, "wb") as fh:
                np.savez_compressed(fh, density=vol.data.astype(np.float16))
        records.append(
            {
                "name": name,
                "pdb_id": filename.split(".")[0].upper(),
                "chain": chain,
                "description": description,
                "file": f"{name}.npz",
                "voxel_size_A": VOXEL_SIZE_A,
                "box": [box, box, box],
                "resolution_A": RESOLUTION_A,
                "origin_A_zyx": [round(float(v), 4) for v in vol.origin],
                "n_atoms": int(len(atoms["element"])),
                "total_scattering_A": round(float(atoms["scattering"].sum()), 2),
                "units": (
                    "1/A^2: electron scattering length f_e(0) (A) per A^3, proportional to "
                    "the Coulomb potential (x 47.88 = volts); sum x voxel volume = "
                    "total_scattering_A"
                ),
                "how": (
                    f"emkit.io.structure_to_density({filename}"
                    f"{'' if chain is None else f' chain {chain}'}, {VOXEL_SIZE_A}, "
                    f"box_size={box}, resolution_A={RESOLUTION_A}): gemmi-read model 1, no "
                    "water or hydrogen, occupancy-weighted electron form factors (c4322) "
                    "blurred by a Gaussian of sigma resolution / (pi sqrt 2) (B-factors "
                    "ignored), computed on a finer grid and block-averaged; scattering-weighted "
                    "centre of mass at voxel box // 2; stored as float16 "
                    "(python -m emkit.sim._make_templates)"
                ),
            }
        )
    with atomic_output(out_dir / "templates.json") as tmp:
        tmp.write_text(json.dumps(records, indent=2) + "\n")
    return records


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    repo_root = Path(__file__).resolve().parents[3]
    default = repo_root / ".." / "shared" / "data" / "structures"
    structures = Path(args[0]) if args else default
    for record in make_templates(structures):
        size = (TEMPLATE_DIR / record["file"]).stat().st_size
        print(f"{record['name']}: box {record['box'][0]}, {size / 1024:.0f} KiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
