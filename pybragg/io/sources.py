"""Beam source lists (the reference's ``-sourcefile``)."""

from __future__ import annotations

import math
import os
import re

import numpy as np

from .errors import FormatError, describe_path, read_text, shorten

_DELIMITERS = re.compile(r"[ \t,;:!\r\n\f\v]+")
_HEX_PREFIX = re.compile(r"[+-]?0[xX](?:[0-9a-fA-F]+\.?[0-9a-fA-F]*|\.[0-9a-fA-F]+)(?:[pP][+-]?\d+)?")
_DEC_PREFIX = re.compile(
    r"[+-]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|inf(?:inity)?|nan(?:\([0-9A-Za-z_]*\))?)",
    re.IGNORECASE,
)
COLUMNS = ("X", "Y", "Z", "I", "lambda")


def c_atof_prefix(token: str) -> float | None:
    """Value of the numeric prefix of ``token`` as C's atof reads it, or None."""
    token = token.lstrip()
    match = _HEX_PREFIX.match(token)
    if match:
        text = match.group(0)
        sign = -1.0 if text.startswith("-") else 1.0
        body = text.lstrip("+-")
        if "p" not in body.lower():
            body += "p0"
        try:
            return sign * float.fromhex(body)
        except OverflowError:
            return sign * math.inf
    match = _DEC_PREFIX.match(token)
    if match:
        text = match.group(0)
        text = re.sub(r"\(.*\)$", "", text)  # nan(chars) -> nan
        return float(text)
    return None


def read_source_file(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a source list: rows of ``X Y Z I lambda`` (metres, weight, metres).

    Tokens are split on any of `` \\t,;:!``; each is read like C atof; at most five
    numbers per line are used and missing trailing columns are NaN. Blank lines
    and lines starting with '#' are skipped.
    """
    from pybragg.memory import check_allocation, format_bytes

    name = describe_path(path)
    text = read_text(path)
    # Python lists of floats take about 16 bytes of memory per byte of a short source line
    check_allocation(16.0 * len(text), f"{name}: parsing its {format_bytes(len(text))} of sources")
    rows: list[list[float]] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        tokens = [t for t in _DELIMITERS.split(line) if t]
        if not tokens or tokens[0].startswith("#"):
            continue
        row = [math.nan] * len(COLUMNS)
        for column, token in enumerate(tokens[: len(COLUMNS)]):
            value = c_atof_prefix(token)
            if value is None:
                raise FormatError(
                    f"{name}: line {lineno}: {COLUMNS[column]} is not a number: {shorten(token)}"
                )
            if not math.isfinite(value):
                raise FormatError(f"{name}: line {lineno}: {COLUMNS[column]} is not finite: {shorten(token)}")
            row[column] = value
        rows.append(row)
    if not rows:
        raise FormatError(f"{name}: no source lines found")
    return np.array(rows, dtype=np.float64)
