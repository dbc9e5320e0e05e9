"""The gradient-descent example in docs/examples converges to the truth."""

from __future__ import annotations

import importlib.util
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "fit_geometry.py"


def test_fit_recovers_distance_beam_centre_and_cell() -> None:
    spec = importlib.util.spec_from_file_location("fit_geometry", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    fitted = module.fit(verbose=False)
    truth, start = module.TRUTH, module.START
    assert abs(fitted["distance"] - truth["distance"]) < 1e-6  # 1 micrometre (started 500 off)
    assert abs(fitted["Xbeam"] - truth["Xbeam"]) < 1e-6
    assert abs(fitted["Ybeam"] - truth["Ybeam"]) < 1e-6
    assert abs(fitted["a"] - truth["a"]) < 1e-13  # 0.001 A (started 0.3 A off)
    assert all(abs(start[k] - truth[k]) > 100 * abs(fitted[k] - truth[k]) for k in truth)
