"""The flags of ``pybragg nonbragg``: nonBragg's command line, names matched exactly.

The same :class:`~pybragg.flags.table.Flag` machinery as the main table (kinds, units, checks,
targets).  Values land in a :class:`NonBraggInvocation`; :func:`resolve` then applies nonBragg's
own rules (detector size from pixels, beam centre and near point defaults, pivot by the last
placement flag, sample clipping by the beam) and yields a :class:`~pybragg.config.Config` in the
CUSTOM convention with nonBragg's axes, a :class:`~pybragg.config.SampleConfig` and the table.

Not supported (refused as unknown flags): ``-img``/``-ignore``/``-stolout``/``-noreject``
(nonBragg's extraction of a stol curve from an image), ``-Fmap``, ``-printout``/``-printout_pixel``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..config import Config, Convention, Pivot, SampleConfig
from ..errors import UsageError
from . import parse as _parse
from .table import (
    ANGSTROM,
    DALTON,
    DEGREE,
    EV,
    G_PER_CM3,
    METRE,
    MM,
    MRAD,
    NUMBER,
    PERCENT,
    PHOTONS_M2,
    PHOTONS_S,
    PIXELS,
    SECOND,
    SEED_RANGE,
    Flag,
    Kind,
    nonnegative,
    nonzero_vector,
    positive,
    roi_box,
)


@dataclass
class NonBraggInvocation:
    """One ``pybragg nonbragg`` command line, as typed (SI units), before nonBragg's rules."""

    v: dict[str, object] = field(default_factory=dict)
    stol_path: str | None = None
    stol_scale: float = 1e10
    source_path: str | None = None
    floatfile: str = "floatimage.bin"
    intfile: str = "intimage.img"
    pgmfile: str = "image.pgm"
    noisefile: str = "noiseimage.img"
    write_noise: bool = True
    write_pgm: bool = True
    intfile_scale: float | None = None
    pgm_scale: float | None = None
    adc_offset: float = 40.0
    noise_seed: int = 0
    backend: str = "c"
    dtype: str = "float64"
    device: str | None = None
    progress: bool = True
    show_help: bool = False


_V = "v."
_BEAM = (_V + "pivot", Pivot.BEAM)
_SAMPLE = (_V + "pivot", Pivot.SAMPLE)


def _f(name: str, help: str, unit=NUMBER, target: str | None = None, aliases=(), check=None, sets=(),
       default: str = "", nargs: int = 1, kind: Kind = Kind.FLOAT) -> Flag:
    metas = ("VALUE",) if nargs == 1 else ("X", "Y", "Z")[:nargs] if nargs == 3 else tuple(f"V{i}" for i in range(nargs))
    return Flag(name, "nonbragg", help, aliases=aliases, kind=kind, metavars=metas, unit=unit,
                targets=(target or _V + name.lstrip("-"),), check=check, sets=sets, default=default)


def _vec(name: str, help: str, default: str) -> Flag:
    return _f(name, help, METRE if name == "-pix0_vector" else NUMBER, nargs=3, check=None if name == "-pix0_vector"
              else nonzero_vector, default=default)


FLAGS: tuple[Flag, ...] = (
    Flag("-stol", "nonbragg", "table of sin(theta)/lambda (1/Å) and F of one molecule; `water` or `air`: the "
         "shipped table", kind=Kind.TEXT, metavars=("FILE",), targets=("stol_path",),
         sets=(("stol_scale", 1e10),), default="required"),
    Flag("-4stol", "nonbragg", "like -stol with 4 sin(theta)/lambda", kind=Kind.TEXT, metavars=("FILE",),
         targets=("stol_path",), sets=(("stol_scale", 1e10 / 4),)),
    Flag("-Q", "nonbragg", "like -stol with Q = 4 pi sin(theta)/lambda", kind=Kind.TEXT, metavars=("FILE",),
         targets=("stol_path",), sets=(("stol_scale", 1e10 / math.pi / 4),)),
    _f("-samplesize", "edge of a cube-shaped sample", MM, _V + "samplesize", aliases=("-sample_size",),
       check=nonnegative),
    _f("-thickness", "sample thickness along the beam", MM, _V + "sample_x",
       aliases=("-thick", "-sample_thick", "-sample_x"), check=nonnegative, default="0.1"),
    _f("-sample_width", "sample width (clipped to the beam size)", MM, _V + "sample_y",
       aliases=("-width", "-sample_y"), check=nonnegative, default="0.1"),
    _f("-sample_height", "sample height (clipped to the beam size)", MM, _V + "sample_z",
       aliases=("-height", "-sample_z"), check=nonnegative, default="0.1"),
    _f("-density", "sample density", G_PER_CM3, _V + "density", aliases=("-sample_density",),
       check=nonnegative, default="1"),
    _f("-molecules", "number of molecules in the sample (overrides -density)", NUMBER, _V + "molecules",
       aliases=("-sample_molecules",), check=nonnegative),
    _f("-MW", "molecular weight", DALTON, _V + "MW", aliases=("-molecular_weight",), check=positive,
       default="18"),
    _f("-Xbeam", "beam centre along the fast axis", MM, sets=(_BEAM,)),
    _f("-Ybeam", "beam centre along the slow axis", MM, sets=(_BEAM,)),
    _f("-Xclose", "near point along the fast axis", MM, sets=(_SAMPLE,)),
    _f("-Yclose", "near point along the slow axis", MM, sets=(_SAMPLE,)),
    _f("-ORGX", "near point along the fast axis", PIXELS, sets=(_SAMPLE,)),
    _f("-ORGY", "near point along the slow axis", PIXELS, sets=(_SAMPLE,)),
    Flag("-pivot", "nonbragg", "what stays fixed when the detector rotates", kind=Kind.KEYWORD,
         metavars=("PIVOT",), keywords=(("sample", Pivot.SAMPLE), ("beam", Pivot.BEAM)),
         targets=(_V + "pivot",)),
    _vec("-fdet_vector", "fast axis", "0 0 1"),
    _vec("-sdet_vector", "slow axis", "0 -1 0"),
    _vec("-odet_vector", "detector normal (nonBragg rebuilds it from fast x slow)", "1 0 0"),
    _vec("-beam_vector", "beam direction", "1 0 0"),
    _vec("-polar_vector", "polarization (E-vector)", "0 0 1"),
    _vec("-spindle_axis", "spindle axis", "0 0 1"),
    _vec("-twotheta_axis", "two-theta axis", "0 1 0"),
    _vec("-pix0_vector", "detector origin before rotations (m)", "from the beam centre"),
    _f("-distance", "sample to beam spot", MM, check=positive, sets=(_BEAM,), default="100"),
    _f("-close_distance", "sample to detector plane", MM, check=positive, sets=(_SAMPLE,)),
    _f("-source_distance", "distance of generated sources", MM, check=positive, default="10000"),
    _f("-twotheta", "detector two-theta", DEGREE, sets=(_SAMPLE,), default="0"),
    _f("-detector_rotx", "detector rotation about x", DEGREE, default="0"),
    _f("-detector_roty", "detector rotation about y", DEGREE, default="0"),
    _f("-detector_rotz", "detector rotation about z", DEGREE, default="0"),
    _f("-detsize", "detector edge", MM, check=positive, default="102.4"),
    _f("-detsize_x", "detector size along fast", MM, check=positive),
    _f("-detsize_y", "detector size along slow", MM, check=positive),
    _f("-detpixels", "pixels along both axes", PIXELS, kind=Kind.INT, check=positive),
    _f("-detpixels_x", "pixels along fast", PIXELS, _V + "detpixels_f", kind=Kind.INT, check=positive,
       aliases=("-detpixels_f",)),
    _f("-detpixels_y", "pixels along slow", PIXELS, _V + "detpixels_s", kind=Kind.INT, check=positive,
       aliases=("-detpixels_s",)),
    Flag("-curved_det", "nonbragg", "every pixel at the same distance", sets=((_V + "curved", True),)),
    _f("-pixel", "pixel size", MM, check=positive, default="0.1"),
    Flag("-point_pixel", "nonbragg", "solid angle 1/R^2 (no obliquity)", sets=((_V + "point_pixel", True),)),
    _f("-polar", "Kahn polarization factor", NUMBER, sets=((_V + "nopolar", False),), default="0"),
    Flag("-nopolar", "nonbragg", "no polarization factor", sets=((_V + "nopolar", True),)),
    _f("-oversample", "sub-pixels per pixel edge", NUMBER, kind=Kind.INT, default="1"),
    Flag("-roi", "nonbragg", "pixels rendered (inclusive)", kind=Kind.INT,
         metavars=("XMIN", "XMAX", "YMIN", "YMAX"), targets=(_V + "roi",), check=roi_box),
    _f("-lambda", "wavelength", ANGSTROM, _V + "lambda", aliases=("-wave",), check=positive, default="1"),
    _f("-energy", "photon energy instead of -lambda", EV, _V + "lambda", check=positive),
    _f("-fluence", "photons/m^2", PHOTONS_M2, check=nonnegative, default="1.25932e29"),
    _f("-flux", "photons/s (with -exposure and -beamsize sets the fluence)", PHOTONS_S, check=nonnegative),
    _f("-exposure", "exposure time", SECOND, check=nonnegative, default="1"),
    _f("-beamsize", "edge of the square beam", MM, check=nonnegative, default="0.1"),
    _f("-dispersion", "spectral width", PERCENT, check=nonnegative, default="0"),
    _f("-dispsteps", "wavelengths", NUMBER, kind=Kind.INT),
    _f("-divergence", "horizontal and vertical divergence", MRAD, check=nonnegative),
    _f("-hdivrange", "horizontal divergence", MRAD, check=nonnegative),
    _f("-vdivrange", "vertical divergence", MRAD, check=nonnegative),
    _f("-hdivstep", "horizontal divergence step", MRAD, check=nonnegative),
    _f("-vdivstep", "vertical divergence step", MRAD, check=nonnegative),
    _f("-hdivsteps", "horizontal divergence steps", NUMBER, kind=Kind.INT),
    _f("-vdivsteps", "vertical divergence steps", NUMBER, kind=Kind.INT),
    _f("-divsteps", "divergence steps along both", NUMBER, kind=Kind.INT),
    Flag("-round_div", "nonbragg", "cut the divergence raster to an ellipse", sets=((_V + "round_div", True),)),
    Flag("-square_div", "nonbragg", "full divergence raster", sets=((_V + "round_div", False),)),
    _f("-adc", "ADC offset of the SMV images", NUMBER, "adc_offset", default="40"),
    _f("-gain", "quantum gain (no effect without -img, which pybragg does not support)", NUMBER),
    _f("-phi", "spindle angle (header only)", DEGREE, default="0"),
    _f("-osc", "oscillation (header only)", DEGREE, check=nonnegative),
    _f("-phistep", "phi step (header only)", DEGREE),
    _f("-phisteps", "phi steps (header only)", NUMBER, kind=Kind.INT),
    Flag("-sourcefile", "nonbragg", "sources: X Y Z (m) weight lambda per line", kind=Kind.PATH,
         metavars=("FILE",), targets=("source_path",)),
    Flag("-floatfile", "nonbragg", "raw float32 image", aliases=("-floatimage",), kind=Kind.OUTPATH,
         metavars=("FILE",), targets=("floatfile",), default="floatimage.bin"),
    Flag("-intfile", "nonbragg", "SMV image scaled to 55000 at the brightest pixel", aliases=("-intimage",),
         kind=Kind.OUTPATH, metavars=("FILE",), targets=("intfile",), default="intimage.img"),
    Flag("-pgmfile", "nonbragg", "8-bit PGM", aliases=("-pgmimage",), kind=Kind.OUTPATH, metavars=("FILE",),
         targets=("pgmfile",), default="image.pgm"),
    Flag("-noisefile", "nonbragg", "SMV image with Poisson noise", aliases=("-noiseimage",),
         kind=Kind.OUTPATH, metavars=("FILE",), targets=("noisefile",), default="noiseimage.img"),
    Flag("-nonoise", "nonbragg", "no noise image (wins wherever it stands)", sets=(("write_noise", False),),
         deferred=True),
    Flag("-nopgm", "nonbragg", "no PGM (wins wherever it stands)", sets=(("write_pgm", False),), deferred=True),
    _f("-scale", "scale of the SMV image", NUMBER, "intfile_scale"),
    _f("-pgmscale", "scale of the PGM", NUMBER, "pgm_scale"),
    Flag("-seed", "nonbragg", "noise seed (negated internally, as nanoBragg's)", limits=SEED_RANGE, kind=Kind.INT,
         metavars=("SEED",), targets=("noise_seed",), default="from the clock"),
    Flag("-noprogress", "nonbragg", "no progress meter", sets=(("progress", False),)),
    Flag("-progress", "nonbragg", "progress meter", sets=(("progress", True),)),
    Flag("-coherent", "nonbragg", "parsed, no effect (as in nonBragg)"),
    Flag("--backend", "nonbragg", "engine", kind=Kind.KEYWORD, metavars=("NAME",),
         keywords=(("c", "c"), ("torch", "torch")), targets=("backend",), default="c"),
    Flag("--dtype", "nonbragg", "torch precision", kind=Kind.KEYWORD, metavars=("DTYPE",),
         keywords=(("float64", "float64"), ("float32", "float32")), targets=("dtype",), default="float64"),
    Flag("--device", "nonbragg", "torch device", kind=Kind.TEXT, metavars=("DEVICE",), targets=("device",)),
)

_BY_NAME: dict[str, Flag] = {name: flag for flag in FLAGS for name in flag.names}


def lookup(name: str) -> Flag | None:
    """The nonBragg flag spelled exactly ``name``."""
    return _BY_NAME.get(name)


def parse(argv: Sequence[str]) -> NonBraggInvocation:
    """nonBragg's arguments (without the program name) into a :class:`NonBraggInvocation`."""
    argv = [str(a) for a in argv]
    if any(a in ("-h", "-help", "--help") for a in argv):
        return NonBraggInvocation(show_help=True)
    inv = NonBraggInvocation(noise_seed=int(time.time()))
    given: list = []
    i, n = 0, len(argv)
    while i < n:
        token = argv[i]
        flag = lookup(token)
        if flag is None:
            if token.startswith("-") and not _parse._is_number(token):
                raise UsageError(f"unknown flag {token}")
            raise UsageError(f"unexpected argument {token!r}: not a flag, and no flag before it takes a value")
        i += 1
        raw: list[str] = []
        if flag.nargs:
            if i + flag.nargs > n:
                raise UsageError(f"{token} needs {flag.nargs} value(s)")
            raw = argv[i:i + flag.nargs]
            for value in raw:
                if lookup(value) is not None:
                    raise UsageError(f"{token} needs {flag.nargs} value(s)")
            i += flag.nargs
        given.append(_parse._convert_values(flag, token, raw))
    for deferred in (False, True):
        for item in given:
            if item.flag.deferred == deferred:
                _parse._apply(inv, item)  # type: ignore[arg-type]
    if inv.stol_path is None:
        raise UsageError("-stol FILE is required (a table of sin(theta)/lambda and F; or -stol water)")
    return inv


def _unit(v: tuple[float, ...]) -> tuple[float, float, float]:
    norm = math.sqrt(sum(x * x for x in v))
    return tuple(x / norm for x in v)  # type: ignore[return-value]


def resolve(inv: NonBraggInvocation) -> tuple[Config, SampleConfig, dict[str, float]]:
    """nonBragg's rules: the configuration, the sample and the header values it writes."""
    v = inv.v
    cfg = Config()
    c, b, d = cfg.crystal, cfg.beam, cfg.detector
    # a cell the plan requires; the background never uses it
    c.has_cell = True
    c.cell = (1e-8, 1e-8, 1e-8, math.pi / 2, math.pi / 2, math.pi / 2)
    px = float(v.get("pixel", 0.1e-3))
    detsize_x = detsize_y = float(v.get("detsize", 102.4e-3))
    detsize_x = float(v.get("detsize_x", detsize_x))
    detsize_y = float(v.get("detsize_y", detsize_y))
    fpix = int(v.get("detpixels_f", v.get("detpixels", 0)))
    spix = int(v.get("detpixels_s", v.get("detpixels", 0)))
    if fpix:
        detsize_x = px * fpix
    if spix:
        detsize_y = px * spix
    fpixels, spixels = math.ceil(detsize_x / px), math.ceil(detsize_y / px)
    d.convention = Convention.CUSTOM
    d.fpixels, d.spixels, d.pixel_size = fpixels, spixels, px
    d.detsize_f, d.detsize_s = detsize_x, detsize_y
    Xclose = v.get("Xclose")
    Yclose = v.get("Yclose")
    if "ORGX" in v:
        Xclose = float(v["ORGX"]) * px
    if "ORGY" in v:
        Yclose = float(v["ORGY"]) * px
    if Xclose is None:
        Xclose = (detsize_x - px) / 2.0
    if Yclose is None:
        Yclose = (detsize_y + px) / 2.0
    Xbeam = v.get("Xbeam", Xclose)
    Ybeam = v.get("Ybeam", Yclose)
    pivot = v.get("pivot", Pivot.BEAM)
    d.pivot = Pivot(pivot)
    d.Xbeam, d.Ybeam = (Xbeam, Ybeam) if d.pivot == Pivot.BEAM else (Xclose, Yclose)
    d.distance = float(v.get("distance", 100e-3))
    if "close_distance" in v:
        d.close_distance = float(v["close_distance"])
    fdet = _unit(v.get("fdet_vector", (0.0, 0.0, 1.0)))
    sdet = _unit(v.get("sdet_vector", (0.0, -1.0, 0.0)))
    odet = _unit((fdet[1] * sdet[2] - fdet[2] * sdet[1], fdet[2] * sdet[0] - fdet[0] * sdet[2],
                  fdet[0] * sdet[1] - fdet[1] * sdet[0]))
    d.fdet_vector, d.sdet_vector, d.odet_vector = fdet, sdet, odet
    d.twotheta_axis = tuple(v.get("twotheta_axis", (0.0, 1.0, 0.0)))
    b.beam_vector = tuple(v.get("beam_vector", (1.0, 0.0, 0.0)))
    b.polar_vector = tuple(v.get("polar_vector", (0.0, 0.0, 1.0)))
    c.spindle_axis = tuple(v.get("spindle_axis", (0.0, 0.0, 1.0)))
    if "pix0_vector" in v:
        d.has_pix0 = True
        d.pix0_vector = tuple(v["pix0_vector"])
    d.rotx, d.roty, d.rotz = (float(v.get(k, 0.0)) for k in ("detector_rotx", "detector_roty", "detector_rotz"))
    d.twotheta = float(v.get("twotheta", 0.0))
    d.curved = bool(v.get("curved", False))
    d.point_pixel = bool(v.get("point_pixel", False))
    os_ = int(v.get("oversample", -1))
    d.oversample = os_ if os_ > 0 else 1
    if "roi" in v:
        d.roi = tuple(int(x) for x in v["roi"])  # type: ignore[assignment]
    b.lambda0 = float(v.get("lambda", 1e-10))
    b.polarization = float(v.get("polar", 0.0))
    b.nopolar = bool(v.get("nopolar", False))
    b.fluence = float(v.get("fluence", b.fluence))
    b.flux = float(v.get("flux", 0.0))
    b.exposure = float(v.get("exposure", 1.0))
    b.beamsize = float(v.get("beamsize", 1e-4))
    b.dispersion = float(v.get("dispersion", 0.0))
    if "dispsteps" in v:
        b.dispsteps = int(v["dispsteps"])
    for axis in ("h", "v"):
        rng = v.get(f"{axis}divrange", v.get("divergence"))
        if rng is not None:
            setattr(b, f"{axis}divrange", float(rng))
        if f"{axis}divstep" in v:
            setattr(b, f"{axis}divstep", float(v[f"{axis}divstep"]))
        steps = v.get(f"{axis}divsteps", v.get("divsteps"))
        if steps is not None:
            setattr(b, f"{axis}divsteps", int(steps))
    b.round_div = bool(v.get("round_div", True))
    c.phi0 = float(v.get("phi", 0.0))
    if "osc" in v:
        c.osc = float(v["osc"])
    if "phistep" in v:
        c.phistep = float(v["phistep"])
    if "phisteps" in v:
        c.phisteps = int(v["phisteps"])
    s = SampleConfig()
    if "samplesize" in v:
        s.thickness = s.width = s.height = float(v["samplesize"])
    s.thickness = float(v.get("sample_x", s.thickness))
    s.width = float(v.get("sample_y", s.width))
    s.height = float(v.get("sample_z", s.height))
    s.density = float(v.get("density", s.density))
    s.molecular_weight = float(v.get("MW", s.molecular_weight))
    if "molecules" in v:
        s.molecules = float(v["molecules"])
    header = {"detsize_x": detsize_x, "detsize_y": detsize_y}
    from ..simulator import check_detector_memory

    check_detector_memory(cfg)  # before the plan and the image: -detpixels 10000000 is refused here
    return cfg, s, header
