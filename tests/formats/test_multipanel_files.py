"""The detector files' readers and writers: DIALS experiment lists (hierarchy, goniometer, masks,
frame) and CrystFEL geometry files (layouts, stacking, model round trips, exact numbers)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from pybragg.flags import from_args
from pybragg.io.crystfel import (
    LabPanel,
    bad_pixel_mask,
    format_geometry,
    geometry_from_lab,
    lab_panels,
    parse_geometry,
)
from pybragg.io.errors import FormatError
from pybragg.io.expt import IMGCIF_TO_LAB, read_expt
from pybragg.io.frames import lab_to_imgcif

DATA = Path(__file__).resolve().parents[1] / "data"
EXPT = DATA / "two_panels.expt"

MODULE = """clen = 0.1 m
res = 10000
dim0 = %
dim1 = {index}
dim2 = ss
dim3 = fs
{name}/min_fs = 0
{name}/max_fs = 15
{name}/min_ss = 0
{name}/max_ss = 7
{name}/fs = -1x
{name}/ss = -1y
{name}/corner_x = 8
{name}/corner_y = {corner_y}
"""


def test_frame_is_the_writers_mosflm_frame() -> None:
    assert np.allclose(IMGCIF_TO_LAB @ lab_to_imgcif((1, 0, 0), 2), np.eye(3), atol=0)
    assert tuple(IMGCIF_TO_LAB @ np.array([0.0, 0.0, -1.0])) == (1.0, 0.0, 0.0)  # DIALS's beam is pybragg's +X


def test_expt_hierarchy_beam_goniometer_scan_crystal() -> None:
    """The fixture's numbers worked out by hand: panels composed down the hierarchy (a child's
    vectors in its parent's fast, slow, normal axes), stacked along the slow axis; imgCIF (x, y, z)
    is pybragg (-z, y, x)."""
    m = read_expt(EXPT)
    upper, lower = m.panels
    assert (upper.name, lower.name) == ("upper", "lower")
    assert upper.fdet == pytest.approx((0, 0, 1)) and upper.sdet == pytest.approx((0, -1, 0))
    assert upper.origin == pytest.approx((0.1, 0.005, -0.005), abs=1e-15)
    assert lower.origin == pytest.approx((0.1005, -0.001, -0.005), abs=1e-15)
    assert (upper.fpixels, upper.spixels, upper.pixel_size) == (50, 40, pytest.approx(1e-4))
    assert (lower.data_fast, lower.data_slow) == (0, 40) and m.shape == (80, 50)
    assert m.masks == ((40, 79, 0, 1),)
    assert m.thickness == pytest.approx(4.5e-4) and m.mu == pytest.approx(3900.0)
    assert m.beam == pytest.approx((1, 0, 0)) and m.polar == pytest.approx((0, 0, 1))
    assert m.polarization == pytest.approx(0.998) and m.wavelength == pytest.approx(1e-10)
    assert m.spindle == pytest.approx((0, 0, 1))
    assert m.a == pytest.approx((0, 0, 50e-10)) and m.b == pytest.approx((0, 60e-10, 0))
    assert m.c == pytest.approx((-70e-10, 0, 0))
    assert m.phi0 == pytest.approx(math.radians(10)) and m.osc == pytest.approx(math.radians(0.2))
    a_star, b_star, c_star = m.reciprocal  # type: ignore[misc]
    assert np.dot(a_star, m.a) == pytest.approx(1.0) and abs(np.dot(a_star, m.b)) < 1e-12
    assert np.dot(b_star, m.b) == pytest.approx(1.0) and np.dot(c_star, m.c) == pytest.approx(1.0)


def test_expt_renders_on_both_engines_with_its_mask() -> None:
    args = ["-default_F", "100", "-N", "3", "-expt", str(EXPT), "-detpixels_f", "0"][:-2]
    c = from_args([*args, "--backend", "c"])
    assert c.config.detector.thick == pytest.approx(4.5e-4) and c.config.crystal.has_matrix
    image = c.run().image
    assert image.shape == (80, 50) and not image[40:, :2].any() and image[40:, 2:].all()
    torch_image = from_args([*args, "--backend", "torch"]).run().image
    assert np.abs(torch_image - image).max() <= 1e-6 * image.max()  # the C engine stores float32


def test_goniometer_setting_and_fixed_rotations(tmp_path) -> None:
    """S and F are applied: the lab spindle is S x axis, the lab crystal S x F x A; a multi-axis
    goniometer's inner axes make F, its outer S."""
    doc = json.loads(EXPT.read_text())
    quarter_z = [0.0, -1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0]  # 90 degrees about imgCIF z
    doc["goniometer"][0]["setting_rotation"] = quarter_z
    doc["goniometer"][0]["fixed_rotation"] = quarter_z
    (tmp_path / "s.expt").write_text(json.dumps(doc))
    m = read_expt(tmp_path / "s.expt")
    assert m.spindle == pytest.approx(tuple(IMGCIF_TO_LAB @ [0.0, 1.0, 0.0]), abs=1e-15)
    assert m.a == pytest.approx(tuple(IMGCIF_TO_LAB @ [-50e-10, 0.0, 0.0]), abs=1e-22)
    doc["goniometer"][0] = {"axes": [[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]], "angles": [90.0, 0.0, 90.0],
                            "names": ["phi", "omega", "kappa"], "scan_axis": 1}
    (tmp_path / "m.expt").write_text(json.dumps(doc))
    multi = read_expt(tmp_path / "m.expt")
    assert multi.spindle == pytest.approx(m.spindle, abs=1e-15) and multi.a == pytest.approx(m.a, abs=1e-22)


@pytest.mark.parametrize(("edit", "message"), [
    (lambda d: d.pop("__id__"), "not a DIALS experiment list"),
    (lambda d: d["detector"][0]["panels"][0].update(pixel_size=[0.1, 0.2]), "square"),
    (lambda d: d["detector"][0]["panels"][1].update(slow_axis=[1.0, 0.0, 0.0]), "parallel"),
    (lambda d: d["detector"][0]["hierarchy"].update(children=[{"panel": 0}]), "panel 1 is not in the detector hierarchy"),
    (lambda d: d["experiment"][0].update(detector=3), "detector 3 is not in the file"),
    (lambda d: d["crystal"][0].update(real_space_c=[0.0, 60.0, 0.0]), "do not span a cell"),
])
def test_expt_errors(edit, message, tmp_path) -> None:
    doc = json.loads(EXPT.read_text())
    edit(doc)
    (tmp_path / "bad.expt").write_text(json.dumps(doc))
    with pytest.raises(FormatError, match=message):
        read_expt(tmp_path / "bad.expt")


def test_fixed_indices_and_data_blocks_stack_along_the_slow_axis() -> None:
    """dim1 = k puts a panel in slab k (k x the slab height); another data block comes after all slabs;
    a bad region in fs/ss is in its panel's block and cut to the panel."""
    text = "\n".join([MODULE.format(index=0, name="m0", corner_y=8), MODULE.format(index=2, name="m2", corner_y=-8),
                      "data = /other\n" + MODULE.format(index=0, name="x0", corner_y=20),
                      "badA/min_fs = 0\nbadA/max_fs = 3\nbadA/min_ss = 6\nbadA/max_ss = 99\nbadA/panel = m2\n"])
    geom = parse_geometry(text)
    m0, m2, x0 = lab_panels(geom)
    assert (m0.data_slow, m2.data_slow, x0.data_slow) == (0, 16, 24)
    bad = bad_pixel_mask(geom, [m0, m2, x0], (32, 16))
    assert bad[22:24, 0:4].all() and bad.sum() == 8
    assert parse_geometry(format_geometry(geom)) == geom


def test_model_round_trip_keeps_panels_named_before_a_global() -> None:
    """A panel named before a global line does not take it as a default: written before the globals."""
    text = ("res = 10000\np0/min_fs = 0\np0/max_fs = 3\np0/min_ss = 0\np0/max_ss = 3\np0/fs = x\np0/ss = y\n"
            "p0/corner_x = 0\np0/corner_y = 0\np0/clen = 0.1\nclen = 0.2 m\nmax_adu = 1000\n"
            "p1/min_fs = 0\np1/max_fs = 3\np1/min_ss = 4\np1/max_ss = 7\np1/fs = x\np1/ss = y\n"
            "p1/corner_x = 0\np1/corner_y = 10\nmask2_data = /mask\nphoton_energy = 9 keV\n")
    geom = parse_geometry(text)
    again = parse_geometry(format_geometry(geom))
    assert again == geom and again.panel("p0").get("max_adu") is None and again.panel("p1").get("clen") == 0.2
    assert geom.wavelength() == pytest.approx(12398.42 / 9000 * 1e-10)


def test_written_numbers_are_short_and_read_back_exactly() -> None:
    """corner_x/y, res and coffset: the shortest decimals that lab_panels turns back into the same
    metres (not 47.99999999999999 for 48)."""
    lp = LabPanel(name="p0", fpixels=96, spixels=64, pixel_size=1e-4, origin=(0.1, 0.0066, -0.0048),
                  fdet=(0.0, 0.0, 1.0), sdet=(0.0, -1.0, 0.0), data_fast=0, data_slow=0)
    tilted = LabPanel(name="bad name/1", fpixels=10, spixels=10, pixel_size=7.5e-5, origin=(0.1234567, 0.01, 0.002),
                      fdet=(0.0, 0.0, 1.0), sdet=(0.2, -0.9797958971132712, 0.0), data_fast=0, data_slow=64)
    geom = geometry_from_lab([lp, tilted], wavelength=1e-10)
    p0, p1 = geom.panels
    assert (p0.get("corner_x"), p0.get("corner_y"), p0.get("res"), p0.get("coffset")) == (48.0, 66.0, 10000.0, 0.0)
    assert p1.name == "p1_bad_name_1"  # CrystFEL keeps names starting with "bad" for bad regions
    back = lab_panels(parse_geometry(format_geometry(geom)))
    for a, b in zip((lp, tilted), back):
        assert a.origin == b.origin and a.pixel_size == b.pixel_size
        assert np.allclose(a.sdet, b.sdet, rtol=0, atol=1e-16)


@pytest.mark.parametrize(("before", "after", "message"), [
    ("", "electron_voltage = 200 kV\n", "electron_voltage: pybragg simulates X-rays"),
    ("", "p0/fs = -0.5x\n", "fs has length 0.5"),
    ("detector_shift_x = /LCLS/shift\n", "", "detector_shift_x = /LCLS/shift is a location"),
])
def test_more_geometry_errors(before, after, message) -> None:
    base = MODULE.format(index=0, name="p0", corner_y=0).replace("dim1 = 0\n", "")
    geom = parse_geometry(before + base + after)
    with pytest.raises(FormatError, match=message):
        lab_panels(geom)
        geom.wavelength()


def test_detector_shift_and_mask_keys() -> None:
    base = MODULE.format(index=0, name="p0", corner_y=0).replace("dim1 = 0\n", "")
    (plain,) = lab_panels(parse_geometry(base))
    (moved,) = lab_panels(parse_geometry("detector_shift_x = 2 mm\ndetector_shift_y = -1 mm\nmask0_data = /m\n"
                                         "mask0_goodbits = 0x00\n" + base))
    assert moved.origin == pytest.approx((plain.origin[0], plain.origin[1] - 0.001, plain.origin[2] - 0.002))
