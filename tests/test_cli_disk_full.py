"""A full disk is one line, exit status 2, and nothing left behind.

Two ways to fill the disk: a small tmpfs (when running as root, as CI does) and a file-size
limit (``ulimit -f``; Python ignores SIGXFSZ, so a write past it fails with EFBIG), which
works for any user.
"""

from __future__ import annotations

import contextlib
import os
import resource
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from emkit.io import write_volume

_SMALL_DISK_BYTES = 3 * 2**20


@contextlib.contextmanager
def _small_tmpfs(folder: Path) -> Iterator[Path]:
    folder.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root; the file-size-limit case still runs")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={_SMALL_DISK_BYTES}", "tmpfs", str(folder)],
        capture_output=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def _emkit(argv: list[str], *, file_size_limit: int | None = None) -> subprocess.CompletedProcess:
    def limit() -> None:
        if file_size_limit is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (file_size_limit, file_size_limit))

    return subprocess.run(
        [sys.executable, "-m", "emkit.cli.main", *argv],
        capture_output=True,
        text=True,
        preexec_fn=limit,
        timeout=300,
    )


def _assert_disk_full(result: subprocess.CompletedProcess, out_root: Path) -> None:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    errors = [line for line in lines if not line.startswith("emkit convert: warning")]
    assert len(errors) == 1 and errors[0].startswith("emkit: error:"), result.stderr
    assert "disk full" in errors[0]
    left = [p for p in out_root.rglob("*")]
    assert left == [], f"left behind: {left}"


@pytest.fixture(scope="module")
def big_volume(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("in") / "big.mrc"
    rng = np.random.default_rng(0)
    write_volume(path, rng.random((40, 128, 128), dtype=np.float32), voxel_size=2.0)  # 2.5 MiB
    return path


@pytest.mark.parametrize("suffix", [".mrc", ".tif", ".ome.zarr", ".npy"])
def test_convert_onto_a_full_disk(big_volume: Path, tmp_path: Path, suffix: str) -> None:
    before = big_volume.read_bytes()
    with _small_tmpfs(tmp_path / "disk") as disk:
        # Most of the space already taken, so the write cannot fit.
        (disk / "other.bin").write_bytes(b"\0" * (_SMALL_DISK_BYTES - 2**20))
        result = _emkit(["convert", str(big_volume), str(disk / "out" / f"vol{suffix}")])
        (disk / "other.bin").unlink()
        _assert_disk_full(result, disk)
    assert big_volume.read_bytes() == before


def test_sim_whose_outputs_fill_the_disk_midway(tmp_path: Path) -> None:
    # Each output fits the free space on its own; together they do not, so a write fails
    # with ENOSPC part-way (no up-front check can see it) and the run must undo itself.
    with _small_tmpfs(tmp_path / "disk") as disk:
        result = _emkit(["sim", "tiltseries", "--output", str(disk / "sim"),
                         "--shape", "40", "96", "96", "--tilt-step", "2"])
        _assert_disk_full(result, disk)


@pytest.mark.parametrize("suffix", [".mrc", ".tif", ".png"])
def test_file_size_limit_reached_while_writing(tmp_path: Path, suffix: str) -> None:
    rng = np.random.default_rng(1)
    source = tmp_path / "in" / "img.tif"
    write_volume(source, (rng.random((512, 512)) * 255).astype(np.uint8))
    out_root = tmp_path / "out"
    result = _emkit(["convert", str(source), str(out_root / f"img{suffix}")],
                    file_size_limit=64 * 1024)
    _assert_disk_full(result, out_root)
