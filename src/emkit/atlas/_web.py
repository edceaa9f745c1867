"""The atlas in a web browser: ``emkit atlas serve`` and ``emkit atlas export``.

One page (``web/index.html`` with ``viewer.js`` and ``viewer.css``) shows the atlas's
DeepZoom pyramid with OpenSeadragon (bundled in ``web/vendor/openseadragon``, no network
needed), a scale bar, the cursor position in µm and the overlays listed in ``atlas.json``,
each with a checkbox.

Both commands publish the same tree, so a served atlas and an exported site behave alike::

    index.html  viewer.js  viewer.css  vendor/openseadragon/...    the page (bundled)
    atlas.js         the atlas for the page: size, pixel size, tiles, overlays (generated)
    atlas.dzi  atlas.json  atlas_files/<level>/<col>_<row>.<fmt>     the atlas's own files
    overlays/<i>.png the mask and outline overlays, coloured and transparent (generated)

The page reads everything through ``<script>`` and ``<img>`` elements, never ``fetch``, so
an exported site also works opened straight from disk (``file://``).

Overlays (``atlas.json`` ``"overlays"``, a list; see :data:`OVERLAY_KINDS`)::

    {"name": "defects", "kind": "mask", "file": "overlays/defects.png"}
    {"name": "particles", "kind": "points", "file": "particles.csv", "radius_px": 12}
    {"name": "cells", "kind": "outlines", "file": "labels.png", "color": "#00ff66"}

``file`` is relative to the atlas folder and must stay inside it. A ``mask`` is a PNG over
the whole atlas (any size: it is stretched over the atlas, so a mask at 1/8 scale works;
at most 16384 px a side): pixels that are 0 (or transparent) are not drawn, the others in
``color`` at ``opacity``. ``outlines`` is a label PNG of the same kind (0 = background,
each object its own value; the boundary pixels of every object are drawn) or a JSON file of
polygons in atlas pixels (``{"polygons": [[[x, y], ...], ...]}``). ``points`` is a CSV file
with a header naming columns ``x`` and ``y`` (and optionally ``radius``) or a JSON file
(``[[x, y], ...]``, ``[{"x": .., "y": ..}, ...]`` or ``{"points": [...]}``), in atlas
pixels: ``x`` the column, ``y`` the row, ``(0, 0)`` the centre of the top-left pixel.
Optional keys: ``color`` (``"#rrggbb"``), ``opacity`` (0 to 1), ``visible`` (shown when
the page opens, default true), ``radius_px`` (points).
"""

from __future__ import annotations

import contextlib
import errno
import http.server
import json
import math
import mimetypes
import os
import re
import shutil
import socket
import threading
import urllib.parse
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "OVERLAY_KINDS",
    "Atlas",
    "Overlay",
    "atlas_server",
    "export_site",
    "read_atlas",
    "serve_atlas",
    "server_url",
    "site_memory_bytes",
]

WEB_DIR = Path(__file__).resolve().parent / "web"
"""The bundled page: index.html, viewer.js, viewer.css and vendor/ (OpenSeadragon)."""

OVERLAY_KINDS = ("mask", "points", "outlines")
_DEFAULT_COLOR = {"mask": "#ff3b30", "points": "#ffd60a", "outlines": "#30d158"}
_DEFAULT_OPACITY = {"mask": 0.45, "points": 1.0, "outlines": 1.0}
_MAX_OVERLAY_SIDE = 16384
_PAGE_FILES = ("index.html", "viewer.js", "viewer.css")
_FIX = "give the folder that `emkit atlas build` wrote"


# --------------------------------------------------------------------------- reading


@dataclass
class Overlay:
    """One overlay of an atlas, checked and ready for the page."""

    index: int
    name: str
    kind: str
    path: Path
    color: str
    opacity: float
    visible: bool
    radius_px: float = 8.0
    points: list[list[float]] = field(default_factory=list)
    polygons: list[list[list[float]]] = field(default_factory=list)

    @property
    def image_name(self) -> str | None:
        """The published PNG (``overlays/<i>.png``) for masks and outline PNGs, else None."""
        if self.kind == "mask" or (self.kind == "outlines" and not self.polygons
                                   and self.path.suffix.lower() == ".png"):
            return f"overlays/{self.index}.png"
        return None


@dataclass
class Atlas:
    """An atlas folder, checked: what the page needs to show it."""

    folder: Path
    info: dict[str, Any]
    width: int
    height: int
    pixel_size_nm: float | None  # None: unknown (the page then measures in pixels)
    tile_size: int
    overlap: int
    tile_format: str
    max_level: int
    overlays: list[Overlay]

    def page_data(self) -> dict[str, Any]:
        """What ``atlas.js`` gives the page (``window.EMKIT_ATLAS``)."""
        overlays = []
        for o in self.overlays:
            entry: dict[str, Any] = {
                "name": o.name, "kind": o.kind, "color": o.color, "opacity": o.opacity,
                "visible": o.visible,
            }
            if o.image_name:
                entry["image"] = o.image_name
            elif o.kind == "points":
                entry["points"] = o.points
                entry["radius_px"] = o.radius_px
            else:
                entry["polygons"] = o.polygons
            overlays.append(entry)
        return {
            "name": str(self.info.get("name") or Path(str(self.info.get("source") or "")).name
                        or self.folder.resolve().name),
            "width": self.width,
            "height": self.height,
            "pixel_size_nm": self.pixel_size_nm,
            "tiles": "atlas_files/",
            "tile_format": self.tile_format,
            "tile_size": self.tile_size,
            "overlap": self.overlap,
            "max_level": self.max_level,
            "overlays": overlays,
        }

    def script(self) -> str:
        """The text of ``atlas.js``."""
        data = json.dumps(self.page_data(), separators=(",", ":"), allow_nan=False)
        # "</" cannot end the script element early; names come from the user's atlas.json
        data = data.replace("</", "<\\/")
        return f"window.EMKIT_ATLAS = {data};\n"


def _not_atlas(folder: Path, what: str) -> Exception:
    from emkit.errors import InputError, with_path

    return InputError(with_path(folder, f"is not an emkit atlas: {what}; {_FIX}"))


def _bad_file(path: Path, what: str) -> Exception:
    from emkit.errors import FileFormatError, with_path

    return FileFormatError(with_path(path, what))


def read_atlas(folder: str | os.PathLike[str]) -> Atlas:
    """Check an atlas folder and read what the page needs (overlays included).

    Raises
    ------
    InputError
        ``folder`` is not an atlas (a missing ``atlas.json``, ``atlas.dzi`` or
        ``atlas_files/``), naming the folder and what is missing, or one of its files is
        damaged (naming that file).
    """
    from emkit.errors import MissingFileError, with_path

    folder = Path(folder)
    if not folder.exists():
        raise MissingFileError(with_path(folder, f"does not exist; {_FIX}"))
    if not folder.is_dir():
        raise _not_atlas(folder, "it is a file, not a folder")
    for name in ("atlas.json", "atlas.dzi", "atlas_files"):
        if not (folder / name).exists():
            raise _not_atlas(folder, f"{name} is missing")
    info = _read_info(folder / "atlas.json")
    dzi = _read_dzi(folder / "atlas.dzi")
    width, height = int(info["width"]), int(info["height"])
    if (dzi["width"], dzi["height"]) != (width, height):
        raise _bad_file(folder / "atlas.dzi", f"says {dzi['width']} x {dzi['height']} pixels "
                        f"but atlas.json says {width} x {height}; build the atlas again")
    max_level = math.ceil(math.log2(max(width, height))) if max(width, height) > 1 else 0
    deepest = folder / "atlas_files" / str(max_level) / f"0_0.{dzi['format']}"
    if not deepest.is_file():
        raise _not_atlas(folder, f"the deepest tile level is missing "
                                 f"(atlas_files/{max_level}/0_0.{dzi['format']})")
    overlays_spec = info.get("overlays", [])
    if not isinstance(overlays_spec, list):
        raise _bad_file(folder / "atlas.json", '"overlays" must be a list of overlays')
    overlays = [_read_overlay(folder, i, spec, width, height)
                for i, spec in enumerate(overlays_spec)]
    size = info.get("pixel_size_nm")
    return Atlas(folder, info, width, height, None if size is None else float(size),
                 dzi["tile_size"],
                 dzi["overlap"], dzi["format"], max_level, overlays)


def _read_info(path: Path) -> dict[str, Any]:
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise _bad_file(path, f"cannot be read as JSON ({error}); build the atlas again") \
            from None
    if not isinstance(info, dict):
        raise _bad_file(path, "is not a JSON object; build the atlas again")
    for key in ("width", "height"):
        value = info.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise _bad_file(path, f'"{key}" must be a whole number of pixels >= 1 (got '
                            f"{value!r}); build the atlas again")
    size = info.get("pixel_size_nm")
    if size is not None and (not isinstance(size, int | float) or isinstance(size, bool) or not (
            math.isfinite(size) and size > 0)):
        raise _bad_file(path, f'"pixel_size_nm" must be a number > 0 or null (got {size!r}); '
                        "build the atlas again with the pixel size")
    return info


def _read_dzi(path: Path) -> dict[str, Any]:
    try:
        root = ET.fromstring(path.read_bytes())
    except (OSError, ET.ParseError) as error:
        raise _bad_file(path, f"cannot be read as DeepZoom XML ({error}); build the atlas "
                        "again") from None
    size = next((child for child in root if child.tag.rsplit("}", 1)[-1] == "Size"), None)
    try:
        if root.tag.rsplit("}", 1)[-1] != "Image" or size is None:
            raise ValueError("no Image with a Size")
        out = {
            "tile_size": int(root.attrib["TileSize"]),
            "overlap": int(root.attrib["Overlap"]),
            "format": root.attrib["Format"].lower(),
            "width": int(size.attrib["Width"]),
            "height": int(size.attrib["Height"]),
        }
    except (KeyError, ValueError) as error:
        raise _bad_file(path, f"is not a DeepZoom image description ({error}); build the "
                        "atlas again") from None
    if out["format"] not in ("png", "jpg", "jpeg", "webp") or out["tile_size"] < 1 \
            or out["overlap"] < 0:
        raise _bad_file(path, f"has tiles the page cannot show (Format {out['format']!r}, "
                        f"TileSize {out['tile_size']}); build the atlas again")
    return out


def _read_overlay(folder: Path, index: int, spec: Any, width: int, height: int) -> Overlay:
    where = folder / "atlas.json"
    label = f"overlay {index + 1}"
    if not isinstance(spec, dict):
        raise _bad_file(where, f"{label} must be an object with name, kind and file")
    name = spec.get("name")
    if not isinstance(name, str) or not name.strip():
        raise _bad_file(where, f'{label} needs a "name" (text)')
    label = f"overlay {name!r}"
    kind = spec.get("kind")
    if kind not in OVERLAY_KINDS:
        raise _bad_file(where, f'{label}: "kind" must be one of {", ".join(OVERLAY_KINDS)} '
                        f"(got {kind!r})")
    file = spec.get("file")
    if not isinstance(file, str) or not file or Path(file).is_absolute():
        raise _bad_file(where, f'{label}: "file" must be a path relative to the atlas folder')
    path = folder / file
    root = os.path.realpath(folder)
    if os.path.commonpath([root, os.path.realpath(path)]) != root:
        raise _bad_file(where, f'{label}: "file" {file!r} is outside the atlas folder; '
                        "keep overlay files inside it")
    if not path.is_file():
        from emkit.errors import MissingFileError, with_path

        raise MissingFileError(with_path(path, f"(the {label} of {where}) does not exist; "
                                         "put the file there or remove the overlay"))
    color = spec.get("color", _DEFAULT_COLOR[kind])
    if not isinstance(color, str) or not re.fullmatch(r"#[0-9a-fA-F]{6}", color):
        raise _bad_file(where, f'{label}: "color" must be "#rrggbb" (got {color!r})')
    opacity = spec.get("opacity", _DEFAULT_OPACITY[kind])
    if not isinstance(opacity, int | float) or isinstance(opacity, bool) \
            or not 0 <= opacity <= 1:
        raise _bad_file(where, f'{label}: "opacity" must be a number from 0 to 1')
    visible = spec.get("visible", True)
    if not isinstance(visible, bool):
        raise _bad_file(where, f'{label}: "visible" must be true or false')
    radius = spec.get("radius_px", 8.0)
    if not isinstance(radius, int | float) or isinstance(radius, bool) or not (
            math.isfinite(radius) and radius > 0):
        raise _bad_file(where, f'{label}: "radius_px" must be a number > 0')
    overlay = Overlay(index, name.strip(), kind, path, color.lower(), float(opacity), visible,
                      float(radius))
    suffix = path.suffix.lower()
    if kind == "points":
        if suffix not in (".csv", ".json"):
            raise _bad_file(path, f"({label}) must be .csv or .json points in atlas pixels")
        overlay.points = _read_points(path, width, height)
    elif kind == "outlines" and suffix == ".json":
        overlay.polygons = _read_polygons(path)
    else:
        if suffix != ".png":
            what = "a PNG" if kind == "mask" else "a label PNG or a JSON file of polygons"
            raise _bad_file(path, f"({label}) must be {what}")
        w, h = png_size(path)
        if max(w, h) > _MAX_OVERLAY_SIDE:
            raise _bad_file(path, f"({label}) is {w} x {h} pixels, more than a browser shows "
                            f"in one image (at most {_MAX_OVERLAY_SIDE} a side); write it at "
                            "a lower resolution (it is stretched over the atlas)")
    return overlay


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) from a PNG's header, without decoding it."""
    try:
        with open(path, "rb") as f:
            head = f.read(24)
    except OSError as error:
        raise _bad_file(path, f"cannot be read ({error.strerror})") from None
    if len(head) < 24 or head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        raise _bad_file(path, "is not a PNG file; write the overlay as PNG")
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


def _number(value: Any) -> float:
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"{value!r} is not finite")
    return number


def _read_points(path: Path, width: int, height: int) -> list[list[float]]:
    """Points as ``[x, y]`` or ``[x, y, radius]`` from a CSV (header x, y[, radius]) or JSON."""
    import csv

    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        raise _bad_file(path, f"cannot be read as text ({error})") from None
    rows: list[Any]
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(text)
            rows = data.get("points") if isinstance(data, dict) else data
            if not isinstance(rows, list):
                raise ValueError('expected a list of points or {"points": [...]}')
        else:
            reader = csv.DictReader(text.splitlines())
            fields = {name.strip().lower(): name for name in reader.fieldnames or []}
            xs = fields.get("x") or fields.get("x_px")
            ys = fields.get("y") or fields.get("y_px")
            rs = fields.get("radius") or fields.get("radius_px")
            if xs is None or ys is None:
                raise ValueError("the header must name columns x and y")
            rows = [[r[xs], r[ys]] + ([r[rs]] if rs and r.get(rs) not in (None, "") else [])
                    for r in reader]
        points = []
        for row in rows:
            if isinstance(row, dict):
                row = [row["x"], row["y"]] + ([row["radius"]] if "radius" in row else [])
            if not isinstance(row, list | tuple) or len(row) not in (2, 3):
                raise ValueError(f"a point must be [x, y] or [x, y, radius] (got {row!r})")
            points.append([round(_number(v), 3) for v in row])
    except (ValueError, KeyError, TypeError) as error:
        raise _bad_file(path, f"cannot be read as points in atlas pixels ({error}); give a "
                        "CSV with columns x and y, or a JSON list of [x, y]") from None
    return points


def _read_polygons(path: Path) -> list[list[list[float]]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        polygons = data.get("polygons") if isinstance(data, dict) else data
        if not isinstance(polygons, list):
            raise ValueError('expected {"polygons": [[[x, y], ...], ...]}')
        out = []
        for polygon in polygons:
            if not isinstance(polygon, list) or len(polygon) < 2:
                raise ValueError("a polygon is a list of at least two [x, y] points")
            out.append([[round(_number(x), 3), round(_number(y), 3)] for x, y in polygon])
    except (OSError, UnicodeDecodeError, ValueError, TypeError) as error:
        raise _bad_file(path, f"cannot be read as outline polygons ({error}); give "
                        '{"polygons": [[[x, y], ...], ...]} in atlas pixels') from None
    return out


# --------------------------------------------------------------------------- overlay images


def overlay_png(overlay: Overlay) -> bytes:
    """The overlay drawn as an RGBA PNG: its colour where it is on, transparent elsewhere."""
    import cv2
    import numpy as np

    image = cv2.imread(str(overlay.path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise _bad_file(overlay.path, f"(overlay {overlay.name!r}) cannot be read as a PNG "
                        "image; write it again")
    if image.ndim == 3:
        alpha = image[..., 3] if image.shape[2] == 4 else None
        rgb = image[..., :3].astype(np.int64)
        labels = (rgb[..., 0] << 32) | (rgb[..., 1] << 16) | rgb[..., 2]
        if alpha is not None:
            labels = np.where(alpha > 0, labels, 0)
    else:
        labels = image
    if overlay.kind == "mask":
        on = labels != 0
    else:  # outlines: the boundary pixels of every labelled object
        on = np.zeros(labels.shape, bool)
        dx = labels[:, 1:] != labels[:, :-1]
        dy = labels[1:, :] != labels[:-1, :]
        on[:, 1:] |= dx
        on[:, :-1] |= dx
        on[1:, :] |= dy
        on[:-1, :] |= dy
        on &= labels != 0
    r, g, b = (int(overlay.color[i:i + 2], 16) for i in (1, 3, 5))
    rgba = np.zeros((*on.shape, 4), np.uint8)
    rgba[on] = (b, g, r, 255)  # OpenCV writes BGRA
    ok, encoded = cv2.imencode(".png", rgba)
    if not ok:  # pragma: no cover - cv2 encodes any uint8 BGRA image
        raise RuntimeError("PNG encoding failed")
    return encoded.tobytes()


def site_memory_bytes(atlas: Atlas) -> int:
    """Peak memory of serving or exporting ``atlas``: the largest overlay image, drawn."""
    largest = 0
    for overlay in atlas.overlays:
        if overlay.image_name:
            w, h = png_size(overlay.path)
            largest = max(largest, w * h * 32)  # int64 labels, masks, RGBA, PNG
    return largest + 64 * 2**20


# --------------------------------------------------------------------------- serving


class _Site:
    """What a published path holds: a bundled page file, a generated text or an atlas file."""

    def __init__(self, atlas: Atlas) -> None:
        self.atlas = atlas
        self.script = atlas.script().encode("utf-8")
        self._images: dict[str, bytes] = {}
        self._lock = threading.Lock()
        self._tiles = (atlas.folder / "atlas_files").resolve()
        self._by_image = {o.image_name: o for o in atlas.overlays if o.image_name}

    def resolve(self, url_path: str) -> Path | bytes | None:
        """The file (or the bytes) at ``url_path``, or None when the site has no such thing."""
        path = urllib.parse.unquote(url_path.split("?", 1)[0].split("#", 1)[0])
        path = path.lstrip("/") or "index.html"
        if "\0" in path or any(part in ("", ".", "..") for part in path.split("/")):
            return None
        if path == "atlas.js":
            return self.script
        if path in self._by_image:
            with self._lock:
                if path not in self._images:
                    self._images[path] = overlay_png(self._by_image[path])
                return self._images[path]
        if path in _PAGE_FILES or path.startswith("vendor/"):
            return _inside(WEB_DIR, path)
        if path in ("atlas.json", "atlas.dzi"):
            return self.atlas.folder / path
        if path.startswith("atlas_files/"):
            return _inside(self._tiles, path[len("atlas_files/"):])
        return None


def _inside(root: Path, relative: str) -> Path | None:
    candidate = (root / relative).resolve()
    if candidate.is_file() and (candidate == root or root in candidate.parents):
        return candidate
    return None


class _Handler(http.server.BaseHTTPRequestHandler):
    site: _Site  # set on the subclass each server makes
    server_version = "emkit-atlas"
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self._answer(body=True)

    def do_HEAD(self) -> None:
        self._answer(body=False)

    def _answer(self, body: bool) -> None:
        target = self.site.resolve(self.path)
        if target is None:
            self.send_error(404, "not part of this atlas")
            return
        try:
            data = target if isinstance(target, bytes) else target.read_bytes()
        except OSError:
            self.send_error(404, "not readable")
            return
        name = self.path.split("?", 1)[0]
        kind = "application/javascript" if name.endswith(".js") else (
            mimetypes.guess_type(name if name != "/" else "index.html")[0]
            or "application/octet-stream")
        if kind.startswith("text/") or kind.endswith("javascript"):
            kind += "; charset=utf-8"
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-cache")
        self.end_headers()
        if body:
            with contextlib.suppress(ConnectionError):
                self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        import logging

        logging.getLogger("emkit.atlas.serve").debug(format, *args)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    atlas: Atlas  # set once the folder is read
    # SO_REUSEADDR: a restarted server need not wait out TIME_WAIT; on Linux it still
    # refuses a port that another socket listens on
    allow_reuse_address = True

    def server_bind(self) -> None:
        # http.server's own looks the host name up in DNS (getfqdn), which can hang
        if self.allow_reuse_address:
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.socket.bind(self.server_address)
        self.server_address = self.socket.getsockname()
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)


class _Server6(_Server):
    address_family = socket.AF_INET6


def atlas_server(folder: str | os.PathLike[str] | Atlas, port: int = 8000,
                 host: str = "127.0.0.1") -> _Server:
    """A listening HTTP server of the atlas page; ``port=0`` picks a free port.

    Call its ``serve_forever()`` (in a thread, for tests) and ``server_close()`` at the end;
    ``.atlas`` is the atlas read, ``server_url(server)`` the page's address. The port is
    tried first: a port in use is refused before the folder is read.

    Raises
    ------
    InputError
        The port is in use or cannot be had, the host is not an address of this machine,
        or the folder is not an atlas.
    """
    from emkit.errors import InputError

    server = (_Server6 if ":" in host else _Server)((host, port), _Handler,
                                                    bind_and_activate=False)
    try:
        server.server_bind()
    except OSError as error:
        server.server_close()
        if error.errno == errno.EADDRINUSE:
            raise InputError(f"port {port} is in use; give another --port") from None
        if error.errno in (errno.EACCES, errno.EPERM):
            raise InputError(f"port {port} needs administrator rights here; give --port 1024 "
                             "or above") from None
        if isinstance(error, socket.gaierror) or error.errno == errno.EADDRNOTAVAIL:
            raise InputError(f"cannot listen on {host!r} ({error.strerror or error}); give "
                             "--host 127.0.0.1 or an address of this machine") from None
        raise InputError(f"cannot listen on {host}:{port} ({error.strerror or error}); give "
                         "another --port or --host") from None
    try:
        atlas = folder if isinstance(folder, Atlas) else read_atlas(folder)
        server.atlas = atlas
        handler = type("AtlasHandler", (_Handler,), {"site": _Site(atlas)})
        server.RequestHandlerClass = handler
        server.server_activate()
    except BaseException:
        server.server_close()
        raise
    return server


def server_url(server: http.server.ThreadingHTTPServer) -> str:
    """The page's address, e.g. ``http://127.0.0.1:8000/``."""
    host, port = server.server_address[:2]
    host = str(host)
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif ":" in host:
        host = "[::1]" if host == "::" else f"[{host}]"
    return f"http://{host}:{port}/"


def serve_atlas(folder: str | os.PathLike[str] | Atlas, port: int = 8000,
                host: str = "127.0.0.1", open_browser: bool = False,
                on_ready: Callable[[str], None] | None = None) -> None:
    """Serve the atlas page at ``http://host:port/`` until Ctrl-C (or SIGTERM) stops it.

    ``on_ready(url)`` is called once the server listens; ``open_browser`` opens the page in
    the user's browser then.
    """
    server = atlas_server(folder, port=port, host=host)
    url = server_url(server)
    try:
        if on_ready is not None:
            on_ready(url)
        if open_browser:
            import webbrowser

            threading.Thread(target=webbrowser.open, args=(url,), daemon=True).start()
        with contextlib.suppress(KeyboardInterrupt):
            server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()


# --------------------------------------------------------------------------- export


def export_site(folder: str | os.PathLike[str] | Atlas, output: str | os.PathLike[str]) -> Path:
    """Write the page and the atlas as a static site in ``output``, for any web server.

    The site holds what ``serve`` publishes (see the module's docstring), written through
    :mod:`emkit.io`: nothing appears until all of it is complete, and a failure leaves
    nothing. ``output`` must be new, empty or a folder emkit wrote, and not inside the atlas.
    """
    from emkit.io import (
        atomic_output,
        check_not_input,
        current_run,
        make_output_folder,
        output_run,
        write_text_atomic,
    )

    atlas = folder if isinstance(folder, Atlas) else read_atlas(folder)
    output = Path(output)
    check_not_input(output, [atlas.folder])
    run = output_run(inputs=[atlas.folder]) if current_run() is None else contextlib.nullcontext()
    with run:
        make_output_folder(output)
        for name in _PAGE_FILES:
            with atomic_output(output / name) as tmp:
                shutil.copyfile(WEB_DIR / name, tmp)
        with atomic_output(output / "vendor", directory=True) as tmp:
            shutil.copytree(WEB_DIR / "vendor", tmp)
        for name in ("atlas.json", "atlas.dzi"):
            with atomic_output(output / name) as tmp:
                shutil.copyfile(atlas.folder / name, tmp)
        tiles = atlas.folder / "atlas_files"
        with atomic_output(output / "atlas_files", directory=True,
                           size_bytes=_tree_size(tiles)) as tmp:
            shutil.copytree(tiles, tmp, ignore=_ignore_temporaries)
        images = [o for o in atlas.overlays if o.image_name]
        if images:
            with atomic_output(output / "overlays", directory=True) as tmp:
                tmp.mkdir()
                for overlay in images:
                    (tmp / Path(str(overlay.image_name)).name).write_bytes(overlay_png(overlay))
        write_text_atomic(output / "atlas.js", atlas.script())
    return output


def _tree_size(root: Path) -> int:
    return sum(entry.stat().st_size for entry in _walk_files(root))


def _walk_files(root: Path) -> Iterator[os.DirEntry[str]]:
    for entry in os.scandir(root):
        if entry.is_dir(follow_symlinks=False):
            yield from _walk_files(Path(entry.path))
        elif entry.is_file():
            yield entry


def _ignore_temporaries(directory: str, names: list[str]) -> list[str]:
    """Leave out emkit's temporaries and marker (a builder's leftovers are not tiles)."""
    return [name for name in names if name.startswith(".emkit-")]
