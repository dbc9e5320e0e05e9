"""Bad input at the command line: one clear line on stderr, the right exit code, no file left behind.

Every case runs the real ``pybragg`` command (``golden.run_cli``) in a scratch
folder that holds only the ``inputs`` link and the files the case writes first.
A failed run must print exactly one line to stderr, starting with
``pybragg: error:`` and naming the flag or file at fault, never a traceback; it
exits with 2 for a usage error (a bad flag or value) and 1 for any other failure
(an unreadable or garbled input file, an engine error, an unwritable output);
and it leaves the folder exactly as it found it: no output file, no ``Fdump.bin``,
no temporary file, and files that were there before untouched (deliberate
differences 2 and 5 of ``shared/REFERENCE.md``).

The subprocess imports the checkout's Python (``PYTHONPATH``) with the installed
C extension, so these tests exercise the code under review, not a stale install.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from golden import ROOT, run_cli, scratch
from pybragg.io.hkl import read_fdump, read_hkl, write_fdump
from pybragg.io.pgm import read_pgm
from pybragg.io.smv import read_smv

CELL = ["-cell", "100", "100", "100", "90", "90", "90"]
SMALL = [*CELL, "-default_F", "100", "-N", "2", "-detpixels", "24"]
LONG_NAME = "n" * 300  # a file name no Linux file system accepts (ENAMETOOLONG)

GOOD_HKL = b"0 0 0 10\n1 0 0 5\n0 1 0 6\n0 0 1 7\n"


def smv_bytes(fast: int, slow: int, data_bytes: int | None = None, magic: bytes = b"{") -> bytes:
    """A minimal SMV file; ``data_bytes`` fewer than 2*fast*slow makes it truncated."""
    header = (magic + f"\nHEADER_BYTES=512;\nDIM=2;\nBYTE_ORDER=little_endian;\nTYPE=unsigned_short;\n"
              f"SIZE1={fast};\nSIZE2={slow};\nPIXEL_SIZE=0.1;\n}}\f".encode()).ljust(512, b" ")
    n = 2 * fast * slow if data_bytes is None else data_bytes
    return header + b"\x01" * n


@dataclass(frozen=True)
class Bad:
    """One bad command line: its arguments, the exit code it must give, words its message must hold."""

    args: tuple[str, ...]
    code: int
    names: tuple[str, ...]
    files: tuple[tuple[str, bytes], ...] = ()


def bad(args: list[str], code: int, *names: str, files: dict[str, bytes] | None = None) -> Bad:
    return Bad(tuple(args), code, names, tuple((files or {}).items()))


USAGE, FAILURE = 2, 1

CASES: dict[str, Bad] = {
    # flags and values: usage errors
    "unknown_flag": bad(["-bogus", *SMALL], USAGE, "-bogus"),
    "flag_prefix_is_not_a_flag": bad([*SMALL, "-dist", "100"], USAGE, "-dist"),
    "stray_argument": bad([*SMALL, "stray"], USAGE, "stray"),
    "missing_value_at_end": bad([*SMALL, "-distance"], USAGE, "-distance"),
    "missing_value_before_flag": bad(["-distance", *SMALL], USAGE, "-distance"),
    "non_numeric_value": bad([*SMALL, "-distance", "abc"], USAGE, "-distance", "abc"),
    "non_numeric_int": bad([*SMALL, "-detpixels", "lots"], USAGE, "-detpixels"),
    "nan_distance": bad([*SMALL, "-distance", "nan"], USAGE, "-distance"),
    "nan_cell": bad(["-cell", "100", "100", "NaN", "90", "90", "90", "-default_F", "1"], USAGE, "-cell"),
    "inf_lambda": bad([*SMALL, "-lambda", "inf"], USAGE, "-lambda"),
    "minus_inf_pixel": bad([*SMALL, "-pixel", "-inf"], USAGE, "-pixel"),
    "huge_overflows_to_inf": bad([*SMALL, "-distance", "1e999"], USAGE, "-distance"),
    "zero_distance": bad([*SMALL, "-distance", "0"], USAGE, "-distance"),
    "negative_distance": bad([*SMALL, "-distance", "-5"], USAGE, "-distance"),
    "zero_close_distance": bad([*SMALL, "-close_distance", "0"], USAGE, "-close_distance"),
    "negative_close_distance": bad([*SMALL, "-close_distance", "-80"], USAGE, "-close_distance"),
    "zero_pixel": bad([*SMALL, "-pixel", "0"], USAGE, "-pixel"),
    "negative_pixel": bad([*SMALL, "-pixel", "-0.1"], USAGE, "-pixel"),
    "zero_detpixels": bad([*SMALL, "-detpixels", "0"], USAGE, "-detpixels"),
    "negative_detpixels_x": bad([*SMALL, "-detpixels_x", "-3"], USAGE, "-detpixels_x"),
    "zero_detpixels_y": bad([*SMALL, "-detpixels_y", "0"], USAGE, "-detpixels_y"),
    "zero_detsize": bad([*CELL, "-default_F", "1", "-detsize", "0"], USAGE, "-detsize"),
    "negative_detsize_f": bad([*CELL, "-default_F", "1", "-detsize_f", "-10"], USAGE, "-detsize_f"),
    "flat_cell": bad(["-cell", "100", "100", "100", "90", "90", "200", "-default_F", "1"], USAGE, "-cell"),
    "coplanar_cell": bad(["-cell", "100", "100", "100", "120", "120", "120", "-default_F", "1"], USAGE, "-cell"),
    "zero_cell_length": bad(["-cell", "0", "100", "100", "90", "90", "90", "-default_F", "1"], USAGE, "-cell"),
    "negative_cell_length": bad(["-cell", "100", "-1", "100", "90", "90", "90", "-default_F", "1"], USAGE, "-cell"),
    "zero_wavelength": bad([*SMALL, "-lambda", "0"], USAGE, "-lambda"),
    "negative_wavelength": bad([*SMALL, "-lambda", "-1"], USAGE, "-lambda"),
    "zero_energy": bad([*SMALL, "-energy", "0"], USAGE, "-energy"),
    "negative_energy": bad([*SMALL, "-energy", "-12000"], USAGE, "-energy"),
    "no_structure_factors": bad([*CELL, "-N", "2", "-detpixels", "24"], USAGE, "-hkl", "-default_F"),
    "default_F_zero": bad([*CELL, "-default_F", "0", "-detpixels", "24"], USAGE, "-hkl", "-default_F"),
    "no_cell_no_matrix": bad(["-default_F", "100", "-detpixels", "24"], USAGE, "-cell", "-mat"),
    # structure factors
    "hkl_missing": bad([*SMALL, "-hkl", "nope.hkl"], FAILURE, "-hkl", "nope.hkl"),
    "hkl_is_a_folder": bad([*SMALL, "-hkl", "inputs"], FAILURE, "-hkl", "inputs"),
    "hkl_non_numeric_line": bad([*SMALL, "-hkl", "g.hkl"], FAILURE, "g.hkl", "line 2",
                                files={"g.hkl": b"0 0 0 10\nfoo bar baz qux\n"}),
    "hkl_non_integer_index": bad([*SMALL, "-hkl", "g.hkl"], FAILURE, "g.hkl", "line 2",
                                 files={"g.hkl": b"0 0 0 10\n1.5 0 0 3\n"}),
    "hkl_truncated_line": bad([*SMALL, "-hkl", "g.hkl"], FAILURE, "g.hkl", "line 3",
                              files={"g.hkl": b"0 0 0 10\n1 0 0 4\n1 0\n"}),
    "hkl_non_finite_F": bad([*SMALL, "-hkl", "g.hkl"], FAILURE, "g.hkl", "line 1",
                            files={"g.hkl": b"0 0 0 nan\n"}),
    "hkl_empty": bad([*SMALL, "-hkl", "g.hkl"], FAILURE, "g.hkl", files={"g.hkl": b""}),
    "hkl_blank_lines_only": bad([*SMALL, "-hkl", "g.hkl"], FAILURE, "g.hkl", files={"g.hkl": b"\n  \n\n"}),
    "fdump_garbled": bad([*CELL, "-N", "2", "-detpixels", "24"], FAILURE, "Fdump.bin",
                         files={"Fdump.bin": b"this is not a dump"}),
    # orientation matrix
    "mat_missing": bad(["-default_F", "100", "-detpixels", "24", "-mat", "nope.mat"], FAILURE, "-mat", "nope.mat"),
    "mat_garbled": bad(["-default_F", "100", "-detpixels", "24", "-mat", "a.mat"], FAILURE, "-mat", "a.mat",
                       files={"a.mat": b"0.01 0 x\n0 0.01 0\n0 0 0.01\n"}),
    "mat_too_short": bad(["-default_F", "100", "-detpixels", "24", "-mat", "a.mat"], FAILURE, "-mat", "a.mat",
                         files={"a.mat": b"0.01 0 0\n0 0.01 0\n"}),
    "mat_empty": bad(["-default_F", "100", "-detpixels", "24", "-mat", "a.mat"], FAILURE, "-mat", "a.mat",
                     files={"a.mat": b""}),
    "mat_singular": bad(["-default_F", "100", "-detpixels", "24", "-mat", "a.mat"], FAILURE, "-mat", "a.mat",
                        files={"a.mat": b"0.01 0.01 0\n0 0 0\n0 0 0.01\n"}),
    # mask
    "mask_missing": bad([*SMALL, "-mask", "nope.img"], FAILURE, "-mask", "nope.img"),
    "mask_not_smv": bad([*SMALL, "-mask", "m.img"], FAILURE, "-mask", "m.img",
                        files={"m.img": b"hello, I am not an image\n" * 40}),
    "mask_no_header_end": bad([*SMALL, "-mask", "m.img"], FAILURE, "-mask", "m.img",
                              files={"m.img": b"{\nHEADER_BYTES=512;\nSIZE1=24;\n" + b" " * 600}),
    "mask_truncated": bad([*SMALL, "-mask", "m.img"], FAILURE, "-mask", "m.img",
                          files={"m.img": smv_bytes(24, 24, data_bytes=100)}),
    "mask_size_differs": bad([*SMALL, "-mask", "m.img", "-detpixels", "20"], FAILURE, "-mask", "m.img",
                             files={"m.img": smv_bytes(24, 24)}),
    "mask_size_differs_with_hkl": bad(
        [*CELL, "-hkl", "g.hkl", "-N", "2", "-mask", "inputs/mask128.img", "-detpixels", "64"],
        FAILURE, "-mask", "mask128.img", files={"g.hkl": GOOD_HKL}),
    # sources
    "sourcefile_missing": bad([*SMALL, "-sourcefile", "nope.txt"], FAILURE, "-sourcefile", "nope.txt"),
    "sourcefile_garbled": bad([*SMALL, "-sourcefile", "s.txt"], FAILURE, "s.txt", "line 2",
                              files={"s.txt": b"0 0 -10 1 1e-10\nfoo 1 2\n"}),
    "sourcefile_empty": bad([*SMALL, "-sourcefile", "s.txt"], FAILURE, "s.txt", files={"s.txt": b"# nothing\n"}),
    "sourcefile_zero_wavelength": bad([*SMALL, "-sourcefile", "s.txt"], FAILURE, "-sourcefile", "s.txt",
                                      files={"s.txt": b"0 0 -10 1 0\n"}),
    # header image
    "img_missing": bad([*SMALL, "-img", "nope.img"], FAILURE, "-img", "nope.img"),
    "img_truncated": bad([*SMALL, "-img", "h.img"], FAILURE, "-img", "h.img",
                         files={"h.img": smv_bytes(24, 24, data_bytes=1000)}),
    "img_not_smv": bad([*SMALL, "-img", "h.img"], FAILURE, "-img", "h.img",
                       files={"h.img": smv_bytes(24, 24, magic=b"[")}),
    # outputs
    "float_in_missing_folder": bad([*SMALL, "-floatfile", "nodir/out.bin"], FAILURE, "nodir/out.bin"),
    "int_in_missing_folder": bad([*SMALL, "-intfile", "nodir/deeper/out.img"], FAILURE, "nodir/deeper/out.img"),
    "float_under_a_file": bad([*SMALL, "-floatfile", "somefile/out.bin"], FAILURE, "somefile/out.bin",
                              files={"somefile": b"a plain file"}),
    "noise_under_a_file": bad([*SMALL, "-noisefile", "somefile/out.img"], FAILURE, "somefile/out.img",
                              files={"somefile": b"a plain file"}),
    "pgm_under_a_file": bad([*SMALL, "-pgmfile", "somefile/out.pgm"], FAILURE, "somefile/out.pgm",
                            files={"somefile": b"a plain file"}),
    "output_is_a_folder": bad([*SMALL, "-intfile", "inputs"], FAILURE, "inputs"),
    # fails only when the last file is written, after the others were ready
    "output_name_too_long": bad([*SMALL, "-floatfile", "f.bin", "-noisefile", LONG_NAME], FAILURE, LONG_NAME),
}

@pytest.fixture(autouse=True)
def checkout_python(monkeypatch):
    """Make the ``pybragg`` subprocess import this checkout's package."""
    paths = [str(ROOT), *(p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p)]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(paths))


def snapshot(folder: Path) -> dict[str, bytes | None]:
    """Every entry under ``folder`` (hidden ones included, links not followed) with its bytes."""
    out: dict[str, bytes | None] = {}
    for path in sorted(folder.rglob("*")):
        rel = str(path.relative_to(folder))
        if path.is_symlink() or path.is_dir():
            out[rel] = None
        else:
            out[rel] = path.read_bytes()
    return out


_RUNS: dict[str, tuple[dict, dict, object]] = {}


def outcome(name: str, tmp_path_factory: pytest.TempPathFactory):
    """(folder before, folder after, CompletedProcess) of one case, run once per session."""
    if name not in _RUNS:
        case = CASES[name]
        folder = scratch(tmp_path_factory.mktemp(name[:40]))
        for rel, data in case.files:
            (folder / rel).write_bytes(data)
        before = snapshot(folder)
        proc = run_cli(list(case.args), folder, timeout=120)
        _RUNS[name] = (before, snapshot(folder), proc)
    return _RUNS[name]


def assert_one_line_error(proc, names: tuple[str, ...] = ()) -> str:
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout, proc.stderr
    # warnings about the physics may precede it; the error itself is one line
    lines = [line for line in proc.stderr.splitlines() if not line.startswith("warning: ")]
    assert len(lines) == 1, f"expected one error line on stderr, got {len(lines)}:\n{proc.stderr}"
    line = lines[0]
    assert line.startswith("pybragg: error: "), line
    for name in names:
        assert name in line, f"{name!r} not named in {line!r}"
    return line


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input_fails_cleanly(name: str, tmp_path_factory) -> None:
    before, after, proc = outcome(name, tmp_path_factory)
    assert proc.returncode in (USAGE, FAILURE), (proc.returncode, proc.stderr)
    assert_one_line_error(proc, CASES[name].names)
    assert after == before, f"the folder changed: {sorted(set(after) ^ set(before))}"


@pytest.mark.parametrize(
    "name", sorted(CASES))
def test_exit_code(name: str, tmp_path_factory) -> None:
    _, _, proc = outcome(name, tmp_path_factory)
    assert proc.returncode == CASES[name].code, proc.stderr


def test_no_arguments_is_a_usage_error(tmp_path) -> None:
    proc = run_cli([], scratch(tmp_path))
    assert proc.returncode == USAGE
    assert "Traceback" not in proc.stderr
    assert os.listdir(tmp_path) == ["inputs"]


# ---------------------------------------------------------------------------
# files that existed before a failed run

OLD = {"float.bin": b"old float", "int.img": b"old int", "noise.img": b"old noise", "image.pgm": b"old pgm",
       "floatimage.bin": b"old default float"}
OUT = ["-floatfile", "float.bin", "-intfile", "int.img", "-noisefile", "noise.img", "-pgmfile", "image.pgm"]


@pytest.mark.parametrize(
    "args, code",
    [
        ([*SMALL, *OUT, "-distance", "oops"], USAGE),
        ([*SMALL, *OUT, "-mask", "inputs/mask128.img"], FAILURE),  # engine: mask 128x128, detector 24x24
        ([*CELL, "-hkl", "g.hkl", "-N", "2", "-detpixels", "24", *OUT], FAILURE),  # garbled hkl
        ([*SMALL, *OUT[:6], "-pgmfile", "somefile/p.pgm"], FAILURE),
        ([*SMALL, *OUT[:6], "-pgmfile", LONG_NAME], FAILURE),  # fails after the others were written
    ],
    ids=["bad_value", "engine_error", "garbled_hkl", "unwritable_folder", "write_fails_late"],
)
def test_failed_run_leaves_existing_files_untouched(args: list[str], code: int, tmp_path) -> None:
    folder = scratch(tmp_path)
    for name, data in OLD.items():
        (folder / name).write_bytes(data)
    (folder / "good.hkl").write_bytes(GOOD_HKL)
    write_fdump(folder / "Fdump.bin", read_hkl(folder / "good.hkl"))  # read back by runs without -hkl
    (folder / "g.hkl").write_bytes(b"1 2 3 x\n")
    (folder / "somefile").write_bytes(b"a plain file")
    before = snapshot(folder)
    proc = run_cli(args, folder)
    assert proc.returncode == code, proc.stderr
    assert_one_line_error(proc)
    assert snapshot(folder) == before


# ---------------------------------------------------------------------------
# successful runs write whole files and nothing else


def test_success_writes_complete_files_and_no_temporaries(tmp_path) -> None:
    folder = scratch(tmp_path)
    (folder / "g.hkl").write_bytes(GOOD_HKL)
    (folder / "int.img").write_bytes(b"to be replaced")
    (folder / "int.img").chmod(0o640)
    fast, slow = 40, 30
    args = [*CELL, "-hkl", "g.hkl", "-N", "2", "-detpixels_x", str(fast), "-detpixels_y", str(slow), *OUT,
            "-seed", "7"]
    proc = run_cli(args, folder)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    entries = sorted(os.listdir(folder))
    assert entries == sorted(["inputs", "g.hkl", "Fdump.bin", "float.bin", "int.img", "noise.img", "image.pgm"])
    assert (folder / "float.bin").stat().st_size == 4 * fast * slow
    image = np.fromfile(folder / "float.bin", dtype="<f4").reshape(slow, fast)
    assert np.isfinite(image).all() and image.max() > 0
    for name in ("int.img", "noise.img"):
        smv = read_smv(folder / name)
        assert smv.data.shape == (slow, fast)
        assert (folder / name).stat().st_size == smv.header_bytes + 2 * fast * slow
        assert smv.header_bytes == 512
    # the replaced file keeps its permissions
    assert stat.S_IMODE((folder / "int.img").stat().st_mode) == 0o640
    grey, info = read_pgm(folder / "image.pgm")
    assert grey.shape == (slow, fast) and info["maxval"] == 255
    header = (folder / "image.pgm").read_bytes()
    assert len(header) == header.index(b"255\n") + 4 + fast * slow
    dump, table = read_fdump(folder / "Fdump.bin"), read_hkl(folder / "g.hkl")
    assert (dump.h_min, dump.k_min, dump.l_min) == (table.h_min, table.k_min, table.l_min)
    assert np.array_equal(dump.F, table.F)


def test_default_outputs_are_complete(tmp_path) -> None:
    folder = scratch(tmp_path)
    proc = run_cli([*SMALL, "-seed", "3"], folder)
    assert proc.returncode == 0, proc.stderr
    names = sorted(os.listdir(folder))
    assert names == sorted(["inputs", "floatimage.bin", "intimage.img", "image.pgm", "noiseimage.img"])
    assert (folder / "floatimage.bin").stat().st_size == 4 * 24 * 24
    for name in ("intimage.img", "noiseimage.img"):
        assert (folder / name).stat().st_size == 512 + 2 * 24 * 24


def test_nonoise_nopgm_write_only_what_is_asked(tmp_path) -> None:
    folder = scratch(tmp_path)
    proc = run_cli([*SMALL, *OUT, "-nonoise", "-nopgm"], folder)
    assert proc.returncode == 0, proc.stderr
    assert sorted(os.listdir(folder)) == ["float.bin", "inputs", "int.img"]


def test_unwritable_dump_is_only_a_warning(tmp_path) -> None:
    """Like the reference, a structure-factor cache that cannot be written does not fail the run."""
    folder = scratch(tmp_path)
    (folder / "g.hkl").write_bytes(GOOD_HKL)
    proc = run_cli([*CELL, "-hkl", "g.hkl", "-N", "2", "-detpixels", "24", "-dump", "nodir/F.bin",
                    "-floatfile", "f.bin", "-intfile", "i.img", "-nonoise", "-nopgm"], folder)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "nodir/F.bin" in proc.stderr and "warning" in proc.stderr
    assert sorted(os.listdir(folder)) == ["f.bin", "g.hkl", "i.img", "inputs"]


def test_impractical_automatic_oversampling_is_refused(tmp_path) -> None:
    """A wavelength typed in the wrong unit would ask for 24197^2 sub-pixels per pixel."""
    proc = run_cli(["-cell", "100", "100", "100", "90", "90", "90", "-default_F", "100", "-detpixels", "32",
                    "-energy", "1e9"], tmp_path)
    assert proc.returncode == 1
    line = assert_one_line_error(proc, ("-oversample",))
    assert "sub-pixels per pixel" in line
    assert not any(p.name.endswith((".bin", ".img", ".pgm")) for p in tmp_path.iterdir())
