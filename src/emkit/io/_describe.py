"""``describe(path)``: what a file holds, for ``emkit info`` (statistics computed in slabs)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from emkit.errors import FileFormatError, with_path
from emkit.io._paths import VOLUME_SUFFIXES, PathLike, full_suffix, require_readable_file

_TLT_SUFFIXES = (".tlt", ".rawtlt")
_AUTODOC_SUFFIXES = (".mdoc", ".idoc")
_XF_SUFFIXES = (".xf", ".prexf", ".xg", ".prexg")
_SLAB_ELEMENTS = 1 << 24

_FORMAT_NAMES = {
    "mrc": "MRC",
    "tiff": "TIFF",
    "image": "image",
    "zarr": "Zarr",
    "ome-zarr": "OME-Zarr",
    "npy": "NumPy .npy",
}


def array_statistics(data: Any) -> dict[str, Any]:
    """min, max, mean, std and NaN/Inf count of an array-like, read in slabs along axis 0.

    Works on anything that slices to numpy (ndarray, memmap, zarr array) without loading
    more than about 16 M elements at a time. Non-finite values are counted and left out.
    """
    shape = tuple(int(n) for n in data.shape)
    size = int(np.prod(shape, dtype=np.int64))
    if size == 0:
        return {"min": None, "max": None, "mean": None, "std": None, "nonfinite": 0}
    per_row = max(1, size // shape[0]) if shape else 1
    step = max(1, _SLAB_ELEMENTS // per_row)
    lo, hi, total, total_sq, count, bad = np.inf, -np.inf, 0.0, 0.0, 0, 0
    rows = shape[0] if shape else 1
    for start in range(0, rows, step):
        # A signalling NaN in the file makes the cast warn; NaNs are counted below instead.
        with np.errstate(invalid="ignore"):
            block = np.asarray(data[start : start + step] if shape else data, dtype=np.float64)
        finite = np.isfinite(block)
        n_ok = int(np.count_nonzero(finite))
        bad += block.size - n_ok
        if n_ok == 0:
            continue
        values = block[finite] if n_ok != block.size else block
        lo = min(lo, float(values.min()))
        hi = max(hi, float(values.max()))
        total += float(values.sum())
        total_sq += float(np.square(values).sum())
        count += n_ok
    if count == 0:
        return {"min": None, "max": None, "mean": None, "std": None, "nonfinite": bad}
    mean = total / count
    std = float(np.sqrt(max(total_sq / count - mean * mean, 0.0)))
    return {"min": lo, "max": hi, "mean": mean, "std": std, "nonfinite": bad}


# |quantile skewness| above this decides the contrast; below it the histogram is too
# symmetric to tell (cryo-EM images of a slab often are).
_CONTRAST_SKEW = 0.2


def image_contrast(data: Any) -> str:
    """Whether images show a bright specimen on a dark background, or the opposite.

    The specimen covers the minority of the pixels, so the histogram has a long tail
    towards the specimen: the quantile skewness ``(q99 + q1 - 2 q50) / (q99 - q1)`` of
    each image (on at most ~64 k pixels, up to 9 images spread through a stack) is positive
    for a bright specimen on a dark background (STEM HAADF, projections of density) and
    negative for a dark one on a bright background (TEM bright field before a log).

    Parameters
    ----------
    data : array-like, shape (n, y, x) or (y, x)

    Returns
    -------
    str
        ``"bright-on-dark"``, ``"dark-on-bright"`` or ``"unclear"``.
    """
    images = data if len(data.shape) == 3 else data[None]
    n = int(images.shape[0])
    skews = []
    for i in sorted({int(round(k)) for k in np.linspace(0, n - 1, min(n, 9))}):
        image = np.asarray(images[i], dtype=np.float64).reshape(-1)
        sample = image[:: max(1, image.size // 65536)]
        q_lo, q50, q_hi = np.percentile(sample, [1, 50, 99])
        if q_hi > q_lo:
            skews.append((q_hi + q_lo - 2 * q50) / (q_hi - q_lo))
    if not skews:
        return "unclear"
    skew = float(np.median(skews))
    if skew > _CONTRAST_SKEW:
        return "bright-on-dark"
    if skew < -_CONTRAST_SKEW:
        return "dark-on-bright"
    return "unclear"


def _volume_kind(ndim: int, stack: bool) -> str:
    if ndim == 2:
        return "image"
    return "image stack" if stack else "volume"


def _describe_volume(path: Path, kind: str) -> dict[str, Any]:
    from emkit.io._dispatch import read_volume

    info: dict[str, Any] = {"file": str(path), "format": _FORMAT_NAMES[kind]}
    if kind in ("zarr", "ome-zarr"):
        from emkit.io._zarr import checked_array, open_zarr_array, zarr_levels, zarr_metadata

        levels = zarr_levels(path)
        meta = zarr_metadata(path)
        info["format"] = "OME-Zarr" if meta["ome"] else "Zarr"
        info.update(
            shape=meta["shape"],
            dtype=levels[0]["dtype"],
            kind=_volume_kind(len(meta["shape"]), False),
            voxel_size_A=meta["voxel_size"],
            origin_A=meta["origin"],
            chunks=levels[0]["chunks"],
        )
        info.update(array_statistics(checked_array(open_zarr_array(path, 0), path)))
        if meta["ome"]:
            info["levels"] = [
                {
                    "level": lv["level"],
                    "shape": lv["shape"],
                    "scale": lv["scale"],
                    **array_statistics(checked_array(open_zarr_array(path, lv["level"]), path)),
                }
                for lv in levels
            ]
        return info
    volume = read_volume(path, mmap=True)
    stack = False
    if kind == "mrc":
        from emkit.io._mrc import mrc_header_summary

        header = mrc_header_summary(path)
        stack = header["image_stack"]
    info.update(
        shape=tuple(volume.data.shape),
        dtype=str(volume.data.dtype),
        kind=_volume_kind(volume.data.ndim, stack),
        voxel_size_A=volume.voxel_size,
        origin_A=volume.origin if volume.voxel_size is not None or any(volume.origin) else None,
    )
    info.update(array_statistics(volume.data))
    if kind == "mrc":
        info.update(header)
        info["unsigned_offset_suspected"] = volume.metadata.get("unsigned_offset_suspected")
        info["odd_header"] = "; ".join(volume.metadata.get("oddities", [])) or None
    tilts = volume.metadata.get("extended_header_tilt_angles_deg")
    if volume.data.ndim == 2 or stack or tilts is not None:
        info["contrast"] = image_contrast(volume.data)
    return info


def _describe_text_table(path: Path, suffix: str) -> dict[str, Any]:
    if suffix in _TLT_SUFFIXES:
        from emkit.io._imod import read_tlt

        angles = read_tlt(path)
        steps = np.diff(angles)
        return {
            "file": str(path),
            "format": "IMOD tilt angles",
            "count": int(angles.size),
            "min_deg": float(angles.min()),
            "max_deg": float(angles.max()),
            "median_step_deg": float(np.median(np.abs(steps))) if steps.size else None,
        }
    if suffix in _XF_SUFFIXES:
        from emkit.io._imod import read_xf

        xf = read_xf(path)
        linear = np.abs(xf[:, :, :2] - np.eye(2)).max()
        return {
            "file": str(path),
            "format": "IMOD transforms",
            "count": int(len(xf)),
            "max_shift_px": float(np.abs(xf[:, :, 2]).max()),
            "pure_translations": bool(linear < 1e-5),
        }
    from emkit.io._imod import read_aln

    aln = read_aln(path)
    return {
        "file": str(path),
        "format": "AreTomo alignment",
        "count": int(len(aln["tilt_deg"])),
        "min_tilt_deg": float(aln["tilt_deg"].min()),
        "max_tilt_deg": float(aln["tilt_deg"].max()),
        "mean_tilt_axis_deg": float(aln["tilt_axis_deg"].mean()),
        "dark_frames": len(aln["dark_frames"]),
        "local_alignment_rows": 0 if aln["local"] is None else int(len(aln["local"])),
    }


def _describe_autodoc(path: Path) -> dict[str, Any]:
    """A SerialEM .mdoc/.idoc: its sections, and the tilt angles or montage pieces in them."""
    from emkit.io._serialem import read_autodoc, read_mdoc_tilt_angles

    doc = read_autodoc(path)
    kinds: dict[str, int] = {}
    for section in doc.sections:
        kinds[section.kind] = kinds.get(section.kind, 0) + 1
    info: dict[str, Any] = {
        "file": str(path),
        "format": "SerialEM autodoc",
        "sections": ", ".join(f"{n} {kind}" for kind, n in kinds.items()) or "none",
        "pixel_size_A": doc.pixel_spacing_A,
        "montage_pieces": sum("PieceCoordinates" in s.keys for s in doc.sections),
    }
    tilted = any("TiltAngle" in s.keys for s in doc.sections if s.kind == "ZValue")
    if tilted and not info["montage_pieces"]:  # a tilt series, one image per tilt
        try:
            mdoc = read_mdoc_tilt_angles(path)
        except FileFormatError as error:
            info["tilt_angles"] = f"not readable as a tilt series ({error})"
            return info
        info.update(tilt_angles=int(mdoc.tilt_angles_deg.size),
                    min_tilt_deg=float(mdoc.tilt_angles_deg.min()),
                    max_tilt_deg=float(mdoc.tilt_angles_deg.max()),
                    serialem_tilt_axis_deg=mdoc.tilt_axis_deg)
    return info


def _describe_star(path: Path) -> dict[str, Any]:
    import pandas as pd

    from emkit.io._star import read_star

    blocks = read_star(path)
    summary: dict[str, Any] = {}
    for name, block in blocks.items():
        label = name or "(unnamed)"
        if isinstance(block, pd.DataFrame):
            summary[label] = f"{len(block)} rows x {len(block.columns)} columns"
        else:
            summary[label] = f"{len(block)} key-value pairs"
    return {"file": str(path), "format": "STAR", "blocks": summary}


def _describe_coordinates(path: Path) -> dict[str, Any]:
    from emkit.io._coords import read_coordinates

    zyx, classes = read_coordinates(path)
    info: dict[str, Any] = {"file": str(path), "format": "coordinates", "count": int(len(zyx))}
    if len(zyx):
        info["min_zyx_px"] = tuple(float(v) for v in zyx.min(0))
        info["max_zyx_px"] = tuple(float(v) for v in zyx.max(0))
    if classes is not None:
        info["classes"] = {int(k): int(v) for k, v in sorted(Counter(classes.tolist()).items())}
    return info


def _describe_structure(path: Path) -> dict[str, Any]:
    from emkit.io._structure import read_structure, structure_atoms

    st = read_structure(path)
    atoms = structure_atoms(st)
    zyx = atoms["zyx_A"]
    return {
        "file": str(path),
        "format": "atomic model",
        "models": len(st),
        "chains": len(st[0]),
        "atoms": int(len(zyx)),
        "extent_zyx_A": tuple(float(v) for v in np.ptp(zyx, axis=0)),
        "elements": {k: int(v) for k, v in Counter(atoms["element"].tolist()).most_common()},
    }


def _describe_mesh(path: Path) -> dict[str, Any]:
    from emkit.io._mesh import read_mesh

    verts, faces = read_mesh(path)
    return {
        "file": str(path),
        "format": "mesh",
        "vertices": int(len(verts)),
        "faces": int(len(faces)),
        "min_zyx_A": tuple(float(v) for v in verts.min(0)),
        "max_zyx_A": tuple(float(v) for v in verts.max(0)),
    }


def describe(path: PathLike) -> dict[str, Any]:
    """Summarise any file emkit reads, for ``emkit info``.

    Images/volumes: format, shape, dtype, kind (image / image stack / volume), voxel size
    and origin (Å, z, y, x), min/max/mean/std and NaN/Inf count (computed in slabs of a
    memory map, so large files are fine; per level for OME-Zarr), plus MRC header facts.
    Tables: STAR blocks and row counts, tilt-angle count and range, transform count,
    coordinate count and classes, mesh vertex/face counts, atom counts of models.

    Returns
    -------
    dict
        JSON-serialisable (tuples become lists).

    Raises
    ------
    MissingFileError, FileFormatError
    """
    from emkit.io._coords import COORDINATE_SUFFIXES
    from emkit.io._mesh import MESH_SUFFIXES
    from emkit.io._structure import STRUCTURE_SUFFIXES

    suffix = full_suffix(path)
    name = Path(path).name.lower()
    structure_suffix = next((s for s in STRUCTURE_SUFFIXES if name.endswith(s)), None)
    if suffix in VOLUME_SUFFIXES:
        from emkit.io._paths import volume_format

        kind = volume_format(path)
        return _describe_volume(
            require_readable_file(path, folder=kind in ("zarr", "ome-zarr")), kind
        )
    p = require_readable_file(path)
    if suffix in _TLT_SUFFIXES + _XF_SUFFIXES + (".aln",):
        return _describe_text_table(p, suffix)
    if suffix == ".star":
        return _describe_star(p)
    if suffix in _AUTODOC_SUFFIXES:
        return _describe_autodoc(p)
    if suffix in COORDINATE_SUFFIXES:
        return _describe_coordinates(p)
    if structure_suffix is not None:
        return _describe_structure(p)
    if suffix in MESH_SUFFIXES:
        return _describe_mesh(p)
    known = sorted(
        set(VOLUME_SUFFIXES)
        | set(_TLT_SUFFIXES)
        | set(_XF_SUFFIXES)
        | {".aln", ".star"}
        | set(_AUTODOC_SUFFIXES)
        | set(COORDINATE_SUFFIXES)
        | set(STRUCTURE_SUFFIXES)
        | set(MESH_SUFFIXES)
    )
    raise FileFormatError(
        with_path(
            p, f"unknown file type {suffix or '(no suffix)'!r}; emkit reads {', '.join(known)}"
        )
    )
