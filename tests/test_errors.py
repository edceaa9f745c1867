"""The error family: builtin parents, and messages that stay on one line."""

from __future__ import annotations

import pytest

from emkit.errors import (
    EmkitError,
    FileFormatError,
    InputError,
    MissingFileError,
    OutputExistsError,
    with_path,
)


def test_classes_refine_builtins() -> None:
    assert issubclass(FileFormatError, InputError) and issubclass(InputError, ValueError)
    assert issubclass(MissingFileError, FileNotFoundError)
    assert issubclass(OutputExistsError, FileExistsError)
    assert all(issubclass(c, EmkitError) for c in (InputError, MissingFileError))


@pytest.mark.parametrize(
    "message",
    [
        "is not a readable table (Error tokenizing data. C error: bad line 3\n)",
        "first\r\nsecond\n\n  third  ",
    ],
)
def test_with_path_keeps_the_message_on_one_line(message: str) -> None:
    # Library errors quoted in a message (pandas, tifffile...) may hold newlines; the CLI
    # prints the message as its one line.
    text = with_path("dir/table.csv", message)
    assert text.startswith("dir/table.csv: ")
    assert "\n" not in text and "\r" not in text
    assert "  " not in text.split(": ", 1)[1].strip()
    assert with_path(None, "a\nb") == "a b"
