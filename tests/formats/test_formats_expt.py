"""DIALS experiment list (-exptfile): the JSON parsed back, its beam centre, a far pixel and the
crystal axes checked against pybragg's own geometry in DIALS's (imgCIF) frame, and every angle
between beam, detector axes, spindle and crystal axes (handedness included) kept."""

from __future__ import annotations

import json

import numpy as np
import pytest

import pybragg
from pybragg.cli.main import main
from pybragg.io.expt import model_vectors
from pybragg.io.frames import lab_to_imgcif

CELL = ["-cell", "70", "80", "90", "90", "95", "100", "-misset", "10", "20", "30"]
BASE = [*CELL, "-default_F", "100", "-N", "5", "-pixel", "0.172", "-distance", "80",
        "-detpixels_f", "64", "-detpixels_s", "48", "-phi", "12", "-osc", "0.5", "-lambda", "1.1"]
OUT = ["-floatfile", "f.bin", "-intfile", "i.img", "-noisefile", "n.img", "-nopgm", "-seed", "5"]


def render(args):
    return pybragg.from_args([*args, "--backend", "c"]).run()


def run(tmp_path, monkeypatch, args) -> dict:
    monkeypatch.chdir(tmp_path)
    assert main([*args, "--backend", "c", "-noprogress", "-exptfile", "a.expt"]) == 0
    return json.loads((tmp_path / "a.expt").read_text())


@pytest.mark.parametrize("extra", [["-mosflm"], ["-xds", "-twotheta", "12", "-detector_rotx", "4"], ["-dials"],
                                   ["-adxv", "-detector_rotz", "30"], ["-denzo", "-mosaic", "0.3"]],
                         ids=["mosflm", "xds_twotheta", "dials", "adxv_rotz", "denzo_mosaic"])
def test_expt_models_match_pybragg(extra, tmp_path, monkeypatch) -> None:
    args = [*BASE, *extra, *OUT]
    g = render(args).geometry
    doc = run(tmp_path, monkeypatch, args)
    assert doc["__id__"] == "ExperimentList" and len(doc["experiment"]) == 1
    v = model_vectors(doc)
    R = lab_to_imgcif(g.beam, g.convention)
    panel = doc["detector"][0]["panels"][0]
    px = panel["pixel_size"][0]
    assert panel["image_size"] == [64, 48] and px == pytest.approx(0.172)
    # the far pixel's centre
    far = v["origin"] + 63.5 * px * v["fast"] + 47.5 * px * v["slow"]
    ours = 1000.0 * R @ (np.array(g.pix0) + 63.5 * g.pixel_size * np.array(g.fdet) + 47.5 * g.pixel_size * np.array(g.sdet))
    assert np.abs(far - ours).max() < 1e-9
    # the beam centre: where s0 meets the panel's plane, in pixels from the corner
    beam = v["beam"]
    assert np.allclose(beam, (0, 0, -1), atol=1e-12)
    normal = np.cross(v["fast"], v["slow"])
    hit = float(v["origin"] @ normal) / float(beam @ normal) * beam - v["origin"]
    pix0, f, s, b = (np.array(x) for x in (g.pix0, g.fdet, g.sdet, g.beam))
    n = np.cross(f, s)
    ref = float(pix0 @ n) / float(b @ n) * b - pix0
    assert abs(float(hit @ v["fast"]) / px - float(ref @ f) / g.pixel_size) < 1e-7
    assert abs(float(hit @ v["slow"]) / px - float(ref @ s) / g.pixel_size) < 1e-7
    # the crystal at spindle angle 0, in Angstrom
    for name in ("a", "b", "c"):
        assert np.abs(v[name] - 1e10 * R @ np.array(getattr(g, name))).max() < 1e-9
    A = np.array([v["a"], v["b"], v["c"]])
    assert np.allclose(np.sort(np.linalg.norm(A, axis=1)), (70, 80, 90), atol=1e-9)
    # every angle, and the handedness, between beam, detector axes, spindle and crystal axes
    lab = {"beam": b, "fast": f, "slow": s, "spindle": np.array(g.spindle),
           "a": np.array(g.a) * 1e10, "b": np.array(g.b) * 1e10, "c": np.array(g.c) * 1e10}
    names = sorted(lab)
    for i, p in enumerate(names):
        for q in names[i + 1:]:
            assert float(v[p] @ v[q]) == pytest.approx(float(lab[p] @ lab[q]), abs=1e-8)
    for p, q, r in (("a", "b", "c"), ("beam", "spindle", "fast"), ("fast", "slow", "beam")):
        assert float(np.cross(v[p], v[q]) @ v[r]) == pytest.approx(float(np.cross(lab[p], lab[q]) @ lab[r]), abs=1e-6)
    scan = doc["scan"][0]
    assert scan["image_range"] == [1, 1]
    assert scan["properties"]["oscillation"] == pytest.approx([12.0])
    assert scan["properties"]["oscillation_width"] == pytest.approx([0.5])
    assert np.allclose(v["spindle"], R @ np.array(g.spindle), atol=1e-12)
    xl = doc["crystal"][0]
    assert xl["space_group_hall_symbol"] == " P 1"
    if "-mosaic" in extra:
        assert xl["mosaicity"] == pytest.approx(0.3)
    else:
        assert "mosaicity" not in xl
    assert doc["beam"][0]["wavelength"] == pytest.approx(1.1)
    assert doc["imageset"][0]["template"] == "n.img"


def test_expt_points_at_the_nexus_file(tmp_path, monkeypatch) -> None:
    (tmp_path / "data").mkdir()
    doc = run(tmp_path, monkeypatch, [*BASE, *OUT, "-nexusfile", "data/a.nxs"])
    assert doc["imageset"][0] == {"__id__": "ImageSequence", "template": "data/a.nxs", "single_file_indices": [0]}
