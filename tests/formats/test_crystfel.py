"""CrystFEL geometry files: parsing, writing, the frame mapping, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pybragg.flags import from_args
from pybragg.io.crystfel import (
    bad_pixels,
    crystfel_to_lab,
    format_geometry,
    geometry_from_lab,
    lab_panels,
    lab_to_crystfel,
    parse_geometry,
    parse_vector,
    read_geometry,
)
from pybragg.io.errors import FormatError
from pybragg.plan import Plan

MULTIPANEL = Path(__file__).resolve().parents[2].parent / "shared" / "golden-multipanel"

ONE_PANEL = """; the default MOSFLM detector of -distance 100 -detpixels 256 -pixel 0.1
clen = 0.1 m
res = 10000
p0/min_fs = 0
p0/max_fs = 255
p0/min_ss = 0
p0/max_ss = 255
p0/fs = -1.0x
p0/ss = -1.0y
p0/corner_x = 129
p0/corner_y = 129
"""


def test_frame_mapping_is_a_proper_rotation() -> None:
    m = np.array([crystfel_to_lab(e) for e in np.eye(3)]).T
    assert np.allclose(m @ m.T, np.eye(3)) and np.isclose(np.linalg.det(m), 1.0)
    assert crystfel_to_lab((0, 0, 1)) == (1, 0, 0)  # CrystFEL's beam is nanoBragg's +x
    assert crystfel_to_lab((0, 1, 0)) == (0, 1, 0)  # the zenith stays
    v = (0.3, -0.2, 0.9)
    assert lab_to_crystfel(crystfel_to_lab(v)) == pytest.approx(v)


def test_one_panel_is_the_default_mosflm_detector() -> None:
    """The README's check: the panel lands exactly on the default MOSFLM detector's origin and axes."""
    (panel,) = lab_panels(parse_geometry(ONE_PANEL))
    g = from_args(["-cell", "100", "100", "100", "90", "90", "90", "-default_F", "1", "-distance", "100",
                   "-detpixels", "256", "-pixel", "0.1"], backend="c")
    geo = Plan(g.config, g.inputs).geometry
    assert (panel.fpixels, panel.spixels) == (geo.fpixels, geo.spixels)
    assert panel.pixel_size == pytest.approx(geo.pixel_size, rel=1e-15)
    assert panel.origin == pytest.approx(tuple(geo.pix0), abs=1e-15)
    assert panel.fdet == pytest.approx(tuple(geo.fdet)) and panel.sdet == pytest.approx(tuple(geo.sdet))


@pytest.mark.parametrize("case", ["mp_two_panels", "mp_rotated_offset"])
def test_golden_files_parse_and_round_trip(case: str, tmp_path) -> None:
    geom = read_geometry(MULTIPANEL / case / "detector.geom")
    again = parse_geometry(format_geometry(geom))
    assert again == geom
    panels = lab_panels(geom)
    # written from pybragg's panels and read back: the same panels
    back = lab_panels(parse_geometry(format_geometry(geometry_from_lab(panels))))
    assert [p.name for p in back] == [p.name for p in panels]
    for a, b in zip(panels, back):
        assert (a.fpixels, a.spixels, a.data_fast, a.data_slow) == (b.fpixels, b.spixels, b.data_fast, b.data_slow)
        assert a.pixel_size == pytest.approx(b.pixel_size, rel=1e-15)
        assert np.allclose(a.origin, b.origin, rtol=0, atol=1e-15)
        assert np.allclose(a.fdet, b.fdet, rtol=0, atol=1e-15) and np.allclose(a.sdet, b.sdet, rtol=0, atol=1e-15)


def test_rotated_offset_numbers() -> None:
    geom = read_geometry(MULTIPANEL / "mp_rotated_offset" / "detector.geom")
    _, b, c = lab_panels(geom)
    # b: fs = +y, ss = -x, corner (-70, -60) pixels of 1/8000 m, coffset +3 mm
    assert b.fdet == pytest.approx((0, 1, 0)) and b.sdet == pytest.approx((0, 0, 1))
    assert b.origin == pytest.approx((0.123, -60 / 8000, 70 / 8000))
    assert (b.data_fast, b.data_slow, b.fpixels, b.spixels) == (0, 72, 120, 72)
    assert c.origin == pytest.approx((0.118, 60 / 8000, -70 / 8000))
    assert geom.wavelength() == pytest.approx(1e-10)


def test_vectors() -> None:
    assert parse_vector("+0.5x -1.0y +0.02z", "t") == (0.5, -1.0, 0.02)
    assert parse_vector("-x", "t") == (-1.0, 0.0, 0.0)
    assert parse_vector("1e-3x+1y", "t") == (1e-3, 1.0, 0.0)
    with pytest.raises(FormatError, match="direction"):
        parse_vector("sideways", "t")


def test_global_values_are_defaults_of_later_panels_only() -> None:
    geom = parse_geometry(ONE_PANEL.replace("clen = 0.1 m\n", "") + "clen = 0.2 m\n" + ONE_PANEL.split("\n", 3)[3]
                          .replace("p0/", "p1/").replace("min_ss = 0", "min_ss = 256").replace("max_ss = 255", "max_ss = 511"))
    p0, p1 = geom.panels
    assert p0.get("clen") is None and p1.get("clen") == 0.2
    with pytest.raises(FormatError, match="p0: no clen"):
        lab_panels(geom)
    assert lab_panels(geom, clen=0.15)[0].origin[0] == pytest.approx(0.15)


@pytest.mark.parametrize(("text", "message"), [
    (ONE_PANEL.replace("clen = 0.1 m", "clen = /LCLS/detector0/EncoderValue"), "clen = /LCLS"),
    (ONE_PANEL + "p0/colour = blue\n", "unknown panel key 'colour'"),
    (ONE_PANEL + "flavour = 3\n", "unknown key 'flavour'"),
    (ONE_PANEL.replace("res = 10000\n", ""), "p0: no res"),
    (ONE_PANEL.replace("p0/fs = -1.0x", "p0/fs = -1.0q"), "direction"),
    (ONE_PANEL.replace("clen = 0.1 m", "clen = 0.1 furlong"), "unknown unit"),
    (ONE_PANEL.replace("p0/max_fs = 255", "p0/max_fs = 25.5"), "not a whole number"),
    ("; nothing\n", "no panels"),
])
def test_errors_name_the_key(text: str, message: str) -> None:
    with pytest.raises(FormatError, match=message):
        lab_panels(parse_geometry(text, "det.geom"))


def test_bad_regions_and_edges() -> None:
    text = ONE_PANEL + "p0/mask_edge_pixels = 1\nbadA/min_fs = 10\nbadA/max_fs = 12\nbadA/min_ss = 20\nbadA/max_ss = 20\n" \
        "badA/panel = p0\nbadB/min_x = 0.4\nbadB/max_x = 0.6\nbadB/min_y = 0.4\nbadB/max_y = 0.6\n"
    geom = parse_geometry(text)
    panels = lab_panels(geom)
    rects = bad_pixels(geom, panels, (256, 256))
    mask = np.ones((256, 256), bool)
    for s0, s1, f0, f1 in rects:
        mask[s0:s1 + 1, f0:f1 + 1] = False
    assert not mask[0].any() and not mask[-1].any() and not mask[:, 0].any() and not mask[:, -1].any()
    assert not mask[20, 10:13].any() and mask[20, 13] and mask[21, 10]
    # the lab region: the one pixel centre at x = y = +0.5 pixels (the corner sits at +129, +129)
    assert not mask[128, 128] and mask[127, 128] and mask[128, 129] and mask[129, 128]
    assert mask[1:-1, 1:-1].sum() == 254 * 254 - 3 - 1
