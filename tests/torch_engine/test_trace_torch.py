"""``trace_pixel`` of the torch engine against the C engine's trace, and ``pybragg trace`` on both.

The torch engine reports its own intermediate quantities of one pixel; they must line
up with the C engine's record for record (same names, loop indices, order and skips)
and agree to 1e-9 in double precision.  One deliberate exception: the torch engine
rebuilds the mosaic domains' rotations without the C engine's single-precision
rounding of the angle (see the torch engine's docstring), so with mosaic domains the
per-orientation quantities of domains 1.. differ by about 1e-10 of the Miller indices,
and the trace points at exactly that.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch  # noqa: F401 - the torch engine is required here, never skipped

from golden import ROOT, load_case, scratch
from pybragg import Simulator
from pybragg.cli.main import main as cli_main
from pybragg.cli.tools import align_traces
from pybragg.engines.c_engine import trace_pixel as c_trace_pixel
from pybragg.engines.torch import TorchModel, trace_pixel
from pybragg.flags import from_args
from pybragg.plan import Plan
from pybragg.result import TraceRecord

RTOL = 1e-9
F32_ULP = 2.0**-23  # the traced pixel value is rounded to single precision

CASES = [
    "simple_cubic", "mosaic", "phi_osc", "oversample_toggles", "oversample3", "absorption",
    "absorption_oversample_thick", "dispersion", "divergence_round", "interp_saxs_N1", "hkl_nearest",
    "round_xtal", "gauss_xtal", "tophat_spots", "dmin_cut", "water_flux", "curved_det", "custom_vectors_pix0",
]

# sensor layers without -oversample_thick, 2x2 sub-pixels without -oversample_omega, phi
# steps, and a resolution cut that removes source 0 and, for some sub-pixels, source 1:
# the polarization in effect is first computed at a later source
MIXED = ["-cell", "100", "100", "100", "90", "90", "90", "-misset", "4", "4", "4", "-default_F", "100", "-N", "5",
         "-lambda", "1.0", "-dispersion", "30", "-dispsteps", "4", "-dmin", "12.5", "-oversample", "2",
         "-detector_abs", "300", "-detector_thick", "200", "-detector_thicksteps", "2", "-phisteps", "2",
         "-osc", "0.2", "-distance", "100", "-detpixels", "64", "-pixel", "0.4"]
MIXED_PIXEL = (40, 50)  # slow, fast


def _keys(records: list[TraceRecord]) -> list[tuple[str, tuple[int, ...]]]:
    return [(r.name, r.index) for r in records]


def _vector_close(a: tuple[float, ...], b: tuple[float, ...], rtol: float) -> bool:
    """Within rtol of the record's largest component (a near-zero component of a vector,
    e.g. a Miller index near 0, carries the rounding of the whole vector)."""
    x, y = np.asarray(a), np.asarray(b)
    if x.shape != y.shape:
        return False
    return bool(np.all(np.abs(x - y) <= rtol * max(np.max(np.abs(x)), np.max(np.abs(y)))))


def _unexplained(c: list[TraceRecord], t: list[TraceRecord], rtol: float = RTOL) -> list[str]:
    """Rows that align_traces marks and that are not within rtol of the record's scale."""
    rows = align_traces({"c": c, "torch": t}, None, rtol, 0.0)
    assert len(rows) == len(c)
    bad = []
    for row in rows:
        a, b = row.values["c"], row.values["torch"]
        assert b is not None, f"torch has no {row.name} at {row.index}"
        tol = max(rtol, F32_ULP) if row.name == "pixel" else rtol
        if row.differs and not _vector_close(a, b, tol):
            bad.append(f"{row.name} {row.index}: c {a} torch {b}")
    return bad


def _sim(args: list[str]) -> Simulator:
    return from_args(args, backend="c", threads=2)


def _pixels(sim: Simulator) -> list[tuple[int, int]]:
    """(slow, fast) of the brightest and the dimmest pixel of the C image."""
    image = sim.run().image
    return [tuple(int(i) for i in np.unravel_index(k, image.shape)) for k in (np.argmax(image), np.argmin(image))]


@pytest.mark.parametrize("name", CASES)
def test_torch_trace_matches_c(name: str, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(scratch(tmp_path))
    sim = _sim(load_case(name).full_args())
    plan = Plan(sim.config, sim.inputs)
    for slow, fast in _pixels(sim):
        c, c_value = c_trace_pixel(plan.config, None, fast, slow, plan=plan)
        t, t_value = trace_pixel(sim.config, sim.inputs, fast, slow, dtype="float64", device="cpu")
        where = f"{name} pixel (slow {slow}, fast {fast})"
        assert all(isinstance(r, TraceRecord) and len(r.index) == 6 for r in t)
        assert _keys(t) == _keys(c), where
        assert t[-1].name == "pixel" and t[-1].values == (t_value,)
        if name == "mosaic":
            _check_mosaic(c, t, where)
            assert t_value == pytest.approx(c_value, rel=1e-6), where
            continue
        assert _unexplained(c, t) == [], where
        assert t_value == pytest.approx(c_value, rel=F32_ULP, abs=0.0), where


def _check_mosaic(c: list[TraceRecord], t: list[TraceRecord], where: str) -> None:
    """Everything up to the domains' orientations agrees to 1e-9; the first difference
    is a Miller index of a rotated domain, which stays within 1e-8 of the vector."""
    rows = align_traces({"c": c, "torch": t}, None, RTOL, 0.0)
    first = next((r for r in rows if r.differs), None)
    assert first is not None and first.name == "hkl" and first.index[5] >= 1, where
    downstream = ("I_sum", "I_total", "pixel")
    for row in rows:
        a, b = row.values["c"], row.values["torch"]
        if row.index[5] <= 0 and row.name not in downstream:
            assert _vector_close(a, b, RTOL), f"{where}: {row.name} {row.index}"
        if row.name == "hkl":
            assert _vector_close(a, b, 1e-8), f"{where}: {row.name} {row.index}"
        if row.name == "I_total":
            assert _vector_close(a, b, 1e-6), where


def test_torch_trace_mixed_loop_semantics() -> None:
    """Layers, sub-pixels, sources cut by dmin and phi steps: skips and carried factors."""
    sim = _sim(MIXED)
    slow, fast = MIXED_PIXEL
    c, c_value = c_trace_pixel(sim.config, sim.inputs, fast, slow)
    t, t_value = trace_pixel(sim.config, sim.inputs, fast, slow)
    # the case does what it is here for: some (sub-pixel, source) pairs pass, some do not
    n_stol = sum(r.name == "stol" for r in c)
    n_polar = sum(r.name == "polarization" for r in c)
    assert 0 < n_polar < n_stol
    assert not any(r.name == "polarization" and r.index[3] == 0 for r in c)
    assert _keys(t) == _keys(c)
    assert _unexplained(c, t) == []
    assert t_value == pytest.approx(c_value, rel=F32_ULP, abs=0.0)
    # the traced value is what the torch engine renders
    image = TorchModel(sim.config, sim.inputs).image()
    assert t_value == float(np.float32(float(image[slow, fast])))


def test_torch_trace_float32() -> None:
    """Single precision: geometry to a few ulps, Miller indices to 1e-5 of the vector; the
    lattice factors and sums amplify that, and are held to the golden float32 bar."""
    sim = _sim(MIXED)
    slow, fast = MIXED_PIXEL
    c, c_value = c_trace_pixel(sim.config, sim.inputs, fast, slow)
    t, t_value = trace_pixel(sim.config, sim.inputs, fast, slow, dtype="float32")
    assert _keys(t) == _keys(c)
    amplified = ("F_latt_abc", "F_latt", "I_sum", "I_total", "pixel")
    for a, b in zip(c, t, strict=True):
        tol = 2e-3 if a.name in amplified else (1e-5 if a.name in ("scattering", "stol", "hkl") else 1e-6)
        assert _vector_close(a.values, b.values, tol), f"{a.name} {a.index}: c {a.values} torch {b.values}"
    assert t_value == pytest.approx(c_value, rel=2e-3)


@pytest.mark.parametrize("fast, slow", [(64, 0), (0, 64), (-1, 3), (3, -1)])
def test_torch_trace_pixel_outside_detector(fast: int, slow: int) -> None:
    sim = _sim(MIXED)
    with pytest.raises(ValueError, match="outside"):
        trace_pixel(sim.config, sim.inputs, fast, slow)


def test_planted_difference_is_reported_where_it_is() -> None:
    sim = _sim(MIXED)
    slow, fast = MIXED_PIXEL
    c, _ = c_trace_pixel(sim.config, sim.inputs, fast, slow)
    t, _ = trace_pixel(sim.config, sim.inputs, fast, slow)
    assert not any(r.differs for r in align_traces({"c": c, "torch": t}, None, RTOL, 0.0))
    # perturb one torch value in the middle of the loop by 1e-6 of itself
    k = next(i for i, r in enumerate(t) if r.name == "F_latt" and r.index == (1, 0, 1, 2, 1, 0))
    vals = list(t[k].values)
    vals[0] *= 1 + 1e-6
    planted = list(t)
    planted[k] = dataclasses.replace(t[k], values=tuple(vals))
    rows = align_traces({"c": c, "torch": planted}, None, RTOL, 0.0)
    first = next(r for r in rows if r.differs)
    assert (first.name, first.index) == ("F_latt", (1, 0, 1, 2, 1, 0))
    assert [r for r in rows if r.differs] == [first]  # only that record; nothing else was touched


def test_trace_command_both_engines(tmp_path, monkeypatch, capsys) -> None:
    """``pybragg trace --pixel S F -- <flags>`` (engines c,torch by default) on a golden case."""
    monkeypatch.chdir(scratch(tmp_path))
    args = load_case("interp_saxs_N1").full_args()
    slow, fast = _pixels(_sim(args))[0]
    rc = cli_main(["trace", "--pixel", str(slow), str(fast), "--", *args])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert "<-- first difference" not in out and "differs" not in out
    header = out.splitlines()[1]
    assert header.split()[-3:] == ["c", "|", "torch"]
    assert "F_cell" in out and "I_sum" in out and "pixel" in out


def test_trace_command_json_subprocess(tmp_path) -> None:
    """The console command on the checkout: both engines' values in the JSON."""
    case = load_case("oversample_toggles")
    cwd = scratch(tmp_path)
    slow, fast = 34, 95  # the brightest pixel
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="2")
    proc = subprocess.run(
        [sys.executable, "-m", "pybragg.cli.main", "trace", "--pixel", str(slow), str(fast), "--json", "--",
         *case.full_args()],
        cwd=cwd, capture_output=True, text=True, timeout=300, env=env, check=False)
    assert proc.returncode == 0, proc.stderr
    payload = json.loads(proc.stdout)
    assert payload["pixel"] == {"slow": slow, "fast": fast}
    assert set(payload["values"]) == {"c", "torch"}
    assert payload["values"]["c"] > 100.0
    assert payload["values"]["torch"] == pytest.approx(payload["values"]["c"], rel=1e-6)
    assert payload["first_difference"] is None
    rows = payload["rows"]
    assert rows and all(r["values"]["c"] is not None and r["values"]["torch"] is not None for r in rows)
    assert not any(r["differs"] for r in rows)
    hkl = [r for r in rows if r["name"] == "hkl"]
    assert len(hkl) == 4  # 2x2 sub-pixels, one source and one orientation
