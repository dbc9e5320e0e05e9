"""NeXus/NXmx output (-nexusfile), read back with h5py, fabio and the ``nxmx`` package (DIALS's reader).

For every detector convention (MOSFLM, XDS, ADXV, DENZO, DIALS, CUSTOM) and a rotated, two-theta
detector, the beam centre and the positions of the first and the farthest pixel are computed
from the file's transformations as dxtbx does it (the module's chain, McStas frame) and compared
with pybragg's own geometry.  The data are the counts of the CBF writer (or float32 photons with
-nonoise), deflate- or bitshuffle/LZ4-compressed.
"""

from __future__ import annotations

import json
import math

import fabio
import h5py
import numpy as np
import nxmx
import pytest

import pybragg
from pybragg.cli.main import main
from pybragg.io.frames import MCSTAS_TO_IMGCIF, lab_to_mcstas

CELL = ["-cell", "70", "80", "90", "90", "90", "90", "-misset", "10", "20", "30"]
BASE = [*CELL, "-default_F", "100", "-N", "5", "-pixel", "0.172", "-distance", "80",
        "-detpixels_f", "64", "-detpixels_s", "48", "-phi", "12", "-osc", "0.5", "-lambda", "1.1"]
OUT = ["-floatfile", "f.bin", "-intfile", "i.img", "-noisefile", "n.img", "-nopgm", "-seed", "5"]

CONVENTIONS = {
    "mosflm": ["-mosflm"],
    "xds": ["-xds", "-ORGX", "20", "-ORGY", "30"],
    "adxv": ["-adxv", "-Xbeam", "5", "-Ybeam", "4"],
    "denzo": ["-denzo", "-Xbeam", "4", "-Ybeam", "5"],
    "dials": ["-dials"],
    "custom": ["-fdet_vector", "0", "0", "1", "-sdet_vector", "0", "-1", "0", "-beam_vector", "1", "0", "0",
               "-spindle_axis", "0", "1", "0", "-pix0_vector_mm", "80", "6", "-5"],
    "rotated_twotheta": ["-xds", "-twotheta", "15", "-detector_rotx", "3", "-detector_roty", "-2",
                         "-detector_rotz", "4", "-close_distance", "90"],
}


def render(args: list[str]):
    return pybragg.from_args([*args, "--backend", "c"]).run()


def pixel_centre(g, f: float, s: float) -> np.ndarray:
    return (np.array(g.pix0) + (f + 0.5) * g.pixel_size * np.array(g.fdet)
            + (s + 0.5) * g.pixel_size * np.array(g.sdet))


def beam_hit(g) -> tuple[float, float]:
    pix0, f, s, beam = (np.array(v) for v in (g.pix0, g.fdet, g.sdet, g.beam))
    n = np.cross(f, s)
    hit = float(pix0 @ n) / float(beam @ n) * beam - pix0
    return float(hit @ f) / g.pixel_size, float(hit @ s) / g.pixel_size


def module_frame(module: nxmx.NXdetector_module):
    """Origin (corner of the first pixel), fast and slow axes (McStas, mm) and pixel size, as dxtbx reads them."""
    chain = nxmx.get_dependency_chain(module.fast_pixel_direction.depends_on)
    A = nxmx.get_cumulative_transformation(chain)
    rotations = [t for t in chain if t.transformation_type == "rotation"]
    R = nxmx.get_cumulative_transformation(rotations)[0, :3, :3] if rotations else np.eye(3)
    offset = module.fast_pixel_direction.offset
    origin = A[0, :3, 3] + (offset.to("mm").magnitude if offset is not None else 0.0)
    fast = R @ module.fast_pixel_direction.vector
    slow = R @ module.slow_pixel_direction.vector
    px = float(module.fast_pixel_direction[()].to("mm").magnitude[0])
    return origin, fast, slow, px


def run(tmp_path, monkeypatch, args: list[str]) -> None:
    monkeypatch.chdir(tmp_path)
    assert main([*args, "--backend", "c", "-noprogress"]) == 0


@pytest.mark.parametrize("name", sorted(CONVENTIONS))
def test_nxmx_geometry_matches_pybragg(name: str, tmp_path, monkeypatch) -> None:
    args = [*BASE, *CONVENTIONS[name], *OUT, "-nexusfile", "a.nxs", "-cbffile", "a.cbf", "-exptfile", "a.expt"]
    g = render(args).geometry
    run(tmp_path, monkeypatch, args)
    R = lab_to_mcstas(g.beam, g.convention)
    with h5py.File(tmp_path / "a.nxs") as handle:
        entry = nxmx.NXmx(handle).entries[0]
        assert entry.definition == "NXmx"
        detector = entry.instruments[0].detectors[0]
        (module,) = detector.modules
        origin, fast, slow, px = module_frame(module)
        assert px == pytest.approx(g.pixel_size * 1000.0, rel=1e-12)
        assert tuple(module.data_size) == (48, 64) and tuple(module.data_origin) == (0, 0)
        worst = 0.0
        for f, s in ((0, 0), (63, 47)):  # the first pixel and the farthest one
            from_file = origin + (f + 0.5) * px * fast + (s + 0.5) * px * slow
            worst = max(worst, float(np.abs(from_file - 1000.0 * R @ pixel_centre(g, f, s)).max()))
        assert worst < 1e-9, worst
        # the beam travels along McStas +z: where it meets the module's plane, in pixels from the corner
        normal = np.cross(fast, slow)
        hit = float(origin @ normal) / normal[2] * np.array([0.0, 0.0, 1.0]) - origin
        basis = np.array([fast, slow]).T
        (bf, bs), *_ = np.linalg.lstsq(basis, hit, rcond=None)
        fx, fy = beam_hit(g)
        assert abs(bf / px - fx) < 1e-7 and abs(bs / px - fy) < 1e-7
        assert detector.beam_center_x.magnitude == pytest.approx(fx, abs=1e-9)
        assert detector.beam_center_y.magnitude == pytest.approx(fy, abs=1e-9)
        assert np.allclose(R @ np.array(g.beam), (0, 0, 1), atol=1e-12)
        # the goniometer: the spindle, its start and its increment
        sample = entry.samples[0]
        axes = nxmx.get_rotation_axes(nxmx.get_dependency_chain(sample.depends_on))
        assert np.allclose(axes.axes[0], R @ np.array(g.spindle), atol=1e-12)
        assert axes.angles[0] == pytest.approx(12.0)
        omega = sample.depends_on
        assert (omega.end[0] - omega[0]).to("deg").magnitude == pytest.approx(0.5)
        assert entry.instruments[0].beams[0].incident_wavelength.to("angstrom").magnitude == pytest.approx(1.1)
        assert detector.sensor_material == "Si"
        assert detector.saturation_value == 2**31 - 1
        counts = handle["/entry/data/data"][0]
    assert np.array_equal(counts, fabio.open(str(tmp_path / "a.cbf")).data)
    assert np.array_equal(fabio.open(str(tmp_path / "a.nxs")).data, counts)
    # the experiment list is the NeXus file's models in DIALS's frame (dxtbx turns McStas into imgCIF)
    doc = json.loads((tmp_path / "a.expt").read_text())
    panel = doc["detector"][0]["panels"][0]
    assert np.allclose(panel["origin"], MCSTAS_TO_IMGCIF @ origin, atol=1e-9)
    assert np.allclose(panel["fast_axis"], MCSTAS_TO_IMGCIF @ fast, atol=1e-12)
    assert np.allclose(panel["slow_axis"], MCSTAS_TO_IMGCIF @ slow, atol=1e-12)
    assert np.allclose(doc["goniometer"][0]["rotation_axis"], MCSTAS_TO_IMGCIF @ axes.axes[0], atol=1e-12)


def test_float_data_with_nonoise_and_bitshuffle(tmp_path, monkeypatch) -> None:
    import hdf5plugin  # noqa: F401
    args = [*BASE, *OUT, "-nonoise", "-nexusfile", "a.nxs", "-nexus_compression", "bslz4"]
    run(tmp_path, monkeypatch, args)
    image = np.fromfile(tmp_path / "f.bin", dtype="<f4").reshape(48, 64)

    with h5py.File(tmp_path / "a.nxs") as handle:
        data = handle["/entry/data/data"]
        assert data.dtype == np.float32 and data.shape == (1, 48, 64)
        assert "32008" in data._filters  # bitshuffle's HDF5 filter id (LZ4 inside it)
        assert np.array_equal(data[0], image)
        assert handle["/entry/instrument/detector/data"][0].tobytes() == image.tobytes()


def test_spectrum_and_deflate(tmp_path, monkeypatch) -> None:
    args = [*BASE, *OUT, "-nexusfile", "a.nxs", "-dispersion", "2", "-dispsteps", "3"]
    result = render(args)
    run(tmp_path, monkeypatch, args)
    with h5py.File(tmp_path / "a.nxs") as handle:
        data = handle["/entry/data/data"]
        assert data.compression == "gzip" and data.dtype == np.int32
        beam = handle["/entry/instrument/beam"]
        assert beam["incident_wavelength"].attrs["variant"] == b"incident_wavelength_spectrum"
        wavelengths = beam["incident_wavelength_spectrum"][()]
        weights = beam["incident_wavelength_spectrum_weights"][()]
        assert len(wavelengths) == 3
        assert np.allclose(np.sort(wavelengths), np.sort(np.unique(result.sources[:, 4])) * 1e10)
        assert weights.sum() == pytest.approx(result.sources[:, 3].sum())
        assert math.isclose(beam["incident_wavelength"][()], 1.1)
        mask = handle["/entry/instrument/detector/pixel_mask"][()]
        assert mask.shape == (48, 64) and not mask.any()


def test_roi_pixels_are_masked(tmp_path, monkeypatch) -> None:
    run(tmp_path, monkeypatch, [*BASE, *OUT, "-nexusfile", "a.nxs", "-roi", "10", "20", "5", "30"])
    with h5py.File(tmp_path / "a.nxs") as handle:
        mask = handle["/entry/instrument/detector/pixel_mask"][()]
    inside = np.zeros((48, 64), dtype=bool)
    inside[5:31, 10:21] = True
    assert (mask[inside] == 0).all() and (mask[~inside] == 256).all()


def test_one_module_per_panel(tmp_path) -> None:
    """A detector of panels (``DetectorConfig.panels``): one NXdetector_module per panel, each at the
    panel's place in the data array and in space; the experiment list has every panel too; a CBF,
    which holds one panel, is refused before anything is written."""
    from pybragg.config import Config, Convention, DetectorConfig, PanelConfig
    from pybragg.errors import UsageError
    from pybragg.flags.parse import OutputOptions
    from pybragg.simulator import Simulator
    from pybragg.writers import write_outputs

    panels = (
        PanelConfig(name="left", fpixels=32, spixels=40, pixel_size=0.172e-3, origin=(0.09, 0.004, -0.006),
                    fdet=(0.0, 0.0, 1.0), sdet=(0.0, -1.0, 0.0), data_fast=0, data_slow=0),
        PanelConfig(name="right tilted", fpixels=24, spixels=40, pixel_size=0.172e-3, origin=(0.09, 0.004, 0.0),
                    fdet=(-0.1, 0.0, 0.99), sdet=(0.0, -1.0, 0.0), data_fast=34, data_slow=2),
    )
    cfg = Config(detector=DetectorConfig(convention=Convention.CUSTOM, panels=panels, twotheta=math.radians(5),
                                         twotheta_axis=(0.0, 1.0, 0.0)))
    cfg.crystal.has_cell = True
    cfg.crystal.cell = (70e-10, 80e-10, 90e-10, math.pi / 2, math.pi / 2, math.pi / 2)
    cfg.crystal.default_F = 100.0
    cfg.crystal.N = (5.0, 5.0, 5.0)
    result = Simulator(cfg, backend="c").run()
    plan_panels = result.geometry.panels
    outputs = OutputOptions(floatfile=None, intfile=None, pgmfile=None, noisefile=None, write_pgm=False,
                            write_noise=False, nexusfile=str(tmp_path / "a.nxs"), exptfile=str(tmp_path / "a.expt"))
    write_outputs(result, outputs)
    g = result.geometry
    R = lab_to_mcstas(g.beam, g.convention)
    with h5py.File(tmp_path / "a.nxs") as handle:
        detector = nxmx.NXmx(handle).entries[0].instruments[0].detectors[0]
        modules = detector.modules
        assert len(modules) == 2
        data = handle["/entry/data/data"]
        assert data.shape == (1, g.data_spixels, g.data_fpixels) == (1, 42, 58)
        mask = handle["/entry/instrument/detector/pixel_mask"][()]
        assert (mask[:40, 32:34] == 1).all() and (mask[40:, :32] == 1).all() and (mask[2:, 34:] == 0).all()
        for module, panel in zip(modules, plan_panels):
            assert tuple(module.data_origin) == (panel.data_slow, panel.data_fast)
            assert tuple(module.data_size) == (panel.spixels, panel.fpixels)
            origin, fast, slow, px = module_frame(module)
            for f, s in ((0, 0), (panel.fpixels - 1, panel.spixels - 1)):
                ours = (np.array(panel.pix0) + (f + 0.5) * panel.pixel_size * np.array(panel.fdet)
                        + (s + 0.5) * panel.pixel_size * np.array(panel.sdet))
                theirs = origin + (f + 0.5) * px * fast + (s + 0.5) * px * slow
                assert np.abs(theirs - 1000.0 * R @ ours).max() < 1e-9
    doc = json.loads((tmp_path / "a.expt").read_text())
    expt_panels = doc["detector"][0]["panels"]
    assert [p["name"] for p in expt_panels] == ["left", "right tilted"]
    assert [p["raw_image_offset"] for p in expt_panels] == [[0, 0], [34, 2]]
    with pytest.raises(UsageError, match="-cbffile"):
        write_outputs(result, OutputOptions(floatfile=None, intfile=None, pgmfile=None, noisefile=None,
                                            write_pgm=False, write_noise=False, cbffile=str(tmp_path / "a.cbf")))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.expt", "a.nxs"]
