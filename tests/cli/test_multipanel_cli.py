"""Multi-panel detectors through the command line: ``-geom``, ``-expt``, ``-geomfile``, ``-mask``,
the outputs' data array and ``pybragg trace --panel``.

* The multi-panel reference images of ``../shared/golden-multipanel`` from ``-geom`` on both engines
  (float64; the torch engine's float32 to its bar).
* Round trips: a flag-defined detector written with ``-geomfile`` and read back with ``-geom`` gives
  the same image; the same with ``-exptfile``/``-expt``; a ``.geom`` read and written (``-geom`` ...
  ``-geomfile``) reads back unchanged.
"""

from __future__ import annotations

import gzip
import json
import math

import numpy as np
import pytest

from golden import GOLDEN, compare_float, smv_pixels
from pybragg.cli.main import main
from pybragg.errors import UsageError
from pybragg.flags import from_args
from pybragg.io.crystfel import lab_panels, parse_geometry, read_geometry
from pybragg.io.errors import FormatError

MULTIPANEL = GOLDEN.parent / "golden-multipanel"
QUIET = ["-q", "-noprogress", "-nopgm"]
CELL = ["-cell", "70", "80", "90", "90", "95", "100", "-misset", "10", "20", "30"]
CRYSTAL = ["-default_F", "100", "-N", "5", "-lambda", "1.1"]
# a small flag-defined detector, turned and off centre, with a spindle scan
DETECTOR = ["-pixel", "0.172", "-distance", "80", "-detpixels_f", "40", "-detpixels_s", "30", "-Xbeam", "2",
            "-Ybeam", "3", "-detector_rotx", "3", "-twotheta", "5", "-phi", "12", "-osc", "0.5"]

TWO = """; two panels with a gap between them, the second tilted
clen = 80 mm
res = 5000
photon_energy = 11.27 keV
adu_per_eV = 0.001
max_adu = 60000
dim0 = ss
dim1 = fs
top/min_fs = 0
top/max_fs = 31
top/min_ss = 0
top/max_ss = 19
top/fs = -1x
top/ss = -1y
top/corner_x = 16
top/corner_y = 24
top/mask_edge_pixels = 1
bottom/min_fs = 0
bottom/max_fs = 31
bottom/min_ss = 24
bottom/max_ss = 43
bottom/fs = -1x
bottom/ss = -0.98y +0.2z
bottom/corner_x = 16
bottom/corner_y = -4
bottom/coffset = 0.002
badA/min_fs = 3
badA/max_fs = 5
badA/min_ss = 30
badA/max_ss = 31
badA/panel = bottom
group_all = top,bottom
"""


def run(tmp_path, monkeypatch, args, code: int = 0) -> None:
    monkeypatch.chdir(tmp_path)
    assert main([*args, *QUIET]) == code


def floats(path, shape) -> np.ndarray:
    return np.fromfile(path, dtype="<f4").reshape(shape)


def multipanel_cases() -> list[str]:
    path = MULTIPANEL / "manifest.json"
    if not path.is_file():
        return ["<golden-multipanel data missing>"]
    return sorted(json.loads(path.read_text())["cases"])


@pytest.mark.parametrize(("backend", "dtype"), [("c", "float64"), ("torch", "float64"), ("torch", "float32")])
@pytest.mark.parametrize("case", multipanel_cases())
def test_golden_multipanel_from_geom(case, backend, dtype, tmp_path, monkeypatch) -> None:
    """The reference's panels, stitched, from the case's own detector.geom (its photon_energy loses to
    the case's -lambda: flags win)."""
    manifest = json.loads((MULTIPANEL / "manifest.json").read_text())["cases"][case]
    run(tmp_path, monkeypatch, ["-geom", str(MULTIPANEL / case / "detector.geom"), *manifest["args"],
                                "--backend", backend, "--dtype", dtype, "-floatfile", "f.bin", "-intfile", "i.img",
                                "-noisefile", "n.img", "-seed", "7"])
    shape = tuple(manifest["shape"])
    ref = np.frombuffer(gzip.decompress((MULTIPANEL / case / "float.bin.gz").read_bytes()), dtype="<f4").reshape(shape)
    ours = floats(tmp_path / "f.bin", shape)
    compare_float(ours, ref, dtype)
    # the SMV images hold the same data array
    for name in ("i.img", "n.img"):
        header, pixels = smv_pixels((tmp_path / name).read_bytes())
        assert (int(header["SIZE1"]), int(header["SIZE2"])) == (shape[1], shape[0]) and pixels.shape == shape


def test_flag_detector_geomfile_geom_round_trip(tmp_path, monkeypatch) -> None:
    """-geomfile of a turned flag-defined detector, read back with -geom: the same image, bit for bit
    (C engine; the torch engine below)."""
    run(tmp_path, monkeypatch, [*CELL, *CRYSTAL, *DETECTOR, "--backend", "c", "-floatfile", "a.bin",
                                "-nonoise", "-geomfile", "a.geom"])
    geom = read_geometry(tmp_path / "a.geom")
    assert [p.name for p in geom.panels] == ["p0"] and geom.wavelength() == pytest.approx(1.1e-10, rel=1e-12)
    assert "clen = " in (tmp_path / "a.geom").read_text() and "p0/clen" not in (tmp_path / "a.geom").read_text()
    run(tmp_path, monkeypatch, [*CELL, *CRYSTAL, "-phi", "12", "-osc", "0.5", "-geom", "a.geom", "--backend", "c",
                                "-floatfile", "b.bin", "-nonoise"])
    a, b = floats(tmp_path / "a.bin", (30, 40)), floats(tmp_path / "b.bin", (30, 40))
    assert a.max() > 0 and np.array_equal(a, b)


def test_torch_flag_detector_geomfile_geom_round_trip(tmp_path, monkeypatch) -> None:
    args = [*CELL, *CRYSTAL, "-phi", "12", "-osc", "0.5", "--backend", "torch", "-nonoise"]
    run(tmp_path, monkeypatch, [*args, *DETECTOR[:-4], "-floatfile", "a.bin", "-geomfile", "a.geom"])
    run(tmp_path, monkeypatch, [*args, "-geom", "a.geom", "-floatfile", "b.bin"])
    a, b = floats(tmp_path / "a.bin", (30, 40)), floats(tmp_path / "b.bin", (30, 40))
    assert a.max() > 0 and np.abs(a - b).max() <= 1e-12 * a.max()


@pytest.mark.parametrize("convention", [[], ["-xds", "-detector_rotz", "10"], ["-dials"]], ids=["mosflm", "xds", "dials"])
def test_exptfile_expt_round_trip(convention, tmp_path, monkeypatch) -> None:
    """-exptfile, then -expt with only the crystal's size and structure factors on the command line:
    detector, beam, spindle, scan and crystal orientation come back, the same image bit for bit,
    whatever the convention (the list is in DIALS's frame).  Mosaic domains are drawn in the lab
    frame, so the mosaic case is the MOSFLM one, whose frame the list's reader uses."""
    det = DETECTOR[:10] + DETECTOR[14:] if convention else DETECTOR  # no MOSFLM beam centre for the others
    mosaic = [] if convention else ["-mosaic", "0.2", "-mosaic_domains", "3"]
    run(tmp_path, monkeypatch, [*CELL, *CRYSTAL, *det, *convention, *mosaic, "--backend", "c", "-floatfile", "a.bin",
                                "-nonoise", "-exptfile", "a.expt"])
    run(tmp_path, monkeypatch, ["-default_F", "100", "-N", "5", *mosaic[2:], "-expt", "a.expt", "--backend", "c",
                                "-floatfile", "b.bin", "-nonoise"])
    a, b = floats(tmp_path / "a.bin", (30, 40)), floats(tmp_path / "b.bin", (30, 40))
    assert a.max() > 0 and np.array_equal(a, b)


def test_xds_exptfile_expt_round_trip_is_exact_without_mosaicity(tmp_path, monkeypatch) -> None:
    run(tmp_path, monkeypatch, [*CELL, *CRYSTAL, "-xds", "-pixel", "0.172", "-distance", "80", "-detpixels", "32",
                                "-detector_rotz", "10", "-phi", "12", "-osc", "0.5", "--backend", "torch",
                                "-floatfile", "a.bin", "-nonoise", "-exptfile", "a.expt"])
    run(tmp_path, monkeypatch, ["-default_F", "100", "-N", "5", "-expt", "a.expt", "--backend", "torch",
                                "-floatfile", "b.bin", "-nonoise"])
    a, b = floats(tmp_path / "a.bin", (32, 32)), floats(tmp_path / "b.bin", (32, 32))
    assert a.max() > 0 and np.abs(a - b).max() <= 1e-9 * a.max()


def test_geom_read_written_read_unchanged(tmp_path, monkeypatch) -> None:
    """-geom A -geomfile B: B holds A's panels exactly (positions, axes, pixel size, data ranges, edge
    masks, ADU scale, bad regions, groups), and B written again is B."""
    (tmp_path / "two.geom").write_text(TWO)
    args = [*CELL, "-default_F", "100", "-N", "5", "--backend", "c", "-floatfile", "f.bin", "-nonoise"]
    run(tmp_path, monkeypatch, [*args, "-geom", "two.geom", "-geomfile", "b.geom"])
    run(tmp_path, monkeypatch, [*args, "-geom", "b.geom", "-geomfile", "c.geom"])
    a, b = read_geometry(tmp_path / "two.geom"), read_geometry(tmp_path / "b.geom")
    energy = 12398.42 / (a.wavelength() * 1e10)  # as the command line computed it
    assert lab_panels(a, photon_energy_ev=energy) == lab_panels(b, photon_energy_ev=energy)
    assert b.bad_regions == a.bad_regions and b.groups == a.groups
    assert b.wavelength() == pytest.approx(a.wavelength(), rel=1e-15)
    assert (tmp_path / "b.geom").read_text() == (tmp_path / "c.geom").read_text()
    assert parse_geometry((tmp_path / "b.geom").read_text()) == b


def test_geom_outputs_hold_the_data_array(tmp_path, monkeypatch) -> None:
    """Each panel at its min/max fs/ss, zeros in the gap; the mask of the file (edges, bad region) and
    -mask combined; the wavelength from photon_energy; -distance sets clen; NeXus has both modules."""
    (tmp_path / "two.geom").write_text(TWO)
    args = [*CELL, "-default_F", "100", "-N", "5", "--backend", "c", "-geom", "two.geom", "-floatfile", "f.bin",
            "-intfile", "i.img", "-nonoise"]
    run(tmp_path, monkeypatch, args)
    img = floats(tmp_path / "f.bin", (44, 32))
    assert not img[20:24].any()  # rows no panel covers
    assert not img[0].any() and not img[19].any() and not img[:20, 0].any() and not img[:20, 31].any()  # edges
    assert not img[30:32, 3:6].any() and img[24:44, 6:].all() and img[1:19, 1:31].all()  # the bad region
    header, counts = smv_pixels((tmp_path / "i.img").read_bytes())
    assert counts.shape == (44, 32) and not counts[20:24].any()
    sim = from_args(args)
    assert sim.config.beam.lambda0 == pytest.approx(12398.42 / 11270.0 * 1e-10)
    assert sim.config.detector.panels[0].origin[0] == pytest.approx(0.08)
    # a -mask of the data array adds to the file's bad pixels
    mask_header = header.copy()
    from pybragg.io.smv import write_smv

    keep = np.ones((44, 32), dtype=np.uint16)
    keep[5:8, 10:12] = 0
    write_smv(str(tmp_path / "mask.img"), keep, [(k, v) for k, v in mask_header.items() if k == "PIXEL_SIZE"])
    run(tmp_path, monkeypatch, [*args, "-mask", "mask.img", "-floatfile", "g.bin", "-distance", "90"])
    masked = floats(tmp_path / "g.bin", (44, 32))
    assert not masked[5:8, 10:12].any() and not masked[30:32, 3:6].any() and masked[8:19, 12:31].all()
    assert from_args([*args, "-distance", "90"]).config.detector.panels[1].origin[0] == pytest.approx(0.092)
    wrong = np.ones((40, 32), dtype=np.uint16)
    write_smv(str(tmp_path / "wrong.img"), wrong, [])
    with pytest.raises(FormatError, match="-mask wrong.img: 32 x 40 pixels .* data array 32 x 44"):
        from_args([*args, "-mask", "wrong.img"])
    h5py = pytest.importorskip("h5py")
    run(tmp_path, monkeypatch, [*args, "-nexusfile", "a.nxs", "-geomfile", "a.geom"])
    with h5py.File(tmp_path / "a.nxs") as f:
        det = f["/entry/instrument/detector"]
        modules = sorted(k for k in det if det[k].attrs.get("NX_class") in (b"NXdetector_module", "NXdetector_module"))
        assert modules == ["module_bottom", "module_top"] and f["/entry/data/data"].shape == (1, 44, 32)
    text = (tmp_path / "a.geom").read_text()
    assert "data = /entry/data/data" in text and "dim0 = %" in text and "dim2 = fs" in text
    # a CBF holds one panel
    run(tmp_path, monkeypatch, [*args, "-cbffile", "a.cbf"], code=2)


def test_trace_by_panel(tmp_path, monkeypatch, capsys) -> None:
    """--panel NAME --pixel SS FS traces the panel's own pixel; it is the rendered data-array pixel."""
    (tmp_path / "two.geom").write_text(TWO)
    flags = [*CELL, "-default_F", "100", "-N", "5", "-geom", "two.geom"]
    monkeypatch.chdir(tmp_path)
    assert main(["trace", "--panel", "bottom", "--pixel", "4", "7", "--engines", "c,torch", "--json", "--", *flags]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["pixel"] == {"slow": 28, "fast": 7}
    assert payload["panel"] == {"name": "bottom", "slow": 4, "fast": 7}
    image = from_args([*flags, "--backend", "c"]).run().image
    assert payload["values"]["c"] == pytest.approx(float(image[28, 7]), rel=1e-6)
    assert payload["values"]["torch"] == pytest.approx(payload["values"]["c"], rel=1e-9)
    assert main(["trace", "--panel", "nowhere", "--pixel", "0", "0", "--", *flags]) == 2
    assert main(["trace", "--panel", "top", "--pixel", "20", "0", "--", *flags]) == 2
    assert "outside panel top (32x20" in capsys.readouterr().err


@pytest.mark.parametrize(("extra", "message"), [
    (["-pixel", "0.1"], "-pixel places the flag-defined detector, which -geom replaces"),
    (["-xds"], "-xds places the flag-defined detector"),
    (["-expt", "x.expt"], "-geom and -expt both give the detector"),
])
def test_flags_that_clash_with_a_detector_file(extra, message, tmp_path, monkeypatch) -> None:
    (tmp_path / "two.geom").write_text(TWO)
    (tmp_path / "x.expt").write_text("{}")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UsageError, match=message):
        from_args([*CELL, "-default_F", "1", "-geom", "two.geom", *extra])


@pytest.mark.parametrize(("change", "message"), [
    (("bottom/min_ss = 24", "bottom/min_ss = 10"), "panel bottom: its data range .* overlaps panel top's"),
    (("bottom/ss = -0.98y +0.2z", "bottom/ss = 0x"), "panel bottom: ss = .* is zero"),
    (("bottom/ss = -0.98y +0.2z", "bottom/ss = -1x"), "panel bottom: fs and ss are parallel"),
    (("bottom/coffset = 0.002", "bottom/coffset = -0.2"), "panel bottom: .* behind the sample"),
    (("res = 5000\n", ""), "panel top: no res"),
    (("clen = 80 mm\n", ""), "panel top: no clen .* -distance"),
    (("clen = 80 mm", "clen = /LCLS/detector_1/EncoderValue"), "clen = /LCLS/.* -distance"),
    (("top/corner_y = 24", "top/corner_y = 24\ntop/colour = blue"), r"two.geom:\d+: top/colour: unknown panel key"),
    (("photon_energy = 11.27 keV", "photon_energy = /LCLS/photon_energy_eV"), "photon_energy = /LCLS.* -lambda"),
])
def test_bad_geometry_is_one_line_naming_panel_and_key(change, message, tmp_path, monkeypatch) -> None:
    (tmp_path / "two.geom").write_text(TWO.replace(*change))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FormatError, match=message) as info:
        from_args([*CELL, "-default_F", "1", "-geom", "two.geom"])
    assert "\n" not in str(info.value) and str(info.value).startswith("-geom")


def test_data_locations_stand_in_for_flags(tmp_path, monkeypatch) -> None:
    """A clen or photon_energy given by a data location is fine when -distance or -lambda gives it."""
    text = TWO.replace("clen = 80 mm", "clen = /LCLS/detector_1/EncoderValue").replace(
        "photon_energy = 11.27 keV", "photon_energy = /LCLS/photon_energy_eV")
    (tmp_path / "two.geom").write_text(text)
    monkeypatch.chdir(tmp_path)
    sim = from_args([*CELL, "-default_F", "1", "-geom", "two.geom", "-distance", "75", "-lambda", "1.3"])
    assert sim.config.beam.lambda0 == pytest.approx(1.3e-10)
    assert sim.config.detector.panels[0].origin[0] == pytest.approx(0.075)
    assert sim.config.detector.panels[1].origin[0] == pytest.approx(0.077)


def test_expt_flags_win(tmp_path, monkeypatch) -> None:
    """With -expt, flags still win: -lambda, -distance (the detector moves along the beam), -cell,
    -phi, -polar; the first of several experiments is used, with a notice."""
    run(tmp_path, monkeypatch, [*CELL, *CRYSTAL, *DETECTOR, "-polar", "0.9", "--backend", "c", "-floatfile", "a.bin",
                                "-nonoise", "-exptfile", "a.expt"])
    doc = json.loads((tmp_path / "a.expt").read_text())
    doc["experiment"].append(dict(doc["experiment"][0], identifier="second"))
    (tmp_path / "b.expt").write_text(json.dumps(doc))
    notices: list[str] = []
    sim = from_args(["-default_F", "1", "-expt", "b.expt", "-lambda", "1.5", "-distance", "120", "-phi", "3",
                     "-cell", "50", "60", "70", "90", "90", "90"], notice=notices.append)
    cfg = sim.config
    assert cfg.beam.lambda0 == pytest.approx(1.5e-10) and cfg.crystal.phi0 == pytest.approx(math.radians(3))
    assert cfg.crystal.has_cell and not cfg.crystal.has_matrix
    assert cfg.beam.polarization == pytest.approx(0.9)
    assert any("2 experiments; the first is used" in n for n in notices)
    g = sim.run().geometry.panels[0]
    assert g.distance == pytest.approx(0.12, rel=1e-12)
    assert cfg.crystal.osc == pytest.approx(math.radians(0.5))


def test_compare_engines_on_a_geom_detector(tmp_path, monkeypatch, capsys) -> None:
    """pybragg compare renders a -geom detector (turned by -detector_rotx) with both engines in this
    process: the images agree over every panel."""
    (tmp_path / "two.geom").write_text(TWO)
    monkeypatch.chdir(tmp_path)
    flags = [*CELL, "-default_F", "100", "-N", "5", "-geom", "two.geom", "-detector_rotx", "4"]
    assert main(["compare", "--threshold", "0.9999999", "--", *flags]) == 0
    assert "correlation" in capsys.readouterr().out
