"""Damaged inputs: every reader raises emkit's error naming the file; the CLI prints one line.

One table, one row per damaged file: a builder that writes the file into a folder, the
reader that must refuse it, and a fragment of the message. Each row is checked three ways:
the library call raises an :class:`EmkitError` subclass (naming the file, on one line,
without blocking); ``emkit info`` in a subprocess exits 2 with exactly one line on stderr
(no library chatter: libpng/OpenCV warnings, Python warnings); ``emkit convert`` (volumes)
exits 2 and writes nothing. The input is unchanged every time. Adding a case is one line.
"""

from __future__ import annotations

import errno
import gzip
import hashlib
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from emkit.cli.main import main
from emkit.errors import DiskFullError, EmkitError
from emkit.io import (
    read_aln,
    read_coordinates,
    read_mesh,
    read_star,
    read_structure,
    read_tlt,
    read_volume,
    read_xf,
    write_volume,
)

EMKIT = [sys.executable, "-m", "emkit.cli.main"]
RNG = np.random.default_rng(7)
VOLUME = RNG.normal(size=(4, 8, 8)).astype(np.float32)
SLICES = RNG.normal(size=(3, 16, 16)).astype(np.float32)
IMAGE = (np.arange(64 * 64).reshape(64, 64) % 251).astype(np.uint8)


# --- builders: each writes one damaged file at the path it is given --------------------------


def _put(data: bytes) -> Callable[[Path], None]:
    return lambda p: p.write_bytes(data)


def _good_bytes(suffix: str, data: np.ndarray = VOLUME, **kwargs: Any) -> bytes:
    """The bytes of a valid file written by emkit (the table's rows damage copies of them)."""
    with tempfile.TemporaryDirectory() as folder:
        return write_volume(Path(folder) / f"good{suffix}", data, **kwargs).read_bytes()


def _half(raw: bytes) -> bytes:
    return raw[: len(raw) // 2]


def _mrc(**fields: int) -> bytes:
    """A valid float32 MRC (4 x 8 x 8) with header words replaced (offsets per MRC2014)."""
    raw = bytearray(_good_bytes(".mrc", voxel_size=1.0))
    offsets = {"nx": 0, "ny": 4, "nz": 8, "mode": 12, "nsymbt": 92}
    for name, value in fields.items():
        struct.pack_into("<i", raw, offsets[name], value)
    return bytes(raw)


def _mrc_no_map_id(**fields: int) -> bytes:
    """As :func:`_mrc`, without the "MAP " id and machine stamp (as FEI's TIA writes)."""
    raw = bytearray(_mrc(**fields))
    raw[208:216] = bytes(8)
    return bytes(raw)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def _png_bomb() -> bytes:
    """A small, well-formed PNG whose header claims 100000 x 100000 gray pixels (~10 GB)."""
    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\0" * 100_001 * 20, 9)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", idat)
        + _png_chunk(b"IEND", b"")
    )


def _png_bad_crc() -> bytes:
    raw = bytearray(_good_bytes(".png", IMAGE))
    raw[45] ^= 0xFF  # inside the IDAT data: its CRC no longer matches
    return bytes(raw)


def _jpeg(cut: int) -> bytes:
    import cv2

    ok, encoded = cv2.imencode(".jpg", IMAGE)
    assert ok
    raw = encoded.tobytes()
    return raw[:-cut]


def _bmp_truncated() -> bytes:
    import cv2

    ok, encoded = cv2.imencode(".bmp", IMAGE)
    assert ok
    raw = encoded.tobytes()
    return raw[: len(raw) // 2]


def _tiff_plain(compression: str | None = None) -> bytes:
    import tifffile

    data = RNG.integers(0, 255, size=(3, 64, 64)).astype(np.uint8)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "plain.tif"
        tifffile.imwrite(path, data, compression=compression, photometric="minisblack")
        return path.read_bytes()


def _zlib_tiff_corrupt() -> bytes:
    raw = bytearray(_tiff_plain("zlib"))
    raw[300:340] = bytes(range(40))
    return bytes(raw)


def _zarr(suffix: str, damage: Callable[[Path], None]) -> Callable[[Path], None]:
    def build(p: Path) -> None:
        write_volume(p, VOLUME, voxel_size=1.0, chunks=(2, 8, 8))
        if suffix == ".zarr":
            (p / ".emkit").unlink(missing_ok=True)
        damage(p)

    return build


def _zarr_v3(damage: Callable[[Path], None]) -> Callable[[Path], None]:
    def build(p: Path) -> None:
        import zarr

        if int(zarr.__version__.split(".")[0]) < 3:
            pytest.skip("zarr 2 (Python 3.10) does not write Zarr format 3")
        array = zarr.create_array(str(p), shape=VOLUME.shape, chunks=(2, 8, 8), dtype="f4")
        array[...] = VOLUME
        damage(p)

    return build


def _first_chunk(p: Path) -> Path:
    return sorted(
        f
        for f in p.rglob("*")
        if f.is_file() and not f.name.startswith(".") and f.name != "zarr.json"
    )[0]


def _write(relative: str, data: bytes) -> Callable[[Path], None]:
    return lambda p: (p / relative).write_bytes(data)


def _remove(relative: str) -> Callable[[Path], None]:
    def remove(p: Path) -> None:
        target = p / relative
        if target.is_dir():
            shutil.rmtree(target)
        else:
            target.unlink()

    return remove


def _cut_chunk(p: Path) -> None:
    chunk = _first_chunk(p)
    chunk.write_bytes(chunk.read_bytes()[:-7])


def _garble_chunk(p: Path) -> None:
    _first_chunk(p).write_bytes(bytes(range(256))[:100])


def _folder(p: Path) -> None:
    p.mkdir()
    (p / "inside.txt").write_text("x\n")


def _fifo(p: Path) -> None:
    os.mkfifo(p)


def _unreadable(p: Path) -> None:
    p.write_bytes(_mrc())
    p.chmod(0)


def _npy_pickle(p: Path) -> None:
    np.save(p, np.array([{"a": 1}, None], dtype=object), allow_pickle=True)


def _npy_truncated(p: Path) -> None:
    np.save(p, VOLUME)
    p.write_bytes(p.read_bytes()[:-40])


BINARY = bytes(range(256)) * 2
OME_BAD = (
    b'{"multiscales": [{"version": "0.4", "axes": [{"name": "z", "type": "space", "unit": '
    b'"angstrom"}], "datasets": [{"path": "0", "coordinateTransformations": [{"type": "scale",'
    b' "scale": "x"}]}]}]}'
)
PLY_CUT = b"ply\nformat ascii 1.0\nelement vertex 100\nproperty float x\nend_header\n1\n"
AS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


# name, file name, builder, reader, message fragment. One row per damaged file.
VOL, META = read_volume, "metadata are missing or damaged"
GZ = gzip.compress
Case = tuple[str, str, Callable[[Path], None], Callable[[Path], Any], str]
# fmt: off
CASES: list[Any] = [
    ("mrc-negative-dims", "a.mrc", _put(_mrc(nx=-8, ny=-8)), VOL, "at least 1"),
    ("mrc-zero-dim", "a.mrc", _put(_mrc(nz=0)), VOL, "at least 1"),
    ("mrc-truncated", "a.mrc", _put(_mrc()[:-100]), VOL, "truncated"),
    ("mrc-header-only", "a.mrc", _put(_mrc()[:1024]), VOL, "truncated"),
    ("mrc-short-header", "a.mrc", _put(_mrc()[:500]), VOL, "not a valid MRC"),
    ("mrc-extra-bytes", "a.mrc", _put(_mrc() + b"\0" * 100), VOL, "longer than"),
    ("mrc-mode-vs-size", "a.mrc", _put(_mrc(mode=1)), VOL, "longer than"),
    ("mrc-huge-dims", "a.mrc", _put(_mrc(nx=100_000, ny=100_000)), VOL, "truncated"),
    ("mrc-unknown-mode", "a.mrc", _put(_mrc(mode=42)), VOL, "unknown MRC data mode"),
    ("mrc-mode-3", "a.mrc", _put(_mrc(mode=3)), VOL, "unknown MRC data mode"),
    ("mrc-negative-ext", "a.mrc", _put(_mrc(nsymbt=-5)), VOL, "not a valid MRC"),
    ("mrc-garbage", "a.mrc", _put(BINARY * 8), VOL, "not a valid MRC"),
    ("mrc-gz-cut", "a.mrc.gz", _put(GZ(_mrc())[:200]), VOL, "not a valid MRC"),
    ("mrc-gz-garbage", "a.mrc.gz", _put(b"\x1f\x8b" + BINARY), VOL, "not a valid MRC"),
    ("mrc-gz-short", "a.mrc.gz", _put(GZ(_mrc()[:-100])), VOL, "not a valid MRC"),
    ("mrc-gz-extra", "a.mrc.gz", _put(GZ(_mrc() + b"\0" * 64)), VOL, "more data"),
    ("mrc-gz-bomb", "a.mrc.gz", _put(GZ(_mrc(nx=10**5, ny=10**5, nz=10**5))), VOL, "memory"),
    ("mrc-no-map-truncated", "a.mrc", _put(_mrc_no_map_id()[:-100]), VOL, "not a valid MRC"),
    ("mrc-no-map-extra", "a.mrc", _put(_mrc_no_map_id() + b"\0" * 64), VOL, "not a valid MRC"),
    ("mrc-no-map-mode", "a.mrc", _put(_mrc_no_map_id(mode=42)), VOL, "not a valid MRC"),
    ("mrc-no-map-ext-past-end", "a.mrc", _put(_mrc_no_map_id(nsymbt=10**6)), VOL,
     "not a valid MRC"),
    ("mrc-no-map-gz-short", "a.mrc.gz", _put(GZ(_mrc_no_map_id()[:-100])), VOL,
     "not a valid MRC"),
    ("png-bomb", "a.png", _put(_png_bomb()), VOL, "100000 x 100000"),
    ("png-truncated", "a.png", _put(_good_bytes(".png", IMAGE)[:60]), VOL, "truncated"),
    ("png-bad-crc", "a.png", _put(_png_bad_crc()), VOL, "CRC"),
    ("png-not-png", "a.png", _put(b"hello world\n"), VOL, "not a PNG, JPEG or BMP"),
    ("jpeg-truncated", "a.jpg", _put(_jpeg(cut=40)), VOL, "truncated"),
    ("bmp-truncated", "a.bmp", _put(_bmp_truncated()), VOL, "damaged or truncated"),
    ("tiff-imagej-cut", "a.tif", _put(_half(_good_bytes(".tif", SLICES))), VOL, "truncated"),
    ("tiff-pages-cut", "a.tif", _put(_tiff_plain()[:-5000]), VOL, "truncated"),
    ("tiff-header-cut", "a.tif", _put(_good_bytes(".tif")[:6]), VOL, "not a readable"),
    ("tiff-zlib-corrupt", "a.tif", _put(_zlib_tiff_corrupt()), VOL, "not a readable"),
    ("tiff-garbage", "a.tif", _put(b"II*\0" + BINARY), VOL, "not a readable TIFF"),
    ("zarr-garbled-chunk", "a.zarr", _zarr(".zarr", _garble_chunk), VOL, "chunk"),
    ("zarr-cut-chunk", "a.zarr", _zarr(".zarr", _cut_chunk), VOL, "truncated"),
    ("zarr-no-zarray", "a.zarr", _zarr(".zarr", _remove(".zarray")), VOL, META),
    ("zarr-garbled-zarray", "a.zarr", _zarr(".zarr", _write(".zarray", b"{not json")), VOL, META),
    ("zarr-binary-zarray", "a.zarr", _zarr(".zarr", _write(".zarray", BINARY)), VOL, META),
    ("zarr-v3-garbled-json", "a.zarr", _zarr_v3(_write("zarr.json", b"{garbled")), VOL, META),
    ("zarr-v3-garbled-chunk", "a.zarr", _zarr_v3(_garble_chunk), VOL, "chunk"),
    ("ome-zarr-no-level", "a.ome.zarr", _zarr(".ome.zarr", _remove("0")), VOL, "level '0'"),
    ("ome-zarr-bad-attrs", "a.ome.zarr", _zarr(".ome.zarr", _write(".zattrs", b"{")), VOL, META),
    ("ome-zarr-cut-chunk", "a.ome.zarr", _zarr(".ome.zarr", _cut_chunk), VOL, "chunk"),
    ("zarr-bad-attrs", "a.zarr", _zarr(".zarr", _write(".zattrs", b'{"emkit": 3}')), VOL, "attr"),
    ("ome-bad-scale", "a.ome.zarr", _zarr(".ome.zarr", _write(".zattrs", OME_BAD)), VOL, "damaged"),
    ("zarr-is-a-file", "a.zarr", _put(b"garbage"), VOL, "is a file"),
    ("folder-as-mrc", "a.mrc", _folder, VOL, "is a folder"),
    ("folder-as-png", "a.png", _folder, VOL, "is a folder"),
    ("folder-as-tlt", "a.tlt", _folder, read_tlt, "is a folder"),
    ("fifo-mrc", "a.mrc", _fifo, VOL, "named pipe"),
    ("fifo-tlt", "a.tlt", _fifo, read_tlt, "named pipe"),
    ("fifo-star", "a.star", _fifo, read_star, "named pipe"),
    pytest.param("unreadable-mrc", "a.mrc", _unreadable, VOL, "permission denied",
                 marks=pytest.mark.skipif(AS_ROOT, reason="root reads any file"),
                 id="unreadable-mrc"),
    ("empty-mrc", "a.mrc", _put(b""), VOL, "empty"),
    ("empty-png", "a.png", _put(b""), VOL, "empty"),
    ("empty-tif", "a.tif", _put(b""), VOL, "empty"),
    ("empty-npy", "a.npy", _put(b""), VOL, "empty"),
    ("empty-tlt", "a.tlt", _put(b""), read_tlt, "empty"),
    ("empty-xf", "a.xf", _put(b""), read_xf, "empty"),
    ("empty-star", "a.star", _put(b""), read_star, "empty"),
    ("empty-csv", "a.csv", _put(b""), read_coordinates, "empty"),
    ("npy-pickle", "a.npy", _npy_pickle, VOL, "pickle"),
    ("npy-truncated", "a.npy", _npy_truncated, VOL, "truncated"),
    ("npy-garbage", "a.npy", _put(BINARY), VOL, "not a valid .npy"),
    ("tlt-binary", "a.tlt", _put(BINARY), read_tlt, "not a text file"),
    ("tlt-garbage", "a.tlt", _put(b"1.0\nhello\n"), read_tlt, "not a tilt angle"),
    ("xf-binary", "a.xf", _put(BINARY), read_xf, "not a text file"),
    ("xf-garbage", "a.xf", _put(b"1 0 0 1 x y\n"), read_xf, "expected 6 numbers"),
    ("star-binary", "a.star", _put(BINARY), read_star, "not a text file"),
    ("star-garbage", "a.star", _put(b"hello\nworld\n"), read_star, "no data_ blocks"),
    ("csv-binary", "a.csv", _put(BINARY), read_coordinates, "not a text file"),
    ("csv-garbage", "a.csv", _put(b"a;b\n1;2\n"), read_coordinates, "expected a header"),
    ("xml-cut", "a.xml", _put(b"<objlist><obj"), read_coordinates, "not valid XML"),
    ("aln-binary", "a.aln", _put(BINARY), read_aln, "not a text file"),
    ("obj-binary", "a.obj", _put(BINARY), read_mesh, "not a text file"),
    ("ply-cut", "a.ply", _put(PLY_CUT), read_mesh, "not a readable mesh"),
    ("glb-garbage", "a.glb", _put(BINARY), read_mesh, "not a readable mesh"),
    ("cif-garbage", "a.cif", _put(BINARY), read_structure, "not a readable PDB/mmCIF"),
    ("pdb-no-atoms", "a.pdb", _put(b"hello\n"), read_structure, "holds no atoms"),
]
# fmt: on


def _param(case: Any) -> Any:
    return pytest.param(*case, id=case[0]) if type(case) is tuple else case


PARAMS = [_param(c) for c in CASES]
VOLUME_READERS = (read_volume,)


# --- helpers ---------------------------------------------------------------------------------


def _fingerprint(path: Path) -> Any:
    """What must not change: the bytes of a file, or every file of a folder; a FIFO's mode."""
    if path.is_fifo():
        return ("fifo", path.stat().st_mode)
    if path.is_dir():
        return sorted(
            (str(f.relative_to(path)), hashlib.sha256(f.read_bytes()).hexdigest())
            for f in path.rglob("*")
            if f.is_file()
        )
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except PermissionError:
        return ("unreadable", path.stat().st_size, path.stat().st_mtime_ns)


def _build(tmp_path: Path, name: str, build: Callable[[Path], None]) -> Path:
    folder = tmp_path / "in"
    folder.mkdir(exist_ok=True)
    path = folder / name
    build(path)
    return path


class _Blocked(BaseException):
    """Raised by the alarm; a BaseException, so no reader's ``except Exception`` hides it."""


def _call_with_timeout(func: Callable[[], Any], path: Path, timeout: float = 30.0) -> Any:
    """Run ``func`` in the main thread (as the CLI does); fail, not hang, when it blocks.

    A reader that opens a FIFO waits for a writer forever; the alarm interrupts it.
    """

    def expire(signum: int, frame: Any) -> None:
        raise _Blocked

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        return func()
    except _Blocked:
        pytest.fail(f"reading {path.name} blocked for {timeout} s")
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


# --- the checks ------------------------------------------------------------------------------


@pytest.mark.parametrize(("case", "name", "build", "reader", "fragment"), PARAMS)
def test_reader_raises_emkit_error(
    tmp_path: Path,
    case: str,
    name: str,
    build: Callable[[Path], None],
    reader: Callable[[Path], Any],
    fragment: str,
) -> None:
    path = _build(tmp_path, name, build)
    before = _fingerprint(path)
    with pytest.raises(EmkitError) as caught:
        _call_with_timeout(lambda: reader(path), path)
    message = str(caught.value)
    assert path.name in message, message
    assert fragment in message, message
    assert "\n" not in message
    assert _fingerprint(path) == before


@pytest.mark.parametrize(("case", "name", "build", "reader", "fragment"), PARAMS)
def test_cli_info_one_line_exit_2(
    tmp_path: Path,
    case: str,
    name: str,
    build: Callable[[Path], None],
    reader: Callable[[Path], Any],
    fragment: str,
) -> None:
    # A subprocess, as a user runs it: C libraries write to fd 2 and Python warnings reach
    # stderr there, which pytest's capture would hide in-process.
    path = _build(tmp_path, name, build)
    before = _fingerprint(path)
    result = subprocess.run(
        [*EMKIT, "info", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONWARNINGS": "default"},
    )
    lines = result.stderr.splitlines()
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("emkit: error: ") and path.name in lines[0]
    assert fragment in lines[0]
    assert result.stdout == ""
    assert _fingerprint(path) == before


@pytest.mark.parametrize(
    ("case", "name", "build", "reader", "fragment"),
    [p for p in PARAMS if p.values[3] is read_volume],
)
@pytest.mark.parametrize("out_name", ["out.mrc", "out.ome.zarr"])
def test_cli_convert_writes_nothing(
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
    case: str,
    name: str,
    build: Callable[[Path], None],
    reader: Callable[[Path], Any],
    fragment: str,
    out_name: str,
) -> None:
    path = _build(tmp_path, name, build)
    before = _fingerprint(path)
    out = tmp_path / "out"
    out.mkdir()
    status = _call_with_timeout(lambda: main(["convert", str(path), str(out / out_name)]), path)
    captured = capfd.readouterr()
    assert status == 2, captured.err
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("emkit: error: "), captured.err
    assert path.name in lines[0] and fragment in lines[0]
    assert sorted(os.listdir(out)) == []
    assert _fingerprint(path) == before


def test_every_case_has_a_unique_name() -> None:
    names = [p.id for p in PARAMS]
    assert len(names) == len(set(names))


# --- a full disk while writing MRC -----------------------------------------------------------


class _FullDisk:
    """A file object that takes the header, then fails as a full disk does."""

    def __init__(self, path: Any, mode: str = "rb", *args: Any, **kwargs: Any) -> None:
        self.inner = open(path, mode, *args, **kwargs)
        self.written = 0

    def write(self, data: Any) -> int:
        self.written += 1
        if self.written > 1:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return int(self.inner.write(data))

    def __enter__(self) -> _FullDisk:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.inner.close()


@pytest.fixture
def full_disk(monkeypatch: pytest.MonkeyPatch) -> None:
    import mrcfile

    from emkit.io import _mrc

    monkeypatch.setattr(_mrc, "open", _FullDisk, raising=False)

    def no_mmap(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("MRC output must not be memory-mapped (SIGBUS on a full disk)")

    monkeypatch.setattr(mrcfile, "new_mmap", no_mmap)


def test_mrc_write_is_buffered_and_a_full_disk_is_disk_full_error(
    tmp_path: Path, full_disk: None
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(DiskFullError) as caught:
        write_volume(out / "vol.mrc", VOLUME, voxel_size=1.0)
    message = str(caught.value)
    assert "vol.mrc" in message and "disk full" in message and "MiB free" in message
    assert "\n" not in message
    assert isinstance(caught.value, OSError)
    assert os.listdir(out) == []


def test_cli_convert_on_a_full_disk_prints_one_line(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], full_disk: None
) -> None:
    src = tmp_path / "in" / "vol.tif"
    write_volume(src, VOLUME, voxel_size=1.0)
    before = _fingerprint(src)
    out = tmp_path / "out"
    out.mkdir()
    assert main(["convert", str(src), str(out / "vol.mrc")]) == 2
    err = capfd.readouterr().err
    assert err.count("\n") == 1 and err.startswith("emkit: error: ") and "disk full" in err, err
    assert os.listdir(out) == []
    assert _fingerprint(src) == before


def test_library_chatter_goes_to_the_debug_log(tmp_path: Path) -> None:
    # A valid PNG with damaged ancillary chunks: libpng warns on fd 2 but decodes it.
    raw = _good_bytes(".png", IMAGE)
    chatty = (
        raw[:33]
        + _png_chunk(b"iCCP", b"bogus\0\0" + zlib.compress(b"not a profile" * 10))
        + _png_chunk(b"zTXt", b"key\0\0notzlib")
        + raw[33:]
    )
    path = tmp_path / "chatty.png"
    path.write_bytes(chatty)
    quiet = subprocess.run([*EMKIT, "info", str(path)], capture_output=True, text=True, timeout=60)
    assert quiet.returncode == 0 and quiet.stderr == "", quiet.stderr
    loud = subprocess.run(
        [*EMKIT, "-vv", "info", str(path)], capture_output=True, text=True, timeout=60
    )
    assert "libpng warning" in loud.stderr and "DEBUG" in loud.stderr
    np.testing.assert_array_equal(read_volume(path).data, IMAGE)


def test_unreadable_file_is_refused_even_as_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The table's permission row is skipped for root (who reads anything); the check itself
    # is the open() in require_readable_file, made to fail here as it does for a user.
    from emkit.errors import UnreadableFileError
    from emkit.io import _paths

    path = tmp_path / "locked.tlt"
    path.write_text("1\n2\n")

    def denied(*args: Any, **kwargs: Any) -> Any:
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(_paths, "open", denied, raising=False)
    with pytest.raises(UnreadableFileError, match="locked.tlt: cannot be read"):
        read_tlt(path)
    with pytest.raises(PermissionError):
        read_tlt(path)  # also the builtin it refines


@pytest.mark.parametrize("damage", ["cut", "garbled"])
def test_damaged_alignment_checkpoint_is_one_error(tmp_path: Path, damage: str) -> None:
    from emkit.errors import FileFormatError
    from emkit.tomo._joint import _load_checkpoint

    path = tmp_path / "align.npz"
    np.savez(path, shifts=np.arange(100.0), fingerprint=np.array("x"))
    raw = bytearray(path.read_bytes())
    if damage == "cut":
        raw = raw[: len(raw) // 2]
    else:
        raw[100:140] = bytes(40)
    path.write_bytes(bytes(raw))
    with pytest.raises(FileFormatError, match="align.npz: cannot read this checkpoint"):
        _load_checkpoint(path, "x")
