"""CrystFEL geometry files (``crystfel_geometry(5)``): read and write.

A geometry file describes a detector as panels, each a rectangle of the data array
(``min_fs..max_fs``, ``min_ss..max_ss``, inclusive) placed in CrystFEL's lab frame by the
position of its first pixel's corner (``corner_x``, ``corner_y`` in pixels of that panel,
``clen + coffset`` in metres along the beam) and the directions of its fast and slow axes
(``fs``, ``ss``: ``+0.5x -1y +0.02z``).  Values given before a panel is first named are that
panel's defaults (global lines); a ``panel/key`` line sets one panel's value.

This module reads and writes the file's own model, :class:`CrystfelGeometry`, in
CrystFEL's units and frame; the conversion to pybragg's lab frame lives in
:func:`crystfel_to_lab` / :func:`lab_to_crystfel` (a CrystFEL vector (x, y, z) is the
pybragg/nanoBragg vector (z, y, -x): +z along the beam is pybragg's +x, the zenith +y).

A key whose value is a location in an HDF5 file (``clen = /LCLS/detector0/position``)
is kept as that text: :meth:`CrystfelPanel.number` raises a :class:`FormatError` naming
the key when such a value is needed, unless the caller supplies it.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from .errors import FormatError, read_text, shorten

Vec3 = tuple[float, float, float]

#: CrystFEL (x, y, z) -> pybragg (X, Y, Z) = (z, y, -x)
def crystfel_to_lab(v: Iterable[float]) -> Vec3:
    """A vector of CrystFEL's lab frame in pybragg's."""
    x, y, z = (float(c) for c in v)
    return (z, y, -x)


def lab_to_crystfel(v: Iterable[float]) -> Vec3:
    """A vector of pybragg's lab frame in CrystFEL's (the inverse of :func:`crystfel_to_lab`)."""
    X, Y, Z = (float(c) for c in v)
    return (-Z, Y, X)


# Keys of a panel, with the kind of value each holds.
_INT_KEYS = {"min_fs", "max_fs", "min_ss", "max_ss", "mask_edge_pixels"}
_FLOAT_KEYS = {"corner_x", "corner_y", "res", "adu_per_photon", "adu_per_eV", "max_adu", "coffset"}
_LENGTH_KEYS = {"clen", "coffset", "detector_shift_x", "detector_shift_y"}  # metres, a unit, or a data location
_BOOL_KEYS = {"no_index"}
_VECTOR_KEYS = {"fs", "ss"}
# accepted and kept as text: what pybragg does not use to render (data locations, masks, flags)
_TEXT_KEYS = {
    "data", "mask", "mask_file", "mask_good", "mask_bad", "saturation_map", "saturation_map_file",
    "flag_lessthan", "flag_morethan", "flag_equal", "satmap", "satmap_file", "peak_list",
    "peak_list_type", "clen_for_centering", "badrow_direction", "rail_direction", "adu_scale", "adu_scale_unit",
    *(f"mask{n}_{what}" for n in range(8) for what in ("data", "file", "goodbits", "badbits")),
}
_PANEL_KEYS = _INT_KEYS | _FLOAT_KEYS | _LENGTH_KEYS | _BOOL_KEYS | _VECTOR_KEYS | _TEXT_KEYS | {"dim"}
# keys that only exist globally
_GLOBAL_ONLY = {"photon_energy", "wavelength", "electron_voltage", "photon_energy_bandwidth",
                "photon_energy_scale", "peak_info_location", "hdf5_peak_path", "bandwidth"}
#: the command-line flag that supplies a value a file gives by a data location
_FLAG_FOR = {"clen": "-distance", "photon_energy": "-energy", "wavelength": "-lambda"}
_BAD_KEYS = {"min_x", "max_x", "min_y", "max_y", "min_fs", "max_fs", "min_ss", "max_ss", "panel"}

_LENGTH_UNITS = {"m": 1.0, "mm": 1e-3, "um": 1e-6, "micron": 1e-6, "microns": 1e-6}
_ENERGY_UNITS = {"ev": 1.0, "kev": 1e3}
_WAVELENGTH_UNITS = {"m": 1.0, "a": 1e-10, "angstrom": 1e-10, "nm": 1e-9}
_VECTOR_TERM = re.compile(r"\s*([+-]?)\s*(\d+\.?\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?)?\s*([xyz])")


@dataclass
class CrystfelPanel:
    """One panel as the file gives it (CrystFEL's frame and units; unset values are None)."""

    name: str
    values: dict[str, object] = field(default_factory=dict)
    #: the panel's dimN layout: index -> "fs", "ss", "%" or a fixed whole number
    dims: dict[int, str | int] = field(default_factory=dict)

    def get(self, key: str, default: object = None) -> object:
        return self.values.get(key, default)

    def number(self, key: str, override: float | None = None) -> float:
        """``key`` as a number; an HDF5 location or a missing value is an error naming the key
        (and the command-line flag that can stand in for it)."""
        if override is not None:
            return float(override)
        value = self.values.get(key)
        flag = _FLAG_FOR.get(key)
        if value is None:
            hint = f" or {flag} on the command line" if flag else ""
            raise FormatError(f"panel {self.name}: no {key} (give it in the geometry file{hint})")
        if isinstance(value, str):
            hint = f" or give {flag} on the command line" if flag else ""
            raise FormatError(f"panel {self.name}: {key} = {value} is a location in the data files, "
                              f"which pybragg cannot read: give the value as a number{hint}")
        return float(value)  # type: ignore[arg-type]

    @property
    def fpixels(self) -> int:
        return int(self.values["max_fs"]) - int(self.values["min_fs"]) + 1  # type: ignore[arg-type]

    @property
    def spixels(self) -> int:
        return int(self.values["max_ss"]) - int(self.values["min_ss"]) + 1  # type: ignore[arg-type]


@dataclass
class BadRegion:
    """A region excluded from the data: in lab pixel coordinates (x/y) or a panel's fs/ss."""

    name: str
    values: dict[str, object] = field(default_factory=dict)


@dataclass
class CrystfelGeometry:
    """A whole geometry file: global values, panels (in file order), bad regions and groups."""

    globals: dict[str, object] = field(default_factory=dict)
    panels: list[CrystfelPanel] = field(default_factory=list)
    bad_regions: list[BadRegion] = field(default_factory=list)
    #: ``group_NAME``/``rigid_group_NAME``/``rigid_group_collection_NAME`` = members (kept, unused)
    groups: dict[str, tuple[str, ...]] = field(default_factory=dict)
    #: the file it was read from (for messages; not part of the model)
    source: str = field(default="", compare=False)

    def panel(self, name: str) -> CrystfelPanel:
        for p in self.panels:
            if p.name == name:
                return p
        raise KeyError(name)

    def wavelength(self) -> float | None:
        """The wavelength (m) from ``wavelength`` or ``photon_energy``; None when neither is a number.

        Raises :class:`FormatError` when the file gives it by a data location.
        """
        if "electron_voltage" in self.globals and not ({"wavelength", "photon_energy"} & self.globals.keys()):
            raise FormatError("electron_voltage: pybragg simulates X-rays: give photon_energy, wavelength, "
                              "or -lambda or -energy on the command line")
        for key in ("wavelength", "photon_energy"):
            value = self.globals.get(key)
            if value is None:
                continue
            if isinstance(value, str):
                raise FormatError(f"{key} = {value} is a location in the data files, which pybragg "
                                  f"cannot read: give -lambda or -energy on the command line")
            if key == "wavelength":
                return float(value)  # type: ignore[arg-type]
            return 12398.42 / float(value) * 1e-10  # type: ignore[arg-type]
        return None


def _parse_number(text: str, where: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise FormatError(f"{where}: {shorten(text)} is not a number") from None
    if not math.isfinite(value):
        raise FormatError(f"{where}: {shorten(text)} is not a finite number")
    return value


def _parse_with_unit(text: str, units: dict[str, float], where: str) -> float | str:
    """``0.1``, ``0.1 m``, ``100mm`` -> SI number; ``/path/in/hdf5`` -> the text itself."""
    t = text.strip()
    if t.startswith("/"):
        return t
    m = re.fullmatch(r"([+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)\s*([A-Za-z]*)", t)
    if m is None:
        raise FormatError(f"{where}: {shorten(text)} is neither a number nor a data location")
    unit = m.group(2).lower()
    if unit and unit not in units:
        raise FormatError(f"{where}: unknown unit {m.group(2)!r} (expected {', '.join(units)})")
    return _parse_number(m.group(1), where) * (units[unit] if unit else 1.0)


def parse_vector(text: str, where: str) -> Vec3:
    """``+0.5x -1.0y +0.02z`` -> (0.5, -1.0, 0.02)."""
    out = {"x": 0.0, "y": 0.0, "z": 0.0}
    pos = 0
    s = text.strip()
    seen = False
    while pos < len(s):
        m = _VECTOR_TERM.match(s, pos)
        if m is None:
            raise FormatError(f"{where}: cannot read the direction {shorten(text)} (expected e.g. +1x -0.5y)")
        sign = -1.0 if m.group(1) == "-" else 1.0
        coeff = float(m.group(2)) if m.group(2) else 1.0
        out[m.group(3)] += sign * coeff
        pos = m.end()
        while pos < len(s) and s[pos].isspace():
            pos += 1
        seen = True
    if not seen:
        raise FormatError(f"{where}: empty direction")
    return (out["x"], out["y"], out["z"])


def format_vector(v: Iterable[float]) -> str:
    """The inverse of :func:`parse_vector` (exact for finite doubles: ``repr`` digits)."""
    return " ".join(f"{c:+.17g}{axis}" for c, axis in zip(v, "xyz"))


def _convert(key: str, text: str, where: str) -> object:
    if key in _VECTOR_KEYS:
        return parse_vector(text, where)
    if key in _LENGTH_KEYS:
        return _parse_with_unit(text, _LENGTH_UNITS, where)
    if key in _INT_KEYS:
        value = _parse_number(text, where)
        if value != int(value):
            raise FormatError(f"{where}: {shorten(text)} is not a whole number")
        return int(value)
    if key in _BOOL_KEYS:
        t = text.strip().lower()
        if t in ("1", "true", "yes"):
            return True
        if t in ("0", "false", "no"):
            return False
        raise FormatError(f"{where}: {shorten(text)} is not true or false")
    if key in _FLOAT_KEYS:
        if text.strip().startswith("/"):
            return text.strip()
        return _parse_number(text, where)
    return text.strip()


def _dim_value(text: str, where: str) -> str | int:
    t = text.strip()
    if t in ("fs", "ss", "%"):
        return t
    try:
        return int(t)
    except ValueError:
        raise FormatError(f"{where}: {shorten(text)} is not fs, ss, % or a whole number") from None


def parse_geometry(text: str, source: str = "<geometry>") -> CrystfelGeometry:
    """Parse the text of a geometry file (errors name ``source``, the line and the key)."""
    geom = CrystfelGeometry(source=source)
    defaults: dict[str, object] = {}
    default_dims: dict[int, str | int] = {}
    panels: dict[str, CrystfelPanel] = {}
    bads: dict[str, BadRegion] = {}
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.split(";", 1)[0].strip()
        if not line:
            continue
        where = f"{source}:{lineno}"
        if "=" not in line:
            raise FormatError(f"{where}: expected 'key = value', got {shorten(line)}")
        key, value = (part.strip() for part in line.split("=", 1))
        if not key:
            raise FormatError(f"{where}: a line without a key")
        if "/" in key:
            owner, sub = key.split("/", 1)
            where = f"{where}: {owner}/{sub}"
            if owner.startswith("bad"):
                if sub not in _BAD_KEYS:
                    raise FormatError(f"{where}: unknown key {sub!r} of a bad region")
                region = bads.setdefault(owner, BadRegion(owner))
                region.values[sub] = value.strip() if sub == "panel" else _parse_number(value, where)
                continue
            panel = panels.get(owner)
            if panel is None:
                panel = CrystfelPanel(owner, dict(defaults), dict(default_dims))
                panels[owner] = panel
            if re.fullmatch(r"dim\d+", sub):
                panel.dims[int(sub[3:])] = _dim_value(value, where)
            elif sub in _PANEL_KEYS:
                panel.values[sub] = _convert(sub, value, where)
            else:
                raise FormatError(f"{where}: unknown panel key {sub!r}")
            continue
        where = f"{where}: {key}"
        m = re.fullmatch(r"(group|rigid_group|rigid_group_collection)_(\S+)", key)
        if m:
            geom.groups[key] = tuple(x.strip() for x in value.split(",") if x.strip())
        elif re.fullmatch(r"dim\d+", key):
            default_dims[int(key[3:])] = geom.globals[key] = _dim_value(value, where)
        elif key == "photon_energy":
            geom.globals[key] = _parse_with_unit(value, _ENERGY_UNITS, where)
        elif key == "wavelength":
            geom.globals[key] = _parse_with_unit(value, _WAVELENGTH_UNITS, where)
        elif key in _GLOBAL_ONLY:
            geom.globals[key] = value.strip()
        elif key in _PANEL_KEYS:
            defaults[key] = _convert(key, value, where)
            geom.globals[key] = defaults[key]
        else:
            raise FormatError(f"{where}: unknown key {key!r}")
    geom.panels = list(panels.values())
    geom.bad_regions = list(bads.values())
    if not geom.panels:
        raise FormatError(f"{source}: no panels (a panel is named by lines such as 'p0/min_fs = 0')")
    for p in geom.panels:
        for key in ("min_fs", "max_fs", "min_ss", "max_ss", "fs", "ss", "corner_x", "corner_y"):
            if key not in p.values:
                raise FormatError(f"{source}: panel {p.name}: no {key}")
        if p.fpixels < 1 or p.spixels < 1:
            raise FormatError(f"{source}: panel {p.name}: max_fs/max_ss below min_fs/min_ss")
    return geom


def read_geometry(path: str | os.PathLike[str]) -> CrystfelGeometry:
    """Read a CrystFEL geometry file."""
    return parse_geometry(read_text(path), os.fspath(path))


def _format_value(key: str, value: object) -> str:
    if isinstance(value, tuple):
        return format_vector(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        text = repr(value)
        # coffset is a plain number of metres to CrystFEL; the others take a unit
        return f"{text} m" if key in _LENGTH_KEYS and key != "coffset" else text
    return str(value)


def _panel_defaults(geom: CrystfelGeometry) -> dict[str, object]:
    """The global values that become defaults of the panels named after them."""
    return {k: v for k, v in geom.globals.items() if k in _PANEL_KEYS}


def _global_dims(geom: CrystfelGeometry) -> dict[int, str | int]:
    return {int(k[3:]): v for k, v in geom.globals.items()  # type: ignore[misc]
            if re.fullmatch(r"dim\d+", k)}


def format_geometry(geom: CrystfelGeometry, comment: str | None = None) -> str:
    """The text of a geometry file for ``geom``, which :func:`parse_geometry` reads back as the
    same model.

    The global lines come first and the panels after them carry only what differs from those
    defaults (so that, as CrystFEL wants, ``clen`` appears once); a panel that lacks one of the
    defaults (it was named before that global line) is written in full before the globals.
    """
    lines: list[str] = []
    if comment:
        lines += [f"; {c}" for c in comment.splitlines()]
    defaults, dims = _panel_defaults(geom), _global_dims(geom)

    def panel_lines(p: CrystfelPanel, full: bool) -> list[str]:
        out = [f"{p.name}/dim{index} = {dim}" for index, dim in sorted(p.dims.items())
               if full or dims.get(index, _MISSING) != dim]
        out += [f"{p.name}/{key} = {_format_value(key, value)}" for key, value in p.values.items()
                if full or key not in defaults or defaults[key] != value]
        return out + [""] if out else []

    early = [p for p in geom.panels if not (defaults.keys() <= p.values.keys() and dims.keys() <= p.dims.keys())]
    for p in early:
        lines += panel_lines(p, True)
    for key, value in geom.globals.items():
        if key == "photon_energy" and isinstance(value, float):
            lines.append(f"photon_energy = {value!r} eV")
        elif key == "wavelength" and isinstance(value, float):
            lines.append(f"wavelength = {value!r} m")
        else:
            lines.append(f"{key} = {_format_value(key, value)}")
    lines.append("")
    for p in geom.panels:
        if p not in early:
            text = panel_lines(p, False)
            # a panel whose every value is a default still needs a line that names it
            lines += text or [f"{p.name}/min_fs = {p.values['min_fs']}", ""]
    for region in geom.bad_regions:
        for key, value in region.values.items():
            lines.append(f"{region.name}/{key} = {value!r}" if isinstance(value, float)
                         else f"{region.name}/{key} = {value}")
        lines.append("")
    for key, members in geom.groups.items():
        lines.append(f"{key} = {','.join(members)}")
    return "\n".join(lines).rstrip("\n") + "\n"


_MISSING = object()


def write_geometry(path: str | os.PathLike[str], geom: CrystfelGeometry, comment: str | None = None) -> None:
    """Write ``geom`` as a geometry file (whole or not at all)."""
    from .atomic import atomic_write

    atomic_write(path, format_geometry(geom, comment).encode())


# ---------------------------------------------------------------- pybragg's panels


@dataclass(frozen=True)
class LabPanel:
    """A panel in pybragg's lab frame and SI units, placed in the detector's data array."""

    name: str
    fpixels: int
    spixels: int
    pixel_size: float
    #: corner of the first pixel (m)
    origin: Vec3
    fdet: Vec3
    sdet: Vec3
    data_fast: int
    data_slow: int
    #: edge pixels masked on every side (``mask_edge_pixels``)
    mask_edge: int = 0
    #: ``no_index``: CrystFEL ignores the panel; pybragg masks it
    ignored: bool = False
    adu_per_photon: float | None = None
    max_adu: float | None = None


#: fs/ss directions whose length differs from one pixel step by more than this are refused
_UNIT_TOLERANCE = 0.01
#: fs and ss closer to parallel than this (sine of the angle between them) are refused
_MIN_AXIS_SINE = 1e-9


def _norm(v: Iterable[float]) -> float:
    return math.sqrt(sum(float(c) * float(c) for c in v))


def _unit(v: Vec3) -> Vec3:
    n = _norm(v)
    return (v[0] / n, v[1] / n, v[2] / n) if n > 0 else v


def _cross(a: Vec3, b: Vec3) -> Vec3:
    return (a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0])


def _direction(p: CrystfelPanel, key: str) -> Vec3:
    """The panel's ``fs`` or ``ss`` as a unit vector (CrystFEL's frame); zero or not one pixel
    step long is an error naming the panel and key."""
    v = p.values[key]
    n = _norm(v)  # type: ignore[arg-type]
    if not n > 0:
        raise FormatError(f"panel {p.name}: {key} = {format_vector(v)} is zero")  # type: ignore[arg-type]
    if abs(n - 1.0) > _UNIT_TOLERANCE:
        raise FormatError(f"panel {p.name}: {key} has length {n:.6g}: the fs and ss directions must be one pixel "
                          "step long (unit vectors; the pixel size is 1/res)")
    return _unit(v)  # type: ignore[arg-type]


def _slab_rows(geom: CrystfelGeometry) -> dict[str, int]:
    """Rows each panel is shifted by in pybragg's 2-D data array.

    A panel with a fixed index in its ``dimN`` layout (``dim0 = 3``: the fourth slab of a
    (module, ss, fs) block) lands at row index x (the slab height); panels of different ``data``
    blocks are stacked after one another, each block as tall as all its slabs.
    """
    fixed: dict[str, int] = {}
    for p in geom.panels:
        idx = [v for v in p.dims.values() if isinstance(v, int)]
        if len(idx) > 1:
            raise FormatError(f"panel {p.name}: more than one fixed index in its dim layout")
        if idx:
            if idx[0] < 0:
                raise FormatError(f"panel {p.name}: the fixed index {idx[0]} of its dim layout is negative")
            fixed[p.name] = idx[0]
        layout = [v for _, v in sorted(p.dims.items()) if not isinstance(v, int) and v != "%"]
        if layout and layout != ["ss", "fs"]:
            raise FormatError(f"panel {p.name}: dim layout {layout} is not supported (ss before fs)")
    height = max(int(p.values["max_ss"]) + 1 for p in geom.panels)  # type: ignore[arg-type]
    slabs = max(fixed.values(), default=0) + 1
    blocks: dict[object, int] = {}
    for p in geom.panels:
        blocks.setdefault(p.get("data"), len(blocks))
    return {p.name: (blocks[p.get("data")] * slabs + fixed.get(p.name, 0)) * height for p in geom.panels}


#: most panels a detector file may hold (the overlap checks compare every pair; the largest detectors
#: in use have a few hundred)
MAX_PANELS = 16384


def check_panel_count(n: int) -> None:
    """Refuse a detector file with more than :data:`MAX_PANELS` panels."""
    if n > MAX_PANELS:
        raise FormatError(f"{n} panels: more than the {MAX_PANELS} a detector file may hold")


def lab_panels(geom: CrystfelGeometry, *, clen: float | None = None, clen_shift: float = 0.0,
               photon_energy_ev: float | None = None) -> list[LabPanel]:
    """The panels of ``geom`` in pybragg's frame (``clen`` overrides the file's camera length, as
    ``-distance`` does; ``clen_shift`` is added to it).

    The data array is 2-D (slow, fast): each panel at its ``min_fs``/``min_ss``; panels with a
    fixed index in their ``dimN`` layout, or in different ``data`` blocks, are stacked along
    the slow axis (see :func:`_slab_rows`).  Errors (one line, naming the panel and key): a
    missing ``res`` or ``clen``, a value given by a data location, an ``fs``/``ss`` that is zero,
    not one pixel step long or parallel to the other, a panel whose centre lies behind the
    sample (z <= 0) and panels whose data ranges overlap.
    """
    check_panel_count(len(geom.panels))
    rows = _slab_rows(geom)
    out: list[LabPanel] = []
    for p in geom.panels:
        res = p.number("res")
        if not res > 0:
            raise FormatError(f"panel {p.name}: res = {res:g} must be positive (pixels per metre)")
        c = p.number("clen", clen) + clen_shift
        coffset = p.number("coffset") if p.get("coffset") is not None else 0.0
        shift = [p.number(key) if p.get(key) is not None else 0.0 for key in ("detector_shift_x", "detector_shift_y")]
        fs, ss = _direction(p, "fs"), _direction(p, "ss")
        if not _norm(_cross(fs, ss)) >= _MIN_AXIS_SINE:
            raise FormatError(f"panel {p.name}: fs and ss are parallel")
        corner = (p.number("corner_x") / res + shift[0], p.number("corner_y") / res + shift[1], c + coffset)
        centre_z = corner[2] + 0.5 * (p.fpixels * fs[2] + p.spixels * ss[2]) / res
        if not centre_z > 0:
            raise FormatError(f"panel {p.name}: clen + coffset = {corner[2]:g} m puts the panel's centre at "
                              f"z = {centre_z:g} m, behind the sample (z must be positive, along the beam)")
        adu = p.get("adu_per_photon")
        if adu is None and p.get("adu_per_eV") is not None and photon_energy_ev is not None:
            adu = p.number("adu_per_eV") * photon_energy_ev
        out.append(LabPanel(
            name=p.name, fpixels=p.fpixels, spixels=p.spixels, pixel_size=1.0 / res,
            origin=crystfel_to_lab(corner), fdet=crystfel_to_lab(fs), sdet=crystfel_to_lab(ss),
            data_fast=int(p.values["min_fs"]),  # type: ignore[arg-type]
            data_slow=int(p.values["min_ss"]) + rows[p.name],  # type: ignore[arg-type]
            mask_edge=int(p.get("mask_edge_pixels", 0) or 0),  # type: ignore[arg-type]
            ignored=bool(p.get("no_index", False)),
            adu_per_photon=None if adu is None or isinstance(adu, str) else float(adu),  # type: ignore[arg-type]
            max_adu=None if not isinstance(p.get("max_adu"), float) else float(p.get("max_adu")),  # type: ignore[arg-type]
        ))
    _check_overlaps(out)
    return out


def _check_overlaps(panels: list[LabPanel]) -> None:
    """Panels whose data ranges share a pixel: an error naming both and their ranges."""
    if len(panels) < 2:
        return
    import numpy as np

    f0 = np.array([p.data_fast for p in panels])
    s0 = np.array([p.data_slow for p in panels])
    f1 = f0 + np.array([p.fpixels for p in panels])
    s1 = s0 + np.array([p.spixels for p in panels])
    hit = (f0[:, None] < f1[None, :]) & (f0[None, :] < f1[:, None]) & (s0[:, None] < s1[None, :]) & (s0[None, :] < s1[:, None])
    hit = np.triu(hit, 1)
    if hit.any():
        i, j = (int(k) for k in np.argwhere(hit)[0])
        a, b = panels[i], panels[j]

        def ranges(p: LabPanel) -> str:
            return (f"fs {p.data_fast}..{p.data_fast + p.fpixels - 1}, "
                    f"ss {p.data_slow}..{p.data_slow + p.spixels - 1}")
        raise FormatError(f"panel {b.name}: its data range ({ranges(b)}) overlaps panel {a.name}'s ({ranges(a)})")


def panel_name(name: str, index: int, taken: set[str]) -> str:
    """A name CrystFEL accepts for a panel (no ``/``, ``=``, ``;`` or spaces; not starting with
    ``bad``, ``group`` or ``rigid_group``), unique among ``taken`` (which it joins)."""
    clean = re.sub(r"[^A-Za-z0-9_.:-]", "_", name.strip()) or f"p{index}"
    if clean.startswith(("bad", "group", "rigid_group")):
        clean = f"p{index}_{clean}"
    out = clean
    k = 1
    while out in taken:
        out = f"{clean}_{k}"
        k += 1
    taken.add(out)
    return out


def _shortest(exact: float, reads_back) -> float:
    """The number with the fewest significant digits that ``reads_back`` to what ``exact`` stands
    for (``exact`` itself when none shorter does)."""
    for digits in range(6, 17):
        candidate = float(f"{exact:.{digits}g}")
        if reads_back(candidate):
            return candidate
    return exact


def geometry_from_lab(panels: Iterable[LabPanel], *, clen: float | None = None,
                      wavelength: float | None = None, adu_per_photon: float | None = None,
                      data: str | None = None, frames_dim: bool = False) -> CrystfelGeometry:
    """A geometry file's model of pybragg panels (the inverse of :func:`lab_panels`).

    ``clen`` (m) is written globally and each panel's ``coffset`` is its corner's distance
    along the beam minus ``clen`` (default: the first panel's distance, so that a one-panel
    detector has ``coffset = 0``).  ``adu_per_photon`` is written globally for panels without
    their own; ``data`` is the HDF5 location of the frames and ``frames_dim`` puts the frame
    index first (``dim0 = %``, ``dim1 = ss``, ``dim2 = fs``), as a NeXus file holds them.
    Panel names are made acceptable to CrystFEL (:func:`panel_name`).
    """
    panels = list(panels)
    if not panels:
        raise ValueError("no panels")
    first = lab_to_crystfel(panels[0].origin)
    c = first[2] if clen is None else clen
    geom = CrystfelGeometry()
    if wavelength is not None:
        geom.globals["photon_energy"] = 12398.42 / (wavelength * 1e10)
    if adu_per_photon is not None:
        geom.globals["adu_per_photon"] = float(adu_per_photon)
    if data is not None:
        geom.globals["data"] = data
    dims: dict[int, str | int] = {0: "%", 1: "ss", 2: "fs"} if frames_dim else {0: "ss", 1: "fs"}
    for index, dim in dims.items():
        geom.globals[f"dim{index}"] = dim
    geom.globals["clen"] = c
    taken: set[str] = set()
    for i, lp in enumerate(panels):
        corner = lab_to_crystfel(lp.origin)
        # the shortest numbers that lab_panels reads back as exactly these pixel size and corner
        res = _shortest(1.0 / lp.pixel_size, lambda r, lp=lp: 1.0 / r == lp.pixel_size)
        corner_x = _shortest(corner[0] * res, lambda v, x=corner[0], r=res: v / r == x)
        corner_y = _shortest(corner[1] * res, lambda v, y=corner[1], r=res: v / r == y)
        coffset = _shortest(corner[2] - c, lambda v, z=corner[2]: c + v == z)
        values: dict[str, object] = {}
        if data is not None:
            values["data"] = data
        if adu_per_photon is not None and lp.adu_per_photon is None:
            values["adu_per_photon"] = float(adu_per_photon)
        values.update({
            "min_fs": lp.data_fast, "max_fs": lp.data_fast + lp.fpixels - 1,
            "min_ss": lp.data_slow, "max_ss": lp.data_slow + lp.spixels - 1,
            "fs": lab_to_crystfel(lp.fdet), "ss": lab_to_crystfel(lp.sdet),
            "corner_x": corner_x, "corner_y": corner_y, "res": res, "clen": c, "coffset": coffset,
        })
        if lp.mask_edge:
            values["mask_edge_pixels"] = lp.mask_edge
        if lp.ignored:
            values["no_index"] = True
        if lp.adu_per_photon is not None:
            values["adu_per_photon"] = lp.adu_per_photon
        if lp.max_adu is not None:
            values["max_adu"] = lp.max_adu
        geom.panels.append(CrystfelPanel(panel_name(lp.name, i, taken), values, dict(dims)))
    return geom


def _region_rect(geom: CrystfelGeometry, region: BadRegion, by_name: dict[str, LabPanel]
                 ) -> tuple[int, int, int, int] | None:
    """The data-array rectangle (slow0, slow1, fast0, fast1; inclusive) of a bad region in fs/ss
    coordinates: those of the panel's data block, cut to the panel when one is named; None
    when nothing of it remains."""
    v = region.values
    s0, s1, f0, f1 = (int(v[k]) for k in ("min_ss", "max_ss", "min_fs", "max_fs"))  # type: ignore[call-overload]
    name = v.get("panel")
    if name is None:
        return (s0, s1, f0, f1)
    lp = by_name.get(str(name))
    if lp is None:
        raise FormatError(f"{region.name}/panel: no panel named {name}")
    p = geom.panel(lp.name)
    # file coordinates of the panel's block -> the panel's pixels -> the data array
    fs_min, ss_min = int(p.values["min_fs"]), int(p.values["min_ss"])  # type: ignore[call-overload]
    f0, f1 = max(f0 - fs_min, 0), min(f1 - fs_min, lp.fpixels - 1)
    s0, s1 = max(s0 - ss_min, 0), min(s1 - ss_min, lp.spixels - 1)
    if f0 > f1 or s0 > s1:
        return None
    return (lp.data_slow + s0, lp.data_slow + s1, lp.data_fast + f0, lp.data_fast + f1)


def _lab_region_pixels(region: BadRegion, lp: LabPanel):
    """(slow, fast) indices of the panel's pixels whose centres lie inside a lab-frame region."""
    import numpy as np

    v = region.values
    res = 1.0 / lp.pixel_size
    f = (np.arange(lp.fpixels) + 0.5) * lp.pixel_size
    sl = (np.arange(lp.spixels) + 0.5) * lp.pixel_size
    # pixel centres in CrystFEL's x and y (pixel units): x = -Z, y = Y
    x = -(lp.origin[2] + np.add.outer(sl * lp.sdet[2], f * lp.fdet[2])) * res
    y = (lp.origin[1] + np.add.outer(sl * lp.sdet[1], f * lp.fdet[1])) * res
    inside = (x >= v["min_x"]) & (x <= v["max_x"]) & (y >= v["min_y"]) & (y <= v["max_y"])  # type: ignore[operator]
    return np.nonzero(inside)


def _region_kind(region: BadRegion) -> str:
    keys = region.values.keys()
    fsss = {"min_fs", "max_fs", "min_ss", "max_ss"} & keys
    xy = {"min_x", "max_x", "min_y", "max_y"} & keys
    if fsss and xy:
        raise FormatError(f"{region.name}: a bad region is given in fs/ss or in x/y coordinates, not both")
    if len(fsss) == 4:
        return "fsss"
    if len(xy) == 4:
        return "xy"
    raise FormatError(f"{region.name}: a bad region needs min_x/max_x/min_y/max_y or min_fs/max_fs/min_ss/max_ss")


def _edge_rects(lp: LabPanel) -> list[tuple[int, int, int, int]]:
    s0, s1 = lp.data_slow, lp.data_slow + lp.spixels - 1
    f0, f1 = lp.data_fast, lp.data_fast + lp.fpixels - 1
    if lp.ignored:
        return [(s0, s1, f0, f1)]
    if not lp.mask_edge:
        return []
    e = lp.mask_edge
    return [(s0, s0 + e - 1, f0, f1), (s1 - e + 1, s1, f0, f1), (s0, s1, f0, f0 + e - 1), (s0, s1, f1 - e + 1, f1)]


def bad_pixels(geom: CrystfelGeometry, panels: list[LabPanel], shape: tuple[int, int]) -> list[tuple[int, int, int, int]]:
    """Rectangles (slow0, slow1, fast0, fast1; inclusive) of the data array that the bad
    regions, ``mask_edge_pixels`` and ``no_index`` exclude.

    A region in lab coordinates (``min_x``...: pixel units of CrystFEL's x and y) excludes every
    pixel whose centre lies inside it (one rectangle per pixel); a region in fs/ss excludes that
    rectangle of its panel's data block, cut to the panel.
    """
    out: list[tuple[int, int, int, int]] = []
    by_name = {p.name: p for p in panels}
    for lp in panels:
        out += _edge_rects(lp)
    for region in geom.bad_regions:
        if _region_kind(region) == "fsss":
            rect = _region_rect(geom, region, by_name)
            if rect is not None:
                out.append(rect)
        else:
            for lp in panels:
                for s_i, f_i in zip(*_lab_region_pixels(region, lp)):
                    out.append((lp.data_slow + int(s_i),) * 2 + (lp.data_fast + int(f_i),) * 2)
    return out


def bad_pixel_mask(geom: CrystfelGeometry, panels: list[LabPanel], shape: tuple[int, int]):
    """Boolean (slow, fast) array of the data array: True where a bad region, ``mask_edge_pixels``
    or ``no_index`` excludes the pixel (see :func:`bad_pixels`)."""
    import numpy as np

    bad = np.zeros(shape, dtype=bool)
    by_name = {p.name: p for p in panels}
    for lp in panels:
        for s0, s1, f0, f1 in _edge_rects(lp):
            bad[max(s0, 0):s1 + 1, max(f0, 0):f1 + 1] = True
    for region in geom.bad_regions:
        if _region_kind(region) == "fsss":
            rect = _region_rect(geom, region, by_name)
            if rect is not None:
                s0, s1, f0, f1 = rect
                bad[max(s0, 0):s1 + 1, max(f0, 0):f1 + 1] = True
        else:
            for lp in panels:
                si, fi = _lab_region_pixels(region, lp)
                bad[lp.data_slow + si, lp.data_fast + fi] = True
    return bad


__all__ = [
    "BadRegion", "CrystfelGeometry", "CrystfelPanel", "LabPanel", "bad_pixel_mask", "bad_pixels",
    "crystfel_to_lab", "format_geometry", "format_vector", "geometry_from_lab", "lab_panels",
    "lab_to_crystfel", "panel_name", "parse_geometry", "parse_vector", "read_geometry", "write_geometry",
]
