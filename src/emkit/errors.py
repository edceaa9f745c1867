"""The one exception family of emkit.

Every error that a user can fix by changing their input is an :class:`EmkitError`. Each
class also inherits the builtin it refines, so ``except FileNotFoundError`` or
``except ValueError`` keeps working. The CLI prints ``str(error)`` on one line and exits
with status 2; anything else is a bug and exits with status 1.

Messages name the file (when there is one) and say what to do, e.g.
``"tilts.tlt: 59 tilt angles but the stack has 61 images; give one angle per image"``.
"""

from __future__ import annotations

import os
import re

__all__ = [
    "EmkitError",
    "InputError",
    "MissingFileError",
    "UnreadableFileError",
    "FileFormatError",
    "ShapeError",
    "NonFiniteError",
    "MismatchError",
    "OutputExistsError",
    "DiskFullError",
    "with_path",
]


class EmkitError(Exception):
    """Base class: a problem with the user's input or request (CLI exit status 2)."""


class InputError(EmkitError, ValueError):
    """Input data or parameters that cannot be used as given."""


class MissingFileError(EmkitError, FileNotFoundError):
    """An input file or folder does not exist."""


class UnreadableFileError(EmkitError, PermissionError):
    """An input exists but cannot be read (permissions)."""


class FileFormatError(InputError):
    """A file is corrupt, truncated, or not in the format its suffix says."""


class ShapeError(InputError):
    """An array has the wrong number of dimensions or the wrong size."""


class NonFiniteError(InputError):
    """Data contain NaN or infinite values."""


class MismatchError(InputError):
    """Two inputs that must agree do not (angle count vs. stack, image sizes, ...)."""


class OutputExistsError(EmkitError, FileExistsError):
    """An output would overwrite an input, or a folder stands where a file is to go."""


class DiskFullError(EmkitError, OSError):
    """The disk (or quota) filled up while writing an output; nothing was left behind."""


# A run of whitespace that holds a line break (library errors quoted in messages have them).
_LINE_BREAK = re.compile(r"\s*[\r\n]+\s*")


def with_path(path: str | os.PathLike[str] | None, message: str) -> str:
    """Prefix ``message`` with the file name, the way every emkit error names its file.

    Line breaks (e.g. in a quoted pandas or tifffile error) become spaces, so the message
    stays the one line the CLI prints.
    """
    message = _LINE_BREAK.sub(" ", message).strip()
    if path is None:
        return message
    return f"{os.fspath(path)}: {message}"
