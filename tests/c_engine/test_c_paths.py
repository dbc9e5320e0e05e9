"""The C kernel's code paths (portable C, AVX2 where the processor has it) give the same image.

Every golden case is rendered in-process with each path this machine runs: every image
is held to the golden float64 bar, and the paths must agree bit for bit (the engine is
compiled without contraction into fused multiply-adds, so every path rounds alike).
The fast path's short sine polynomial (docs/performance.md: relative error of a pixel
below 2.7e-10) is checked against numpy's library sines where its error is
largest: many cells, high indices, reduced arguments spread over the whole range.
"""

from __future__ import annotations

import numpy as np
import pytest

from golden import case_names, compare_float, load_case, scratch
from pybragg.engines import c_engine
from pybragg.errors import EngineError
from pybragg.flags import from_args
from pybragg.plan import Plan

PATHS = c_engine.code_paths()


def test_portable_path_always_there() -> None:
    assert "portable" in PATHS


@pytest.mark.parametrize("name", case_names())
def test_golden_case_every_code_path(name: str, tmp_path, monkeypatch) -> None:
    case = load_case(name)
    monkeypatch.chdir(scratch(tmp_path))
    sim = from_args(case.full_args(), backend="c", threads=2)
    plan = Plan(sim.config, sim.inputs)
    ref = np.frombuffer(case.reference("float.bin"), dtype="<f4").reshape(plan.shape)
    images = {}
    for path in ["auto", *PATHS]:
        images[path], _ = c_engine.render_plan(plan, threads=2, code_path=path)
        compare_float(images[path], ref)
    for path, image in images.items():
        assert np.array_equal(image, images["auto"]), f"{path} differs from auto"


def test_unknown_or_missing_path() -> None:
    sim = from_args(["-cell", "100", "100", "100", "90", "90", "90", "-default_F", "100", "-N", "5",
                     "-detpixels", "8"])
    plan = Plan(sim.config, sim.inputs)
    with pytest.raises(ValueError, match="unknown C code path"):
        c_engine.render_plan(plan, code_path="sse9")
    if "avx2" not in PATHS:
        with pytest.raises(EngineError, match="not available"):
            c_engine.render_plan(plan, code_path="avx2")


# many cells along each axis and high indices: every reduced argument of the lattice
# factor's sines occurs, up to |pi r| = pi/2 (the polynomial's relative error equioscillates
# over the whole interval, so its largest error is reached all over); 4 phi steps
EDGE = ["-cell", "60", "70", "80", "90", "90", "90", "-misset", "10", "20", "30", "-default_F", "100",
        "-Na", "47", "-Nb", "36", "-Nc", "29", "-lambda", "1", "-distance", "40", "-detpixels", "96",
        "-pixel", "0.8", "-oversample", "1", "-phisteps", "4", "-osc", "0.2"]


def exact_sum(hkl: np.ndarray, N: tuple[int, int, int], F: float) -> float:
    """A pixel's sum F^2 F_latt^2 over its orientations with numpy's sines on exactly reduced arguments."""
    d = hkl - np.rint(hkl)
    Nd = np.array(N, dtype=np.float64) * d
    e = Nd - np.rint(Nd)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.where(d == 0.0, np.array(N, dtype=np.float64), np.sin(np.pi * e) / np.sin(np.pi * d))
    return float(np.sum(F * F * np.prod(ratio, axis=1) ** 2))


def test_short_sine_error_bound(tmp_path, monkeypatch) -> None:
    """Each traced pixel's sum (the render's arithmetic) within 2.7e-10 of the exact sum of its terms."""
    monkeypatch.chdir(tmp_path)
    sim = from_args(EDGE, backend="c", threads=2)
    plan = Plan(sim.config, sim.inputs)
    image, _ = c_engine.render_plan(plan, threads=2)
    peak = float(image.max())
    rng = np.random.default_rng(5)
    bright = np.argwhere(image > 1e-6 * peak)
    some = np.argwhere(image >= 0)
    pixels = np.concatenate([bright[rng.permutation(len(bright))[:150]], some[rng.permutation(len(some))[:150]]])
    assert len(bright) > 100
    worst = 0.0
    for slow, fast in pixels:
        records, value = c_engine.trace_pixel(plan.config, None, int(fast), int(slow), plan=plan)
        hkl = np.array([r.values for r in records if r.name == "hkl"])
        assert len(hkl) == 4
        total = next(r.values[0] for r in records if r.name == "I_total")
        assert value == float(image[slow, fast])  # the trace is the render
        exact = exact_sum(hkl, (47, 36, 29), 100.0)
        worst = max(worst, abs(total - exact) / exact)
    print(f"largest relative error of a pixel sum {worst:.3g} over {len(pixels)} pixels")
    assert worst <= 2.7e-10  # the bound of docs/performance.md; this frame reaches 1.9e-10
    # the image: far inside the float64 bar (1e-5 x max)
    assert worst * 1e3 < 1e-5




def test_table_modes_match_the_pixel_path(tmp_path, monkeypatch) -> None:
    """A table that covers the middle of the detector only: blocks of pixels whose every index lies in it
    (looked up untested), blocks across its edge (tested) and pixels beyond it (default_F) render what
    the per-pixel path (the trace) computes, bit for bit, on every code path."""
    monkeypatch.chdir(tmp_path)
    rows = [f"{h} {k} {l} {10 + (3 * h + 5 * k + 7 * l) % 11}" for h in range(-3, 4) for k in range(-3, 4)
            for l in range(-3, 4)]
    (tmp_path / "small.hkl").write_text("\n".join(rows) + "\n")
    sim = from_args(["-cell", "20", "20", "20", "90", "90", "90", "-misset", "5", "10", "15", "-hkl", "small.hkl",
                     "-default_F", "3", "-N", "6", "-lambda", "1", "-distance", "100", "-detpixels", "64",
                     "-pixel", "1.0", "-oversample", "1", "-phisteps", "2", "-osc", "0.5"], backend="c", threads=2)
    plan = Plan(sim.config, sim.inputs)
    images = {path: c_engine.render_plan(plan, threads=2, code_path=path)[0] for path in PATHS}
    image = images["portable"]
    for path, other in images.items():
        assert np.array_equal(other, image), path
    outside = inside = 0
    for slow in range(0, 64, 3):
        for fast in range(0, 64, 3):
            records, value = c_engine.trace_pixel(plan.config, None, fast, slow, plan=plan)
            assert value == float(image[slow, fast]), (slow, fast)
            near = np.array([r.values for r in records if r.name == "hkl_nearest"])
            out = np.any(np.abs(near) > 3, axis=1)
            outside += int(out.any())
            inside += int((~out).all())
    # the frame has pixels with every index inside the table and pixels with indices beyond it
    assert outside > 20 and inside > 20, (outside, inside)
