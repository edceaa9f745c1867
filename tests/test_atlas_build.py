"""emkit atlas build / emkit sim mosaic: stitched positions against the truth, the pyramid,
the DeepZoom tiles, a single-image atlas, and bad inputs refused before anything is written."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import zarr
from PIL import Image

from emkit.atlas import build_atlas, level_size, max_level, write_simulated_mosaic
from emkit.cli.main import main


def _table(path: Path) -> dict[str, tuple[float, float]]:
    with open(path, newline="") as fh:
        return {r["file"]: (float(r["x_px"]), float(r["y_px"])) for r in csv.DictReader(fh)}


def _position_error(solved_csv: Path, true_csv: Path) -> np.ndarray:
    """Distance of each solved position to the truth, the overall translation removed
    (a mosaic's absolute position is not observable from its tiles)."""
    solved, true = _table(solved_csv), _table(true_csv)
    names = sorted(true)
    d = np.array([solved[n] for n in names]) - np.array([true[n] for n in names])
    d -= d.mean(axis=0)
    return np.hypot(d[:, 0], d[:, 1])


@pytest.fixture(scope="module")
def mosaic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3x3 tiles of 256 px, overlap 64, stage errors up to 30 px, TIFF tiles at 4 nm."""
    root = tmp_path_factory.mktemp("mosaic")
    write_simulated_mosaic(
        root / "sim", size=(640, 640), tile=256, overlap=64, position_error_px=30, seed=3
    )
    return root / "sim"


@pytest.fixture(scope="module")
def atlas(mosaic: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("atlas") / "atlas"
    assert (
        main(
            [
                "atlas",
                "build",
                str(mosaic / "positions.csv"),
                "--output",
                str(out),
                "--workers",
                "2",
                "--quiet",
            ]
        )
        == 0
    )
    return out


def test_positions_within_half_a_pixel_of_the_truth(mosaic: Path, atlas: Path) -> None:
    nominal = _position_error(mosaic / "positions.csv", mosaic / "true_positions.csv")
    assert nominal.max() > 10  # the stage errors are real
    error = _position_error(atlas / "positions.csv", mosaic / "true_positions.csv")
    assert error.max() < 0.5, error
    meta = json.loads((atlas / "atlas.json").read_text())
    assert meta["overlays"] == [] and meta["pixel_size_nm"] == pytest.approx(4.0)
    assert meta["overlaps_used"] == 12


@pytest.mark.parametrize("seed", [11, 12])
def test_other_seeds_and_png_tiles(tmp_path: Path, seed: int) -> None:
    sim = write_simulated_mosaic(
        tmp_path / "sim",
        size=(600, 800),
        tile=256,
        overlap=72,
        position_error_px=30,
        seed=seed,
        tile_format="png",
    )
    result = build_atlas(tmp_path / "sim" / "positions.csv", tmp_path / "out", workers=1)
    assert result.n_tiles == sim.n_tiles and result.pixel_size_nm is None
    error = _position_error(
        tmp_path / "out" / "positions.csv", tmp_path / "sim" / "true_positions.csv"
    )
    assert error.max() < 0.5, error


def test_idoc_gives_the_same_positions(mosaic: Path, atlas: Path, tmp_path: Path) -> None:
    result = build_atlas(mosaic / "positions.idoc", tmp_path / "idoc", workers=1)
    assert result.pixel_size_nm == pytest.approx(4.0)
    a, b = _table(atlas / "positions.csv"), _table(tmp_path / "idoc" / "positions.csv")
    assert all(np.allclose(a[k], b[k], atol=1e-3) for k in a)


def test_pyramid_levels(atlas: Path) -> None:
    group = zarr.open_group(str(atlas / "atlas.ome.zarr"), mode="r")
    meta = json.loads((atlas / "atlas.json").read_text())
    shapes = [group[str(k)].shape for k in range(meta["levels"])]
    assert shapes[0] == (meta["height"], meta["width"])
    for big, small in zip(shapes, shapes[1:]):
        assert small == (big[0] // 2, big[1] // 2)
    assert max(shapes[-1]) <= 256 < max(shapes[-2])
    ms = group.attrs["multiscales"][0]
    scales = [d["coordinateTransformations"][0]["scale"] for d in ms["datasets"]]
    assert scales[0] == pytest.approx([40.0, 40.0]) and scales[1] == pytest.approx([80.0, 80.0])
    assert ms["axes"][0]["unit"] == "angstrom"
    # Level 1 is the 2x2 mean of level 0.
    l0 = np.asarray(group["0"][:64, :64], np.float64)
    expected = np.rint(l0.reshape(32, 2, 32, 2).mean(axis=(1, 3)))
    assert np.abs(np.asarray(group["1"][:32, :32], np.float64) - expected).max() <= 1


def test_deepzoom_tiles(atlas: Path) -> None:
    meta = json.loads((atlas / "atlas.json").read_text())
    w, h = meta["width"], meta["height"]
    xml = (atlas / "atlas.dzi").read_text()
    assert 'TileSize="254"' in xml and 'Overlap="1"' in xml and 'Format="png"' in xml
    assert f'Width="{w}"' in xml and f'Height="{h}"' in xml
    top = max_level(w, h)
    files = atlas / "atlas_files"
    levels = [p.name for p in files.iterdir() if not p.name.startswith(".")]
    assert sorted(int(n) for n in levels) == list(range(top + 1))
    expected = sum(
        math.ceil(level_size(w, h, lv)[0] / 254) * math.ceil(level_size(w, h, lv)[1] / 254)
        for lv in range(top + 1)
    )
    assert len(list(files.rglob("*.png"))) == expected
    assert np.asarray(Image.open(files / "0" / "0_0.png")).shape == (1, 1)
    level0 = zarr.open_group(str(atlas / "atlas.ome.zarr"), mode="r")["0"]
    tile = np.asarray(Image.open(files / str(top) / "1_1.png"))
    assert tile.shape == (256, 256)
    assert np.array_equal(tile, np.asarray(level0[253:509, 253:509]))


def test_blended_mosaic_matches_the_specimen(mosaic: Path, atlas: Path) -> None:
    """Away from the edges the atlas shows tile 4 (the centre one) where it is alone."""
    pos = _table(atlas / "positions.csv")["tiles/tile_001_001.tif"]
    level0 = zarr.open_group(str(atlas / "atlas.ome.zarr"), mode="r")["0"]
    x, y = int(round(pos[0])), int(round(pos[1]))
    centre = np.asarray(level0[y + 100 : y + 150, x + 100 : x + 150], np.float64)
    tile = np.asarray(Image.open(mosaic / "tiles" / "tile_001_001.tif"), np.float64)
    assert np.abs(centre - tile[100:150, 100:150]).mean() < 1.0


def test_single_huge_image(tmp_path: Path) -> None:
    import tifffile

    rng = np.random.default_rng(0)
    image = (rng.random((700, 900)) * 65535).astype(np.uint16)
    from emkit.io import Volume, write_volume

    write_volume(tmp_path / "big.tif", Volume(data=image, voxel_size=(25.0, 25.0, 25.0)))
    out = tmp_path / "atlas"
    assert main(["atlas", "build", str(tmp_path / "big.tif"), "--output", str(out), "--quiet"]) == 0
    meta = json.loads((out / "atlas.json").read_text())
    assert (meta["width"], meta["height"], meta["pixel_size_nm"]) == (900, 700, 2.5)
    group = zarr.open_group(str(out / "atlas.ome.zarr"), mode="r")
    assert np.array_equal(group["0"][:], image)
    assert not (out / "positions.csv").exists()
    tile = np.asarray(Image.open(out / "atlas_files" / "10" / "0_0.png"))
    assert tile.shape == (255, 255) and tile.dtype == np.uint8
    # 16-bit data become 8-bit DeepZoom tiles, monotonic in the gray value
    a = image[:255, :255].ravel()
    order = np.argsort(a)
    assert np.all(np.diff(tile.ravel()[order].astype(int)) >= 0)
    assert tifffile.imread(tmp_path / "big.tif").shape == (700, 900)


def test_sim_mosaic_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(
            [
                "sim",
                "mosaic",
                "--output",
                str(tmp_path / "m"),
                "--size",
                "300",
                "400",
                "--tile",
                "128",
                "--overlap",
                "32",
                "--position-error",
                "10",
                "--seed",
                "2",
            ]
        )
        == 0
    )
    assert "tiles" in capsys.readouterr().out
    rows = _table(tmp_path / "m" / "positions.csv")
    assert len(rows) == len(_table(tmp_path / "m" / "true_positions.csv")) == 3 * 4
    assert (tmp_path / "m" / "positions.idoc").is_file()


# --------------------------------------------------------------------------- bad inputs


def _refused(argv: list[str], out: Path, capsys: pytest.CaptureFixture[str]) -> str:
    status = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(err) == 1, err
    assert not out.exists()
    return err[0]


@pytest.fixture
def tiles(tmp_path: Path, mosaic: Path) -> Path:
    """A copy of the small mosaic to spoil."""
    import shutil

    shutil.copytree(mosaic, tmp_path / "tiles")
    return tmp_path / "tiles"


def _build(src: Path, out: Path) -> list[str]:
    return ["atlas", "build", str(src), "--output", str(out), "--quiet"]


def test_tiles_of_different_sizes(tiles: Path, tmp_path: Path, capsys) -> None:
    from emkit.io import Volume, write_volume

    write_volume(
        tiles / "tiles" / "tile_002_002.tif",
        Volume(data=np.zeros((200, 256), np.uint8), voxel_size=(40.0,) * 3),
    )
    line = _refused(_build(tiles / "positions.csv", tmp_path / "out"), tmp_path / "out", capsys)
    assert "tile_002_002.tif" in line and "one size" in line


def test_tiles_of_different_pixel_sizes(tiles: Path, tmp_path: Path, capsys) -> None:
    from emkit.io import Volume, read_volume, write_volume

    path = tiles / "tiles" / "tile_001_000.tif"
    write_volume(path, Volume(data=read_volume(path).data, voxel_size=(50.0,) * 3))
    line = _refused(_build(tiles / "positions.csv", tmp_path / "out"), tmp_path / "out", capsys)
    assert "tile_001_000.tif" in line and "pixel size" in line


def test_missing_tile(tiles: Path, tmp_path: Path, capsys) -> None:
    (tiles / "tiles" / "tile_000_001.tif").unlink()
    line = _refused(_build(tiles / "positions.csv", tmp_path / "out"), tmp_path / "out", capsys)
    assert "tile_000_001.tif" in line and "positions.csv" in line


def test_not_a_tile_list(tmp_path: Path, capsys) -> None:
    (tmp_path / "list.csv").write_text("name,x,y\na.png,0,0\n")
    line = _refused(_build(tmp_path / "list.csv", tmp_path / "out"), tmp_path / "out", capsys)
    assert "file,x_px,y_px" in line
    (tmp_path / "bad.mdoc").write_text("PixelSpacing = 10\n")
    _refused(_build(tmp_path / "bad.mdoc", tmp_path / "out"), tmp_path / "out", capsys)


def test_output_folder_of_the_user(mosaic: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep")
    status = main(_build(mosaic / "positions.csv", out))
    assert status == 2 and len(capsys.readouterr().err.strip().splitlines()) == 1
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]


def test_least_squares_drops_an_outlier_overlap() -> None:
    """A 12x12 grid whose offsets carry 0.05 px noise and one overlap off by 40 px."""
    from emkit.atlas._stitch import PairResult, solve_positions

    rng = np.random.default_rng(0)
    g = 12
    true = np.array([(c * 1800.0, r * 1800.0) for r in range(g) for c in range(g)])
    nominal = true + rng.uniform(-30, 30, true.shape)
    pairs = []
    for i in range(g * g):
        for j in ([i + 1] if i % g < g - 1 else []) + ([i + g] if i + g < g * g else []):
            d = true[j] - true[i] + rng.normal(0, 0.05, 2)
            pairs.append(PairResult(i, j, d[0], d[1], 0.9, True))
    bad = pairs[7]
    pairs[7] = PairResult(bad.i, bad.j, bad.dx + 40, bad.dy, 0.9, True)
    solved = solve_positions(nominal, pairs)
    error = solved.positions_xy - true
    error -= error.mean(axis=0)
    assert np.hypot(error[:, 0], error[:, 1]).max() < 0.2
    assert solved.used.count(False) == 1 and not solved.used[7]
    # the mosaic's overall position is the nominal one's (mean correction zero)
    assert np.allclose((solved.positions_xy - nominal).mean(axis=0), 0, atol=1e-3)


@pytest.mark.parametrize("suffix", [".ome.zarr", ".mrc"])
def test_single_image_from_zarr_and_mrc(tmp_path: Path, suffix: str) -> None:
    from emkit.io import Volume, write_volume

    image = (np.random.default_rng(1).random((300, 520)) * 255).astype(np.uint8)
    src = tmp_path / f"big{suffix}"
    write_volume(src, Volume(data=image, voxel_size=(12.0, 12.0, 12.0)))
    result = build_atlas(src, tmp_path / "atlas", workers=1)
    assert (result.width, result.height) == (520, 300)
    assert result.pixel_size_nm == pytest.approx(1.2)
    level0 = zarr.open_group(str(tmp_path / "atlas" / "atlas.ome.zarr"), mode="r")["0"]
    assert np.array_equal(level0[:], image)


def test_serialem_mdoc_of_an_mrc_stack(mosaic: Path, atlas: Path, tmp_path: Path) -> None:
    """Pieces ``[ZValue = k]`` of ``stack.mrc`` listed in ``stack.mrc.mdoc``."""
    from emkit.io import Volume, read_volume, write_volume

    rows = list(_table(mosaic / "positions.csv").items())
    stack = np.stack([read_volume(mosaic / name).data for name, _ in rows])
    write_volume(tmp_path / "stack.mrc", Volume(data=stack, voxel_size=(40.0,) * 3))
    text = ["PixelSpacing = 40", ""]
    for z, (_, (x, y)) in enumerate(rows):
        text += [f"[ZValue = {z}]", f"PieceCoordinates = {x} {y} 0", ""]
    (tmp_path / "stack.mrc.mdoc").write_text("\n".join(text))
    result = build_atlas(tmp_path / "stack.mrc.mdoc", tmp_path / "out", workers=1)
    assert result.pixel_size_nm == pytest.approx(4.0) and result.n_tiles == 9
    solved = list(_table(tmp_path / "out" / "positions.csv").values())
    expected = [_table(atlas / "positions.csv")[name] for name, _ in rows]
    assert np.allclose(solved, expected, atol=1e-3)


def test_compressed_tiled_bigtiff_is_read_lazily(tmp_path: Path) -> None:
    import tifffile

    image = (np.random.default_rng(2).random((600, 700)) * 255).astype(np.uint8)
    tifffile.imwrite(
        tmp_path / "big.tif",
        image,
        bigtiff=True,
        compression="zlib",
        tile=(256, 256),
        resolution=(1e7 / 25, 1e7 / 25),
        resolutionunit="CENTIMETER",
    )
    result = build_atlas(tmp_path / "big.tif", tmp_path / "atlas", workers=1)
    assert (result.width, result.height) == (700, 600)
    assert result.pixel_size_nm == pytest.approx(25.0)  # 400,000 px per cm
    level0 = zarr.open_group(str(tmp_path / "atlas" / "atlas.ome.zarr"), mode="r")["0"]
    assert np.array_equal(level0[:], image)


def test_a_folder_that_is_not_an_image(tmp_path: Path, capsys) -> None:
    (tmp_path / "tiles").mkdir()
    line = _refused(_build(tmp_path / "tiles", tmp_path / "out"), tmp_path / "out", capsys)
    assert "is a folder" in line and ".csv" in line
