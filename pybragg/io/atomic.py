"""All-or-nothing file writes: one file (:func:`atomic_write`) or a set of files (:func:`commit_files`).

The rule (docs/limits.md): every file of a set is first written in full to a staged file
(``.pybragg-XXXXXXXX.part``) in its target's folder; only then are the staged files moved in place,
and if one move fails the ones already moved are put back (the files they replaced are kept under
a hard link until the whole set is in place), so a failure leaves every target as it was and no
staged file behind.  A symlink is written through: its target is replaced and the link stays.  An
existing target that is not a regular file (``/dev/null``, a FIFO, a terminal) is written into,
never replaced; those bytes go out before any regular file is moved, and cannot be taken back.
SIGINT, SIGTERM and SIGHUP are held while files are moved (:func:`signals_deferred`): a signal
then puts the set back and is delivered once nothing is half done.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import stat
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Union

from pybragg.errors import UsageError

if TYPE_CHECKING:
    import numpy as np

#: writes one file's content to the path it is given (a staged file)
Writer = Callable[[str], None]
#: what :func:`write_buffers` writes: bytes or a C-contiguous array
Buffer = Union[bytes, "np.ndarray"]

STAGE_PREFIX = ".pybragg-"
STAGE_SUFFIX = ".part"
BACKUP_SUFFIX = ".old"

_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))
_CHUNK = 1 << 20


def new_file_mode(path: str) -> int:
    """Permission bits the written file should get (existing file's, else umask's)."""
    try:
        return os.stat(path).st_mode & 0o7777
    except OSError:
        mask = os.umask(0)
        os.umask(mask)
        return 0o666 & ~mask


@contextlib.contextmanager
def signals_deferred() -> Iterator[list[int]]:
    """Hold SIGINT, SIGTERM and SIGHUP for the block; yield the list of signals that came.

    Python runs signal handlers in the main thread only, between bytecodes, so the handlers are
    swapped for one that notes the signal; when the block ends the old handlers come back and each
    noted signal is raised again, to be handled as it would have been (a handler that raises
    KeyboardInterrupt raises it after the block).  Outside the main thread it does nothing.
    """
    pending: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield pending
        return

    def hold(signo: int, frame: object) -> None:
        if signo not in pending:
            pending.append(signo)

    previous: list[tuple[int, object]] = []
    try:
        for signo in _SIGNALS:
            old = signal.getsignal(signo)
            if old is None:  # a handler not installed from Python: leave it alone
                continue
            signal.signal(signo, hold)
            previous.append((signo, old))
        yield pending
    finally:
        for signo, old in reversed(previous):
            signal.signal(signo, old)  # type: ignore[arg-type]
        for signo in pending:
            signal.raise_signal(signo)


@dataclass
class _Staged:
    path: str            #: as the caller named it (for messages)
    target: str          #: the file that ends up with the bytes (a symlink's target)
    tmp: str             #: the staged file
    through: bool        #: write into the existing target (a device, a FIFO) instead of replacing it
    backup: str | None = None   #: the file the target was, kept until the set is in place
    moved: bool = False  #: the old target was renamed to ``backup`` (no hard links here)
    committed: bool = False


def final_target(path: str | os.PathLike[str]) -> str:
    """The file a write to ``path`` ends in: absolute, with every symlink followed (but a link
    that only the kernel can follow, such as ``/dev/stdout`` on a pipe, is kept as named)."""
    named = os.fspath(path)
    real = os.path.realpath(named)
    if not os.path.lexists(real) and os.path.exists(named):
        return os.path.abspath(named)
    return real


def _is_special(target: str) -> bool:
    """An existing file that is written into rather than replaced (not a regular file, not a folder)."""
    try:
        mode = os.stat(target).st_mode
    except OSError:
        return False
    return not stat.S_ISREG(mode) and not stat.S_ISDIR(mode)


@contextlib.contextmanager
def _naming(path: str) -> Iterator[None]:
    """Re-raise an OSError as ``OSError("PATH: reason")`` (the message the command line prints)."""
    try:
        yield
    except OSError as exc:
        if getattr(exc, "pybragg_named", False):
            raise
        named = OSError(f"{path}: {exc.strerror or exc}")
        named.errno = exc.errno
        named.pybragg_named = True  # type: ignore[attr-defined]
        raise named from exc


def _stage(path: str, write: Writer, staged: list[_Staged]) -> None:
    target = final_target(path)
    through = _is_special(target)
    # a device's or FIFO's folder (/dev) need not be writable: its bytes wait in the temp folder
    folder = tempfile.gettempdir() if through else os.path.dirname(target)
    with signals_deferred():
        fd, tmp = tempfile.mkstemp(prefix=STAGE_PREFIX, suffix=STAGE_SUFFIX, dir=folder)
        os.close(fd)
        staged.append(_Staged(path, target, tmp, through))
    write(tmp)
    if not through:
        os.chmod(tmp, new_file_mode(target))


def _write_through(s: _Staged) -> None:
    """Copy the staged bytes into the existing special file (opening a FIFO waits for its reader)."""
    fd = os.open(s.target, os.O_WRONLY | getattr(os, "O_CLOEXEC", 0))
    try:
        with open(s.tmp, "rb") as source:
            while chunk := source.read(_CHUNK):
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fd, view):]
    finally:
        os.close(fd)


def _keep_old(target: str) -> tuple[str | None, bool]:
    """Keep the file at ``target`` under a new name beside it: (that name or None, renamed?)."""
    if not os.path.lexists(target):
        return None, False
    if os.path.isdir(target):
        raise IsADirectoryError(errno.EISDIR, "is a folder")
    folder, _ = os.path.split(target)
    for _ in range(100):
        backup = os.path.join(folder, STAGE_PREFIX + os.urandom(4).hex() + BACKUP_SUFFIX)
        try:
            os.link(target, backup, follow_symlinks=False)
            return backup, False
        except FileExistsError:
            continue
        except OSError as exc:  # a file system without hard links: move the old file aside
            if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EMLINK, errno.EXDEV,
                                 errno.ENOSYS):
                raise
            if os.path.lexists(backup):
                continue
            os.rename(target, backup)
            return backup, True
    raise FileExistsError(errno.EEXIST, "no free name for the old file")


def _move_in(s: _Staged) -> None:
    s.backup, s.moved = _keep_old(s.target)
    os.replace(s.tmp, s.target)
    s.committed = True


def _roll_back(staged: Sequence[_Staged]) -> list[str]:
    """Put back every target moved so far; return what could not be put back."""
    lost: list[str] = []
    for s in reversed(staged):
        try:
            if s.committed:
                if s.backup is not None:
                    os.replace(s.backup, s.target)
                else:
                    os.unlink(s.target)
            elif s.backup is not None:
                if s.moved:
                    os.replace(s.backup, s.target)
                else:
                    os.unlink(s.backup)
        except OSError as exc:
            lost.append(f"{s.path}: {exc.strerror or exc}"
                        + (f" (the old file is kept as {s.backup})" if s.backup and os.path.lexists(s.backup) else ""))
            continue
        s.committed, s.backup = False, None
    return lost


def _remove_staged(staged: Sequence[_Staged], committed: bool) -> None:
    for s in staged:
        with contextlib.suppress(FileNotFoundError, OSError):
            os.unlink(s.tmp)
        if committed and s.backup is not None:
            with contextlib.suppress(FileNotFoundError, OSError):
                os.unlink(s.backup)
            s.backup = None


def commit_files(jobs: Sequence[tuple[str, Writer]]) -> None:
    """Write every ``(path, writer)`` job: all of the files completely, or none of them.

    Each writer writes its whole file to the staged path it is given.  Raises ``OSError`` named
    ``"PATH: reason"`` (or the writer's own exception), or the KeyboardInterrupt a signal's
    handler raises; whatever ends it leaves every target as it was and no staged file.
    """
    staged: list[_Staged] = []
    done = False
    try:
        for path, write in jobs:
            with _naming(path):
                _stage(os.fspath(path), write, staged)
        for s in staged:
            if s.through:
                with _naming(s.path):
                    _write_through(s)
        with signals_deferred() as pending:
            try:
                for s in staged:
                    if not s.through:
                        with _naming(s.path):
                            _move_in(s)
            except BaseException as exc:
                lost = _roll_back(staged)
                if lost and isinstance(exc, OSError):  # very rare: say where the old files are
                    raise OSError(f"{exc}; and could not put back {'; '.join(lost)}") from exc
                for note in lost:
                    exc.add_note(note)
                raise
            if pending:  # interrupted while the files were moved: put the old set back
                _roll_back(staged)
            else:
                done = True
            _remove_staged(staged, done)
    finally:
        if not done:
            with signals_deferred():
                _remove_staged(staged, False)


def atomic_write(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (a one-file :func:`commit_files`).

    The bytes go to a staged file in the target's folder, which then replaces the target; a
    symlink is written through, a device or FIFO written into.  On any error nothing changes and
    the error propagates (an unwritable location raises ``OSError``).
    """
    commit_files([(os.fspath(path), lambda tmp: write_bytes(tmp, data))])


def write_bytes(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` (plainly: the caller stages it)."""
    write_buffers(path, (data,))


def write_buffers(path: str, buffers: Sequence[Buffer]) -> None:
    """Write ``buffers`` (bytes, C-contiguous arrays) one after the other to ``path`` (plainly: the
    caller stages it): an image goes out from its array, without first being copied into bytes."""
    with open(path, "wb") as handle:
        handle.writelines(buffers)


def file_identity(path: str) -> tuple[str, tuple[int, int] | None, bool]:
    """(absolute path with links followed, (device, inode) of an existing file, is a character device)."""
    real = final_target(path)
    try:
        st = os.stat(real)
    except OSError:
        return real, None, False
    return real, (st.st_dev, st.st_ino), stat.S_ISCHR(st.st_mode)


def check_distinct(outputs: Sequence[tuple[str, str]], inputs: Sequence[tuple[str, str]] = ()) -> None:
    """Raise UsageError when an output (``(flag, path)``) is an input or another output.

    Paths are the same file when they resolve to the same path (symlinks followed) or, existing,
    are the same inode (hard links).  Character devices (``/dev/null``) may be named any number
    of times: writing them destroys nothing.
    """
    seen: list[tuple[str, str, str, tuple[str, tuple[int, int] | None, bool]]] = []
    for flag, path in inputs:
        if path:
            seen.append(("input", flag, path, file_identity(path)))
    for flag, path in outputs:
        if not path:
            continue
        ident = file_identity(path)
        for role, other_flag, other_path, other in seen:
            if ident[2] or other[2]:
                continue
            if ident[0] == other[0] or (ident[1] is not None and ident[1] == other[1]):
                if role == "input":
                    raise UsageError(f"{flag} {path}: the same file as the {other_flag} input {other_path} "
                                     "(an output must not overwrite an input)")
                raise UsageError(f"{flag} {path}: the same file as the {other_flag} output {other_path} "
                                 "(two outputs cannot share a file)")
        seen.append(("output", flag, path, ident))
