"""The command line of ``pybragg noisify``: the reference noisify's flags, with its units, defaults
and aliases, matched by exact name.

The table uses the main table's :class:`~pybragg.flags.table.Flag` and its value checks
(:func:`~pybragg.flags.parse._convert_values`); only the flag lookup differs, so values are read
and checked exactly as the main command's are.  The reference recognised any argument that merely
*contained* a flag's name (``-readnoise`` for ``-readout_noise``, ``-psf_sigma`` for ``-psf_fwhm``);
those spellings are listed here as aliases and nothing else is accepted.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..errors import UsageError
from .parse import _convert_values, _is_number, _missing
from .table import MM, NUMBER, PHOTONS_M2, SEED_RANGE, UM_DIV, Flag, Kind, Unit, nonnegative, positive

ANGSTROM_HEADER = Unit("Å", "Å", lambda v: v)


def _bits(values: Sequence[float]) -> str | None:
    return None if values[0] in (16, 32) else f"expected 16 or 32, got {values[0]:g}"


_O = "outputs."
_R = "response."
_G = "geometry."

NOISIFY_FLAGS: tuple[Flag, ...] = (
    # ------------------------------------------------------------------ input
    Flag("-floatfile", "output", "input: raw float32 image of expected photons per pixel",
         aliases=("-floatimage", "-bin"), kind=Kind.PATH, metavars=("FILE",), targets=("floatfile",),
         default="floatimage.bin"),
    Flag("-header", "output", "take the SMV header (size, pixel, distance, wavelength, beam centre) from this "
         "image and copy it into the outputs; its values win over the flags",
         kind=Kind.PATH, metavars=("FILE",), targets=("headerfile",), default="none"),
    Flag("-scale", "noise", "factor on every input value to put it on the photon scale",
         kind=Kind.FLOAT, metavars=("SCALE",), targets=(_R + "scale",), default="1"),
    Flag("-fluence", "noise", "incident fluence: the input times fluence * r_e^2 (the default makes that 1)",
         kind=Kind.FLOAT, metavars=("PHOTONS",), unit=PHOTONS_M2, targets=(_R + "fluence",),
         default="1.26e29"),
    # ------------------------------------------------------------------ response
    Flag("-gain", "noise", "ADU per photon", kind=Kind.FLOAT, metavars=("ADU",), targets=(_R + "gain",),
         default="1"),
    Flag("-adc", "noise", "offset added to every pixel after the noise (ADU)",
         kind=Kind.FLOAT, metavars=("ADU",), targets=(_R + "adc_offset",), default="40"),
    Flag("-readout_noise", "noise", "Gaussian read-out noise added to every pixel (ADU rms)",
         aliases=("-readout", "-readnoise"), kind=Kind.FLOAT, metavars=("ADU",), check=nonnegative,
         targets=(_R + "readout_noise",), default="0"),
    Flag("-flicker", "noise", "fractional source flicker (1/f noise) per pixel",
         kind=Kind.FLOAT, metavars=("FRACTION",), check=nonnegative, targets=(_R + "flicker",), default="0"),
    Flag("-calibration", "noise", "static fractional calibration error per pixel",
         kind=Kind.FLOAT, metavars=("FRACTION",), check=nonnegative, targets=(_R + "calibration",),
         default="0.03"),
    Flag("-seed", "noise", "seed of every error but the calibration (negated internally, as typed here)",
         limits=SEED_RANGE, kind=Kind.INT, metavars=("SEED",), targets=(_R + "seed",), default="from the clock"),
    Flag("-calib_seed", "noise", "seed of the calibration error (negated internally, as typed here)",
         limits=SEED_RANGE, kind=Kind.INT, metavars=("SEED",), targets=(_R + "calib_seed",),
         default="internal state 123456789 (that is, -calib_seed -123456789)"),
    Flag("-badpix_seed", "noise", "accepted for compatibility (no effect)", limits=SEED_RANGE, kind=Kind.INT, metavars=("SEED",),
         targets=("ignored.badpix_seed",), default="1234", affects_image=False),
    Flag("-hotpix_seed", "noise", "accepted for compatibility (no effect)", limits=SEED_RANGE, kind=Kind.INT, metavars=("SEED",),
         targets=("ignored.hotpix_seed",), default="5678", affects_image=False),
    Flag("-psf", "noise", "point-spread function type", kind=Kind.KEYWORD, metavars=("TYPE",),
         keywords=(("gauss", "gauss"), ("fiber", "fiber")), targets=(_R + "psf",), default="none"),
    Flag("-psf_fwhm", "noise", "full width at half maximum of the point-spread function",
         aliases=("-psf_size", "-psf_sigma", "-psf_width"), kind=Kind.FLOAT, metavars=("FWHM",), unit=UM_DIV,
         check=nonnegative, targets=(_R + "psf_fwhm",), default="46"),
    Flag("-psf_radius", "noise", "radius to render the point-spread function (pixels, truncated; 0: automatic)",
         aliases=("-psf_rad",), kind=Kind.COUNT, metavars=("PIXELS",), check=nonnegative,
         targets=(_R + "psf_radius",), default="0: automatic"),
    Flag("-bits", "output", "bits per pixel of -intfile and -noisefile", kind=Kind.INT, metavars=("BITS",),
         check=_bits, targets=(_R + "bits",), default="16"),
    Flag("-nonoise", "noise", "no noise: the PSF (if any) blurs the noiseless image; no -noisefile",
         sets=(("write_noise", False),), deferred=True, default="off"),
    # ------------------------------------------------------------------ geometry (header only)
    Flag("-distance", "detector", "detector distance (header)", kind=Kind.FLOAT, metavars=("MM",), unit=MM,
         check=positive, targets=(_G + "distance",), default="100"),
    Flag("-pixel", "detector", "pixel size", kind=Kind.FLOAT, metavars=("MM",), unit=MM, check=positive,
         targets=(_G + "pixel",), default="0.1"),
    Flag("-detsize", "detector", "detector size (used only when the pixel counts are not known)",
         kind=Kind.FLOAT, metavars=("MM",), unit=MM, check=positive,
         targets=(_G + "detsize_x", _G + "detsize_y"), default="102.4"),
    Flag("-detsize_x", "detector", "detector size along x", kind=Kind.FLOAT, metavars=("MM",), unit=MM,
         check=positive, targets=(_G + "detsize_x",), default="102.4"),
    Flag("-detsize_y", "detector", "detector size along y", kind=Kind.FLOAT, metavars=("MM",), unit=MM,
         check=positive, targets=(_G + "detsize_y",), default="102.4"),
    Flag("-detpixels", "detector", "pixels along x and y", kind=Kind.COUNT, metavars=("N",), check=positive,
         targets=(_G + "xpixels", _G + "ypixels"), default="from the file's size"),
    Flag("-detpixels_x", "detector", "pixels along x (fast)", kind=Kind.COUNT, metavars=("N",), check=positive,
         targets=(_G + "xpixels",), default="from the file's size"),
    Flag("-detpixels_y", "detector", "pixels along y (slow)", kind=Kind.COUNT, metavars=("N",), check=positive,
         targets=(_G + "ypixels",), default="from the file's size"),
    Flag("-Xbeam", "detector", "beam centre x (header)", kind=Kind.FLOAT, metavars=("MM",), unit=MM,
         targets=(_G + "xbeam",), default="detector centre"),
    Flag("-Ybeam", "detector", "beam centre y (header)", kind=Kind.FLOAT, metavars=("MM",), unit=MM,
         targets=(_G + "ybeam",), default="detector centre"),
    Flag("-lambda", "beam", "wavelength (header)", kind=Kind.FLOAT, metavars=("Å",), unit=ANGSTROM_HEADER,
         check=positive, targets=(_G + "wavelength",), default="1"),
    Flag("-phi", "crystal", "spindle angle (header)", kind=Kind.FLOAT, metavars=("DEG",), unit=NUMBER,
         targets=(_G + "phi",), default="0"),
    Flag("-osc", "crystal", "oscillation range (header)", kind=Kind.FLOAT, metavars=("DEG",), unit=NUMBER,
         targets=(_G + "osc",), default="1"),
    # ------------------------------------------------------------------ outputs
    Flag("-intfile", "output", "noiseless SMV image", aliases=("-intimage",), kind=Kind.OUTPATH,
         metavars=("FILE",), targets=(_O + "intfile",), default="intimage.img"),
    Flag("-noisefile", "output", "SMV image with the detector's response", aliases=("-noiseimage",),
         kind=Kind.OUTPATH, metavars=("FILE",), targets=(_O + "noisefile",), default="noiseimage.img"),
    Flag("-pgmfile", "output", "8-bit PGM of the noiseless image", aliases=("-pgmimage",), kind=Kind.OUTPATH,
         metavars=("FILE",), targets=(_O + "pgmfile",), default="image.pgm"),
    Flag("-nopgm", "output", "write no PGM", sets=(("write_pgm", False),), deferred=True, default="off"),
    Flag("-h", "engine", "show this help and exit", aliases=("-help", "--help"), action="help", default="",
         affects_image=False),
)

NOISIFY_BY_NAME: dict[str, Flag] = {name: flag for flag in NOISIFY_FLAGS for name in flag.names}


@dataclass
class NoisifyInvocation:
    """Everything one ``pybragg noisify`` command line asks for (SI units where the table says)."""

    floatfile: str | None = None
    headerfile: str | None = None
    write_noise: bool = True
    write_pgm: bool = True
    show_help: bool = False
    response: dict[str, object] = field(default_factory=lambda: {
        "scale": 1.0, "fluence": 125932015286227086360700780544.0, "gain": 1.0, "adc_offset": 40.0,
        "readout_noise": 0.0, "flicker": 0.0, "calibration": 0.03, "seed": int(time.time()),
        "calib_seed": -123456789, "psf": None, "psf_fwhm": 46e-6, "psf_radius": 0, "bits": 16})
    geometry: dict[str, object] = field(default_factory=lambda: {
        "distance": 0.1, "pixel": 1e-4, "detsize_x": 0.1024, "detsize_y": 0.1024, "xpixels": 0, "ypixels": 0,
        "xbeam": None, "ybeam": None, "wavelength": 1.0, "phi": 0.0, "osc": 1.0})
    outputs: dict[str, object] = field(default_factory=lambda: {
        "intfile": "intimage.img", "noisefile": "noiseimage.img", "pgmfile": "image.pgm"})
    ignored: dict[str, object] = field(default_factory=dict)


def _take(flag: Flag, spelled: str, argv: Sequence[str], i: int) -> tuple[list[str], int]:
    taken: list[str] = []
    while len(taken) < flag.nargs:
        if i >= len(argv) or argv[i] in NOISIFY_BY_NAME:
            raise _missing(flag, spelled)
        taken.append(argv[i])
        i += 1
    return taken, i


def _store(inv: NoisifyInvocation, target: str, value: object) -> None:
    if "." in target:
        section, key = target.split(".", 1)
        getattr(inv, section)[key] = value
    else:
        setattr(inv, target, value)


def parse_noisify(argv: Sequence[str]) -> NoisifyInvocation:
    """Parse noisify's arguments (without the program name); UsageError for anything wrong."""
    argv = [str(a) for a in argv]
    inv = NoisifyInvocation()
    if any(a in ("-h", "-help", "--help") for a in argv):
        inv.show_help = True
        return inv
    given = []
    i = 0
    while i < len(argv):
        token = argv[i]
        flag = NOISIFY_BY_NAME.get(token)
        if flag is None:
            if token.startswith("-") and len(token) > 1 and not _is_number(token):
                raise UsageError(f"unknown flag {token}")
            raise UsageError(f"unexpected argument {token!r}: not a flag, and no flag before it takes a value")
        raw, i = _take(flag, token, argv, i + 1)
        given.append(_convert_values(flag, token, raw))
    for item in sorted(given, key=lambda g: g.flag.deferred):
        flag = item.flag
        if flag.targets:
            if flag.kind is Kind.KEYWORD:
                values: tuple = (item.keyword,)
            elif flag.kind is Kind.FLOAT:
                values = tuple(float(flag.unit.convert(v)) for v in item.values)
            else:
                values = item.values
            for target in flag.targets:
                _store(inv, target, values[0])
        for target, value in flag.sets:
            _store(inv, target, value)
    if inv.floatfile is None:
        raise UsageError("-floatfile: no input image given (noisify -floatfile FILE ...)")
    return inv
