"""Every command's outputs are checked before any work and committed as one unit."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
from pathlib import Path

import pytest

from emkit.cli._run import Terminated, check_outputs, run_command, split_paths
from emkit.cli.main import main
from emkit.errors import OutputExistsError
from emkit.io import write_text_atomic


def _args(func=None, **paths: object) -> argparse.Namespace:
    return argparse.Namespace(func=func, **paths)


def test_paths_are_sorted_into_inputs_and_outputs(tmp_path: Path) -> None:
    args = _args(fixed=tmp_path / "a.png", files=[tmp_path / "b.mrc"], output=tmp_path / "o.png",
                 field=tmp_path / "f.npy", seed=3)
    inputs, outputs = split_paths(args)
    assert sorted(inputs) == [tmp_path / "a.png", tmp_path / "b.mrc"]
    assert outputs == {"output": tmp_path / "o.png", "field": tmp_path / "f.npy"}


@pytest.mark.parametrize(
    ("outputs", "message"),
    [
        ({"output": "w.npy", "field": "w.npy"}, "both as --output and --field"),
        ({"output": "a.tif", "fields": "a.tif/fields"}, "inside the --output"),
        ({"output": "in"}, "would contain the input"),
        ({"output": "user"}, "emkit did not write"),
        ({"output": "x" * 300 + ".mrc"}, "at most"),
    ],
)
def test_bad_outputs_are_refused_before_any_work(
    tmp_path: Path, outputs: dict[str, str], message: str
) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.mrc").write_text("input")
    (tmp_path / "user").mkdir()
    (tmp_path / "user" / "notes.txt").write_text("mine")
    with pytest.raises(OutputExistsError, match=message):
        check_outputs([tmp_path / "in" / "a.mrc"], {k: tmp_path / v for k, v in outputs.items()})


def test_read_only_place_is_refused_before_any_work(tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    if os.geteuid() == 0:
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs",
                                  str(folder)], capture_output=True)
        if mounted.returncode != 0:
            pytest.skip("cannot mount a read-only tmpfs here")
    else:
        folder.chmod(0o555)
    try:
        with pytest.raises(OutputExistsError, match="cannot write here"):
            check_outputs([], {"output": folder / "out.mrc"})
    finally:
        if os.geteuid() == 0:
            subprocess.run(["umount", "-l", str(folder)], check=False)
        folder.chmod(0o755)


def test_sigterm_is_an_interrupt_that_leaves_nothing(tmp_path: Path) -> None:
    def command(args: argparse.Namespace) -> int:
        write_text_atomic(tmp_path / "out" / "a.txt", "a")
        os.kill(os.getpid(), signal.SIGTERM)
        write_text_atomic(tmp_path / "out" / "b.txt", "b")  # pragma: no cover - not reached
        return 0

    with pytest.raises(Terminated):
        run_command(_args(func=command, output=tmp_path / "out"))
    assert list(tmp_path.iterdir()) == []
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_align_resume_refused_leaves_no_plot_folder(tmp_path: Path, capsys) -> None:
    assert main(["sim", "tiltseries", "--output", str(tmp_path / "sim"), "--shape", "12", "32",
                 "32", "--tilt-step", "6"]) == 0
    ts = tmp_path / "sim" / "tiltseries.mrc"
    bad_mask = tmp_path / "mask.mrc"
    bad_mask.write_bytes(b"not an mrc file at all")
    status = main(["tomo", "align", str(ts), "--output", str(tmp_path / "ali"), "--plot",
                   str(tmp_path / "plots"), "--mask", str(bad_mask), "--resume", "--quiet"])
    assert status == 2
    assert capsys.readouterr().err.count("\n") == 1
    assert not (tmp_path / "ali").exists() and not (tmp_path / "plots").exists()


@pytest.mark.parametrize(
    "argv",
    [
        ["sim", "tiltseries", "--shape", "12", "32", "32", "--tilt-step", "6"],
        ["sim", "section", "--size", "128", "128"],
        ["sim", "cell", "--shape", "24", "64", "64"],
        ["sim", "tomogram", "--shape", "32", "64", "64"],
    ],
)
def test_a_command_can_write_into_its_own_output_folder_again(tmp_path: Path, argv) -> None:
    out = tmp_path / "out"
    for _ in range(2):
        assert main([*argv, "--output", str(out)]) == 0
    assert (out / ".emkit").is_file() and (out / "emkit-run.json").is_file()
