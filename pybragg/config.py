"""Configuration of a simulation: plain dataclasses in SI units.

Every engine consumes the same :class:`Config`.  Field names match the C
engine's structs in ``csrc/pybragg.h`` one to one, so the C binding copies them
by name.  ``None`` means "unset": the engine then derives the value the way the
reference nanoBragg does (for example the beam centre from the detector size).

Units: lengths in metres, angles in radians, wavelengths in metres, fluence in
photons/m^2, flux in photons/s, exposure in seconds.
"""

from __future__ import annotations

import copy
import dataclasses
import enum
import math
from dataclasses import dataclass, field

Vec3 = tuple[float, float, float]


class Convention(enum.IntEnum):
    """Detector/beam axis conventions (values match ``PB_CONVENTION_*``)."""

    CUSTOM = 0
    ADXV = 1
    MOSFLM = 2
    XDS = 3
    DIALS = 4
    DENZO = 5


class Pivot(enum.IntEnum):
    """What stays fixed when the detector rotates (``PB_PIVOT_*``)."""

    SAMPLE = 0
    BEAM = 1


class Shape(enum.IntEnum):
    """Lattice transform / spot shape (``PB_SHAPE_*``)."""

    SQUARE = 0
    ROUND = 1
    GAUSS = 2
    TOPHAT = 3


class Misset(enum.IntEnum):
    """How the crystal orientation is perturbed (``PB_MISSET_*``)."""

    NONE = 0
    ANGLES = 1
    RANDOM = 2


@dataclass
class CrystalConfig:
    """Unit cell, orientation, size, spot shape, mosaicity and spindle."""

    has_cell: bool = False
    #: a, b, c (m) and alpha, beta, gamma (rad)
    cell: tuple[float, float, float, float, float, float] = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
    has_matrix: bool = False
    #: reciprocal axes (1/m), e.g. a MOSFLM matrix divided by the wavelength
    a_star: Vec3 = (0.0, 0.0, 0.0)
    b_star: Vec3 = (0.0, 0.0, 0.0)
    c_star: Vec3 = (0.0, 0.0, 0.0)
    misset_mode: Misset = Misset.NONE
    #: rotations about lab x, y, z applied to the reciprocal axes (rad)
    misset: Vec3 = (0.0, 0.0, 0.0)
    #: seed of ``-misset random`` (the reference negates it internally)
    misset_seed: int = 1
    #: unit cells along a, b, c
    N: Vec3 = (1.0, 1.0, 1.0)
    #: crystal size along a, b, c (m); a positive entry overrides N
    sample_size: Vec3 = (0.0, 0.0, 0.0)
    shape: Shape = Shape.SQUARE
    fudge: float = 1.0
    #: structure factor of reflections missing from the table
    default_F: float = 0.0
    #: None: tricubic interpolation when any N <= 2
    interpolate: bool | None = None
    #: isotropic mosaic spread (rad)
    mosaic_spread: float | None = None
    mosaic_domains: int | None = None
    mosaic_seed: int = 12345678
    #: spindle start (rad)
    phi0: float = 0.0
    #: oscillation range (rad)
    osc: float | None = None
    phistep: float | None = None
    phisteps: int | None = None
    #: spindle axis (CUSTOM convention only)
    spindle_axis: Vec3 = (0.0, 0.0, 1.0)


@dataclass
class BeamConfig:
    """Wavelength, spectrum, divergence, polarization and dose."""

    #: central wavelength (m)
    lambda0: float = 1.0e-10
    #: full spectral width delta-lambda/lambda (fraction, 0.01 = 1 %)
    dispersion: float = 0.0
    dispsteps: int | None = None
    #: horizontal / vertical divergence ranges and steps (rad)
    hdivrange: float | None = None
    hdivstep: float | None = None
    hdivsteps: int | None = None
    vdivrange: float | None = None
    vdivstep: float | None = None
    vdivsteps: int | None = None
    #: cut the divergence raster to an ellipse
    round_div: bool = True
    #: direction of travel (CUSTOM convention only)
    beam_vector: Vec3 = (1.0, 0.0, 0.0)
    #: E-vector direction (CUSTOM convention only)
    polar_vector: Vec3 = (0.0, 0.0, 1.0)
    #: Kahn polarization factor
    polarization: float = 0.0
    nopolar: bool = False
    #: photons/m^2
    fluence: float = 125932015286227086360700780544.0
    #: photons/s; with exposure and beamsize it sets the fluence
    flux: float = 0.0
    exposure: float = 1.0
    #: beam size (m)
    beamsize: float = 1.0e-4
    #: path through water for the background (m)
    water_size: float = 0.0


@dataclass
class PanelConfig:
    """One flat panel placed explicitly in pybragg's lab frame (SI).

    Placed like a CUSTOM-convention detector with ``pix0_vector = origin``: the normal is
    fdet x sdet, the detector rotations (rotx, roty, rotz, twotheta) rotate the origin and
    the axes about the sample, and its pixels land in the detector's data array from
    (``data_slow``, ``data_fast``) on.
    """

    #: for messages (at most 31 bytes reach the engine)
    name: str = "p0"
    fpixels: int = 0
    spixels: int = 0
    #: m
    pixel_size: float = 0.1e-3
    #: corner of the panel's first pixel (pix0) before the detector rotations (m)
    origin: Vec3 = (0.0, 0.0, 0.0)
    #: fast axis (normalised by the plan)
    fdet: Vec3 = (0.0, 0.0, 1.0)
    #: slow axis
    sdet: Vec3 = (0.0, -1.0, 0.0)
    #: where the panel's first pixel sits in the detector's data array
    data_fast: int = 0
    data_slow: int = 0


@dataclass
class DetectorConfig:
    """Pixel array, placement, axes, sensor and sampling."""

    convention: Convention = Convention.MOSFLM
    #: only the CUSTOM convention honours this; the others impose their own
    pivot: Pivot = Pivot.BEAM
    fpixels: int = 0
    spixels: int = 0
    detsize_f: float = 102.4e-3
    detsize_s: float = 102.4e-3
    pixel_size: float = 0.1e-3
    distance: float = 100.0e-3
    close_distance: float | None = None
    Xbeam: float | None = None
    Ybeam: float | None = None
    Xclose: float | None = None
    Yclose: float | None = None
    #: XDS origin (pixels)
    ORGX: float | None = None
    ORGY: float | None = None
    fdet_vector: Vec3 = (0.0, 0.0, 1.0)
    sdet_vector: Vec3 = (0.0, -1.0, 0.0)
    odet_vector: Vec3 = (1.0, 0.0, 0.0)
    twotheta_axis: Vec3 = (0.0, 1.0, 0.0)
    has_pix0: bool = False
    #: detector origin (corner of the first pixel) before rotations (m)
    pix0_vector: Vec3 = (0.0, 0.0, 0.0)
    rotx: float = 0.0
    roty: float = 0.0
    rotz: float = 0.0
    twotheta: float = 0.0
    #: sensor thickness (m)
    thick: float = 0.0
    #: attenuation coefficient (1/m)
    mu: float | None = None
    thicksteps: int | None = None
    curved: bool = False
    point_pixel: bool = False
    oversample: int | None = None
    oversample_thick: bool = False
    oversample_polar: bool = False
    oversample_omega: bool = False
    #: resolution cut-off (m); 0 = none
    dmin: float = 0.0
    #: xmin, xmax, ymin, ymax in pixels (inclusive) of the data array
    roi: tuple[int, int, int, int] | None = None
    #: explicit panels; empty: one panel from the fields above (conventions, pivots, beam
    #: centre, pix0 exactly as the reference places its detector)
    panels: tuple[PanelConfig, ...] = ()


@dataclass
class Config:
    """A whole simulation setup, consumed by every engine."""

    crystal: CrystalConfig = field(default_factory=CrystalConfig)
    beam: BeamConfig = field(default_factory=BeamConfig)
    detector: DetectorConfig = field(default_factory=DetectorConfig)

    def copy(self) -> Config:
        """A deep copy that can be changed without touching this one."""
        return copy.deepcopy(self)

    def replace(self, **changes: object) -> Config:
        """A copy with dotted fields changed: ``cfg.replace(**{"detector.distance": 0.2})``."""
        new = self.copy()
        for key, value in changes.items():
            obj: object = new
            *path, last = key.split(".")
            for part in path:
                obj = getattr(obj, part)
            if not hasattr(obj, last):
                raise AttributeError(f"no configuration field {key!r}")
            setattr(obj, last, value)
        return new


def iter_fields(cfg: object, prefix: str = ""):
    """Yield ``(dotted_name, value)`` for every leaf field of a config dataclass."""
    for f in dataclasses.fields(cfg):  # type: ignore[arg-type]
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            yield from iter_fields(value, prefix + f.name + ".")
        else:
            yield prefix + f.name, value


def is_finite_number(x: object) -> bool:
    """True for a real, finite number (bools excluded)."""
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


@dataclass
class SampleConfig:
    """The amorphous sample of the background stage (nonBragg's sample), in SI units.

    ``thickness`` runs along the beam; ``width`` and ``height`` across it are clipped to the
    beam size.  ``molecules`` > 0 fixes the number of molecules (the density then follows);
    otherwise it is volume x density x Avogadro / molecular weight.  Defaults are nonBragg's:
    a 0.1 mm cube of water.
    """

    #: m, along the beam
    thickness: float = 1.0e-4
    #: m, across the beam (clipped to the beam size)
    width: float = 1.0e-4
    height: float = 1.0e-4
    #: g/m^3 (1 g/cm^3 = 1e6)
    density: float = 1.0e6
    #: g/mol
    molecular_weight: float = 18.0
    #: number of molecules; None or 0: from the density
    molecules: float | None = None


#: range of the engine's ``int`` fields and of its seeds (``long``, negated by the engine)
_C_INT = (-(2**31), 2**31 - 1)
_C_SEED = (-(2**63 - 1), 2**63 - 1)


def _check_number(name: str, value: object) -> None:
    from pybragg.errors import UsageError

    if isinstance(value, (bool, enum.Enum)) or value is None:
        return
    if isinstance(value, int) or (hasattr(value, "dtype") and value.dtype.kind in "iu"):
        lo, hi = _C_SEED if name.endswith("seed") else _C_INT
        if not lo <= int(value) <= hi:  # type: ignore[call-overload]
            raise UsageError(f"config.{name}: {int(value)} is out of the engine's range ({lo} to {hi})")  # type: ignore[call-overload]
        return
    if isinstance(value, float) or (hasattr(value, "dtype") and value.dtype.kind == "f"):
        if not math.isfinite(float(value)):  # type: ignore[arg-type]
            raise UsageError(f"config.{name}: {float(value)!r} is not a finite number")  # type: ignore[arg-type]
        return
    if isinstance(value, (tuple, list)):
        for k, item in enumerate(value):
            _check_number(f"{name}[{k}]", item)
        return
    raise UsageError(f"config.{name}: expected a number, got {type(value).__name__} {value!r:.40}")


def check_config(config: Config) -> None:
    """Refuse a configuration the engines cannot take (:class:`~pybragg.errors.UsageError` naming the
    field): a value that is not a number where one is expected, a non-finite float, an integer out
    of the range of the engine's field.  The command line checks its flags already; this guards the
    Python API."""
    from pybragg.errors import UsageError

    if not isinstance(config, Config):
        raise UsageError(f"expected a pybragg.Config, got {type(config).__name__}")
    for name, value in iter_fields(config):
        if name == "detector.panels":
            for i, panel in enumerate(value or ()):
                if not isinstance(panel, PanelConfig):
                    raise UsageError(f"config.detector.panels[{i}]: expected a PanelConfig, got "
                                     f"{type(panel).__name__}")
                for pname, pvalue in iter_fields(panel):
                    if pname != "name":
                        _check_number(f"detector.panels[{i}].{pname}", pvalue)
            continue
        _check_number(name, value)
