"""``emkit atlas serve`` and ``emkit atlas export``: the atlas in a web browser.

``cli/atlas.py`` adds these two subcommands with :func:`add_parsers`; the work is in
:mod:`emkit.atlas._web`.
"""

from __future__ import annotations

import argparse
import re
import sys

from emkit.cli._common import add_subcommand
from emkit.cli._options import OptionType, file_path, int_range, require_memory

SERVE_DOC = """Show an atlas in a web browser: pan, zoom, scale bar, overlays.

Serves one page at http://HOST:PORT/ (localhost only by default) until Ctrl-C: the atlas's
DeepZoom pyramid in OpenSeadragon (bundled, nothing is fetched from the network), a scale
bar, the cursor position in µm, and a checkbox for each overlay listed in atlas.json
(defect masks, picked particles, segmentation outlines). Nothing is written.

Examples
--------
    emkit atlas serve atlas/                    # then open http://127.0.0.1:8000/
    emkit atlas serve atlas/ --port 8080 --open # and open it in the default browser
    emkit atlas serve atlas/ --host 0.0.0.0     # reachable from other machines
"""

EXPORT_DOC = """Write an atlas's page as static files, for any web server.

SITE receives the same page that `emkit atlas serve` shows, with the atlas's tiles and
overlays: copy it to a web server, or open SITE/index.html from disk. SITE must be new,
empty or a folder emkit wrote, and not inside the atlas; it appears complete or not at all.

Examples
--------
    emkit atlas export atlas/ --output site/
    python -m http.server -d site/ 8000         # any static web server
"""


def _host(text: str) -> str:
    value = text.strip()
    if not value or len(value) > 253 or not re.fullmatch(r"[A-Za-z0-9.:_\-\[\]%]+", value):
        raise argparse.ArgumentTypeError(f"must be {host.constraint} (got {text!r})")
    return value.strip("[]")


host = OptionType("host", _host, "a host name or an IP address of this machine",
                  ["", "no such host", "x" * 300])
port = int_range(0, 65535)

# The server and the page's generated files; the overlay images are counted after the atlas
# is read (emkit.atlas._web.site_memory_bytes).
_BASE_BYTES = 64 * 2**20


def add_parsers(subparsers: argparse._SubParsersAction) -> None:
    """Add ``serve`` and ``export`` to the ``emkit atlas`` subcommands."""
    serve = add_subcommand(subparsers, "serve", SERVE_DOC, func=run_serve)
    serve.add_argument("atlas", type=file_path, metavar="DIR",
                       help="the atlas folder (written by `emkit atlas build`)")
    serve.add_argument("--port", type=port, default=8000, metavar="P",
                       help="TCP port, 0 to 65535; 0 picks a free one (default: 8000)")
    serve.add_argument("--host", type=host, default="127.0.0.1", metavar="HOST",
                       help="address to listen on (default: 127.0.0.1, this machine only; "
                            "0.0.0.0 for every network)")
    serve.add_argument("--open", action="store_true",
                       help="open the page in the default web browser")

    export = add_subcommand(subparsers, "export", EXPORT_DOC, func=run_export)
    export.add_argument("atlas", type=file_path, metavar="DIR",
                        help="the atlas folder (written by `emkit atlas build`)")
    export.add_argument("--output", type=file_path, required=True, metavar="SITE",
                        help="folder for the static site (new, empty or emkit's)")


def _check_memory(atlas_path: object, what: str) -> None:
    require_memory(_BASE_BYTES, f"{what} {atlas_path}", "close other programs")


def run_serve(args: argparse.Namespace) -> int:
    from emkit.atlas._web import atlas_server, server_url, site_memory_bytes

    _check_memory(args.atlas, "serving the atlas")
    # Binds the port first (a port in use is refused before the folder is read), then
    # reads and checks the atlas; nothing is served yet.
    server = atlas_server(args.atlas, port=args.port, host=args.host)
    try:
        require_memory(site_memory_bytes(server.atlas), f"serving the atlas {args.atlas} "
                       "and its overlays", "write the mask and outline overlays at a lower "
                       "resolution")
        url = server_url(server)
        print(f"emkit atlas serve: {args.atlas} at {url} (Ctrl-C to stop)", flush=True)
        if args.open:
            import threading
            import webbrowser

            threading.Thread(target=webbrowser.open, args=(url,), daemon=True).start()
        try:
            server.serve_forever(poll_interval=0.2)
        except KeyboardInterrupt:  # Ctrl-C or SIGTERM: the way to stop a server
            print("emkit atlas serve: stopped", file=sys.stderr)
    finally:
        server.server_close()
    return 0


def run_export(args: argparse.Namespace) -> int:
    from emkit.atlas._web import export_site, read_atlas, site_memory_bytes

    _check_memory(args.atlas, "exporting the atlas")
    atlas = read_atlas(args.atlas)
    require_memory(site_memory_bytes(atlas), f"exporting the atlas {args.atlas} and its "
                   "overlays", "write the mask and outline overlays at a lower resolution")
    site = export_site(atlas, args.output)
    print(f"emkit atlas export: wrote {site}/ (open {site}/index.html, or serve the folder "
          "with any web server)")
    return 0
