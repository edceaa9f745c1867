"""Reading a tilt series for the tomo commands: contrast, --log / --invert, header angles."""

from __future__ import annotations

import logging

import mrcfile
import numpy as np
import pytest
from test_io_mrc_variants import TILTS, fei1_file

from emkit.cli.main import main
from emkit.errors import InputError
from emkit.tomo import TiltSeriesSource


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
