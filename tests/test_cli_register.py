"""`emkit register pair|stack`, `emkit sim section` and the register demo, in-process."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from emkit.cli.main import main
from emkit.io import read_volume, write_volume
from emkit.sim.sections import section_texture, simulate_damaged_section


@pytest.fixture(scope="module")
def sim_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sim")
    assert (
        main(["sim", "section", "--output", str(out), "--size", "320", "320", "--seed", "2"]) == 0
    )
    return out


def _files(folder: Path) -> set[str]:
    return {p.name for p in folder.rglob("*")} if folder.exists() else set()


def test_sim_section_writes_the_ground_truth(sim_dir):
    assert {
        "fixed.png",
        "moving.png",
        "defect_mask.png",
        "true_field.npy",
        "params.json",
        "emkit-run.json",
    } <= _files(sim_dir)
    field = np.load(sim_dir / "true_field.npy")
    assert field.shape == (2, 320, 320) and field.dtype == np.float32
    assert np.isnan(field).any() and np.isfinite(field).mean() > 0.8
    mask = read_volume(sim_dir / "defect_mask.png").data
    assert set(np.unique(mask)) == {0, 255}


def test_sim_section_from_an_image(tmp_path):
    image = section_texture((200, 240), seed=1, dtype=np.uint16)
    write_volume(tmp_path / "sec.tif", image)
    assert (
        main(
            [
                "sim",
                "section",
                str(tmp_path / "sec.tif"),
                "--output",
                str(tmp_path / "o"),
                "--kind",
                "crack",
            ]
        )
        == 0
    )
    moving = read_volume(tmp_path / "o" / "moving.tif").data
    assert moving.dtype == np.uint16 and moving.shape == (200, 240)


def test_pair_writes_outputs_and_reports_epe(sim_dir, tmp_path, capsys):
    out = tmp_path / "reg"
    status = main(
        [
            "register",
            "pair",
            str(sim_dir / "fixed.png"),
            str(sim_dir / "moving.png"),
            "--mask",
            str(sim_dir / "defect_mask.png"),
            "--output",
            str(out / "warped.png"),
            "--field",
            str(out / "field.npy"),
            "--true-field",
            str(sim_dir / "true_field.npy"),
            "--compare-global",
        ]
    )
    assert status == 0
    assert _files(out) == {
        "warped.png",
        "field.npy",
        "warped.metrics.json",
        "warped.overlay.png",
        "warped.emkit-run.json",
        "warped.report.html",
    }
    warped = read_volume(out / "warped.png").data
    assert warped.dtype == np.uint8 and warped.shape == (320, 320)
    import cv2

    overlay = cv2.imread(str(out / "warped.overlay.png"), cv2.IMREAD_UNCHANGED)
    assert overlay.shape == (320, 320, 3) and overlay.dtype == np.uint8
    field = np.load(out / "field.npy")
    assert field.shape == (2, 320, 320) and field.dtype == np.float32
    metrics = json.loads((out / "warped.metrics.json").read_text())
    assert metrics["endpoint_error"]["epe_mean_px"] < 0.5
    assert metrics["endpoint_error"]["epe_near_defect_p95_px"] < 2.0
    assert metrics["registered"]["ncc"] > metrics["unregistered"]["ncc"]
    common = metrics["common_region"]
    assert common["expected-affine"]["ncc"] > common["global-affine"]["ncc"]
    record = json.loads((out / "warped.emkit-run.json").read_text())
    assert record["parameters"]["method"] == "expected-affine"
    assert "EPE mean" in capsys.readouterr().out


def _bad_pair_case(tmp_path: Path, case: str) -> tuple[list[str], str]:
    """Inputs for one bad-input case; returns (arguments, file the message must name)."""
    fixed = section_texture((160, 160), seed=0)
    damaged = simulate_damaged_section(fixed, kind="fold", seed=1)
    write_volume(tmp_path / "fixed.png", fixed)
    moving, mask = damaged.moving, damaged.defect_mask
    named = "moving.png"
    moving_name = "moving.png"
    if case == "sizes":
        moving = moving[:150]
    elif case == "mask-size":
        mask = mask[:, :120]
        named = "mask.png"
    elif case == "all-defect":
        mask = np.ones_like(mask)
        named = "mask.png"
    elif case == "no-features":
        moving = np.full_like(moving, 128)
        mask = np.zeros_like(mask)
    elif case == "nan":
        moving = moving.astype(np.float32)
        moving[40, 50] = np.nan
        moving_name = named = "moving.tif"
    write_volume(tmp_path / moving_name, moving)
    write_volume(tmp_path / "mask.png", mask)
    args = [
        "register",
        "pair",
        str(tmp_path / "fixed.png"),
        str(tmp_path / moving_name),
        "--mask",
        str(tmp_path / "mask.png"),
        "--output",
        str(tmp_path / "out" / "w.png"),
        "--field",
        str(tmp_path / "out" / "f.npy"),
    ]
    return args, named


@pytest.mark.parametrize("case", ["sizes", "mask-size", "all-defect", "no-features", "nan"])
def test_pair_bad_input_exit_2_nothing_written(tmp_path, capsys, case):
    args, named = _bad_pair_case(tmp_path, case)
    before = _files(tmp_path)
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("emkit: error:")
    assert named in err
    assert _files(tmp_path) == before  # nothing written, no temporary left


def _pair_args(sim_dir: Path, out: Path, *extra: str) -> list[str]:
    return [
        "register",
        "pair",
        str(sim_dir / "fixed.png"),
        str(sim_dir / "moving.png"),
        "--mask",
        str(sim_dir / "defect_mask.png"),
        "--output",
        str(out / "w.png"),
        *extra,
    ]


def test_pair_field_must_be_npy(sim_dir, tmp_path, capsys):
    """np.save appends .npy to other names: the field would land in a stray temporary."""
    out = tmp_path / "out"
    assert main(_pair_args(sim_dir, out, "--field", str(out / "f.txt"))) == 2
    err = capsys.readouterr().err
    assert "f.txt" in err and ".npy" in err
    assert _files(tmp_path) == set()


def test_pair_bad_output_found_before_anything_is_written(sim_dir, tmp_path, capsys):
    out = tmp_path / "out"
    (out / "f.npy").mkdir(parents=True)
    assert main(_pair_args(sim_dir, out, "--field", str(out / "f.npy"))) == 2
    assert "f.npy" in capsys.readouterr().err
    assert _files(tmp_path) == {"out", "f.npy"}  # no warped image, metrics or record
    assert main(_pair_args(sim_dir, tmp_path / "o2") + ["--output", str(tmp_path / "w.jpg")]) == 2
    assert "w.jpg" in capsys.readouterr().err
    assert _files(tmp_path) == {"out", "f.npy"}


def test_pair_true_field_without_data_is_a_user_error(sim_dir, tmp_path, capsys):
    np.save(tmp_path / "nan_field.npy", np.full((2, 320, 320), np.nan, np.float32))
    out = tmp_path / "out"
    assert main(_pair_args(sim_dir, out, "--true-field", str(tmp_path / "nan_field.npy"))) == 2
    assert "nan_field.npy" in capsys.readouterr().err
    assert not out.exists()


def test_pair_refuses_to_overwrite_an_input(sim_dir, capsys):
    moving = sim_dir / "moving.png"
    before = moving.read_bytes()
    assert (
        main(["register", "pair", str(sim_dir / "fixed.png"), str(moving), "--output", str(moving)])
        == 2
    )
    assert moving.read_bytes() == before
    assert "also an input" in capsys.readouterr().err


def test_pair_missing_file(tmp_path, capsys):
    assert (
        main(
            [
                "register",
                "pair",
                str(tmp_path / "nope.png"),
                str(tmp_path / "nope2.png"),
                "--output",
                str(tmp_path / "w.png"),
            ]
        )
        == 2
    )
    assert "nope.png" in capsys.readouterr().err


def test_sim_section_refuses_to_overwrite_its_image(tmp_path, capsys):
    image = tmp_path / "moving.png"
    write_volume(image, section_texture((128, 128), seed=1))
    before = image.read_bytes()
    assert main(["sim", "section", str(image), "--output", str(tmp_path)]) == 2
    assert image.read_bytes() == before
    assert "would contain the input" in capsys.readouterr().err
    assert _files(tmp_path) == {"moving.png"}


def _stack_dir(tmp_path: Path) -> tuple[Path, Path]:
    sections = tmp_path / "sections"
    masks = tmp_path / "masks"
    current = section_texture((224, 224), seed=3)
    write_volume(sections / "s0.png", current)
    for i, kind in ((1, "crack"), (2, "fold")):
        damaged = simulate_damaged_section(current, kind=kind, seed=20 + i)
        write_volume(sections / f"s{i}.png", damaged.moving)
        write_volume(masks / f"s{i}.png", damaged.defect_mask)
        current = damaged.moving
    return sections, masks


def test_stack_folder_with_masks(tmp_path):
    sections, masks = _stack_dir(tmp_path)
    out = tmp_path / "out" / "aligned.tif"
    assert (
        main(
            [
                "register",
                "stack",
                str(sections),
                "--masks",
                str(masks),
                "--output",
                str(out),
                "--workers",
                "1",
                "--quiet",
            ]
        )
        == 0
    )
    aligned = read_volume(out).data
    assert aligned.shape == (3, 224, 224) and aligned.dtype == np.uint8
    fields = out.parent / "aligned_fields"
    names = _files(fields)
    assert {"section_0000.npy", "section_0002.npy", "valid_0001.png", "index.json"} <= names
    index = json.loads((fields / "index.json").read_text())
    assert index["reference"] is None  # the common frame is the stack's average
    # s1 and s2 are both damaged (s2 = s1 damaged again): s1 is anchored to s0, s2 to s1.
    record = json.loads((out.parent / f"{out.stem}.emkit-run.json").read_text())
    assert len(record["results"]["pairs"]) == 3
    anchors = [p.get("anchor") for p in record["results"]["pairs"]]
    assert anchors == [None, 0, 1]
    # The aligned sections agree where both have tissue.
    # (Measured 0.98 and 0.84; chaining gave 0.80 and 0.78. Section 2 also carries
    # section 1's crack, which its own mask does not mark.)
    valid = [read_volume(fields / f"valid_{i:04d}.png").data > 0 for i in range(3)]
    for i, least in ((1, 0.95), (2, 0.8)):
        both = valid[0] & valid[i]
        a, b = aligned[0][both].astype(float), aligned[i][both].astype(float)
        assert np.corrcoef(a, b)[0, 1] > least, i
    report = out.parent / "aligned_report"
    assert {"overlay_0001.png", "overlay_0002.png", "residuals.png"} <= _files(report)


def test_stack_mask_named_like_no_section_is_an_error(tmp_path, capsys):
    """A misnamed mask must not be ignored silently (the fold would go unmasked)."""
    sections, masks = _stack_dir(tmp_path)
    (masks / "s1.png").rename(masks / "s1_mask.png")
    out = tmp_path / "out" / "aligned.tif"
    args = ["register", "stack", str(sections), "--masks", str(masks), "--output", str(out)]
    assert main([*args, "--workers", "1", "--quiet"]) == 2
    assert "s1_mask.png" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_stack_file_input_to_mrc(tmp_path):
    base = section_texture((192, 192), seed=9)
    damaged = simulate_damaged_section(base, kind="fold", seed=9)
    write_volume(tmp_path / "stack.tif", np.stack([base, damaged.moving]))
    out = tmp_path / "aligned.mrc"
    assert (
        main(
            [
                "register",
                "stack",
                str(tmp_path / "stack.tif"),
                "--output",
                str(out),
                "--reference",
                "0",
                "--workers",
                "1",
                "--quiet",
            ]
        )
        == 0
    )
    assert read_volume(out).data.shape == (2, 192, 192)


def test_stack_bad_input(tmp_path, capsys):
    sections, masks = _stack_dir(tmp_path)
    write_volume(sections / "s3.png", np.zeros((100, 100), np.uint8))
    assert (
        main(
            [
                "register",
                "stack",
                str(sections),
                "--output",
                str(tmp_path / "a.tif"),
                "--workers",
                "1",
            ]
        )
        == 2
    )
    assert "s3.png" in capsys.readouterr().err
    assert not (tmp_path / "a.tif").exists()
    # An output format emkit cannot write is refused first, before any section is read.
    args = ["register", "stack", str(sections), "--output", str(tmp_path / "a.jpg")]
    assert main(args) == 2
    assert "a.jpg" in capsys.readouterr().err


@pytest.mark.slow
def test_run_demo(tmp_path):
    from emkit.cli.register import run_demo

    result = run_demo(tmp_path, seed=0, progress=False)
    refined, affine = (
        result["epe_mean_px_expected_affine_elastic"],
        result["epe_mean_px_expected_affine"],
    )
    assert refined < 0.3 and affine > 2 * refined
    assert result["epe_mean_px_global_affine"] > 3 * affine
    assert {
        "overlay_before.png",
        "overlay_after_expected_affine_elastic.png",
        "overlay_after_expected_affine.png",
        "overlay_after_global_affine.png",
        "field.png",
        "warped.png",
        "results.json",
    } <= _files(tmp_path)


def test_stack_resume_and_work_folder_errors(tmp_path, capsys):
    sections, masks = _stack_dir(tmp_path)
    out = tmp_path / "out" / "aligned.zarr"
    base = [
        "register",
        "stack",
        str(sections),
        "--masks",
        str(masks),
        "--output",
        str(out),
        "--workers",
        "1",
        "--quiet",
    ]
    # Nothing to resume yet: one line, exit 2, nothing written.
    assert main([*base, "--resume"]) == 2
    assert "--resume" in capsys.readouterr().err
    assert not out.exists()
    assert main(base) == 0
    work = out.parent / "aligned_work"
    assert (work / "stack.json").is_file() and list((work / "pairs").glob("*.npz"))
    assert main([*base, "--resume"]) == 0
    capsys.readouterr()
    # A work folder of another stack is refused with the reason.
    other = tmp_path / "other"
    other.mkdir()
    for name in ("s0.png", "s1.png"):
        (other / name).write_bytes((sections / name).read_bytes())
    args = [
        "register",
        "stack",
        str(other),
        "--output",
        str(tmp_path / "o2" / "a.zarr"),
        "--work-dir",
        str(work),
        "--resume",
        "--workers",
        "1",
        "--quiet",
    ]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "another stack" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o2" / "a.zarr").exists()


def test_stack_of_one_section_is_refused(tmp_path, capsys):
    folder = tmp_path / "one"
    write_volume(folder / "s0.png", section_texture((96, 96), seed=1))
    out = tmp_path / "out" / "a.tif"
    assert main(["register", "stack", str(folder), "--output", str(out)]) == 2
    assert "at least 2" in capsys.readouterr().err
    assert not out.parent.exists()
