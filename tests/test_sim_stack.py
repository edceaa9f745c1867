"""``emkit.sim.stack`` (a synthetic serial-section stack with true fields), ``emkit sim stack``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from emkit.cli.main import main
from emkit.errors import InputError, ShapeError
from emkit.register import warp_image
from emkit.sim import iter_section_stack, simulate_section_stack, stack_texture_slice

SHAPE = (192, 192)


def _ncc(a: np.ndarray, b: np.ndarray) -> float:
    a = a.astype(np.float64) - a.mean()
    b = b.astype(np.float64) - b.mean()
    return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))


@pytest.fixture(scope="module")
def stack():
    return simulate_section_stack(6, SHAPE, n_damaged=2, seed=3, noise=0.0)


def test_shapes_dtypes_and_damage(stack) -> None:
    n, (h, w) = 6, SHAPE
    assert stack.sections.shape == (n, h, w) and stack.sections.dtype == np.uint8
    assert stack.defect_masks.shape == (n, h, w) and stack.defect_masks.dtype == bool
    assert stack.true_fields.shape == (n, 2, h, w) and stack.true_fields.dtype == np.float32
    assert stack.true_valid.shape == (n, h, w) and stack.true_valid.dtype == bool
    assert np.isfinite(stack.true_fields).all()
    indices = [i for i, _ in stack.damaged]
    assert len(indices) == 2 and {k for _, k in stack.damaged} == {"fold", "crack"}
    assert 0 not in indices and n - 1 not in indices and abs(indices[0] - indices[1]) > 1
    for i in range(n):
        if i in indices:
            assert stack.defect_masks[i].mean() > 0.01  # a band across the section
            assert stack.params["sections"][i]["damage"]["kind"] in ("fold", "crack")
        else:
            assert not stack.defect_masks[i].any()
        assert stack.true_valid[i].mean() > 0.6
    # each section has its own warp: a few pixels, not a random walk
    assert 2.0 < np.abs(stack.true_fields).max() < 40.0


def test_same_seed_same_stack_and_sections_do_not_depend_on_n(stack) -> None:
    again = simulate_section_stack(6, SHAPE, n_damaged=2, seed=3, noise=0.0)
    np.testing.assert_array_equal(again.sections, stack.sections)
    np.testing.assert_array_equal(again.true_fields, stack.true_fields)
    other = simulate_section_stack(6, SHAPE, n_damaged=2, seed=4, noise=0.0)
    assert not np.array_equal(other.sections, stack.sections)
    # the generator gives the same sections; an undamaged section i is the same in a
    # shorter stack (texture and warps are drawn per section)
    first = next(iter_section_stack(3, SHAPE, n_damaged=0, seed=3, noise=0.0))
    np.testing.assert_array_equal(first.section, stack.sections[0])
    np.testing.assert_array_equal(first.true_field, stack.true_fields[0])


def test_true_field_maps_each_section_back_onto_the_texture(stack) -> None:
    for i in range(6):
        truth = stack_texture_slice(SHAPE, i, seed=3)
        warped = warp_image(stack.sections[i].astype(np.float32) / 255.0, stack.true_fields[i])
        valid = stack.true_valid[i]
        score = _ncc(warped[valid], truth[valid])
        assert score > 0.97, (i, score)
        # half a pixel off is measurably worse: the truth is sub-pixel
        shifted = stack.true_fields[i].copy()
        shifted[1] += 0.5
        off = warp_image(stack.sections[i].astype(np.float32) / 255.0, shifted)
        assert _ncc(off[valid], truth[valid]) < score - 0.01


def test_neighbours_correlate_more_than_distant_sections() -> None:
    slices = [stack_texture_slice((256, 256), i, seed=1) for i in (0, 1, 2, 6)]
    near, two, far = (_ncc(slices[0], s) for s in slices[1:])
    assert 0.6 < near < 0.96  # consecutive sections: similar, not identical
    assert 0.4 < two < near - 0.02
    assert far < two - 0.03  # organelles come and go; the straight cells stay


def test_oblique_cells_change_faster_with_depth() -> None:
    # Cells stretched 4x along z (not straight): their walls move, sections decorrelate.
    straight = [stack_texture_slice((256, 256), i, seed=1) for i in (0, 6)]
    oblique = [stack_texture_slice((256, 256), i, seed=1, cells_z_elongation=4) for i in (0, 6)]
    assert _ncc(*oblique) < _ncc(*straight) - 0.1


def test_texture_looks_like_em() -> None:
    image = stack_texture_slice((256, 256), 0, seed=2)
    assert image.dtype == np.float32 and 0.0 <= image.min() and image.max() <= 1.0
    grey = np.median(image)
    assert 0.45 < grey < 0.85  # grey cytoplasm
    assert (image < grey - 0.25).mean() > 0.04  # dark membranes and organelles


def test_bad_parameters_are_refused() -> None:
    with pytest.raises(InputError, match="at least 2 sections"):
        simulate_section_stack(1, SHAPE)
    with pytest.raises(InputError, match="do not fit"):
        simulate_section_stack(6, SHAPE, n_damaged=3)  # at most (6 - 1) // 2 = 2
    with pytest.raises(ShapeError):
        simulate_section_stack(4, (32, 128), n_damaged=0)
    with pytest.raises(InputError, match="elastic_px"):
        next(iter_section_stack(4, SHAPE, n_damaged=0, elastic_px=-1.0))


def test_cli_writes_the_stack(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from emkit.io import read_volume

    out = tmp_path / "sim"
    argv = [
        "sim",
        "stack",
        "--output",
        str(out),
        "--sections",
        "5",
        "--size",
        "128",
        "96",
        "--damaged",
        "1",
        "--seed",
        "2",
        "--quiet",
    ]
    assert main(argv) == 0
    assert "5 sections" in capsys.readouterr().out
    params = json.loads((out / "params.json").read_text())
    ((index, kind),) = params["damaged"]
    assert kind in ("fold", "crack") and len(params["sections"]) == 5
    names = [f"section_{i:04d}" for i in range(5)]
    assert sorted(p.stem for p in (out / "sections").glob("*.png")) == names
    assert [p.stem for p in (out / "masks").glob("*.png")] == [f"section_{index:04d}"]
    mask = read_volume(out / "masks" / f"section_{index:04d}.png").data
    assert mask.shape == (128, 96) and set(np.unique(mask)) == {0, 255}
    section = read_volume(out / "sections" / "section_0000.png").data
    assert section.shape == (128, 96) and section.dtype == np.uint8
    field = np.load(out / "true_fields" / f"section_{index:04d}.npy")
    assert field.shape == (2, 128, 96) and field.dtype == np.float32
    assert np.isnan(field).any() and np.isfinite(field).mean() > 0.5
    assert (out / "emkit-run.json").is_file()
    # the files match the library's stack
    lib = simulate_section_stack(5, (128, 96), n_damaged=1, seed=2)
    np.testing.assert_array_equal(section, lib.sections[0])


@pytest.mark.parametrize(
    "options",
    [["--sections", "4", "--damaged", "2"], ["--sections", "1"], ["--size", "32", "64"]],
)
def test_cli_bad_input_exits_2_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], options: list[str]
) -> None:
    out = tmp_path / "sim"
    try:
        status = main(["sim", "stack", "--output", str(out), *options])
    except SystemExit as exit_:
        status = exit_.code
    err = capsys.readouterr().err
    assert status == 2 and len(err.splitlines()) == 1 and err.startswith("emkit: error: ")
    assert not out.exists()
