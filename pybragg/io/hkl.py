"""Structure-factor tables: text ``h k l F`` files and the binary Fdump cache."""

from __future__ import annotations

import math
import os
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pybragg.memory import check_allocation, format_bytes

from .errors import MAX_LINE_BYTES, FormatError, describe_path, read_bytes, shorten

#: largest |h|, |k|, |l| accepted: the engine's index fields are C ints
MAX_INDEX = 2**31 - 1
#: largest |F| accepted: F^2 times any scale of the image stays finite
MAX_F = 1e100
#: copies of the dense grid a render holds at once (the table, the engine's copy of it)
GRID_COPIES = 2
#: bytes of memory the text parse takes per byte of the file (the numbers, the lines' list, copies)
PARSE_BYTES_PER_BYTE = 16


@dataclass(frozen=True, eq=False)
class HKLTable:
    """Structure-factor amplitudes on a dense Miller-index grid.

    ``F[h - h_min, k - k_min, l - l_min]`` is the amplitude of reflection
    ``(h, k, l)``; ``count`` is how many entries came from the source file.
    """

    F: np.ndarray
    h_min: int
    k_min: int
    l_min: int
    count: int

    def __post_init__(self) -> None:
        from pybragg.errors import UsageError

        try:
            grid = np.ascontiguousarray(self.F, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise UsageError(f"HKLTable.F must be an array of numbers: {exc}") from None
        if grid.ndim != 3 or 0 in grid.shape:
            raise UsageError(f"HKLTable.F must be a non-empty 3-D array, got shape {grid.shape}")
        bad = bad_amplitudes(grid)
        if bad:
            raise UsageError(f"HKLTable.F: {bad}")
        object.__setattr__(self, "F", grid)
        for name in ("h_min", "k_min", "l_min", "count"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise UsageError(f"HKLTable.{name} must be an integer, got {value!r}")
            object.__setattr__(self, name, int(value))
        for name, n in zip(("h_min", "k_min", "l_min"), grid.shape):
            lo = getattr(self, name)
            if not (-MAX_INDEX <= lo and lo + n - 1 <= MAX_INDEX):
                raise UsageError(f"HKLTable.{name}: the indices {lo}..{lo + n - 1} pass the engine's range "
                                 f"(|index| <= {MAX_INDEX})")

    @property
    def h_max(self) -> int:
        """Largest h index in the table."""
        return self.h_min + self.F.shape[0] - 1

    @property
    def k_max(self) -> int:
        """Largest k index in the table."""
        return self.k_min + self.F.shape[1] - 1

    @property
    def l_max(self) -> int:
        """Largest l index in the table."""
        return self.l_min + self.F.shape[2] - 1


def bad_amplitudes(F: np.ndarray) -> str | None:
    """Why amplitudes ``F`` cannot be rendered (a NaN, an infinity, |F| > :data:`MAX_F`), or None."""
    values = np.asarray(F, dtype=np.float64)
    finite = np.isfinite(values)
    if not finite.all():
        return f"{int(values.size - finite.sum())} structure factors are not finite (NaN or infinite)"
    big = np.abs(values) > MAX_F
    if big.any():
        return (f"{int(big.sum())} structure factors have |F| > {MAX_F:g} (the largest {float(np.abs(values).max()):g}): "
                "their squares overflow")
    return None


def _index(token: str) -> int | None:
    """Integer value of an index token ("3" or "3.0"), or None if not integral."""
    value = float(token)
    if not math.isfinite(value) or value != math.floor(value):
        return None
    return int(value)


#: most digits of a number :func:`_parse_plain` reads: its digits as one integer are exact in float64
_PLAIN_DIGITS = 15
#: exact powers of ten (``float(10**k)`` is exact up to k = 22)
_POW10 = np.array([float(10**k) for k in range(_PLAIN_DIGITS + 1)])


def _parse_plain(data: bytes) -> np.ndarray | None:
    """``(rows, 4)`` float64 of a text of plain decimals (``-12``, ``3.25``, ``+.5``: a sign, at most
    15 digits and one point), four on every non-blank line, spaces and tabs between them; None for
    anything else (an exponent, ``nan``, any other character, a line of other than four numbers).

    A number is its digits read as one integer ``M`` (exact: below 2**53) divided by ``10**d`` for
    its ``d`` decimals (exact): one correctly rounded division gives the double nearest the decimal,
    the value ``float()`` and ``strtod`` read.
    """
    text = np.frombuffer(data, dtype=np.uint8)
    n = len(text)
    digit = (text - np.uint8(48)) <= 9
    point = text == ord(".")
    sign = (text == ord("-")) | (text == ord("+"))
    word = digit | point | sign
    if n == 0 or not (word | (text == ord(" ")) | (text == ord("\t")) | (text == ord("\n"))
                      | (text == ord("\r"))).all():
        return None
    padded = np.zeros(n + 2, dtype=bool)  # the text's number bytes, a blank either side
    padded[1:-1] = word
    edges = np.flatnonzero(padded[1:] != padded[:-1])
    starts, ends = edges[0::2], edges[1::2]
    count = len(starts)
    if count == 0:
        return None
    # every line holds none or four: the numbers before each line end, line by line
    eol = np.flatnonzero((text == ord("\n")) | (text == ord("\r")))
    per_line = np.diff(np.searchsorted(starts, eol), prepend=0, append=count)
    if not ((per_line == 0) | (per_line == 4)).all():
        return None
    # a sign only as a number's first byte, at most one point, 1 to 15 digits
    signed = sign[starts]
    if int(np.count_nonzero(signed)) != int(np.count_nonzero(sign)):
        return None
    points = np.flatnonzero(point)
    owner = np.searchsorted(starts, points, side="right") - 1
    if len(owner) > 1 and not (owner[1:] > owner[:-1]).all():
        return None
    digits = ends - starts - signed
    digits[owner] -= 1
    if digits.min() < 1 or digits.max() > _PLAIN_DIGITS:
        return None
    decimals = np.zeros(count, dtype=np.int64)
    decimals[owner] = ends[owner] - points - 1
    # the digits, the power of ten of each within its number, summed number by number (exactly:
    # every partial sum is an integer below 2**53)
    stop = np.cumsum(digits)
    values = text[digit].astype(np.float64)
    values -= 48.0
    values *= _POW10[np.repeat(stop - 1, digits) - np.arange(int(stop[-1]))]
    mantissa = np.add.reduceat(values, stop - digits)
    mantissa /= _POW10[decimals]
    np.negative(mantissa, out=mantissa, where=text[starts] == ord("-"))
    return mantissa.reshape(-1, 4)


def _parse_fast(data: bytes) -> tuple[np.ndarray, np.ndarray] | None:
    """Vectorised parse when every non-blank line holds exactly four numbers;
    None if anything needs a closer look."""
    table = _parse_plain(data)
    if table is None:
        counts = [len(line.split()) for line in data.splitlines()]
        rows = sum(1 for n in counts if n)
        if rows == 0 or any(n not in (0, 4) for n in counts):
            return None
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error")  # a token that is not a number stops the parse early
                numbers = np.fromstring(data, dtype=np.float64, sep=" ")
        except (ValueError, DeprecationWarning):
            return None
        if numbers.size != 4 * rows:
            return None
        table = numbers.reshape(rows, 4)
    hkl = table[:, :3]
    if not (np.isfinite(table).all() and (hkl == np.floor(hkl)).all()):
        return None
    if not ((np.abs(hkl) <= MAX_INDEX).all() and (np.abs(table[:, 3]) <= MAX_F).all()):
        return None  # the slow parse names the line
    return hkl.astype(np.int64), table[:, 3].copy()


def _parse_slow(name: str, lines: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Line-by-line parse that reports the first bad line."""
    indices: list[tuple[int, int, int]] = []
    values: list[float] = []
    for lineno, line in enumerate(lines, start=1):
        tokens = line.split()
        if not tokens:
            continue
        try:
            numbers = [float(t) for t in tokens[:4]]
        except ValueError:
            numbers = []
        if len(numbers) < 4:
            raise FormatError(f"{name}: line {lineno}: expected 'h k l F', got {shorten(line.strip())}")
        h, k, l_ = (_index(t) for t in tokens[:3])
        if h is None or k is None or l_ is None:
            raise FormatError(
                f"{name}: line {lineno}: Miller indices must be integers, got {shorten(' '.join(tokens[:3]))}"
            )
        if not math.isfinite(numbers[3]):
            raise FormatError(f"{name}: line {lineno}: structure factor is not finite: {shorten(tokens[3])}")
        if max(abs(h), abs(k), abs(l_)) > MAX_INDEX:
            raise FormatError(f"{name}: line {lineno}: Miller index out of range (|h|, |k|, |l| <= {MAX_INDEX}): "
                              f"{shorten(' '.join(tokens[:3]))}")
        if abs(numbers[3]) > MAX_F:
            raise FormatError(f"{name}: line {lineno}: |F| is larger than {MAX_F:g} (its square overflows): "
                              f"{shorten(tokens[3])}")
        indices.append((h, k, l_))
        values.append(numbers[3])
    if not indices:
        raise FormatError(f"{name}: no reflections found")
    return np.array(indices, dtype=np.int64), np.array(values, dtype=np.float64)


class HKLWarning(UserWarning):
    """A structure-factor table that reads but probably does not say what its user meant."""


#: the fewest reflections a table needs before its coverage of the sphere is judged
COVERAGE_MIN_REFLECTIONS = 20


def index_bounds(idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The smallest and the largest h, k, l of ``idx`` (n, 3) int64: ``idx.min(axis=0)`` and
    ``idx.max(axis=0)``, column by column (some 10 times faster than a reduction along the short axis)."""
    columns = range(idx.shape[1])
    return (np.array([idx[:, i].min() for i in columns], dtype=np.int64),
            np.array([idx[:, i].max() for i in columns], dtype=np.int64))


def distinct_indices(idx: np.ndarray) -> np.ndarray:
    """The distinct rows of ``idx`` (n, 3), sorted: ``np.unique(idx, axis=0)`` through flat indices,
    marked in a mask of the index box where that is at most a few bytes per row (else sorted: a
    1-D sort of integers, some 30 times faster than the row sort for a table of 64 000)."""
    idx = np.asarray(idx, dtype=np.int64).reshape(-1, 3)
    lo, hi = index_bounds(idx)
    shape = tuple(int(n) for n in hi - lo + 1)
    flat = np.ravel_multi_index(tuple((idx - lo).T), shape)
    if math.prod(shape) <= 8 * len(flat) + (1 << 20):
        seen = np.zeros(math.prod(shape), dtype=bool)
        seen[flat] = True
        flat = np.flatnonzero(seen)
    else:
        flat = np.unique(flat)
    return np.stack(np.unravel_index(flat, shape), axis=1) + lo


def coverage_problem(idx: np.ndarray) -> str | None:
    """Why a table of distinct indices ``idx`` (n, 3) covers only part of reciprocal space, or None.

    A table expanded to P1 holds every reflection's Friedel mate and reaches every octant of
    index space; an asymmetric unit or a Friedel half does not (mates of centric reflections
    aside), and pixels whose reflections are missing get ``-default_F``.  It takes a mask of the
    indices' box (as :func:`read_hkl` has the table's grid).
    """
    idx = np.asarray(idx, dtype=np.int64)
    zero = idx == 0
    if len(idx) - np.count_nonzero(zero[:, 0] & zero[:, 1] & zero[:, 2]) < COVERAGE_MIN_REFLECTIONS:
        return None
    lo, hi = index_bounds(idx)
    dims = tuple(int(n) for n in hi - lo + 1)
    present = np.zeros(math.prod(dims), dtype=bool)
    present[np.ravel_multi_index(tuple((idx - lo).T), dims)] = True
    return _box_coverage(present.reshape(dims), lo)


def _box_coverage(present: np.ndarray, lo: Sequence[int]) -> str | None:
    """:func:`coverage_problem` of the reflections marked in ``present``, a box of booleans whose
    first cell is index ``lo``: the Friedel mates and the octants counted in slices of the box."""
    lo = [int(x) for x in lo]
    size = present.shape
    hi = [low + n - 1 for low, n in zip(lo, size)]
    inside = all(low <= 0 <= high for low, high in zip(lo, hi))
    origin = int(bool(present[tuple(-low for low in lo)])) if inside else 0
    nonzero = int(np.count_nonzero(present)) - origin
    if nonzero < COVERAGE_MIN_REFLECTIONS:
        return None
    # the indices whose mate -h -k -l also lies in the box, against those mates (the box reversed)
    first = [max(low, -high) for low, high in zip(lo, hi)]
    last = [min(high, -low) for low, high in zip(lo, hi)]
    paired = 0
    if all(f <= g for f, g in zip(first, last)):
        cells = present[tuple(slice(f - low, g - low + 1) for f, g, low in zip(first, last, lo))]
        mates = present[tuple(slice(-g - low, -f - low + 1) for f, g, low in zip(first, last, lo))][::-1, ::-1, ::-1]
        paired = int(np.count_nonzero(cells & mates)) - origin
    fraction = paired / nonzero
    if fraction < 0.5:
        return (f"only {100 * fraction:.0f}% of its reflections have their Friedel mate (-h -k -l): it looks like "
                "an asymmetric unit or a Friedel half")
    halves = [(slice(0, max(0, min(n, -low))), slice(max(0, 1 - low), n)) for low, n in zip(lo, size)]
    octants = [int(np.count_nonzero(present[h, k, l_])) for h in halves[0] for k in halves[1] for l_ in halves[2]]
    if sum(octants) >= COVERAGE_MIN_REFLECTIONS:
        filled = sum(1 for n in octants if n)
        if filled < 8:
            return f"its reflections fill only {filled} of the 8 octants of h, k, l: it looks like an asymmetric unit"
    return None


def table_from_arrays(idx: np.ndarray, values: np.ndarray, default_F: float = 0.0,
                      name: str = "the structure-factor table") -> HKLTable:
    """A dense table of reflections ``idx`` (n, 3) and amplitudes ``values``; later duplicates win,
    cells missing from the list hold ``default_F``.

    ``name`` (the file) starts the messages: amplitudes that are not finite or exceed :data:`MAX_F`
    and indices beyond :data:`MAX_INDEX` are a :class:`FormatError`; a dense grid larger than the
    memory rule allows a :class:`~pybragg.errors.ResourceLimitError`, before it is allocated.
    """
    return _dense_table(idx, values, default_F, name)[0]


def _dense_table(idx: np.ndarray, values: np.ndarray, default_F: float = 0.0,
                 name: str = "the structure-factor table") -> tuple[HKLTable, np.ndarray]:
    """:func:`table_from_arrays` and the sorted flat indices (into ``F``) of its distinct reflections."""
    idx = np.asarray(idx, dtype=np.int64).reshape(-1, 3)
    values = np.asarray(values, dtype=np.float64).ravel()
    if len(idx) == 0:
        raise FormatError(f"{name}: no reflections found")
    bad = bad_amplitudes(values)
    if bad:
        raise FormatError(f"{name}: {bad}")
    if not math.isfinite(default_F) or abs(default_F) > MAX_F:
        raise FormatError(f"{name}: -default_F {default_F:g} is not finite or larger than {MAX_F:g}")
    lo, hi = index_bounds(idx)
    if (np.abs(lo) > MAX_INDEX).any() or (np.abs(hi) > MAX_INDEX).any():
        raise FormatError(f"{name}: Miller indices out of range (|h|, |k|, |l| <= {MAX_INDEX}): "
                          f"h {lo[0]}..{hi[0]}, k {lo[1]}..{hi[1]}, l {lo[2]}..{hi[2]}")
    shape = tuple(int(h) - int(low) + 1 for h, low in zip(hi, lo))
    check_allocation(GRID_COPIES * 8.0 * shape[0] * shape[1] * shape[2],
                     f"{name}: the structure-factor grid {shape[0]} x {shape[1]} x {shape[2]} "
                     f"(h {lo[0]}..{hi[0]}, k {lo[1]}..{hi[1]}, l {lo[2]}..{hi[2]}; float64, with the "
                     "engine's copy)")
    flat = np.ravel_multi_index(tuple((idx - lo).T), shape)
    # keep the last occurrence of every reflection
    distinct, first_from_end = np.unique(flat[::-1], return_index=True)
    keep = len(flat) - 1 - first_from_end
    grid = np.full(shape, float(default_F), dtype=np.float64)
    grid.flat[flat[keep]] = values[keep]
    return HKLTable(F=grid, h_min=int(lo[0]), k_min=int(lo[1]), l_min=int(lo[2]), count=len(keep)), distinct


def read_hkl(path: str | os.PathLike[str], default_F: float = 0.0, warn: bool = True) -> HKLTable:
    """Read a text ``h k l F`` file into a dense table.

    Blank lines are skipped, columns after F are ignored, later duplicates win,
    and grid cells missing from the file hold ``default_F``. ``count`` is the
    number of distinct reflections in the file.  With ``warn``, an :class:`HKLWarning`
    says when the table covers only part of the sphere (see :func:`coverage_problem`).
    """
    name = describe_path(path)
    data = read_bytes(path, max_line=MAX_LINE_BYTES)
    check_allocation(PARSE_BYTES_PER_BYTE * len(data), f"{name}: parsing its {format_bytes(len(data))} of text")
    parsed = _parse_fast(data)
    if parsed is not None:
        idx, values = parsed
    else:
        idx, values = _parse_slow(name, data.decode("utf-8", errors="replace").splitlines())
    del data
    table, distinct = _dense_table(idx, values, default_F, name)
    if warn:
        present = np.zeros(table.F.shape, dtype=bool)
        present.flat[distinct] = True
        problem = _box_coverage(present, (table.h_min, table.k_min, table.l_min))
        if problem:
            warnings.warn(HKLWarning(
                f"{name}: the table covers only part of the sphere: {problem}; reflections missing from it get "
                f"-default_F {default_F:g} (expand it to P1, or give an MTZ or mmCIF file, which pybragg expands)"
            ), stacklevel=2)
    return table


_FDUMP_HEADER = re.compile(
    rb"\s*([+-]?\d+)\s+([+-]?\d+)\s+([+-]?\d+)\s+([+-]?\d+)\s+([+-]?\d+)\s+([+-]?\d+)\s*"
)


def read_fdump(path: str | os.PathLike[str]) -> HKLTable:
    """Read a reference ``Fdump.bin`` cache (header, form feed, padded float64 grid)."""
    name = describe_path(path)
    raw = read_bytes(path)
    ff = raw.find(b"\f", 0, 256)
    match = _FDUMP_HEADER.fullmatch(raw[:ff]) if ff >= 0 else None
    if match is None:
        head = raw[: max(ff, 0) or 40].decode("latin-1")
        raise FormatError(
            f"{name}: bad Fdump header: expected 'h_min h_max k_min k_max l_min l_max' "
            f"then a form feed, "
            f"got {shorten(head)}"
        )
    h_min, h_max, k_min, k_max, l_min, l_max = (int(g) for g in match.groups())
    if max(abs(h_min), abs(h_max), abs(k_min), abs(k_max), abs(l_min), abs(l_max)) > MAX_INDEX:
        raise FormatError(f"{name}: bad Fdump header: Miller indices out of range (|index| <= {MAX_INDEX}): "
                          f"h {h_min}..{h_max}, k {k_min}..{k_max}, l {l_min}..{l_max}")
    if h_max < h_min or k_max < k_min or l_max < l_min:
        raise FormatError(
            f"{name}: bad Fdump header: negative index range "
            f"h {h_min}..{h_max}, k {k_min}..{k_max}, l {l_min}..{l_max}"
        )
    shape = (h_max - h_min + 2, k_max - k_min + 2, l_max - l_min + 2)
    need = shape[0] * shape[1] * shape[2] * 8
    data = raw[ff + 1 :]
    if len(data) < need:
        raise FormatError(
            f"{name}: truncated: header says {shape[0]}x{shape[1]}x{shape[2]} "
            f"float64 values "
            f"({need} bytes) but only {len(data)} data bytes follow"
        )
    padded = np.frombuffer(data, dtype="<f8", count=need // 8).reshape(shape)
    grid = padded[:-1, :-1, :-1].astype(np.float64)
    bad = bad_amplitudes(grid)
    if bad:
        raise FormatError(f"{name}: {bad} (the HKL reader refuses them too; delete the file or give -hkl)")
    return HKLTable(F=grid, h_min=h_min, k_min=k_min, l_min=l_min, count=grid.size)


def write_fdump(path: str | os.PathLike[str], table: HKLTable) -> None:
    """Write ``table`` in the reference's ``Fdump.bin`` layout (zero-padded grid), atomically.

    The grid is written one h plane at a time, so that the cache of a large table takes one
    plane of memory, not copies of the whole grid.
    """
    from .atomic import commit_files

    header = (
        f"{table.h_min} {table.h_max} {table.k_min} {table.k_max} {table.l_min} {table.l_max}\n\f"
    ).encode("ascii")
    nh, nk, nl = table.F.shape

    def write(tmp: str) -> None:
        plane = np.zeros((nk + 1, nl + 1), dtype="<f8")
        with open(tmp, "wb") as handle:
            handle.write(header)
            for h in range(nh):
                plane[:nk, :nl] = table.F[h]
                handle.write(plane.tobytes())
            plane[:] = 0.0
            handle.write(plane.tobytes())

    commit_files([(os.fspath(path), write)])
