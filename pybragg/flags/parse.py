"""Turn a nanoBragg-style argument list into an :class:`Invocation`.

The work happens in five passes:

1. **Split** the arguments into flags and their values, checking every value
   (number syntax, finiteness, ranges, input files readable).  Nothing is
   applied yet, so a bad argument anywhere stops the run before any file is
   read or written.
2. **Headers**: ``-mask FILE`` and then ``-img FILE`` (the last of each) are
   read and their SMV headers seed the detector geometry, wavelength and
   spindle.  The image header wins where both give a value.  These reads never
   change the pivot.
3. **Flags**, in command-line order, so that order-dependent side effects
   (pivot, convention, ``-detector_absorb inf`` zeroing the thickness) come out
   as they do in the reference.  ``-nonoise`` and ``-nopgm`` are held back and
   applied last: they win wherever they stand.
4. **Detector files**: ``-geom`` or ``-expt`` fill the detector's panels (and, flags winning,
   wavelength, camera length, beam, goniometer and crystal; :mod:`pybragg.flags.panels`).
5. **Matrix**: ``-mat FILE`` is converted with the final wavelength.

Differences from the reference program: flags match by exact spelling; any
unknown flag, stray argument, missing, non-numeric, non-finite or impossible
value is a :class:`~pybragg.errors.UsageError`; ``-pix0_vector_mm`` is read in
millimetres; unit-cell counts (``-N``, ``-Na``, ...) accept a decimal fraction
and truncate it toward zero as C's ``atoi`` does (``-N 5.7`` means 5), but an
exponent (``-N 1e1``) is refused rather than silently read as 1.
"""

from __future__ import annotations

import math
import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..config import Config, Misset
from ..errors import UsageError
from ..io.errors import FormatError
from ..io.stol import resolve_path as resolve_stol_path
from .table import ABSORB, INT_RANGE, RTD, Flag, Kind, lookup

_FLOAT_RE = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?\Z")
_INT_RE = re.compile(r"[+-]?\d+\Z")
_COUNT_RE = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)\Z")
_NONFINITE = {"nan", "+nan", "-nan", "inf", "+inf", "-inf", "infinity", "+infinity", "-infinity"}
_HELP = ("-h", "-help", "--help")


@dataclass
class OutputOptions:
    """Which files to write and how to scale them."""

    floatfile: str | None = "floatimage.bin"
    intfile: str | None = "intimage.img"
    pgmfile: str | None = "image.pgm"
    noisefile: str | None = "noiseimage.img"
    #: structure-factor dump: written after reading -hkl, read back without it
    dumpfile: str = "Fdump.bin"
    write_pgm: bool = True
    write_noise: bool = True
    #: None: scale the brightest pixel to about 55000 counts
    intfile_scale: float | None = None
    #: None: automatic
    pgm_scale: float | None = None
    adc_offset: float = 40.0
    #: noise seed as the user types it (the engine negates it, as the reference does)
    noise_seed: int = field(default_factory=lambda: int(time.time()))
    #: CBF of counts (None: not written)
    cbffile: str | None = None
    #: NeXus/NXmx file and its data compression (deflate, bslz4, none)
    nexusfile: str | None = None
    nexus_compression: str = "deflate"
    #: DIALS experiment list
    exptfile: str | None = None
    #: CrystFEL geometry file of the detector in use
    geomfile: str | None = None
    #: with -geom: the file read (its bad regions, groups, panel extras and camera length), which
    #: -geomfile carries over (a :class:`~pybragg.flags.panels.GeometryTemplate`)
    geom_template: object | None = None
    #: PNG preview, its scale (linear, sqrt, log), colour map and full-brightness value (None: the maximum)
    pngfile: str | None = None
    png_scale: str = "log"
    png_cmap: str = "inverse"
    png_max: float | None = None
    #: detector response of the noise image (-readout_noise, -flicker, -calibration, -calib_seed, -gain,
    #: -psf, -psf_fwhm, -psf_radius, -bits): ResponseConfig fields, unset ones at their defaults
    response: dict[str, object] = field(default_factory=dict)


@dataclass
class Invocation:
    """Everything one command line asks for.

    ``config`` is the simulation in SI units; the ``*_path`` fields name input
    files that the caller loads (the mask's pixels, the structure factors, the
    sources); ``extras`` records flags the reference accepts without any effect
    on the image (``coherent``, ``stolout``) and the amorphous background's sample
    (``density`` in g/m³, ``molecular_weight``, ``stol_scale``, ``bg_thickness``, ``bg_width``,
    ``bg_height`` in m, ``bg_molecules``: used when ``stol_path`` is set).  ``show_help`` is True when ``-h`` or
    ``--help`` was given; nothing else is parsed then.
    """

    config: Config = field(default_factory=Config)
    hkl_path: str | None = None
    #: amplitude column of an MTZ or mmCIF -hkl (None: the first amplitude column)
    hkl_column: str | None = None
    #: atomic model whose structure factors are computed (-pdb) and whether they get anomalous terms
    pdb_path: str | None = None
    pdb_anomalous: bool = False
    matrix_path: str | None = None
    mask_path: str | None = None
    #: detector files: a CrystFEL geometry (-geom) or a DIALS experiment list (-expt)
    geom_path: str | None = None
    expt_path: str | None = None
    #: what they held: the geometry file's model, the experiment, their panels (pybragg's frame)
    geometry: object | None = None
    expt: object | None = None
    geometry_panels: list | None = None
    img_path: str | None = None
    source_path: str | None = None
    stol_path: str | None = None
    outputs: OutputOptions = field(default_factory=OutputOptions)
    backend: str = "auto"
    dtype: str = "float64"
    device: str | None = None
    memory_budget_gib: float = 2.0
    threads: int = 0
    printout_pixel: tuple[int, int] | None = None
    printout: bool = False
    #: None: the default meter; True/False from -progress/-noprogress
    progress: bool | None = None
    extras: dict[str, object] = field(default_factory=dict)
    show_help: bool = False
    #: --version was given: nothing else is parsed then
    show_version: bool = False
    #: -q/--quiet: no summary on stdout
    quiet: bool = False
    #: one-line notices for the user (e.g. which experiment of a list was used)
    notices: list[str] = field(default_factory=list)


_NO_KEYWORD = object()
#: flags whose file may be a shipped stol table's name
_STOL_FLAGS = ("-stol", "-4stol", "-Q")


@dataclass
class _Given:
    """One flag as it appears on the command line, with its checked values."""

    flag: Flag
    spelled: str
    values: tuple = ()
    keyword: object = _NO_KEYWORD


# ---------------------------------------------------------------------------
# pass 1: split and check


def _is_number(token: str) -> bool:
    return bool(_FLOAT_RE.match(token))


def _parse_float(spelled: str, token: str) -> float:
    if token.strip().lower() in _NONFINITE:
        raise UsageError(f"{spelled}: expected a finite number, got {token!r}")
    if not _FLOAT_RE.match(token):
        raise UsageError(f"{spelled}: expected a number, got {token!r}")
    value = float(token)
    if not math.isfinite(value):
        raise UsageError(f"{spelled}: expected a finite number, got {token!r}")
    return value


def _parse_int(spelled: str, token: str) -> int:
    if not _INT_RE.match(token):
        raise UsageError(f"{spelled}: expected an integer, got {token!r}")
    if len(token) > 40:  # int() of a huge string is slow; far outside every range anyway
        raise UsageError(f"{spelled}: {token[:20]}...: the integer is out of range")
    return int(token)


def _parse_count(spelled: str, token: str) -> int:
    # like C's atoi on a plain decimal: the fraction is dropped
    if not _COUNT_RE.match(token):
        raise UsageError(f"{spelled}: expected a number of unit cells, got {token!r}")
    if len(token.split(".")[0]) > 40:
        raise UsageError(f"{spelled}: {token[:20]}...: the number is out of range")
    return int(float(token))


def value_range(flag: Flag) -> tuple[float, float] | None:
    """The inclusive range of ``flag``'s values as typed: its ``limits``, else a C ``int``'s for
    integers and unit-cell counts (the field the value ends in), else None (floats: finite only)."""
    if flag.limits is not None:
        return flag.limits
    if flag.kind in (Kind.INT, Kind.COUNT):
        return INT_RANGE
    return None


def _check_range(flag: Flag, spelled: str, values: tuple) -> None:
    bounds = value_range(flag)
    if bounds is None:
        return
    lo, hi = bounds
    for value in values:
        if value > hi:
            raise UsageError(f"{spelled}: {value} is too large (at most {hi})")
        if value < lo:
            raise UsageError(f"{spelled}: {value} is too small (at least {lo})")


def _check_readable(spelled: str, path: str) -> None:
    if not path:
        raise UsageError(f"{spelled}: empty file name")
    if not os.path.exists(path):
        raise FormatError(f"{spelled}: cannot read {path!r}: no such file")
    if os.path.isdir(path):
        raise FormatError(f"{spelled}: cannot read {path!r}: it is a directory")
    if not os.access(path, os.R_OK):
        raise FormatError(f"{spelled}: cannot read {path!r}: permission denied")


def _missing(flag: Flag, spelled: str) -> UsageError:
    if flag.kind is Kind.KEYWORD:
        words = ", ".join(flag.keyword_names)
        return UsageError(f"{spelled} needs a value ({words})")
    if flag.min_values is not None and flag.min_values < flag.nargs:
        return UsageError(f"{spelled} needs at least {flag.min_values} value(s)")
    if flag.nargs == 1:
        return UsageError(f"{spelled} needs a value")
    return UsageError(f"{spelled} needs {flag.nargs} values")


def _take_values(flag: Flag, spelled: str, argv: Sequence[str], i: int) -> tuple[list[str], int]:
    """The raw value tokens of ``flag`` starting at ``argv[i]``, and the next index."""
    n = len(argv)
    if flag.nargs == 0:
        return [], i
    if i >= n or lookup(argv[i]) is not None:
        raise _missing(flag, spelled)
    first = argv[i]
    if flag.keywords:
        if first.lower() in flag.keyword_names:
            return [first], i + 1
        if flag.kind is Kind.KEYWORD:
            words = ", ".join(flag.keyword_names)
            raise UsageError(f"{spelled}: expected one of {words}, got {first!r}")
        if not _is_number(first):
            words = " or ".join(repr(w) for w in flag.keyword_names)
            what = "a number" if flag.nargs == 1 else f"{flag.nargs} numbers"
            raise UsageError(f"{spelled}: expected {what} or {words}, got {first!r}")
    taken: list[str] = []
    if flag.min_values is not None:
        # a variable number of values: stop at anything that looks like a flag
        while len(taken) < flag.nargs and i < n:
            token = argv[i]
            if lookup(token) is not None or (token.startswith("-") and not _is_number(token)):
                break
            taken.append(token)
            i += 1
        if len(taken) < flag.min_values:
            raise _missing(flag, spelled)
        return taken, i
    while len(taken) < flag.nargs:
        if i >= n or lookup(argv[i]) is not None:
            raise _missing(flag, spelled)
        taken.append(argv[i])
        i += 1
    return taken, i


def _convert_values(flag: Flag, spelled: str, raw: list[str]) -> _Given:
    """Check the raw tokens of one flag and turn them into typed values."""
    if flag.keywords and len(raw) == 1 and raw[0].lower() in flag.keyword_names:
        value = dict(flag.keywords)[raw[0].lower()]
        return _Given(flag, spelled, (), value)
    if flag.kind is Kind.KEYWORD:
        words = ", ".join(flag.keyword_names)
        raise UsageError(f"{spelled}: expected one of {words}, got {raw[0]!r}")
    values: tuple
    if flag.kind is Kind.FLOAT:
        values = tuple(_parse_float(spelled, t) for t in raw)
    elif flag.kind is Kind.INT:
        values = tuple(_parse_int(spelled, t) for t in raw)
    elif flag.kind is Kind.COUNT:
        values = tuple(_parse_count(spelled, t) for t in raw)
    elif flag.kind is Kind.PATH:
        for token in raw:
            # a stol table may also be a shipped table's name (water, air)
            _check_readable(spelled, resolve_stol_path(token) if flag.name in _STOL_FLAGS else token)
        values = tuple(raw)
    else:
        for token in raw:
            if not token:
                raise UsageError(f"{spelled}: empty value")
        values = tuple(raw)
    if flag.kind in (Kind.INT, Kind.COUNT, Kind.FLOAT):
        _check_range(flag, spelled, values)
    if flag.check is not None and values:
        complaint = flag.check(values)
        if complaint:
            raise UsageError(f"{spelled}: {complaint}")
    return _Given(flag, spelled, values)


def _split(argv: Sequence[str]) -> list[_Given]:
    """Pass 1: every flag with its checked values, in command-line order."""
    given: list[_Given] = []
    i = 0
    n = len(argv)
    while i < n:
        token = argv[i]
        spelled, inline = token, None
        if token.startswith("--") and "=" in token:
            spelled, inline = token.split("=", 1)
        flag = lookup(spelled)
        if flag is None:
            if token.startswith("-") and len(token) > 1 and not _is_number(token):
                raise UsageError(f"unknown flag {spelled}")
            raise UsageError(
                f"unexpected argument {token!r}: not a flag, and no flag before it takes a value"
            )
        i += 1
        if inline is not None:
            if flag.nargs != 1:
                raise UsageError(f"{spelled}: '=' form needs a flag that takes one value")
            raw = [inline]
        else:
            raw, i = _take_values(flag, spelled, argv, i)
        given.append(_convert_values(flag, spelled, raw))
    return given


# ---------------------------------------------------------------------------
# assignment into the Invocation

_INDEXED = re.compile(r"(\w+)\[(\d+)\]\Z")


def _assign(inv: Invocation, path: str, value: object) -> None:
    """Set a dotted target such as ``config.detector.distance`` or ``config.crystal.N[1]``."""
    *parents, last = path.split(".")
    obj: object = inv
    for part in parents:
        obj = getattr(obj, part)
    if isinstance(obj, dict):
        obj[last] = value
        return
    match = _INDEXED.match(last)
    if match:
        name, index = match.group(1), int(match.group(2))
        items = list(getattr(obj, name))
        items[index] = value
        setattr(obj, name, tuple(items))
        return
    if not hasattr(obj, last):
        raise AttributeError(f"flag target {path!r} does not exist")
    setattr(obj, last, value)


def _stored_values(given: _Given) -> tuple:
    """The values of one flag as they are stored: SI floats, ints, counts, strings."""
    flag = given.flag
    if flag.kind is Kind.FLOAT:
        return tuple(float(flag.unit.convert(v)) for v in given.values)
    if flag.kind is Kind.COUNT:
        return tuple(float(v) for v in given.values)
    return given.values


def _apply(inv: Invocation, given: _Given) -> None:
    """Pass 3: apply one flag: its values, its special action, then its side effects."""
    flag = given.flag
    if flag.action is not None:
        _ACTIONS[flag.action](inv, given)
    elif flag.targets:
        if given.keyword is not _NO_KEYWORD:
            stored: tuple = (given.keyword,)
        else:
            stored = _stored_values(given)
        if len(flag.targets) == 1 and len(stored) > 1:
            _assign(inv, flag.targets[0], stored)
        else:
            for target in flag.targets:
                _assign(inv, target, stored[0])
    for target, value in flag.sets:
        _assign(inv, target, value)


def _action_cell(inv: Invocation, given: _Given) -> None:
    """``-cell a [b c alpha beta gamma]``: Å and degrees; missing entries stay 0."""
    values = given.values
    lengths, angles = values[:3], values[3:]
    for length in lengths:
        if not length > 0:
            raise UsageError(f"{given.spelled}: cell lengths must be greater than 0, got {length:g}")
    for angle in angles:
        if not 0 < angle < 180:
            raise UsageError(
                f"{given.spelled}: cell angles must be between 0 and 180 degrees, got {angle:g}"
            )
    full_angles = list(angles) + [90.0] * (3 - len(angles))
    ca, cb, cg = (math.cos(a / RTD) for a in full_angles)
    volume_term = 1.0 - ca * ca - cb * cb - cg * cg + 2.0 * ca * cb * cg
    if not volume_term > 1e-12:
        shown = " ".join(f"{a:g}" for a in full_angles)
        raise UsageError(f"{given.spelled}: the angles {shown} cannot form a unit cell")
    cell = [0.0] * 6
    for k, length in enumerate(lengths):
        cell[k] = length / 1.0e10
    for k, angle in enumerate(angles):
        cell[3 + k] = angle / RTD
    crystal = inv.config.crystal
    crystal.has_cell = True
    crystal.cell = (cell[0], cell[1], cell[2], cell[3], cell[4], cell[5])


def _action_misset(inv: Invocation, given: _Given) -> None:
    """``-misset rx ry rz`` (degrees) or ``-misset random``."""
    crystal = inv.config.crystal
    if given.keyword is not _NO_KEYWORD:
        crystal.misset_mode = Misset.RANDOM
        return
    rx, ry, rz = (float(given.flag.unit.convert(v)) for v in given.values)
    crystal.misset_mode = Misset.ANGLES
    crystal.misset = (rx, ry, rz)


def _action_absorb(inv: Invocation, given: _Given) -> None:
    """``-detector_absorb DEPTH|inf``: inf or 0 turns absorption off and zeroes the thickness."""
    detector = inv.config.detector
    if given.keyword is not _NO_KEYWORD or given.values[0] == 0.0:
        detector.thick = 0.0
        detector.mu = 0.0
    else:
        detector.mu = ABSORB.convert(given.values[0])


def _action_help(inv: Invocation, given: _Given) -> None:
    inv.show_help = True


def _action_version(inv: Invocation, given: _Given) -> None:
    inv.show_version = True


_ACTIONS = {
    "cell": _action_cell,
    "misset": _action_misset,
    "absorb": _action_absorb,
    "help": _action_help,
    "version": _action_version,
}


# ---------------------------------------------------------------------------
# pass 2: SMV headers of -mask and -img


def _read_header(inv: Invocation, spelled: str, path: str, is_mask: bool) -> None:
    """Seed the geometry from one SMV header, the way the reference's pre-pass does."""
    from ..io.smv import read_smv

    try:
        image = read_smv(path)
    except FormatError as exc:
        raise FormatError(f"{spelled}: {exc}") from None
    except OSError as exc:
        raise FormatError(f"{spelled}: cannot read {path!r}: {exc.strerror or exc}") from None

    def number(key: str, positive: bool = False) -> float | None:
        value = image.value(key)
        if value is None:
            return None
        if not math.isfinite(value) or (positive and not value > 0):
            raise FormatError(f"{spelled}: {path}: impossible header value {key}={value:g}")
        return value

    det = inv.config.detector
    crystal = inv.config.crystal
    slow, fast = image.data.shape
    det.fpixels = int(fast)
    det.spixels = int(slow)
    value = number("PIXEL_SIZE", positive=True)
    if value is not None:
        det.pixel_size = value / 1000.0
    det.detsize_f = det.pixel_size * det.fpixels
    det.detsize_s = det.pixel_size * det.spixels
    value = number("DISTANCE", positive=True)
    if value is not None:
        det.distance = value / 1000.0
    value = number("CLOSE_DISTANCE", positive=True)
    if value is not None:
        det.close_distance = value / 1000.0
    value = number("WAVELENGTH", positive=True)
    if value is not None:
        inv.config.beam.lambda0 = value / 1e10
    value = number("BEAM_CENTER_X")
    if value is not None:
        det.Xbeam = value / 1000.0
    value = number("BEAM_CENTER_Y")
    if value is not None:
        # a mask header counts Y from the other edge; an -img header does not
        det.Ybeam = det.detsize_s - value / 1000.0 if is_mask else value / 1000.0
    value = number("ORGX")
    if value is not None:
        det.ORGX = value
    value = number("ORGY")
    if value is not None:
        det.ORGY = value
    value = number("PHI")
    if value is not None:
        crystal.phi0 = value / RTD
    value = number("OSC_RANGE")
    if value is not None:
        crystal.osc = value / RTD
    # TWOTHETA is deliberately not read: the reference stores it in a variable
    # that never reaches the detector, so a header cannot rotate the detector.


def _apply_headers(inv: Invocation, given: list[_Given]) -> None:
    """Pass 2: the last -mask, then the last -img, seed the geometry."""
    last: dict[str, _Given] = {}
    for item in given:
        if item.flag.name in ("-mask", "-img"):
            last[item.flag.name] = item
    for name in ("-mask", "-img"):
        item = last.get(name)
        if item is not None:
            _read_header(inv, item.spelled, item.values[0], is_mask=(name == "-mask"))


# ---------------------------------------------------------------------------
# pass 5: orientation matrix


def _apply_matrix(inv: Invocation) -> None:
    from ..io.matrix import read_mosflm_matrix, reciprocal_vectors_from_mosflm

    path = inv.matrix_path
    if path is None:
        return
    try:
        matrix = read_mosflm_matrix(path)
        a_star, b_star, c_star = reciprocal_vectors_from_mosflm(matrix, inv.config.beam.lambda0)
    except (FormatError, ValueError) as exc:
        raise FormatError(f"-mat: {exc}") from None
    except OSError as exc:
        raise FormatError(f"-mat: cannot read {path!r}: {exc.strerror or exc}") from None
    crystal = inv.config.crystal
    crystal.has_matrix = True
    crystal.a_star = tuple(float(x) for x in a_star)  # type: ignore[assignment]
    crystal.b_star = tuple(float(x) for x in b_star)  # type: ignore[assignment]
    crystal.c_star = tuple(float(x) for x in c_star)  # type: ignore[assignment]


# ---------------------------------------------------------------------------


def parse_args(argv: Sequence[str]) -> Invocation:
    """Parse nanoBragg-style arguments (without the program name) into an :class:`Invocation`.

    Raises :class:`~pybragg.errors.UsageError` with a one-line message naming
    the offending flag for any unknown flag, stray argument, missing,
    non-numeric, non-finite or impossible value, and
    :class:`~pybragg.io.errors.FormatError` for a missing, unreadable or garbled
    input file read while parsing (``-mat``, ``-img``, ``-mask`` headers).
    With ``-h``, ``-help`` or ``--help`` anywhere, returns at once with ``show_help`` set.
    """
    argv = [str(a) for a in argv]
    if any(token in _HELP for token in argv):
        return Invocation(show_help=True)
    if "--version" in argv:
        return Invocation(show_version=True)
    now = int(time.time())
    inv = Invocation(outputs=OutputOptions(noise_seed=now))
    # like the reference, -misset random draws from the clock unless -misset_seed is given
    inv.config.crystal.misset_seed = now
    given = _split(argv)
    _apply_headers(inv, given)
    for item in given:
        if not item.flag.deferred:
            _apply(inv, item)
    for item in given:
        if item.flag.deferred:
            _apply(inv, item)
    from .panels import apply_detector_files

    apply_detector_files(inv, {item.flag.name for item in given})
    _apply_matrix(inv)
    return inv


def check_invocation(inv: Invocation) -> None:
    """Raise :class:`~pybragg.errors.UsageError` for flags that cannot go together, a colour map that
    does not exist, or an output or input that needs a package that is not installed (called by
    :func:`~pybragg.flags.load.load_inputs` before any file is read)."""
    if inv.pdb_path is not None and inv.hkl_path is not None:
        raise UsageError("-pdb and -hkl both give structure factors: give one of them")
    if inv.hkl_column is not None and inv.hkl_path is None:
        raise UsageError("-hkl_column needs an MTZ or mmCIF -hkl file")
    if inv.pdb_anomalous and inv.pdb_path is None:
        raise UsageError("-pdb_anomalous needs -pdb")
    o = inv.outputs
    needs = [(o.nexusfile, "-nexusfile", "h5py", "nexus"), (o.pngfile, "-pngfile", "PIL", "png")]
    if inv.pdb_path is not None or (inv.hkl_path is not None and not _is_text_table(inv.hkl_path)):
        flag = "-pdb" if inv.pdb_path is not None else "-hkl"
        needs.append((flag, flag, "gemmi", "gemmi"))
    for wanted, flag, module, extra in needs:
        if wanted and not _importable(module):
            name = "Pillow" if module == "PIL" else module
            raise UsageError(f"{flag} needs the {name} package (pip install \"pybragg[{extra}]\")")
    if o.nexusfile:
        from ..io.nexus import check_compression

        complaint = check_compression(o.nexus_compression)
        if complaint:
            raise UsageError(complaint)
    n_panels = len(getattr(inv.config.detector, "panels", ()) or ())
    if o.cbffile and n_panels > 1:
        raise UsageError(f"-cbffile {o.cbffile}: a CBF holds one panel and this detector has {n_panels} "
                         "(write -nexusfile instead)")
    if o.pngfile:
        from ..io.png import BUILTIN_CMAPS, known_cmap

        if not known_cmap(o.png_cmap):
            raise UsageError(f"-png_cmap: unknown colour map {o.png_cmap!r} "
                             f"(choose from {', '.join(BUILTIN_CMAPS)} or a matplotlib colour map)")


def _is_text_table(path: str) -> bool:
    from ..io.reflections import is_reflection_file

    return not is_reflection_file(path)


def _importable(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None
