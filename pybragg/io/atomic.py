"""All-or-nothing file writes."""

from __future__ import annotations

import contextlib
import os
import tempfile


def new_file_mode(path: str) -> int:
    """Permission bits the written file should get (existing file's, else umask's)."""
    try:
        return os.stat(path).st_mode & 0o7777
    except OSError:
        mask = os.umask(0)
        os.umask(mask)
        return 0o666 & ~mask


def atomic_write(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically.

    The bytes go to a temporary file in the same directory, which then replaces
    ``path``; on any error the temporary file is removed and the error propagates
    (an unwritable location raises ``OSError``).
    """
    target = os.fspath(path)
    directory = os.path.dirname(target) or "."
    base = os.path.basename(target)
    fd, tmp_name = tempfile.mkstemp(prefix="." + base, suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            os.fchmod(handle.fileno(), new_file_mode(target))
        os.replace(tmp_name, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        raise
