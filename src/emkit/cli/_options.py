"""Option types declared once, and the checks every command runs before any work.

Each ``type=`` factory here returns an :class:`OptionType`: an argparse type callable that
carries its constraint (``.constraint``, in words) and a few values it must refuse
(``.invalid_examples``). argparse turns a refusal into ``emkit: error: argument --x: ...``
on one line and exit status 2 (see :class:`EmkitArgumentParser`), before any file is read.
``tests/test_cli_bad_options.py`` walks the built parser and tries every invalid example
of every option, so an option declared with one of these types is covered automatically;
a plain ``type=int`` or ``type=float`` fails that test.

Checks that depend on the input or on the machine run at the start of a command:
:func:`check_device` (``--device cuda`` without a GPU) and :func:`require_memory` (the
memory a run needs, estimated from the input's shape, against what is available).

Nothing here imports numpy or torch at import time, so ``emkit --help`` stays instant.
"""

from __future__ import annotations

import argparse
import math
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

__all__ = [
    "EmkitArgumentParser",
    "OptionType",
    "int_range",
    "positive_int",
    "nonneg_int",
    "seed",
    "float_range",
    "positive_float",
    "nonneg_float",
    "finite_float",
    "int_list",
    "int_span",
    "angle_or_auto",
    "device",
    "safe_name",
    "file_path",
    "check_device",
    "available_memory",
    "require_memory",
]

# Longest file-name component most file systems take (bytes); longer ones fail with
# ENAMETOOLONG deep inside a run.
_NAME_MAX = 255
_PATH_MAX = 4096


class EmkitArgumentParser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line, like every other emkit error.

    argparse prints the usage block and then ``prog: error: message``; emkit prints only
    ``emkit: error: message`` (``--help`` shows the usage) and exits with status 2.
    Subparsers inherit the class.
    """

    def error(self, message: str) -> NoReturn:
        line = " ".join(str(message).split())
        self.exit(2, f"emkit: error: {line}\n")


class OptionType:
    """An argparse ``type=`` callable that states what it accepts.

    Attributes
    ----------
    constraint : str
        What a valid value is, in words (``"a number > 0"``).
    invalid_examples : tuple of str
        Command-line strings the type must refuse (the bad-option tests try each).
    """

    def __init__(
        self,
        name: str,
        convert: Callable[[str], Any],
        constraint: str,
        invalid_examples: Sequence[str],
    ) -> None:
        self.__name__ = name  # argparse names the type in some messages
        self._convert = convert
        self.constraint = constraint
        self.invalid_examples = tuple(invalid_examples)

    def __call__(self, text: str) -> Any:
        return self._convert(text)

    def __repr__(self) -> str:
        return f"<option type {self.__name__}: {self.constraint}>"


def _refuse(constraint: str, text: str) -> NoReturn:
    raise argparse.ArgumentTypeError(f"must be {constraint} (got {text!r})")


def _bound_text(lo: float | None, hi: float | None, lo_open: bool, hi_open: bool) -> str:
    def text(value: float) -> str:  # an integer bound as an integer, not 1.84467e+19
        return str(value) if isinstance(value, int) else f"{value:g}"

    parts = []
    if lo is not None:
        parts.append(f"{'>' if lo_open else '>='} {text(lo)}")
    if hi is not None:
        parts.append(f"{'<' if hi_open else '<='} {text(hi)}")
    return " and ".join(parts)


def int_range(lo: int | None = None, hi: int | None = None) -> OptionType:
    """Integers in ``[lo, hi]`` (either bound may be None)."""
    bounds = _bound_text(lo, hi, False, False)
    constraint = f"an integer {bounds}".strip()

    def convert(text: str) -> int:
        try:
            value = int(text.strip())
        except ValueError:
            _refuse(constraint, text)
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            _refuse(constraint, text)
        return value

    invalid = ["abc", "1.5", ""]
    if lo is not None:
        invalid.append(str(lo - 1))
    if hi is not None:
        invalid.append(str(hi + 1))
    return OptionType(f"int_range({lo}, {hi})", convert, constraint, invalid)


positive_int = int_range(1)
nonneg_int = int_range(0)
# numpy's generators take seeds 0 .. 2**128 - 1; nobody needs more than 64 bits.
seed = int_range(0, 2**64 - 1)


def float_range(
    lo: float | None = None,
    hi: float | None = None,
    *,
    lo_inclusive: bool = True,
    hi_inclusive: bool = True,
    unit: str = "",
) -> OptionType:
    """Finite numbers between ``lo`` and ``hi`` (NaN and infinity are always refused);
    ``unit`` (e.g. ``"in Å"``) is named in the refusal, for options whose unit is easy to
    mistake."""
    bounds = _bound_text(lo, hi, not lo_inclusive, not hi_inclusive)
    constraint = f"a finite number {bounds} {unit}".strip()

    def convert(text: str) -> float:
        try:
            value = float(text.strip())
        except ValueError:
            _refuse(constraint, text)
        if not math.isfinite(value):
            _refuse(constraint, text)
        if lo is not None and (value < lo or (value == lo and not lo_inclusive)):
            _refuse(constraint, text)
        if hi is not None and (value > hi or (value == hi and not hi_inclusive)):
            _refuse(constraint, text)
        return value

    invalid = ["abc", "nan", "inf", "-inf", ""]
    if lo is not None:
        invalid.append(f"{lo:g}" if not lo_inclusive else f"{lo - 1:g}")
    if hi is not None:
        invalid.append(f"{hi:g}" if not hi_inclusive else f"{hi + 1:g}")
    name = f"float_range({lo}, {hi})"
    return OptionType(name, convert, constraint, invalid)


positive_float = float_range(0, lo_inclusive=False)
nonneg_float = float_range(0)
finite_float = float_range()


def int_list(lo: int = 1) -> OptionType:
    """Comma-separated integers, each >= ``lo`` (``4,2,1``)."""
    constraint = f"comma-separated integers >= {lo}"

    def convert(text: str) -> list[int]:
        try:
            values = [int(v) for v in text.replace(" ", "").split(",") if v]
        except ValueError:
            _refuse(constraint, text)
        if not values or min(values) < lo:
            _refuse(constraint, text)
        return values

    return OptionType(f"int_list({lo})", convert, constraint, ["abc", "", "2,x", f"{lo - 1}"])


def int_span() -> OptionType:
    """``START:STOP`` with ``0 <= START < STOP`` (a half-open range of indices)."""
    constraint = "START:STOP with 0 <= START < STOP"

    def convert(text: str) -> tuple[int, int]:
        try:
            a, b = (int(v) for v in text.split(":"))
        except ValueError:
            _refuse(constraint, text)
        if not 0 <= a < b:
            _refuse(constraint, text)
        return a, b

    return OptionType("int_span", convert, constraint, ["abc", "5", "4:4", "-1:3", "3:1"])


def _angle_or_auto(text: str) -> float | str:
    if text.strip().lower() == "auto":
        return "auto"
    try:
        value = float(text.strip())
    except ValueError:
        _refuse(angle_or_auto.constraint, text)
    if not math.isfinite(value):
        _refuse(angle_or_auto.constraint, text)
    return value


angle_or_auto = OptionType(
    "angle_or_auto", _angle_or_auto, "an angle in degrees or 'auto'", ["abc", "nan", "inf", ""]
)

_DEVICE = re.compile(r"^(cpu|cuda|cuda:\d+|auto)$")


def _device(text: str) -> str | None:
    name = text.strip().lower()
    if not _DEVICE.match(name):
        _refuse(device.constraint, text)
    return None if name == "auto" else name


# Whether CUDA is really there is checked at the start of the run (check_device): importing
# torch while parsing would make every `--help` slow.
device = OptionType(
    "device", _device, "cpu, cuda, cuda:N or auto", ["gpu", "abc", "", "cuda:x", "cuda0"]
)


def _safe_name(text: str) -> str:
    bad = (
        not text
        or text in (".", "..")
        or "/" in text
        or "\\" in text
        or "\0" in text
        or text != text.strip()
        or len(text) > 200
        or ".." in text.split(".")
    )
    if bad:
        _refuse(safe_name.constraint, text)
    return text


safe_name = OptionType(
    "safe_name",
    _safe_name,
    "a bare file stem of 1 to 200 characters without '/', '\\' or '..'",
    ["", "..", "../x", "a/b", "x" * 201, " x"],
)


def _file_path(text: str) -> Path:
    if not text or "\0" in text:
        _refuse(file_path.constraint, text)
    encoded = os.fsencode(text)
    longest = max(len(part) for part in encoded.split(b"/"))
    if len(encoded) > _PATH_MAX or longest > _NAME_MAX:
        raise argparse.ArgumentTypeError(
            f"must be {file_path.constraint} (got a name of {longest} bytes in a path of "
            f"{len(encoded)})"
        )
    return Path(text)


file_path = OptionType(
    "file_path",
    _file_path,
    f"a path whose file and folder names are at most {_NAME_MAX} bytes each",
    ["", "x" * 300],
)


# --------------------------------------------------------------------------- run-time checks


def check_device(name: str | None, option: str = "--device") -> None:
    """Refuse a CUDA device that torch cannot see (one line, before any work).

    Raises
    ------
    emkit.errors.InputError
        ``name`` is ``cuda``/``cuda:N`` and torch has no (such) CUDA device.
    """
    if name is None or not name.startswith("cuda"):
        return
    import torch

    from emkit.errors import InputError

    if not torch.cuda.is_available():
        raise InputError(
            f"{option} {name}: torch sees no CUDA GPU on this machine; use --device cpu "
            "(or leave --device out to pick the GPU when there is one)"
        )
    index = int(name.split(":")[1]) if ":" in name else 0
    count = torch.cuda.device_count()
    if index >= count:
        raise InputError(
            f"{option} {name}: this machine has {count} CUDA device(s), numbered from 0"
        )


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation (None when it cannot be told).

    psutil when installed, else ``MemAvailable`` of ``/proc/meminfo``, else the free
    physical pages from ``os.sysconf``.
    """
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except Exception:  # not installed, or no answer on this platform
        pass
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def _gib(n_bytes: float) -> str:
    gib = n_bytes / 2**30
    return f"{gib:.3g}" if gib < 100 else f"{gib:,.0f}"


def require_memory(n_bytes: float, what: str, hint: str) -> None:
    """Refuse a run whose estimated memory need exceeds the memory available.

    Parameters
    ----------
    n_bytes : float
        The run's estimated peak memory in bytes (arrays it holds at once).
    what : str
        What needs it, naming the input (``"a 200000 x 64 x 64 tomogram of ts.mrc"``).
    hint : str
        How to need less, naming the options (``"use --bin or a smaller --thickness"``).

    Raises
    ------
    emkit.errors.InputError
        ``"needs ~N GiB for <what>, M GiB available; <hint>"``.
    """
    available = available_memory()
    if available is None or n_bytes <= available:
        return
    from emkit.errors import InputError

    raise InputError(
        f"needs ~{_gib(n_bytes)} GiB for {what}, {_gib(available)} GiB available; {hint}"
    )
