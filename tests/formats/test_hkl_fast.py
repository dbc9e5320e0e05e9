"""The fast paths of the HKL reader (pybragg.io.hkl): the plain-decimal parser, the index bounds,
the distinct indices and the coverage check give what the general code gives, bit for bit."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from pybragg.io import hkl
from pybragg.io.hkl import (
    _parse_fast,
    _parse_plain,
    _parse_slow,
    coverage_problem,
    distinct_indices,
    index_bounds,
    read_hkl,
)

INPUTS = Path(__file__).resolve().parents[2].parent / "shared" / "golden" / "inputs"


def _by_float(data: bytes) -> np.ndarray:
    """Every token of ``data`` read by ``float()``, four to a row."""
    return np.array([float(t) for t in data.split()], dtype=np.float64).reshape(-1, 4)


def _same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and np.array_equal(a.view(np.int64), b.view(np.int64))


def _general_fast(data: bytes) -> np.ndarray | None:
    """The parse the fast path had before the plain reader: NumPy's strtod over the whole text."""
    counts = [len(line.split()) for line in data.splitlines()]
    rows = sum(1 for n in counts if n)
    if rows == 0 or any(n not in (0, 4) for n in counts):
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            numbers = np.fromstring(data, dtype=np.float64, sep=" ")
        except (ValueError, DeprecationWarning):
            return None
    return numbers.reshape(rows, 4) if numbers.size == 4 * rows else None


def test_plain_decimals_read_as_float_reads_them() -> None:
    rng = np.random.default_rng(3)
    tokens = []
    for _ in range(40000):
        digits = "".join(str(d) for d in rng.integers(0, 10, int(rng.integers(1, 16))))
        cut = int(rng.integers(0, len(digits) + 2))
        token = digits if cut > len(digits) else digits[:cut] + "." + digits[cut:]
        tokens.append(str(rng.choice(["", "", "-", "+"])) + token)
    data = "\n".join(" ".join(tokens[i:i + 4]) for i in range(0, len(tokens), 4)).encode()
    table = _parse_plain(data)
    assert table is not None
    assert _same_bits(table, _by_float(data))
    assert _same_bits(table, _general_fast(data))


@pytest.mark.parametrize("text", [
    "1 2 3 4\n", "  23  15  -1   23.00\n  23  14  -1   31.39", "1\t2\t3\t4\r\n5 6 7 8\r\n", "1 2 3 4\r5 6 7 8",
    "\n\n 1 2 3 4\n\n\n5 6 7 8\n  \n", "-0 0 +0 -0.0\n", "1 2 3 .5\n", "1 2 3 5.\n", "1 2 3 0.1\n",
    "1 2 3 123456789012345\n", "1 2 3 .123456789012345\n", "0001 02 3 0000000045.5\n",
])
def test_plain_tables(text: str) -> None:
    data = text.encode()
    table = _parse_plain(data)
    assert table is not None
    assert _same_bits(table, _by_float(data))


@pytest.mark.parametrize("text", [
    "", "\n \n", "1 2 3\n", "1 2 3 4 5\n", "1 2 3\n4\n", "1 2 3 4 5 6 7 8\n", "1 2 3 1e5\n", "1 2 3 nan\n",
    "1 2 3 inf\n", "1 2 3 -\n", "1 2 3 .\n", "1 2 3 1..2\n", "1 2 3 +-4\n", "1 2 3 4-\n", "1 2 3 4\f",
    "1 2 3 4\v", "1 2 3 1234567890123456\n", "1 2 3 x\n", "1 2 3 4 # c\n", "1,2,3,4\n", "1 2 3 \xe9\n",
])
def test_not_plain_goes_the_general_way(text: str) -> None:
    assert _parse_plain(text.encode("latin-1")) is None


def test_fast_parse_agrees_with_the_line_parser() -> None:
    rng = np.random.default_rng(11)
    for _ in range(300):
        rows = int(rng.integers(1, 40))
        idx = rng.integers(-60, 61, size=(rows, 3))
        f = rng.uniform(0, 1000, rows)
        lines = [f"{h:4d}{k:4d}{l_:4d} {v:{int(rng.integers(6, 14))}.{int(rng.integers(0, 6))}f}"
                 for (h, k, l_), v in zip(idx, f, strict=True)]
        data = ("\n".join(lines) + "\n").encode()
        fast = _parse_fast(data)
        slow = _parse_slow("x", data.decode().splitlines())
        assert fast is not None
        assert np.array_equal(fast[0], slow[0]) and fast[0].dtype == slow[0].dtype
        assert _same_bits(fast[1], slow[1])


@pytest.mark.skipif(not INPUTS.is_dir(), reason="reference files in ../shared/golden not available")
@pytest.mark.parametrize("name", ["scaled.hkl", "cubic6.hkl", "hex.hkl", "sparse.hkl", "tri8.hkl"])
def test_golden_tables_parse_as_before(name: str) -> None:
    data = (INPUTS / name).read_bytes()
    general = _general_fast(data)
    plain = _parse_plain(data)
    if general is not None and plain is not None:
        assert _same_bits(plain, general)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = read_hkl(INPUTS / name)
    slow_idx, slow_val = _parse_slow(name, data.decode().splitlines())
    rebuilt = hkl.table_from_arrays(slow_idx, slow_val, 0.0, name)
    assert np.array_equal(table.F.view(np.int64), rebuilt.F.view(np.int64))
    assert (table.h_min, table.k_min, table.l_min, table.count) == (
        rebuilt.h_min, rebuilt.k_min, rebuilt.l_min, rebuilt.count)


def _coverage_by_rows(idx: np.ndarray) -> str | None:
    """The coverage rule written plainly (row reductions, a 3-D mask, np.unique)."""
    idx = np.asarray(idx, dtype=np.int64)
    nonzero = idx[np.any(idx != 0, axis=1)]
    if len(nonzero) < hkl.COVERAGE_MIN_REFLECTIONS:
        return None
    lo = idx.min(axis=0)
    shape = idx.max(axis=0) - lo + 1
    present = np.zeros(tuple(int(n) for n in shape), dtype=bool)
    present[tuple((idx - lo).T)] = True
    mates = -nonzero - lo
    inside = np.all((mates >= 0) & (mates < shape), axis=1)
    has_mate = np.zeros(len(nonzero), dtype=bool)
    has_mate[inside] = present[tuple(mates[inside].T)]
    fraction = float(has_mate.mean())
    if fraction < 0.5:
        return (f"only {100 * fraction:.0f}% of its reflections have their Friedel mate (-h -k -l): it looks like "
                "an asymmetric unit or a Friedel half")
    general = nonzero[np.all(nonzero != 0, axis=1)]
    if len(general) >= hkl.COVERAGE_MIN_REFLECTIONS:
        octant = (general[:, 0] > 0) * 4 + (general[:, 1] > 0) * 2 + (general[:, 2] > 0)
        filled = np.unique(octant).size
        if filled < 8:
            return f"its reflections fill only {filled} of the 8 octants of h, k, l: it looks like an asymmetric unit"
    return None


def test_index_functions_agree_with_row_reductions() -> None:
    rng = np.random.default_rng(5)
    kinds = {None: 0, "mate": 0, "octant": 0}
    for trial in range(1500):
        span = int(rng.choice([1, 2, 3, 5, 10, 40]))
        idx = rng.integers(-span, span + 1, size=(int(rng.integers(1, 300)), 3))
        if trial % 3 == 0:
            idx = np.concatenate([idx, -idx])
        if trial % 5 == 0:
            idx = np.abs(idx)
        if trial % 7 == 0:
            idx[:, int(rng.integers(0, 3))] = 0
        lo, hi = index_bounds(idx)
        assert np.array_equal(lo, idx.min(axis=0)) and lo.dtype == np.int64
        assert np.array_equal(hi, idx.max(axis=0)) and hi.dtype == np.int64
        distinct = distinct_indices(idx)
        expected = np.unique(idx, axis=0)
        assert np.array_equal(distinct, expected) and distinct.dtype == expected.dtype
        sparse = idx * 97  # a box too sparse for a mask: the distinct rows by a sort
        assert np.array_equal(distinct_indices(sparse), np.unique(sparse, axis=0))
        problem = coverage_problem(distinct)
        assert problem == _coverage_by_rows(distinct)
        kinds[None if problem is None else "mate" if "mate" in problem else "octant"] += 1
    assert all(kinds.values()), kinds  # every outcome was seen


def test_distinct_indices_of_a_sparse_box_sorts() -> None:
    idx = np.array([[1000, -1000, 7], [-1000, 1000, 7], [1000, -1000, 7], [0, 0, 0]])
    assert np.array_equal(distinct_indices(idx), np.unique(idx, axis=0))


def test_read_hkl_warns_as_the_coverage_rule_says(tmp_path: Path) -> None:
    rng = np.random.default_rng(9)
    said = set()
    for trial in range(120):
        span = int(rng.choice([2, 4, 8]))
        idx = rng.integers(-span, span + 1, size=(int(rng.integers(5, 400)), 3))
        if trial % 2:
            idx = np.concatenate([idx, -idx])
        if trial % 3 == 0:
            idx = np.abs(idx)
        if trial % 5 == 0:
            idx = idx[idx[:, 0] >= 0]
        if trial % 7 == 0:  # Friedel pairs in two octants
            idx = np.concatenate([np.abs(idx), -np.abs(idx)])
        path = tmp_path / f"t{trial}.hkl"
        path.write_text("".join(f"{h} {k} {l_} {1 + i % 7}.5\n" for i, (h, k, l_) in enumerate(idx)))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            read_hkl(path)
        problem = _coverage_by_rows(np.unique(idx, axis=0))
        messages = [str(w.message) for w in caught if issubclass(w.category, hkl.HKLWarning)]
        if problem is None:
            assert messages == []
        else:
            assert len(messages) == 1 and f"covers only part of the sphere: {problem};" in messages[0]
        said.add(None if problem is None else problem.split()[0])
    assert len(said) == 3, said  # no warning, too few mates, too few octants
