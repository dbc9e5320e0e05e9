"""Error type shared by all pybragg file readers."""

from __future__ import annotations

import os
import stat

from pybragg.errors import PybraggError, ResourceLimitError


class FormatError(PybraggError, ValueError):
    """A file could not be read or does not follow its expected format.

    The message is a single line that starts with the offending file's path.
    """


def describe_path(path: str | os.PathLike[str]) -> str:
    """Return the path as it should appear in error messages."""
    return os.fspath(path)


#: the longest line a text input may hold (a longer one is not a text file of any kind pybragg reads)
MAX_LINE_BYTES = 1 << 20
_CHUNK = 1 << 20


def read_bytes(path: str | os.PathLike[str], max_line: int | None = None) -> bytes:
    """Read a whole file, turning OS errors into a one-line FormatError.

    The memory rule bounds it (:func:`pybragg.memory.check_allocation`): a regular file larger than
    the memory available is refused before it is read, anything else (a device, a pipe) is read in
    chunks and refused once it passes that size.  With ``max_line``, a line longer than that many
    bytes is refused (``/dev/zero`` is refused after the first MiB).
    """
    from pybragg.memory import available_bytes, check_allocation, format_bytes

    name = describe_path(path)
    try:
        with open(path, "rb") as handle:
            info = os.fstat(handle.fileno())
            if stat.S_ISDIR(info.st_mode):
                raise FormatError(f"{name}: cannot read: it is a directory")
            if stat.S_ISREG(info.st_mode):
                check_allocation(info.st_size, f"{name}: reading the file")
            limit = available_bytes()
            parts: list[bytes] = []
            total = run = 0
            while True:
                chunk = handle.read(_CHUNK)
                if not chunk:
                    break
                total += len(chunk)
                if total > limit:
                    raise ResourceLimitError(f"{name}: the file is larger than the {format_bytes(limit)} "
                                             "of memory available (an endless stream or a device?)")
                if max_line is not None:
                    last = chunk.rfind(b"\n")
                    if last < 0:
                        run += len(chunk)
                    else:
                        if run + chunk.find(b"\n") > max_line:
                            run = max_line + 1
                        else:
                            run = len(chunk) - last - 1
                    if run > max_line:
                        raise FormatError(f"{name}: a line is longer than {format_bytes(max_line)}: not a text "
                                          "file of the expected kind")
                parts.append(chunk)
            return b"".join(parts)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise FormatError(f"{name}: cannot read: {reason}") from exc


def read_text(path: str | os.PathLike[str], max_line: int | None = MAX_LINE_BYTES) -> str:
    """Read a whole file as text (UTF-8, undecodable bytes replaced), bounded as :func:`read_bytes`
    is, lines at most ``max_line`` bytes long."""
    return read_bytes(path, max_line=max_line).decode("utf-8", errors="replace")


def shorten(text: str, limit: int = 60) -> str:
    """Quote a piece of file content for an error message, on one line."""
    if len(text) > limit:
        text = text[:limit] + "..."
    return repr(text)
