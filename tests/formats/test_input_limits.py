"""Readers under the hardening rules of issue 10: every value range-checked, every size under the memory rule.

A table, a file or a detector that would not fit is refused before it is allocated, with one line naming
the file (and the index ranges or the size it would need); NaN, infinities and amplitudes whose squares
overflow are refused by every structure-factor reader alike (text, Fdump cache, mmCIF).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest

from pybragg.errors import PybraggError, ResourceLimitError, UsageError
from pybragg.io.errors import FormatError, read_bytes, read_text
from pybragg.io.hkl import HKLTable, read_fdump, read_hkl, table_from_arrays, write_fdump
from pybragg.io.matrix import read_mosflm_matrix
from pybragg.io.stol import read_stol


def _write(path: Path, text: str | bytes) -> Path:
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


# ---------------------------------------------------------------------------- class 2: sizes


def test_dense_hkl_grid_is_checked_before_it_is_allocated(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("PYBRAGG_MEMORY_LIMIT", "64M")
    path = _write(tmp_path / "wide.hkl", "-200 -200 -200 10\n200 200 200 10\n")
    with pytest.raises(ResourceLimitError) as info:
        read_hkl(path, warn=False)
    message = str(info.value)
    assert str(path) in message and "401 x 401 x 401" in message and "h -200..200" in message
    assert "needs 983.9 MiB" in message and "64.0 MiB available" in message and "\n" not in message


def test_a_small_grid_still_reads_under_the_same_limit(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("PYBRAGG_MEMORY_LIMIT", "64M")
    table = read_hkl(_write(tmp_path / "ok.hkl", "-5 -5 -5 10\n5 5 5 20\n"), warn=False)
    assert table.F.shape == (11, 11, 11) and table.F[-1, -1, -1] == 20


@pytest.mark.parametrize("text, where", [
    ("99999999999999999999 0 0 1\n", "Miller index out of range"),   # >= 2^63: no int64 overflow
    ("1 0 0 1\n0 2147483648 0 1\n", "line 2: Miller index out of range"),
    ("1 0 0 1e308\n-1 0 0 1\n", "|F| is larger than 1e+100"),
    ("1 0 0 -1e101\n", "line 1: |F| is larger"),
    ("1 0 0 nan\n", "line 1: structure factor is not finite"),
    ("1 0 0 inf\n", "line 1: structure factor is not finite"),
])
def test_hkl_values_out_of_range_name_the_line(tmp_path, text, where) -> None:
    path = _write(tmp_path / "bad.hkl", text)
    with pytest.raises(FormatError) as info:
        read_hkl(path, warn=False)
    assert str(path) in str(info.value) and where in str(info.value)


def test_dev_zero_is_refused_quickly_as_a_text_table() -> None:
    start = time.perf_counter()
    with pytest.raises(FormatError, match=r"/dev/zero: a line is longer than 1.0 MiB"):
        read_hkl("/dev/zero")
    assert time.perf_counter() - start < 10


def test_endless_stream_without_lines_is_bounded_by_the_memory_rule(monkeypatch) -> None:
    monkeypatch.setenv("PYBRAGG_MEMORY_LIMIT", "8M")
    with pytest.raises(ResourceLimitError, match=r"/dev/zero: the file is larger than the 8.0 MiB"):
        read_bytes("/dev/zero")


def test_regular_file_larger_than_the_limit_is_refused_before_reading(tmp_path, monkeypatch) -> None:
    path = _write(tmp_path / "big.txt", b"0 0 0 1\n" * 4096)
    monkeypatch.setenv("PYBRAGG_MEMORY_LIMIT", "1K")
    with pytest.raises(ResourceLimitError) as info:
        read_text(path)
    assert str(path) in str(info.value) and "32.0 KiB" in str(info.value)


def test_long_line_in_any_text_input_is_refused(tmp_path) -> None:
    path = _write(tmp_path / "one.stol", b"0.1 " * 300_000)  # 1.2 MB without a newline
    with pytest.raises(FormatError, match="a line is longer than 1.0 MiB"):
        read_stol(path)
    # but a long file of short lines reads
    assert len(read_text(_write(tmp_path / "many.txt", b"1 2\n" * 400_000))) == 1_600_000


# ---------------------------------------------------------------------------- class 7: values


def _fdump(tmp_path: Path, values: np.ndarray) -> Path:
    path = tmp_path / "Fdump.bin"
    write_fdump(path, HKLTable(F=np.ones((2, 2, 2)), h_min=0, k_min=0, l_min=0, count=8))
    raw = bytearray(path.read_bytes())
    ff = raw.index(b"\f") + 1
    padded = np.frombuffer(bytes(raw[ff:]), dtype="<f8").reshape(3, 3, 3).copy()
    padded[:2, :2, :2] = values
    path.write_bytes(bytes(raw[:ff]) + padded.tobytes())
    return path


@pytest.mark.parametrize("bad, what", [(np.nan, "not finite"), (np.inf, "not finite"), (1e200, "|F| >")])
def test_fdump_with_nan_inf_or_huge_values_is_refused_like_the_hkl_reader(tmp_path, bad, what) -> None:
    values = np.ones((2, 2, 2))
    values[1, 0, 1] = bad
    path = _fdump(tmp_path, values)
    with pytest.raises(FormatError) as info:
        read_fdump(path)
    assert str(path) in str(info.value) and what in str(info.value)
    assert read_fdump(_fdump(tmp_path, np.full((2, 2, 2), 3.0))).F[1, 1, 1] == 3.0


def test_fdump_header_indices_out_of_range(tmp_path) -> None:
    path = _write(tmp_path / "Fdump.bin", b"0 99999999999999999999 0 0 0 0\n\f" + bytes(64))
    with pytest.raises(FormatError, match="Miller indices out of range"):
        read_fdump(path)


def test_table_from_arrays_checks_every_source_of_amplitudes() -> None:
    idx = np.array([[0, 0, 0], [1, 0, 0]])
    with pytest.raises(FormatError, match="x.mtz: 1 structure factors have"):
        table_from_arrays(idx, np.array([1.0, 1e120]), name="x.mtz")
    with pytest.raises(FormatError, match="not finite"):
        table_from_arrays(idx, np.array([1.0, np.inf]), name="x.mtz")
    with pytest.raises(FormatError, match="Miller indices out of range"):
        table_from_arrays(np.array([[0, 0, 0], [2**40, 0, 0]]), np.array([1.0, 1.0]), name="x.mtz")


def test_hkl_table_of_the_python_api_raises_usage_errors() -> None:
    with pytest.raises(UsageError, match="not finite"):
        HKLTable(F=np.full((2, 2, 2), np.nan), h_min=0, k_min=0, l_min=0, count=8)
    with pytest.raises(UsageError):
        HKLTable(F="abc", h_min=0, k_min=0, l_min=0, count=1)  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="h_min"):
        HKLTable(F=np.ones((2, 2, 2)), h_min=2**31, k_min=0, l_min=0, count=8)


def test_stol_and_matrix_values_are_bounded(tmp_path) -> None:
    with pytest.raises(FormatError, match="line 2: a value larger than 1e\\+100"):
        read_stol(_write(tmp_path / "x.stol", "0 1\n0.1 1e200\n"))
    with pytest.raises(FormatError, match="number 5 of the matrix is implausibly large"):
        read_mosflm_matrix(_write(tmp_path / "x.mat", "1 0 0 0 1e30 0 0 0 1\n"))


def test_mmcif_amplitudes_whose_squares_overflow_are_refused(tmp_path) -> None:
    from pybragg.io.reflections import check_file_size, p1_table, read_sf_cif

    text = """data_x
_cell.length_a 50
_cell.length_b 50
_cell.length_c 50
_cell.angle_alpha 90
_cell.angle_beta 90
_cell.angle_gamma 90
_symmetry.space_group_name_H-M 'P 1'
loop_
_refln.index_h
_refln.index_k
_refln.index_l
_refln.F_meas_au
1 0 0 10
0 1 0 1e150
"""
    path = _write(tmp_path / "sf.cif", text)
    with pytest.raises(FormatError, match="sf.cif: 2 structure factors have"):  # F and its Friedel mate
        p1_table(read_sf_cif(path), name=str(path))
    fifo = tmp_path / "pipe.mtz"
    os.mkfifo(fifo)
    with pytest.raises(FormatError, match="not a regular file"):
        check_file_size(fifo)


def test_detector_file_with_too_many_panels(tmp_path) -> None:
    from pybragg.io.expt import read_expt

    panel = {"name": "p", "image_size": [4, 4], "pixel_size": [0.1, 0.1], "fast_axis": [1, 0, 0],
             "slow_axis": [0, -1, 0], "origin": [0, 0, -100]}
    doc = {"__id__": "ExperimentList", "experiment": [{"detector": 0}], "detector": [{"panels": [panel] * 16385}]}
    path = _write(tmp_path / "many.expt", json.dumps(doc))
    with pytest.raises(FormatError, match="16385 panels: more than the 16384"):
        read_expt(path)


def test_every_reader_error_is_a_pybragg_error(tmp_path) -> None:
    for call in (lambda: read_hkl("/dev/zero"), lambda: read_fdump(_write(tmp_path / "f", b"junk"))):
        with pytest.raises(PybraggError):
            call()
