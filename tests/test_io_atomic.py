"""Outputs appear only when complete and never replace an input."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest

from emkit.errors import DiskFullError, EmkitError, OutputExistsError
from emkit.io import make_output_folder, output_run, require_free_space, write_text_atomic
from emkit.io._atomic import atomic_output, check_not_input, require_output_folder
from emkit.io._tempfiles import temp_name


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


def test_directory_output_replaced_whole_only_when_emkit_wrote_it(tmp_path: Path) -> None:
    target = tmp_path / "vol.zarr"
    with atomic_output(target, directory=True) as tmp:
        tmp.mkdir()
        (tmp / "old").write_text("x")
    with atomic_output(target, directory=True) as tmp:
        tmp.mkdir()
        (tmp / "new").write_text("y")
    assert sorted(p.name for p in target.iterdir()) == [".emkit", "new"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["vol.zarr"]


def test_a_folder_emkit_did_not_write_is_never_replaced(tmp_path: Path) -> None:
    target = tmp_path / "vol.zarr"
    target.mkdir()
    (target / "user-data").write_text("precious")
    with pytest.raises(OutputExistsError, match="emkit did not write"):
        with atomic_output(target, directory=True) as tmp:
            tmp.mkdir()
    assert (target / "user-data").read_text() == "precious"
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
    assert target.is_dir() and sorted(p.name for p in target.iterdir()) == [".emkit", "new"]
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


@pytest.mark.parametrize(
    ("output", "source"),
    [
        ("store.zarr", "store.zarr/tiltseries.mrc"),  # the output would contain the input
        ("sections/aligned.tif", "sections"),  # the output would sit inside the input
        ("a.mrc", "a.mrc"),
    ],
)
def test_output_touching_an_input_is_refused(tmp_path: Path, output: str, source: str) -> None:
    (tmp_path / "store.zarr").mkdir()
    (tmp_path / "store.zarr" / "tiltseries.mrc").write_text("input")
    (tmp_path / "sections").mkdir()
    with pytest.raises(OutputExistsError, match="input|also an input"):
        check_not_input(tmp_path / output, [tmp_path / source])


def test_link_to_an_input_counts_as_the_input(tmp_path: Path) -> None:
    source = tmp_path / "a.mrc"
    source.write_text("input")
    (tmp_path / "link.mrc").symlink_to(source)
    with pytest.raises(OutputExistsError):
        check_not_input(tmp_path / "link.mrc", [source])


def test_run_commits_all_outputs_together(tmp_path: Path) -> None:
    with output_run(inputs=[]):
        write_text_atomic(tmp_path / "a.txt", "a")
        write_text_atomic(tmp_path / "sub" / "b.txt", "b")
        assert not (tmp_path / "a.txt").exists() and not (tmp_path / "sub" / "b.txt").exists()
    assert (tmp_path / "a.txt").read_text() == "a" and (tmp_path / "sub" / "b.txt").read_text()
    assert _visible_and_hidden(tmp_path) == ["a.txt", "sub", "sub/b.txt"]


def test_failed_run_leaves_nothing_and_keeps_old_outputs(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("old")
    for failure in (RuntimeError("bug"), KeyboardInterrupt()):
        with pytest.raises(type(failure)), output_run(inputs=[]):
            write_text_atomic(tmp_path / "a.txt", "new")
            make_output_folder(tmp_path / "plots" / "deep")
            write_text_atomic(tmp_path / "new" / "b.txt", "b")
            raise failure
        assert _visible_and_hidden(tmp_path) == ["a.txt"]
        assert (tmp_path / "a.txt").read_text() == "old"


def test_run_refuses_an_output_onto_its_input_or_written_twice(tmp_path: Path) -> None:
    source = tmp_path / "in" / "x.mrc"
    source.parent.mkdir()
    source.write_text("input")
    with pytest.raises(OutputExistsError, match="also an input"), output_run(inputs=[source]):
        write_text_atomic(source, "clobber")
    with pytest.raises(OutputExistsError, match="inside the input"), output_run(
        inputs=[source.parent]
    ):
        write_text_atomic(source.parent / "emkit-run.json", "{}")
    with pytest.raises(OutputExistsError, match="written twice"), output_run(inputs=[]):
        write_text_atomic(tmp_path / "w.npy", "1")
        write_text_atomic(tmp_path / "w.npy", "2")
    assert source.read_text() == "input"
    assert _visible_and_hidden(tmp_path) == ["in", "in/x.mrc"]


def test_output_folder_must_be_new_empty_or_emkits(tmp_path: Path) -> None:
    user = tmp_path / "data"
    user.mkdir()
    (user / "notes.txt").write_text("mine")
    with pytest.raises(OutputExistsError, match="emkit did not write"):
        make_output_folder(user)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert (make_output_folder(empty) / ".emkit").is_file()
    (empty / "result.mrc").write_text("x")
    make_output_folder(empty)  # emkit's own folder: a later run may write into it again
    assert (user / "notes.txt").read_text() == "mine"


def test_stale_temporaries_of_dead_runs_are_removed(tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    pid = int(dead.stdout)
    stale = temp_name(tmp_path / "x.mrc").name.replace(f"-{os.getpid()}-", f"-{pid}-")
    (tmp_path / stale).write_text("left by a killed run")
    live = temp_name(tmp_path / "y.mrc")
    live.write_text("a run in progress")
    (tmp_path / ".hidden-user-file").write_text("mine")
    write_text_atomic(tmp_path / "z.txt", "z")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [live.name, ".hidden-user-file", "z.txt"]
    )


def test_too_long_a_name_is_refused_before_writing(tmp_path: Path) -> None:
    with pytest.raises(OutputExistsError, match="at most"):
        write_text_atomic(tmp_path / ("x" * 300 + ".mrc"), "data")
    assert list(tmp_path.iterdir()) == []


def test_full_disk_is_one_error_and_leaves_nothing(tmp_path: Path) -> None:
    def fill(path: Path) -> None:
        path.write_text("partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(DiskFullError, match="disk full"), atomic_output(tmp_path / "a.mrc") as t:
        fill(t)
    with pytest.raises(DiskFullError, match="MiB needed"):
        require_free_space(tmp_path, 2**62)
    assert list(tmp_path.iterdir()) == []


_WRITER = """
import sys
from pathlib import Path
from emkit.io import output_run, write_text_atomic
out, tag = Path(sys.argv[1]), sys.argv[2]
for _ in range(40):
    with output_run():
        for name in ("a.txt", "b.txt", "c.txt", "emkit-run.json"):
            write_text_atomic(out / name, tag)
"""


def test_concurrent_runs_into_one_folder_leave_one_consistent_set(tmp_path: Path) -> None:
    procs = [
        subprocess.Popen([sys.executable, "-c", _WRITER, str(tmp_path), str(tag)],
                         stderr=subprocess.PIPE, text=True)
        for tag in range(4)
    ]
    errors = [p.communicate()[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], errors
    names = ("a.txt", "b.txt", "c.txt", "emkit-run.json")
    assert len({(tmp_path / n).read_text() for n in names}) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names)


def _visible_and_hidden(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))
