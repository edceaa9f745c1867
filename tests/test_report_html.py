"""The HTML run report: written by every workflow command, self-contained, complete.

A real run (``emkit sim section`` + ``emkit register pair``, small) is checked twice: its page
parsed with Python's ``html.parser`` (structure, every figure a decodable ``data:`` URI,
no external resource, links that resolve, escaping), and opened in headless Chromium
(every figure decoded by the browser, every metric it promises on the page).
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import logging
import sys
import urllib.parse
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import pytest
from PIL import Image

from emkit.cli.main import main
from emkit.report import html as report_html
from emkit.report.html import flatten, format_value, write_demo_index, write_run_report


class _Page(HTMLParser):
    """The tags and attributes of a page, and its text."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def all(self, tag: str) -> list[dict[str, str | None]]:
        return [a for t, a in self.tags if t == tag]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("runs")
    commands = [
        ["sim", "section", "--output", str(root / "sec"), "--size", "96", "96", "--seed", "3"],
        [
            "register",
            "pair",
            str(root / "sec" / "fixed.png"),
            str(root / "sec" / "moving.png"),
            "--output",
            str(root / "reg" / "warped.png"),
            "--true-field",
            str(root / "sec" / "true_field.npy"),
        ],
    ]
    commands += [
        [
            "sim",
            "mosaic",
            "--output",
            str(root / "mosaic"),
            "--size",
            "300",
            "300",
            "--tile",
            "128",
            "--overlap",
            "40",
            "--seed",
            "2",
        ],
        [
            "atlas",
            "build",
            str(root / "mosaic" / "positions.csv"),
            "--output",
            str(root / "atlas"),
            "--quiet",
        ],
        [
            "sim",
            "tiltseries",
            "--output",
            str(root / "tilt"),
            "--shape",
            "8",
            "32",
            "32",
            "--tilt-step",
            "10",
            "--snr",
            "4",
        ],
        [
            "tomo",
            "reconstruct",
            str(root / "tilt" / "tiltseries.mrc"),
            "--thickness",
            "8",
            "--output",
            str(root / "rec" / "rec.mrc"),
        ],
    ]
    for argv in commands:
        with mock.patch.object(sys, "argv", ["emkit", *argv]):  # as from a shell
            assert main(argv) == 0
    # each run's record: in its own output folder, or named after its one output file
    return {
        "sim": root / "sec" / "emkit-run.json",
        "register": root / "reg" / "warped.emkit-run.json",
        "mosaic": root / "mosaic" / "emkit-run.json",
        "atlas": root / "atlas" / "emkit-run.json",
        "tilt": root / "tilt" / "emkit-run.json",
        "tomo": root / "rec" / "rec.emkit-run.json",
    }


def _report(record_file: Path) -> Path:
    return record_file.parent / report_html.report_name_for(record_file.name)


def test_every_run_holds_its_report_beside_its_record(runs: dict[str, Path]) -> None:
    for name, record_file in runs.items():
        assert record_file.is_file() and _report(record_file).is_file(), name
    assert not (runs["register"].parent / "report.html").exists()


def _record(record_file: Path) -> dict[str, Any]:
    return json.loads(record_file.read_text())


def _figures(record_file: Path) -> set[str]:
    return {n for n in _record(record_file)["outputs"] if n.endswith(".png")}


# --------------------------------------------------------------------------- html.parser


@pytest.mark.parametrize("which", ["sim", "register"])
def test_every_run_folder_holds_a_self_contained_report(runs: dict[str, Path], which: str) -> None:
    folder = runs[which].parent
    text = _report(runs[which]).read_text(encoding="utf-8")
    page = _Page(text)
    tags = {t for t, _ in page.tags}
    assert "script" not in tags and "link" not in tags and "iframe" not in tags
    for attrs in page.tags:
        for name in ("src", "href"):
            value = attrs[1].get(name) or ""
            assert not value.lower().startswith(("http:", "https:", "//")), value
    # every figure the run wrote is embedded, as a PNG the size the tag says
    images = {a["alt"]: a for a in page.all("img")}
    assert set(images) == _figures(runs[which]) and images
    for alt, attrs in images.items():
        src = attrs["src"] or ""
        assert src.startswith("data:image/png;base64,"), alt
        with Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))) as image:
            assert image.size == (int(attrs["width"] or 0), int(attrs["height"] or 0))
    # every link is to a file of the run, relative
    hrefs = {a["href"] or "" for a in page.all("a")}
    ids = {a.get("id") for _, a in page.tags}
    for href in hrefs:
        if href.startswith("#"):
            assert href[1:] in ids, href  # the table of contents
        else:
            assert href and (folder / urllib.parse.unquote(href)).exists(), href
    assert runs[which].name in hrefs
    for section in ("what-ran", "parameters", "inputs", "timings", "metrics", "figures", "outputs"):
        assert any(a.get("id") == section for t, a in page.tags if t == "h2"), section


def test_the_report_lists_inputs_metrics_and_timings(runs: dict[str, Path]) -> None:
    record = _record(runs["register"])
    text = _report(runs["register"]).read_text(encoding="utf-8")
    page = _Page(text)
    rows = {a["data-metric"] for a in page.all("tr") if "data-metric" in a}
    metrics = record["results"]["metrics"]
    for key in ("ncc", "ssim", "nmi"):
        assert f"results.metrics.registered.{key}" in rows
        assert format_value(metrics["registered"][key]) in text
    assert "results.metrics.epe_px.mean" in rows or any("epe" in r for r in rows)
    timings = {a["data-timing"] for a in page.all("tr") if "data-timing" in a}
    assert "wall time of the command (s)" in timings
    assert any("seconds" in t for t in timings)
    # inputs: size and SHA-256 of each file, recorded at run time
    fixed = runs["sim"].parent / "fixed.png"
    [entry] = [i for i in record["inputs"] if i["path"].endswith("fixed.png")]
    assert entry["sha256"] == hashlib.sha256(fixed.read_bytes()).hexdigest()
    assert entry["bytes"] == fixed.stat().st_size and entry["sha256"] in text
    assert record["command_line"].startswith("emkit register pair")
    assert "<h1>emkit register pair</h1>" in text


def test_text_is_escaped(tmp_path: Path) -> None:
    record = {
        "command_line": "emkit x '<script>alert(1)</script>'",
        "parameters": {"name": "<b>&\"'", "command": "<i>"},
        "results": {"a<b": "</td><script>", "n": 1.23456789},
    }
    (tmp_path / "emkit-run.json").write_text(json.dumps(record))
    (tmp_path / "a&b <c>.png").write_bytes(_png(8, 6))
    text = write_run_report(tmp_path).read_text(encoding="utf-8")
    page = _Page(text)
    assert "script" not in {t for t, _ in page.tags}
    assert "&lt;script&gt;" in text and "&lt;b&gt;&amp;&quot;&#x27;" in text
    assert "1.23457" in text
    [img] = page.all("img")
    assert img["alt"] == "a&b <c>.png"
    assert any(a["href"] == "a%26b%20%3Cc%3E.png" for a in page.all("a"))


def _png(width: int, height: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((height, width, 3), 128, np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def test_large_and_many_figures_are_bounded(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "emkit-run.json").write_text(json.dumps({"command_line": "emkit t"}))
    (tmp_path / "plots").mkdir()
    (tmp_path / "plots" / "big.png").write_bytes(_png(2400, 600))
    (tmp_path / "small.png").write_bytes(_png(10, 10))
    (tmp_path / "broken.png").write_bytes(b"not a png")
    text = write_run_report(tmp_path).read_text(encoding="utf-8")
    images = {a["alt"]: a for a in _Page(text).all("img")}
    assert images["plots/big.png"]["width"] == "1600" and images["plots/big.png"]["height"] == "400"
    assert set(images) == {"plots/big.png", "small.png"}
    assert 'href="broken.png"' in text  # linked, not embedded
    monkeypatch.setattr(report_html, "MAX_FIGURES", 1)
    text = write_run_report(tmp_path).read_text(encoding="utf-8")
    assert len(_Page(text).all("img")) == 1 and 'href="small.png"' in text


def test_large_inputs_are_hashed_by_their_ends(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(report_html, "HASH_WHOLE_BYTES", 1000)
    monkeypatch.setattr(report_html, "HASH_PART_BYTES", 100)
    data = bytes(range(256)) * 10
    (tmp_path / "big.bin").write_bytes(data)
    (tmp_path / "small.bin").write_bytes(data[:50])
    entries = {
        Path(e["path"]).name: e
        for e in report_html.describe_inputs([tmp_path, tmp_path / "missing.mrc"])
    }
    assert entries["small.bin"]["sha256"] == hashlib.sha256(data[:50]).hexdigest()
    assert entries["big.bin"]["hashed"].startswith("first and last")
    assert entries["big.bin"]["bytes"] == len(data) and len(entries["big.bin"]["sha256"]) == 64
    assert entries["missing.mrc"]["sha256"] is None


def test_flatten_summarises_lists() -> None:
    rows = dict(
        flatten(
            {
                "a": {"b": 1.0},
                "short": [1, 2],
                "long": list(range(100)),
                "rows": [{"loss": 3.0}, {"loss": 2.0}, {"loss": 1.5}, {"loss": 1.0}],
            }
        )
    )
    assert rows["a.b"] == "1" and rows["short"] == "[1, 2]"
    assert rows["long"].startswith("100 values: min 0, mean 49.5, max 99")
    assert rows["rows"].startswith("4 entries") and rows["rows[3].loss"] == "1"


def test_report_command_renders_again_and_refuses_other_folders(
    runs: dict[str, Path], tmp_path: Path, capsys
) -> None:
    for run in (runs["register"], runs["sim"].parent):  # a record file, a run folder
        record_file = run if run.is_file() else run / "emkit-run.json"
        before = record_file.read_bytes()
        _report(record_file).unlink()
        assert main(["report", str(run)]) == 0
        assert _report(record_file).is_file()
        assert record_file.read_bytes() == before
    # a record copied under another name draws a page of that name, which does not list
    # itself among the run's outputs
    copy = runs["register"].parent / "copy.emkit-run.json"
    copy.write_bytes(runs["register"].read_bytes())
    assert main(["report", str(copy)]) == 0
    page = (copy.parent / "copy.report.html").read_text(encoding="utf-8")
    assert 'href="copy.emkit-run.json"' in page and 'href="warped.report.html"' not in page
    copy.unlink()
    (copy.parent / "copy.report.html").unlink()
    capsys.readouterr()
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "emkit-run.json" in err
    assert list(tmp_path.iterdir()) == []


def test_a_page_that_cannot_be_drawn_does_not_fail_the_run(
    tmp_path: Path, monkeypatch, caplog
) -> None:
    def broken(*args: Any, **kwargs: Any) -> str:
        raise RuntimeError("no page")

    monkeypatch.setattr(report_html, "render_run_report", broken)
    with caplog.at_level(logging.WARNING):
        assert main(["sim", "section", "--output", str(tmp_path / "s"), "--size", "64", "64"]) == 0
    assert (tmp_path / "s" / "emkit-run.json").is_file()
    assert not (tmp_path / "s" / "report.html").exists()
    assert "report.html" in caplog.text and "no page" in caplog.text


def test_demo_index_links_each_report(tmp_path: Path) -> None:
    (tmp_path / "tomo").mkdir()
    (tmp_path / "tomo" / "report.html").write_text("<html></html>")
    summary = {
        "tomo": {"shift_error_px": 0.25, "nested": {"fsc": 0.5}, "seconds": 3.0},
        "register": {"epe": 0.1, "seconds": 1.0},
    }
    text = write_demo_index(tmp_path, summary).read_text(encoding="utf-8")
    links = {a["href"] for a in _Page(text).all("a")}
    assert {"tomo/report.html", "register/report.html", "summary.json"} <= links
    assert "shift_error_px" in text and "0.25" in text and "nested.fsc" in text


@pytest.mark.slow
def test_demo_writes_a_report_per_workflow_and_an_index(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    assert main(["demo", "--output", str(out), "--only", "register", "--quiet"]) == 0
    assert (out / "register" / "report.html").is_file() and (out / "report.html").is_file()
    page = _Page((out / "index.html").read_text(encoding="utf-8"))
    assert "register/report.html" in {a["href"] for a in page.all("a")}
    summary = json.loads((out / "summary.json").read_text())
    images = {
        a["alt"]
        for a in _Page((out / "register" / "report.html").read_text(encoding="utf-8")).all("img")
    }
    assert {"overlay_before.png", "field.png"} <= images
    assert summary["register"]


# --------------------------------------------------------------------------- browser


@pytest.fixture(scope="module")
def browser():
    from _browser import headless_chromium

    with headless_chromium() as driver:
        yield driver


_IMAGES_JS = """
const imgs = Array.from(document.images);
return imgs.map(i => [i.alt, i.complete, i.naturalWidth, i.naturalHeight]);
"""


@pytest.mark.parametrize("run", ["register", "atlas", "tomo"])
def test_report_in_a_browser_shows_every_figure_and_metric(
    runs: dict[str, Path], browser, run: str
) -> None:
    from selenium.webdriver.common.by import By

    record = _record(runs[run])
    browser.get(_report(runs[run]).resolve().as_uri())
    images = {alt: (complete, w, h) for alt, complete, w, h in browser.execute_script(_IMAGES_JS)}
    assert set(images) == _figures(runs[run])
    for alt, (complete, width, height) in images.items():
        assert complete and width > 0 and height > 0, alt  # decoded by the browser
    body = browser.find_element(By.TAG_NAME, "body").text
    for name, value in flatten(record["results"], "results"):
        if "seconds" in name:
            continue
        row = browser.find_element(By.CSS_SELECTOR, f'tr[data-metric="{name}"]')
        # .text of a row below the fold is still its rendered text
        assert name in row.text and value in row.text
    assert record["command_line"] in body and record["emkit_version"] in body
    command = {"register": "register pair", "atlas": "atlas build", "tomo": "tomo reconstruct"}
    assert browser.title.startswith(f"emkit {command[run]}")


def test_atlas_report_lists_its_pyramid_tiles_as_one_folder(tmp_path):
    """An atlas run's DeepZoom tiles are one output, not hundreds of figures."""
    import numpy as np

    from emkit.cli.main import main
    from emkit.io import write_volume

    write_volume(
        tmp_path / "section.png", (np.arange(600 * 500) % 251).astype(np.uint8).reshape(600, 500)
    )
    out = tmp_path / "atlas"
    assert (
        main(["atlas", "build", str(tmp_path / "section.png"), "--output", str(out), "--quiet"])
        == 0
    )
    page = (out / "report.html").read_text(encoding="utf-8")
    assert 'href="atlas_files"' in page
    assert "data:image/png;base64" not in page  # no pyramid tile embedded as a figure


def test_atlas_run_checksums_its_tiles(runs: dict[str, Path]) -> None:
    """A tile list's tiles are inputs too: each one gets a size and a SHA-256."""
    inputs = _record(runs["atlas"])["inputs"]
    tiles = [e for e in inputs if e["path"].endswith((".tif", ".png"))]
    n_tiles = len(list((runs["mosaic"].parent / "tiles").iterdir()))
    assert len(tiles) == n_tiles and n_tiles >= 4
    assert all(e["sha256"] and len(e["sha256"]) == 64 for e in tiles)
