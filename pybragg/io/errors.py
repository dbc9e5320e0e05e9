"""Error type shared by all pybragg file readers."""

from __future__ import annotations

import os
from pathlib import Path

from pybragg.errors import PybraggError


class FormatError(PybraggError, ValueError):
    """A file could not be read or does not follow its expected format.

    The message is a single line that starts with the offending file's path.
    """


def describe_path(path: str | os.PathLike[str]) -> str:
    """Return the path as it should appear in error messages."""
    return os.fspath(path)


def read_bytes(path: str | os.PathLike[str]) -> bytes:
    """Read a whole file, turning OS errors into a one-line FormatError."""
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise FormatError(f"{describe_path(path)}: cannot read: {reason}") from exc


def read_text(path: str | os.PathLike[str]) -> str:
    """Read a whole file as text (UTF-8, undecodable bytes replaced)."""
    return read_bytes(path).decode("utf-8", errors="replace")


def shorten(text: str, limit: int = 60) -> str:
    """Quote a piece of file content for an error message, on one line."""
    if len(text) > limit:
        text = text[:limit] + "..."
    return repr(text)
