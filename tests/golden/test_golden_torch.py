"""Every reference case through the torch engine (in-process, CPU), held to the golden float bars.

The torch engine must match the reference in both precisions: float64 to the C engine's
bar and float32 to the single-precision bar of ../shared/golden/README.md.  A few cases
also compare the statistics that the engine reports itself (solid-angle sum,
interpolation fallbacks) with the C engine's.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch  # noqa: F401 - the torch engine is required here, never skipped

from golden import case_names, compare_float, load_case, scratch
from pybragg.engines.torch import driver, structure_factors
from pybragg.flags import from_args


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", case_names())
def test_golden_case_torch(name: str, dtype: str, tmp_path, monkeypatch) -> None:
    case = load_case(name)
    monkeypatch.chdir(scratch(tmp_path))
    sim = from_args(case.full_args(), backend="torch", dtype=dtype, device="cpu", threads=2)
    assert sim.backend == "torch"
    result = sim.run()
    assert result.backend == "torch" and result.dtype == dtype
    assert result.image.dtype == np.dtype(dtype)
    ref = np.frombuffer(case.reference("float.bin"), dtype="<f4")
    assert ref.size == result.image.size
    compare_float(result.image, ref.reshape(result.image.shape), dtype)


# command lines whose statistics are compared with the C engine's: sensor layers,
# oversampling toggles, a mask, a resolution cut, and tricubic interpolation whose
# neighbourhood leaves the table for part of the detector (fallbacks are counted)
STATS_CASES = {
    "absorption": None,
    "oversample_toggles": None,
    "mask": None,
    "dmin_cut": None,
    "interp_fallbacks": ["-cell", "100", "100", "100", "90", "90", "90", "-hkl", "inputs/cubic6.hkl",
                         "-interpolate", "-N", "1", "-lambda", "1.0", "-distance", "100", "-detpixels", "48",
                         "-pixel", "1.0", "-oversample", "2"],
}


@pytest.mark.parametrize("name", sorted(STATS_CASES))
def test_torch_stats_match_c_engine(name: str, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(scratch(tmp_path))
    args = STATS_CASES[name] or load_case(name).full_args()
    c = from_args(args, backend="c", threads=2).run()
    t = from_args(args, backend="torch", dtype="float64", device="cpu", threads=2).run()
    compare_float(t.image, c.image, "float64")
    sc, st = c.stats, t.stats
    assert st.n == sc.n and st.max_I_pixel == sc.max_I_pixel
    assert math.isclose(st.max_I, sc.max_I, rel_tol=1e-6)
    assert math.isclose(st.omega_sum, sc.omega_sum, rel_tol=1e-9)
    assert st.interpolation_fallbacks == sc.interpolation_fallbacks
    if name == "interp_fallbacks":
        assert sc.interpolation_fallbacks > 0


def test_torch_chunking_and_threads_do_not_change_the_image(tmp_path, monkeypatch) -> None:
    """Tiny memory budgets (many chunks), one thread or a pool of threads: same image."""
    case = load_case("mosaic")
    monkeypatch.chdir(scratch(tmp_path))
    args = case.full_args() + ["-roi", "100", "139", "110", "149"]
    whole = from_args(args, backend="torch", dtype="float64", device="cpu", threads=1).run()
    seen: list[float] = []
    small = from_args(args, backend="torch", dtype="float64", device="cpu", threads=3,
                                memory_budget_gib=1e-4).run(progress=seen.append)
    assert small.extras["chunk_pixels"] < 100
    assert seen and seen[-1] == 1.0 and all(a <= b for a, b in itertools.pairwise(seen))
    np.testing.assert_array_equal(small.image, whole.image)


def test_torch_pieces_do_not_change_the_image(tmp_path, monkeypatch) -> None:
    """Chunks split into many small pieces for the orientation-level work: same image."""
    case = load_case("pilatus_roi")
    monkeypatch.chdir(scratch(tmp_path))
    args = case.full_args()
    whole = from_args(args, backend="torch", dtype="float64", device="cpu", threads=1).run()
    monkeypatch.setattr(driver, "_CPU_CHUNK_ELEMENTS", 50)
    monkeypatch.setattr(driver, "_CPU_CHUNK_SUBPIXELS", 400)
    pieces = from_args(args, backend="torch", dtype="float64", device="cpu", threads=1).run()
    assert pieces.extras["chunk_pixels"] == 400
    np.testing.assert_array_equal(pieces.image, whole.image)


def test_torch_table_bound_skips_only_needless_clamps(tmp_path, monkeypatch) -> None:
    """Chunks whose Miller indices are bounded inside the table skip clamping them.

    A small table (|h|, |k|, |l| <= 6) on a detector that reaches |h| = 11: the chunks
    near the beam are inside, the others not, and the image is the one that clamping
    everywhere gives, and the C engine's.
    """
    monkeypatch.chdir(scratch(tmp_path))
    args = ["-cell", "100", "100", "100", "90", "90", "90", "-hkl", "inputs/cubic6.hkl", "-N", "5",
            "-lambda", "1", "-distance", "100", "-detpixels", "64", "-pixel", "0.25", "-misset", "5", "3", "1"]
    verdicts: list[bool] = []
    bound = structure_factors.indices_inside_table

    def spy(*args):  # type: ignore[no-untyped-def]
        verdicts.append(bound(*args))
        return verdicts[-1]

    monkeypatch.setattr(driver, "_CPU_CHUNK_ELEMENTS", 16)
    monkeypatch.setattr(driver, "_CPU_CHUNK_SUBPIXELS", 16)
    monkeypatch.setattr(structure_factors, "indices_inside_table", spy)
    skipping = from_args(args, backend="torch", dtype="float64", device="cpu", threads=1).run()
    assert True in verdicts and False in verdicts
    monkeypatch.setattr(structure_factors, "indices_inside_table", lambda *args: False)
    clamping = from_args(args, backend="torch", dtype="float64", device="cpu", threads=1).run()
    np.testing.assert_array_equal(skipping.image, clamping.image)
    c = from_args(args, backend="c", threads=1).run()
    compare_float(skipping.image, c.image, "float64")
