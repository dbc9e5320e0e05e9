"""Detectors made of panels in the torch engine (the C side and the shared helpers: test_panels.py).

* Panels rendered in one call give the pixels of each panel rendered alone as a one-panel
  CUSTOM detector with ``-pix0_vector``, and the C engine's image to the golden bars;
  an explicit single panel equal to the default MOSFLM detector gives the default image.
* C and torch agree on a rotated three-panel layout with ROI and mask across the panels,
  and on the multi-panel reference images of ``../shared/golden-multipanel``.
* Explicit panels stay differentiable in the detector rotations; chunks and threads
  across panels change nothing; the trace works in data-array coordinates.
"""

from __future__ import annotations

import gzip
import json
import math

import numpy as np
import pytest
import torch

from golden import compare_float
from panel_cases import (
    MULTIPANEL,
    PANELS,
    alone,
    crystal_config,
    crystal_from_args,
    geom_panels,
    multipanel_cases,
    two_panel_config,
    window,
)
from pybragg.config import PanelConfig
from pybragg.engines import c_engine
from pybragg.engines.torch import TorchModel, render, trace_pixel
from pybragg.errors import EngineError
from pybragg.inputs import Inputs
from pybragg.plan import Plan

DTYPES = ["float64", "float32"]
ROTATIONS = {"rotx": 0.02, "roty": -0.03, "rotz": 0.05, "twotheta": 0.1}

# Three panels with different axes, pixel sizes and oversampling, gaps between them in
# the data array; rendered with detector rotations.
THREE = (
    PanelConfig(name="a", fpixels=36, spixels=28, pixel_size=0.1e-3, origin=(0.1, 0.004, -0.003),
                fdet=(0.0, 0.0, 1.0), sdet=(0.0, -1.0, 0.0), data_fast=0, data_slow=0),
    PanelConfig(name="b", fpixels=20, spixels=32, pixel_size=0.25e-3, origin=(0.095, -0.002, 0.0005),
                fdet=(0.1, 0.2, 1.0), sdet=(0.05, -1.0, 0.15), data_fast=40, data_slow=2),
    PanelConfig(name="c", fpixels=30, spixels=18, pixel_size=0.15e-3, origin=(0.08, -0.0045, -0.006),
                fdet=(0.0, 1.0, 0.0), sdet=(-0.3, 0.0, 1.0), data_fast=5, data_slow=33),
)


def torch_image(cfg, inputs=None, dtype="float64", **kwargs) -> np.ndarray:
    return render(cfg, inputs, dtype=dtype, device="cpu", threads=kwargs.pop("threads", 2), **kwargs).image


def covered(shape, panels) -> np.ndarray:
    out = np.zeros(shape, dtype=bool)
    for panel in panels:
        window(out, panel)[...] = True
    return out


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("rotations", [{}, ROTATIONS], ids=["plain", "rotated"])
def test_torch_panels_in_one_call_equal_each_panel_alone(rotations, dtype):
    cfg = two_panel_config(**rotations)
    plan = Plan(cfg)
    assert plan.panels[0].oversample != plan.panels[1].oversample  # each panel its own
    image = torch_image(cfg, dtype=dtype)
    assert image.shape == plan.shape and image.dtype == np.dtype(dtype)
    for panel in PANELS:
        ref = torch_image(alone(cfg, panel), dtype=dtype)
        assert ref.max() > 0
        np.testing.assert_array_equal(window(image, panel), ref)
    assert not image[~covered(image.shape, PANELS)].any()  # the gap stays 0
    compare_float(image, c_engine.render(cfg).image, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_torch_explicit_single_panel_equals_default_image(dtype):
    flags = crystal_config(fpixels=64, spixels=48)
    g = Plan(flags).geometry
    panel = PanelConfig(name="p0", fpixels=64, spixels=48, pixel_size=0.1e-3, origin=g.pix0,
                        fdet=(0.0, 0.0, 1.0), sdet=(0.0, -1.0, 0.0))
    explicit = crystal_config(fpixels=64, spixels=48, panels=(panel,))
    np.testing.assert_array_equal(torch_image(explicit, dtype=dtype), torch_image(flags, dtype=dtype))


def _three_panel_case() -> tuple[object, Inputs]:
    roi = (10, 55, 5, 45)  # xmin xmax ymin ymax over the data array: parts of every panel and the gaps
    shape = Plan(crystal_config(panels=THREE)).shape
    mask = np.ones(shape, dtype=np.uint8)
    mask[10:16, 20:30] = 0  # panel a
    mask[20:26, 45:52] = 0  # panel b
    mask[38:42, 12:20] = 0  # panel c
    mask[29:33, 36:40] = 0  # a gap
    return crystal_config(panels=THREE, roi=roi, **ROTATIONS), Inputs(mask=mask)


@pytest.mark.parametrize("dtype", DTYPES)
def test_c_and_torch_agree_on_rotated_three_panels_with_roi_and_mask(dtype):
    cfg, inputs = _three_panel_case()
    plan = Plan(cfg, inputs)
    assert plan.shape == (51, 60) and len({p.oversample for p in plan.panels}) > 1
    c = c_engine.render(cfg, inputs)
    t = render(cfg, inputs, dtype=dtype, device="cpu", threads=2)
    assert t.image.shape == c.image.shape == plan.shape
    compare_float(t.image, c.image, dtype)
    x0, x1, y0, y1 = cfg.detector.roi
    rendered = np.zeros(plan.shape, dtype=bool)
    rendered[y0:y1 + 1, x0:x1 + 1] = True
    rendered &= inputs.mask.astype(bool) & covered(plan.shape, THREE)
    assert not t.image[~rendered].any()
    for panel in THREE:
        assert window(t.image, panel)[window(rendered, panel)].max() > 0
    assert t.stats.n == c.stats.n == int(rendered.sum())
    if dtype == "float64":
        assert t.stats.max_I_pixel == c.stats.max_I_pixel
        assert t.stats.omega_sum == pytest.approx(c.stats.omega_sum, rel=1e-9)


def test_torch_chunks_and_threads_across_panels_do_not_change_the_image():
    cfg, inputs = _three_panel_case()
    whole = render(cfg, inputs, dtype="float64", device="cpu", threads=1)
    seen: list[float] = []
    small = render(cfg, inputs, dtype="float64", device="cpu", threads=3, memory_budget_gib=2e-5,
                   progress=seen.append)
    assert small.extras["chunk_pixels"] < 200
    assert seen and seen[-1] == 1.0
    np.testing.assert_array_equal(small.image, whole.image)
    assert small.stats.omega_sum == pytest.approx(whole.stats.omega_sum, rel=1e-12)


def test_torch_explicit_panels_differentiable_in_the_detector_rotations():
    model = TorchModel(crystal_config(panels=PANELS, **ROTATIONS), dtype="float64")
    weights = torch.linspace(0.5, 1.5, math.prod(model.shape), dtype=torch.float64).view(model.shape)
    for name in ("rotx", "roty", "rotz", "twotheta"):
        x0 = model.defaults()[name]
        x = x0.clone().requires_grad_(True)
        (model.image({name: x}) * weights).sum().backward()
        h = 1e-6
        with torch.no_grad():
            up, down = ((model.image({name: x0 + d}) * weights).sum() for d in (h, -h))
        numeric = float((up - down) / (2 * h))
        assert x.grad is not None and numeric != 0.0
        assert float(x.grad) == pytest.approx(numeric, rel=1e-4), name
    # explicit origins fix the panels: the distance and the beam centre have no effect
    image = model.image()
    for name in ("distance", "Xbeam"):
        moved = model.image({name: model.defaults()[name] * 1.1})
        np.testing.assert_array_equal(moved.numpy(), image.numpy())


def test_torch_trace_in_data_array_coordinates():
    cfg = two_panel_config(**ROTATIONS)
    plan = Plan(cfg)
    b = PANELS[1]
    fast, slow = b.data_fast + 7, b.data_slow + 11
    c, c_value = c_engine.trace_pixel(cfg, None, fast, slow, plan=plan)
    t, t_value = trace_pixel(cfg, None, fast, slow)
    assert [(r.name, r.index) for r in t] == [(r.name, r.index) for r in c]
    assert t_value == pytest.approx(c_value, rel=2.0**-23)
    pix0 = next(r for r in t if r.name == "pix0")
    assert pix0.values == pytest.approx(plan.panels[1].pix0, rel=1e-12, abs=1e-15)
    assert t_value == float(torch_image(cfg)[slow, fast].astype(np.float32))
    with pytest.raises(ValueError, match="no panel"):
        trace_pixel(cfg, None, 42, 31)  # in the gap
    with pytest.raises(ValueError, match="outside"):
        trace_pixel(cfg, None, 69, 0)


def test_torch_model_refuses_bad_panels():
    a, b = PANELS
    with pytest.raises(EngineError, match="overlaps"):
        overlapping = PanelConfig(**{**b.__dict__, "data_fast": 39, "data_slow": 29})
        TorchModel(crystal_config(panels=(a, overlapping)))
    with pytest.raises(EngineError, match="parallel"):
        TorchModel(crystal_config(panels=(a, PanelConfig(**{**b.__dict__, "sdet": b.fdet}))))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", multipanel_cases())
def test_torch_golden_multipanel(case, dtype):
    manifest = json.loads((MULTIPANEL / "manifest.json").read_text())["cases"][case]
    cfg = crystal_from_args(manifest["args"])
    cfg.detector.panels = geom_panels(case)
    image = torch_image(cfg, dtype=dtype)
    shape = tuple(manifest["shape"])
    assert image.shape == shape
    ref = np.frombuffer(gzip.decompress((MULTIPANEL / case / "float.bin.gz").read_bytes()), dtype="<f4")
    compare_float(image, ref.reshape(shape), dtype)


def test_torch_panel_seen_from_behind_matches_c() -> None:
    from panel_cases import mirrored_pair

    _, back, _ = mirrored_pair(300e-6)
    c = c_engine.render(back).image
    t = render(back, dtype="float64", device="cpu").image
    assert (t >= 0).all()
    compare_float(t, c, "float64")
