"""Outputs appear only when complete and never replace an input."""

from __future__ import annotations

from pathlib import Path

import pytest

from emkit.errors import EmkitError, OutputExistsError
from emkit.io._atomic import atomic_output, check_not_input, require_output_folder


def test_file_appears_only_on_success(tmp_path: Path) -> None:
    target = tmp_path / "out.mrc"
    with atomic_output(target) as tmp:
        assert tmp.suffix == ".mrc" and tmp.parent == tmp_path
        tmp.write_text("complete")
        assert not target.exists()
    assert target.read_text() == "complete"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mrc"]


def test_failure_leaves_nothing_and_keeps_old_file(tmp_path: Path) -> None:
    target = tmp_path / "out.tif"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_output(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("interrupted")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.tif"]


def test_directory_output_replaced_whole(tmp_path: Path) -> None:
    target = tmp_path / "vol.zarr"
    target.mkdir()
    (target / "old").write_text("x")
    with atomic_output(target, directory=True) as tmp:
        tmp.mkdir()
        (tmp / "new").write_text("y")
    assert [p.name for p in target.iterdir()] == ["new"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["vol.zarr"]


def test_output_equal_to_input_is_refused(tmp_path: Path) -> None:
    source = tmp_path / "a.mrc"
    with pytest.raises(OutputExistsError) as info:
        check_not_input(tmp_path / "." / "a.mrc", [None, source])
    assert isinstance(info.value, EmkitError) and isinstance(info.value, FileExistsError)
    assert "a.mrc" in str(info.value)
    check_not_input(tmp_path / "b.mrc", [source])


def test_file_output_onto_a_folder_is_refused_and_leaves_nothing(tmp_path: Path) -> None:
    folder = tmp_path / "out.mrc"
    folder.mkdir()
    (folder / "keep").write_text("x")
    with pytest.raises(OutputExistsError, match="out.mrc: is a folder"):
        with atomic_output(folder) as tmp:
            tmp.write_text("data")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mrc"]
    assert [p.name for p in folder.iterdir()] == ["keep"]


def test_folder_output_replaces_a_file_without_leftovers(tmp_path: Path) -> None:
    target = tmp_path / "vol.zarr"
    target.write_text("old file")
    with atomic_output(target, directory=True) as tmp:
        tmp.mkdir()
        (tmp / "new").write_text("y")
    assert target.is_dir() and [p.name for p in target.iterdir()] == ["new"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["vol.zarr"]


def test_a_file_in_the_way_of_an_output_folder_is_refused(tmp_path: Path) -> None:
    blocker = tmp_path / "afile"
    blocker.write_text("not a folder")
    for output in (blocker, blocker / "sub", blocker / "sub" / "x.mrc"):
        with pytest.raises(OutputExistsError, match="afile: is a file, not a folder"):
            require_output_folder(output)
    with pytest.raises(OutputExistsError, match="afile"):
        check_not_input(blocker / "x.mrc", [])
    with pytest.raises(OutputExistsError, match="afile"), atomic_output(blocker / "x.mrc"):
        pass
    assert require_output_folder(tmp_path / "new" / "deeper") == tmp_path / "new" / "deeper"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]
