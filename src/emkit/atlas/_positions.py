"""Tile lists: a CSV of stage positions or a SerialEM .mdoc/.idoc, checked before any work.

A tile list says, for every tile, which image it is (a file, or one section of an MRC
stack) and where its top-left corner sits in mosaic pixels (``x_px``, ``y_px``, nominal:
what the stage reported). :func:`read_tile_list` reads one and checks that every file
exists and that all tiles have one size and one pixel size, naming the file at fault.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from emkit.errors import FileFormatError, InputError, MismatchError, MissingFileError, with_path

TILE_LIST_SUFFIXES = (".csv", ".mdoc", ".idoc")


@dataclass(frozen=True)
class Tile:
    """One tile: its image (``path``, and ``section`` for a slice of an MRC stack)."""

    name: str
    path: Path
    section: int | None = None


@dataclass
class TileSet:
    """Tiles of one mosaic, with their nominal top-left corners ``(x, y)`` in pixels."""

    tiles: list[Tile]
    nominal_xy: np.ndarray  # (n, 2) float64
    shape: tuple[int, int] = (0, 0)  # (H, W) of every tile
    dtype: np.dtype = field(default_factory=lambda: np.dtype(np.uint8))
    pixel_size_nm: float | None = None
    source: Path = Path()

    @property
    def n(self) -> int:
        return len(self.tiles)


def is_tile_list(path: Path) -> bool:
    """True for the inputs that list tiles (``.csv``, ``.mdoc``, ``.idoc``)."""
    return path.suffix.lower() in TILE_LIST_SUFFIXES


def read_tile_list(path: Path, *, pixel_size_nm: float | None = None) -> TileSet:
    """Read and check a tile list (see the module docstring).

    Raises
    ------
    MissingFileError
        The list, or a file it names, does not exist.
    FileFormatError
        The list is not a tile list (missing columns, unreadable numbers, no tiles).
    MismatchError
        Tiles of different sizes, dtypes or pixel sizes.
    """
    if not path.is_file():
        raise MissingFileError(with_path(path, "no such tile list; check the path"))
    if path.suffix.lower() == ".csv":
        try:
            text = path.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as error:
            raise FileFormatError(with_path(path, f"cannot be read as text ({error})")) from None
        tiles, xy = _parse_csv(text, path)
        list_ps = None
    else:
        tiles, xy, list_ps = _parse_serialem(path)
    if not tiles:
        raise FileFormatError(with_path(path, "lists no tiles; give at least one tile"))
    tile_set = TileSet(tiles, np.asarray(xy, np.float64).reshape(-1, 2), source=path)
    _check_tiles(tile_set, list_ps, pixel_size_nm)
    return tile_set


def _parse_csv(text: str, path: Path) -> tuple[list[Tile], list[tuple[float, float]]]:
    reader = csv.DictReader(text.splitlines())
    columns = [c.strip() for c in (reader.fieldnames or [])]
    missing = [c for c in ("file", "x_px", "y_px") if c not in columns]
    if missing:
        raise FileFormatError(
            with_path(
                path,
                f"is not a tile list: column(s) {', '.join(missing)} missing (it has "
                f"{', '.join(columns) or 'none'}); give a CSV with columns file,x_px,y_px",
            )
        )
    tiles: list[Tile] = []
    xy: list[tuple[float, float]] = []
    for line, row in enumerate(reader, start=2):
        row = {(k or "").strip(): (v or "").strip() for k, v in row.items()}
        if not row.get("file"):
            continue
        try:
            x, y = float(row["x_px"]), float(row["y_px"])
        except ValueError:
            raise FileFormatError(
                with_path(
                    path,
                    f"line {line}: x_px/y_px {row['x_px']!r}, {row['y_px']!r} "
                    "are not numbers; fix the position",
                )
            ) from None
        if not (np.isfinite(x) and np.isfinite(y)):
            raise FileFormatError(with_path(path, f"line {line}: position is not finite"))
        tile_path = (path.parent / row["file"]).resolve()
        tiles.append(Tile(row["file"], tile_path))
        xy.append((x, y))
    return tiles, xy


def _parse_serialem(path: Path) -> tuple[list[Tile], list[tuple[float, float]], float | None]:
    """SerialEM autodoc (:func:`emkit.io.read_autodoc`): ``[ZValue = k]`` pieces of the MRC
    stack the .mdoc belongs to (``stack.mrc.mdoc`` -> ``stack.mrc``), or ``[Image = file]``
    pieces (.idoc), each with ``PieceCoordinates = x y z``. The pixel size is
    ``PixelSpacing`` in Å."""
    from emkit.io import read_autodoc

    doc = read_autodoc(path)
    stack = path.with_name(path.name[: -len(path.suffix)]) if path.suffix else path
    tiles: list[Tile] = []
    xy: list[tuple[float, float]] = []
    for section in doc.sections:
        if section.kind == "ZValue":
            try:
                z = int(section.value)
            except ValueError:
                raise FileFormatError(with_path(path, f"line {section.line}: ZValue "
                                                f"{section.value!r} is not a number")) from None
            tile = Tile(f"{stack.name}[{z}]", stack, z)
        elif section.kind == "Image":
            tile = Tile(section.value, (path.parent / section.value).resolve())
        else:
            continue
        if "PieceCoordinates" not in section.keys:
            continue
        value = section.keys["PieceCoordinates"]
        try:
            x, y = (float(v) for v in value.split()[:2])
        except ValueError:
            raise FileFormatError(with_path(
                path, f"section at line {section.line}: PieceCoordinates {value!r} are not "
                "numbers; fix the autodoc")) from None
        tiles.append(tile)
        xy.append((x, y))
    if not tiles:
        raise FileFormatError(
            with_path(
                path,
                "has no [ZValue]/[Image] sections with PieceCoordinates; give "
                "the .mdoc/.idoc of a SerialEM montage",
            )
        )
    pixel_A = doc.pixel_spacing_A
    return tiles, xy, (pixel_A / 10.0 if pixel_A else None)


def tile_header(tile: Tile, source: Path) -> tuple[tuple[int, int], np.dtype, float | None]:
    """(H, W), dtype and pixel size (nm) of a tile, reading no more than needed."""
    from emkit.io import read_volume

    if not tile.path.exists():
        raise MissingFileError(
            with_path(
                source,
                f"names {tile.name}, which does not exist ({tile.path}); "
                "fix the list or copy the tile beside it",
            )
        )
    volume = read_volume(tile.path, mmap=True)
    data = volume.data
    if tile.section is not None:
        if data.ndim != 3 or not 0 <= tile.section < data.shape[0]:
            n = data.shape[0] if data.ndim == 3 else 1
            raise InputError(
                with_path(
                    source,
                    f"piece {tile.section} is not in {tile.path.name} "
                    f"({n} sections); give the .mdoc of this stack",
                )
            )
        shape = data.shape[1:]
    else:
        if data.ndim != 2:
            raise InputError(
                with_path(
                    tile.path,
                    f"is not a single 2D image (shape {data.shape}); give one image per tile",
                )
            )
        shape = data.shape
    ps = None if volume.voxel_size is None else float(volume.voxel_size[2]) / 10.0
    return (int(shape[0]), int(shape[1])), np.dtype(data.dtype), ps


def _check_tiles(tile_set: TileSet, list_ps: float | None, given_ps: float | None) -> None:
    first_shape = first_dtype = first_ps = None
    first_name = ""
    seen_stacks: dict[Path, tuple] = {}
    for tile in tile_set.tiles:
        if tile.section is not None and tile.path in seen_stacks:
            shape, dtype, ps = seen_stacks[tile.path]
            if not tile.path.exists():
                raise MissingFileError(with_path(tile_set.source, f"{tile.path} is missing"))
        else:
            shape, dtype, ps = tile_header(tile, tile_set.source)
            if tile.section is not None:
                seen_stacks[tile.path] = (shape, dtype, ps)
                from emkit.io import read_volume

                n = read_volume(tile.path, mmap=True).data.shape[0]
                bad = [
                    t.section
                    for t in tile_set.tiles
                    if t.path == tile.path and not 0 <= (t.section or 0) < n
                ]
                if bad:
                    raise InputError(
                        with_path(
                            tile_set.source,
                            f"piece {bad[0]} is not in "
                            f"{tile.path.name} ({n} sections); give the matching stack",
                        )
                    )
        if first_shape is None:
            first_shape, first_dtype, first_ps, first_name = shape, dtype, ps, tile.name
            continue
        if shape != first_shape:
            raise MismatchError(
                with_path(
                    tile.path,
                    f"is {shape[0]}x{shape[1]} but {first_name} is "
                    f"{first_shape[0]}x{first_shape[1]} (rows x cols); all tiles of a "
                    "mosaic must have one size",
                )
            )
        if dtype != first_dtype:
            raise MismatchError(
                with_path(
                    tile.path,
                    f"holds {dtype} pixels but {first_name} holds "
                    f"{first_dtype}; convert the tiles to one type",
                )
            )
        if ps is not None and first_ps is not None and abs(ps - first_ps) > 1e-3 * first_ps:
            raise MismatchError(
                with_path(
                    tile.path,
                    f"has a pixel size of {ps:g} nm but {first_name} has "
                    f"{first_ps:g} nm; all tiles must have one pixel size",
                )
            )
        if (ps is None) != (first_ps is None):
            raise MismatchError(
                with_path(
                    tile.path,
                    "pixel size "
                    f"{'unknown' if ps is None else f'{ps:g} nm'} but {first_name}: "
                    f"{'unknown' if first_ps is None else f'{first_ps:g} nm'}; all "
                    "tiles must have one pixel size",
                )
            )
    assert first_shape is not None and first_dtype is not None
    if min(first_shape) < 16:
        raise InputError(
            with_path(
                tile_set.source,
                f"tiles of {first_shape} px are too small "
                "to stitch; give tiles of at least 16x16 px",
            )
        )
    tile_set.shape = first_shape
    tile_set.dtype = first_dtype
    tile_set.pixel_size_nm = given_ps or first_ps or list_ps
