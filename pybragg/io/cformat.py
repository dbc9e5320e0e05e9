"""Number formatting that mimics the C library's printf."""

from __future__ import annotations

import math


def _strip_zeros(digits: str) -> str:
    """Drop trailing zeros after a decimal point, and the point if bare."""
    if "." in digits:
        digits = digits.rstrip("0").rstrip(".")
    return digits


def c_g(x: float, precision: int = 6) -> str:
    """Render ``x`` exactly as C's ``printf("%g")`` (or ``%.<precision>g``) does.

    Non-finite values give ``nan``, ``inf`` or ``-inf``.
    """
    x = float(x)
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    p = precision if precision > 0 else 1
    # Round to p significant digits first; the exponent after rounding decides
    # between fixed and exponential notation (C99 7.19.6.1).
    mantissa, exp_text = f"{x:.{p - 1}e}".split("e")
    exponent = int(exp_text)
    if -4 <= exponent < p:
        return _strip_zeros(f"{x:.{p - 1 - exponent}f}")
    sign = "-" if exponent < 0 else "+"
    return f"{_strip_zeros(mantissa)}e{sign}{abs(exponent):02d}"
