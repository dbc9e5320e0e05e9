"""Every command-line flag of pybragg, in one declarative table.

Each :class:`Flag` says how the flag is spelled (canonical name and aliases),
what values follow it (count, kind, placeholders), in which unit they are typed
and how they become SI, where they are stored, what else they switch (pivot,
convention, output toggles) and what the help text says about them.  The
parser (:mod:`pybragg.flags.parse`) and the help/Markdown renderers
(:mod:`pybragg.cli.help`) are both driven by :data:`FLAGS`; nothing about an
individual flag is written anywhere else, except the few ``action`` handlers
whose effect is more than "store these numbers".

Targets are dotted paths into the :class:`~pybragg.flags.parse.Invocation`:
``config.detector.distance``, ``outputs.floatfile``, ``extras.density``,
``printout_pixel``; a trailing ``[i]`` sets one element of a tuple field.

Flags are matched by their exact spelling.  The reference program accepted any
argument that merely *contained* a flag's name; pybragg accepts the reference's
spellings and aliases listed here, and nothing else.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..config import Convention, Misset, Pivot, Shape
from ..engines import BACKENDS, DEFAULT_BACKEND, DTYPES
from ..simulator import MAX_MEMORY_BUDGET_GIB, MAX_THREADS

#: degrees per radian, computed as the reference computes it (180 * 1/pi)
RTD = 180.0 * 0.318309886183790671538
#: h*c in eV*Angstrom, as the reference uses it for ``-energy``
HC_EV_ANGSTROM = 12398.42


class Kind(str, enum.Enum):
    """What kind of value(s) follow a flag."""

    SWITCH = "switch"    #: no value
    FLOAT = "float"      #: finite decimal number(s)
    INT = "int"          #: integer(s)
    COUNT = "count"      #: a number of unit cells, truncated toward zero like C's atoi
    PATH = "path"        #: an input file that must exist and be readable
    OUTPATH = "outpath"  #: a file to be written
    KEYWORD = "keyword"  #: one word out of a fixed list
    TEXT = "text"        #: free text (e.g. a device name)


@dataclass(frozen=True)
class Unit:
    """A unit as typed on the command line, and how to turn it into SI."""

    label: str
    si: str
    convert: Callable[[float], float]


def _same(value: float) -> float:
    return value


NUMBER = Unit("", "", _same)
PIXELS = Unit("pixels", "", _same)
METRE = Unit("m", "m", _same)
MM = Unit("mm", "m", lambda v: v / 1000.0)
UM = Unit("µm", "m", lambda v: v * 1e-6)
UM_DIV = Unit("µm", "m", lambda v: v / 1e6)
ANGSTROM = Unit("Å", "m", lambda v: v / 1.0e10)
ANGSTROM_MUL = Unit("Å", "m", lambda v: v * 1e-10)
DEGREE = Unit("deg", "rad", lambda v: v / RTD)
MRAD = Unit("mrad", "rad", lambda v: v / 1000.0)
PERCENT = Unit("%", "fraction", lambda v: v / 100.0)
EV = Unit("eV", "m (wavelength)", lambda v: (HC_EV_ANGSTROM / v) / 1.0e10)
ABSORB = Unit("µm", "1/m (mu)", lambda v: 1.0 / (v * 1e-6))
G_PER_CM3 = Unit("g/cm³", "g/m³", lambda v: v * 1e6)
PHOTONS_M2 = Unit("photons/m²", "photons/m²", _same)
PHOTONS_S = Unit("photons/s", "photons/s", _same)
SECOND = Unit("s", "s", _same)
GIB = Unit("GiB", "GiB", _same)
DALTON = Unit("g/mol", "g/mol", _same)

# ---------------------------------------------------------------------------
# value checks: each takes the numbers as typed and returns a complaint or None


Check = Callable[[Sequence[float]], "str | None"]


def _first(values: Sequence[float], ok: Callable[[float], bool]) -> float | None:
    for value in values:
        if not ok(value):
            return value
    return None


def positive(values: Sequence[float]) -> str | None:
    """Every value must be > 0."""
    bad = _first(values, lambda v: v > 0)
    return None if bad is None else f"must be greater than 0, got {bad:g}"


def nonnegative(values: Sequence[float]) -> str | None:
    """Every value must be >= 0."""
    bad = _first(values, lambda v: v >= 0)
    return None if bad is None else f"must not be negative, got {bad:g}"


def nonzero_vector(values: Sequence[float]) -> str | None:
    """A direction: at least one component must be non-zero."""
    if all(v == 0 for v in values):
        return "the vector must not be zero"
    return None


def roi_box(values: Sequence[float]) -> str | None:
    """``xmin xmax ymin ymax``: non-negative, with min <= max on each axis."""
    bad = nonnegative(values)
    if bad:
        return bad
    xmin, xmax, ymin, ymax = values
    if xmin > xmax:
        return f"xmin {xmin:g} is greater than xmax {xmax:g}"
    if ymin > ymax:
        return f"ymin {ymin:g} is greater than ymax {ymax:g}"
    return None


#: range of a C ``int`` field: every integer flag and unit-cell count unless its flag says otherwise
INT_RANGE: tuple[int, int] = (-(2**31), 2**31 - 1)
#: range of a seed (a C ``long``, negated by the engine, so the most negative ``long`` is left out)
SEED_RANGE: tuple[int, int] = (-(2**63 - 1), 2**63 - 1)
#: largest structure factor accepted (-default_F, the -hkl tables): F^2 times any scale stays finite
MAX_F = 1e100


def amplitude(values: Sequence[float]) -> str | None:
    """A structure factor: |F| at most :data:`MAX_F`."""
    bad = _first(values, lambda v: abs(v) <= MAX_F)
    return None if bad is None else f"|F| must be at most {MAX_F:g} (its square overflows), got {bad:g}"


# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Flag:
    """One command-line flag (see the module docstring for the conventions)."""

    #: canonical spelling, e.g. ``-distance``
    name: str
    #: section of the help: one of :data:`GROUPS`
    group: str
    #: one-line description
    help: str
    #: other accepted spellings
    aliases: tuple[str, ...] = ()
    kind: Kind = Kind.SWITCH
    #: one placeholder per value (empty for a switch)
    metavars: tuple[str, ...] = ()
    #: fewest values accepted when fewer than ``len(metavars)`` may be given
    min_values: int | None = None
    #: unit of the typed numbers and their conversion to SI
    unit: Unit = NUMBER
    #: where the (converted) values go; one target takes all values as a tuple
    #: when the flag has several, several targets each take the single value
    targets: tuple[str, ...] = ()
    #: validation of the typed numbers
    check: Check | None = None
    #: words accepted in place of the value(s), with what they stand for
    keywords: tuple[tuple[str, object], ...] = ()
    #: further assignments made when the flag is applied, in this order
    sets: tuple[tuple[str, object], ...] = ()
    #: name of a special handler in the parser (``cell``, ``misset``, ``absorb``, ``help``, ``version``)
    action: str | None = None
    #: applied after every other flag, wherever it stands
    deferred: bool = False
    #: default as shown in the help
    default: str = ""
    #: False for flags the reference parses but that do not change the image
    affects_image: bool = True
    #: smallest and largest value accepted, as typed (inclusive; None: the kind's range, see
    #: :func:`value_range`): the C field a value ends in decides it
    limits: tuple[float, float] | None = None

    @property
    def nargs(self) -> int:
        """Largest number of values that follow the flag."""
        return len(self.metavars)

    @property
    def names(self) -> tuple[str, ...]:
        """Canonical name followed by the aliases."""
        return (self.name, *self.aliases)

    @property
    def keyword_names(self) -> tuple[str, ...]:
        """The words accepted in place of the values."""
        return tuple(word for word, _ in self.keywords)

    def usage(self) -> str:
        """``-name META...`` as shown in the help."""
        parts = [self.name]
        if self.metavars:
            need = self.nargs if self.min_values is None else self.min_values
            shown = list(self.metavars[:need])
            if need < self.nargs:
                shown.append("[" + " ".join(self.metavars[need:]) + "]")
            numbers = " ".join(shown)
            if self.kind is Kind.KEYWORD:
                numbers = "|".join(self.keyword_names)
            elif self.keywords:
                numbers = numbers + " | " + "|".join(self.keyword_names)
            parts.append(numbers)
        return " ".join(parts)


#: help sections, in order
GROUPS: tuple[str, ...] = ("crystal", "background", "beam", "detector", "sampling", "output", "noise", "engine")

GROUP_TITLES: dict[str, str] = {
    "crystal": "Crystal",
    "background": "Amorphous background",
    "beam": "Beam",
    "detector": "Detector",
    "sampling": "Sampling",
    "output": "Output",
    "noise": "Noise",
    "engine": "Engine",
}

_BEAM = ("config.detector.pivot", Pivot.BEAM)
_SAMPLE = ("config.detector.pivot", Pivot.SAMPLE)
_CUSTOM = ("config.detector.convention", Convention.CUSTOM)

_C = "config.crystal."
_B = "config.beam."
_D = "config.detector."
_O = "outputs."


def _vector(name: str, group: str, target: str, help: str, default: str, *,
            allow_zero: bool = False) -> Flag:
    """A custom direction: three numbers, switches to the CUSTOM convention."""
    return Flag(
        name, group, help + " (switches to the CUSTOM convention)",
        kind=Kind.FLOAT, metavars=("X", "Y", "Z"), targets=(target,),
        check=None if allow_zero else nonzero_vector, sets=(_CUSTOM,), default=default,
    )


FLAGS: tuple[Flag, ...] = (
    # ------------------------------------------------------------------ crystal
    Flag("-hkl", "crystal",
         "structure factors: text file of h k l F, MTZ (.mtz) or structure-factor mmCIF (.cif); an MTZ or "
         "mmCIF is expanded to P1 and gives the cell and space group (read, then dumped to the -dump file)",
         kind=Kind.PATH, metavars=("FILE",), targets=("hkl_path",),
         default="none: read the -dump file if it exists"),
    Flag("-hkl_column", "crystal",
         "amplitude column of an MTZ or mmCIF -hkl (an intensity column is converted to amplitudes)",
         kind=Kind.TEXT, metavars=("LABEL",), targets=("hkl_column",),
         default="the first amplitude column"),
    Flag("-pdb", "crystal",
         "atomic model (PDB or mmCIF): structure factors computed with gemmi out to the detector's corners, "
         "expanded to P1; gives the cell and space group (dumped to the -dump file)",
         kind=Kind.PATH, metavars=("FILE",), targets=("pdb_path",), default="none"),
    Flag("-pdb_anomalous", "crystal",
         "with -pdb: add each element's anomalous terms f' and f\" at the wavelength (Cromer-Liberman)",
         sets=(("pdb_anomalous", True),), default="off"),
    Flag("-mat", "crystal",
         "MOSFLM orientation matrix (reciprocal axes times the wavelength; converted with the final -lambda)",
         kind=Kind.PATH, metavars=("FILE",), targets=("matrix_path",), default="none"),
    Flag("-cell", "crystal",
         "unit cell instead of -mat; missing b, c default to a and missing angles to 90",
         kind=Kind.FLOAT, metavars=("A", "B", "C", "ALPHA", "BETA", "GAMMA"), min_values=1,
         unit=Unit("Å, deg", "m, rad", _same), action="cell", default="none"),
    Flag("-misset", "crystal",
         "crystal rotations about lab x, y, z applied to the cell, or a random orientation",
         kind=Kind.FLOAT, metavars=("RX", "RY", "RZ"), unit=DEGREE,
         keywords=(("random", Misset.RANDOM),), action="misset", default="0 0 0"),
    Flag("-misset_seed", "crystal", "random-number seed of -misset random (negated internally, as typed here)",
         limits=SEED_RANGE, kind=Kind.INT, metavars=("SEED",), targets=(_C + "misset_seed",),
         default="from the clock"),
    Flag("-default_F", "crystal", "structure factor of every reflection missing from the -hkl table",
         kind=Kind.FLOAT, metavars=("F",), check=amplitude, targets=(_C + "default_F",), default="0"),
    Flag("-N", "crystal", "unit cells along a, b and c (a fraction is truncated: 5.7 means 5)",
         kind=Kind.COUNT, metavars=("N",), check=nonnegative,
         targets=(_C + "N[0]", _C + "N[1]", _C + "N[2]"), default="1"),
    Flag("-Na", "crystal", "unit cells along a (truncated to an integer)",
         kind=Kind.COUNT, metavars=("N",), check=nonnegative, targets=(_C + "N[0]",), default="1"),
    Flag("-Nb", "crystal", "unit cells along b (truncated to an integer)",
         kind=Kind.COUNT, metavars=("N",), check=nonnegative, targets=(_C + "N[1]",), default="1"),
    Flag("-Nc", "crystal", "unit cells along c (truncated to an integer)",
         kind=Kind.COUNT, metavars=("N",), check=nonnegative, targets=(_C + "N[2]",), default="1"),
    Flag("-samplesize", "crystal", "crystal size along a, b and c instead of -N",
         aliases=("-sample_size", "-xtalsize", "-xtal_size"),
         kind=Kind.FLOAT, metavars=("SIZE",), unit=MM, check=nonnegative,
         targets=(_C + "sample_size[0]", _C + "sample_size[1]", _C + "sample_size[2]"),
         default="0: use -N"),
    Flag("-sample_thick", "crystal", "crystal size along a instead of -Na",
         aliases=("-sample_x", "-xtal_thick", "-xtal_x"),
         kind=Kind.FLOAT, metavars=("SIZE",), unit=MM, check=nonnegative,
         targets=(_C + "sample_size[0]",), default="0: use -Na"),
    Flag("-sample_width", "crystal", "crystal size along b instead of -Nb",
         aliases=("-sample_y", "-xtal_width", "-xtal_y", "-width"),
         kind=Kind.FLOAT, metavars=("SIZE",), unit=MM, check=nonnegative,
         targets=(_C + "sample_size[1]",), default="0: use -Nb"),
    Flag("-sample_height", "crystal", "crystal size along c instead of -Nc",
         aliases=("-sample_heigh", "-sample_z", "-xtal_height", "-xtal_heigh", "-xtal_z",
                  "-height", "-heigh"),
         kind=Kind.FLOAT, metavars=("SIZE",), unit=MM, check=nonnegative,
         targets=(_C + "sample_size[2]",), default="0: use -Nc"),
    Flag("-square_xtal", "crystal", "parallelepiped crystal: sin(Nx)/sin(x) lattice transform",
         sets=((_C + "shape", Shape.SQUARE),), default="on"),
    Flag("-round_xtal", "crystal", "ellipsoidal crystal: sinc3 lattice transform",
         sets=((_C + "shape", Shape.ROUND),), default="off"),
    Flag("-gauss_xtal", "crystal", "Gaussian spots: no inter-Bragg maxima",
         sets=((_C + "shape", Shape.GAUSS),), default="off"),
    Flag("-tophat_spots", "crystal", "spots clipped at their full width: no inter-Bragg maxima",
         aliases=("-binary_spots",), sets=((_C + "shape", Shape.TOPHAT),), default="off"),
    Flag("-fudge", "crystal", "scale of the lattice-transform radius (round, gauss and tophat shapes)",
         kind=Kind.FLOAT, metavars=("FACTOR",), targets=(_C + "fudge",), default="1"),
    Flag("-interpolate", "crystal", "tricubic interpolation of structure factors between Bragg peaks",
         sets=((_C + "interpolate", True),), default="on when any N <= 2"),
    Flag("-nointerpolate", "crystal", "nearest structure factor, no interpolation",
         sets=((_C + "interpolate", False),), default="off when every N > 2"),
    Flag("-mosaic", "crystal", "isotropic mosaic spread (use 90 for a powder)",
         aliases=("-mosaicity", "-mosaic_spread"),
         kind=Kind.FLOAT, metavars=("SPREAD",), unit=DEGREE, check=nonnegative,
         targets=(_C + "mosaic_spread",), default="0"),
    Flag("-mosaic_seed", "crystal", "random-number seed of the mosaic domains (negated internally, as typed here)",
         limits=SEED_RANGE, kind=Kind.INT, metavars=("SEED",), targets=(_C + "mosaic_seed",), default="12345678"),
    Flag("-phi", "crystal", "spindle angle at the start of the exposure",
         kind=Kind.FLOAT, metavars=("ANGLE",), unit=DEGREE, targets=(_C + "phi0",), default="0"),
    Flag("-osc", "crystal", "oscillation range about the spindle",
         kind=Kind.FLOAT, metavars=("RANGE",), unit=DEGREE, check=nonnegative,
         targets=(_C + "osc",), default="0, or from -phistep/-phisteps"),
    _vector("-spindle_axis", "crystal", _C + "spindle_axis", "right-handed spindle (phi) axis",
            "per convention (MOSFLM: 0 0 1)"),
    # ---------------------------------------------------------- amorphous background
    Flag("-stol", "background",
         "amorphous structure factors F(sin(theta)/lambda), sin(theta)/lambda in 1/Å: adds the background "
         "of the -bg_thick sample (nonBragg's physics); water or air: the shipped table",
         kind=Kind.PATH, metavars=("FILE",), targets=("stol_path",),
         sets=(("extras.stol_scale", 1e10),), default="none: no background"),
    Flag("-4stol", "background", "like -stol with 4 sin(theta)/lambda in 1/Å",
         kind=Kind.PATH, metavars=("FILE",), targets=("stol_path",),
         sets=(("extras.stol_scale", 1e10 / 4),), default="none"),
    Flag("-Q", "background", "like -stol with Q = 4 pi sin(theta)/lambda in 1/Å",
         kind=Kind.PATH, metavars=("FILE",), targets=("stol_path",),
         sets=(("extras.stol_scale", 1e10 / math.pi / 4),), default="none"),
    Flag("-density", "background", "density of the amorphous sample (with -stol; no effect without)",
         aliases=("-sample_density",), kind=Kind.FLOAT, metavars=("RHO",), unit=G_PER_CM3,
         check=positive, targets=("extras.density",), default="1"),
    Flag("-MW", "background", "molecular weight of the amorphous sample (with -stol; no effect without)",
         aliases=("-molecules",), kind=Kind.FLOAT, metavars=("MW",), unit=DALTON,
         check=positive, targets=("extras.molecular_weight",), default="18"),
    Flag("-bg_thick", "background",
         "thickness of the amorphous sample along the beam (nonBragg's -thickness; with -stol)",
         aliases=("-bg_thickness",), kind=Kind.FLOAT, metavars=("SIZE",), unit=MM, check=nonnegative,
         targets=("extras.bg_thickness",), default="0.1"),
    Flag("-bg_width", "background", "width of the amorphous sample, clipped to -beamsize (with -stol)",
         kind=Kind.FLOAT, metavars=("SIZE",), unit=MM, check=nonnegative,
         targets=("extras.bg_width",), default="0.1"),
    Flag("-bg_height", "background", "height of the amorphous sample, clipped to -beamsize (with -stol)",
         kind=Kind.FLOAT, metavars=("SIZE",), unit=MM, check=nonnegative,
         targets=("extras.bg_height",), default="0.1"),
    Flag("-bg_size", "background", "thickness, width and height of a cube of amorphous sample (with -stol)",
         kind=Kind.FLOAT, metavars=("SIZE",), unit=MM, check=nonnegative,
         targets=("extras.bg_thickness", "extras.bg_width", "extras.bg_height"), default="0.1"),
    Flag("-bg_molecules", "background",
         "number of molecules of the amorphous sample (with -stol; overrides -density)",
         kind=Kind.FLOAT, metavars=("N",), check=nonnegative, targets=("extras.bg_molecules",),
         default="from -density"),
    # --------------------------------------------------------------------- beam
    Flag("-lambda", "beam", "central wavelength", aliases=("-wave",),
         kind=Kind.FLOAT, metavars=("WAVELENGTH",), unit=ANGSTROM, check=positive,
         targets=(_B + "lambda0",), default="1"),
    Flag("-energy", "beam", "photon energy instead of -lambda (lambda = 12398.42 / E Å)",
         kind=Kind.FLOAT, metavars=("ENERGY",), unit=EV, check=positive,
         targets=(_B + "lambda0",), default="from -lambda"),
    Flag("-dispersion", "beam", "full spectral width delta-lambda/lambda",
         kind=Kind.FLOAT, metavars=("PERCENT",), unit=PERCENT, check=nonnegative,
         targets=(_B + "dispersion",), default="0"),
    Flag("-divergence", "beam", "horizontal and vertical divergence ranges",
         kind=Kind.FLOAT, metavars=("RANGE",), unit=MRAD, check=nonnegative,
         targets=(_B + "hdivrange", _B + "vdivrange"), default="0"),
    Flag("-hdivrange", "beam", "horizontal divergence range",
         kind=Kind.FLOAT, metavars=("RANGE",), unit=MRAD, check=nonnegative,
         targets=(_B + "hdivrange",), default="0"),
    Flag("-vdivrange", "beam", "vertical divergence range",
         kind=Kind.FLOAT, metavars=("RANGE",), unit=MRAD, check=nonnegative,
         targets=(_B + "vdivrange",), default="0"),
    Flag("-round_div", "beam", "cut the divergence raster to an ellipse",
         sets=((_B + "round_div", True),), default="on"),
    Flag("-square_div", "beam", "use the full rectangular divergence raster",
         sets=((_B + "round_div", False),), default="off"),
    _vector("-beam_vector", "beam", _B + "beam_vector", "direction of travel of the X-rays",
            "per convention (MOSFLM: 1 0 0)"),
    _vector("-polar_vector", "beam", _B + "polar_vector", "E-vector (polarization) direction",
            "per convention (MOSFLM: 0 0 1)"),
    Flag("-polar", "beam", "Kahn polarization factor (turns -nopolar off)",
         kind=Kind.FLOAT, metavars=("K",), targets=(_B + "polarization",),
         sets=((_B + "nopolar", False),), default="0"),
    Flag("-nopolar", "beam", "no polarization correction (factor 1)",
         sets=((_B + "nopolar", True),), default="off"),
    Flag("-fluence", "beam", "incident photons per area",
         kind=Kind.FLOAT, metavars=("FLUENCE",), unit=PHOTONS_M2, check=nonnegative,
         targets=(_B + "fluence",), default="1.25932e+29"),
    Flag("-flux", "beam", "incident photons per second; with -exposure and -beamsize sets the fluence",
         kind=Kind.FLOAT, metavars=("FLUX",), unit=PHOTONS_S, check=nonnegative,
         targets=(_B + "flux",), default="0: use -fluence"),
    Flag("-exposure", "beam", "exposure time (with -flux and -beamsize)",
         kind=Kind.FLOAT, metavars=("TIME",), unit=SECOND, check=nonnegative,
         targets=(_B + "exposure",), default="1"),
    Flag("-beamsize", "beam", "beam size (with -flux and -exposure); clips the crystal",
         kind=Kind.FLOAT, metavars=("SIZE",), unit=MM, check=nonnegative,
         targets=(_B + "beamsize",), default="0.1"),
    Flag("-water", "beam", "thickness of water around the crystal for the background",
         kind=Kind.FLOAT, metavars=("SIZE",), unit=UM_DIV, check=nonnegative,
         targets=(_B + "water_size",), default="0"),
    Flag("-sourcefile", "beam", "text file of sources: X Y Z weight lambda per line",
         kind=Kind.PATH, metavars=("FILE",), targets=("source_path",),
         default="none: sources from divergence and dispersion"),
    Flag("-coherent", "beam", "coherent addition of sources (parsed, no effect on the image)",
         sets=(("extras.coherent", True),), default="off", affects_image=False),
    # ----------------------------------------------------------------- detector
    Flag("-distance", "detector", "sample to the direct-beam spot along the beam (pivot BEAM)",
         kind=Kind.FLOAT, metavars=("DIST",), unit=MM, check=positive,
         targets=(_D + "distance",), sets=(_BEAM,), default="100"),
    Flag("-close_distance", "detector", "sample to the detector plane (pivot SAMPLE)",
         kind=Kind.FLOAT, metavars=("DIST",), unit=MM, check=positive,
         targets=(_D + "close_distance",), sets=(_SAMPLE,), default="from -distance"),
    Flag("-Xbeam", "detector", "beam centre, X in the convention's frame (pivot BEAM)",
         kind=Kind.FLOAT, metavars=("X",), unit=MM, targets=(_D + "Xbeam",), sets=(_BEAM,),
         default="detector centre"),
    Flag("-Ybeam", "detector", "beam centre, Y in the convention's frame (pivot BEAM)",
         kind=Kind.FLOAT, metavars=("Y",), unit=MM, targets=(_D + "Ybeam",), sets=(_BEAM,),
         default="detector centre"),
    Flag("-Xclose", "detector", "point of the detector nearest the sample, X (pivot SAMPLE)",
         kind=Kind.FLOAT, metavars=("X",), unit=MM, targets=(_D + "Xclose",), sets=(_SAMPLE,),
         default="detector centre"),
    Flag("-Yclose", "detector", "point of the detector nearest the sample, Y (pivot SAMPLE)",
         kind=Kind.FLOAT, metavars=("Y",), unit=MM, targets=(_D + "Yclose",), sets=(_SAMPLE,),
         default="detector centre"),
    Flag("-ORGX", "detector", "XDS origin, fast coordinate (pivot SAMPLE)",
         kind=Kind.FLOAT, metavars=("PIXELS",), unit=PIXELS, targets=(_D + "ORGX",),
         sets=(_SAMPLE,), default="detector centre"),
    Flag("-ORGY", "detector", "XDS origin, slow coordinate (pivot SAMPLE)",
         kind=Kind.FLOAT, metavars=("PIXELS",), unit=PIXELS, targets=(_D + "ORGY",),
         sets=(_SAMPLE,), default="detector centre"),
    Flag("-pivot", "detector", "what stays fixed when the detector rotates",
         kind=Kind.KEYWORD, metavars=("WHICH",),
         keywords=(("beam", Pivot.BEAM), ("sample", Pivot.SAMPLE)),
         targets=(_D + "pivot",), default="beam (set by the last geometry flag)"),
    Flag("-mosflm", "detector", "MOSFLM convention (pivot BEAM)",
         sets=((_D + "convention", Convention.MOSFLM), _BEAM), default="on"),
    Flag("-denzo", "detector", "DENZO convention (pivot BEAM)",
         sets=((_D + "convention", Convention.DENZO), _BEAM), default="off"),
    Flag("-adxv", "detector", "ADXV convention (pivot BEAM)",
         sets=((_D + "convention", Convention.ADXV), _BEAM), default="off"),
    Flag("-xds", "detector", "XDS convention (pivot SAMPLE)",
         sets=((_D + "convention", Convention.XDS), _SAMPLE), default="off"),
    # The reference records pivot BEAM for -dials; the DIALS convention then
    # imposes SAMPLE itself, so only a later switch to CUSTOM sees the difference.
    Flag("-dials", "detector", "DIALS convention (the convention pivots on the sample)",
         sets=((_D + "convention", Convention.DIALS), _BEAM), default="off"),
    _vector("-fdet_vector", "detector", _D + "fdet_vector", "fast pixel axis",
            "per convention (MOSFLM: 0 0 1)"),
    _vector("-sdet_vector", "detector", _D + "sdet_vector", "slow pixel axis",
            "per convention (MOSFLM: 0 -1 0)"),
    _vector("-odet_vector", "detector", _D + "odet_vector",
            "detector normal, away from the sample (derived from fast x slow when not unit length)",
            "per convention (MOSFLM: 1 0 0)", allow_zero=True),
    _vector("-twotheta_axis", "detector", _D + "twotheta_axis", "axis of the -twotheta rotation",
            "per convention (MOSFLM: 0 0 -1)"),
    Flag("-pix0_vector", "detector",
         "sample to the corner of the first pixel before detector rotations, in metres "
         "(switches to the CUSTOM convention)",
         kind=Kind.FLOAT, metavars=("X", "Y", "Z"), unit=METRE, targets=(_D + "pix0_vector",),
         sets=((_D + "has_pix0", True), _CUSTOM), default="from the beam centre"),
    Flag("-pix0_vector_mm", "detector",
         "as -pix0_vector, in millimetres (switches to the CUSTOM convention)",
         kind=Kind.FLOAT, metavars=("X", "Y", "Z"), unit=MM, targets=(_D + "pix0_vector",),
         sets=((_D + "has_pix0", True), _CUSTOM), default="from the beam centre"),
    Flag("-detector_rotx", "detector", "detector rotation about lab x (first)",
         kind=Kind.FLOAT, metavars=("ANGLE",), unit=DEGREE, targets=(_D + "rotx",), default="0"),
    Flag("-detector_roty", "detector", "detector rotation about lab y (second)",
         kind=Kind.FLOAT, metavars=("ANGLE",), unit=DEGREE, targets=(_D + "roty",), default="0"),
    Flag("-detector_rotz", "detector", "detector rotation about lab z (third)",
         kind=Kind.FLOAT, metavars=("ANGLE",), unit=DEGREE, targets=(_D + "rotz",), default="0"),
    Flag("-twotheta", "detector", "detector rotation about the two-theta axis (last; pivot SAMPLE)",
         kind=Kind.FLOAT, metavars=("ANGLE",), unit=DEGREE, targets=(_D + "twotheta",),
         sets=(_SAMPLE,), default="0"),
    Flag("-detsize", "detector", "detector width and height (ignored when pixel counts are given)",
         kind=Kind.FLOAT, metavars=("SIZE",), unit=MM, check=positive,
         targets=(_D + "detsize_f", _D + "detsize_s"), default="102.4"),
    Flag("-detsize_f", "detector", "detector size along the fast axis",
         kind=Kind.FLOAT, metavars=("SIZE",), unit=MM, check=positive,
         targets=(_D + "detsize_f",), default="102.4"),
    Flag("-detsize_s", "detector", "detector size along the slow axis",
         kind=Kind.FLOAT, metavars=("SIZE",), unit=MM, check=positive,
         targets=(_D + "detsize_s",), default="102.4"),
    Flag("-detpixels", "detector", "pixels along both axes",
         kind=Kind.INT, metavars=("N",), check=positive,
         targets=(_D + "fpixels", _D + "spixels"), default="from -detsize and -pixel"),
    Flag("-detpixels_f", "detector", "pixels along the fast axis", aliases=("-detpixels_x",),
         kind=Kind.INT, metavars=("N",), check=positive, targets=(_D + "fpixels",),
         default="from -detsize_f and -pixel"),
    Flag("-detpixels_s", "detector", "pixels along the slow axis", aliases=("-detpixels_y",),
         kind=Kind.INT, metavars=("N",), check=positive, targets=(_D + "spixels",),
         default="from -detsize_s and -pixel"),
    Flag("-pixel", "detector", "pixel size",
         kind=Kind.FLOAT, metavars=("SIZE",), unit=MM, check=positive,
         targets=(_D + "pixel_size",), default="0.1"),
    Flag("-curved_det", "detector", "curved detector: every pixel at the same distance from the sample",
         aliases=("-curved_detector",), sets=((_D + "curved", True),), default="off"),
    Flag("-point_pixel", "detector", "solid angle 1/R² per pixel, without the obliquity factor",
         sets=((_D + "point_pixel", True),), default="off"),
    Flag("-detector_absorb", "detector",
         "attenuation depth of the sensor; inf or 0 means no absorption (and thickness 0)",
         aliases=("-detector_abs", "-detector_absorption"),
         kind=Kind.FLOAT, metavars=("DEPTH",), unit=ABSORB, check=nonnegative,
         keywords=(("inf", math.inf),), action="absorb", default="the sensor thickness"),
    Flag("-detector_thick", "detector", "sensor thickness",
         kind=Kind.FLOAT, metavars=("THICK",), unit=UM, check=nonnegative,
         targets=(_D + "thick",), default="0"),
    Flag("-img", "detector",
         "SMV image whose header sets size, pixel, distance, wavelength, beam centre, phi, osc "
         "(flags still win)",
         kind=Kind.PATH, metavars=("FILE",), targets=("img_path",), default="none"),
    Flag("-mask", "detector",
         "SMV image of the detector's data array: pixels that are 0 are not rendered (with -geom, "
         "besides the file's bad regions); its header is read like -img's (before it)",
         kind=Kind.PATH, metavars=("FILE",), targets=("mask_path",), default="none"),
    Flag("-geom", "detector",
         "CrystFEL geometry file: every panel (size, pixel, place in the data array, fs/ss, corner, "
         "camera length), the wavelength unless -lambda/-energy, bad regions and edge masks; -distance "
         "sets the camera length (clen); see docs/geometry.md",
         kind=Kind.PATH, metavars=("FILE",), targets=("geom_path",), default="none: one panel from the flags"),
    Flag("-expt", "detector",
         "DIALS experiment list: the detector (every panel, stacked along the slow axis of the data array) "
         "and, unless flags give them, the beam, goniometer, scan and crystal; see docs/geometry.md",
         kind=Kind.PATH, metavars=("FILE",), targets=("expt_path",), default="none: one panel from the flags"),
    # ----------------------------------------------------------------- sampling
    Flag("-oversample", "sampling", "sub-pixels per pixel edge",
         kind=Kind.INT, metavars=("N",), check=nonnegative, targets=(_D + "oversample",),
         default="auto from crystal size"),
    Flag("-oversample_thick", "sampling", "recompute the sensor capture fraction for every sub-pixel",
         sets=((_D + "oversample_thick", True),), default="off"),
    Flag("-oversample_polar", "sampling", "recompute the polarization factor for every sub-pixel",
         sets=((_D + "oversample_polar", True),), default="off"),
    Flag("-oversample_omega", "sampling", "recompute the solid angle for every sub-pixel",
         sets=((_D + "oversample_omega", True),), default="off"),
    Flag("-detector_thicksteps", "sampling", "layers of the sensor", aliases=("-thicksteps",),
         kind=Kind.INT, metavars=("N",), check=nonnegative, targets=(_D + "thicksteps",),
         default="2 with a thickness, else 1"),
    Flag("-phistep", "sampling", "spindle step",
         kind=Kind.FLOAT, metavars=("STEP",), unit=DEGREE, check=nonnegative,
         targets=(_C + "phistep",), default="from -osc and -phisteps"),
    Flag("-phisteps", "sampling", "spindle steps across -osc",
         kind=Kind.INT, metavars=("N",), check=nonnegative, targets=(_C + "phisteps",),
         default="1, or 2 with -osc"),
    Flag("-mosaic_domains", "sampling", "mosaic domains to render", aliases=("-mosaic_dom",),
         kind=Kind.INT, metavars=("N",), check=nonnegative, targets=(_C + "mosaic_domains",),
         default="10 with -mosaic, else 1"),
    Flag("-dispsteps", "sampling", "wavelengths across -dispersion",
         kind=Kind.INT, metavars=("N",), check=nonnegative, targets=(_B + "dispsteps",),
         default="auto"),
    Flag("-hdivstep", "sampling", "horizontal divergence step",
         kind=Kind.FLOAT, metavars=("STEP",), unit=MRAD, check=nonnegative,
         targets=(_B + "hdivstep",), default="auto"),
    Flag("-vdivstep", "sampling", "vertical divergence step",
         kind=Kind.FLOAT, metavars=("STEP",), unit=MRAD, check=nonnegative,
         targets=(_B + "vdivstep",), default="auto"),
    Flag("-hdivsteps", "sampling", "horizontal divergence steps",
         kind=Kind.INT, metavars=("N",), check=nonnegative, targets=(_B + "hdivsteps",),
         default="auto"),
    Flag("-vdivsteps", "sampling", "vertical divergence steps",
         kind=Kind.INT, metavars=("N",), check=nonnegative, targets=(_B + "vdivsteps",),
         default="auto"),
    Flag("-divsteps", "sampling", "horizontal and vertical divergence steps",
         kind=Kind.INT, metavars=("N",), check=nonnegative,
         targets=(_B + "hdivsteps", _B + "vdivsteps"), default="auto"),
    Flag("-roi", "sampling", "render only pixels xmin..xmax (fast) by ymin..ymax (slow), inclusive",
         kind=Kind.INT, metavars=("XMIN", "XMAX", "YMIN", "YMAX"), check=roi_box,
         targets=(_D + "roi",), default="whole detector"),
    Flag("-dmin", "sampling", "resolution limit: no scattering beyond it",
         kind=Kind.FLOAT, metavars=("D",), unit=ANGSTROM_MUL, check=nonnegative,
         targets=(_D + "dmin",), default="0: none"),
    # ------------------------------------------------------------------- output
    Flag("-floatfile", "output", "raw float32 image", aliases=("-floatimage",),
         kind=Kind.OUTPATH, metavars=("FILE",), targets=(_O + "floatfile",),
         default="floatimage.bin"),
    Flag("-intfile", "output", "noiseless SMV image", aliases=("-intimage",),
         kind=Kind.OUTPATH, metavars=("FILE",), targets=(_O + "intfile",),
         default="intimage.img"),
    Flag("-scale", "output", "scale of the -intfile image",
         kind=Kind.FLOAT, metavars=("SCALE",), targets=(_O + "intfile_scale",),
         default="auto: brightest pixel about 55000"),
    Flag("-adc", "output", "offset added to SMV pixels (-intfile and -noisefile)",
         kind=Kind.FLOAT, metavars=("OFFSET",), targets=(_O + "adc_offset",), default="40"),
    Flag("-pgmfile", "output", "8-bit PGM image (turns the PGM on)", aliases=("-pgmimage",),
         kind=Kind.OUTPATH, metavars=("FILE",), targets=(_O + "pgmfile",),
         sets=((_O + "write_pgm", True),), default="image.pgm"),
    Flag("-pgmscale", "output", "scale of the PGM image (turns the PGM on)",
         kind=Kind.FLOAT, metavars=("SCALE",), targets=(_O + "pgm_scale",),
         sets=((_O + "write_pgm", True),), default="auto"),
    Flag("-nopgm", "output", "write no PGM image (wins wherever it stands)",
         sets=((_O + "write_pgm", False),), deferred=True, default="off"),
    Flag("-dump", "output", "structure-factor dump written after reading -hkl, read without -hkl",
         kind=Kind.OUTPATH, metavars=("FILE",), targets=(_O + "dumpfile",), default="Fdump.bin"),
    Flag("-stolout", "output", "name of an amorphous structure-factor output (parsed, never written)",
         kind=Kind.OUTPATH, metavars=("FILE",), targets=("extras.stolout",),
         default="output.stol", affects_image=False),
    Flag("-cbffile", "output",
         "CBF of detector counts (int32; the noise image's photons before the ADC offset, or the float "
         "image rounded with -nonoise) with the full geometry in its header",
         kind=Kind.OUTPATH, metavars=("FILE",), targets=(_O + "cbffile",), default="none"),
    Flag("-nexusfile", "output",
         "NeXus/NXmx HDF5 file of the counts (float32 photons with -nonoise) with beam, detector and "
         "goniometer (needs h5py)", aliases=("-nxsfile",),
         kind=Kind.OUTPATH, metavars=("FILE",), targets=(_O + "nexusfile",), default="none"),
    Flag("-nexus_compression", "output", "compression of the -nexusfile data (bslz4 needs hdf5plugin)",
         kind=Kind.KEYWORD, metavars=("NAME",),
         keywords=(("deflate", "deflate"), ("bslz4", "bslz4"), ("none", "none")),
         targets=(_O + "nexus_compression",), default="deflate"),
    Flag("-exptfile", "output",
         "DIALS experiment list (JSON) of the true beam, detector, goniometer, scan and crystal",
         kind=Kind.OUTPATH, metavars=("FILE",), targets=(_O + "exptfile",), default="none"),
    Flag("-geomfile", "output",
         "CrystFEL geometry file of the detector in use (every panel as rendered, the wavelength; with "
         "-nexusfile the NeXus data location), for indexamajig",
         kind=Kind.OUTPATH, metavars=("FILE",), targets=(_O + "geomfile",), default="none"),
    Flag("-pngfile", "output", "PNG preview of the float image (needs Pillow)",
         kind=Kind.OUTPATH, metavars=("FILE",), targets=(_O + "pngfile",), default="none"),
    Flag("-png_scale", "output", "brightness scale of the -pngfile preview",
         kind=Kind.KEYWORD, metavars=("SCALE",),
         keywords=(("linear", "linear"), ("sqrt", "sqrt"), ("log", "log")),
         targets=(_O + "png_scale",), default="log"),
    Flag("-png_cmap", "output",
         "colour map of the -pngfile preview: grey, inverse, heat, or a matplotlib colour map",
         kind=Kind.TEXT, metavars=("NAME",), targets=(_O + "png_cmap",), default="inverse"),
    Flag("-png_max", "output", "photons shown at full brightness in the -pngfile preview",
         kind=Kind.FLOAT, metavars=("PHOTONS",), check=positive, targets=(_O + "png_max",),
         default="the brightest pixel"),
    Flag("-q", "output", "quiet: print no summary (warnings and errors still go to stderr)",
         aliases=("--quiet",), sets=(("quiet", True),), default="off", affects_image=False),
    Flag("-printout", "output", "accepted for compatibility; prints nothing (see `pybragg trace`)",
         sets=(("printout", True),), default="off", affects_image=False),
    Flag("-printout_pixel", "output", "accepted for compatibility; prints nothing (see `pybragg trace`)",
         kind=Kind.INT, metavars=("FAST", "SLOW"), targets=("printout_pixel",),
         sets=(("printout", True),), default="all pixels", affects_image=False),
    Flag("-progress", "output", "show the progress meter",
         sets=(("progress", True),), default="on", affects_image=False),
    Flag("-noprogress", "output", "hide the progress meter",
         sets=(("progress", False),), default="off", affects_image=False),
    # -------------------------------------------------------------------- noise
    Flag("-noisefile", "noise", "SMV image with Poisson noise (turns noise on)",
         aliases=("-noiseimage",), kind=Kind.OUTPATH, metavars=("FILE",),
         targets=(_O + "noisefile",), sets=((_O + "write_noise", True),),
         default="noiseimage.img"),
    Flag("-nonoise", "noise", "write no noise image (wins wherever it stands)",
         sets=((_O + "write_noise", False),), deferred=True, default="off"),
    Flag("-seed", "noise", "random-number seed of the noise image (negated internally, as typed here)",
         limits=SEED_RANGE, kind=Kind.INT, metavars=("SEED",), targets=(_O + "noise_seed",),
         default="from the clock"),
    # detector response of the noise image (noisify's flags; pybragg.response) -- issue 13
    Flag("-readout_noise", "noise", "Gaussian read-out noise added to every noise-image pixel (ADU rms)",
         aliases=("-readout", "-readnoise"), kind=Kind.FLOAT, metavars=("ADU",), check=nonnegative,
         targets=(_O + "response.readout_noise",), default="0"),
    Flag("-flicker", "noise", "fractional source flicker per pixel of the noise image",
         kind=Kind.FLOAT, metavars=("FRACTION",), check=nonnegative, targets=(_O + "response.flicker",),
         default="0"),
    Flag("-calibration", "noise", "static fractional calibration error per pixel of the noise image",
         kind=Kind.FLOAT, metavars=("FRACTION",), check=nonnegative, targets=(_O + "response.calibration",),
         default="0 (noisify's default is 0.03)"),
    Flag("-calib_seed", "noise", "seed of the calibration error (negated internally, as typed here)",
         limits=SEED_RANGE, kind=Kind.INT, metavars=("SEED",), targets=(_O + "response.calib_seed",),
         default="noisify's: internal state 123456789"),
    Flag("-gain", "noise", "ADU per photon of the noise image", kind=Kind.FLOAT, metavars=("ADU",),
         targets=(_O + "response.gain",), default="1"),
    Flag("-psf", "noise", "point-spread function of the noise image", kind=Kind.KEYWORD, metavars=("TYPE",),
         keywords=(("gauss", "gauss"), ("fiber", "fiber")), targets=(_O + "response.psf",), default="none"),
    Flag("-psf_fwhm", "noise", "full width at half maximum of the -psf", aliases=("-psf_size", "-psf_width"),
         kind=Kind.FLOAT, metavars=("FWHM",), unit=UM_DIV, check=nonnegative,
         targets=(_O + "response.psf_fwhm",), default="46"),
    Flag("-psf_radius", "noise", "radius to render the -psf (pixels, truncated; 0: automatic)",
         aliases=("-psf_rad",), kind=Kind.COUNT, metavars=("PIXELS",), check=nonnegative,
         targets=(_O + "response.psf_radius",), default="0: automatic"),
    Flag("-bits", "noise", "bits per pixel of the -noisefile (16 or 32)", kind=Kind.KEYWORD, metavars=("BITS",),
         keywords=(("16", 16), ("32", 32)), targets=(_O + "response.bits",), default="16"),
    # ------------------------------------------------------------------- engine
    Flag("--backend", "engine", "engine that renders the image",
         kind=Kind.KEYWORD, metavars=("NAME",),
         keywords=tuple((name, name) for name in BACKENDS),
         targets=("backend",), default=DEFAULT_BACKEND),
    Flag("--dtype", "engine", "floating-point precision of the engine",
         kind=Kind.KEYWORD, metavars=("TYPE",),
         keywords=tuple((name, name) for name in DTYPES),
         targets=("dtype",), default="float64"),
    Flag("--device", "engine", "torch device, e.g. cpu or cuda:0",
         kind=Kind.TEXT, metavars=("DEV",), targets=("device",), default="auto"),
    Flag("--memory-budget", "engine", "memory the engine may use for intermediate arrays",
         kind=Kind.FLOAT, metavars=("GIB",), unit=GIB, check=positive, limits=(0, MAX_MEMORY_BUDGET_GIB),
         targets=("memory_budget_gib",), default="2"),
    Flag("--threads", "engine", f"CPU threads (0: all; at most {MAX_THREADS})",
         kind=Kind.INT, metavars=("N",), limits=(0, MAX_THREADS), targets=("threads",), default="0"),
    Flag("-h", "engine", "show this help and exit", aliases=("-help", "--help"), action="help",
         default="", affects_image=False),
    Flag("--version", "engine", "print pybragg's version and exit", action="version",
         default="", affects_image=False),
)


def _index(flags: Sequence[Flag]) -> dict[str, Flag]:
    table: dict[str, Flag] = {}
    for flag in flags:
        if flag.group not in GROUPS:
            raise ValueError(f"{flag.name}: unknown group {flag.group!r}")
        for name in flag.names:
            if name in table:
                raise ValueError(f"flag name {name} is used twice")
            table[name] = flag
    return table


#: every accepted spelling -> its flag
BY_NAME: dict[str, Flag] = _index(FLAGS)


def lookup(name: str) -> Flag | None:
    """The flag spelled exactly ``name`` (canonical or alias), or None."""
    return BY_NAME.get(name)


def flags_in_group(group: str) -> list[Flag]:
    """The flags of one help section, in table order."""
    return [flag for flag in FLAGS if flag.group == group]
