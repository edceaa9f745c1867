"""``register stack`` on files: sections read one at a time, results streamed to disk.

Memory does not grow with the number of sections: each worker reads the two sections of
its pair itself, the main process renders one aligned section at a time into a scratch
Zarr array beside the output (then written in the output's format chunk by chunk), and
each section's field goes to the fields folder as soon as it exists. Only coarse node
grids (a few kB per pair), the full fields of the pairs that anchor damaged sections
and small thumbnails for the report stay in memory.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from emkit.register._files import (
    is_section_folder,
    list_sections,
    read_defect_mask,
    read_section,
)

__all__ = ["FileSections", "open_file_sections"]

# Long side of the per-section thumbnails kept for the report's overlays.
THUMBNAIL_PX = 256


def _open_stack(path: Path) -> Any:
    """A lazily indexable ``(n, y, x)`` array: Zarr opened lazily, MRC memory-mapped."""
    from emkit.io import open_zarr_array, read_volume

    if path.name.lower().endswith(".zarr"):
        return open_zarr_array(path)
    return read_volume(path, mmap=True).data


@dataclass
class FileSections:
    """A stack's sections (and defect masks) read from files when asked for.

    Small and picklable (paths only; opened arrays are dropped when pickled), so Dask
    workers read their own sections.
    """

    input_path: str
    files: list[str | None] | None
    mask_files: list[str | None] | None
    mask_stack: str | None
    section_shape: tuple[int, int]
    section_dtype: str
    flags: list[bool]
    section_names: list[str]
    _opened: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_opened"] = {}
        return state

    @property
    def n(self) -> int:
        return len(self.section_names)

    @property
    def shape(self) -> tuple[int, int]:
        return self.section_shape

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.section_dtype)

    @property
    def names(self) -> list[str]:
        return self.section_names

    def _array(self, path: str) -> Any:
        if path not in self._opened:
            self._opened[path] = _open_stack(Path(path))
        return self._opened[path]

    def section(self, index: int) -> np.ndarray:
        if self.files is not None:
            path = self.files[index]
            assert path is not None, f"section {index} was not given to this pair's source"
            data = read_section(Path(path), "section").data
        else:
            data = np.asarray(self._array(self.input_path)[index])
        return np.asarray(data, dtype=self.dtype) if data.dtype != self.dtype else data

    def mask(self, index: int) -> np.ndarray | None:
        if not self.flags[index]:
            return None
        if self.mask_files is not None:
            path = self.mask_files[index]
            assert path is not None
            return read_defect_mask(Path(path), self.shape, Path(self.section_names[index]))
        assert self.mask_stack is not None
        return np.asarray(self._array(self.mask_stack)[index]) != 0

    def damaged(self) -> list[bool]:
        return list(self.flags)

    def identity(self) -> list[Any]:
        def stamp(path: str | None) -> list[Any] | None:
            if path is None:
                return None
            info = Path(path).stat()
            return [str(Path(path).resolve()), info.st_size, info.st_mtime_ns]

        if self.files is not None:
            sections = [stamp(self.files[i]) for i in range(self.n)]
        else:
            sections = [stamp(self.input_path)]
        if self.mask_files is not None:
            masks: list[Any] = [stamp(self.mask_files[i]) for i in range(self.n)]
        else:
            masks = [stamp(self.mask_stack)]
        return [sections, masks, list(self.flags)]

    def only(self, indices: list[int]) -> FileSections:
        """The same source, knowing only the files of ``indices`` (what one pair job is
        sent: the other entries are None, so its size hardly grows with the stack)."""
        keep = set(indices)

        def pick(values: list[Any] | None, empty: Any = None) -> Any:
            if values is None:
                return None
            return [v if i in keep else empty for i, v in enumerate(values)]

        return FileSections(
            self.input_path,
            pick(self.files),
            pick(self.mask_files),
            self.mask_stack,
            self.section_shape,
            self.section_dtype,
            list(self.flags),
            pick(self.section_names, ""),
        )


def _folder_sections(path: Path) -> tuple[list[str], tuple[int, int], np.dtype]:
    """The folder's section files, checked one at a time (2D, one size, finite)."""
    from emkit.errors import InputError, MismatchError, with_path

    files = list_sections(path)
    if len(files) < 2:
        raise InputError(
            with_path(path, f"holds {len(files)} section images; a stack needs at least 2")
        )
    first = read_section(files[0], "section").data
    shape, dtype = (int(first.shape[0]), int(first.shape[1])), first.dtype
    for f in files[1:]:
        data = read_section(f, "section").data
        if data.dtype != dtype:
            raise MismatchError(
                with_path(
                    f,
                    f"holds {data.dtype} pixels but {files[0].name} holds {dtype}; give "
                    "sections of one pixel type (convert them, e.g. with emkit convert)",
                )
            )
        if data.shape != shape:
            raise MismatchError(
                with_path(
                    f,
                    f"is {data.shape[0]}x{data.shape[1]} but {files[0].name} is "
                    f"{shape[0]}x{shape[1]}; give sections of one size",
                )
            )
    return [str(f) for f in files], shape, dtype


def _stack_file_sections(path: Path) -> tuple[int, tuple[int, int], np.dtype]:
    """A stack file's size, checked section by section (3D, at least 2, finite)."""
    from emkit.errors import InputError, NonFiniteError, ShapeError, with_path

    data = _open_stack(path)
    if len(data.shape) != 3:
        raise ShapeError(
            with_path(path, f"has shape {tuple(data.shape)}; give a stack of sections (n, y, x)")
        )
    n = int(data.shape[0])
    if n < 2:
        raise InputError(with_path(path, "holds 1 section; a stack needs at least 2"))
    if np.issubdtype(data.dtype, np.floating):
        for i in range(n):
            if not np.isfinite(np.asarray(data[i])).all():
                raise NonFiniteError(
                    with_path(path, f"section {i} holds NaN or infinite values; fix or crop it")
                )
    return n, (int(data.shape[1]), int(data.shape[2])), np.dtype(data.dtype)


def _mask_folder(
    masks: Path, input_path: Path, names: list[str], shape: tuple[int, int]
) -> tuple[list[str | None], list[bool]]:
    """Masks named like the sections (a folder input) or one per section in name order."""
    from emkit.errors import InputError, MismatchError, with_path

    files = {p.stem: p for p in list_sections(masks)}
    if not files:
        raise InputError(
            with_path(masks, "holds no mask images (.png, .tif, ...); give the masks folder")
        )
    if is_section_folder(input_path):
        stems = {Path(n).stem: i for i, n in enumerate(names)}
        for stem, mask_file in files.items():
            if stem not in stems:
                # Ignoring it would leave that section's defect unmasked, silently.
                raise MismatchError(
                    with_path(
                        mask_file,
                        f"names no section in {input_path}; name each mask like its "
                        "section (same file stem)",
                    )
                )
        chosen: list[Path | None] = [files.get(Path(n).stem) for n in names]
    else:
        ordered = [files[k] for k in sorted(files)]
        if len(ordered) != len(names):
            raise MismatchError(
                with_path(
                    masks, f"holds {len(ordered)} masks for {len(names)} sections; give one each"
                )
            )
        chosen = list(ordered)
    flags = []
    for path, name in zip(chosen, names):
        # Read once to check the size (and whether it marks anything), then let it go.
        flags.append(path is not None and bool(read_defect_mask(path, shape, Path(name)).any()))
    return [None if p is None else str(p) for p in chosen], flags


def _mask_stack(masks: Path, n: int, shape: tuple[int, int]) -> list[bool]:
    from emkit.errors import MismatchError, with_path

    data = _open_stack(masks)
    if tuple(data.shape) != (n, *shape):
        raise MismatchError(
            with_path(
                masks,
                f"mask stack has shape {tuple(data.shape)}; expected {(n, *shape)} like the "
                "sections",
            )
        )
    return [bool(np.asarray(data[i]).any()) for i in range(n)]


def open_file_sections(input_path: Path, masks: Path | None) -> tuple[FileSections, Any]:
    """Check a stack on disk (a folder of images or a stack file, and its masks) without
    holding it; return the lazy source and the voxel size to keep."""
    from emkit.errors import MissingFileError, with_path
    from emkit.io import read_volume

    if not input_path.exists():
        raise MissingFileError(
            with_path(input_path, "does not exist; give a folder or a stack file")
        )
    if is_section_folder(input_path):
        files, shape, dtype = _folder_sections(input_path)
        names = files
        voxel_size = read_volume(Path(files[0])).voxel_size
    else:
        n, shape, dtype = _stack_file_sections(input_path)
        files = None
        names = [f"{input_path}[{i}]" for i in range(n)]
        voxel_size = read_volume(input_path, mmap=True).voxel_size
    mask_files: list[str | None] | None = None
    mask_stack: str | None = None
    flags = [False] * len(names)
    if masks is not None:
        if not masks.exists():
            raise MissingFileError(with_path(masks, "does not exist; give the masks folder"))
        if masks.is_dir() and is_section_folder(masks):
            mask_files, flags = _mask_folder(masks, input_path, names, shape)
        else:
            mask_stack = str(masks)
            flags = _mask_stack(masks, len(names), shape)
    listed: list[str | None] | None = None if files is None else list(files)
    source = FileSections(
        str(input_path), listed, mask_files, mask_stack, shape, dtype.str, flags, names
    )
    return source, voxel_size


@dataclass
class StackSink:
    """Receives each aligned section: into a scratch Zarr array, fields to the folder,
    a thumbnail kept for the report."""

    scratch: Any
    fields_dir: Path
    thumbnails: dict[int, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    written: set[str] = field(default_factory=set)

    def __call__(
        self, index: int, aligned: np.ndarray, field_: np.ndarray, valid: np.ndarray
    ) -> None:
        import cv2

        from emkit.io import write_volume

        self.scratch[index] = aligned
        write_volume(self.fields_dir / f"section_{index:04d}.npy", field_)
        write_volume(self.fields_dir / f"valid_{index:04d}.png", valid)
        self.written |= {f"section_{index:04d}.npy", f"valid_{index:04d}.png"}
        h, w = aligned.shape
        scale = min(1.0, THUMBNAIL_PX / max(h, w))
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        small = cv2.resize(aligned.astype(np.float32), size, interpolation=cv2.INTER_AREA)
        small_valid = cv2.resize(valid.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST)
        # Kept as 8 bit (about 65 kB a section): the overlays rescale each thumbnail anyway.
        inside = small[small_valid > 0] if small_valid.any() else small.ravel()
        lo, hi = (float(v) for v in np.percentile(inside, [0.5, 99.5]))
        small8 = np.clip((small - lo) * (255.0 / max(hi - lo, 1e-6)), 0, 255).astype(np.uint8)
        self.thumbnails[index] = (small8, small_valid.astype(bool))


def prepare_work_dir(work_dir: Path, *, resume: bool) -> Path:
    """The folder that keeps pair results across runs (not removed when a run fails).

    Without ``resume`` an earlier run's pairs there are cleared (the folder must be
    emkit's: it holds ``stack.json``); with ``resume`` it must exist.
    """
    from emkit.errors import InputError, with_path

    stamp = work_dir / "stack.json"
    if resume:
        if not stamp.is_file():
            raise InputError(
                with_path(
                    work_dir,
                    "holds no earlier run of register stack to resume; run without --resume",
                )
            )
        return work_dir
    if work_dir.exists():
        if not stamp.is_file() and any(work_dir.iterdir()):
            raise InputError(
                with_path(
                    work_dir,
                    "exists and is not an emkit work folder; give another --work-dir",
                )
            )
        for old in (work_dir / "pairs").glob("pair_*.npz"):
            old.unlink()
        stamp.unlink(missing_ok=True)
    work_dir.mkdir(parents=True, exist_ok=True)
    return work_dir


def write_index(fields_dir: Path, reference: int | None, names: list[str]) -> None:
    from emkit.register._files import write_json

    write_json(
        fields_dir / "index.json",
        {
            "reference": reference,
            "frame": "the stack's common frame" if reference is None else f"section {reference}",
            "sections": names,
            "convention": "field[:, y, x] = (dy, dx) from common-frame pixel to section pixel",
        },
    )


def record_of(result: Any, names: list[str], fields_dir: Path, relax: str) -> dict[str, Any]:
    """The run record's numbers: frame, pairs and their residuals, per-section summary."""
    sections = [{"section": names[i], **info} for i, info in enumerate(result.pair_info)]
    residual = [None if not np.isfinite(r) else round(float(r), 4) for r in result.residual_px]
    return {
        "relax": relax,
        "reference": result.reference,
        "fields": str(fields_dir),
        "pairs": sections,
        "registered_pairs": result.pairs,
        "residual_px": residual,
    }


def json_safe(value: Any) -> Any:
    return json.loads(
        json.dumps(value, default=lambda v: v.item() if hasattr(v, "item") else str(v))
    )


def scratch_path(output: Path) -> Path:
    from emkit.io import file_stem
    from emkit.io._tempfiles import temp_name

    return temp_name(output.with_name(file_stem(output) + "-aligned.zarr"))


def remove_scratch(path: Path) -> None:
    from emkit.io._tempfiles import remove_path

    remove_path(path)


def cpu_workers(workers: int | None, scheduler: str | None) -> int:
    return workers or (0 if scheduler else os.cpu_count() or 1)
