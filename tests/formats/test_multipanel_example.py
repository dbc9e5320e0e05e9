"""The Jungfrau-4M-like example of docs/examples: the committed geometry is the script's, its 64
panels tile the 4096 x 1024 data array without overlap, and a cut-down copy (chips of 32 pixels)
renders through ``-geom`` and is drawn with its panels in place."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from pybragg.io.crystfel import format_geometry, lab_panels, parse_geometry, read_geometry

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples"


def example():
    spec = importlib.util.spec_from_file_location("jungfrau4m", EXAMPLES / "jungfrau4m.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def test_committed_geometry_is_the_scripts() -> None:
    committed = read_geometry(EXAMPLES / "jungfrau4m.geom")
    assert committed == parse_geometry(format_geometry(example().jungfrau_geometry()))
    panels = lab_panels(committed)
    assert len(panels) == 64 and {(p.fpixels, p.spixels) for p in panels} == {(256, 256)}
    assert max(p.data_slow + p.spixels for p in panels) == 4096 and max(p.data_fast + p.fpixels for p in panels) == 1024
    assert sum(p.fpixels * p.spixels for p in panels) == 4096 * 1024  # the data array, tiled
    assert (EXAMPLES / "jungfrau4m.png").stat().st_size > 10_000
    # the modules are groups; the top ones read out the other way round
    assert committed.groups["group_all"] == tuple(f"m{m}" for m in range(8))
    top, bottom = panels[0], panels[-1]
    assert top.fdet == pytest.approx((0, 0, 1)) and bottom.fdet == pytest.approx((0, 0, -1))


def test_cut_down_example_renders_and_draws(tmp_path) -> None:
    pytest.importorskip("matplotlib")
    module = example()
    assert module.main(["--chip", "32", "--outdir", str(tmp_path)]) == 0
    geom = read_geometry(tmp_path / "jungfrau4m.geom")
    panels = lab_panels(geom)
    image = module.render(tmp_path / "jungfrau4m.geom", tmp_path / "f.bin")
    assert image.shape == (512, 128) and len(panels) == 64
    # every chip rendered inside its outer ring (mask_edge_pixels = 1), the ring itself masked
    for p in panels[:3]:
        block = image[p.data_slow:p.data_slow + p.spixels, p.data_fast:p.data_fast + p.fpixels]
        assert not block[0].any() and not block[:, -1].any() and (block[1:-1, 1:-1] > 0).mean() > 0.9
    assert (tmp_path / "jungfrau4m.png").stat().st_size > 5_000
    assert np.isfinite(image).all()
