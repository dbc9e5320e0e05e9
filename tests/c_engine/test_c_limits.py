"""The C plan refuses what it cannot render (issue 10): counts that would overflow, inputs that would
need more memory than the limit, derived quantities that would give non-finite or negative pixels,
and a render stops early when its cancellation flag is set.

Every case once crashed (SIGSEGV), rendered NaN or negative pixels, or was silently accepted; now it
is one :class:`~pybragg.errors.PybraggError` whose message names the flag.  Runs without torch (CI
runs this directory under AddressSanitizer and UBSan), with small inputs only: the memory cases cap
the limit with ``PYBRAGG_MEMORY_LIMIT`` (the hard ``RLIMIT_AS`` cases are in
``tests/cli/test_c_memory_limit.py``, as ASan cannot run under an address-space limit).
"""

from __future__ import annotations

import dataclasses
import re
import threading
import time
from types import SimpleNamespace

import numpy as np
import pytest

from pybragg._native import native
from pybragg.engines import c_engine
from pybragg.errors import EngineError, PybraggError, ResourceLimitError, UsageError
from pybragg.flags import from_args
from pybragg.inputs import Inputs
from pybragg.io.hkl import HKLTable
from pybragg.plan import Plan

SMALL = ["-default_F", "100", "-N", "2", "-cell", "50", "50", "50", "90", "90", "90", "-lambda", "1",
         "-distance", "100", "-detpixels", "8"]


def plan_of(*extra: str) -> Plan:
    sim = from_args([*SMALL, *extra], backend="c")
    return Plan(sim.config, sim.inputs)


def refused(extra: tuple[str, ...] | list[str], *names: str, error: type = EngineError) -> str:
    """The plan of SMALL + extra is refused with ``error``, and the message names every one of ``names``."""
    with pytest.raises(error) as info:
        plan_of(*extra)
    message = str(info.value)
    assert "\n" not in message
    for name in names:
        assert name in message, (name, message)
    return message


def table(F: np.ndarray, h_min: int = 0, k_min: int = 0, l_min: int = 0) -> HKLTable:
    """An HKLTable holding F as it is (the C plan's own checks, past the Python reader's)."""
    t = HKLTable(F=np.ones(F.shape), h_min=0, k_min=0, l_min=0, count=F.size)
    for name, value in (("F", F), ("h_min", h_min), ("k_min", k_min), ("l_min", l_min)):
        object.__setattr__(t, name, value)
    return t


def config_with(**fields: dict) -> tuple:
    """SMALL's configuration with some fields replaced: {"detector": {...}, "beam": {...}}, past the
    parser's own checks, so that the C plan's are tested."""
    sim = from_args(SMALL, backend="c")
    parts = {name: dataclasses.replace(getattr(sim.config, name), **values) for name, values in fields.items()}
    return dataclasses.replace(sim.config, **parts), sim.inputs


def render_ok(*extra: str) -> np.ndarray:
    image, _ = c_engine.render_plan(plan_of(*extra), threads=2)
    assert np.isfinite(image).all() and (image >= 0).all()
    return image


# ---- class 1: counts that overflowed a 32-bit int (each crashed with SIGSEGV) -------------------

@pytest.mark.parametrize(("extra", "names"), [
    (("-divergence", "1", "-divsteps", "46341", "-square_div"), ("-divsteps/-dispsteps", "46341 x 46341 x 1")),
    (("-mosaic", "1", "-mosaic_domains", "2000000000"), ("-mosaic_domains", "2000000000")),
    (("-mosaic", "1", "-mosaic_domains", "100000", "-osc", "1", "-phisteps", "100000"),
     ("-phisteps/-mosaic_domains", "100000 x 100000")),
    (("-osc", "10", "-phistep", "1e-12"), ("-osc/-phistep",)),
    (("-hdivrange", "1", "-hdivstep", "1e-15"), ("-hdivrange/-hdivstep",)),
    (("-oversample", "1000000000"), ("-oversample", "1000000000")),
    (("-oversample", "2000000", "-dispersion", "10", "-dispsteps", "100000", "-mosaic", "1",
      "-mosaic_domains", "100000"), ("-oversample", "too many")),
])
def test_counts_beyond_the_engine_are_refused(extra, names) -> None:
    refused(extra, *names)


def test_threads_beyond_the_limit_are_refused() -> None:
    plan = plan_of()
    with pytest.raises(EngineError, match="--threads: 100000 is too large"):
        c_engine.render_plan(plan, threads=100000)
    image, _ = c_engine.render_plan(plan, threads=3)
    assert (image > 0).all()


def test_out_of_range_integers_name_the_field() -> None:
    sim = from_args(SMALL, backend="c")
    config = dataclasses.replace(sim.config, detector=dataclasses.replace(sim.config.detector, fpixels=2**40))
    with pytest.raises(UsageError, match=r"detector\.fpixels"):
        Plan(config, sim.inputs)
    with pytest.raises(UsageError, match="-hkl: the lowest h index: 1099511627776 is out of the C engine's range"):
        Plan(sim.config, Inputs(hkl=table(np.ones((2, 2, 2)), h_min=2**40)))
    with pytest.raises(EngineError, match="-hkl: Miller index h"):
        Plan(sim.config, Inputs(hkl=table(np.ones((4, 2, 2)), h_min=2**31 - 2)))


# ---- class 7: derived quantities that gave NaN, infinite or negative pixels -------------------

def test_the_spectrum_must_stay_above_zero() -> None:
    # 200 % with 3 steps: a source of wavelength 0 (an all-NaN image, or SIGSEGV in the interpolation)
    refused(("-dispersion", "200", "-dispsteps", "3"), "-dispersion", "200%", "wavelength 0 m")
    # 300 %: a negative wavelength
    refused(("-dispersion", "300",), "-dispersion", "-5e-11 m")
    render_ok("-dispersion", "150", "-dispsteps", "3")


def test_detector_axes() -> None:
    refused(("-fdet_vector", "1", "0", "0", "-sdet_vector", "1", "0", "0"), "-fdet_vector/-sdet_vector", "parallel")
    sim = from_args(SMALL, backend="c")
    d = dataclasses.replace(sim.config.detector, convention=0, fdet_vector=(0.0, 0.0, 0.0))
    with pytest.raises(EngineError, match="-fdet_vector: the fast detector axis is zero"):
        Plan(dataclasses.replace(sim.config, detector=d), sim.inputs)
    d = dataclasses.replace(sim.config.detector, twotheta=0.1, convention=0, twotheta_axis=(0.0, 0.0, 0.0))
    with pytest.raises(EngineError, match="-twotheta_axis"):
        Plan(dataclasses.replace(sim.config, detector=d), sim.inputs)


def test_a_detector_facing_away_is_refused() -> None:
    # MOSFLM turns the detector about the beam spot: beyond 90 degrees its back faces the sample
    # and every solid angle (so every pixel) was negative
    message = refused(("-twotheta", "120"), "-twotheta 120", "faces away", "50 mm")
    assert "pivot BEAM" in message
    refused(("-twotheta", "100", "-detector_rotx", "5"), "-twotheta 100, -detector_rotx 5", "faces away")
    # turned about the sample (XDS) the detector keeps facing it: a finite, non-negative image
    assert render_ok("-xds", "-twotheta", "120").max() > 0
    assert render_ok("-twotheta", "60").max() > 0


def test_sources_from_a_list() -> None:
    sim = from_args(SMALL, backend="c")
    nan = np.nan
    for row, words in [((np.inf, 0, 0, 1, nan), "position is not finite"),
                       ((-10, 0, 0, -1, nan), "weight must be finite and not negative"),
                       ((-10, 0, 0, 1, 0.0), "wavelength must be positive"),
                       ((-10, 0, 0, 1, np.inf), "wavelength must be positive"),
                       ((0, 0, 0, 1, nan), "sits at the sample")]:
        with pytest.raises(EngineError, match=f"^source 1: {words}|^source 1 {words}"):
            Plan(sim.config, Inputs(sources=np.array([[-10, 0, 0, 1, nan], row], dtype=float)[1:]))


@pytest.mark.parametrize(("extra", "names"), [
    (("-water", "1e12"), ("-water",)),
    (("-default_F", "1e30"), ("-default_F", "brightest pixel")),
    (("-fluence", "1e300", "-default_F", "1e10"), ("-fluence", "single precision")),
])
def test_pixels_that_would_overflow_a_float(extra, names) -> None:
    refused(extra, *names)


def test_table_values_must_be_finite_when_squared() -> None:
    sim = from_args(SMALL, backend="c")
    for value, words in [(np.nan, "is not finite"), (1e300, "is not finite when squared")]:
        F = np.ones((3, 3, 3))
        F[2, 1, 0] = value
        with pytest.raises(EngineError, match=f"-hkl: structure factor .* of reflection 1 0 -1 {words}"):
            Plan(sim.config, Inputs(hkl=table(F, -1, -1, -1)))


def test_kahn_factor_and_water_range() -> None:
    for beam, words in [({"polarization": 2.0}, "-polar"), ({"water_size": -1e-6}, "-water")]:
        config, inputs = config_with(beam={"nopolar": False, **beam})
        with pytest.raises(EngineError, match=words):
            Plan(config, inputs)


# ---- class 2: memory checked against the limit before it is allocated ------------------------

MESSAGE = re.compile(r"needs \d+\.\d [KMGT]iB, more than the \d+\.\d [KMGT]iB available$")


@pytest.mark.parametrize(("extra", "names"), [
    (("-divergence", "1", "-divsteps", "2000", "-square_div"), ("-divsteps/-dispsteps: 2000 x 2000 x 1 sources",)),
    (("-mosaic", "1", "-mosaic_domains", "1000000"), ("-phisteps/-mosaic_domains: 1 x 1000000 crystal orientations",)),
    (("-mosaic", "1", "-mosaic_domains", "1000", "-osc", "1", "-phisteps", "1000"),
     ("-phisteps/-mosaic_domains: 1000 x 1000 crystal orientations",)),
])
def test_memory_limit(extra, names, monkeypatch) -> None:
    monkeypatch.setenv("PYBRAGG_MEMORY_LIMIT", "64M")
    message = refused(extra, *names, error=ResourceLimitError)
    assert MESSAGE.search(message), message


def test_memory_limit_detector(monkeypatch) -> None:
    config, inputs = config_with(detector={"fpixels": 5000, "spixels": 5000})
    monkeypatch.setenv("PYBRAGG_MEMORY_LIMIT", "64M")
    with pytest.raises(ResourceLimitError, match=r"^-detpixels/-detsize: the 5000 x 5000 image needs 95\.7 MiB, "
                                                 r"more than the 64\.0 MiB available$"):
        Plan(config, inputs)


def test_memory_limit_table_and_mask(monkeypatch) -> None:
    sim = from_args(SMALL, backend="c")
    big_table = table(np.ones((100, 100, 100)), -50, -50, -50)
    mask = np.ones((3000, 3000), dtype=np.uint8)
    monkeypatch.setenv("PYBRAGG_MEMORY_LIMIT", "4M")
    with pytest.raises(ResourceLimitError, match=r"-hkl: the copy of the 100 x 100 x 100 structure-factor table "
                                                 r"needs 7\.6 MiB, more than the 4\.0 MiB available"):
        Plan(sim.config, Inputs(hkl=big_table))
    big, _ = config_with(detector={"fpixels": 3000, "spixels": 3000})
    monkeypatch.setenv("PYBRAGG_MEMORY_LIMIT", "40M")
    with pytest.raises(ResourceLimitError, match="-mask: the copy of the 3000 x 3000 mask needs 8.6 MiB"):
        Plan(big, Inputs(mask=mask))
    monkeypatch.setenv("PYBRAGG_MEMORY_LIMIT", "64M")
    assert Plan(sim.config, Inputs(hkl=big_table)).shape == (8, 8)


def test_memory_error_is_a_pybragg_error(monkeypatch) -> None:
    monkeypatch.setenv("PYBRAGG_MEMORY_LIMIT", "1K")
    with pytest.raises(ResourceLimitError) as info:
        plan_of()
    assert isinstance(info.value, PybraggError) and isinstance(info.value, MemoryError)


# ---- class 5: cancellation --------------------------------------------------------------------

def test_a_cancelled_render_stops_and_says_so() -> None:
    ffi, lib = native()
    plan = plan_of("-detpixels", "64")
    image = np.zeros(plan.shape, dtype=np.float32)
    opts = ffi.new("pb_render_options *")
    cancel = ffi.new("int[1]", [1])
    opts.cancel = cancel
    err = ffi.new("pb_error *")
    code = lib.pb_render(plan.handle, ffi.cast("float *", image.ctypes.data), ffi.NULL, opts, err)
    assert code == lib.PB_ERR_CANCELLED and b"cancelled" in ffi.string(err.message)
    assert not image.any()  # no row was started
    cancel[0] = 0
    assert lib.pb_render(plan.handle, ffi.cast("float *", image.ctypes.data), ffi.NULL, opts, err) == lib.PB_OK
    assert image.all()


def test_an_exception_in_the_waiting_thread_stops_the_render() -> None:
    # about 30 s of work on this machine; the progress callback raises on its first call (0.05 s)
    plan = plan_of("-detpixels", "400", "-mosaic", "1", "-mosaic_domains", "20000")
    calls = []

    def progress(fraction: float) -> None:
        calls.append(fraction)
        raise KeyboardInterrupt

    start = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        c_engine.render_plan(plan, threads=2, progress=progress)
    assert time.monotonic() - start < 3.0
    assert calls and calls[0] < 0.5
    deadline = time.monotonic() + 1.0  # the worker ends right after the pass returns
    while any(t.name == "pybragg-c-render" for t in threading.enumerate()) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not any(t.name == "pybragg-c-render" for t in threading.enumerate())


def test_a_background_pass_is_cancelled_too() -> None:
    ffi, lib = native()
    plan = plan_of("-detpixels", "16")
    from pybragg.background import c_background
    from pybragg.config import SampleConfig

    stol = SimpleNamespace(stol=np.array([0.0, 1e10]), F=np.array([2.57, 2.57]))
    bg, keep = c_background(SampleConfig(), SimpleNamespace(stol=stol))
    image = np.zeros(plan.shape, dtype=np.float32)
    opts = ffi.new("pb_render_options *")
    cancel = ffi.new("int[1]", [1])
    opts.cancel = cancel
    err = ffi.new("pb_error *")
    code = lib.pb_render_background(plan.handle, bg, ffi.cast("float *", image.ctypes.data), ffi.NULL, opts, err)
    assert code == lib.PB_ERR_CANCELLED and not image.any()
    opts.nthreads = 5000
    code = lib.pb_render_background(plan.handle, bg, ffi.cast("float *", image.ctypes.data), ffi.NULL, opts, err)
    assert code == lib.PB_ERR_INVALID and b"--threads" in ffi.string(err.message)
    del keep


def test_vectors_at_the_ends_of_the_double_range() -> None:
    # the length of (1e300, 1e300, 1e300) overflows: it used to normalise to zero ("the detector plane
    # passes through the sample"); it is the direction (1, 1, 1)
    for extra in (("-beam_vector", "1e300", "1e300", "1e300"), ("-beam_vector", "1e-300", "0", "0"),
                  ("-fdet_vector", "1e308", "1e308", "0", "-sdet_vector", "0", "-1", "0")):
        assert render_ok(*extra).max() > 0
    config, inputs = config_with(detector={"has_pix0": True, "pix0_vector": (0.0, 0.0, 0.0), "convention": 0})
    with pytest.raises(EngineError, match="^-pix0_vector: the detector plane passes through the sample$"):
        Plan(config, inputs)


def test_a_trace_too_large_is_refused(monkeypatch) -> None:
    plan = plan_of("-mosaic", "1", "-mosaic_domains", "1000", "-oversample", "100")
    monkeypatch.setenv("PYBRAGG_MEMORY_LIMIT", "64M")
    with pytest.raises(ResourceLimitError, match=r"the trace of pixel \(1, 2\): up to \d+ records needs"):
        c_engine.trace_pixel(plan.config, None, 1, 2, plan=plan)
    plan = plan_of("-mosaic", "1", "-mosaic_domains", "100000", "-oversample", "200")
    with pytest.raises(UsageError, match="more than the engine can count"):
        c_engine.trace_pixel(plan.config, None, 1, 2, plan=plan)
    records, value = c_engine.trace_pixel(plan_of().config, None, 1, 2)
    assert records[-1].name == "pixel" and value > 0


def test_too_many_panels_are_refused() -> None:
    from pybragg.config import PanelConfig

    panels = tuple(PanelConfig(name=f"p{i}", fpixels=1, spixels=1, origin=(0.1, 0.0, 0.0), data_fast=i)
                   for i in range(16385))
    config, inputs = config_with(detector={"panels": panels})
    with pytest.raises(EngineError, match=r"^-geom/-expt: 16385 panels are too many \(at most 16384\)$"):
        Plan(config, inputs)


def test_a_huge_point_spread_function_is_clipped_to_the_image() -> None:
    # the automatic radius of a PSF wider than 2^31 pixels overflowed an int
    ffi, lib = native()
    image = np.full((4, 4), 100.0, dtype=np.float32)
    out = np.zeros_like(image)
    radius = ffi.new("int *")
    err = ffi.new("pb_error *")
    for kind in (lib.PB_PSF_GAUSS, lib.PB_PSF_FIBER):
        code = lib.pb_response_psf(ffi.cast("const float *", image.ctypes.data), 4, 4, kind, 1e12, 0,
                                   ffi.cast("float *", out.ctypes.data), ffi.NULL, radius, err)
        assert code == lib.PB_OK and radius[0] == 4
        assert np.isfinite(out).all() and (out >= 0).all()


def test_miller_indices_beyond_an_int_are_refused() -> None:
    # a tiny wavelength (with -oversample given: the automatic choice would refuse it first) gave
    # indices beyond 2^31, converted to int in the pixel loop
    refused(("-lambda", "1e-10", "-oversample", "1"), "-lambda/-cell", "Miller indices up to 1e+12")
    assert render_ok("-lambda", "0.01", "-oversample", "1").max() > 0
