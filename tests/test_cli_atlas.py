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
