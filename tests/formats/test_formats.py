"""Tests for the file-format layer in pybragg.io."""

from __future__ import annotations

import gzip
import math
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest

from pybragg.io import (
    FormatError,
    HKLTable,
    atomic_write,
    c_g,
    format_smv_header,
    read_fdump,
    read_float_image,
    read_hkl,
    read_mosflm_matrix,
    read_pgm,
    read_smv,
    read_source_file,
    reciprocal_vectors_from_mosflm,
    write_fdump,
    write_float_image,
    write_pgm,
    write_smv,
)

GOLDEN = Path(__file__).resolve().parents[2].parent / "shared" / "golden"
INPUTS = GOLDEN / "inputs"
needs_golden = pytest.mark.skipif(
    not INPUTS.is_dir(), reason="reference files in ../shared/golden not available"
)


def _write(path: Path, content: str | bytes) -> Path:
    """Write test content and return the path."""
    if isinstance(content, str):
        path.write_text(content)
    else:
        path.write_bytes(content)
    return path


def _gunzip(src: Path, dst: Path) -> Path:
    """Decompress a golden file into the test's scratch folder."""
    with gzip.open(src, "rb") as fin, dst.open("wb") as fout:
        shutil.copyfileobj(fin, fout)
    return dst


def _check_message(exc: pytest.ExceptionInfo[FormatError], path: Path) -> str:
    """Assert the error message names the file and is a single line."""
    message = str(exc.value)
    assert path.name in message
    assert "\n" not in message
    assert isinstance(exc.value, ValueError)
    return message


# --------------------------------------------------------------------------- atomic


def test_atomic_write_creates_and_replaces(tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    atomic_write(target, b"first")
    atomic_write(target, b"second")
    assert target.read_bytes() == b"second"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]


def test_atomic_write_failure_leaves_old_file_and_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    with pytest.raises(TypeError):
        atomic_write(target, "not bytes")  # type: ignore[arg-type]
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]


def test_atomic_write_unwritable_raises_oserror(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        atomic_write(tmp_path / "no_such_dir" / "out.bin", b"x")


# --------------------------------------------------------------------------- c_g


@pytest.mark.parametrize(
    "value",
    [
        0.0,
        1.0,
        -2.5,
        1e-5,
        123456789,
        0.0001234,
        0.00001234,
        55000 / 154.652,
        999999.5,
        9999995.0,
        1e6,
        100000.0,
        1.5e-5,
        3.86273,
        1e100,
        -1e-300,
        5e-324,
        1.7976931348623157e308,
        0.1 + 0.2,
    ],
)
def test_c_g_matches_printf_g(value: float) -> None:
    assert c_g(value) == "%g" % value  # noqa: UP031


def test_c_g_examples_and_non_finite() -> None:
    assert c_g(1e6) == "1e+06"
    assert c_g(1.5e-5) == "1.5e-05"
    assert c_g(123456789) == "1.23457e+08"
    assert c_g(0.0001234) == "0.0001234"
    assert c_g(55000 / 154.652) == "355.637"
    assert c_g(100000) == "100000"
    assert c_g(float("nan")) == "nan"
    assert c_g(float("inf")) == "inf"
    assert c_g(float("-inf")) == "-inf"


def test_c_g_random_values_match_printf() -> None:
    rng = np.random.default_rng(7)
    values = rng.standard_normal(2000) * 10.0 ** rng.integers(-12, 12, 2000)
    for v in values:
        assert c_g(float(v)) == "%g" % v  # noqa: UP031
        assert c_g(float(v), 3) == "%.3g" % v  # noqa: UP031


# --------------------------------------------------------------------------- hkl


def test_read_hkl_builds_dense_table(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "x.hkl",
        "1 0 0 10.5\n\n  -1 2.0 3 20 99 extra\n0 0 0 1\n1 0 0 11.5\n",
    )
    table = read_hkl(path, default_F=7.0)
    assert (table.h_min, table.h_max) == (-1, 1)
    assert (table.k_min, table.k_max) == (0, 2)
    assert (table.l_min, table.l_max) == (0, 3)
    assert table.F.shape == (3, 3, 4)
    assert table.F.dtype == np.float64
    assert table.count == 3
    assert table.F[1 - -1, 0, 0] == 11.5  # later duplicate wins
    assert table.F[-1 - -1, 2, 3] == 20.0
    assert table.F[0 - -1, 0, 0] == 1.0
    assert np.count_nonzero(table.F == 7.0) == table.F.size - 3


def test_read_hkl_slow_and_fast_paths_agree(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    hkl = rng.integers(-3, 4, size=(50, 3))
    f = rng.uniform(0, 100, 50)
    lines = [f"{h} {k} {l_} {float(v)!r}" for (h, k, l_), v in zip(hkl, f, strict=True)]
    fast = read_hkl(_write(tmp_path / "a.hkl", "\n".join(lines)))
    # a fifth column forces the line-by-line parser
    slow = read_hkl(_write(tmp_path / "b.hkl", "\n".join(x + " 1" for x in lines)))
    assert np.array_equal(fast.F, slow.F)
    assert fast.count == slow.count == len({tuple(r) for r in hkl})


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ("", "no reflections"),
        ("\n   \n", "no reflections"),
        ("1 2 3 4\nabc\n", "line 2"),
        ("1 2 3\n", "line 1"),
        ("1 2 x 4\n", "line 1"),
        ("1 2.5 3 4\n", "integer"),
        ("1 2 3 nan\n", "not finite"),
        ("1 2 3 inf\n", "not finite"),
    ],
)
def test_read_hkl_errors(tmp_path: Path, content: str, needle: str) -> None:
    path = _write(tmp_path / "bad.hkl", content)
    with pytest.raises(FormatError) as exc:
        read_hkl(path)
    assert needle in _check_message(exc, path)


def test_read_hkl_garbled_line_message(tmp_path: Path) -> None:
    path = _write(tmp_path / "x.hkl", "0 0 0 1\n" * 11 + "abc\n")
    with pytest.raises(FormatError) as exc:
        read_hkl(path)
    assert str(exc.value) == f"{path}: line 12: expected 'h k l F', got 'abc'"


def test_read_hkl_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "missing.hkl"
    with pytest.raises(FormatError) as exc:
        read_hkl(path)
    assert str(exc.value).startswith(f"{path}: cannot read: ")


# --------------------------------------------------------------------------- Fdump


def _tiny_table() -> HKLTable:
    """A 2x1x1 table: h = 3..4, k = -1, l = 2."""
    return HKLTable(F=np.array([[[1.25]], [[-7.5]]]), h_min=3, k_min=-1, l_min=2, count=2)


def test_write_fdump_bytes_match_reference_layout(tmp_path: Path) -> None:
    path = tmp_path / "Fdump.bin"
    write_fdump(path, _tiny_table())
    # padded grid is (2+1) x (1+1) x (1+1), h slowest, l fastest
    values = [0.0] * 12
    values[0 * 4 + 0 * 2 + 0] = 1.25
    values[1 * 4 + 0 * 2 + 0] = -7.5
    expected = b"3 4 -1 -1 2 2\n\x0c" + struct.pack("<12d", *values)
    assert path.read_bytes() == expected


def test_fdump_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    table = HKLTable(F=rng.uniform(0, 50, (4, 3, 5)), h_min=-2, k_min=0, l_min=-4, count=9)
    path = tmp_path / "Fdump.bin"
    write_fdump(path, table)
    back = read_fdump(path)
    assert np.array_equal(back.F, table.F)
    assert (back.h_min, back.k_min, back.l_min) == (-2, 0, -4)
    assert (back.h_max, back.k_max, back.l_max) == (1, 2, 0)
    assert back.count == 4 * 3 * 5


def test_fdump_from_hkl_round_trip(tmp_path: Path) -> None:
    table = read_hkl(_write(tmp_path / "x.hkl", "0 0 0 5\n1 -1 2 6\n"), default_F=1.0)
    write_fdump(tmp_path / "Fdump.bin", table)
    back = read_fdump(tmp_path / "Fdump.bin")
    assert np.array_equal(back.F, table.F)


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (b"0 1 0 0 0 0\n\x0c" + b"\0" * 95, "truncated"),
        (b"0 1 0 0\n\x0c" + b"\0" * 200, "bad Fdump header"),
        (b"garbage without form feed", "bad Fdump header"),
        (b"1 0 0 0 0 0\n\x0c" + b"\0" * 200, "negative"),
        (b"", "bad Fdump header"),
    ],
)
def test_read_fdump_errors(tmp_path: Path, content: bytes, needle: str) -> None:
    path = _write(tmp_path / "Fdump.bin", content)
    with pytest.raises(FormatError) as exc:
        read_fdump(path)
    assert needle in _check_message(exc, path)


def test_read_fdump_missing(tmp_path: Path) -> None:
    path = tmp_path / "nope.bin"
    with pytest.raises(FormatError, match="cannot read") as exc:
        read_fdump(path)
    _check_message(exc, path)


# --------------------------------------------------------------------------- matrix


def test_read_mosflm_matrix_and_reciprocal_vectors(tmp_path: Path) -> None:
    path = _write(tmp_path / "A.mat", "0.01 0 0\n0 0.02 0\n0 0 0.04\nignored line\n")
    A = read_mosflm_matrix(path)
    assert A.shape == (3, 3)
    assert A.dtype == np.float64
    a_star, b_star, c_star = reciprocal_vectors_from_mosflm(A, 1e-10)
    # a* = 0.01 / 1 A = 0.01 1/A = 1e8 1/m
    assert np.allclose(a_star, [1e8, 0, 0])
    assert np.allclose(b_star, [0, 2e8, 0])
    assert np.allclose(c_star, [0, 0, 4e8])


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ("1 2 3\n4 5 6\n", "found 6"),
        ("", "found 0"),
        ("1 0 0\n0 x 0\n0 0 1\n", "not numeric"),
        ("1 2 3\n4 5 6\n7 8 9\n", "singular"),
        ("0 0 0\n0 0 0\n0 0 0\n", "singular"),
    ],
)
def test_read_mosflm_matrix_errors(tmp_path: Path, content: str, needle: str) -> None:
    path = _write(tmp_path / "bad.mat", content)
    with pytest.raises(FormatError) as exc:
        read_mosflm_matrix(path)
    assert needle in _check_message(exc, path)


# --------------------------------------------------------------------------- SMV


def test_format_smv_header_exact_bytes() -> None:
    header = format_smv_header(
        [("PIXEL_SIZE", "0.1"), ("DIALS_ORIGIN", "-1,2,-3"), ("PHI", "0")], shape=(3, 4)
    )
    text = (
        b"{\nHEADER_BYTES=512;\nDIM=2;\nBYTE_ORDER=little_endian;\nTYPE=unsigned_short;\n"
        b"SIZE1=4;\nSIZE2=3;\nPIXEL_SIZE=0.1;\nDIALS_ORIGIN=-1,2,-3\nPHI=0;\n}\x0c"
    )
    assert header == text + b" " * (512 - len(text))


def test_format_smv_header_sizes_from_fields() -> None:
    a = format_smv_header([("SIZE1", "4"), ("SIZE2", "3"), ("PHI", "0")])
    b = format_smv_header([("PHI", "0")], shape=(3, 4))
    assert a == b
    with pytest.raises(ValueError):
        format_smv_header([("PHI", "0")])
    with pytest.raises(ValueError):
        format_smv_header([("SIZE1", "5")], shape=(3, 4))
    with pytest.raises(ValueError):
        format_smv_header([("BAD", "a;b")], shape=(3, 4))


def test_smv_round_trip(tmp_path: Path) -> None:
    data = np.arange(12 * 7, dtype=np.uint16).reshape(7, 12) * 700
    fields = [("PIXEL_SIZE", "0.172"), ("DISTANCE", "100"), ("DIALS_ORIGIN", "1,2,3")]
    path = tmp_path / "int.img"
    write_smv(path, data, fields)
    raw = path.read_bytes()
    assert len(raw) == 512 + data.size * 2
    assert raw[512:] == data.astype("<u2").tobytes()
    img = read_smv(path)
    assert img.data.dtype == np.uint16
    assert np.array_equal(img.data, data)
    assert img.header_bytes == 512
    assert list(img.header)[:6] == ["HEADER_BYTES", "DIM", "BYTE_ORDER", "TYPE", "SIZE1", "SIZE2"]
    assert img.header["SIZE1"] == "12" and img.header["SIZE2"] == "7"
    assert img.header["DIALS_ORIGIN"] == "1,2,3"
    assert img.value("PIXEL_SIZE") == 0.172
    assert img.value("DIALS_ORIGIN") is None
    assert img.value("MISSING") is None


def test_smv_long_header_uses_1024_bytes(tmp_path: Path) -> None:
    fields = [(f"KEY_{i:02d}", "x" * 20) for i in range(20)]
    data = np.full((2, 3), 65535, dtype=np.uint16)
    path = tmp_path / "long.img"
    write_smv(path, data, fields)
    raw = path.read_bytes()
    assert len(raw) == 1024 + 12
    assert b"HEADER_BYTES=1024;\n" in raw[:40]
    assert raw.index(b"}\x0c") > 512
    assert raw[raw.index(b"}\x0c") + 2 : 1024].strip(b" ") == b""
    img = read_smv(path)
    assert img.header_bytes == 1024
    assert img.header["KEY_19"] == "x" * 20
    assert np.array_equal(img.data, data)


def _smv_bytes(header_lines: str, payload: bytes, header_bytes: int = 512) -> bytes:
    """Hand-made SMV file content."""
    text = ("{\n" + header_lines + "}\x0c").encode()
    return text + b" " * (header_bytes - len(text)) + payload


def test_read_smv_big_endian_and_overlong_header(tmp_path: Path) -> None:
    pixels = np.array([[1, 2, 3], [258, 513, 65535]], dtype=">u2")
    big = _smv_bytes("HEADER_BYTES=512;\nBYTE_ORDER=big_endian;\nSIZE1=3;\nSIZE2=2;\n", pixels.tobytes())
    img = read_smv(_write(tmp_path / "big.img", big))
    assert np.array_equal(img.data, pixels.astype(np.uint16))
    # header text longer than the 512 bytes it declares: data are the last bytes
    long_text = "HEADER_BYTES=512;\nSIZE1=3;\nSIZE2=2;\n" + "PAD=" + "y" * 500 + ";\n"
    raw = ("{\n" + long_text + "}\x0c").encode() + pixels.astype("<u2").tobytes()
    img = read_smv(_write(tmp_path / "long.img", raw))
    assert np.array_equal(img.data, pixels.astype(np.uint16))


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (b"P5\n3 2\n255\n" + b"\0" * 6, "not an SMV file"),
        (b"", "not an SMV file"),
        (_smv_bytes("SIZE1=3;\nSIZE2=2;\n", b"\0" * 12), "HEADER_BYTES"),
        (_smv_bytes("HEADER_BYTES=512;\nSIZE2=2;\n", b"\0" * 12), "SIZE1"),
        (_smv_bytes("HEADER_BYTES=512;\nSIZE1=3;\n", b"\0" * 12), "SIZE2"),
        (_smv_bytes("HEADER_BYTES=512;\nSIZE1=0;\nSIZE2=2;\n", b""), "positive"),
        (_smv_bytes("HEADER_BYTES=512;\nSIZE1=-3;\nSIZE2=2;\n", b""), "positive"),
        (_smv_bytes("HEADER_BYTES=512;\nSIZE1=3;\nSIZE2=2;\n", b"\0" * 11), "truncated"),
        (_smv_bytes("HEADER_BYTES=512;\nSIZE1=3;\nSIZE2=2;\n", b"")[:300], "truncated"),
        (
            _smv_bytes("HEADER_BYTES=512;\nTYPE=float;\nSIZE1=3;\nSIZE2=2;\n", b"\0" * 12),
            "TYPE",
        ),
    ],
)
def test_read_smv_errors(tmp_path: Path, content: bytes, needle: str) -> None:
    path = _write(tmp_path / "bad.img", content)
    with pytest.raises(FormatError) as exc:
        read_smv(path)
    assert needle in _check_message(exc, path)


def test_read_smv_truncated_message(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "mask.img",
        _smv_bytes("HEADER_BYTES=512;\nSIZE1=128;\nSIZE2=128;\n", b"\0" * 1000),
    )
    with pytest.raises(FormatError) as exc:
        read_smv(path)
    assert str(exc.value) == (
        f"{path}: truncated: header says 128x128 pixels (32768 bytes) but only 1000 data bytes follow"
    )


def test_write_smv_rejects_bad_pixels(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        write_smv(tmp_path / "a.img", np.zeros((2, 2), dtype=np.float32), [])
    with pytest.raises(ValueError):
        write_smv(tmp_path / "a.img", np.full((2, 2), 70000), [])
    with pytest.raises(ValueError):
        write_smv(tmp_path / "a.img", np.zeros(4, dtype=np.uint16), [])
    assert not (tmp_path / "a.img").exists()
    write_smv(tmp_path / "a.img", np.full((2, 2), 5), [])  # in-range ints are fine
    assert np.array_equal(read_smv(tmp_path / "a.img").data, np.full((2, 2), 5))


# --------------------------------------------------------------------------- PGM


def test_write_pgm_exact_bytes_and_round_trip(tmp_path: Path) -> None:
    data = np.array([[0, 1, 2], [253, 254, 255]], dtype=np.uint8)
    path = tmp_path / "image.pgm"
    write_pgm(path, data, 55000 / 154.652)
    assert path.read_bytes() == (
        b"P5\n3 2\n# pixels scaled by 355.637\n255\n" + bytes([0, 1, 2, 253, 254, 255])
    )
    back, info = read_pgm(path)
    assert back.dtype == np.uint8
    assert np.array_equal(back, data)
    assert info == {"maxval": 255, "comments": ["pixels scaled by 355.637"]}


def test_read_pgm_comments_between_tokens_and_16bit(tmp_path: Path) -> None:
    raw = b"P5 # c1\n2 # c2\n1\n# c3\n65535\n" + struct.pack(">2H", 1, 65534)
    data, info = read_pgm(_write(tmp_path / "x.pgm", raw))
    assert data.dtype == np.uint16
    assert data.tolist() == [[1, 65534]]
    assert info == {"maxval": 65535, "comments": ["c1", "c2", "c3"]}


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (b"P2\n2 2\n255\n1 2 3 4\n", "P5"),
        (b"", "P5"),
        (b"P5\n2\n", "height"),
        (b"P5\n2 x 255\n", "height"),
        (b"P5\n2 2 0\n\0\0\0\0", "maxval"),
        (b"P5\n2 2 255\n\0\0\0", "truncated"),
        (b"P5\n2 2 255", "whitespace"),
    ],
)
def test_read_pgm_errors(tmp_path: Path, content: bytes, needle: str) -> None:
    path = _write(tmp_path / "bad.pgm", content)
    with pytest.raises(FormatError) as exc:
        read_pgm(path)
    assert needle in _check_message(exc, path)


# --------------------------------------------------------------------------- float image


def test_float_image_round_trip(tmp_path: Path) -> None:
    image = np.linspace(-1, 1e6, 35, dtype=np.float64).reshape(5, 7)
    path = tmp_path / "float.bin"
    write_float_image(path, image)
    assert path.read_bytes() == image.astype("<f4").tobytes()
    back = read_float_image(path, (5, 7))
    assert back.dtype == np.float32
    assert np.array_equal(back, image.astype(np.float32))
    assert read_float_image(path).shape == (35,)


def test_float_image_errors(tmp_path: Path) -> None:
    path = _write(tmp_path / "float.bin", b"\0" * 10)
    with pytest.raises(FormatError, match="multiple of 4") as exc:
        read_float_image(path)
    _check_message(exc, path)
    path = _write(tmp_path / "float.bin", b"\0" * 16)
    with pytest.raises(FormatError, match="3x2") as exc:
        read_float_image(path, (3, 2))
    _check_message(exc, path)
    with pytest.raises(FormatError, match="cannot read"):
        read_float_image(tmp_path / "absent.bin")


# --------------------------------------------------------------------------- sources


def test_read_source_file_tolerant_parsing(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "src.txt",
        "# comment line\n-10,0.001;0:1!1e-10\n\n ,;: \n-10\t0.002 0.003\n1.5abc 2e-3x 3 4 5 6 7\n",
    )
    rows = read_source_file(path)
    assert rows.shape == (3, 5)
    assert rows.dtype == np.float64
    assert rows[0].tolist() == [-10, 0.001, 0, 1, 1e-10]
    assert rows[1, :3].tolist() == [-10, 0.002, 0.003]
    assert np.isnan(rows[1, 3:]).all()
    assert rows[2].tolist() == [1.5, 2e-3, 3, 4, 5]


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ("", "no source"),
        ("# only a comment\n\n", "no source"),
        ("1 2 3\n1 abc 3\n", "line 2"),
        ("1 2 nan 1 1\n", "not finite"),
        ("1 2 3 inf\n", "not finite"),
    ],
)
def test_read_source_file_errors(tmp_path: Path, content: str, needle: str) -> None:
    path = _write(tmp_path / "src.txt", content)
    with pytest.raises(FormatError) as exc:
        read_source_file(path)
    assert needle in _check_message(exc, path)


def test_missing_files_all_readers(tmp_path: Path) -> None:
    path = tmp_path / "absent.dat"
    for reader in (
        read_hkl,
        read_fdump,
        read_mosflm_matrix,
        read_smv,
        read_pgm,
        read_float_image,
        read_source_file,
    ):
        with pytest.raises(FormatError) as exc:
            reader(path)
        assert str(exc.value).startswith(f"{path}: cannot read: ")


# --------------------------------------------------------------------------- reference files


@needs_golden
def test_golden_sparse_and_tri8_hkl() -> None:
    sparse = read_hkl(INPUTS / "sparse.hkl", default_F=10.0)
    assert sparse.count == 6
    assert (sparse.h_min, sparse.h_max) == (-1, 2)
    assert (sparse.k_min, sparse.k_max) == (-1, 2)
    assert (sparse.l_min, sparse.l_max) == (-1, 1)
    assert sparse.F[0 + 1, 0 + 1, 0 + 1] == 100.0
    assert sparse.F[-1 + 1, 0 + 1, 1 + 1] == 120.0
    assert np.count_nonzero(sparse.F == 10.0) == sparse.F.size - 6
    tri = read_hkl(INPUTS / "tri8.hkl")
    assert tri.F.shape == (17, 17, 17)
    assert tri.count == 17**3
    assert (tri.h_min, tri.l_max) == (-8, 8)
    assert tri.F[0, 0, 0] == 53.91
    assert tri.F[0, 0, 1] == 189.62


@needs_golden
def test_golden_matrices() -> None:
    A = read_mosflm_matrix(INPUTS / "A_hex.mat")
    assert A[0].tolist() == [0.01214963, 0.02546154, -0.00087968]
    assert A[2, 2] == 0.02468136
    a_star, _, _ = reciprocal_vectors_from_mosflm(A, 1e-10)
    assert np.allclose(a_star, np.array([0.01214963, -0.01451536, 0.01705250]) * 1e10)
    P = read_mosflm_matrix(INPUTS / "A_pilatus.mat")
    assert P[1, 0] == -0.02871390
    assert abs(np.linalg.det(P)) > 1e-6


@needs_golden
def test_golden_sources() -> None:
    rows = read_source_file(INPUTS / "sources.txt")
    assert rows.shape == (4, 5)
    assert rows[1, 1] == 0.002
    assert rows[1, 3] == 0.5
    assert rows[2, 4] == 1.02e-10
    assert (rows[:, 0] == -10.0).all()


@needs_golden
def test_golden_input_images() -> None:
    mask = read_smv(INPUTS / "mask128.img")
    assert mask.data.shape == (128, 128)
    assert set(np.unique(mask.data).tolist()) == {0, 1}
    assert mask.value("BEAM_CENTER_X") == 6.4
    hdr = read_smv(INPUTS / "header160x140.img")
    assert hdr.value("SIZE1") == 160
    assert hdr.value("SIZE2") == 140
    assert hdr.data.shape == (140, 160)
    assert hdr.value("PIXEL_SIZE") == 0.12
    assert hdr.value("DISTANCE") == 90
    assert hdr.value("WAVELENGTH") == 1.2


@needs_golden
def test_golden_pilatus_long_header(tmp_path: Path) -> None:
    path = _gunzip(GOLDEN / "pilatus_roi" / "int.img.gz", tmp_path / "int.img")
    img = read_smv(path)
    assert img.data.shape == (2527, 2463)
    assert img.header_bytes == 512
    assert img.header["DIALS_ORIGIN"] == "-230.201,215.206,216.336"
    assert img.value("PIXEL_SIZE") == 0.172
    assert img.value("BEAMLINE") is None and img.header["BEAMLINE"] == "fake"
    raw = path.read_bytes()
    assert raw.index(b"}") + 2 > 512  # the header really overflows its 512 bytes
    assert img.data.tobytes() == raw[-2 * 2527 * 2463 :]


@needs_golden
def test_golden_simple_cubic_outputs_rewrite_identically(tmp_path: Path) -> None:
    case = GOLDEN / "simple_cubic"
    smv_path = _gunzip(case / "int.img.gz", tmp_path / "int.img")
    img = read_smv(smv_path)
    assert img.data.shape == (256, 256)
    fields = [
        (k, v)
        for k, v in img.header.items()
        if k not in {"HEADER_BYTES", "DIM", "BYTE_ORDER", "TYPE", "SIZE1", "SIZE2"}
    ]
    write_smv(tmp_path / "again.img", img.data, fields)
    assert (tmp_path / "again.img").read_bytes() == smv_path.read_bytes()

    pgm_path = _gunzip(case / "image.pgm.gz", tmp_path / "image.pgm")
    pixels, info = read_pgm(pgm_path)
    assert pixels.shape == (256, 256)
    scale_text = info["comments"][0].removeprefix("pixels scaled by ")
    write_pgm(tmp_path / "again.pgm", pixels, float(scale_text))
    assert (tmp_path / "again.pgm").read_bytes() == pgm_path.read_bytes()

    float_path = _gunzip(case / "float.bin.gz", tmp_path / "float.bin")
    image = read_float_image(float_path, (256, 256))
    assert image.shape == (256, 256)
    assert math.isfinite(float(image.max())) and image.max() > 0
