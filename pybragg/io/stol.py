"""Amorphous structure-factor tables (``.stol``): sin(theta)/lambda against F of one molecule.

The format of nanoBragg's repository (``water.stol``, ``air.stol``): one point per line, two
numbers separated by blanks (or ``,`` ``;`` ``:``), sin(theta)/lambda in 1/Å (or 4 sin(theta)/lambda
for ``-4stol``, Q = 4 pi sin(theta)/lambda for ``-Q``) and the structure factor of one molecule in
electrons.  Blank lines are skipped.  Anything else is refused with one line naming the file and the
line: a comment or a third column (the reference reads such lines as NaN and silently zeroes them),
a value that is not a finite number, an empty table, or abscissae that do not strictly increase.

``water`` and ``air`` name the tables shipped in ``pybragg/data`` (nanoBragg's own, MIT licence).
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from pybragg.io.errors import FormatError, describe_path, read_text, shorten

if TYPE_CHECKING:
    from pathlib import Path

#: tables shipped with pybragg, by name
SHIPPED = ("water", "air")

#: how the first column becomes sin(theta)/lambda in 1/m, per flag
SCALES = {"stol": 1e10, "4stol": 1e10 / 4, "Q": 1e10 / math.pi / 4}

#: largest |sin(theta)/lambda| and |F| accepted (the background squares F)
MAX_VALUE = 1e100

_SPLIT = re.compile(r"[\s,;:]+")


@dataclass(frozen=True)
class StolTable:
    """A table ready for the engines: ``stol`` in 1/m (strictly increasing), ``F`` in electrons."""

    stol: np.ndarray
    F: np.ndarray
    source: str = ""

    def __post_init__(self) -> None:
        from pybragg.errors import UsageError  # a PybraggError, and still a ValueError

        stol = np.ascontiguousarray(self.stol, dtype=np.float64)
        F = np.ascontiguousarray(self.F, dtype=np.float64)
        if stol.ndim != 1 or stol.shape != F.shape or stol.size == 0:
            raise UsageError("a stol table needs two equal, non-empty 1-D arrays")
        if not (np.isfinite(stol).all() and np.isfinite(F).all()):
            raise UsageError("a stol table must hold finite numbers")
        if stol.size > 1 and not (np.diff(stol) > 0).all():
            raise UsageError("a stol table's sin(theta)/lambda must strictly increase")
        object.__setattr__(self, "stol", stol)
        object.__setattr__(self, "F", F)


def shipped_path(name: str) -> Path:
    """The file of a shipped table (``water``, ``air``)."""
    from pathlib import Path  # here: pathlib costs some 5 ms of the command's start-up

    return Path(__file__).resolve().parent.parent / "data" / f"{name}.stol"


def resolve_path(name_or_path: str | os.PathLike[str]) -> str:
    """A path as given, or the shipped table for a bare name (``water``, ``air``) that is not a file."""
    text = os.fspath(name_or_path)
    if text in SHIPPED and not os.path.exists(text):
        return str(shipped_path(text))
    return text


def parse_stol(text: str, where: str) -> tuple[np.ndarray, np.ndarray]:
    """The two columns of a ``.stol`` text as typed (first column unscaled)."""
    xs: list[float] = []
    ys: list[float] = []
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip(" \t,;:!\r\n")
        if not stripped:
            continue
        tokens = [t for t in _SPLIT.split(stripped) if t]
        values: list[float] = []
        for token in tokens:
            try:
                value = float(token)
            except ValueError:
                value = math.nan
            values.append(value)
        if len(values) != 2 or not all(math.isfinite(v) for v in values):
            raise FormatError(f"{where}: line {number} is not two finite numbers "
                              f"(sin(theta)/lambda and F): {shorten(line.strip())!r}")
        if max(abs(values[0]), abs(values[1])) > MAX_VALUE:
            raise FormatError(f"{where}: line {number}: a value larger than {MAX_VALUE:g} (its square "
                              f"overflows): {shorten(line.strip())!r}")
        xs.append(values[0])
        ys.append(values[1])
    if not xs:
        raise FormatError(f"{where}: no data (a stol table needs lines of sin(theta)/lambda and F)")
    stol = np.array(xs)
    bad = np.flatnonzero(np.diff(stol) <= 0)
    if bad.size:
        raise FormatError(f"{where}: sin(theta)/lambda must strictly increase, but point {bad[0] + 2} "
                          f"({stol[bad[0] + 1]:g}) follows {stol[bad[0]]:g}")
    return stol, np.array(ys)


def read_stol(path: str | os.PathLike[str], scale: float = 1e10) -> StolTable:
    """Read a ``.stol`` file (or a shipped table's name); ``scale`` turns column 1 into 1/m."""
    real = resolve_path(path)
    where = describe_path(path)
    stol, F = parse_stol(read_text(real), where)
    return StolTable(stol * scale, F, real)
