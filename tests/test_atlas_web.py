"""The atlas page in a real browser, and ``emkit atlas serve`` / ``emkit atlas export``.

A small atlas whose pixels are known (``(37 x + 53 y) mod 256``, so a shift of one pixel
changes every value) is built with :func:`emkit.atlas.build_atlas`, given three overlays
(a half-resolution defect mask, picked particles, segmentation labels), served on a free
port and opened in headless Chromium (:mod:`_browser`). The tests zoom to the deepest
level and pan (OpenSeadragon's viewport through the page's ``emkitAtlas`` API, and a real
mouse drag), and read the screenshots: every atlas pixel in view is a 4 x 4 block of its
own value, the scale bar's white block is as long as its label says, the overlays blend
in their colour and go away when their checkbox is cleared. The exported site is opened
from disk (``file://``) and shows the same pixels.

Bad input (a port in use, a folder that is not an atlas, an output inside the atlas) is
refused with one line and exit 2, and nothing is written.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from _browser import HEIGHT, WIDTH, headless_chromium, screenshot
from emkit.atlas import build_atlas
from emkit.atlas._web import atlas_server, export_site, server_url
from emkit.cli.main import main
from emkit.errors import EmkitError

W, H = 700, 500
PIXEL_NM = 3.7
MASK = (100, 200, 80, 160)  # x0, x1, y0, y1 in atlas pixels (drawn at half resolution)
MASK_RGB = (255, 59, 48)  # the default mask colour, #ff3b30
MASK_OPACITY = 0.45
POINTS = [(300, 200), (320, 260), (500, 100)]
CELLS = [(400, 460, 300, 360), (460, 520, 300, 360)]  # x0, x1, y0, y1 of labels 1 and 2
CENTRE = (WIDTH // 2, HEIGHT // 2)


def pattern() -> np.ndarray:
    y, x = np.mgrid[:H, :W]
    return ((37 * x + 53 * y) % 256).astype(np.uint8)


def _write_overlays(folder: Path) -> None:
    (folder / "overlays").mkdir()
    mask = np.zeros((H // 2, W // 2), np.uint8)
    x0, x1, y0, y1 = (v // 2 for v in MASK)
    mask[y0:y1, x0:x1] = 1
    cv2.imwrite(str(folder / "overlays" / "defects.png"), mask)
    (folder / "overlays" / "particles.csv").write_text(
        "x,y\n" + "".join(f"{x},{y}\n" for x, y in POINTS), encoding="utf-8")
    labels = np.zeros((H, W), np.uint8)
    for value, (x0, x1, y0, y1) in enumerate(CELLS, start=1):
        labels[y0:y1, x0:x1] = value
    cv2.imwrite(str(folder / "overlays" / "cells.png"), labels)
    info = json.loads((folder / "atlas.json").read_text(encoding="utf-8"))
    info["overlays"] = [
        {"name": "defects", "kind": "mask", "file": "overlays/defects.png"},
        {"name": "particles", "kind": "points", "file": "overlays/particles.csv",
         "radius_px": 10},
        {"name": "cells", "kind": "outlines", "file": "overlays/cells.png"},
    ]
    (folder / "atlas.json").write_text(json.dumps(info, indent=2), encoding="utf-8")


@pytest.fixture(scope="module")
def atlas(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("atlas")
    cv2.imwrite(str(root / "source.png"), pattern())
    build_atlas(root / "source.png", root / "atlas", pixel_size_nm=PIXEL_NM)
    _write_overlays(root / "atlas")
    return root / "atlas"


@pytest.fixture(scope="module")
def url(atlas: Path) -> Iterator[str]:
    server = atlas_server(atlas, port=0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server_url(server)
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    with headless_chromium() as driver:
        yield driver


# --------------------------------------------------------------------------- page helpers


def open_page(browser: object, url: str) -> None:
    browser.get(url)
    browser.execute_async_script(
        "var done = arguments[arguments.length - 1];"
        "(function wait() {"
        "  if (window.emkitAtlas && emkitAtlas.isOpen()) { emkitAtlas.whenIdle(done); }"
        "  else { setTimeout(wait, 20); }"
        "})();"
    )


def ensure_page(browser: object, url: str) -> None:
    if browser.current_url != url:
        open_page(browser, url)


def idle(browser: object) -> dict[str, float]:
    browser.execute_async_script("emkitAtlas.whenIdle(arguments[arguments.length - 1]);")
    return browser.execute_script("return emkitAtlas.scale();")


def show(browser: object, x: float, y: float, s: float, overlays: bool = False) -> dict:
    """Put atlas point (x, y) in the middle at s screen px per atlas px; wait for the tiles."""
    browser.execute_script(
        "emkitAtlas.atlas.overlays.forEach(function (o) {"
        "  emkitAtlas.setOverlay(o.name, arguments[0]); });"
        "emkitAtlas.goTo(arguments[1], arguments[2], arguments[3]);",
        overlays, x, y, s,
    )
    return idle(browser)


def atlas_pixels_on_screen(shot: np.ndarray, view: dict, box: tuple[int, int, int, int]
                           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(screen values, atlas values, atlas (x, y)) at the centre of every atlas pixel that
    lies wholly inside the screen box (x0, x1, y0, y1), for an integer pixel scale."""
    s, x0, y0 = view["s"], view["x0"], view["y0"]
    bx0, bx1, by0, by1 = box
    xs = np.arange(int(np.ceil((bx0 - x0) / s)), int(np.floor((bx1 - x0) / s)))
    ys = np.arange(int(np.ceil((by0 - y0) / s)), int(np.floor((by1 - y0) / s)))
    xs = xs[(xs >= 0) & (xs < W)]
    ys = ys[(ys >= 0) & (ys < H)]
    sx = np.floor(x0 + (xs + 0.5) * s).astype(int)
    sy = np.floor(y0 + (ys + 0.5) * s).astype(int)
    gx, gy = np.meshgrid(xs, ys)
    return shot[np.ix_(sy, sx)], pattern()[gy, gx], np.stack([gx, gy], -1)


def central_box(margin_x: int = 250, margin_y: int = 190) -> tuple[int, int, int, int]:
    """A screen box clear of the page's panels (title and overlays top left, scale bar,
    position and navigator along the bottom)."""
    return margin_x, WIDTH - margin_x, margin_y, HEIGHT - margin_y


def resources(browser: object) -> list[str]:
    return browser.execute_script(
        "return performance.getEntriesByType('resource').map(function (e) { return e.name; });"
    )


# --------------------------------------------------------------------------- the page


def test_deepest_level_shows_the_atlas_pixels_after_zoom_and_pan(browser, url: str) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    open_page(browser, url)
    view = show(browser, 605, 430, 4)
    assert view["s"] == pytest.approx(4)
    assert (view["x0"], view["y0"]) == pytest.approx((CENTRE[0] - 605 * 4, CENTRE[1] - 430 * 4))
    view = {key: round(value, 6) for key, value in view.items()}
    assert any("/atlas_files/10/" in name for name in resources(browser)), \
        "no tile of the deepest level (10) was loaded"
    shot = screenshot(browser)
    seen, expected, _ = atlas_pixels_on_screen(shot, view, central_box())
    assert expected.size > 2000
    assert np.array_equal(seen[..., 0], expected), "the screen does not show the atlas pixels"
    assert np.array_equal(seen[..., 0], seen[..., 2])  # gray stays gray
    # each atlas pixel is a sharp 4 x 4 block of its value (no smoothing between pixels)
    top, left = round(view["y0"]) + 4 * 430, round(view["x0"]) + 4 * 605
    block = shot[top:top + 4, left:left + 4, 0]
    assert (block == pattern()[430, 605]).all()

    # pan with the mouse: drag the atlas 160 px left and 120 px up
    viewer = browser.find_element(By.ID, "viewer")
    ActionChains(browser).move_to_element(viewer).click_and_hold() \
        .move_by_offset(-80, -60).move_by_offset(-80, -60).release().perform()
    moved = {key: round(value, 6) for key, value in idle(browser).items()}
    assert moved["s"] == pytest.approx(4)
    # (the drag's first pixel or so goes to telling a drag from a click)
    assert moved["x0"] == pytest.approx(view["x0"] - 160, abs=2)
    assert moved["y0"] == pytest.approx(view["y0"] - 120, abs=2)
    shot = screenshot(browser)
    seen, expected, where = atlas_pixels_on_screen(shot, moved, central_box())
    assert where[..., 0].max() > 605 + 60  # the view did move onto other pixels
    assert np.array_equal(seen[..., 0], expected)


@pytest.mark.parametrize(("s", "label", "nm"), [
    (4, "100 nm", 100), (1, "500 nm", 500), (0.1, "5 µm", 5000), (0.25, "2 µm", 2000),
])
def test_scale_bar_reads_the_right_length(browser, url: str, s: float, label: str,
                                          nm: float) -> None:
    from selenium.webdriver.common.by import By

    ensure_page(browser, url)
    show(browser, 350, 250, s)
    assert browser.find_element(By.ID, "scalebar-label").text == label
    rect = browser.execute_script(
        "return document.getElementById('scalebar-bar').getBoundingClientRect().toJSON();")
    shot = screenshot(browser)
    row = shot[int(rect["top"] + rect["height"] / 2)]
    white = np.flatnonzero((row >= 250).all(axis=1))
    white = white[(white >= rect["left"] - 20) & (white <= rect["right"] + 20)]
    length_px = white.max() - white.min() + 1
    assert white.size == length_px  # one solid block
    expected_px = nm / PIXEL_NM * s  # the label's length at this zoom, in screen px
    assert abs(length_px - expected_px) <= 1, (length_px, expected_px)
    assert 64 <= length_px <= 160


def test_cursor_position_is_shown_in_micrometres(browser, url: str) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    ensure_page(browser, url)
    show(browser, 350, 250, 4)
    viewer = browser.find_element(By.ID, "viewer")
    # 40 px right of and 24 px above the middle: atlas point (360, 244)
    ActionChains(browser).move_to_element_with_offset(viewer, 40, -24).perform()
    text = browser.find_element(By.ID, "coords").text
    x_um, y_um = (float(v) for v in re.findall(r"([-\d.]+) µm", text))
    assert x_um == pytest.approx(360 * PIXEL_NM / 1000, abs=0.0006)
    assert y_um == pytest.approx(244 * PIXEL_NM / 1000, abs=0.0006)
    assert "pixel 360, 244" in text
    assert "1.332 µm" in text and "0.903 µm" in text


def test_overlays_blend_in_their_colour_and_toggle(browser, url: str) -> None:
    from selenium.webdriver.common.by import By

    ensure_page(browser, url)
    view = {k: round(v, 6) for k, v in show(browser, 150, 120, 4, overlays=True).items()}
    on = screenshot(browser)
    box = browser.find_element(By.CSS_SELECTOR, '#overlays input[data-overlay="defects"]')
    assert box.is_selected()
    box.click()  # the real checkbox
    assert not box.is_selected()
    idle(browser)
    off = screenshot(browser)

    seen_on, expected, where = atlas_pixels_on_screen(on, view, central_box(320, 170))
    seen_off, _, _ = atlas_pixels_on_screen(off, view, central_box(320, 170))
    x0, x1, y0, y1 = MASK
    inside = ((where[..., 0] >= x0) & (where[..., 0] < x1)
              & (where[..., 1] >= y0) & (where[..., 1] < y1))
    assert inside.sum() > 1000 and (~inside).sum() > 1000
    # off: the atlas itself; on: the mask's colour blended over it, only inside the mask
    assert np.array_equal(seen_off[..., 0], expected)
    blend = (1 - MASK_OPACITY) * expected[..., None] + MASK_OPACITY * np.array(MASK_RGB)
    assert np.abs(seen_on[inside].astype(float) - blend[inside]).max() <= 2.5
    assert np.array_equal(seen_on[~inside], seen_off[~inside])
    box.click()
    assert box.is_selected()

    # particles and cell outlines: each checkbox changes the picture where they are drawn
    for name, (x, y) in (("particles", POINTS[0]), ("cells", (CELLS[0][1], CELLS[0][2]))):
        view = show(browser, x, y, 2, overlays=True)
        shown = screenshot(browser)
        browser.find_element(By.CSS_SELECTOR, f'#overlays input[data-overlay="{name}"]').click()
        idle(browser)
        hidden = screenshot(browser)
        near = (slice(CENTRE[1] - 40, CENTRE[1] + 40), slice(CENTRE[0] - 40, CENTRE[0] + 40))
        changed = np.any(shown[near] != hidden[near], axis=-1)
        assert changed.sum() > 20, name
        assert view["s"] == 2


def test_the_page_loads_nothing_from_outside(browser, url: str, atlas: Path) -> None:
    open_page(browser, url)
    show(browser, 350, 250, 2, overlays=True)
    names = resources(browser)
    assert names and all(name.startswith(url) for name in names), names
    assert f"{url}vendor/openseadragon/openseadragon.min.js" in names
    web = Path(__file__).resolve().parents[1] / "src" / "emkit" / "atlas" / "web"
    for name in ("index.html", "viewer.js", "viewer.css"):
        text = (web / name).read_text(encoding="utf-8")
        # the SVG namespace is a name, not an address the page loads
        assert re.findall(r"https?://", text.replace("http://www.w3.org/2000/svg", "")) == []
    logs = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert not logs, logs


def test_exported_site_works_from_disk(browser, atlas: Path, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    site = tmp_path / "site"
    assert main(["atlas", "export", str(atlas), "--output", str(site)]) == 0
    assert "wrote" in capsys.readouterr().out
    names = {str(p.relative_to(site)) for p in site.rglob("*") if p.is_file()}
    assert {"index.html", "viewer.js", "viewer.css", "atlas.js", "atlas.json", "atlas.dzi",
            "vendor/openseadragon/openseadragon.min.js", "vendor/openseadragon/LICENSE.txt",
            "atlas_files/10/2_1.png", "overlays/0.png", "overlays/2.png"} <= names
    assert not any(".emkit-part" in name for name in names)
    assert not any(name.startswith("atlas.ome.zarr") for name in names)

    page = site.resolve().as_uri() + "/index.html"
    open_page(browser, page)
    view = {k: round(v, 6) for k, v in show(browser, 605, 430, 4).items()}
    seen, expected, _ = atlas_pixels_on_screen(screenshot(browser), view, central_box())
    assert expected.size > 2000 and np.array_equal(seen[..., 0], expected)
    # the mask overlay is there too
    view = {k: round(v, 6) for k, v in show(browser, 150, 120, 4, overlays=True).items()}
    seen, expected, _ = atlas_pixels_on_screen(screenshot(browser), view, central_box(320, 250))
    assert (seen[..., 0] > seen[..., 1] + 40).mean() > 0.9  # reddened
    # exporting again into the same (emkit's) folder replaces it
    assert main(["atlas", "export", str(atlas), "--output", str(site)]) == 0


def test_an_atlas_without_a_pixel_size_measures_in_pixels(browser, atlas: Path,
                                                          tmp_path: Path) -> None:
    import shutil

    from selenium.webdriver.common.by import By

    copy = tmp_path / "no-pixel-size"
    shutil.copytree(atlas, copy)
    info = json.loads((copy / "atlas.json").read_text(encoding="utf-8"))
    info["pixel_size_nm"] = None
    (copy / "atlas.json").write_text(json.dumps(info), encoding="utf-8")
    server = atlas_server(copy, port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        open_page(browser, server_url(server))
        show(browser, 350, 250, 1)
        assert browser.find_element(By.ID, "scalebar-label").text == "100 px"
        assert "pixel size unknown" in browser.find_element(By.ID, "size").text
    finally:
        server.shutdown()
        server.server_close()


# --------------------------------------------------------------------------- serve (no browser)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_command_serves_until_interrupted(atlas: Path) -> None:
    port = _free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}

    def default_sigint() -> None:
        # A suite started as a background job of a non-interactive shell ignores SIGINT, and
        # an ignored SIGINT is inherited: the server would then (rightly) not stop on it.
        signal.signal(signal.SIGINT, signal.SIG_DFL)

    process = subprocess.Popen(
        [sys.executable, "-m", "emkit.cli.main", "atlas", "serve", str(atlas), "--port",
         str(port)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        preexec_fn=default_sigint)
    try:
        line = process.stdout.readline()
        assert f"http://127.0.0.1:{port}/" in line, line + process.stderr.read()
        base = f"http://127.0.0.1:{port}/"
        with urllib.request.urlopen(base, timeout=10) as answer:
            assert b"vendor/openseadragon/openseadragon.min.js" in answer.read()
            assert answer.headers["Content-Type"].startswith("text/html")
        with urllib.request.urlopen(base + "atlas.js", timeout=10) as answer:
            data = answer.read().decode()
        page = json.loads(data[data.index("{"): data.rindex("}") + 1])
        assert (page["width"], page["height"], page["pixel_size_nm"]) == (W, H, PIXEL_NM)
        assert page["max_level"] == 10 and page["tile_size"] == 254 and page["overlap"] == 1
        assert [o["name"] for o in page["overlays"]] == ["defects", "particles", "cells"]
        assert page["overlays"][1]["points"] == [[float(x), float(y)] for x, y in POINTS]
        with urllib.request.urlopen(base + "atlas_files/10/0_0.png", timeout=10) as answer:
            tile = cv2.imdecode(np.frombuffer(answer.read(), np.uint8), cv2.IMREAD_UNCHANGED)
        assert np.array_equal(tile[:254, :254], pattern()[:254, :254])
        for path in ("atlas_files/../atlas.json", "atlas.ome.zarr/zarr.json", "..%2Fx",
                     "emkit-run.json", "overlays/9.png", "vendor/../../_web.py"):
            with pytest.raises(urllib.error.HTTPError) as error:
                urllib.request.urlopen(base + path, timeout=10)
            assert error.value.code == 404, path
    finally:
        process.send_signal(signal.SIGINT)
        try:
            status = process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
    assert status == 0
    assert "stopped" in process.stderr.read()


# --------------------------------------------------------------------------- bad input


def _refused(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    status = main(argv)
    lines = capsys.readouterr().err.splitlines()
    assert status == 2, lines
    assert len(lines) == 1 and lines[0].startswith("emkit: error: "), lines
    return lines[0]


def test_a_port_in_use_is_refused(atlas: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        line = _refused(["atlas", "serve", str(atlas), "--port", str(port)], capsys)
    assert line == f"emkit: error: port {port} is in use; give another --port"


def test_a_folder_that_is_not_an_atlas_is_refused(
    atlas: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "image.png").write_bytes(b"not really")
    for command in (["serve", str(plain), "--port", "0"],
                    ["export", str(plain), "--output", str(tmp_path / "site")]):
        line = _refused(["atlas", *command], capsys)
        assert str(plain) in line and "not an emkit atlas" in line
        assert "atlas.json is missing" in line and "emkit atlas build" in line
    assert not (tmp_path / "site").exists()
    assert sorted(p.name for p in plain.iterdir()) == ["image.png"]
    line = _refused(["atlas", "serve", str(tmp_path / "nothing"), "--port", "0"], capsys)
    assert "does not exist" in line


def test_export_refuses_an_output_inside_the_atlas_or_a_users_folder(
    atlas: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = sorted(str(p.relative_to(atlas)) for p in atlas.rglob("*"))
    line = _refused(["atlas", "export", str(atlas), "--output", str(atlas / "site")], capsys)
    assert "site" in line
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "notes.txt").write_text("mine", encoding="utf-8")
    _refused(["atlas", "export", str(atlas), "--output", str(theirs)], capsys)
    assert sorted(p.name for p in theirs.iterdir()) == ["notes.txt"]
    assert sorted(str(p.relative_to(atlas)) for p in atlas.rglob("*")) == before
    with pytest.raises(EmkitError):
        export_site(atlas, atlas / "inside")
    assert not (atlas / "inside").exists()


def test_a_damaged_overlay_is_one_line_naming_the_file(
    atlas: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(atlas, copy)
    info = json.loads((copy / "atlas.json").read_text(encoding="utf-8"))
    cases = [
        ({"name": "x", "kind": "mask", "file": "../source.png"}, "outside the atlas folder"),
        ({"name": "x", "kind": "blobs", "file": "overlays/defects.png"}, '"kind" must be'),
        ({"name": "x", "kind": "mask", "file": "overlays/none.png"}, "does not exist"),
        ({"name": "x", "kind": "points", "file": "overlays/defects.png"}, ".csv or .json"),
    ]
    (copy / "overlays" / "bad.csv").write_text("a,b\n1,2\n", encoding="utf-8")
    cases.append(({"name": "x", "kind": "points", "file": "overlays/bad.csv"}, "columns x and y"))
    for overlay, words in cases:
        info["overlays"] = [overlay]
        (copy / "atlas.json").write_text(json.dumps(info), encoding="utf-8")
        line = _refused(["atlas", "export", str(copy), "--output", str(tmp_path / "s")], capsys)
        assert words in line, line
        assert not (tmp_path / "s").exists()


def test_a_failed_export_leaves_nothing(atlas: Path, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from emkit.atlas import _web

    def broken(overlay: object) -> bytes:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(_web, "overlay_png", broken)
    with pytest.raises(OSError):
        export_site(atlas, tmp_path / "site")
    assert list(tmp_path.iterdir()) == []


def test_serve_needs_no_network_answer_to_start(atlas: Path) -> None:
    """The library server binds, answers and closes (what the CLI and the tests use)."""
    server = atlas_server(atlas, port=0)
    try:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        start = time.monotonic()
        with urllib.request.urlopen(server_url(server) + "atlas.dzi", timeout=10) as answer:
            assert b'TileSize="254"' in answer.read()
        assert time.monotonic() - start < 5
    finally:
        server.shutdown()
        server.server_close()
