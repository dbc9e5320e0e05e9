"""CBF output (-cbffile), read back with fabio and with CBFlib's own bindings (pycbf).

* The pixels are the noise image's photons (the SMV noise image minus the ADC offset wherever
  that is below 65535, for the same seed; above it the CBF goes on counting), or the float image
  rounded with -nonoise.
* The mini header gives the beam centre (from the first pixel's corner), pixel size, distance,
  wavelength and scan that DIALS's miniCBF reader turns into a detector; rebuilt the way that
  reader does it, the detector lands where pybragg put it.
* Where the mini header cannot describe the detector the imgCIF axis categories are written,
  and CBFlib computes the centre of every pixel where pybragg put it (a rotated, two-theta
  detector; every convention), in the imgCIF frame.
"""

from __future__ import annotations

import math

import fabio
import numpy as np
import pycbf
import pytest

import pybragg
from pybragg.cli.main import main
from pybragg.io.cbf import byte_offset_compress, byte_offset_decompress, mini_header_describes, read_cbf
from pybragg.io.frames import lab_to_imgcif, setup_from_result

CELL = ["-cell", "70", "80", "90", "90", "90", "90", "-misset", "10", "20", "30"]
BASE = [*CELL, "-default_F", "100", "-N", "5", "-pixel", "0.172", "-distance", "80",
        "-detpixels_f", "64", "-detpixels_s", "48", "-phi", "12", "-osc", "0.5", "-lambda", "1.1"]


def render(args: list[str]):
    """The pybragg result of a command line (the C engine, no files)."""
    return pybragg.from_args([*args, "--backend", "c"]).run()


def run_cli(tmp_path, monkeypatch, args: list[str]) -> None:
    monkeypatch.chdir(tmp_path)
    assert main([*args, "--backend", "c", "-noprogress"]) == 0


def pixel_centre(g, f: float, s: float) -> np.ndarray:
    """pybragg's centre of pixel (f, s), lab frame (m)."""
    return (np.array(g.pix0) + (f + 0.5) * g.pixel_size * np.array(g.fdet)
            + (s + 0.5) * g.pixel_size * np.array(g.sdet))


def beam_hit(g) -> tuple[float, float]:
    """Where pybragg's beam meets its detector plane: (fast, slow) in pixels from the first pixel's corner."""
    pix0, f, s, beam = (np.array(v) for v in (g.pix0, g.fdet, g.sdet, g.beam))
    n = np.cross(f, s)
    hit = float(pix0 @ n) / float(beam @ n) * beam - pix0
    return float(hit @ f) / g.pixel_size, float(hit @ s) / g.pixel_size


def test_byte_offset_round_trip_and_fabio_agrees() -> None:
    values = np.array([0, 1, -1, 127, -127, 128, -128, 32767, -32767, 32768, -32768, 2**31 - 1, -2**31,
                       0, 2**31 - 1, -2**31, 5, 5, 70000, -70000], dtype=np.int64)
    packed = byte_offset_compress(values)
    assert np.array_equal(byte_offset_decompress(packed, len(values)), values)
    from fabio.compression import decByteOffset

    assert np.array_equal(decByteOffset(packed, size=len(values), dtype=np.int64), values)
    rng = np.random.default_rng(3)
    image = rng.poisson(rng.exponential(50, (40, 50))).astype(np.int32)
    assert np.array_equal(byte_offset_decompress(byte_offset_compress(image), image.size).reshape(image.shape), image)


def test_counts_are_the_noise_photons_without_offset_or_cap(tmp_path, monkeypatch) -> None:
    # bright enough that some pixels pass the SMV's 16-bit cap
    args = [*BASE, "-fluence", "3e31", "-seed", "11", "-adc", "40", "-noisefile", "n.img", "-cbffile", "a.cbf",
            "-floatfile", "f.bin", "-intfile", "i.img", "-nopgm"]
    run_cli(tmp_path, monkeypatch, args)
    noise = fabio.open(str(tmp_path / "n.img")).data.astype(np.int64)
    cbf = fabio.open(str(tmp_path / "a.cbf"))
    counts = cbf.data.astype(np.int64)
    assert cbf.data.dtype == np.int32 and counts.shape == noise.shape == (48, 64)
    below = noise < 65535
    assert np.array_equal(counts[below] + 40, noise[below])
    assert (~below).sum() > 0, "the test needs pixels at the 16-bit cap"
    assert (counts[~below] + 40 >= 65535).all() and counts.max() > 70000
    # our own reader and CBFlib read the same pixels
    _, mine = read_cbf(tmp_path / "a.cbf")
    assert np.array_equal(mine, cbf.data)


def test_nonoise_counts_are_the_rounded_float_image(tmp_path, monkeypatch) -> None:
    run_cli(tmp_path, monkeypatch, [*BASE, "-nonoise", "-cbffile", "a.cbf", "-floatfile", "f.bin", "-intfile",
                                    "i.img", "-nopgm"])
    image = np.fromfile(tmp_path / "f.bin", dtype="<f4").reshape(48, 64)
    assert np.array_equal(fabio.open(str(tmp_path / "a.cbf")).data, np.rint(image.astype(np.float64)))


def mini(header_text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in header_text.splitlines():
        if line.startswith("# "):
            tokens = line[2:].replace("=", " ").replace(":", " ").split()
            if tokens:
                out[tokens[0]] = " ".join(tokens[1:])
    return out


@pytest.mark.parametrize("conv", ["-mosflm", "-denzo", "-xds"])
def test_mini_header_places_the_detector_like_dials(conv: str, tmp_path, monkeypatch) -> None:
    args = [*BASE, conv, "-cbffile", "a.cbf", "-nonoise", "-floatfile", "f.bin", "-intfile", "i.img", "-nopgm"]
    result = render(args)
    g = result.geometry
    run_cli(tmp_path, monkeypatch, args)
    image = fabio.open(str(tmp_path / "a.cbf"))
    assert b"_diffrn.id" not in (tmp_path / "a.cbf").read_bytes()
    h = mini(image.header["_array_data.header_contents"])
    px = float(h["Pixel_size"].split()[0])
    distance = float(h["Detector_distance"].split()[0])
    bx, by = (float(v) for v in h["Beam_xy"].strip("() pixels").replace(",", " ").split())
    fx, fy = beam_hit(g)
    assert abs(bx - fx) < 1e-5 and abs(by - fy) < 1e-5
    assert px == pytest.approx(g.pixel_size, rel=1e-12)
    assert float(h["Wavelength"].split()[0]) == pytest.approx(1.1, rel=1e-12)
    assert float(h["Start_angle"].split()[0]) == pytest.approx(12.0, abs=1e-6)
    assert float(h["Angle_increment"].split()[0]) == pytest.approx(0.5, abs=1e-6)
    # DIALS's FormatCBFMini: fast +x, slow -y, beam along -z, origin = d s0 - fast bx px - slow by px
    fast, slow, s0 = np.array([1.0, 0, 0]), np.array([0, -1.0, 0]), np.array([0, 0, -1.0])
    origin = distance * s0 - fast * bx * px - slow * by * px
    R = lab_to_imgcif(g.beam, g.convention)
    for f, s in ((0, 0), (63, 47), (17, 30)):
        dials = origin + (f + 0.5) * px * fast + (s + 0.5) * px * slow
        assert np.abs(dials - R @ pixel_centre(g, f, s)).max() < 1e-8
    # the spindle DIALS assumes (+x) is pybragg's
    assert np.allclose(R @ np.array(g.spindle), (1, 0, 0), atol=1e-12)


ROTATED = ["-xds", "-twotheta", "15", "-detector_rotx", "3", "-detector_roty", "-2", "-detector_rotz", "4",
           "-ORGX", "20", "-ORGY", "30", "-close_distance", "90"]


@pytest.mark.parametrize("extra", [ROTATED, ["-mosflm", "-twotheta", "10", "-detector_rotz", "25"],
                                   ["-adxv"], ["-dials"], ["-mosflm", "-detector_rotx", "7"],
                                   ["-spindle_axis", "0", "1", "0", "-fdet_vector", "0", "0", "1"]],
                         ids=["xds_rotated_twotheta", "mosflm_twotheta", "adxv_mirrored", "dials_spindle",
                              "tilted", "custom"])
def test_cbflib_pixel_positions_match_pybragg(extra: list[str], tmp_path, monkeypatch) -> None:
    args = [*BASE, *extra, "-cbffile", "a.cbf", "-seed", "3", "-floatfile", "f.bin", "-intfile", "i.img", "-nopgm",
            "-noisefile", "n.img"]
    result = render(args)
    g = result.geometry
    assert not mini_header_describes(setup_from_result(result).in_imgcif())
    run_cli(tmp_path, monkeypatch, args)
    handle = pycbf.cbf_handle_struct()
    handle.read_widefile(str(tmp_path / "a.cbf").encode(), pycbf.MSG_DIGEST)
    detector = handle.construct_detector(0)
    R = lab_to_imgcif(g.beam, g.convention)
    worst = 0.0
    for s, f in ((0, 0), (47, 63), (0, 63), (47, 0), (23, 31)):
        cbflib = np.array(detector.get_pixel_coordinates(s, f))  # mm, centre of pixel (s, f)
        worst = max(worst, float(np.abs(cbflib - 1000.0 * R @ pixel_centre(g, f, s)).max()))
    assert worst < 1e-9, worst
    # beam centre: CBFlib's indices count from the first pixel's centre
    index_f, index_s, _, _ = detector.get_beam_center_fs()
    fx, fy = beam_hit(g)
    assert abs(index_f + 0.5 - fx) < 1e-7 and abs(index_s + 0.5 - fy) < 1e-7
    assert detector.get_detector_distance() == pytest.approx(abs(g.close_distance) * 1000.0, rel=1e-10)
    normal = np.array(detector.get_detector_normal())
    assert abs(abs(normal @ (R @ np.array(g.odet))) - 1.0) < 1e-12
    gonio = handle.construct_goniometer()
    assert np.allclose(gonio.get_rotation_axis(), R @ np.array(g.spindle), atol=1e-12)
    assert np.allclose(gonio.get_rotation_range(), (12.0, 0.5), atol=1e-9)
    assert handle.get_wavelength() == pytest.approx(1.1, rel=1e-12)
    handle.find_category(b"array_data")
    handle.find_column(b"data")
    pixels = np.frombuffer(handle.get_integerarray_as_string(), dtype=np.int32).reshape(48, 64)
    assert np.array_equal(pixels, fabio.open(str(tmp_path / "a.cbf")).data)
    noise = fabio.open(str(tmp_path / "n.img")).data.astype(np.int64)
    assert np.array_equal(pixels + 40, noise)
    # the rotations are proper: the angles between beam, detector axes and spindle survive
    for u, v in ((g.beam, g.fdet), (g.beam, g.sdet), (g.spindle, g.fdet), (g.fdet, g.sdet)):
        assert math.isclose(float(np.dot(R @ np.array(u), R @ np.array(v))), float(np.dot(u, v)), abs_tol=1e-12)
