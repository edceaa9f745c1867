"""Coordinate tables: CSV/TSV/STAR/DeepFinder XML, always (z, y, x) pixels in memory."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from emkit.errors import FileFormatError, MismatchError, MissingFileError, ShapeError
from emkit.io import (
    read_coordinates,
    read_deepfinder_xml,
    write_coordinates,
    write_deepfinder_xml,
)

ZYX = np.array([[10.0, 20.5, 30.25], [1.0, 2.0, 3.0], [100.125, 0.0, 7.5]])


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".star", ".xml"])
def test_round_trip_with_and_without_classes(tmp_path: Path, suffix: str) -> None:
    path = write_coordinates(tmp_path / f"c{suffix}", ZYX, classes=[1, 2, 1])
    zyx, classes = read_coordinates(path)
    np.testing.assert_allclose(zyx, ZYX, atol=1e-4)
    assert classes.tolist() == [1, 2, 1]
    zyx, classes = read_coordinates(write_coordinates(tmp_path / f"n{suffix}", ZYX))
    np.testing.assert_allclose(zyx, ZYX, atol=1e-4)
    assert classes is None or classes.tolist() == [1, 1, 1]  # XML always has a class


def test_csv_header_is_x_y_z_class(tmp_path: Path) -> None:
    path = write_coordinates(tmp_path / "c.csv", ZYX[:1], classes=[4])
    assert path.read_text().splitlines() == ["x,y,z,class", "30.2500,20.5000,10.0000,4"]
    path = write_coordinates(tmp_path / "c.tsv", ZYX[:1])
    assert path.read_text().splitlines()[0] == "x\ty\tz"


def test_csv_variants_read(tmp_path: Path) -> None:
    (tmp_path / "h.csv").write_text("# picked by hand\nZ,X,Y,Label\n1,3,2,7\n4,6,5,8\n")
    zyx, classes = read_coordinates(tmp_path / "h.csv")
    np.testing.assert_array_equal(zyx, [[1, 2, 3], [4, 5, 6]])
    assert classes.tolist() == [7, 8]
    (tmp_path / "plain.csv").write_text("3,2,1\n6,5,4\n")
    zyx, classes = read_coordinates(tmp_path / "plain.csv")
    np.testing.assert_array_equal(zyx, [[1, 2, 3], [4, 5, 6]])
    assert classes is None
    (tmp_path / "napari.csv").write_text("index,axis-0,axis-1,axis-2\n0,1,2,3\n")
    np.testing.assert_array_equal(read_coordinates(tmp_path / "napari.csv")[0], [[1, 2, 3]])


def test_deepfinder_xml_attributes_and_angles(tmp_path: Path) -> None:
    angles = np.array([[10.0, 20.0, 30.0], [0.0, 0.0, 0.0], [1.5, 2.5, 3.5]])
    path = write_deepfinder_xml(
        tmp_path / "o.xml", ZYX, class_label=[3, 4, 5], tomo_idx=2, angles_deg=angles
    )
    text = path.read_text()
    assert text.startswith("<objlist>") and 'tomo_idx="2"' in text
    assert 'class_label="3" x="30.25" y="20.5" z="10.0" phi="10.0" psi="20.0" the="30.0"' in text
    objects = read_deepfinder_xml(path)
    np.testing.assert_array_equal(objects["zyx"], ZYX)
    np.testing.assert_array_equal(objects["angles_deg"], angles)
    assert objects["class_label"].tolist() == [3, 4, 5]
    assert objects["tomo_idx"].tolist() == [2, 2, 2]
    (tmp_path / "min.xml").write_text('<objlist><object x="1" y="2" z="3"/></objlist>')
    objects = read_deepfinder_xml(tmp_path / "min.xml")
    assert objects["angles_deg"] is None and objects["class_label"].tolist() == [1]


def test_bad_coordinate_input(tmp_path: Path) -> None:
    with pytest.raises(FileFormatError, match="c.txt: unknown coordinate file type"):
        write_coordinates(tmp_path / "c.txt", ZYX)
    with pytest.raises(ShapeError, match="c.csv"):
        write_coordinates(tmp_path / "c.csv", ZYX[:, :2])
    with pytest.raises(MismatchError, match="c.csv"):
        write_coordinates(tmp_path / "c.csv", ZYX, classes=[1, 2])
    with pytest.raises(MissingFileError, match="none.csv"):
        read_coordinates(tmp_path / "none.csv")
    (tmp_path / "cols.csv").write_text("a,b,c\n1,2,3\n")
    with pytest.raises(FileFormatError, match="cols.csv: has columns"):
        read_coordinates(tmp_path / "cols.csv")
    (tmp_path / "bad.xml").write_text("<objlist><object x='1'")
    with pytest.raises(FileFormatError, match="bad.xml: is not valid XML"):
        read_coordinates(tmp_path / "bad.xml")
    (tmp_path / "noz.xml").write_text('<objlist><object x="1" y="2"/></objlist>')
    with pytest.raises(FileFormatError, match="noz.xml: object 1"):
        read_coordinates(tmp_path / "noz.xml")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.xml", "cols.csv", "noz.xml"]
