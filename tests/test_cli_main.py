"""The CLI shell: version, help without heavy imports, exit statuses."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from emkit import __version__
from emkit.cli import main as cli_main
from emkit.errors import MismatchError


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli_main.main(["--version"])
    assert exit_info.value.code == 0
    assert __version__ in capsys.readouterr().out


def test_help_does_not_import_torch_or_dask() -> None:
    code = (
        "import sys\n"
        "from emkit.cli.main import build_parser\n"
        "build_parser().format_help()\n"
        "heavy = [m for m in ('torch', 'dask', 'distributed', 'cv2') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def _parser_with(func: object) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="emkit")
    parser.add_argument("-v", "--verbose", action="count", default=0)
    sub = parser.add_subparsers()
    sub.add_parser("boom").set_defaults(func=func)
    return parser


def test_user_error_exits_2_with_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def fail(args: argparse.Namespace) -> int:
        raise MismatchError("tilts.tlt: 59 angles but the stack\nhas 61 images; give one per image")

    monkeypatch.setattr(cli_main, "build_parser", lambda: _parser_with(fail))
    assert cli_main.main(["boom"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "tilts.tlt" in err and "Traceback" not in err


def test_unexpected_failure_exits_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def crash(args: argparse.Namespace) -> int:
        raise RuntimeError("bug")

    monkeypatch.setattr(cli_main, "build_parser", lambda: _parser_with(crash))
    assert cli_main.main(["boom"]) == 1
    assert "please report" in capsys.readouterr().err


def test_console_script_runs() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "emkit.cli.main", "--help"], capture_output=True, text=True
    )
    assert out.returncode == 0
    assert "demo" in out.stdout


@pytest.mark.parametrize(
    "argv",
    [
        ["demo", "--output", "{blocker}"],
        ["sim", "tiltseries", "--output", "{blocker}/sub"],
        ["sim", "section", "--output", "{blocker}"],
    ],
)
def test_output_folder_blocked_by_a_file_exits_2_before_any_work(
    argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    assert cli_main.main([a.format(blocker=blocker) for a in argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "afile: is a file, not a folder" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


def test_closed_pipe_stops_quietly(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def write_to_closed_pipe(args: argparse.Namespace) -> int:
        raise BrokenPipeError

    monkeypatch.setattr(cli_main, "build_parser", lambda: _parser_with(write_to_closed_pipe))
    assert cli_main.main(["boom"]) == 141
    assert capsys.readouterr().err == ""
