"""`emkit tomo` and `emkit sim tiltseries` in-process: outputs, headers, bad input."""

import json

import mrcfile
import numpy as np
import pytest

from emkit.cli.main import main


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    out = tmp_path_factory.mktemp("sim")
    status = main(["sim", "tiltseries", "--output", str(out), "--shape", "12", "48", "48",
                   "--tilt-step", "6", "--max-shift", "3", "--snr", "2", "--pixel-size", "8"])
    assert status == 0
    return out


def test_sim_writes_stack_angles_truth_and_volume(simulated):
    names = sorted(p.name for p in simulated.iterdir())
    assert names == [".emkit", "emkit-run.json", "report.html", "tiltseries.mrc",
                     "tiltseries.tlt", "tiltseries_true.xf", "tiltseries_volume.mrc"]
    with mrcfile.open(simulated / "tiltseries.mrc") as mrc:
        assert mrc.data.shape == (21, 48, 48)
        assert float(mrc.voxel_size.x) == pytest.approx(8.0)
    assert len((simulated / "tiltseries.tlt").read_text().split()) == 21


def test_prealign_align_reconstruct(simulated, tmp_path):
    ts, tlt = str(simulated / "tiltseries.mrc"), str(simulated / "tiltseries.tlt")
    assert main(["tomo", "prealign", ts, "--angles", tlt, "--output", str(tmp_path / "pre"),
                 "--quiet"]) == 0
    assert (tmp_path / "pre" / "tiltseries.xf").exists()
    with mrcfile.open(tmp_path / "pre" / "tiltseries_ali.mrc") as mrc:
        assert mrc.data.shape == (21, 48, 48)
    ali = tmp_path / "ali"
    assert main(["tomo", "align", ts, "--angles", tlt, "--output", str(ali), "--thickness",
                 "12", "--bin", "2,1", "--iterations", "2", "--inner-iterations", "3",
                 "--box-fraction", "0.8", "--plot", str(ali / "plots"), "--quiet"]) == 0
    for name in ("tiltseries.xf", "tiltseries_ali.mrc", "tiltseries_rec.mrc", "emkit-run.json"):
        assert (ali / name).exists()
    assert not (ali / "tiltseries_align.ckpt.npz").exists()
    # 2 levels x 2 iterations in the alignment box, then 5 over the whole thickness
    assert len(list((ali / "plots").glob("iter_bin?_0*.png"))) == 4
    assert len(list((ali / "plots").glob("iter_bin1_whole_0*.png"))) == 5
    with mrcfile.open(ali / "tiltseries_rec.mrc") as mrc:
        assert mrc.data.shape == (12, 48, 48)
        assert float(mrc.voxel_size.x) == pytest.approx(8.0)
    record = json.loads((ali / "emkit-run.json").read_text())
    assert record["results"]["iterations_run"] == 9 and len(record["history"]) == 9
    assert record["results"]["iterations_per_level"] == [[2, 2], [1, 2]]
    assert record["results"]["final_alignment"] == record["history"][3]
    assert record["results"]["final"]["whole_thickness"] == 1.0
    # Reconstruct from the written .xf, binned: voxel size doubles.
    rec = tmp_path / "rec" / "tomo.mrc"
    assert main(["tomo", "reconstruct", ts, "--angles", tlt, "--xf", str(ali / "tiltseries.xf"),
                 "--method", "sirt", "--iterations", "5", "--thickness", "12", "--bin", "2",
                 "--output", str(rec)]) == 0
    with mrcfile.open(rec) as mrc:
        assert mrc.data.shape == (6, 24, 24)
        assert float(mrc.voxel_size.x) == pytest.approx(16.0)
    # A reconstruction into the alignment's folder keeps its own record beside the
    # alignment's, and a report.html of the user's there stays as it was (issue 11).
    (ali / "report.html").write_text("mine")
    assert main(["tomo", "reconstruct", ts, "--angles", tlt, "--xf", str(ali / "tiltseries.xf"),
                 "--thickness", "12", "--bin", "2", "--output", str(ali / "again.mrc")]) == 0
    assert json.loads((ali / "emkit-run.json").read_text())["results"]["iterations_run"] == 9
    again = json.loads((ali / "again.emkit-run.json").read_text())
    assert again["record_file"] == "again.emkit-run.json" and "again.mrc" in again["outputs"]
    assert (ali / "again.report.html").is_file() and (ali / "report.html").read_text() == "mine"
    # The same alignment given as an AreTomo .aln (ROT 0, TX/TY = minus the shifts).
    shifts = np.loadtxt(ali / "tiltseries.xf")[:, 4:6]
    aln = tmp_path / "ts.aln"
    rows = "\n".join(
        f"{i} 0.0 1.0 {-dx:.3f} {-dy:.3f} 1.0 1.0 1.0 0.0 {a:.2f}"
        for i, ((dx, dy), a) in enumerate(zip(shifts, np.loadtxt(tlt)))
    )
    aln.write_text("# AreTomo Alignment / Priims bprmMn\n# RawSize = 48 48 21\n"
                   "# SEC ROT GMAG TX TY SMEAN SFIT SCALE BASE TILT\n" + rows + "\n")
    rec2 = tmp_path / "rec" / "tomo_aln.mrc"
    assert main(["tomo", "reconstruct", ts, "--angles", tlt, "--aln", str(aln), "--method",
                 "sirt", "--iterations", "5", "--thickness", "12", "--bin", "2", "--output",
                 str(rec2)]) == 0
    with mrcfile.open(rec) as a, mrcfile.open(rec2) as b:
        np.testing.assert_allclose(a.data, b.data, atol=0.02 * np.abs(a.data).max())


def _write_stack(path, data, voxel_size=5.0):
    with mrcfile.new(path) as mrc:
        mrc.set_data(np.asarray(data, dtype=np.float32))
        mrc.voxel_size = voxel_size


def _assert_refused(argv, capsys, out_dir, *names):
    status = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2
    assert len(err) == 1 and err[0].startswith("emkit: error:")
    for name in names:
        assert name in err[0]
    assert not out_dir.exists() or not any(out_dir.iterdir())


@pytest.mark.parametrize("command", ["prealign", "align", "reconstruct"])
def test_tlt_that_does_not_match_the_stack(simulated, tmp_path, capsys, command):
    tlt = tmp_path / "short.tlt"
    tlt.write_text("\n".join(str(a) for a in range(-50, 51, 6)) + "\n")  # 17 angles
    out = tmp_path / "out"
    target = str(out / "rec.mrc") if command == "reconstruct" else str(out)
    _assert_refused(["tomo", command, str(simulated / "tiltseries.mrc"), "--angles", str(tlt),
                     "--output", target], capsys, out, "short.tlt", "17 tilt angles")


def _output(out, command):
    return str(out / "rec.mrc") if command == "reconstruct" else str(out)


@pytest.mark.parametrize("command", ["prealign", "align", "reconstruct"])
def test_fewer_than_three_tilts(tmp_path, capsys, command):
    _write_stack(tmp_path / "two.mrc", np.ones((2, 32, 32)))
    (tmp_path / "two.tlt").write_text("-10\n10\n")
    out = tmp_path / "out"
    _assert_refused(["tomo", command, str(tmp_path / "two.mrc"), "--output",
                     _output(out, command)], capsys, out, "two.mrc", "at least 3")


@pytest.mark.filterwarnings("ignore:Data array contains NaN")
@pytest.mark.parametrize("command", ["prealign", "align", "reconstruct"])
def test_non_finite_pixels(tmp_path, capsys, command):
    data = np.random.default_rng(0).normal(size=(5, 32, 32))
    data[2, 4, 4] = np.nan
    _write_stack(tmp_path / "nan.mrc", data)
    (tmp_path / "nan.tlt").write_text("-20\n-10\n0\n10\n20\n")
    out = tmp_path / "out"
    _assert_refused(["tomo", command, str(tmp_path / "nan.mrc"), "--output",
                     _output(out, command)], capsys, out, "nan.mrc")


@pytest.mark.filterwarnings("ignore:Data array contains NaN")
def test_all_nan_mask_is_refused_not_taken_as_all_ones(tmp_path, capsys):
    data = np.random.default_rng(0).normal(size=(5, 32, 32))
    _write_stack(tmp_path / "ts.mrc", data)
    (tmp_path / "ts.tlt").write_text("-20\n-10\n0\n10\n20\n")
    _write_stack(tmp_path / "mask.mrc", np.full((5, 32, 32), np.nan))
    out = tmp_path / "out"
    _assert_refused(["tomo", "align", str(tmp_path / "ts.mrc"), "--mask",
                     str(tmp_path / "mask.mrc"), "--output", str(out)],
                    capsys, out, "mask.mrc", "NaN")


@pytest.mark.parametrize("command", ["prealign", "align", "reconstruct"])
def test_unreadable_and_missing_files(tmp_path, capsys, command):
    (tmp_path / "junk.mrc").write_bytes(b"this is not an MRC file" * 10)
    (tmp_path / "junk.tlt").write_text("-20\n0\n20\n")
    out = tmp_path / "out"
    _assert_refused(["tomo", command, str(tmp_path / "junk.mrc"), "--output",
                     _output(out, command)], capsys, out, "junk.mrc")
    if command != "prealign":
        return
    _assert_refused(["tomo", "prealign", str(tmp_path / "absent.mrc"), "--angles",
                     str(tmp_path / "junk.tlt"), "--output", str(out)], capsys, out, "absent.mrc")
    _write_stack(tmp_path / "ok.mrc", np.ones((3, 32, 32)))
    _assert_refused(["tomo", "prealign", str(tmp_path / "ok.mrc"), "--output", str(out)],
                    capsys, out, "ok.mrc", "--angles")


def test_output_may_not_overwrite_the_input(simulated, capsys):
    ts = simulated / "tiltseries.mrc"
    before = ts.read_bytes()
    status = main(["tomo", "reconstruct", str(ts), "--angles", str(simulated / "tiltseries.tlt"),
                   "--output", str(ts)])
    assert status == 2 and ts.read_bytes() == before
    capsys.readouterr()


def test_help_has_examples(capsys):
    with pytest.raises(SystemExit):
        main(["tomo", "align", "--help"])
    assert "emkit tomo align" in capsys.readouterr().out
