"""SerialEM autodocs (``.mdoc`` beside a stack, ``.idoc``): sections of key = value lines.

SerialEM writes one autodoc per acquisition: global keys (``PixelSpacing``, ``ImageFile``),
title lines (``[T = ... Tilt axis angle = 85.3, binning = 4 ...]``), then one section per
image, ``[ZValue = k]`` for the k-th image of the MRC stack (``[Image = file]`` in an
``.idoc``), with its ``TiltAngle``, ``PieceCoordinates``, ``Defocus``... This module reads
the structure; :func:`read_mdoc_tilt_angles` takes what a tilt series needs from it.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from emkit.errors import FileFormatError, MissingFileError, with_path

__all__ = ["Autodoc", "MdocTiltSeries", "read_autodoc", "read_mdoc_tilt_angles"]

_SECTION = re.compile(r"^\s*\[\s*(\w+)\s*=\s*(.*?)\s*\]\s*$")
_KEY = re.compile(r"^\s*(\w+)\s*=\s*(.*?)\s*$")
# SerialEM's title line of a tilt series: "Tilt axis angle = 85.3, binning = 4 ..."
_TILT_AXIS = re.compile(r"tilt\s*axis\s*angle\s*=\s*([-+0-9.eE]+)", re.IGNORECASE)


@dataclass
class AutodocSection:
    """One ``[kind = value]`` section: its keys (first value of each) and where it starts."""

    kind: str
    value: str
    keys: dict[str, str] = field(default_factory=dict)
    line: int = 0


@dataclass
class Autodoc:
    """A SerialEM autodoc: keys before the first section, title lines, sections in order."""

    path: Path
    keys: dict[str, str]
    titles: list[str]
    sections: list[AutodocSection]

    @property
    def pixel_spacing_A(self) -> float | None:
        """``PixelSpacing`` (Å) of the file, or of its first section that gives one."""
        for keys in [self.keys] + [section.keys for section in self.sections]:
            if "PixelSpacing" in keys:
                try:
                    value = float(keys["PixelSpacing"].split()[0])
                except (ValueError, IndexError):
                    return None
                return value if math.isfinite(value) and value > 0 else None
        return None


def read_autodoc(path: str | Path) -> Autodoc:
    """Read a SerialEM autodoc (``.mdoc``/``.idoc``) into its sections.

    Raises
    ------
    MissingFileError, FileFormatError
        No such file, or not text.
    """
    p = Path(path)
    if not p.is_file():
        raise MissingFileError(with_path(p, "does not exist; give the SerialEM .mdoc"))
    raw = p.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")  # e.g. Windows paths in SubFramePath
    if "\x00" in text:
        raise FileFormatError(with_path(p, "is not a text autodoc (binary data); give the "
                                        "SerialEM .mdoc/.idoc"))
    keys: dict[str, str] = {}
    titles: list[str] = []
    sections: list[AutodocSection] = []
    for number, line in enumerate(text.splitlines(), start=1):
        section = _SECTION.match(line)
        if section:
            if section.group(1) == "T":
                titles.append(section.group(2))
            else:
                sections.append(AutodocSection(section.group(1), section.group(2), line=number))
            continue
        key = _KEY.match(line)
        if key:
            target = sections[-1].keys if sections else keys
            target.setdefault(key.group(1), key.group(2))
    return Autodoc(p, keys, titles, sections)


@dataclass
class MdocTiltSeries:
    """What a tilt series' ``.mdoc`` says: the angle of each image in stack order, SerialEM's
    tilt axis angle (its own convention, reported as written) and the pixel size in Å."""

    tilt_angles_deg: np.ndarray
    tilt_axis_deg: float | None
    pixel_size_A: float | None


def _number(text: str, what: str, path: Path, line: int) -> float:
    try:
        value = float(text.split()[0])
    except (ValueError, IndexError):
        raise FileFormatError(with_path(path, f"line {line}: {what} {text!r} is not a "
                                        "number; fix the .mdoc")) from None
    if not math.isfinite(value):
        raise FileFormatError(with_path(path, f"line {line}: {what} is {text!r}; fix the "
                                        ".mdoc"))
    return value


def read_mdoc_tilt_angles(path: str | Path) -> MdocTiltSeries:
    """Tilt angles of a SerialEM tilt series from its ``.mdoc``, in stack order (ZValue).

    Raises
    ------
    MissingFileError, FileFormatError
        No such file; no ``[ZValue]`` section with a ``TiltAngle``; a section without one;
        a ZValue twice or missing (the stack order would be ambiguous).
    """
    doc = read_autodoc(path)
    p = doc.path
    by_z: dict[int, float] = {}
    for section in doc.sections:
        if section.kind != "ZValue":
            continue
        z_value = _number(section.value, "ZValue", p, section.line)
        if z_value != int(z_value) or z_value < 0:
            raise FileFormatError(with_path(p, f"line {section.line}: ZValue "
                                            f"{section.value!r} is not an image number; fix "
                                            "the .mdoc"))
        z = int(z_value)
        if "TiltAngle" not in section.keys:
            raise FileFormatError(with_path(p, f"line {section.line}: [ZValue = {z}] has no "
                                            "TiltAngle; give the .mdoc of a tilt series"))
        if z in by_z:
            raise FileFormatError(with_path(p, f"line {section.line}: ZValue {z} appears "
                                            "twice; fix the .mdoc"))
        by_z[z] = _number(section.keys["TiltAngle"], "TiltAngle", p, section.line)
    if not by_z:
        raise FileFormatError(with_path(p, "has no [ZValue] sections with TiltAngle; give the "
                                        ".mdoc of a SerialEM tilt series"))
    if sorted(by_z) != list(range(len(by_z))):
        missing = sorted(set(range(max(by_z) + 1)) - set(by_z))[:5]
        raise FileFormatError(with_path(p, f"ZValues are not 0..{len(by_z) - 1} (missing "
                                        f"{missing}); fix the .mdoc"))
    axis = None
    for title in doc.titles:
        found = _TILT_AXIS.search(title)
        if found:
            try:
                axis = float(found.group(1))
            except ValueError:  # "Tilt axis angle = ." : not reported
                continue
            break
    pixel_A = doc.pixel_spacing_A
    return MdocTiltSeries(np.array([by_z[z] for z in range(len(by_z))]), axis, pixel_A)
