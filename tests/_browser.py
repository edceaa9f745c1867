"""Headless Chromium for the tests that need a real browser (the atlas page, HTML reports).

The browser is Debian's ``chromium`` with its ``chromedriver`` (``apt-get install chromium
chromium-driver``; ``make test`` installs them when run as root), driven by Selenium from the
``test`` extra. Nothing is downloaded at test time: the driver is given both paths, so
Selenium Manager never looks for a browser of its own.

When no browser is installed the tests that use it are skipped with the reason, except
under CI (``CI`` set to anything but ``""``, ``0`` or ``false``), where a missing browser
fails them: CI installs one, so a skip there would hide a broken set-up.

Usage in a test module (``tests/`` is on ``sys.path`` when pytest runs, so the module
imports as ``_browser``)::

    from _browser import headless_chromium, screenshot

    @pytest.fixture(scope="module")
    def browser():
        with headless_chromium() as driver:
            yield driver

    def test_page(browser):
        browser.get(url)
        pixels = screenshot(browser)     # (height, width, 3) uint8, one pixel per CSS pixel

The window is ``WIDTH`` x ``HEIGHT`` CSS pixels with a device scale factor of 1, the same on
every machine, so screenshots can be compared pixel by pixel. Override the paths with
``EMKIT_CHROMIUM`` and ``EMKIT_CHROMEDRIVER``.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

WIDTH = 1024
HEIGHT = 768

_CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
_DRIVER_NAMES = ("chromedriver",)


def under_ci() -> bool:
    """True when the tests run under CI (``CI=true``), where a missing browser is a failure."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _find(env: str, names: tuple[str, ...]) -> str | None:
    given = os.environ.get(env)
    if given:
        return given if Path(given).is_file() else None
    for name in names:
        found = shutil.which(name) or (f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").is_file()
                                       else None)
        if found:
            return found
    return None


def _what(env: str, default: str) -> str:
    given = os.environ.get(env)
    return f"{env}={given} (not a file)" if given else default


def browser_paths() -> tuple[str, str]:
    """The Chromium and chromedriver executables, or skip (fail under CI) with the reason."""
    missing = []
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("the Python package selenium (pip install -e '.[test]')")
    chromium = _find("EMKIT_CHROMIUM", _CHROMIUM_NAMES)
    driver = _find("EMKIT_CHROMEDRIVER", _DRIVER_NAMES)
    if chromium is None:
        missing.append(_what("EMKIT_CHROMIUM", "chromium (apt-get install chromium)"))
    if driver is None:
        missing.append(_what("EMKIT_CHROMEDRIVER",
                             "chromedriver (apt-get install chromium-driver)"))
    if missing:
        reason = "no headless browser: missing " + ", ".join(missing) + "; `make test` as root "\
                 "installs them"
        if under_ci():
            pytest.fail(f"{reason} (CI=true: a missing browser is a failure, not a skip)")
        pytest.skip(reason)
    assert chromium is not None and driver is not None
    return chromium, driver


@contextlib.contextmanager
def headless_chromium(width: int = WIDTH, height: int = HEIGHT) -> Iterator[Any]:
    """A Selenium driver of headless Chromium, ``width`` x ``height`` CSS pixels, scale 1.

    Skips the test (fails it under CI) when no browser is installed. The browser gets its
    own profile folder, removed afterwards, so tests running at once never share one.
    """
    chromium, driver_path = browser_paths()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="emkit-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (
        "--headless=new",
        "--no-sandbox",  # tests run as root in CI
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--force-device-scale-factor=1",
        f"--window-size={width},{height}",
        f"--user-data-dir={profile}",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-default-apps",
        "--disable-extensions",
        "--hide-scrollbars",
        "--mute-audio",
    ):
        options.add_argument(flag)
    driver = None
    try:
        driver = webdriver.Chrome(service=Service(executable_path=driver_path),
                                  options=options)
        driver.set_page_load_timeout(60)
        driver.set_script_timeout(60)
        # The viewport itself, not the window: exactly width x height CSS pixels at scale 1.
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
            "width": width, "height": height, "deviceScaleFactor": 1, "mobile": False,
        })
        yield driver
    finally:
        if driver is not None:
            with contextlib.suppress(Exception):
                driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def screenshot(driver: Any) -> np.ndarray:
    """The visible page as a ``(height, width, 3)`` uint8 RGB array."""
    from PIL import Image

    png = driver.get_screenshot_as_png()
    with Image.open(io.BytesIO(png)) as image:
        return np.asarray(image.convert("RGB"))


def element_screenshot(driver: Any, element: Any) -> np.ndarray:
    """One element as a ``(height, width, 3)`` uint8 RGB array."""
    from PIL import Image

    with Image.open(io.BytesIO(element.screenshot_as_png)) as image:
        return np.asarray(image.convert("RGB"))
