"""``pybragg trace`` and ``pybragg compare``: values checked against independent numbers."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from golden import run_cli
from pybragg.cli.tools import align_traces, read_trace_log
from pybragg.compare import compare_images
from pybragg.engines.c_engine import trace_pixel as c_trace_pixel
from pybragg.flags import from_args
from pybragg.plan import Plan

SIMPLE = ["-cell", "100", "100", "100", "90", "90", "90", "-default_F", "100", "-lambda", "6.2", "-N", "5",
          "-distance", "100", "-detpixels", "256", "-pixel", "0.1"]
R_E_SQR = 7.94079248018965e-30
FLUENCE = 125932015286227086360700780544.0


def expected_simple_pixel(slow: int, fast: int) -> dict[str, object]:
    """The simple_cubic geometry worked out by hand (MOSFLM convention)."""
    px, dist, lam = 1e-4, 0.1, 6.2e-10
    beam_center = (25.6e-3 + px) / 2  # Xbeam = Ybeam default
    fbeam = sbeam = beam_center + px / 2  # MOSFLM adds half a pixel
    f, s = np.array([0, 0, 1.0]), np.array([0, -1.0, 0])
    pix0 = -fbeam * f - sbeam * s + dist * np.array([1.0, 0, 0])
    pos = pix0 + (fast + 0.5) * px * f + (slow + 0.5) * px * s
    r = np.linalg.norm(pos)
    diffracted = pos / r
    incident = np.array([1.0, 0, 0])
    S = (diffracted - incident) / lam
    hkl = 100e-10 * S  # cubic cell along the lab axes
    grating = [math.sin(5 * math.pi * x) / math.sin(math.pi * x) for x in hkl]
    F_latt = float(np.prod(grating))
    omega = px * px / r / r * dist / r
    cos2t = float(diffracted @ incident)
    polar = 0.5 * (1 + cos2t**2)
    pixel = R_E_SQR * FLUENCE * (100.0 * F_latt) ** 2 * omega * polar
    return {"pix0": pix0, "position": pos, "diffracted": diffracted, "scattering": S, "hkl": hkl,
            "F_latt_abc": grating, "F_latt": F_latt, "omega": omega, "polarization": polar, "pixel": pixel}


@pytest.mark.parametrize("slow, fast", [(100, 140), (128, 128), (10, 250)])
def test_c_trace_matches_independent_numbers(slow: int, fast: int) -> None:
    sim = from_args(SIMPLE)
    plan = Plan(sim.config, sim.inputs)
    records, value = c_trace_pixel(plan.config, None, fast, slow, plan=plan)
    got = {r.name: np.array(r.values) for r in records}
    want = expected_simple_pixel(slow, fast)
    for name in ("pix0", "position", "diffracted", "scattering", "hkl", "F_latt_abc"):
        np.testing.assert_allclose(got[name], want[name], rtol=1e-9, atol=1e-15, err_msg=name)
    for name in ("F_latt", "omega", "polarization"):
        assert got[name][0] == pytest.approx(want[name], rel=1e-9), name
    assert value == pytest.approx(want["pixel"], rel=1e-6)
    assert got["F_cell"][0] == 100.0
    # the traced value is the rendered pixel
    assert value == pytest.approx(float(sim.run().image[slow, fast]), rel=1e-7)
    # loop indices: one layer, one sub-pixel, one source, one phi step, one domain
    hkl = next(r for r in records if r.name == "hkl")
    assert hkl.index == (0, 0, 0, 0, 0, 0)


def test_trace_records_every_loop_position() -> None:
    args = SIMPLE + ["-oversample", "2", "-phisteps", "3", "-osc", "0.3", "-mosaic", "0.2", "-mosaic_dom", "2",
                     "-dispersion", "1", "-dispsteps", "2"]
    sim = from_args(args)
    records, _ = c_trace_pixel(sim.config, sim.inputs, 100, 100)
    hkl = [r.index for r in records if r.name == "hkl"]
    # 2x2 sub-pixels x 2 sources x 3 phi steps x 2 domains
    assert len(hkl) == 4 * 2 * 3 * 2
    assert {i[4] for i in hkl} == {0, 1, 2} and {i[5] for i in hkl} == {0, 1} and {i[3] for i in hkl} == {0, 1}
    running = [r.values[0] for r in records if r.name == "I_sum"]
    assert running == sorted(running)  # a running sum of squares only grows


def test_trace_command_c_engine_json(tmp_path) -> None:
    proc = run_cli(["trace", "--pixel", "100", "140", "--engines", "c", "--json", "--", *SIMPLE], tmp_path)
    assert proc.returncode == 0, proc.stderr
    payload = json.loads(proc.stdout)
    assert payload["pixel"] == {"slow": 100, "fast": 140}
    names = [row["name"] for row in payload["rows"]]
    for name in ("pix0", "fdet", "sdet", "odet", "position", "diffracted", "incident", "scattering", "hkl",
                 "hkl_nearest", "F_cell", "F_latt_abc", "F_latt", "omega", "polarization",
                 "capture_fraction", "I_sum", "scale", "pixel"):
        assert name in names
    assert payload["first_difference"] is None
    assert payload["values"]["c"] == pytest.approx(expected_simple_pixel(100, 140)["pixel"], rel=1e-6)


def test_trace_against_log_marks_first_difference(tmp_path) -> None:
    sim = from_args(SIMPLE)
    records, _ = c_trace_pixel(sim.config, sim.inputs, 140, 100)
    lines = []
    for r in records:
        values = list(r.values)
        if r.name == "omega":
            values[0] *= 1.001  # a third implementation with a different solid angle
        lines.append(r.name + " " + " ".join(repr(v) for v in values))
    log = tmp_path / "other.log"
    log.write_text("# instrumented build\n" + "\n".join(lines) + "\n")
    parsed = read_trace_log(str(log))
    rows = align_traces({"c": records}, parsed, rtol=1e-6, atol=1e-12)
    first = next(r for r in rows if r.differs)
    assert first.name == "omega"
    proc = run_cli(["trace", "--pixel", "100", "140", "--engines", "c", "--against-log", str(log), "--", *SIMPLE],
                   tmp_path)
    assert proc.returncode == 4
    assert "first difference: omega" in proc.stderr
    assert "<-- first difference" in proc.stdout


def test_trace_usage_errors(tmp_path) -> None:
    proc = run_cli(["trace", "--pixel", "1", "--", *SIMPLE], tmp_path)
    assert proc.returncode == 2 and "pybragg trace" in proc.stderr
    proc = run_cli(["trace", "--pixel", "1", "2", *SIMPLE], tmp_path)
    assert proc.returncode == 2 and "--" in proc.stderr
    proc = run_cli(["trace", "--pixel", "999", "2", "--engines", "c", "--", *SIMPLE], tmp_path)
    assert proc.returncode == 2 and "outside" in proc.stderr


def test_compare_finds_a_planted_beam_centre_shift(tmp_path) -> None:
    """One image with the beam centre moved by one pixel: compare says where."""
    args = ["-cell", "100", "100", "100", "90", "90", "90", "-misset", "10", "20", "30", "-default_F", "100",
            "-N", "10", "-lambda", "1", "-distance", "100", "-detpixels", "128", "-pixel", "0.1"]
    base = from_args(args).run()
    # MOSFLM default Xbeam is (12.8 + 0.1) / 2 + 6.4 = 12.85 mm; move it by one 0.1 mm pixel
    shifted = from_args(args + ["-Xbeam", "12.95"]).run()
    (tmp_path / "shifted.bin").write_bytes(shifted.image.astype("<f4").tobytes())
    proc = run_cli(["compare", "--engines", "c", "--against", "shifted.bin", "--threshold", "0.999",
                    "--outdir", "out", "--", *args], tmp_path)
    assert proc.returncode == 4, proc.stderr
    assert "under the threshold" in proc.stderr
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    # the largest difference sits on a Bragg spot of one of the two images
    slow, fast = summary["max_abs_pixel"]
    assert max(base.image[slow, fast], shifted.image[slow, fast]) > 0.1 * base.image.max()
    direct = compare_images(base.image, shifted.image)
    assert tuple(summary["max_abs_pixel"]) == direct.max_abs_pixel
    assert summary["correlation"] == pytest.approx(direct.correlation, rel=1e-9)
    assert summary["sum_ratio"] == pytest.approx(shifted.image.sum() / base.image.sum(), rel=1e-6)
    for png in ("image_a.png", "image_b.png", "difference.png"):
        assert (tmp_path / "out" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # shifting back by the same pixel makes the two agree again
    proc = run_cli(["compare", "--engines", "c", "--against", "shifted.bin", "--threshold", "0.999999", "--",
                    *args, "-Xbeam", "12.95"], tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_compare_roi_reports_detector_coordinates(tmp_path) -> None:
    image = np.zeros((64, 64))
    other = image.copy()
    other[40, 30] = 5.0
    (tmp_path / "b.bin").write_bytes(other.astype("<f4").tobytes())
    args = ["-cell", "100", "100", "100", "90", "90", "90", "-default_F", "0.000001", "-N", "2", "-detpixels", "64",
            "-fluence", "0"]
    proc = run_cli(["compare", "--engines", "c", "--against", "b.bin", "--roi", "20", "40", "30", "50", "--",
                    *args], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "(40, 30)" in proc.stdout


def test_compare_usage_and_engine_errors(tmp_path) -> None:
    assert run_cli(["compare", "--threshold", "2", "--", *SIMPLE], tmp_path).returncode == 2
    assert run_cli(["compare", "--engines", "c,x", "--", *SIMPLE], tmp_path).returncode == 2
    assert run_cli(["compare", "--engines", "c", "--", *SIMPLE], tmp_path).returncode == 2
    missing = run_cli(["compare", "--engines", "c", "--against", "nope.bin", "--", *SIMPLE], tmp_path)
    assert missing.returncode == 1 and "nope.bin" in missing.stderr
    (tmp_path / "short.bin").write_bytes(b"\0" * 16)
    short = run_cli(["compare", "--engines", "c", "--against", "short.bin", "--", *SIMPLE], tmp_path)
    assert short.returncode == 1 and "short.bin" in short.stderr


def test_align_traces_flags_a_quantity_only_one_engine_has() -> None:
    from pybragg.result import TraceRecord

    a = [TraceRecord("omega", (0, 0, 0, -1, -1, -1), (1.0,)), TraceRecord("pixel", (-1,) * 6, (2.0,))]
    b = [TraceRecord("omega", (0, 0, 0, -1, -1, -1), (1.0,)), TraceRecord("extra", (-1,) * 6, (3.0,)),
         TraceRecord("pixel", (-1,) * 6, (2.0,))]
    rows = align_traces({"c": a, "torch": b}, None, rtol=1e-9, atol=0.0)
    assert [(r.name, r.differs) for r in rows] == [("omega", False), ("pixel", False), ("extra", True)]
    # a log that reports only some quantities is fine
    rows = align_traces({"c": a}, [("pixel", (2.0,))], rtol=1e-9, atol=0.0)
    assert not any(r.differs for r in rows)


TINY = ["-cell", "100", "100", "100", "90", "90", "90", "-default_F", "1", "-detpixels", "8"]


@pytest.mark.parametrize("command", ["compare", "trace"])
def test_help_exits_0_and_names_the_command(command: str, tmp_path) -> None:
    proc = run_cli([command, "--help"], tmp_path)
    assert proc.returncode == 0 and f"usage: pybragg {command}" in proc.stdout and not proc.stderr
    bare = run_cli([command], tmp_path)
    assert bare.returncode == 2 and f"pybragg {command} " in bare.stderr
    assert "compare" not in bare.stderr or command == "compare"


@pytest.mark.parametrize(("options", "message"), [
    (["--rtol", "-1"], "--rtol: a tolerance must be a finite number >= 0"),
    (["--atol", "nan"], "--atol: a tolerance must be a finite number >= 0"),
    (["--step", "source=99"], "--step source=99: this pixel's loops have no such position (source runs from 0 to 0)"),
])
def test_trace_refuses_impossible_options(options: list[str], message: str, tmp_path) -> None:
    proc = run_cli(["trace", "--pixel", "1", "1", "--engines", "c", *options, "--", *TINY], tmp_path)
    assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr


def test_compare_names_an_inverted_roi(tmp_path) -> None:
    proc = run_cli(["compare", "--engines", "c,c", "--roi", "5", "2", "0", "3", "--", *TINY], tmp_path)
    assert proc.returncode == 2 and "XMIN must not exceed XMAX" in proc.stderr and "outside" not in proc.stderr


@pytest.mark.parametrize("command", ["compare", "trace"])
def test_bare_command_shows_its_own_usage_on_one_line(command: str, tmp_path) -> None:
    proc = run_cli([command], tmp_path)
    lines = proc.stderr.splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"pybragg: error: pybragg {command}: ")
    assert f"usage: pybragg {command} [-h]" in lines[0] and lines[0].endswith("-- <nanoBragg flags>")
    other = "trace" if command == "compare" else "compare"
    assert other not in lines[0]
    if command == "trace":
        assert "--pixel SLOW FAST" in lines[0]


class _NoMemory:
    """A simulator whose render fails for want of memory, as numpy, torch or the memory rule say it."""

    def __init__(self, exc: BaseException):
        self.exc = exc

    def run(self):
        raise self.exc


def _main_in_process(argv: list[str], capsys) -> tuple[int, list[str]]:
    from pybragg.cli.main import main

    code = main(argv)
    return code, capsys.readouterr().err.splitlines()


@pytest.mark.parametrize("exc", [
    MemoryError(),
    MemoryError("Unable to allocate 20.0 GiB for an array with shape (1401, 1401, 1401)"),
    RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 21474836480 bytes."),
])
def test_compare_out_of_memory_names_the_engine_flag(exc: BaseException, monkeypatch, capsys) -> None:
    from pybragg.cli import tools

    monkeypatch.setattr(tools, "_simulator", lambda *args: _NoMemory(exc))
    code, lines = _main_in_process(["compare", "--engines", "c,torch", "--", *TINY], capsys)
    assert code == 1 and len(lines) == 1, lines
    assert lines[0].startswith("pybragg: error: --engines c: rendering with the c engine: out of memory")


def test_compare_passes_the_memory_rule_message_unchanged(monkeypatch, capsys) -> None:
    from pybragg.cli import tools
    from pybragg.errors import ResourceLimitError

    said = "-hkl big.hkl: the structure-factor grid 1401 x 1401 x 1401 needs 20.5 GiB, more than the 1.0 GiB available"
    monkeypatch.setattr(tools, "_simulator", lambda *args: _NoMemory(ResourceLimitError(said)))
    code, lines = _main_in_process(["compare", "--engines", "c,torch", "--", *TINY], capsys)
    assert code == 1 and lines == [f"pybragg: error: {said}"]


def test_compare_against_out_of_memory_names_the_file(monkeypatch, capsys, tmp_path) -> None:
    from pybragg.io import floatimage

    def no_memory(path, shape=None):
        raise MemoryError("Unable to allocate 64.0 GiB")

    monkeypatch.setattr(floatimage, "read_float_image", no_memory)
    other = tmp_path / "other.bin"
    other.write_bytes(b"\0" * 256)
    code, lines = _main_in_process(["compare", "--engines", "c", "--against", str(other), "--", *TINY], capsys)
    assert code == 1 and len(lines) == 1, lines
    assert lines[0].startswith(f"pybragg: error: --against {other}: out of memory (Unable to allocate 64.0 GiB)")


def test_trace_out_of_memory_names_the_engine_and_pixel(monkeypatch, capsys) -> None:
    from pybragg.cli import tools

    def no_memory(*args):
        raise MemoryError()

    monkeypatch.setattr(tools, "_trace_records", no_memory)
    code, lines = _main_in_process(["trace", "--pixel", "1", "2", "--engines", "c", "--", *TINY], capsys)
    assert code == 1 and len(lines) == 1, lines
    assert lines[0].startswith("pybragg: error: --engines c: tracing pixel (slow 1, fast 2) with the c engine: "
                               "out of memory")


def test_trace_and_compare_errors_are_one_line_without_traceback(tmp_path) -> None:
    for argv in (["trace", "--pixel", "1", "1", "--engines", "c", "--rtol", "-1", "--", *TINY],
                 ["trace", "--pixel", "1", "1", "--engines", "c", "--step", "source=99", "--", *TINY],
                 ["compare", "--engines", "c,c", "--roi", "5", "2", "0", "3", "--", *TINY],
                 ["compare", "--engines", "c,c", "--roi", "0", "99", "0", "3", "--", *TINY]):
        proc = run_cli(argv, tmp_path)
        lines = proc.stderr.splitlines()
        assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith("pybragg: error: "), (argv, lines)
        flag = next(a for a in argv if a in ("--rtol", "--step", "--roi"))
        assert flag in lines[0]
        if flag == "--roi":
            inverted = argv[4:6] == ["5", "2"]
            assert ("is inverted (XMIN 5 > XMAX 2" in lines[0]) == inverted and ("outside" in lines[0]) != inverted
