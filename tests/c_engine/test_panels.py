"""Detectors made of panels, in the C engine (the design: a flag-defined detector is a list of one).

* Panels rendered in one call give exactly the pixels of each panel rendered alone as a
  one-panel CUSTOM detector with ``-pix0_vector``; an explicit single panel equal to the
  default MOSFLM detector gives exactly the default image.
* Errors name the panel; ROI, mask, statistics and trace work over the data array.
* The two multi-panel reference images of ``../shared/golden-multipanel``, each panel built
  by hand from the case's ``detector.geom``.
"""

from __future__ import annotations

import gzip
import json
import math

import numpy as np
import pytest

from golden import compare_float
from panel_cases import (
    MULTIPANEL,
    PANELS,
    TILT,
    alone,
    bits,
    crystal_config,
    crystal_from_args,
    geom_panels,
    mirrored_pair,
    multipanel_cases,
    two_panel_config,
    window,
)
from pybragg.config import Convention, PanelConfig
from pybragg.engines import c_engine
from pybragg.errors import EngineError
from pybragg.inputs import Inputs
from pybragg.plan import Plan

# Two panels unlike each other: a MOSFLM-like one, and a tilted one with larger pixels
# (so another oversampling), placed with a gap between them in the data array.




@pytest.mark.parametrize("rotations", [{}, {"rotx": 0.02, "roty": -0.03, "rotz": 0.05, "twotheta": 0.1}],
                         ids=["plain", "rotated"])
def test_panels_in_one_call_equal_each_panel_alone(rotations):
    cfg = two_panel_config(**rotations)
    plan = Plan(cfg)
    assert plan.shape == (53, 69)
    g = plan.geometry
    assert (g.n_panels, g.data_spixels, g.data_fpixels) == (2, 53, 69)
    assert g.panels == plan.panels and [p.name for p in plan.panels] == ["near", "tilted"]
    image, stats = c_engine.render_plan(plan)
    assert image.shape == plan.shape
    covered = np.zeros(plan.shape, dtype=bool)
    total = 0.0
    for panel, pg in zip(PANELS, plan.panels):
        one = Plan(alone(cfg, panel))
        ref, ref_stats = c_engine.render_plan(one)
        np.testing.assert_array_equal(bits(window(image, panel)), bits(ref))
        # the panel's resolved geometry is that detector's
        og = one.geometry
        assert (pg.fpixels, pg.spixels, pg.pixel_size) == (og.fpixels, og.spixels, og.pixel_size)
        assert (pg.pix0, pg.fdet, pg.sdet, pg.odet) == (og.pix0, og.fdet, og.sdet, og.odet)
        assert (pg.distance, pg.close_distance, pg.Fbeam, pg.Sbeam, pg.Fclose, pg.Sclose) == (
            og.distance, og.close_distance, og.Fbeam, og.Sbeam, og.Fclose, og.Sclose)
        assert (pg.oversample, pg.steps) == (og.oversample, og.steps)
        assert (pg.data_fast, pg.data_slow) == (panel.data_fast, panel.data_slow)
        assert ref.max() > 0
        window(covered, panel)[...] = True
        total += ref_stats.sum
    assert plan.panels[0].oversample != plan.panels[1].oversample  # each panel its own
    assert not image[~covered].any()  # the gap stays 0
    assert stats.n == covered.sum()
    assert stats.sum == pytest.approx(total, rel=1e-12)
    # panel 0 fills the single-panel geometry fields
    assert (g.fpixels, g.spixels, g.pix0, g.oversample, g.steps) == (
        40, 30, plan.panels[0].pix0, plan.panels[0].oversample, plan.panels[0].steps)


def test_explicit_single_panel_equals_default_mosflm_image():
    flags = crystal_config(fpixels=64, spixels=48)
    flag_plan = Plan(flags)
    g = flag_plan.geometry
    assert (g.n_panels, g.data_fpixels, g.data_spixels) == (1, 64, 48)
    assert len(flag_plan.panels) == 1 and flag_plan.panels[0].name == "p0"
    panel = PanelConfig(name="p0", fpixels=64, spixels=48, pixel_size=0.1e-3, origin=g.pix0,
                        fdet=(0.0, 0.0, 1.0), sdet=(0.0, -1.0, 0.0))
    explicit = crystal_config(fpixels=64, spixels=48, panels=(panel,))
    a = c_engine.render(flags)
    b = c_engine.render(explicit)
    np.testing.assert_array_equal(bits(a.image), bits(b.image))
    assert a.stats == b.stats
    assert flag_plan.panels == Plan(explicit).panels
    for name in ("fpixels", "spixels", "pixel_size", "distance", "close_distance", "Fbeam", "Sbeam", "Fclose",
                 "Sclose", "pix0", "fdet", "sdet", "odet", "beam", "polar", "spindle", "oversample", "steps",
                 "data_fpixels", "data_spixels", "n_panels", "roi"):
        assert getattr(a.geometry, name) == getattr(b.geometry, name), name


def test_flag_defined_panel_reports_the_flag_geometry():
    """The one panel of a flag-defined detector carries the flag geometry (any convention)."""
    for conv in Convention:
        cfg = crystal_config(convention=conv, fpixels=20, spixels=10, rotx=0.01, twotheta=0.05)
        plan = Plan(cfg)
        (pg,) = plan.panels
        g = plan.geometry
        assert plan.shape == (10, 20) == (g.data_spixels, g.data_fpixels)
        assert (pg.fpixels, pg.spixels, pg.data_fast, pg.data_slow) == (20, 10, 0, 0)
        assert (pg.pix0, pg.fdet, pg.sdet, pg.odet, pg.distance, pg.close_distance) == (
            g.pix0, g.fdet, g.sdet, g.odet, g.distance, g.close_distance)
        assert (pg.Fbeam, pg.Sbeam, pg.Fclose, pg.Sclose, pg.oversample, pg.steps) == (
            g.Fbeam, g.Sbeam, g.Fclose, g.Sclose, g.oversample, g.steps)


# ---- errors ----


def _error(panels) -> str:
    with pytest.raises(EngineError) as info:
        Plan(crystal_config(panels=tuple(panels)))
    return str(info.value)


def test_overlapping_panels_are_an_error():
    a, b = PANELS
    msg = _error([a, PanelConfig(**{**b.__dict__, "data_fast": 39, "data_slow": 29})])
    assert "overlaps" in msg and "panel 1 (tilted)" in msg and "panel 0 (near)" in msg
    # touching is not overlapping
    Plan(crystal_config(panels=(a, PanelConfig(**{**b.__dict__, "data_fast": 40, "data_slow": 0}))))


@pytest.mark.parametrize(("change", "words"), [
    ({"sdet": (-2 * math.sin(TILT), 0.0, -2 * math.cos(TILT))}, "parallel"),
    ({"sdet": (0.0, 0.0, 0.0)}, "slow axis is zero"),
    ({"fdet": (0.0, 0.0, 0.0)}, "fast axis is zero"),
    ({"pixel_size": 0.0}, "pixel size"),
    ({"fpixels": 0}, "pixel counts"),
    ({"spixels": -2}, "pixel counts"),
    ({"data_fast": -1}, "negative"),
    ({"origin": (0.0, 0.001, 0.0)}, "passes through the sample"),
    ({"origin": (math.nan, 0.0, 0.0)}, "finite"),
])
def test_bad_panels_are_errors_naming_the_panel(change, words):
    a, b = PANELS
    msg = _error([a, PanelConfig(**{**b.__dict__, **change})])
    assert "panel 1 (tilted)" in msg and words in msg, msg


# ---- ROI, mask, statistics, trace over the data array ----


def test_roi_and_mask_across_panels():
    full = c_engine.render(two_panel_config()).image
    roi = (20, 60, 10, 45)  # xmin xmax ymin ymax, inclusive, over both panels and the gap
    mask = np.ones(full.shape, dtype=np.uint8)
    mask[12:18, 25:35] = 0  # in panel 0
    mask[36:40, 50:66] = 0  # in panel 1
    mask[30:34, 40:44] = 0  # in the gap
    cfg = two_panel_config(roi=roi)
    result = c_engine.render(cfg, Inputs(mask=mask))
    selected = np.zeros(full.shape, dtype=bool)
    selected[roi[2]:roi[3] + 1, roi[0]:roi[1] + 1] = True
    selected &= mask.astype(bool)
    np.testing.assert_array_equal(bits(result.image), bits(np.where(selected, full, 0.0)))
    # each panel alone with the same window of ROI and mask gives the same pixels
    for panel in PANELS:
        one = alone(cfg, panel)
        m = np.ascontiguousarray(window(mask, panel))
        ref = c_engine.render(one, Inputs(mask=m)).image
        np.testing.assert_array_equal(bits(window(result.image, panel)), bits(ref))
    covered = np.zeros(full.shape, dtype=bool)
    for panel in PANELS:
        window(covered, panel)[...] = True
    assert result.stats.n == int((selected & covered).sum())


def test_mask_must_have_the_data_array_shape():
    with pytest.raises(EngineError, match="mask"):
        Plan(two_panel_config(), Inputs(mask=np.ones((30, 40), dtype=np.uint8)))


def test_statistics_over_panels():
    roi = (5, 66, 2, 50)
    mask = np.ones((53, 69), dtype=np.uint8)
    mask[20:25, 10:20] = 0
    cfg = two_panel_config(roi=roi)
    plan = Plan(cfg, Inputs(mask=mask))
    image, stats = c_engine.render_plan(plan)
    assert plan.stats(image, stats.omega_sum, stats.interpolation_fallbacks) == stats

    in_roi = np.zeros(image.shape, dtype=bool)
    in_roi[roi[2]:roi[3] + 1, roi[0]:roi[1] + 1] = True
    covered = np.zeros(image.shape, dtype=bool)
    for panel in PANELS:
        window(covered, panel)[...] = True
    rendered = in_roi & covered & mask.astype(bool)
    v = image[rendered].astype(np.float64)
    assert stats.n == v.size
    assert stats.sum == pytest.approx(v.sum(), rel=1e-12)
    assert stats.mean == pytest.approx(v.sum() / v.size, rel=1e-12)
    assert stats.rms == pytest.approx(math.sqrt((v * v).sum() / (v.size - 1)), rel=1e-12)
    # the deviation runs over every panel pixel of the ROI, mask or not (never the gap)
    w = image[in_roi & covered].astype(np.float64)
    assert stats.rmsd == pytest.approx(math.sqrt(((w - stats.mean) ** 2).sum() / (w.size - 1)), rel=1e-10)
    assert stats.max_I == float(v.max())
    slow, fast = stats.max_I_pixel
    assert image[slow, fast] == v.max() and rendered[slow, fast]
    first = np.flatnonzero(np.where(rendered, image, -1.0).ravel() == v.max())[0]
    assert (slow, fast) == divmod(int(first), image.shape[1])
    # its last sub-pixel position, in its own panel
    k = next(i for i, p in enumerate(PANELS)
             if p.data_slow <= slow < p.data_slow + p.spixels and p.data_fast <= fast < p.data_fast + p.fpixels)
    pg = plan.panels[k]
    sub = pg.pixel_size / pg.oversample
    os = pg.oversample
    assert stats.max_I_fast == pytest.approx(sub * ((fast - pg.data_fast) * os + os - 1) + sub / 2, rel=1e-15)
    assert stats.max_I_slow == pytest.approx(sub * ((slow - pg.data_slow) * os + os - 1) + sub / 2, rel=1e-15)
    # the same for any thread count
    for threads in (1, 2, 3):
        again, st = c_engine.render_plan(plan, threads=threads)
        assert st == stats and np.array_equal(bits(again), bits(image))


def test_progress_counts_the_rows_of_every_panel():
    plan = Plan(two_panel_config())
    assert plan.rows == 30 + 20
    seen: list[float] = []
    c_engine.render_plan(plan, progress=seen.append)
    assert seen[-1] == 1.0


def test_trace_in_data_array_coordinates():
    cfg = two_panel_config()
    plan = Plan(cfg)
    image, _ = c_engine.render_plan(plan)
    b = PANELS[1]
    fast, slow = b.data_fast + 7, b.data_slow + 11
    records, value = c_engine.trace_pixel(cfg, None, fast, slow, plan=plan)
    assert value == float(image[slow, fast])
    pix0 = next(r for r in records if r.name == "pix0")
    assert pix0.values == plan.panels[1].pix0
    with pytest.raises(EngineError, match="no panel"):
        c_engine.trace_pixel(cfg, None, 42, 31, plan=plan)  # in the gap
    with pytest.raises(EngineError, match="outside"):
        c_engine.trace_pixel(cfg, None, 69, 0, plan=plan)


def test_panel_names_reach_the_plan():
    long_name = "x" * 40
    cfg = crystal_config(panels=(PanelConfig(**{**PANELS[0].__dict__, "name": long_name}),))
    assert Plan(cfg).panels[0].name == "x" * 31


# ---- the multi-panel reference images ----








@pytest.mark.parametrize("case", multipanel_cases())
def test_golden_multipanel(case):
    manifest = json.loads((MULTIPANEL / "manifest.json").read_text())["cases"][case]
    cfg = crystal_from_args(manifest["args"])
    cfg.detector.panels = geom_panels(case)
    result = c_engine.render(cfg)
    shape = tuple(manifest["shape"])
    assert result.image.shape == shape
    raw = gzip.decompress((MULTIPANEL / case / "float.bin.gz").read_bytes())
    ref = np.frombuffer(raw, dtype="<f4").reshape(shape)
    compare_float(result.image, ref)


def test_geom_panels_match_the_files():
    """The hand-written panels agree with each detector.geom's numbers."""
    for case in multipanel_cases():
        text = (MULTIPANEL / case / "detector.geom").read_text()
        values: dict[str, dict[str, str]] = {}
        glob: dict[str, str] = {}
        for line in text.splitlines():
            line = line.split(";")[0].strip()
            if "=" not in line:
                continue
            key, value = (s.strip() for s in line.split("=", 1))
            if "/" in key:
                name, field = key.split("/", 1)
                values.setdefault(name, {})[field] = value
            else:
                glob[key] = value
        panels = geom_panels(case)
        assert [p.name for p in panels] == list(values)
        res = float(glob["res"])
        for p in panels:
            v = values[p.name]
            assert p.pixel_size == 1.0 / res
            assert (p.data_fast, p.data_slow) == (int(v["min_fs"]), int(v["min_ss"]))
            assert p.fpixels == int(v["max_fs"]) - int(v["min_fs"]) + 1
            assert p.spixels == int(v["max_ss"]) - int(v["min_ss"]) + 1
            assert p.origin[1] == float(v["corner_y"]) / res
            assert p.origin[2] == -float(v["corner_x"]) / res
            assert p.origin[0] == float(glob["clen"].split()[0]) + float(v["coffset"])




@pytest.mark.parametrize("thick", [0.0, 300e-6])
def test_a_panel_seen_from_behind_renders_like_the_front(thick: float) -> None:
    """The same pixels, the fast axis reversed: the same image, mirrored; positive everywhere."""
    front, back, _ = mirrored_pair(thick)
    a = c_engine.render(front).image
    b = c_engine.render(back).image
    assert (b >= 0).all() and b.max() > 0
    np.testing.assert_allclose(b[:, ::-1], a, rtol=1e-9, atol=1e-12 * float(a.max()))
    g = Plan(back).panels[0]
    assert g.close_distance > 0 and np.dot(g.odet, g.pix0) > 0
