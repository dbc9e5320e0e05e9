"""The memory rule: every allocation that grows with the input is checked before it is made.

The limit is the smaller of the machine's available memory (``MemAvailable`` in
``/proc/meminfo``, else physical memory), the process's address-space limit
(``RLIMIT_AS``, as ``ulimit -v`` or ``resource.setrlimit`` set it, less what the process
already uses) and ``PYBRAGG_MEMORY_LIMIT`` (bytes, or with a suffix K, M, G, T: a cap for
tests and shared machines).  :func:`check_allocation` refuses an allocation over it with a
:class:`~pybragg.errors.ResourceLimitError` that names what asked for it (a flag or a file)
and the size it would need.
"""

from __future__ import annotations

import os

from pybragg.errors import ResourceLimitError

_SUFFIX = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def format_bytes(n: float) -> str:
    """``n`` bytes as a short human-readable size (binary units)."""
    for unit, scale in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{int(n)} bytes"


def _env_limit() -> int | None:
    text = os.environ.get("PYBRAGG_MEMORY_LIMIT", "").strip().upper().removesuffix("B").removesuffix("I")
    if not text:
        return None
    suffix = text[-1] if text[-1] in _SUFFIX else ""
    try:
        value = float(text[: len(text) - len(suffix)] if suffix else text)
    except ValueError:
        raise ResourceLimitError(f"PYBRAGG_MEMORY_LIMIT: not a size: {os.environ['PYBRAGG_MEMORY_LIMIT']!r}") from None
    if not value > 0:
        raise ResourceLimitError("PYBRAGG_MEMORY_LIMIT: must be positive")
    return int(value * _SUFFIX[suffix])


def _machine_available() -> int:
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 1 << 62


def _address_space_left() -> int | None:
    try:
        import resource
    except ImportError:  # not on POSIX
        return None
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft == resource.RLIM_INFINITY:
        return None
    used = 0
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            used = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        pass
    return max(0, soft - used)


def available_bytes() -> int:
    """The most bytes one allocation may take now (see the module's docstring)."""
    limits = [_machine_available()]
    for extra in (_address_space_left(), _env_limit()):
        if extra is not None:
            limits.append(extra)
    return min(limits)


def check_allocation(nbytes: float, what: str, limit: int | None = None) -> None:
    """Refuse an allocation of ``nbytes`` for ``what`` (a flag or file) over ``limit``.

    ``limit`` defaults to :func:`available_bytes`.  The message reads, for example,
    ``-hkl big.hkl: the structure-factor grid 1401 x 1401 x 1401 needs 20.5 GiB, more than
    the 12.0 GiB available`` when ``what`` is ``"-hkl big.hkl: the structure-factor grid
    1401 x 1401 x 1401"``.
    """
    limit = available_bytes() if limit is None else limit
    if nbytes > limit:
        raise ResourceLimitError(f"{what} needs {format_bytes(nbytes)}, more than the {format_bytes(limit)} available")
