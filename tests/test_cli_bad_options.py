"""Bad options are refused before any work: exit 2, one line on stderr, nothing written.

The first tests are generated: they walk the parser that ``emkit`` builds and, for every
option whose type declares ``invalid_examples`` (see :mod:`emkit.cli._options`) and every
option with ``choices``, run the command with a valid base command line plus that bad
value. An option added later with a declared type is covered without touching this file;
an option with a plain ``type=int``/``float``/``Path`` fails
:func:`test_every_typed_option_declares_its_constraint`, and a new command without a base
command line here fails :func:`test_every_command_has_a_base_command_line`.

The table after them holds the checks that depend on the input (``--bin`` larger than the
images, ``--fill`` outside an 8-bit image's range, sizes that cannot fit in memory, ...).
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from emkit.cli import _options
from emkit.cli.main import build_parser, main
from emkit.errors import InputError

# --------------------------------------------------------------------------- inputs


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Small real inputs, made once: a tilt series, a section pair, a folder of sections."""
    root = tmp_path_factory.mktemp("inputs")
    assert main(["sim", "tiltseries", "--output", str(root / "ts"), "--shape", "8", "32", "32",
                 "--tilt-step", "10", "--pixel-size", "5"]) == 0
    assert main(["sim", "section", "--output", str(root / "sec"), "--size", "64", "64",
                 "--seed", "1"]) == 0
    assert main(["sim", "particles", str(root / "ts" / "tiltseries_volume.mrc"), "--n", "8",
                 "--output", str(root / "spa"), "--box", "16"]) == 0
    (root / "stack").mkdir()
    shutil.copy(root / "sec" / "fixed.png", root / "stack" / "s0.png")
    shutil.copy(root / "sec" / "moving.png", root / "stack" / "s1.png")
    return root


def _checksums(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def before(inputs: Path) -> dict[str, str]:
    return _checksums(inputs)


# Per command: positional arguments and options of a run that would succeed. ``{in}`` is
# the inputs folder, ``{out}`` an output place that must stay absent.
BASE: dict[tuple[str, ...], tuple[list[str], list[str]]] = {
    ("info",): (["{in}/ts/tiltseries.mrc"], []),
    ("convert",): (["{in}/ts/tiltseries.mrc", "{out}/converted.mrc"], []),
    ("demo",): ([], ["--output", "{out}", "--only", "register"]),
    ("report",): (["{in}/sec"], []),
    ("sim", "tiltseries"): ([], ["--output", "{out}", "--shape", "8", "32", "32"]),
    ("sim", "section"): ([], ["--output", "{out}", "--size", "64", "64"]),
    ("sim", "stack"): (
        [],
        ["--output", "{out}", "--sections", "3", "--size", "64", "64", "--damaged", "0"],
    ),
    ("tomo", "prealign"): (["{in}/ts/tiltseries.mrc"], ["--output", "{out}"]),
    ("tomo", "align"): (["{in}/ts/tiltseries.mrc"], ["--output", "{out}", "--thickness", "8"]),
    ("tomo", "reconstruct"): (["{in}/ts/tiltseries.mrc"], ["--output", "{out}/rec.mrc"]),
    ("register", "pair"): (
        ["{in}/sec/fixed.png", "{in}/sec/moving.png"],
        ["--output", "{out}/warped.png"],
    ),
    ("register", "stack"): (["{in}/stack"], ["--output", "{out}/aligned.tif"]),
    ("atlas", "build"): (["{in}/sec/fixed.png"], ["--output", "{out}"]),
    # atlas serve/export: refused before the folder is read (port 0: any free port)
    ("atlas", "serve"): (["{in}/sec"], ["--port", "0"]),
    ("atlas", "export"): (["{in}/sec"], ["--output", "{out}"]),
    ("sim", "mosaic"): (
        [], ["--output", "{out}", "--size", "64", "64", "--tile", "32", "--overlap", "8"]
    ),
    ("sim", "cell"): ([], ["--output", "{out}", "--shape", "24", "32", "32"]),
    # segment: the options are refused before any file is read, so a volume stands in
    ("segment", "train"): (
        ["{in}/ts/tiltseries_volume.mrc"],
        ["--labels", "{in}/ts/tiltseries_volume.mrc", "--output", "{out}"],
    ),
    ("segment", "predict"): (
        ["{in}/ts/tiltseries_volume.mrc"], ["--model", "{in}/ts", "--output", "{out}/seg.mrc"]
    ),
    ("segment", "mesh"): (["{in}/ts/tiltseries_volume.mrc"], ["--output", "{out}"]),
    # pick: options are refused before any file is read, so any existing files stand in
    ("sim", "tomogram"): ([], ["--output", "{out}", "--shape", "24", "48", "48"]),
    ("pick", "evaluate"): (
        ["{in}/ts/tiltseries.mrc", "{in}/ts/tiltseries.mrc"],
        ["--radius-A", "50", "--output", "{out}"],
    ),
    ("pick", "train"): (
        ["{in}/ts/tiltseries_volume.mrc"],
        ["--particles", "{in}/ts/tiltseries.mrc", "--radius-A", "50", "--output", "{out}"],
    ),
    ("pick", "detect"): (
        ["{in}/ts/tiltseries_volume.mrc"], ["--model", "{in}/ts", "--output", "{out}"]
    ),
    ("pick", "match"): (
        ["{in}/ts/tiltseries_volume.mrc"], ["--template", "3enl", "--output", "{out}"]
    ),
    # spa: a small simulated particle stack and its STAR (true angles)
    ("sim", "particles"): (["{in}/ts/tiltseries_volume.mrc"], ["--output", "{out}", "--n", "8"]),
    ("spa", "orient"): (
        ["{in}/spa/particles.star"], ["--output", "{out}/orient.star", "--distances", "exact"]
    ),
    ("spa", "train"): (
        [], ["--structures", "{in}/spa/map.mrc", "--output", "{out}/model", "--steps", "1",
             "--blobs", "0", "--box", "16"]
    ),
    ("spa", "reconstruct"): (
        ["{in}/spa/particles.star"],
        ["--angles", "{in}/spa/particles.star", "--output", "{out}/map.mrc"],
    ),
    ("pick", "labels"): (
        ["{in}/ts/tiltseries.mrc"],
        ["--like", "{in}/ts/tiltseries_volume.mrc", "--radius-A", "50", "--output",
         "{out}/labels.mrc"],
    ),
}


# --------------------------------------------------------------------------- the walk


def _leaf_parsers(
    parser: argparse.ArgumentParser, words: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """Every (command words, parser) that runs something, e.g. (("tomo", "align"), parser)."""
    subactions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subactions and words:
        yield words, parser
    for action in subactions:
        for name, sub in action.choices.items():
            yield from _leaf_parsers(sub, (*words, name))


def _all_actions() -> Iterator[tuple[tuple[str, ...], argparse.Action]]:
    def walk(parser: argparse.ArgumentParser, words: tuple[str, ...]) -> Iterator:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    yield from walk(sub, (*words, name))
            else:
                yield words, action

    yield from walk(build_parser(), ())


def _n_values(action: argparse.Action) -> int:
    return action.nargs if isinstance(action.nargs, int) else 1


def _bad_cases() -> list[pytest.param]:
    cases = []
    for words, parser in _leaf_parsers(build_parser()):
        if words not in BASE:
            continue
        positionals, options = BASE[words]
        slots = [a for a in parser._actions if not a.option_strings]
        for action in parser._actions:
            examples = list(getattr(action.type, "invalid_examples", ()))
            if action.choices is not None:
                examples.append("no-such-choice")
            for example in examples:
                values = [example] * _n_values(action)
                if action.option_strings:
                    argv = [*words, *positionals, *options, action.option_strings[-1], *values]
                    shown = action.option_strings[-1]
                else:
                    index = slots.index(action)
                    args = list(positionals)
                    if index < len(args):
                        args[index] = example
                    else:
                        args.append(example)
                    argv = [*words, *args, *options]
                    shown = action.dest
                label = f"{' '.join(words)} {shown}={example[:12]!r}"
                cases.append(pytest.param(argv, action.option_strings[-1:], id=label))
    return cases


def _run_refused(
    argv: list[str], inputs: Path, out: Path, capsys: pytest.CaptureFixture[str]
) -> str:
    """Run ``emkit argv`` in-process; assert exit 2, one stderr line, nothing written."""
    argv = [a.replace("{in}", str(inputs)).replace("{out}", str(out)) for a in argv]
    try:
        status = main(argv)
    except SystemExit as exit_:  # argparse refuses a value by exiting
        status = exit_.code
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert status == 2, f"exit {status} for {argv}: {captured.err[-500:]}"
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("emkit: error: ") and "Traceback" not in captured.err
    assert not out.exists(), sorted(p.name for p in out.rglob("*"))
    return lines[0]


@pytest.mark.parametrize(("argv", "option"), _bad_cases())
def test_bad_value_is_refused_before_any_work(
    argv: list[str],
    option: list[str],
    inputs: Path,
    before: dict[str, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    line = _run_refused(argv, inputs, tmp_path / "out", capsys)
    if option:
        assert option[0] in line
    assert list(tmp_path.iterdir()) == []
    assert _checksums(inputs) == before


def test_the_walk_covers_every_command_and_many_options() -> None:
    cases = _bad_cases()
    commands = {" ".join(c.values[0][:2]) for c in cases}
    assert len(cases) > 200
    assert {"tomo align", "tomo reconstruct", "register pair", "sim tiltseries"} <= commands


def test_every_command_has_a_base_command_line() -> None:
    missing = [words for words, _ in _leaf_parsers(build_parser()) if words not in BASE]
    assert not missing, f"add a valid base command line to BASE for {missing}"


def test_every_typed_option_declares_its_constraint() -> None:
    """A numeric or path option must use a type from emkit.cli._options (or choices)."""
    undeclared = [
        f"emkit {' '.join(words)} {action.option_strings or action.dest}"
        for words, action in _all_actions()
        if action.type in (int, float, Path)
        or (action.type is not None and not hasattr(action.type, "invalid_examples"))
    ]
    assert not undeclared, f"declare these with a type from emkit.cli._options: {undeclared}"


def test_a_usage_error_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["tomo", "prealign", "x.mrc", "--output", "o", "--lowpass", "0"])
    assert exit_.value.code == 2
    assert capsys.readouterr().err == (
        "emkit: error: argument --lowpass: must be a finite number > 0.01 and <= 0.5 (got '0')\n"
    )
    with pytest.raises(SystemExit):
        main(["tomo", "align", "x.mrc"])  # --output missing
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--output" in err


# --------------------------------------------------------------------------- the types


@pytest.mark.parametrize(
    ("option_type", "text", "value"),
    [
        (_options.positive_int, "3", 3),
        (_options.nonneg_int, "0", 0),
        (_options.int_range(64), "64", 64),
        (_options.positive_float, "1e-3", 1e-3),
        (_options.float_range(0, 0.5, lo_inclusive=False), "0.5", 0.5),
        (_options.finite_float, "-2.5", -2.5),
        (_options.int_list(1), "4,2,1", [4, 2, 1]),
        (_options.int_span(), "0:16", (0, 16)),
        (_options.angle_or_auto, "AUTO", "auto"),
        (_options.angle_or_auto, "-84.5", -84.5),
        (_options.device, "cuda:1", "cuda:1"),
        (_options.device, "auto", None),
        (_options.safe_name, "run_1.v2", "run_1.v2"),
        (_options.file_path, "a/b.mrc", Path("a/b.mrc")),
    ],
)
def test_valid_values_pass(option_type: _options.OptionType, text: str, value: object) -> None:
    assert option_type(text) == value
    for bad in option_type.invalid_examples:
        with pytest.raises(argparse.ArgumentTypeError, match="must be"):
            option_type(bad)


# --------------------------------------------------------------------------- input-dependent

TS = "{in}/ts/tiltseries.mrc"
HUGE = "1000000000"

INPUT_CASES = [
    (["tomo", "prealign", TS, "--output", "{out}", "--bin", "100"], ["--bin", "tiltseries.mrc"]),
    (["tomo", "align", TS, "--output", "{out}", "--bin", "16,1"], ["--bin 16", "tiltseries.mrc"]),
    (["tomo", "reconstruct", TS, "--output", "{out}/r.mrc", "--bin", "5"], ["--bin", "<= 4"]),
    (["tomo", "reconstruct", TS, "--output", "{out}/r.mrc", "--y-range", "0:33"],
     ["--y-range", "tiltseries.mrc"]),
    (["tomo", "reconstruct", TS, "--output", "{out}/r.mrc", "--thickness", HUGE],
     ["needs ~", "GiB available", "--thickness"]),
    (["tomo", "align", TS, "--output", "{out}", "--thickness", HUGE],
     ["needs ~", "--thickness"]),
    (["tomo", "reconstruct", TS, "--output", "{out}/r.ome.zarr", "--thickness", HUGE],
     ["needs ~", "streaming", "--workers"]),
    (["tomo", "reconstruct", TS, "--output", "{out}/r.mrc", "--workers", "2"],
     ["--workers", ".ome.zarr"]),
    (["pick", "detect", "{in}/ts/tiltseries_volume.mrc", "--output", "{out}", "--workers", "2"],
     ["--workers", "--chunk"]),
    (["pick", "detect", "{in}/ts/tiltseries_volume.mrc", "--output", "{out}", "--scheduler",
      "tcp://127.0.0.1:1"], ["--scheduler", "--chunk"]),
    (["pick", "detect", "{in}/ts/tiltseries_volume.mrc", "--output", "{out}", "--chunk", "16",
      "--workers", "2", "--scheduler", "tcp://127.0.0.1:1"], ["--workers", "--scheduler"]),
    (["tomo", "reconstruct", TS, "--output", "{out}/r.ome.zarr", "--method", "cgls"],
     ["cgls", ".mrc"]),
    (["tomo", "reconstruct", TS, "--output", "{out}/r.ome.zarr", "--tilt-axis", "auto"],
     ["auto", "OME-Zarr"]),
    (["tomo", "reconstruct", TS, "--output", "{out}/r.ome.zarr", "--y-range", "0:33"],
     ["--y-range", "tiltseries.mrc"]),
    (["tomo", "align", TS, "--output", "{out}", "--iterations", "2,2", "--bin", "2"],
     ["--iterations"]),
    (["sim", "tiltseries", "--output", "{out}", "--shape", "100000", "100000", "100000"],
     ["needs ~", "--shape"]),
    (["sim", "tiltseries", "--output", "{out}", "--tilt-range", "10", "-10"], ["--tilt-range"]),
    (["sim", "tiltseries", "--output", "{out}", "--tilt-step", "100"], ["--tilt-step", "3"]),
    (["sim", "tiltseries", "--output", "{out}", "--shape", "4", "4", "4"], ["--shape"]),
    (["sim", "section", "--output", "{out}", "--size", "100000", "100000"],
     ["needs ~", "--size"]),
    (["register", "pair", "{in}/sec/fixed.png", "{in}/sec/moving.png", "--output",
      "{out}/w.png", "--fill", "300"], ["--fill 300", "moving.png", "0 to 255"]),
    (["register", "pair", "{in}/sec/fixed.png", "{in}/sec/moving.png", "--output",
      "{out}/w.png", "--fill", "-1"], ["--fill", "uint8"]),
    (["register", "stack", "{in}/stack", "--output", "{out}/a.tif", "--fill", "2.5"],
     ["--fill"]),
    (["register", "stack", "{in}/stack", "--output", "{out}/a.tif", "--reference", "2"],
     ["--reference 2", "stack", "0 to 1"]),
    (["register", "pair", "{in}/sec/fixed.png", "{in}/sec/moving.png", "--output",
      "{out}/w.npy", "--field", "{out}/w.npy"], ["--output", "--field"]),
    (["convert", TS, "{out}/c.mrc", "--voxel-size", "1", "2"], ["--voxel-size"]),
]


@pytest.mark.parametrize(("argv", "words"), INPUT_CASES, ids=lambda v: " ".join(v)[:60])
def test_input_dependent_value_is_refused_before_any_work(
    argv: list[str],
    words: list[str],
    inputs: Path,
    before: dict[str, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    line = _run_refused(argv, inputs, tmp_path / "out", capsys)
    for word in words:
        assert word in line
    assert _checksums(inputs) == before


@pytest.mark.parametrize(("command", "target"), [
    ("align", "{out}"), ("reconstruct", "{out}/r.mrc"), ("reconstruct", "{out}/r.ome.zarr"),
])
def test_cuda_without_a_gpu_is_one_line(
    command: str, target: str, inputs: Path, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    out = tmp_path / "out"
    line = _run_refused(["tomo", command, TS, "--output", target, "--device", "cuda"],
                        inputs, out, capsys)
    assert "--device cuda" in line and "--device cpu" in line


# --------------------------------------------------------------------------- memory


@pytest.mark.parametrize(
    "words", [w for w in BASE if w not in (("info",), ("demo",))], ids=" ".join
)
def test_every_command_that_works_checks_memory_first(
    words: tuple[str, ...],
    inputs: Path,
    before: dict[str, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With (pretend) 1 KiB available, every command refuses at once, naming what it needs."""
    monkeypatch.setattr(_options, "available_memory", lambda: 1024)
    positionals, options = BASE[words]
    line = _run_refused([*words, *positionals, *options], inputs, tmp_path / "out", capsys)
    assert "needs ~" in line and "GiB available" in line
    assert _checksums(inputs) == before


def test_available_memory_falls_back_to_proc_meminfo(monkeypatch: pytest.MonkeyPatch) -> None:
    first = _options.available_memory()
    assert first is None or first > 0
    monkeypatch.setitem(sys.modules, "psutil", None)  # as if not installed
    second = _options.available_memory()
    assert second is None or second > 0
    if first and second:
        assert 0.5 < second / first < 2


def test_require_memory_message(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_options, "available_memory", lambda: 2 * 2**30)
    _options.require_memory(2**30, "a small thing", "never mind")
    with pytest.raises(InputError) as error:
        _options.require_memory(3 * 2**30, "a 3 GiB tomogram of ts.mrc", "use --bin")
    assert str(error.value) == (
        "needs ~3 GiB for a 3 GiB tomogram of ts.mrc, 2 GiB available; use --bin"
    )
    monkeypatch.setattr(_options, "available_memory", lambda: None)
    _options.require_memory(10**18, "anything", "no answer: no refusal")


@pytest.mark.parametrize(("argv", "unit"), [
    (["sim", "particles", "{in}/map.mrc", "--n", "4", "--output", "{out}", "--defocus", "1",
      "2.5"], "in Å"),  # µm given where RELION's Å are asked
    (["sim", "tiltseries", "--output", "{out}", "--defocus", "25000"], "in µm"),
])
def test_defocus_in_the_other_unit_names_the_unit(
    argv: list[str], unit: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    line = _run_refused(argv, tmp_path, tmp_path / "out", capsys)
    assert "--defocus" in line and unit in line, line
