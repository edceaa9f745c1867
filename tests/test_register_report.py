"""Registration figures: two-colour overlay and field plot."""

from __future__ import annotations

import numpy as np

from emkit.io import read_volume
from emkit.report.register import overlay_image, save_field_figure, save_overlay
from emkit.sim.sections import section_texture


def test_overlay_grey_where_equal_coloured_where_not():
    image = section_texture((64, 64), seed=0)
    same = overlay_image(image, image)
    assert same.dtype == np.uint8 and same.shape == (64, 64, 3)
    np.testing.assert_array_equal(same[..., 0], same[..., 1])  # magenta + green = grey
    other = overlay_image(image, np.roll(image, 9, axis=0))
    assert np.abs(other[..., 0].astype(int) - other[..., 1]).mean() > 20
    valid = np.ones((64, 64), bool)
    valid[:10] = False
    masked = overlay_image(image, image, valid=valid)
    assert (masked[:10] == (0, 0, 89)).all()


def test_figures_are_written(tmp_path):
    image = section_texture((80, 100), seed=1)
    save_overlay(tmp_path / "o.png", image, image, max_size=50)
    assert read_volume(tmp_path / "o.png").data.shape == (40, 50)  # gray-converted on read
    field = np.zeros((2, 80, 100), np.float32)
    field[1] = np.linspace(0, 5, 100)[None]
    save_field_figure(tmp_path / "f.png", field)
    assert (tmp_path / "f.png").stat().st_size > 1000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.png", "o.png"]
