"""The reference's random streams, checked against numbers it printed.

The angles below were printed by the reference nanoBragg ("random orientation
misset angles: ... deg") for ``-misset_seed S -misset random`` (flags in that
order, so that its substring matching does not turn ``-misset_seed`` into
``-misset S ...``; see docs/differences.md).
"""

from __future__ import annotations

import io
import math

import numpy as np
import pytest

from pybragg.cli.main import ProgressBar
from pybragg.flags import from_args
from pybragg.noise import random_uniform
from pybragg.plan import Plan

CELL = ["-cell", "100", "100", "100", "90", "90", "90", "-default_F", "100", "-N", "5", "-detpixels", "16"]


@pytest.mark.parametrize("seed, angles", [
    (4242, (-163.713095, -27.840487, -175.580921)),
    (77, (-50.433049, 15.844024, 15.618692)),
])
def test_random_misset_angles_match_the_reference(seed: int, angles: tuple[float, float, float]) -> None:
    sim = from_args(["-misset", "random", "-misset_seed", str(seed), *CELL])
    got = [math.degrees(x) for x in Plan(sim.config, sim.inputs).geometry.misset]
    assert got == pytest.approx(angles, abs=5e-7)


def test_random_misset_cell_vectors_match_the_reference() -> None:
    """Real-space axes the reference printed for seed 4242 (Angstrom, 8 decimals)."""
    sim = from_args(["-misset", "random", "-misset_seed", "4242", *CELL])
    g = Plan(sim.config, sim.inputs).geometry
    assert [x * 1e10 for x in g.a] == pytest.approx([-88.16224483, -6.81324689, 46.70115902], abs=1e-8)
    assert [x * 1e10 for x in g.b] == pytest.approx([-20.45417237, 94.69243284, -24.79858859], abs=1e-8)
    assert [x * 1e10 for x in g.c] == pytest.approx([-42.53287457, -31.41532795, -84.87656773], abs=1e-8)


def _minimal_standard_shuffled(seed: int, n: int) -> list[float]:
    """An independent model of the reference's uniform generator: the Park-Miller
    minimal standard generator x -> 16807 x mod (2^31 - 1) behind a 32-entry
    Bays-Durham shuffle table warmed up with 8 extra draws, seeded like ``-seed S``
    (state -S; a state below 1 starts from 1)."""
    m = 2**31 - 1
    x = max(seed, 1)
    table = [0] * 32
    for j in range(39, -1, -1):
        x = 16807 * x % m
        if j < 32:
            table[j] = x
    last = table[0]
    out = []
    for _ in range(n):
        x = 16807 * x % m
        slot = last // (1 + (m - 1) // 32)
        last = table[slot]
        table[slot] = x
        out.append(min(float(np.float32(last / m)), float(np.float32(1.0 - 1.2e-7))))
    return out


@pytest.mark.parametrize("seed", [1, 1040, 12345678])
def test_uniform_generator_matches_an_independent_model(seed: int) -> None:
    got = [float(x) for x in random_uniform(seed, 2000)]
    assert got == _minimal_standard_shuffled(seed, 2000)


def test_mosaic_domains_are_rotations_and_the_first_is_identity() -> None:
    sim = from_args([*CELL, "-mosaic", "1", "-mosaic_dom", "5", "-mosaic_seed", "777"])
    U = Plan(sim.config, sim.inputs).mosaic
    assert U.shape == (5, 3, 3)
    assert (U[0] == [[1, 0, 0], [0, 1, 0], [0, 0, 1]]).all()
    for R in U[1:]:
        assert np.allclose(R @ R.T, np.eye(3), atol=1e-12)
        angle = math.degrees(math.acos(max(-1.0, min(1.0, (R.trace() - 1) / 2))))
        assert 0 < angle <= 1.0 + 1e-9  # within the 1-degree cap


def test_progress_bar_waits_one_second_then_draws() -> None:
    out = io.StringIO()
    bar = ProgressBar(out, delay=1.0)
    bar(0.5)
    assert out.getvalue() == ""  # a render shorter than a second shows nothing
    bar.start -= 2.0
    bar(0.5)
    assert "50.0%" in out.getvalue() and "#" * 20 in out.getvalue()
    bar.close()
    assert out.getvalue().endswith("\n")
