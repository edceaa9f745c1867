"""Train the distance model shipped in ``emkit/data/spa_model``.

Rebuild it with ``python -m emkit.spa._make_model --output src/emkit/data/spa_model``.

Training data (all at a 64 px box, the particle box of the spa benchmark):

* the atomic models in ``--structures`` (default ``../shared/data/structures``: 1ake, 3enl,
  3o21, 4v8r, 6flr, 6zu5, 7pbl; never 5j0n, the test structure), each turned into a density
  map with :func:`emkit.sim.density_from_pdb` at two scales (the particle spans 55 % and
  95 % of the box) and a resolution of 2-3.5 voxels;
* synthetic "proteins": seeded assemblies of Gaussian blobs (:func:`blob_assembly`), compact,
  elongated or chain-like, of several sizes.

The held-out validation set (early stopping) is one more structure scale (6flr at 75 %) and
blob assemblies of other seeds, so the kept weights are those that transfer best to
structures the network did not see. Only this script reads ``../shared``; the package
reads nothing from there. Deterministic: same arguments, same weights.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

SEED = 4100
BOX_PX = 64
# 5j0n's voxel size: the CTF of the training images is drawn around this pixel size.
VOXEL_SIZE_A = 3.667
DEFAULT_STRUCTURES = Path(__file__).resolve().parents[3] / ".." / "shared" / "data" / "structures"
VALIDATION_STRUCTURE = "6flr"


def blob_assembly(seed: int, box_px: int = BOX_PX) -> NDArray[np.float32]:
    """A random protein-like density ``(box, box, box)``: Gaussian blobs in a random envelope.

    The envelope is an ellipsoid (compact), a bent chain (elongated) or several lobes; its
    largest radius is 45-95 % of the half box; blob widths 1-3.5 px; centre of mass on
    voxel ``box // 2``.
    """
    rng = np.random.default_rng(seed)
    half = box_px / 2.0
    radius = rng.uniform(0.45, 0.95) * half
    kind = rng.integers(3)
    n = int(rng.integers(15, 90))
    if kind == 0:  # compact: points in an ellipsoid with axes up to 3:1
        axes = radius * np.sort(rng.uniform(0.35, 1.0, 3))[::-1]
        points = rng.normal(size=(n, 3))
        points *= (rng.uniform(0, 1, n) ** (1 / 3) / np.linalg.norm(points, axis=1))[:, None]
        points = points * axes
    elif kind == 1:  # chain: a persistent random walk
        steps = rng.normal(size=(n, 3)).cumsum(axis=0) * 0.15 + rng.normal(size=3)
        steps /= np.linalg.norm(steps, axis=1, keepdims=True)
        points = steps.cumsum(axis=0)
    else:  # lobes: a few compact clusters
        lobes = rng.normal(size=(int(rng.integers(2, 5)), 3))
        points = lobes[rng.integers(len(lobes), size=n)] + 0.35 * rng.normal(size=(n, 3))
    frame = np.linalg.qr(rng.normal(size=(3, 3)))[0]
    points = (points - points.mean(axis=0)) @ frame
    points *= radius / max(np.abs(points).max(), 1e-6) * 0.85
    widths = rng.uniform(1.0, 3.5, n)
    weights = rng.uniform(0.4, 1.0, n) * widths**-1.0
    grid = np.arange(box_px, dtype=np.float32) - box_px // 2
    volume = np.zeros((box_px,) * 3, dtype=np.float32)
    for (x, y, z), w, a in zip(points, widths, weights):
        gz, gy, gx = (np.exp(-((grid - c) ** 2) / (2 * w * w)) for c in (z, y, x))
        volume += a * gz[:, None, None] * gy[None, :, None] * gx[None, None, :]
    return _centre_of_mass_to_centre(volume)


def _centre_of_mass_to_centre(volume: NDArray[np.float32]) -> NDArray[np.float32]:
    from scipy import ndimage

    com = np.array(ndimage.center_of_mass(volume))
    shifted = ndimage.shift(volume, np.array(volume.shape) // 2 - com, order=1, mode="constant")
    return np.asarray(shifted / shifted.max(), dtype=np.float32)


def structure_volume(path: Path, fill: float, resolution_px: float, box_px: int = BOX_PX
                     ) -> NDArray[np.float32]:
    """Density of an atomic model on a ``box_px`` box, the model spanning ``fill`` of it."""
    from emkit.io import read_structure, structure_atoms
    from emkit.sim import density_from_pdb

    atoms = structure_atoms(read_structure(path))
    weight = atoms["scattering"]
    centre = (atoms["zyx_A"] * weight[:, None]).sum(0) / weight.sum()
    radius_A = float(np.percentile(np.linalg.norm(atoms["zyx_A"] - centre, axis=1), 99.5))
    voxel_A = radius_A / (fill * box_px / 2)
    volume = density_from_pdb(path, voxel_A, box_size=box_px, resolution_A=resolution_px * voxel_A)
    data = np.maximum(volume.data, 0.0)
    return np.asarray(data / data.max(), dtype=np.float32)


def training_volumes(structures: Path, n_blobs: int, seed: int
                     ) -> tuple[list[NDArray[np.float32]], list[NDArray[np.float32]], list[str]]:
    """Training and validation maps, and a name for each training map."""
    rng = np.random.default_rng(seed)
    files = sorted(p for p in structures.iterdir() if not p.name.startswith("5j0n"))
    train, names, held_out = [], [], []
    for path in files:
        stem = path.name.split(".")[0]
        fills = (0.75,) if stem == VALIDATION_STRUCTURE else (0.55, 0.95)
        for fill in fills:
            vol = structure_volume(path, fill, float(rng.uniform(2.0, 3.5)))
            if stem == VALIDATION_STRUCTURE:
                held_out.append(vol)
            else:
                train.append(vol)
                names.append(f"{stem}@{fill}")
    train += [blob_assembly(seed + k) for k in range(n_blobs)]
    names += [f"blobs{seed + k}" for k in range(n_blobs)]
    held_out += [blob_assembly(seed + 10_000 + k) for k in range(2)]
    return train, held_out, names


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--structures", type=Path, default=DEFAULT_STRUCTURES)
    parser.add_argument("--blobs", type=int, default=20)
    parser.add_argument("--steps", type=int, default=1200)
    parser.add_argument("--groups", type=int, default=200)
    parser.add_argument("--pairs", type=int, default=96)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args()

    import torch

    from emkit.io import make_output_folder
    from emkit.nn import save_model
    from emkit.spa import train_distance_model

    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    train, held_out, names = training_volumes(args.structures, args.blobs, SEED)
    make_output_folder(args.output)  # marked as emkit's, so save_model may write beside the log
    model = train_distance_model(
        train, voxel_size_A=VOXEL_SIZE_A, box_px=BOX_PX, n_steps=args.steps, seed=SEED,
        validation_volumes=held_out, n_groups=args.groups, pairs_per_step=args.pairs,
        validate_every=100, patience=8, checkpoint=args.output / "training.ckpt.safetensors",
        resume=args.resume, log_csv=args.output / "training_log.csv", progress=True)
    model.extra["training_data"] = {
        "volumes": names, "validation": [f"{VALIDATION_STRUCTURE}@0.75", "2 blob assemblies"],
        "test_structure_excluded": "5j0n", "how": "python -m emkit.spa._make_model",
        "threads": args.threads, "seconds_total": round(time.perf_counter() - start, 1)}
    save_model(args.output, model)
    (args.output / "training_summary.json").write_text(json.dumps(
        {k: model.extra[k] for k in ("trained_steps", "best_step", "validation",
                                     "seconds_training")}, indent=2) + "\n")
    print(f"trained in {time.perf_counter() - start:.0f} s -> {args.output}")


if __name__ == "__main__":
    main()
