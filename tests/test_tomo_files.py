"""Reading a tilt series for the tomo commands: contrast, --log / --invert, header angles."""

from __future__ import annotations

import logging

import mrcfile
import numpy as np
import pytest

from emkit.cli.main import main
from emkit.errors import InputError
from emkit.tomo import TiltSeriesSource
from test_io_mrc_variants import TILTS, fei1_file


def _bright_field(path, n=5):
    """Dark specimen on a bright background: counts 1000 with a block absorbing 40 %."""
    rng = np.random.default_rng(3)
    data = rng.normal(1000, 5, size=(n, 32, 32))
    data[:, 10:18, 12:20] *= 0.6
    with mrcfile.new(path) as mrc:
        mrc.set_data(data.astype(np.float32))
        mrc.voxel_size = 4.0
    path.with_suffix(".tlt").write_text("\n".join(str(a) for a in TILTS[:n]) + "\n")
    return data


def test_log_is_beer_lambert_and_warnings_follow_the_contrast(tmp_path, caplog):
    data = _bright_field(tmp_path / "bf.mrc")
    with caplog.at_level(logging.WARNING, logger="emkit"):
        plain = TiltSeriesSource(tmp_path / "bf.mrc").read()
    assert plain.contrast == "dark-on-bright"
    assert any("--log (Beer-Lambert) or --invert" in r.getMessage() for r in caplog.records)
    np.testing.assert_allclose(plain.stack, data, rtol=1e-6)  # nothing changed silently
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="emkit"):
        logged = TiltSeriesSource(tmp_path / "bf.mrc", log=True).read()
    assert not caplog.records
    i0 = np.percentile(data.astype(np.float32), 99.9)
    np.testing.assert_allclose(logged.stack, -np.log(data / i0), atol=2e-5)
    assert logged.stack[:, 12, 14].mean() == pytest.approx(-np.log(0.6), abs=0.02)


def test_log_needs_positive_intensities(tmp_path):
    _bright_field(tmp_path / "bf.mrc")
    fei = tmp_path / "signed.mrc"
    with mrcfile.new(fei) as mrc:
        mrc.set_data(np.full((5, 16, 16), -3.0, np.float32))
    fei.with_suffix(".tlt").write_text("\n".join(str(a) for a in TILTS) + "\n")
    with pytest.raises(InputError, match="--log needs positive intensities"):
        TiltSeriesSource(fei, log=True).read()


@pytest.mark.parametrize("command", ["prealign", "align", "reconstruct"])
def test_log_and_invert_together_are_refused(tmp_path, capsys, command):
    _bright_field(tmp_path / "bf.mrc")
    out = tmp_path / "out"
    target = str(out / "rec.mrc") if command == "reconstruct" else str(out)
    status = main(["tomo", command, str(tmp_path / "bf.mrc"), "--output", target,
                   "--log", "--invert"])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(err) == 1 and "--log or --invert" in err[0]
    assert not out.exists()


def test_tilt_angles_come_from_the_fei_header_without_tlt(tmp_path, caplog):
    fei1_file(tmp_path / "velox.mrc")
    with caplog.at_level(logging.WARNING, logger="emkit"):
        series = TiltSeriesSource(tmp_path / "velox.mrc").read()
    np.testing.assert_allclose(series.angles, TILTS)
    assert series.pixel_size_A == pytest.approx(2.5)
    assert series.contrast == "bright-on-dark"
    assert any("tilt angles of the FEI1 extended header" in r.getMessage()
               for r in caplog.records)


def test_no_tlt_and_no_header_angles_is_refused(tmp_path):
    with mrcfile.new(tmp_path / "bare.mrc") as mrc:
        mrc.set_data(np.ones((5, 16, 16), np.float32))
    with pytest.raises(InputError, match="bare.tlt does not exist and the header holds none"):
        TiltSeriesSource(tmp_path / "bare.mrc").read()


@pytest.fixture(scope="module")
def small_series(tmp_path_factory):
    out = tmp_path_factory.mktemp("sim")
    assert main(["sim", "tiltseries", "--output", str(out), "--shape", "8", "32", "32",
                 "--tilt-step", "10", "--max-shift", "3", "--snr", "4"]) == 0
    return out / "tiltseries.mrc"


def test_reconstruct_with_an_identity_xf(small_series, tmp_path, capsys):
    """Used to crash (exit 1): the .xf's per-image angles reached a float parameter."""
    n = len(mrcfile.mmap(small_series).data)
    xf = tmp_path / "identity.xf"
    xf.write_text("1 0 0 1 0 0\n" * n)
    status = main(["tomo", "reconstruct", str(small_series), "--xf", str(xf), "--thickness",
                   "8", "--output", str(tmp_path / "rec" / "rec.mrc")])
    assert status == 0, capsys.readouterr().err
    plain = tmp_path / "plain.mrc"
    assert main(["tomo", "reconstruct", str(small_series), "--thickness", "8",
                 "--output", str(plain)]) == 0
    with mrcfile.open(tmp_path / "rec" / "rec.mrc") as a, mrcfile.open(plain) as b:
        np.testing.assert_allclose(a.data, b.data, atol=1e-5)


def test_a_file_with_rotations_that_differ_is_refused(small_series, tmp_path, capsys):
    n = len(mrcfile.mmap(small_series).data)
    lines = ["1 0 0 1 0 0"] * (n - 1) + ["0.9998477 -0.0174524 0.0174524 0.9998477 0 0"]
    (tmp_path / "mixed.xf").write_text("\n".join(lines) + "\n")
    status = main(["tomo", "reconstruct", str(small_series), "--xf", str(tmp_path / "mixed.xf"),
                   "--output", str(tmp_path / "rec.mrc")])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(err) == 1 and "one tilt-axis angle" in err[0]


@pytest.mark.parametrize("command", ["align", "reconstruct"])
@pytest.mark.parametrize("axis", ["0", "5", "auto"])
def test_tilt_axis_beside_xf_is_refused(small_series, tmp_path, capsys, command, axis):
    n = len(mrcfile.mmap(small_series).data)
    (tmp_path / "id.xf").write_text("1 0 0 1 0 0\n" * n)
    out = tmp_path / "out"
    target = str(out / "rec.mrc") if command == "reconstruct" else str(out)
    status = main(["tomo", command, str(small_series), "--xf", str(tmp_path / "id.xf"),
                   "--tilt-axis", axis, "--output", target])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(err) == 1
    assert "--tilt-axis cannot be combined with --xf" in err[0]
    assert not out.exists()


def test_align_with_auto_axis_records_the_search(small_series, tmp_path):
    import json

    out = tmp_path / "ali"
    assert main(["tomo", "align", str(small_series), "--tilt-axis", "auto", "--output",
                 str(out), "--thickness", "8", "--bin", "2,1", "--iterations", "2",
                 "--quiet"]) == 0
    results = json.loads((out / "emkit-run.json").read_text())["results"]
    search = results["tilt_axis_search"]
    assert search["binning"] == 1 and len(search["trials"]) >= 2
    # the coarse root and the level it was refined at (a 1-px coarse level: no finer one)
    assert search["fine_binning"] == 1 and "coarse_angle_deg" in search
    assert results["tilt_axis_angle_deg"] == pytest.approx(search["angle_deg"])


def test_refine_tilt_axis_beside_xf_is_refused(small_series, tmp_path, capsys):
    n = len(mrcfile.mmap(small_series).data)
    (tmp_path / "id.xf").write_text("1 0 0 1 0 0\n" * n)
    out = tmp_path / "out"
    status = main(["tomo", "align", str(small_series), "--xf", str(tmp_path / "id.xf"),
                   "--refine-tilt-axis", "--output", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(err) == 1
    assert "--refine-tilt-axis cannot be combined with --xf" in err[0]
    assert not out.exists()


@pytest.mark.parametrize("fill", ["mean", "zero"])
def test_aligned_stack_fill(small_series, tmp_path, fill):
    out = tmp_path / "pre"
    assert main(["tomo", "prealign", str(small_series), "--output", str(out), "--fill", fill,
                 "--quiet"]) == 0
    from emkit.io import read_xf, shifts_from_xf

    shifts = shifts_from_xf(read_xf(out / "tiltseries.xf"))
    i = int(np.argmax(np.abs(shifts[:, 1])))
    with mrcfile.open(out / "tiltseries_ali.mrc") as mrc:
        image = np.array(mrc.data[i])
    column = 0 if shifts[i, 1] > 1.5 else -1  # the side the shift brought in from outside
    edge = image[:, column]
    if fill == "zero":
        assert np.all(edge == 0)
    else:
        assert np.all(edge != 0) and np.allclose(edge, edge[0])


def test_align_prints_the_relative_objective_change(small_series, tmp_path, capsys):
    assert main(["tomo", "align", str(small_series), "--output", str(tmp_path / "ali"),
                 "--thickness", "8", "--bin", "2,1", "--iterations", "2",
                 "--inner-iterations", "2", "--cg-iterations", "2", "--box-fraction", "0.8",
                 "--device", "cpu"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if " it " in line]
    # 2 levels x 2 iterations in the alignment box of 0.8, then 5 over the whole thickness
    assert len(lines) == 9
    assert "objective    start" in lines[0] and "objective    start" in lines[2]
    assert "%, unexplained" in lines[1] and "e+" not in lines[1]
    assert all("max shift change" in line for line in lines[:4])
    assert all(line.endswith("whole thickness, shifts fixed") for line in lines[4:])


def test_run_record_names_the_contrast_and_header_oddities(tmp_path):
    import json

    fei1_file(tmp_path / "velox.mrc")
    out = tmp_path / "pre"
    assert main(["tomo", "prealign", str(tmp_path / "velox.mrc"), "--output", str(out),
                 "--quiet"]) == 0
    facts = json.loads((out / "emkit-run.json").read_text())["results"]["input"]
    assert facts["contrast"] == "bright-on-dark"
    assert facts["pixel_size_A"] == pytest.approx(2.5)
    assert facts["header_oddities"] == [
        "voxel size 0 in the header, 2.5 Å from the extended header used"
    ]


def test_resume_reuses_the_searched_tilt_axis(small_series, tmp_path, monkeypatch):
    """An interrupted `align --tilt-axis auto` resumes without searching the axis again,
    from the very same start (so the checkpoint's fingerprint matches)."""
    import emkit.tomo._axis as axis_module
    import emkit.tomo._joint as joint_module
    from emkit.tomo._commands import run_align_files
    from emkit.tomo._files import TiltSeriesSource

    source = TiltSeriesSource(small_series, tilt_axis="auto")
    out = tmp_path / "ali"
    options = dict(thickness=8, binning_levels=[2, 1], iterations=[2])
    real_align = joint_module.align_joint

    def crash(*args, **kwargs):
        if kwargs.get("checkpoint") is None:  # the axis search's own coarse alignments
            return real_align(*args, **kwargs)
        report, seen = kwargs["callback"], []

        def interrupt_after_two(record, shifts, volume):
            report(record, shifts, volume)
            seen.append(record)
            if len(seen) == 2:
                raise KeyboardInterrupt

        return real_align(*args, **dict(kwargs, callback=interrupt_after_two))

    monkeypatch.setattr(joint_module, "align_joint", crash)
    with pytest.raises(KeyboardInterrupt):
        run_align_files(source, out, **options)
    assert (out / "tiltseries_align.start.json").is_file()
    assert (out / "tiltseries_align.ckpt.npz").is_file()

    def no_search(*args, **kwargs):
        raise AssertionError("the tilt axis was searched again on --resume")

    monkeypatch.setattr(joint_module, "align_joint", real_align)
    monkeypatch.setattr(axis_module, "search_tilt_axis", no_search)
    resumed = run_align_files(source, out, resume=True, **options)
    assert resumed.record["tilt_axis_search"]["binning"] == 1
    # The checkpoint was taken (not refused as "other inputs", which would raise) and the
    # history holds the whole schedule (2 levels x 2 iterations, whole thickness).
    assert resumed.record["iterations_run"] == 4
    # Without --resume the saved start is not used: the search runs (and is refused here).
    with pytest.raises(AssertionError, match="searched again"):
        run_align_files(source, out, **options)


def _mdoc(path, angles, pixel_A=5.4, order=None):
    """A SerialEM .mdoc as SerialEM writes one for a tilt series: global keys, title lines
    (one with the tilt axis), then a [ZValue = k] section per image with its TiltAngle
    (and keys emkit ignores, a Windows path among them). ``order``: the sections' order."""
    lines = [f"PixelSpacing = {pixel_A}", "ImageFile = ts.mrc", "ImageSize = 32 32",
             "DataMode = 1", "", "[T = SerialEM: Digitized on a Krios   30-Nov-15  15:14:20]",
             "", "[T =     Tilt axis angle = 85.3, binning = 4  spot = 8  camera = 2]", ""]
    for z in order if order is not None else range(len(angles)):
        lines += [f"[ZValue = {z}]", f"TiltAngle = {angles[z]:.5f}", "StagePosition = 20.8 155.3",
                  "Defocus = 2.68", f"SubFramePath = D:\\DATA\\frames\\ts_{z:03d}.mrc", ""]
    path.write_text("\n".join(lines) + "\n", encoding="latin-1")
    return path


def test_angles_from_the_serialem_mdoc_beside_the_stack(tmp_path, caplog):
    """No .tlt: the angles of ts.mrc.mdoc in ZValue order (SerialEM's dose-symmetric order
    is not sorted), and its PixelSpacing when the header says none."""
    _bright_field(tmp_path / "ts.mrc")
    (tmp_path / "ts.tlt").unlink()
    with mrcfile.open(tmp_path / "ts.mrc", mode="r+") as mrc:
        mrc.voxel_size = 0.0
    angles = [0.001, 3.001, -2.999, -5.999, 6.001]
    _mdoc(tmp_path / "ts.mrc.mdoc", angles, order=[0, 2, 1, 4, 3])
    with caplog.at_level(logging.INFO, logger="emkit"):
        series = TiltSeriesSource(tmp_path / "ts.mrc", log=True).read()
    np.testing.assert_allclose(series.angles, angles)
    assert series.angles_path.name == "ts.mrc.mdoc"
    assert series.pixel_size_A == pytest.approx(5.4)
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert "PixelSpacing" in messages and "tilt axis angle 85.3" in messages
    assert "no ts.tlt; using the TiltAngle of each image in ts.mrc.mdoc" in messages
    # a .tlt beside the stack comes first
    (tmp_path / "ts.tlt").write_text("\n".join(str(a + 2) for a in angles) + "\n")
    np.testing.assert_allclose(TiltSeriesSource(tmp_path / "ts.mrc", log=True).read().angles,
                               np.add(angles, 2))
    # given explicitly, under any name
    _mdoc(tmp_path / "other.mdoc", [a + 1 for a in angles])
    given = TiltSeriesSource(tmp_path / "ts.mrc", angles=tmp_path / "other.mdoc",
                             log=True).read()
    np.testing.assert_allclose(given.angles, np.add(angles, 1))


def test_an_mdoc_beside_the_stack_comes_before_the_header_angles(tmp_path):
    """A SerialEM stack whose extended header holds tilt angles and whose .mdoc lies beside
    it: the .mdoc's angles (SerialEM's own record) are used."""
    fei = tmp_path / "ts.mrc"
    fei1_file(fei)
    header = TiltSeriesSource(fei).read().angles
    _mdoc(tmp_path / "ts.mrc.mdoc", list(np.asarray(header) + 0.5))
    np.testing.assert_allclose(TiltSeriesSource(fei).read().angles, np.asarray(header) + 0.5)


def test_autodoc_with_a_byte_order_mark_and_latin1_paths(tmp_path):
    from emkit.io import read_autodoc

    path = tmp_path / "bom.mdoc"
    path.write_bytes(b"\xef\xbb\xbfPixelSpacing = 5.4\n[ZValue = 0]\nTiltAngle = 1\n")
    assert read_autodoc(path).pixel_spacing_A == pytest.approx(5.4)
    path.write_bytes(b"PixelSpacing = 2.7\n[ZValue = 0]\nTiltAngle = 1\n"
                     b"SubFramePath = D:\\caf\xe9.mrc\n")
    doc = read_autodoc(path)
    assert doc.pixel_spacing_A == pytest.approx(2.7)
    assert doc.sections[0].keys["SubFramePath"].endswith("caf\u00e9.mrc")


@pytest.mark.parametrize("broken, words", [
    ("missing", "ZValues are not 0..3"),
    ("no_angle", "has no TiltAngle"),
    ("bad_angle", "is not a number"),
    ("fraction", "is not an image number"),
])
def test_a_broken_mdoc_is_one_line(tmp_path, capsys, broken, words):
    _bright_field(tmp_path / "ts.mrc")
    angles = [0.0, 3.0, -3.0, 6.0, -6.0]
    mdoc = _mdoc(tmp_path / "ts.mdoc", angles, order=[0, 1, 2, 4] if broken == "missing"
                 else None)
    text = mdoc.read_text(encoding="latin-1")
    if broken == "no_angle":
        text = text.replace("TiltAngle = -3.00000\n", "")
    if broken == "bad_angle":
        text = text.replace("TiltAngle = -3.00000", "TiltAngle = minus three")
    if broken == "fraction":
        text = text.replace("[ZValue = 2]", "[ZValue = 1.5]")
    mdoc.write_text(text, encoding="latin-1")
    out = tmp_path / "out"
    status = main(["tomo", "prealign", str(tmp_path / "ts.mrc"), "--angles", str(mdoc),
                   "--output", str(out), "--log"])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(err) == 1 and "ts.mdoc" in err[0] and words in err[0], err
    assert not out.exists()


def test_info_summarises_an_mdoc(tmp_path):
    from emkit.io import describe

    info = describe(_mdoc(tmp_path / "ts.mrc.mdoc", [0.0, 3.0, -3.0, 6.0]))
    assert info["format"] == "SerialEM autodoc" and info["sections"] == "4 ZValue"
    assert info["tilt_angles"] == 4 and info["min_tilt_deg"] == -3.0
    assert info["serialem_tilt_axis_deg"] == 85.3 and info["pixel_size_A"] == 5.4
    assert info["montage_pieces"] == 0
