"""Tests of the command-line parser, the flag table and the generated help."""

from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path

import numpy as np
import pytest

from pybragg.cli.help import format_flag_reference_markdown, format_help
from pybragg.config import Convention, Misset, Pivot, Shape
from pybragg.errors import UsageError
from pybragg.flags.parse import Invocation, parse_args
from pybragg.flags.table import BY_NAME, FLAGS, GROUP_TITLES, GROUPS, RTD, Kind
from pybragg.io.errors import FormatError

ROOT = Path(__file__).resolve().parents[2]
INPUTS = ROOT.parent / "shared" / "golden" / "inputs"
HEADER_IMG = INPUTS / "header160x140.img"
MASK_IMG = INPUTS / "mask128.img"
HEX_MAT = INPUTS / "A_hex.mat"
GEOM_FILE = INPUTS.parent.parent / "golden-multipanel" / "mp_two_panels" / "detector.geom"
EXPT_FILE = Path(__file__).resolve().parents[1] / "data" / "two_panels.expt"

approx = pytest.approx


def parse(text: str) -> Invocation:
    return parse_args(text.split())


def deg(x: float) -> float:
    return x * math.pi / 180.0


def write_smv(path: Path, fields: dict[str, object], fast: int = 4, slow: int = 3) -> Path:
    """A small SMV file with the given header fields (after the mandatory ones)."""
    lines = ["{", "HEADER_BYTES=512;", "DIM=2;", "BYTE_ORDER=little_endian;",
             "TYPE=unsigned_short;", f"SIZE1={fast};", f"SIZE2={slow};"]
    lines += [f"{key}={value};" for key, value in fields.items()]
    header = ("\n".join(lines) + "\n}\f").encode("ascii").ljust(512, b" ")
    path.write_bytes(header + np.ones(fast * slow, dtype="<u2").tobytes())
    return path


def without_clock(inv: Invocation) -> Invocation:
    """A copy with the clock-derived seeds fixed, for comparisons."""
    inv = dataclasses.replace(inv, outputs=dataclasses.replace(inv.outputs, noise_seed=0))
    inv.config = inv.config.copy()
    inv.config.crystal.misset_seed = 0
    return inv


# ---------------------------------------------------------------------------
# defaults


def test_defaults():
    before = int(time.time())
    inv = parse_args([])
    after = int(time.time())
    o = inv.outputs
    assert (o.floatfile, o.intfile, o.pgmfile, o.noisefile, o.dumpfile) == (
        "floatimage.bin", "intimage.img", "image.pgm", "noiseimage.img", "Fdump.bin")
    assert o.write_pgm and o.write_noise
    assert o.intfile_scale is None and o.pgm_scale is None and o.adc_offset == 40.0
    assert before <= o.noise_seed <= after
    # -misset random draws from the clock too, unless -misset_seed is given
    assert inv.config.crystal.misset_seed == o.noise_seed
    assert inv.config.crystal.mosaic_seed == 12345678
    assert (inv.backend, inv.dtype, inv.device, inv.memory_budget_gib, inv.threads) == (
        "auto", "float64", None, 2.0, 0)
    assert inv.config.detector.pivot is Pivot.BEAM
    assert inv.config.detector.convention is Convention.MOSFLM
    assert not inv.show_help and inv.extras == {}
    assert inv.printout is False and inv.printout_pixel is None and inv.progress is None


# ---------------------------------------------------------------------------
# units


@pytest.mark.parametrize("argv, path, expected", [
    ("-distance 120", "detector.distance", 0.12),
    ("-close_distance 95", "detector.close_distance", 0.095),
    ("-pixel 0.172", "detector.pixel_size", 1.72e-4),
    ("-Xbeam 12", "detector.Xbeam", 0.012),
    ("-Ybeam 14.5", "detector.Ybeam", 0.0145),
    ("-Xclose 11", "detector.Xclose", 0.011),
    ("-Yclose -13", "detector.Yclose", -0.013),
    ("-ORGX 90", "detector.ORGX", 90.0),
    ("-ORGY 110.5", "detector.ORGY", 110.5),
    ("-detsize_f 50", "detector.detsize_f", 0.05),
    ("-detsize_s 60", "detector.detsize_s", 0.06),
    ("-detpixels_f 220", "detector.fpixels", 220),
    ("-detpixels_s 150", "detector.spixels", 150),
    ("-lambda 1.5", "beam.lambda0", 1.5e-10),
    ("-energy 12398.42", "beam.lambda0", 1e-10),
    ("-energy 9000", "beam.lambda0", 12398.42 / 9000 * 1e-10),
    ("-dispersion 5", "beam.dispersion", 0.05),
    ("-hdivrange 2", "beam.hdivrange", 2e-3),
    ("-vdivrange 3", "beam.vdivrange", 3e-3),
    ("-hdivstep 0.5", "beam.hdivstep", 5e-4),
    ("-vdivstep 0.25", "beam.vdivstep", 2.5e-4),
    ("-mosaic 0.8", "crystal.mosaic_spread", deg(0.8)),
    ("-phi 10", "crystal.phi0", deg(10)),
    ("-osc 2.2", "crystal.osc", deg(2.2)),
    ("-phistep 0.5", "crystal.phistep", deg(0.5)),
    ("-twotheta 20", "detector.twotheta", deg(20)),
    ("-detector_rotx 5", "detector.rotx", deg(5)),
    ("-detector_roty -3", "detector.roty", deg(-3)),
    ("-detector_rotz 2", "detector.rotz", deg(2)),
    ("-detector_thick 450", "detector.thick", 4.5e-4),
    ("-detector_abs 300", "detector.mu", 1.0 / 300e-6),
    ("-water 30", "beam.water_size", 3e-5),
    ("-beamsize 0.01", "beam.beamsize", 1e-5),
    ("-dmin 12", "detector.dmin", 1.2e-9),
    ("-fluence 1e22", "beam.fluence", 1e22),
    ("-flux 1e16", "beam.flux", 1e16),
    ("-exposure 2", "beam.exposure", 2.0),
    ("-polar 0.5", "beam.polarization", 0.5),
    ("-fudge 1.3", "crystal.fudge", 1.3),
    ("-default_F 100", "crystal.default_F", 100.0),
    ("-mosaic_dom 12", "crystal.mosaic_domains", 12),
    ("-phisteps 5", "crystal.phisteps", 5),
    ("-dispsteps 5", "beam.dispsteps", 5),
    ("-hdivsteps 5", "beam.hdivsteps", 5),
    ("-vdivsteps 4", "beam.vdivsteps", 4),
    ("-oversample 3", "detector.oversample", 3),
    ("-detector_thicksteps 4", "detector.thicksteps", 4),
    ("-mosaic_seed 777", "crystal.mosaic_seed", 777),
    ("-misset_seed 4242", "crystal.misset_seed", 4242),
])
def test_unit_conversion(argv, path, expected):
    cfg = parse(argv).config
    obj = cfg
    for part in path.split("."):
        obj = getattr(obj, part)
    if isinstance(expected, int):
        assert obj == expected and type(obj) is int
    else:
        assert obj == approx(expected, rel=1e-12)


def test_degrees_and_millimetres_convert_like_the_reference():
    # the reference divides by 180/pi and by 1000; reproduce that to the last bit
    cfg = parse("-phi 10 -distance 231.274660").config
    assert cfg.crystal.phi0 == 10.0 / RTD
    assert cfg.detector.distance == 231.274660 / 1000.0
    assert RTD == approx(180.0 / math.pi, rel=1e-15)


def test_pairs_and_triples():
    cfg = parse("-divergence 1.5").config
    assert cfg.beam.hdivrange == approx(1.5e-3) and cfg.beam.vdivrange == approx(1.5e-3)
    cfg = parse("-divsteps 3").config
    assert cfg.beam.hdivsteps == 3 and cfg.beam.vdivsteps == 3
    cfg = parse("-detsize 50").config
    assert cfg.detector.detsize_f == approx(0.05) and cfg.detector.detsize_s == approx(0.05)
    cfg = parse("-detpixels 256").config
    assert (cfg.detector.fpixels, cfg.detector.spixels) == (256, 256)
    cfg = parse("-N 5").config
    assert cfg.crystal.N == (5.0, 5.0, 5.0)
    cfg = parse("-Na 3 -Nb 5 -Nc 8").config
    assert cfg.crystal.N == (3.0, 5.0, 8.0)
    cfg = parse("-N 4 -Nb 7").config
    assert cfg.crystal.N == (4.0, 7.0, 4.0)
    cfg = parse("-N 0").config  # SAXS: allowed
    assert cfg.crystal.N == (0.0, 0.0, 0.0)
    cfg = parse("-samplesize 0.000735").config
    assert cfg.crystal.sample_size == approx((7.35e-7,) * 3)
    cfg = parse("-xtal_thick 0.001 -xtal_width 0.002 -xtal_height 0.003").config
    assert cfg.crystal.sample_size == approx((1e-6, 2e-6, 3e-6))


def test_counts_are_truncated_like_atoi():
    assert parse("-N 5.7").config.crystal.N == (5.0, 5.0, 5.0)
    assert parse("-Na 2.9 -Nb 3. -Nc 8").config.crystal.N == (2.0, 3.0, 8.0)


def test_cell():
    c = parse("-cell 70 80 90 75 85 95").config.crystal
    assert c.has_cell
    assert c.cell == approx((70e-10, 80e-10, 90e-10, deg(75), deg(85), deg(95)))
    c = parse("-cell 100").config.crystal
    assert c.has_cell and c.cell == (approx(1e-8), 0.0, 0.0, 0.0, 0.0, 0.0)
    c = parse("-cell 100 120 -N 3").config.crystal
    assert c.cell[:3] == approx((1e-8, 1.2e-8, 0.0)) and c.N == (3.0, 3.0, 3.0)
    assert not parse_args([]).config.crystal.has_cell


def test_misset():
    c = parse("-misset 4 -7 12").config.crystal
    assert c.misset_mode is Misset.ANGLES
    assert c.misset == approx((deg(4), deg(-7), deg(12)))
    c = parse("-misset random").config.crystal
    assert c.misset_mode is Misset.RANDOM
    assert parse("-misset RANDOM").config.crystal.misset_mode is Misset.RANDOM


def test_misset_seed_is_only_a_seed():
    # the reference's substring matching also reads "-misset_seed N" as "-misset N ...";
    # with exact matching it only sets the seed
    c = parse("-misset random -misset_seed 4242 -default_F 100").config.crystal
    assert c.misset_mode is Misset.RANDOM and c.misset_seed == 4242
    assert c.misset == (0.0, 0.0, 0.0)


def test_seeds_stored_as_typed():
    inv = parse("-seed 1000 -mosaic_seed 777 -misset_seed -5")
    assert inv.outputs.noise_seed == 1000
    assert inv.config.crystal.mosaic_seed == 777
    assert inv.config.crystal.misset_seed == -5
    # -seed does not move the misset seed (the reference fixes that one from the clock)
    inv = parse("-seed 1000")
    assert inv.outputs.noise_seed == 1000
    assert inv.config.crystal.misset_seed != 1000


def test_pix0_vectors():
    d = parse("-pix0_vector -0.0064 0.0064 -0.1").config.detector
    assert d.has_pix0 and d.convention is Convention.CUSTOM
    assert d.pix0_vector == approx((-0.0064, 0.0064, -0.1))
    d = parse("-pix0_vector_mm -216 215 -230").config.detector
    assert d.has_pix0 and d.convention is Convention.CUSTOM
    assert d.pix0_vector == approx((-0.216, 0.215, -0.230))


@pytest.mark.parametrize("flag, path", [
    ("-fdet_vector", "detector.fdet_vector"),
    ("-sdet_vector", "detector.sdet_vector"),
    ("-odet_vector", "detector.odet_vector"),
    ("-twotheta_axis", "detector.twotheta_axis"),
    ("-beam_vector", "beam.beam_vector"),
    ("-polar_vector", "beam.polar_vector"),
    ("-spindle_axis", "crystal.spindle_axis"),
])
def test_custom_vectors(flag, path):
    cfg = parse_args(["-xds", flag, "0.5", "-0.25", "1e-3"]).config
    section, name = path.split(".")
    assert getattr(getattr(cfg, section), name) == approx((0.5, -0.25, 1e-3))
    assert cfg.detector.convention is Convention.CUSTOM
    # only the named vector changes, and the two-theta angle is untouched
    assert cfg.detector.twotheta == 0.0


def test_detector_absorb():
    d = parse("-detector_thick 450 -detector_abs 300").config.detector
    assert d.thick == approx(4.5e-4) and d.mu == approx(1 / 300e-6)
    # inf or 0 switch absorption off and zero the thickness given before them ...
    for word in ("inf", "0", "INF"):
        d = parse(f"-detector_thick 450 -detector_absorb {word}").config.detector
        assert d.thick == 0.0 and d.mu == 0.0
    # ... but not one given after
    d = parse("-detector_absorption inf -detector_thick 450").config.detector
    assert d.thick == approx(4.5e-4) and d.mu == 0.0


def test_switches():
    cfg = parse("-round_xtal").config
    assert cfg.crystal.shape is Shape.ROUND
    assert parse("-gauss_xtal").config.crystal.shape is Shape.GAUSS
    assert parse("-tophat_spots").config.crystal.shape is Shape.TOPHAT
    assert parse("-binary_spots").config.crystal.shape is Shape.TOPHAT
    assert parse("-round_xtal -square_xtal").config.crystal.shape is Shape.SQUARE
    assert parse("-interpolate").config.crystal.interpolate is True
    assert parse("-nointerpolate").config.crystal.interpolate is False
    assert parse_args([]).config.crystal.interpolate is None
    assert parse("-square_div").config.beam.round_div is False
    assert parse("-square_div -round_div").config.beam.round_div is True
    d = parse("-curved_det -point_pixel -oversample_thick -oversample_polar -oversample_omega").config.detector
    assert d.curved and d.point_pixel and d.oversample_thick and d.oversample_polar and d.oversample_omega
    assert parse("-roi 40 180 60 200").config.detector.roi == (40, 180, 60, 200)


def test_polarization_order():
    b = parse("-nopolar -polar 0.5").config.beam
    assert b.polarization == 0.5 and b.nopolar is False
    b = parse("-polar 0.5 -nopolar").config.beam
    assert b.polarization == 0.5 and b.nopolar is True


def test_outputs():
    o = parse("-floatfile f.bin -intfile i.img -noisefile n.img -pgmfile p.pgm -dump F.bin").outputs
    assert (o.floatfile, o.intfile, o.noisefile, o.pgmfile, o.dumpfile) == (
        "f.bin", "i.img", "n.img", "p.pgm", "F.bin")
    o = parse("-floatimage f.bin -intimage i.img -noiseimage n.img -pgmimage p.pgm").outputs
    assert (o.floatfile, o.intfile, o.noisefile, o.pgmfile) == ("f.bin", "i.img", "n.img", "p.pgm")
    o = parse("-scale 3 -adc 10 -pgmscale 2").outputs
    assert (o.intfile_scale, o.adc_offset, o.pgm_scale) == (3.0, 10.0, 2.0)
    assert o.write_pgm


@pytest.mark.parametrize("argv", [
    "-nonoise -noisefile n.img",
    "-noisefile n.img -nonoise",
    "-nonoise -noiseimage n.img -nonoise",
])
def test_nonoise_wins(argv):
    o = parse(argv).outputs
    assert o.write_noise is False


@pytest.mark.parametrize("argv", [
    "-nopgm -pgmfile p.pgm",
    "-pgmfile p.pgm -nopgm",
    "-nopgm -pgmscale 2",
    "-nopgm -pgmimage p.pgm -pgmscale 3",
])
def test_nopgm_wins(argv):
    o = parse(argv).outputs
    assert o.write_pgm is False


def test_golden_nonoise_nopgm_line():
    o = parse("-floatfile float.bin -intfile int.img -noisefile noise.img -pgmfile image.pgm "
              "-seed 1025 -nonoise -nopgm").outputs
    assert not o.write_noise and not o.write_pgm and o.floatfile == "float.bin"


def test_flags_without_effect_are_recorded(tmp_path):
    stol = tmp_path / "water.stol"
    stol.write_text("0.1 2.57\n")
    inv = parse(f"-printout -progress -coherent -density 1.2 -MW 20 -stol {stol} -stolout out.stol")
    assert inv.printout is True and inv.progress is True
    assert inv.extras["coherent"] is True
    assert inv.extras["density"] == approx(1.2e6)
    assert inv.extras["molecular_weight"] == 20.0
    assert inv.extras["stolout"] == "out.stol"
    assert inv.stol_path == str(stol) and inv.extras["stol_scale"] == 1e10
    inv = parse(f"-printout_pixel 3 4 -noprogress -sample_density 1 -molecules 5 -4stol {stol}")
    assert inv.printout_pixel == (3, 4) and inv.printout is True and inv.progress is False
    assert inv.extras["stol_scale"] == 1e10 / 4
    assert parse(f"-Q {stol}").extras["stol_scale"] == approx(1e10 / (4 * math.pi))


def test_input_paths(tmp_path):
    hkl = tmp_path / "a.hkl"
    hkl.write_text("0 0 1 10\n")
    src = tmp_path / "src.txt"
    src.write_text("-10 0 0 1 1e-10\n")
    inv = parse(f"-hkl {hkl} -sourcefile {src}")
    assert inv.hkl_path == str(hkl) and inv.source_path == str(src)


def test_engine_flags():
    inv = parse("--backend torch --dtype float32 --device cuda:0 --memory-budget 4.5 --threads 8")
    assert (inv.backend, inv.dtype, inv.device, inv.memory_budget_gib, inv.threads) == (
        "torch", "float32", "cuda:0", 4.5, 8)
    inv = parse("--backend=c --dtype=float64 --threads=2")
    assert (inv.backend, inv.dtype, inv.threads) == ("c", "float64", 2)


@pytest.mark.parametrize("token", ["-h", "-help", "--help"])
def test_help_request(token):
    assert parse_args(["-distance", "100", token]).show_help


# ---------------------------------------------------------------------------
# aliases


ALIAS_CASES = [
    (["-lambda", "-wave"], "1.3"),
    (["-floatfile", "-floatimage"], "x.bin"),
    (["-intfile", "-intimage"], "x.img"),
    (["-noisefile", "-noiseimage"], "x.img"),
    (["-pgmfile", "-pgmimage"], "x.pgm"),
    (["-samplesize", "-sample_size", "-xtalsize", "-xtal_size"], "0.002"),
    (["-sample_thick", "-sample_x", "-xtal_thick", "-xtal_x"], "0.002"),
    (["-sample_width", "-sample_y", "-xtal_width", "-xtal_y", "-width"], "0.002"),
    (["-sample_height", "-sample_heigh", "-sample_z", "-xtal_height", "-xtal_heigh", "-xtal_z",
      "-height", "-heigh"], "0.002"),
    (["-density", "-sample_density"], "1.3"),
    (["-MW", "-molecules"], "30"),
    (["-mosaic", "-mosaicity", "-mosaic_spread"], "0.4"),
    (["-mosaic_domains", "-mosaic_dom"], "7"),
    (["-tophat_spots", "-binary_spots"], None),
    (["-detector_absorb", "-detector_abs", "-detector_absorption"], "250"),
    (["-detector_thicksteps", "-thicksteps"], "3"),
    (["-detpixels_f", "-detpixels_x"], "300"),
    (["-detpixels_s", "-detpixels_y"], "300"),
    (["-curved_det", "-curved_detector"], None),
]


@pytest.mark.parametrize("names, value", ALIAS_CASES, ids=[c[0][0] for c in ALIAS_CASES])
def test_aliases_are_equivalent(names, value):
    results = []
    for name in names:
        argv = [name] if value is None else [name, value]
        results.append(without_clock(parse_args(argv)))
    reference = results[0]
    assert reference != without_clock(parse_args([]))
    for name, result in zip(names, results):
        assert result == reference, name


def test_every_flag_and_alias_is_accepted(tmp_path):
    text_file = tmp_path / "any.txt"
    text_file.write_text("1 2 3\n")
    paths = {"-img": HEADER_IMG, "-mask": MASK_IMG, "-mat": HEX_MAT, "-geom": GEOM_FILE, "-expt": EXPT_FILE}
    for flag in FLAGS:
        if flag.action == "help":
            continue
        if flag.name == "-cell":
            values = ["100", "100", "100", "90", "90", "90"]
        elif flag.kind is Kind.PATH:
            values = [str(paths.get(flag.name, text_file))]
        elif flag.kind is Kind.OUTPATH:
            values = [str(tmp_path / "out.bin")]
        elif flag.kind is Kind.KEYWORD:
            values = [flag.keyword_names[0]]
        elif flag.kind is Kind.TEXT:
            values = ["cpu"]
        else:
            values = [str(k + 1) for k in range(flag.nargs)]
        for name in flag.names:
            inv = parse_args([name, *values])
            assert isinstance(inv, Invocation), name


def test_names_are_exact():
    for bad in ["-dist", "-distances", "-Nab", "-pixels", "-source_distance", "-misset_seeds",
                "--distance", "-DISTANCE", "-pix0_vector_m"]:
        with pytest.raises(UsageError, match="unknown flag"):
            parse_args([bad, "1"])


# ---------------------------------------------------------------------------
# order of side effects


@pytest.mark.parametrize("argv, convention, pivot", [
    ("", Convention.MOSFLM, Pivot.BEAM),
    ("-distance 100 -twotheta 5", Convention.MOSFLM, Pivot.SAMPLE),
    ("-twotheta 5 -distance 100", Convention.MOSFLM, Pivot.BEAM),
    ("-close_distance 95 -Xbeam 10", Convention.MOSFLM, Pivot.BEAM),
    ("-Ybeam 10 -Xclose 11", Convention.MOSFLM, Pivot.SAMPLE),
    ("-Xbeam 10 -Yclose 11", Convention.MOSFLM, Pivot.SAMPLE),
    ("-distance 100 -ORGX 90", Convention.MOSFLM, Pivot.SAMPLE),
    ("-ORGY 90 -Ybeam 4", Convention.MOSFLM, Pivot.BEAM),
    ("-close_distance 95 -Xclose 11 -Yclose 13 -pivot beam", Convention.MOSFLM, Pivot.BEAM),
    ("-pivot sample -distance 100", Convention.MOSFLM, Pivot.BEAM),
    ("-distance 100 -pivot sample", Convention.MOSFLM, Pivot.SAMPLE),
    ("-xds", Convention.XDS, Pivot.SAMPLE),
    ("-xds -distance 80", Convention.XDS, Pivot.BEAM),
    ("-distance 80 -xds", Convention.XDS, Pivot.SAMPLE),
    ("-twotheta 5 -mosflm", Convention.MOSFLM, Pivot.BEAM),
    ("-twotheta 5 -denzo", Convention.DENZO, Pivot.BEAM),
    ("-twotheta 5 -adxv", Convention.ADXV, Pivot.BEAM),
    ("-dials", Convention.DIALS, Pivot.BEAM),  # as the reference records it
    ("-dials -twotheta 5", Convention.DIALS, Pivot.SAMPLE),
    ("-mosflm -fdet_vector 0 0 1", Convention.CUSTOM, Pivot.BEAM),
    ("-fdet_vector 0 0 1 -mosflm", Convention.MOSFLM, Pivot.BEAM),
    ("-xds -beam_vector 0 0 1", Convention.CUSTOM, Pivot.SAMPLE),
    ("-pix0_vector_mm 1 2 3 -adxv", Convention.ADXV, Pivot.BEAM),
    ("-adxv -pix0_vector 0.001 0.002 -0.1", Convention.CUSTOM, Pivot.BEAM),
])
def test_pivot_and_convention_follow_order(argv, convention, pivot):
    d = parse(argv).config.detector
    assert d.convention is convention
    assert d.pivot is pivot


# ---------------------------------------------------------------------------
# SMV headers


def test_img_header():
    inv = parse_args(["-img", str(HEADER_IMG)])
    d, b, c = inv.config.detector, inv.config.beam, inv.config.crystal
    assert (d.fpixels, d.spixels) == (160, 140)
    assert d.pixel_size == approx(1.2e-4)
    assert d.detsize_f == approx(160 * 1.2e-4) and d.detsize_s == approx(140 * 1.2e-4)
    assert d.distance == approx(0.09)
    assert b.lambda0 == approx(1.2e-10)
    assert d.Xbeam == approx(8.5e-3) and d.Ybeam == approx(9.1e-3)
    assert c.osc == 0.0 and c.phi0 == 0.0
    assert d.twotheta == 0.0
    assert d.pivot is Pivot.BEAM
    assert inv.img_path == str(HEADER_IMG) and inv.mask_path is None


def test_mask_header():
    inv = parse_args(["-mask", str(MASK_IMG)])
    d = inv.config.detector
    assert (d.fpixels, d.spixels) == (128, 128)
    assert d.pixel_size == approx(1e-4)
    assert d.distance == approx(0.1)
    assert inv.config.beam.lambda0 == approx(1e-10)
    assert d.Xbeam == approx(6.4e-3)
    assert d.Ybeam == approx(128 * 0.1e-3 - 6.4e-3)
    assert inv.mask_path == str(MASK_IMG) and inv.img_path is None


def test_mask_counts_y_from_the_other_edge(tmp_path):
    fields = {"PIXEL_SIZE": 0.2, "BEAM_CENTER_X": 1.5, "BEAM_CENTER_Y": 1.0}
    path = write_smv(tmp_path / "m.img", fields, fast=10, slow=20)
    d = parse_args(["-mask", str(path)]).config.detector
    assert d.Ybeam == approx(20 * 0.2e-3 - 1.0e-3) and d.Xbeam == approx(1.5e-3)
    d = parse_args(["-img", str(path)]).config.detector
    assert d.Ybeam == approx(1.0e-3)


def test_header_fields_and_ignored_twotheta(tmp_path):
    fields = {"PIXEL_SIZE": 0.15, "DISTANCE": 80, "CLOSE_DISTANCE": 79, "WAVELENGTH": 0.9,
              "BEAM_CENTER_X": 10, "BEAM_CENTER_Y": 11, "ORGX": 70.5, "ORGY": 71.5,
              "PHI": 12, "OSC_RANGE": 0.5, "TWOTHETA": 30}
    path = write_smv(tmp_path / "h.img", fields, fast=6, slow=5)
    inv = parse_args(["-close_distance", "50", "-img", str(path)])
    d, c = inv.config.detector, inv.config.crystal
    assert (d.fpixels, d.spixels) == (6, 5)
    assert d.pixel_size == approx(1.5e-4) and d.distance == approx(0.08)
    assert d.close_distance == approx(0.05)  # the flag wins over CLOSE_DISTANCE
    assert inv.config.beam.lambda0 == approx(0.9e-10)
    assert (d.ORGX, d.ORGY) == (70.5, 71.5)
    assert c.phi0 == approx(deg(12)) and c.osc == approx(deg(0.5))
    # TWOTHETA in a header never rotates the detector, and headers leave the pivot alone
    assert d.twotheta == 0.0
    assert d.pivot is Pivot.SAMPLE
    d = parse_args(["-img", str(path)]).config.detector
    assert d.close_distance == approx(0.079) and d.pivot is Pivot.BEAM


def test_img_wins_over_mask_and_mask_fills_gaps(tmp_path):
    inv = parse_args(["-img", str(HEADER_IMG), "-mask", str(MASK_IMG)])
    d = inv.config.detector
    assert (d.fpixels, d.spixels) == (160, 140)
    assert d.distance == approx(0.09) and d.pixel_size == approx(1.2e-4)
    assert inv.mask_path == str(MASK_IMG) and inv.img_path == str(HEADER_IMG)
    sparse = write_smv(tmp_path / "sparse.img", {"DISTANCE": 70}, fast=128, slow=128)
    d = parse_args(["-mask", str(MASK_IMG), "-img", str(sparse)]).config.detector
    assert d.distance == approx(0.07)
    assert d.pixel_size == approx(1e-4)  # from the mask
    assert d.Xbeam == approx(6.4e-3)


def test_flags_override_header_wherever_they_stand():
    for argv in (["-img", str(HEADER_IMG), "-distance", "120", "-pixel", "0.1", "-lambda", "1"],
                 ["-distance", "120", "-pixel", "0.1", "-lambda", "1", "-img", str(HEADER_IMG)]):
        d = parse_args(argv).config.detector
        assert d.distance == approx(0.12) and d.pixel_size == approx(1e-4)
        assert parse_args(argv).config.beam.lambda0 == approx(1e-10)
        assert (d.fpixels, d.spixels) == (160, 140)
    d = parse_args(["-img", str(HEADER_IMG), "-Xbeam", "5", "-detpixels", "64"]).config.detector
    assert d.Xbeam == approx(5e-3) and d.Ybeam == approx(9.1e-3)
    assert (d.fpixels, d.spixels) == (64, 64)


def test_bad_smv_files(tmp_path):
    junk = tmp_path / "junk.img"
    junk.write_text("not an image")
    for flag in ("-img", "-mask"):
        with pytest.raises(FormatError, match=flag):
            parse_args([flag, str(junk)])
        with pytest.raises(FormatError, match=flag):
            parse_args([flag, str(tmp_path / "missing.img")])
    zero = write_smv(tmp_path / "zero.img", {"DISTANCE": 0})
    with pytest.raises(FormatError, match="-img"):
        parse_args(["-img", str(zero)])


# ---------------------------------------------------------------------------
# matrix


def test_matrix_uses_the_final_wavelength():
    A = np.loadtxt(HEX_MAT, max_rows=3)
    for argv in (["-mat", str(HEX_MAT), "-lambda", "6.2"], ["-lambda", "6.2", "-mat", str(HEX_MAT)],
                 ["-lambda", "1", "-mat", str(HEX_MAT), "-energy", str(12398.42 / 6.2)]):
        c = parse_args(argv).config.crystal
        assert c.has_matrix
        assert c.a_star == approx(tuple(A[:, 0] / 6.2e-10), rel=1e-9)
        assert c.b_star == approx(tuple(A[:, 1] / 6.2e-10), rel=1e-9)
        assert c.c_star == approx(tuple(A[:, 2] / 6.2e-10), rel=1e-9)
    assert not parse_args([]).config.crystal.has_matrix


def test_bad_matrix(tmp_path):
    bad = tmp_path / "bad.mat"
    bad.write_text("1 2 3\n")
    with pytest.raises(FormatError, match="-mat"):
        parse_args(["-mat", str(bad)])


def _golden_cases() -> list[tuple[str, list[str], int]]:
    data = json.loads((INPUTS.parent / "manifest.json").read_text())
    out_flags = data["output_flags"]
    cases = []
    for name, case in sorted(data["cases"].items()):
        args = []
        for token in case["args"]:
            if token == "@OUT":
                args += [*out_flags, "-seed", str(case["seed"])]
            elif token.startswith("inputs/"):
                args.append(str(INPUTS.parent / token))
            else:
                args.append(token)
        if "@OUT" not in case["args"]:
            args += [*out_flags, "-seed", str(case["seed"])]
        cases.append((name, args, case["seed"]))
    return cases


GOLDEN_CASES = _golden_cases()


@pytest.mark.parametrize("name, argv, seed", GOLDEN_CASES, ids=[c[0] for c in GOLDEN_CASES])
def test_every_golden_command_line_parses(name, argv, seed):
    inv = parse_args(argv)
    assert inv.outputs.noise_seed == seed
    assert (inv.outputs.floatfile, inv.outputs.intfile) == ("float.bin", "int.img")
    expect_noise = name != "nonoise_nopgm"
    assert inv.outputs.write_noise is expect_noise and inv.outputs.write_pgm is expect_noise


def test_golden_examples_in_detail():
    assert len(GOLDEN_CASES) == 46
    cases = {name: argv for name, argv, _ in GOLDEN_CASES}
    d = parse_args(cases["pilatus_roi"]).config.detector
    assert d.convention is Convention.CUSTOM and d.has_pix0
    assert d.pix0_vector == approx((-0.216336293, 0.215205512, -0.230200866))
    assert (d.fpixels, d.spixels) == (2463, 2527) and d.roi == (600, 800, 950, 1150)
    assert d.pivot is Pivot.SAMPLE  # -twotheta 0 comes after -distance
    d = parse_args(cases["pilatus_beam_center"]).config.detector
    assert d.convention is Convention.CUSTOM and not d.has_pix0 and d.pivot is Pivot.BEAM
    c = parse_args(cases["mosaic"]).config.crystal
    assert c.mosaic_domains == 12 and c.mosaic_seed == 777 and c.mosaic_spread == approx(deg(0.8))
    d = parse_args(cases["xds_orgx"]).config.detector
    assert d.convention is Convention.XDS and (d.ORGX, d.ORGY) == (90.0, 110.0)
    d = parse_args(cases["absorption"]).config.detector
    assert d.mu == approx(1 / 300e-6) and d.thick == approx(450e-6) and d.thicksteps == 4


# ---------------------------------------------------------------------------
# errors


ERROR_CASES = [
    ("-foo", "-foo"),
    ("-source_distance 10", "-source_distance"),
    ("foo", "foo"),
    ("-distance 100 200", "200"),
    ("-distance", "-distance"),
    ("-distance -pixel 0.1", "-distance"),
    ("-distance abc", "-distance"),
    ("-distance 1,5", "-distance"),
    ("-distance nan", "-distance"),
    ("-distance inf", "-distance"),
    ("-distance 1e999", "-distance"),
    ("-distance 0", "-distance"),
    ("-distance -5", "-distance"),
    ("-close_distance 0", "-close_distance"),
    ("-pixel 0", "-pixel"),
    ("-pixel -0.1", "-pixel"),
    ("-detpixels 0", "-detpixels"),
    ("-detpixels 25.5", "-detpixels"),
    ("-detpixels_x -3", "-detpixels_x"),
    ("-detpixels_s 0", "-detpixels_s"),
    ("-detsize 0", "-detsize"),
    ("-detsize_f -1", "-detsize_f"),
    ("-detsize_s 0", "-detsize_s"),
    ("-lambda 0", "-lambda"),
    ("-wave -1", "-wave"),
    ("-energy 0", "-energy"),
    ("-energy -9000", "-energy"),
    ("-cell", "-cell"),
    ("-cell abc", "-cell"),
    ("-cell 100 abc", "-cell"),
    ("-cell 0 100 100", "-cell"),
    ("-cell 100 -100 100", "-cell"),
    ("-cell 100 100 100 0 90 90", "-cell"),
    ("-cell 100 100 100 90 90 180", "-cell"),
    ("-cell 100 100 100 90 90 200", "-cell"),
    ("-cell 100 100 100 10 10 170", "-cell"),
    ("-cell 100 100 100 60 60 150", "-cell"),
    ("-cell 100 100 100 90 90 nan", "-cell"),
    ("-N -1", "-N"),
    ("-Na -2", "-Na"),
    ("-Nb x", "-Nb"),
    ("-Nc 1e1", "-Nc"),
    ("-oversample -1", "-oversample"),
    ("-thicksteps -1", "-thicksteps"),
    ("-detector_thicksteps -1", "-detector_thicksteps"),
    ("-fluence -1", "-fluence"),
    ("-flux -1", "-flux"),
    ("-exposure -1", "-exposure"),
    ("-beamsize -1", "-beamsize"),
    ("-roi 10 5 0 10", "-roi"),
    ("-roi 0 10 20 10", "-roi"),
    ("-roi -1 10 0 10", "-roi"),
    ("-roi 1 2 3", "-roi"),
    ("-roi 1 2 3 4.5", "-roi"),
    ("-pivot middle", "-pivot"),
    ("-pivot", "-pivot"),
    ("-misset sideways", "-misset"),
    ("-misset 1 2", "-misset"),
    ("-misset 1 2 x", "-misset"),
    ("--backend cuda", "--backend"),
    ("--backend=cuda", "--backend"),
    ("--dtype float16", "--dtype"),
    ("--memory-budget 0", "--memory-budget"),
    ("--threads -1", "--threads"),
    ("-detector_abs -5", "-detector_abs"),
    ("-detector_thick -5", "-detector_thick"),
    ("-fdet_vector 0 0 0", "-fdet_vector"),
    ("-beam_vector 1 0", "-beam_vector"),
    ("-seed 1.5", "-seed"),
    ("-mosaic -1", "-mosaic"),
    ("-mosaic_dom -1", "-mosaic_dom"),
    ("-osc -1", "-osc"),
    ("-phisteps -2", "-phisteps"),
    ("-dispersion -1", "-dispersion"),
    ("-divergence -1", "-divergence"),
    ("-water -1", "-water"),
    ("-dmin -1", "-dmin"),
    ("-samplesize -1", "-samplesize"),
    ("-floatfile", "-floatfile"),
    ("-floatfile -nonoise", "-floatfile"),
    ("-printout_pixel 3", "-printout_pixel"),
]


def assert_one_line_error(argv: str, error: type, name: str, exit_code: int) -> str:
    with pytest.raises(error) as info:
        parse(argv)
    message = str(info.value)
    assert name in message
    assert "\n" not in message
    assert info.value.exit_code == exit_code
    return message


@pytest.mark.parametrize("argv, name", ERROR_CASES, ids=[c[0] for c in ERROR_CASES])
def test_usage_errors(argv, name):
    assert_one_line_error(argv, UsageError, name, 2)


FILE_CASES = [
    ("-hkl /nonexistent/F.hkl", "-hkl"),
    ("-sourcefile /nonexistent/s.txt", "-sourcefile"),
    ("-stol /nonexistent/s.stol", "-stol"),
    ("-mat /nonexistent/a.mat", "-mat"),
    ("-img /nonexistent/a.img", "-img"),
    ("-mask /nonexistent/a.img", "-mask"),
]


@pytest.mark.parametrize("argv, name", FILE_CASES, ids=[c[0] for c in FILE_CASES])
def test_missing_files_are_failures_not_usage_errors(argv, name):
    assert "no such file" in assert_one_line_error(argv, FormatError, name, 1)


def test_error_messages_are_precise():
    with pytest.raises(UsageError, match=r"^unknown flag -foo$"):
        parse("-foo")
    with pytest.raises(UsageError, match=r"^-distance needs a value$"):
        parse("-distance")
    with pytest.raises(UsageError, match=r"^-distance: expected a number, got 'abc'$"):
        parse("-distance abc")


def test_directory_is_not_a_readable_file(tmp_path):
    with pytest.raises(FormatError, match="-hkl"):
        parse_args(["-hkl", str(tmp_path)])


def test_errors_are_raised_before_headers_are_read(tmp_path):
    # a bad flag after -img is reported even though the header is fine
    with pytest.raises(UsageError, match="-pixel"):
        parse_args(["-img", str(HEADER_IMG), "-pixel", "0"])


def test_zero_and_negative_values_that_are_allowed():
    cfg = parse("-N 0 -oversample 0 -thicksteps 0 -Xbeam -3 -phi -10 -twotheta -5 -polar -1 "
                "-default_F 0 -mosaic 0 -roi 0 0 0 0 -detector_thick 0").config
    assert cfg.crystal.N == (0.0, 0.0, 0.0)
    assert cfg.detector.roi == (0, 0, 0, 0)
    assert parse("-odet_vector 0 0 0").config.detector.odet_vector == (0.0, 0.0, 0.0)
    assert parse("-misset 0 0 0").config.crystal.misset_mode is Misset.ANGLES


# ---------------------------------------------------------------------------
# help and docs


def test_table_is_consistent():
    assert len(FLAGS) == len({f.name for f in FLAGS})
    for flag in FLAGS:
        assert flag.group in GROUPS
        assert flag.help and flag.name.startswith("-")
        for name in flag.names:
            assert BY_NAME[name] is flag
        if flag.kind is Kind.SWITCH:
            assert flag.nargs == 0
        else:
            assert flag.nargs >= 1
    for name in ["-pix0_vector", "-pix0_vector_mm", "-printout", "-printout_pixel", "-progress",
                 "-noprogress", "-coherent", "-density", "-MW", "-stol", "-4stol", "-Q", "-stolout",
                 "--backend", "--dtype", "--device", "--memory-budget", "--threads", "-h", "--help"]:
        assert name in BY_NAME, name
    assert "-source_distance" not in BY_NAME


def test_help_mentions_every_flag():
    text = format_help()
    assert text.startswith("usage:")
    words = set(text.replace(",", " ").split())
    for flag in FLAGS:
        for name in flag.names:
            assert name in words, name
    for group in GROUPS:
        assert GROUP_TITLES[group] + ":" in text
    assert "mm" in text and "mrad" in text and "Å" in text


def test_markdown_reference_mentions_every_flag():
    text = format_flag_reference_markdown()
    for flag in FLAGS:
        for name in flag.names:
            assert f"`{name}`" in text, name
    for group in GROUPS:
        assert "## " + GROUP_TITLES[group] in text


def test_docs_flags_md_is_up_to_date():
    doc = ROOT / "docs" / "flags.md"
    assert doc.read_text(encoding="utf-8") == format_flag_reference_markdown(), (
        "docs/flags.md is stale: regenerate it with "
        "python -c 'from pybragg.cli.help import format_flag_reference_markdown as f; "
        "open(\"docs/flags.md\", \"w\", encoding=\"utf-8\").write(f())'"
    )
