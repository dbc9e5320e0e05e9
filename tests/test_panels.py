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

from golden import GOLDEN, compare_float
from pybragg import constants
from pybragg.config import Config, Convention, DetectorConfig, Misset, PanelConfig
from pybragg.engines import c_engine
from pybragg.errors import EngineError
from pybragg.inputs import Inputs
from pybragg.plan import Plan

MULTIPANEL = GOLDEN.parent / "golden-multipanel"
RIGHT = math.pi / 2


def crystal_config(**detector: object) -> Config:
    """A small cubic crystal, slightly misset, that lights up every panel."""
    cfg = Config(detector=DetectorConfig(**detector))  # type: ignore[arg-type]
    cfg.crystal.has_cell = True
    cfg.crystal.cell = (100e-10, 100e-10, 100e-10, RIGHT, RIGHT, RIGHT)
    cfg.crystal.misset_mode = Misset.ANGLES
    cfg.crystal.misset = (math.radians(6), math.radians(6), math.radians(6))
    cfg.crystal.default_F = 100.0
    cfg.crystal.N = (5.0, 5.0, 5.0)
    return cfg


def unit(v):
    n = math.sqrt(v[0] * v[0] + v[1] * v[1] + v[2] * v[2])
    return (v[0] / n, v[1] / n, v[2] / n)


def normal(fdet, sdet):
    """unit(unit(f) x unit(s)), computed as the C library computes it."""
    f, s = unit(fdet), unit(sdet)
    return unit((f[1] * s[2] - f[2] * s[1], f[2] * s[0] - f[0] * s[2], f[0] * s[1] - f[1] * s[0]))


def alone(cfg: Config, panel: PanelConfig) -> Config:
    """``panel`` as a one-panel CUSTOM detector with -pix0_vector (the configured convention's
    beam, polarization, spindle and two-theta axes given as CUSTOM vectors)."""
    out = cfg.copy()
    d = out.detector
    if d.convention != Convention.CUSTOM:
        ax = constants.CONVENTION_AXES[d.convention]
        out.beam.beam_vector, out.beam.polar_vector = ax.beam, ax.polar
        out.crystal.spindle_axis, d.twotheta_axis = ax.spindle, ax.twotheta_axis
    d.convention = Convention.CUSTOM
    d.panels = ()
    d.fpixels, d.spixels, d.pixel_size = panel.fpixels, panel.spixels, panel.pixel_size
    d.fdet_vector, d.sdet_vector = panel.fdet, panel.sdet
    d.odet_vector = normal(panel.fdet, panel.sdet)
    d.has_pix0, d.pix0_vector = True, panel.origin
    if d.roi is not None:
        x0, x1, y0, y1 = d.roi
        d.roi = (x0 - panel.data_fast, x1 - panel.data_fast, y0 - panel.data_slow, y1 - panel.data_slow)
    return out


def window(image: np.ndarray, p: PanelConfig) -> np.ndarray:
    return image[p.data_slow:p.data_slow + p.spixels, p.data_fast:p.data_fast + p.fpixels]


def bits(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.float32).view(np.uint32)


# Two panels unlike each other: a MOSFLM-like one, and a tilted one with larger pixels
# (so another oversampling), placed with a gap between them in the data array.
TILT = math.radians(20)
PANELS = (
    PanelConfig(name="near", fpixels=40, spixels=30, pixel_size=0.1e-3, origin=(0.1, 0.0035, -0.002),
                fdet=(0.0, 0.0, 1.0), sdet=(0.0, -1.0, 0.0), data_fast=0, data_slow=0),
    PanelConfig(name="tilted", fpixels=24, spixels=20, pixel_size=0.2e-3,
                origin=(0.09, -0.001, 0.0025), fdet=(math.sin(TILT), 0.0, math.cos(TILT)),
                sdet=(0.0, -2.0, 0.0), data_fast=45, data_slow=33),
)


def two_panel_config(**detector: object) -> Config:
    return crystal_config(panels=PANELS, **detector)


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


def geom_panels(case: str) -> tuple[PanelConfig, ...]:
    """The panels of ``<case>/detector.geom``, written out by hand.

    CrystFEL (x, y, z) is pybragg (z, y, -x); a corner is (corner_x, corner_y) pixels / res and
    clen + coffset along the beam; res is pixels per metre; min_fs/min_ss place the panel in
    the data array.
    """
    def panel(name, n_fs, n_ss, res, clen, corner, coffset, fs, ss, min_fs, min_ss):
        def lab(v):
            return (v[2], v[1], -v[0])
        x, y = corner[0] / res, corner[1] / res
        return PanelConfig(name=name, fpixels=n_fs, spixels=n_ss, pixel_size=1.0 / res,
                           origin=lab((x, y, clen + coffset)), fdet=lab(fs), sdet=lab(ss),
                           data_fast=min_fs, data_slow=min_ss)

    X, Y = (1.0, 0.0, 0.0), (0.0, 1.0, 0.0)
    mX, mY = (-1.0, 0.0, 0.0), (0.0, -1.0, 0.0)
    if case == "mp_two_panels":  # clen = 0.1 m, res = 10000
        return (
            panel("q0", 96, 64, 10000.0, 0.1, (48.0, 66.0), 0.0, mX, mY, 0, 0),
            panel("q1", 96, 64, 10000.0, 0.1, (48.0, -4.0), 0.0, mX, mY, 0, 64),
        )
    if case == "mp_rotated_offset":  # clen = 0.12 m, res = 8000
        return (
            panel("a", 120, 72, 8000.0, 0.12, (60.0, 80.0), 0.0, mX, mY, 0, 0),
            panel("b", 120, 72, 8000.0, 0.12, (-70.0, -60.0), 0.003, Y, mX, 0, 72),
            panel("c", 120, 72, 8000.0, 0.12, (70.0, 60.0), -0.002, mY, X, 0, 144),
        )
    raise KeyError(case)


def crystal_from_args(args: list[str]) -> Config:
    """The few flags the multi-panel cases use: -cell, -misset, -default_F, -N, -lambda."""
    cfg = Config()
    i = 0
    while i < len(args):
        flag = args[i]
        if flag == "-cell":
            v = [float(x) for x in args[i + 1:i + 7]]
            cfg.crystal.has_cell = True
            cfg.crystal.cell = (v[0] * 1e-10, v[1] * 1e-10, v[2] * 1e-10,
                                math.radians(v[3]), math.radians(v[4]), math.radians(v[5]))
            i += 7
        elif flag == "-misset":
            cfg.crystal.misset_mode = Misset.ANGLES
            cfg.crystal.misset = tuple(math.radians(float(x)) for x in args[i + 1:i + 4])  # type: ignore[assignment]
            i += 4
        elif flag == "-default_F":
            cfg.crystal.default_F = float(args[i + 1])
            i += 2
        elif flag == "-N":
            cfg.crystal.N = (float(args[i + 1]),) * 3  # type: ignore[assignment]
            i += 2
        elif flag == "-lambda":
            cfg.beam.lambda0 = float(args[i + 1]) * 1e-10
            i += 2
        else:
            raise ValueError(f"flag {flag} not handled here")
    return cfg


def multipanel_cases() -> list[str]:
    path = MULTIPANEL / "manifest.json"
    if not path.is_file():
        return ["<golden-multipanel data missing>"]
    return sorted(json.loads(path.read_text())["cases"])


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


def mirrored_pair(thick: float = 0.0) -> tuple[Config, Config, int]:
    """One panel seen from the front and the same pixels seen from behind (fast axis reversed, so
    that fs x ss points towards the sample, as in many real geometry files)."""
    n, px = 36, 0.1e-3
    front = PanelConfig(name="front", fpixels=n, spixels=28, pixel_size=px, origin=(0.08, 0.0014, -0.0018),
                        fdet=(0.0, 0.0, 1.0), sdet=(0.0, -1.0, 0.0))
    back = PanelConfig(name="back", fpixels=n, spixels=28, pixel_size=px,
                       origin=(0.08, 0.0014, -0.0018 + n * px), fdet=(0.0, 0.0, -1.0), sdet=(0.0, -1.0, 0.0))
    cfgs = []
    for panel in (front, back):
        # one sub-pixel: the un-oversampled factors come from a pixel's first sub-pixel, which a
        # reversed fast axis would change
        cfg = crystal_config(panels=(panel,), thick=thick, oversample=1)
        cfgs.append(cfg)
    return cfgs[0], cfgs[1], n


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
