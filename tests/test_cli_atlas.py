"""The ``emkit atlas`` command group: help, and a build whose output names the numbers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from emkit.cli.main import main


def test_atlas_without_a_subcommand_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["atlas"]) == 0
    assert "build" in capsys.readouterr().out


def test_build_reports_tiles_and_writes_a_run_record(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        main(
            [
                "sim",
                "mosaic",
                "--output",
                str(tmp_path / "m"),
                "--size",
                "320",
                "320",
                "--tile",
                "192",
                "--overlap",
                "64",
                "--position-error",
                "20",
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert (
        main(
            [
                "atlas",
                "build",
                str(tmp_path / "m" / "positions.csv"),
                "--output",
                str(tmp_path / "a"),
                "--workers",
                "1",
                "--quiet",
            ]
        )
        == 0
    )
    line = capsys.readouterr().out.strip()
    assert "4 tiles" in line and "overlaps used" in line
    record = json.loads((tmp_path / "a" / "emkit-run.json").read_text())
    assert record["results"]["tiles"] == 4 and record["results"]["overlaps_used"] >= 4
    names = {p.name for p in (tmp_path / "a").iterdir()}
    assert {"atlas.ome.zarr", "atlas.dzi", "atlas_files", "atlas.json", "positions.csv"} <= names


def test_build_with_overlays_lists_them_for_the_page(tmp_path: Path) -> None:
    """`--overlay` copies each layer into the atlas and lists it in atlas.json, where the
    viewer (serve/export) reads it."""
    import numpy as np

    from emkit.atlas._web import read_atlas
    from emkit.io import write_volume

    image = (np.arange(300 * 400).reshape(300, 400) % 251).astype(np.uint8)
    write_volume(tmp_path / "section.png", image)
    mask = np.zeros((300, 400), np.uint8)
    mask[100:140, :] = 255
    write_volume(tmp_path / "defects.png", mask)
    (tmp_path / "picks.csv").write_text("x,y\n10,20\n200,150\n")
    out = tmp_path / "atlas"
    status = main(
        [
            "atlas",
            "build",
            str(tmp_path / "section.png"),
            "--output",
            str(out),
            "--overlay",
            f"mask:{tmp_path / 'defects.png'}:fold",
            "--overlay",
            f"points:{tmp_path / 'picks.csv'}",
            "--quiet",
        ]
    )
    assert status == 0
    meta = json.loads((out / "atlas.json").read_text())
    assert [(o["name"], o["kind"]) for o in meta["overlays"]] == [
        ("fold", "mask"),
        ("picks", "points"),
    ]
    for entry in meta["overlays"]:
        assert (out / entry["file"]).is_file()
    atlas = read_atlas(out)
    assert [o.name for o in atlas.overlays] == ["fold", "picks"]


def test_build_refuses_a_bad_overlay_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import numpy as np

    from emkit.io import write_volume

    write_volume(tmp_path / "section.png", np.zeros((64, 64), np.uint8))
    (tmp_path / "picks.txt").write_text("x,y\n1,2\n")
    out = tmp_path / "atlas"
    for spec in (f"points:{tmp_path / 'picks.txt'}", f"mask:{tmp_path / 'missing.png'}"):
        assert (
            main(
                [
                    "atlas",
                    "build",
                    str(tmp_path / "section.png"),
                    "--output",
                    str(out),
                    "--overlay",
                    spec,
                    "--quiet",
                ]
            )
            == 2
        )
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1
        assert not out.exists()
