"""One self-contained HTML page per run: ``report.html`` beside ``emkit-run.json``.

:func:`write_run_report` reads a run's record (or takes it from the caller) and writes a page
that opens anywhere, offline, forever: what ran (command line, emkit version, date, host),
the parameters, the inputs with their size and SHA-256, timings, every number the run
recorded (nested results flattened to one table), every figure (PNG/JPEG, embedded as
``data:`` URIs, scaled down to at most :data:`MAX_FIGURE_PX` pixels a side) and links to the
outputs. The page has inline CSS, no scripts and no external URLs; all text is escaped.

:func:`write_demo_index` writes the page that ``emkit demo`` ends with: one row per workflow,
linking its ``report.html``, with the workflow's headline numbers.

Inside a CLI run (:func:`emkit.io.output_run`) the run's outputs are not yet in place when the
record is written: the report reads them from their temporary files and links them by their
final names, which exist once the run commits (together with ``report.html`` itself).
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import html
import io
import math
import os
import urllib.parse
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

RECORD_NAME = "emkit-run.json"
REPORT_NAME = "report.html"
INDEX_NAME = "index.html"


def record_names(stem: str | None = None) -> tuple[str, str]:
    """The run record's and the page's file names: ``emkit-run.json`` and ``report.html`` in
    a run's own folder, ``<stem>.emkit-run.json`` and ``<stem>.report.html`` beside a
    run's single output file ``<stem>.<suffix>`` (so runs that write files into one folder
    keep one record each, and a user's own ``report.html`` there is never replaced).

    Examples
    --------
    >>> record_names(), record_names("rec")
    (('emkit-run.json', 'report.html'), ('rec.emkit-run.json', 'rec.report.html'))
    """
    record = RECORD_NAME if stem is None else f"{stem}.{RECORD_NAME}"
    return record, report_name_for(record)


def _record_file(record: dict[str, Any]) -> str:
    """The file name the record was written under (older records: ``emkit-run.json``)."""
    name = record.get("record_file")
    return name if isinstance(name, str) and name.endswith(RECORD_NAME) else RECORD_NAME


def report_name_for(record_file: str) -> str:
    """``report.html`` for ``emkit-run.json``, ``<stem>.report.html`` for
    ``<stem>.emkit-run.json``."""
    return record_file[: -len(RECORD_NAME)] + REPORT_NAME

FIGURE_SUFFIXES = (".png", ".jpg", ".jpeg")
MAX_FIGURES = 40
"""Figures embedded per page; further ones are listed as links."""
MAX_FIGURE_PX = 1600
"""Longest side of an embedded figure (larger ones are scaled down; the link has the original)."""
MAX_FIGURE_FILE_BYTES = 64 * 2**20
"""Figure files larger than this are linked, not opened."""
MAX_FIGURE_PIXELS = 64_000_000
"""Figures with more pixels than this are linked, not decoded (memory stays bounded)."""
REPORT_MEMORY_BYTES = 768 * 2**20
"""Peak memory of drawing a page: one decoded figure of :data:`MAX_FIGURE_PIXELS` RGBA pixels,
its scaled copy, the page text."""
MAX_EMBEDDED_BYTES = 48 * 2**20
"""Total size of the embedded figures of one page."""
MAX_LISTED_FILES = 2000
MAX_METRIC_ROWS = 400
HASH_WHOLE_BYTES = 256 * 2**20
"""Inputs up to this size are hashed whole; larger ones by their first and last part."""
HASH_PART_BYTES = 64 * 2**20
MAX_INPUT_FILES = 200
HASH_BUDGET_BYTES = 2**30
"""Bytes hashed per run at most, so a run over many large inputs is not slowed down."""

_RECORD_KEYS = (
    "emkit_version",
    "command_line",
    "parameters",
    "python",
    "finished",
    "started",
    "host",
    "wall_seconds",
    "inputs",
    "outputs",
)
# Zarr stores and DeepZoom tile folders (``atlas_files/`` beside ``atlas.dzi``) are one
# output each, listed as a folder: their files are chunks and pyramid tiles, not figures.
_SKIP_DIR_SUFFIXES = (".zarr", "_files")


# --------------------------------------------------------------------------- inputs


def file_checksum(
    path: str | os.PathLike[str], *, budget: list[int] | None = None
) -> dict[str, Any]:
    """Size and SHA-256 of a file; a file over :data:`HASH_WHOLE_BYTES` is hashed by its first
    and last :data:`HASH_PART_BYTES` (and its size), as ``hashed`` says.

    ``budget`` (a one-item list of bytes still allowed) is decreased by what is read; when it
    is spent the file is listed with its size only.
    """
    p = Path(path)
    size = p.stat().st_size
    entry: dict[str, Any] = {"path": str(p), "bytes": size}
    whole = size <= HASH_WHOLE_BYTES
    cost = size if whole else 2 * HASH_PART_BYTES
    if budget is not None and budget[0] < cost:
        entry["sha256"] = None
        entry["hashed"] = "not hashed (this run's hashing budget was spent)"
        return entry
    digest = hashlib.sha256()
    chunk = 4 * 2**20
    with open(p, "rb") as fh:
        if whole:
            for block in iter(lambda: fh.read(chunk), b""):
                digest.update(block)
        else:
            digest.update(f"emkit-partial:{size}:".encode())
            for start in (0, size - HASH_PART_BYTES):
                fh.seek(start)
                left = HASH_PART_BYTES
                while left > 0:
                    block = fh.read(min(chunk, left))
                    if not block:
                        break
                    digest.update(block)
                    left -= len(block)
    if budget is not None:
        budget[0] -= cost
    entry["sha256"] = digest.hexdigest()
    entry["hashed"] = (
        "whole file"
        if whole
        else (
            f"first and last {HASH_PART_BYTES // 2**20} MiB and the size (file > "
            f"{HASH_WHOLE_BYTES // 2**20} MiB)"
        )
    )
    return entry


def describe_inputs(paths: Iterable[str | os.PathLike[str] | None]) -> list[dict[str, Any]]:
    """Size and checksum of every input file (files inside input folders included).

    At most :data:`MAX_INPUT_FILES` files are listed and :data:`HASH_BUDGET_BYTES` read, so
    the time this takes stays bounded; unreadable or missing inputs are listed with a note.
    """
    entries: list[dict[str, Any]] = []
    budget = [HASH_BUDGET_BYTES]
    seen: set[str] = set()
    for raw in paths:
        if raw is None:
            continue
        p = Path(raw)
        key = os.path.realpath(p)
        if key in seen:
            continue
        seen.add(key)
        files: list[Path]
        more = 0
        if p.is_dir():
            found = list(_walk_files(p, limit=MAX_INPUT_FILES + 1))
            files, more = found[:MAX_INPUT_FILES], max(0, len(found) - MAX_INPUT_FILES)
        elif p.exists():
            files = [p]
        else:
            entries.append(
                {
                    "path": str(p),
                    "bytes": None,
                    "sha256": None,
                    "hashed": "not a file (a name or an option value)",
                }
            )
            continue
        for f in files:
            if len(entries) >= MAX_INPUT_FILES:
                more += 1
                continue
            try:
                entries.append(file_checksum(f, budget=budget))
            except OSError as error:
                entries.append(
                    {
                        "path": str(f),
                        "bytes": None,
                        "sha256": None,
                        "hashed": f"not readable ({error.strerror or error})",
                    }
                )
        if more:
            entries.append(
                {
                    "path": str(p),
                    "bytes": None,
                    "sha256": None,
                    "hashed": f"folder: {more} or more files not listed",
                }
            )
    return entries


def _walk_files(root: Path, *, limit: int) -> Iterator[Path]:
    """Files under ``root`` (sorted, hidden names and temporaries skipped), at most ``limit``."""
    n = 0
    for folder, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(names):
            if name.startswith("."):
                continue
            yield Path(folder) / name
            n += 1
            if n >= limit:
                return


# --------------------------------------------------------------------------- run files


def run_outputs(run_dir: str | os.PathLike[str]) -> list[str]:
    """The outputs the current run has written so far, relative to ``run_dir`` (posix).

    Outside a run: the files and Zarr stores found in ``run_dir`` (see :func:`folder_files`).
    """
    from emkit.io import current_run

    base = Path(run_dir)
    run = current_run()
    if run is None:
        return folder_files(base)
    names = []
    for item in run.pending:
        names.append(
            Path(os.path.relpath(os.path.abspath(item.final), os.path.abspath(base))).as_posix()
        )
    return sorted(set(names))


def folder_files(run_dir: str | os.PathLike[str]) -> list[str]:
    """Files in ``run_dir`` and its subfolders (depth 4), relative, posix; Zarr stores count as
    one entry; hidden names and emkit's temporaries are skipped; at most
    :data:`MAX_LISTED_FILES`."""
    base = Path(run_dir)
    out: list[str] = []
    for folder, dirs, names in os.walk(base):
        rel = Path(folder).relative_to(base)
        depth = len(rel.parts)
        keep = []
        for d in sorted(dirs):
            if d.startswith("."):
                continue
            if d.endswith(_SKIP_DIR_SUFFIXES):
                out.append((rel / d).as_posix())
            elif depth < 4:
                keep.append(d)
        dirs[:] = keep
        out.extend((rel / n).as_posix() for n in sorted(names) if not n.startswith("."))
        if len(out) >= MAX_LISTED_FILES:
            break
    return sorted(out)[:MAX_LISTED_FILES]


def _pending_temps() -> dict[str, Path]:
    """Final path (resolved) to temporary file of each output the current run has not yet
    put in place; empty outside a run."""
    from emkit.io import current_run

    run = current_run()
    if run is None:
        return {}
    return {os.path.realpath(item.final): item.temp for item in run.pending}


def _readable(path: Path, pending: dict[str, Path]) -> Path | None:
    """Where the content of output ``path`` is now: its pending temporary inside a run, or
    the path itself; None when neither exists."""
    temp = pending.get(os.path.realpath(path))
    if temp is not None and temp.exists():
        return temp
    return path if path.exists() else None


def _expand(run_dir: Path, names: Iterable[str]) -> list[tuple[str, Path]]:
    """(relative name, readable path) of each output; folders that are not Zarr stores are
    expanded into their files (a report folder of PNGs)."""
    out: list[tuple[str, Path]] = []
    pending = _pending_temps()
    for name in names:
        if name == REPORT_NAME or name.endswith(f".{REPORT_NAME}"):  # the page itself
            continue
        readable = _readable(run_dir / name, pending)
        if readable is None:
            continue
        if readable.is_dir() and not name.endswith(_SKIP_DIR_SUFFIXES):
            for sub in folder_files(readable):
                out.append((f"{name}/{sub}", readable / sub))
        else:
            out.append((name, readable))
        if len(out) >= MAX_LISTED_FILES:
            break
    return out


# --------------------------------------------------------------------------- values


def format_value(value: Any) -> str:
    """A number or other scalar as the page shows it (floats to 6 significant digits)."""
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return str(value)
        return f"{value:.6g}"
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:  # a numpy scalar
        return format_value(value.item())
    return str(value)


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


def _summarise_list(values: list[Any]) -> str:
    if len(values) <= 10:
        return "[" + ", ".join(format_value(v) for v in values) + "]"
    numbers = [float(v) for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
    if len(numbers) == len(values):
        finite = [v for v in numbers if math.isfinite(v)]
        if finite:
            mean = sum(finite) / len(finite)
            return (
                f"{len(values)} values: min {format_value(min(finite))}, mean "
                f"{format_value(mean)}, max {format_value(max(finite))}"
            )
    head = ", ".join(format_value(v) for v in values[:5])
    return f"{len(values)} values: [{head}, ...]"


def flatten(value: Any, prefix: str = "") -> list[tuple[str, str]]:
    """``(dotted name, text)`` rows for a nested result: dicts by key, short lists of numbers
    inline, long ones summarised (count, min, mean, max), lists of rows as their count plus
    the first and last row."""
    rows: list[tuple[str, str]] = []
    if isinstance(value, dict):
        if not value and prefix:
            rows.append((prefix, "{}"))
        for key, item in value.items():
            rows.extend(flatten(item, f"{prefix}.{key}" if prefix else str(key)))
    elif isinstance(value, list | tuple):
        items = list(value)
        if all(_is_scalar(v) for v in items):
            rows.append((prefix, _summarise_list(items)))
        elif len(items) <= 3:
            for i, item in enumerate(items):
                rows.extend(flatten(item, f"{prefix}[{i}]"))
        else:
            rows.append((prefix, f"{len(items)} entries (first and last below)"))
            rows.extend(flatten(items[0], f"{prefix}[0]"))
            rows.extend(flatten(items[-1], f"{prefix}[{len(items) - 1}]"))
    else:
        rows.append((prefix, format_value(value)))
    return rows


def _is_timing(name: str) -> bool:
    parts = name.replace("[", ".").split(".")
    return any(
        p in ("seconds", "time_s", "wall_s") or p.endswith(("_seconds", "_s")) for p in parts
    )


def _size(n: int | None) -> str:
    if n is None:
        return ""
    size = float(n)
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{n} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    return str(n)


# --------------------------------------------------------------------------- figures


def _figure_data_uri(path: Path) -> tuple[str, int, int] | None:
    """``(data URI, width, height)`` of a figure scaled to :data:`MAX_FIGURE_PX`, or None."""
    from PIL import Image

    if path.stat().st_size > MAX_FIGURE_FILE_BYTES:
        return None
    raw = path.read_bytes()
    try:
        with Image.open(io.BytesIO(raw)) as img:
            width, height = img.size  # from the header: nothing decoded yet
            if width * height > MAX_FIGURE_PIXELS:
                return None
            img.load()
            fmt = (img.format or "").upper()
            if max(width, height) > MAX_FIGURE_PX or fmt not in ("PNG", "JPEG"):
                img.thumbnail((MAX_FIGURE_PX, MAX_FIGURE_PX))
                if img.mode not in ("RGB", "RGBA", "L", "LA", "P"):
                    img = img.convert("RGB")
                buf = io.BytesIO()
                img.save(buf, format="PNG", optimize=False)
                raw, fmt = buf.getvalue(), "PNG"
                width, height = img.size
    except Exception:  # a damaged or odd image is linked, not embedded
        return None
    mime = "image/png" if fmt == "PNG" else "image/jpeg"
    return f"data:{mime};base64,{base64.b64encode(raw).decode('ascii')}", width, height


# --------------------------------------------------------------------------- page


_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2em auto;
max-width:1200px;padding:0 1em;color:#222;line-height:1.4}
h1{font-size:1.6em;margin-bottom:.2em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;
margin-top:1.6em}table{border-collapse:collapse;margin:.5em 0;font-size:.92em}
th,td{border:1px solid #ddd;padding:.25em .6em;text-align:left;vertical-align:top}
th{background:#f3f3f3}td.num{font-family:ui-monospace,monospace;white-space:pre-wrap}
code,.mono{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:.9em;
word-break:break-all}figure{display:inline-block;margin:.6em;vertical-align:top;
max-width:100%}figure img{max-width:100%;height:auto;border:1px solid #ddd}
figcaption{font-size:.85em;color:#555}.note{color:#666;font-size:.9em}
"""


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _href(name: str) -> str:
    return _e(urllib.parse.quote(name, safe="/._-~"))


def _page(title: str, body: list[str]) -> str:
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            '<meta name="generator" content="emkit">',
            f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>",
            *body,
            "</body></html>",
            "",
        ]
    )


def _table(
    header: tuple[str, ...],
    rows: Iterable[tuple[str, ...]],
    *,
    attr: str | None = None,
    cls: tuple[str, ...] = (),
) -> str:
    lines = ["<table>"]
    if any(header):
        lines.append("<tr>" + "".join(f"<th>{_e(h)}</th>" for h in header) + "</tr>")
    for row in rows:
        data = f' {attr}="{_e(row[0])}"' if attr else ""
        cells = "".join(
            f'<td class="{cls[i]}">{_e(c)}</td>' if i < len(cls) and cls[i] else f"<td>{_e(c)}</td>"
            for i, c in enumerate(row)
        )
        lines.append(f"<tr{data}>{cells}</tr>")
    lines.append("</table>")
    return "\n".join(lines)


def run_title(record: dict[str, Any]) -> str:
    """``emkit register pair`` for a record of that command."""
    params = record.get("parameters")
    params = params if isinstance(params, dict) else {}
    command = params.get("command")
    if not isinstance(command, str):
        words = str(record.get("command_line", "emkit")).split()
        return " ".join(words[:2])
    sub = params.get(f"{command}_command")
    return " ".join(["emkit", command, *([sub] if isinstance(sub, str) else [])])


def metric_rows(record: dict[str, Any]) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """``(timings, metrics)``: the record's results flattened, timings split off."""
    rows: list[tuple[str, str]] = []
    for key, value in record.items():
        if key in _RECORD_KEYS:
            continue
        rows.extend(flatten(value, key))
    timings = [r for r in rows if _is_timing(r[0])]
    metrics = [r for r in rows if not _is_timing(r[0])]
    if record.get("wall_seconds") is not None:
        timings.insert(0, ("wall time of the command (s)", format_value(record["wall_seconds"])))
    return timings, metrics


def render_run_report(run_dir: str | os.PathLike[str], record: dict[str, Any]) -> str:
    """The HTML text of a run's page (see the module docstring)."""
    base = Path(run_dir)
    title = run_title(record)
    names = record.get("outputs")
    if not isinstance(names, list):
        names = folder_files(base)
    files = _expand(base, [str(n) for n in names])
    body = [
        f"<h1>{_e(title)}</h1>",
        f'<p class="note">Run folder <code>{_e(base.resolve())}</code>; written by emkit '
        f"{_e(record.get('emkit_version', '?'))}.</p>",
    ]

    sections = ("what ran", "parameters", "inputs", "timings", "metrics", "figures", "outputs")
    body.append(
        '<p class="note">'
        + " | ".join(f'<a href="#{s.replace(" ", "-")}">{s}</a>' for s in sections)
        + "</p>"
    )
    body += _what_ran_section(record)
    body += _parameters_section(record)
    body += _inputs_section(record)
    body += _timings_and_metrics_sections(record)
    body += _figures_section(files)
    body += _outputs_section(files)
    stamp = datetime.datetime.now().astimezone().strftime("%Y-%m-%dT%H:%M:%S%z")
    name = _record_file(record)
    body.append(
        f'<p class="note">Page written {_e(stamp)} from '
        f'<a href="{_href(name)}">{_e(name)}</a>.</p>'
    )
    return _page(f"{title} - emkit run report", body)


def _what_ran_section(record: dict[str, Any]) -> list[str]:
    """The page's "What ran" section: command line, versions, host, start and end."""
    ran = [
        ("command line", str(record.get("command_line", ""))),
        ("emkit version", str(record.get("emkit_version", ""))),
        ("Python", str(record.get("python", ""))),
        ("host", str(record.get("host", ""))),
        ("started", str(record.get("started", ""))),
        ("finished", str(record.get("finished", ""))),
    ]
    return [
        '<h2 id="what-ran">What ran</h2>',
        _table(("", ""), [r for r in ran if r[1]], cls=("", "num")),
    ]


def _parameters_section(record: dict[str, Any]) -> list[str]:
    """The page's "Parameters" section: one row per parameter."""
    params = record.get("parameters") or {}
    return [
        '<h2 id="parameters">Parameters</h2>',
        _table(
            ("parameter", "value"),
            [
                (
                    str(k),
                    format_value(v)
                    if _is_scalar(v)
                    else _summarise_list(list(v))
                    if isinstance(v, list | tuple)
                    else str(v),
                )
                for k, v in params.items()
            ],
            attr="data-parameter",
            cls=("", "num"),
        )
        if params
        else '<p class="note">none recorded</p>',
    ]


def _inputs_section(record: dict[str, Any]) -> list[str]:
    """The page's "Inputs" section: each input file with its size and SHA-256."""
    inputs = record.get("inputs")
    body = ['<h2 id="inputs">Inputs</h2>']
    if isinstance(inputs, list) and inputs:
        body.append(
            _table(
                ("file", "size", "SHA-256", "hashed"),
                [
                    (
                        str(i.get("path", "")),
                        _size(i.get("bytes")),
                        str(i.get("sha256") or ""),
                        str(i.get("hashed", "")),
                    )
                    for i in inputs
                    if isinstance(i, dict)
                ],
                attr="data-input",
                cls=("mono", "", "mono", ""),
            )
        )
    else:
        body.append('<p class="note">none recorded</p>')
    return body


def _timings_and_metrics_sections(record: dict[str, Any]) -> list[str]:
    """The page's "Timings" and "Metrics" sections (at most :data:`MAX_METRIC_ROWS` rows)."""
    timings, metrics = metric_rows(record)
    body = ['<h2 id="timings">Timings</h2>']
    body.append(
        _table(("step", "seconds"), timings, attr="data-timing", cls=("", "num"))
        if timings
        else '<p class="note">none recorded</p>'
    )
    body.append('<h2 id="metrics">Metrics</h2>')
    if metrics:
        shown = metrics[:MAX_METRIC_ROWS]
        body.append(_table(("metric", "value"), shown, attr="data-metric", cls=("", "num")))
        if len(metrics) > len(shown):
            name = _record_file(record)
            body.append(
                f'<p class="note">{len(metrics) - len(shown)} more values in '
                f'<a href="{_href(name)}">{_e(name)}</a>.</p>'
            )
    else:
        body.append('<p class="note">none recorded</p>')
    return body


def _figures_section(files: list[tuple[str, Path]]) -> list[str]:
    """The page's "Figures" section: figures embedded up to :data:`MAX_FIGURES` and
    :data:`MAX_EMBEDDED_BYTES`, the others linked."""
    body = ['<h2 id="figures">Figures</h2>']
    figures = [(n, p) for n, p in files if n.lower().endswith(FIGURE_SUFFIXES)]
    embedded = 0
    linked: list[str] = []
    parts: list[str] = []
    for name, path in figures:
        uri = None
        if len(parts) < MAX_FIGURES and embedded < MAX_EMBEDDED_BYTES:
            try:
                uri = _figure_data_uri(path)
            except OSError:
                uri = None
        if uri is None:
            linked.append(name)
            continue
        data, width, height = uri
        embedded += len(data)
        parts.append(
            f'<figure data-file="{_e(name)}"><a href="{_href(name)}"><img src="{data}" '
            f'alt="{_e(name)}" width="{width}" height="{height}"></a>'
            f"<figcaption>{_e(name)}</figcaption></figure>"
        )
    body.extend(parts)
    if linked:
        body.append(
            '<p class="note">Not embedded (too many, too large or unreadable):</p><ul>'
            + "".join(f'<li><a href="{_href(n)}">{_e(n)}</a></li>' for n in linked)
            + "</ul>"
        )
    if not figures:
        body.append('<p class="note">this run wrote no figures</p>')
    return body


def _outputs_section(files: list[tuple[str, Path]]) -> list[str]:
    """The page's "Outputs" section: each output linked, with its size."""
    body = ['<h2 id="outputs">Outputs</h2>']
    rows = []
    for name, path in files:
        try:
            size = _size(path.stat().st_size) if path.is_file() else "folder"
        except OSError:
            size = ""
        rows.append(
            f'<tr data-output="{_e(name)}"><td class="mono"><a href="{_href(name)}">'
            f"{_e(name)}</a></td><td>{_e(size)}</td></tr>"
        )
    body.append(
        "<table><tr><th>file</th><th>size</th></tr>\n" + "\n".join(rows) + "</table>"
        if rows
        else '<p class="note">none found</p>'
    )
    return body


def record_path(run: str | os.PathLike[str]) -> Path:
    """The record of ``run``: a run folder's ``emkit-run.json``, or a record file itself."""
    path = Path(run)
    return path if path.name.endswith(RECORD_NAME) and not path.is_dir() else path / RECORD_NAME


def read_run_record(run: str | os.PathLike[str]) -> dict[str, Any]:
    """The record of a run: ``run`` is its folder (holding ``emkit-run.json``) or a record
    file (``<stem>.emkit-run.json``, beside a run's single output file).

    Raises
    ------
    MissingFileError
        No record there (not a run folder nor a record file).
    FileFormatError
        The record is not a JSON object.
    """
    import json

    from emkit.errors import FileFormatError, MissingFileError, with_path

    path = record_path(run)
    if not path.is_file():
        raise MissingFileError(
            with_path(
                Path(run),
                f"is not an emkit run folder (it holds no {RECORD_NAME}) nor a run record; "
                f"give the folder a workflow command wrote its outputs into, or the "
                f"<name>.{RECORD_NAME} written beside a single output file",
            )
        )
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise FileFormatError(with_path(path, f"is not a readable run record ({error})")) from None
    if not isinstance(record, dict):
        raise FileFormatError(with_path(path, "is not a run record (not a JSON object)"))
    record["record_file"] = path.name  # the file it was read from, whatever it says
    return record


def write_run_report(run_dir: str | os.PathLike[str], record: dict[str, Any] | None = None
                     ) -> Path:
    """Write the page of a run (atomically): ``report.html`` beside ``emkit-run.json``, or
    ``<stem>.report.html`` beside ``<stem>.emkit-run.json``.

    Parameters
    ----------
    run_dir : path-like
        The run's folder, or its record file (which, inside a run, may not exist yet).
    record : dict, optional
        The run record; read from ``run_dir`` when not given.

    Returns
    -------
    Path
        The page written.
    """
    from emkit.io import write_text_atomic

    path = record_path(run_dir)
    # the page is named after, and links to, the record file it is drawn from
    record = (read_run_record(run_dir) if record is None
              else {**record, "record_file": path.name})
    base = path.parent
    return write_text_atomic(base / report_name_for(path.name), render_run_report(base, record))


# --------------------------------------------------------------------------- demo index


def headline_numbers(result: dict[str, Any], limit: int = 8) -> list[tuple[str, str]]:
    """The first ``limit`` scalar numbers of a workflow's demo result (its headline)."""
    rows = [(k, v) for k, v in flatten(result) if k != "seconds"]
    return rows[:limit]


def write_demo_index(demo_dir: str | os.PathLike[str], summary: dict[str, Any]) -> Path:
    """Write ``demo_dir/index.html``: each workflow's report linked, with its numbers."""
    from emkit.io import write_text_atomic

    base = Path(demo_dir)
    body = [
        "<h1>emkit demo</h1>",
        '<p class="note">Every workflow on built-in synthetic data with a known answer. '
        'All numbers: <a href="summary.json">summary.json</a>; the demo run itself: '
        '<a href="report.html">report.html</a>.</p>',
        "<table><tr><th>workflow</th><th>seconds</th><th>headline numbers</th></tr>",
    ]
    for name, result in summary.items():
        result = result if isinstance(result, dict) else {"result": result}
        link = f"{name}/{REPORT_NAME}"
        numbers = "<br>".join(
            f'{_e(k)}: <span class="mono">{_e(v)}</span>' for k, v in headline_numbers(result)
        )
        body.append(
            f'<tr data-workflow="{_e(name)}"><td><a href="{_href(link)}">{_e(name)}'
            f"</a></td><td>{_e(format_value(result.get('seconds', '')))}</td>"
            f"<td>{numbers}</td></tr>"
        )
    body.append("</table>")
    return write_text_atomic(base / INDEX_NAME, _page("emkit demo", body))
