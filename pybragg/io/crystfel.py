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
_LENGTH_KEYS = {"clen", "coffset"}  # a number in metres, a number with a unit, or an HDF5 location
_BOOL_KEYS = {"no_index"}
_VECTOR_KEYS = {"fs", "ss"}
# accepted and kept as text: what pybragg does not use to render (data locations, masks, flags)
_TEXT_KEYS = {
    "data", "mask", "mask_file", "mask_good", "mask_bad", "saturation_map", "saturation_map_file",
    "flag_lessthan", "flag_morethan", "flag_equal", "satmap", "satmap_file", "peak_list",
    "peak_list_type", "detector_shift_x", "detector_shift_y", "clen_for_centering", "badrow_direction",
    "rail_direction", "adu_scale", "adu_scale_unit",
}
_PANEL_KEYS = _INT_KEYS | _FLOAT_KEYS | _LENGTH_KEYS | _BOOL_KEYS | _VECTOR_KEYS | _TEXT_KEYS | {"dim"}
# keys that only exist globally
_GLOBAL_ONLY = {"photon_energy", "wavelength", "electron_voltage", "photon_energy_bandwidth",
                "photon_energy_scale", "peak_info_location", "hdf5_peak_path", "bandwidth"}
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
        """``key`` as a number; an HDF5 location or a missing value is an error naming the key."""
        if override is not None:
            return float(override)
        value = self.values.get(key)
        if value is None:
            raise FormatError(f"panel {self.name}: no {key} (give it in the geometry file)")
        if isinstance(value, str):
            raise FormatError(f"panel {self.name}: {key} = {value} is a location in the data files, "
                              "which pybragg cannot read: give the value as a number")
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

    def panel(self, name: str) -> CrystfelPanel:
        for p in self.panels:
            if p.name == name:
                return p
        raise KeyError(name)

    def wavelength(self) -> float | None:
        """The wavelength (m) from ``wavelength`` or ``photon_energy``; None when neither is a number.

        Raises :class:`FormatError` when the file gives it by a data location.
        """
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
    geom = CrystfelGeometry()
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
        return f"{text} m" if key in _LENGTH_KEYS else text
    return str(value)


def format_geometry(geom: CrystfelGeometry, comment: str | None = None) -> str:
    """The text of a geometry file for ``geom``: every value of every panel written out."""
    lines: list[str] = []
    if comment:
        lines += [f"; {c}" for c in comment.splitlines()]
    for key, value in geom.globals.items():
        if key == "photon_energy" and isinstance(value, float):
            lines.append(f"photon_energy = {value!r} eV")
        elif key == "wavelength" and isinstance(value, float):
            lines.append(f"wavelength = {value!r} m")
        else:
            lines.append(f"{key} = {_format_value(key, value)}")
    lines.append("")
    for p in geom.panels:
        for index, dim in sorted(p.dims.items()):
            lines.append(f"{p.name}/dim{index} = {dim}")
        for key, value in p.values.items():
            lines.append(f"{p.name}/{key} = {_format_value(key, value)}")
        lines.append("")
    for region in geom.bad_regions:
        for key, value in region.values.items():
            lines.append(f"{region.name}/{key} = {value!r}" if isinstance(value, float)
                         else f"{region.name}/{key} = {value}")
        lines.append("")
    for key, members in geom.groups.items():
        lines.append(f"{key} = {','.join(members)}")
    return "\n".join(lines).rstrip("\n") + "\n"


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


def _unit(v: Vec3) -> Vec3:
    n = math.sqrt(sum(c * c for c in v))
    return (v[0] / n, v[1] / n, v[2] / n) if n > 0 else v


def lab_panels(geom: CrystfelGeometry, *, clen: float | None = None, clen_shift: float = 0.0,
               photon_energy_ev: float | None = None) -> list[LabPanel]:
    """The panels of ``geom`` in pybragg's frame (``clen`` overrides the file's; ``clen_shift``
    is added to it, as ``-distance`` shifts a file's camera length).

    The data array is 2-D (slow, fast); panels with a fixed index in their ``dimN`` layout (for
    example ``dim0 = 3`` for the fourth slab of a (module, ss, fs) array) are stacked along the
    slow axis, slab k starting at row k x (the slab height).
    """
    fixed: dict[str, int] = {}
    for p in geom.panels:
        idx = [v for v in p.dims.values() if isinstance(v, int)]
        if len(idx) > 1:
            raise FormatError(f"panel {p.name}: more than one fixed index in its dim layout")
        if idx:
            fixed[p.name] = idx[0]
        layout = [v for _, v in sorted(p.dims.items()) if not isinstance(v, int) and v != "%"]
        if layout and layout != ["ss", "fs"]:
            raise FormatError(f"panel {p.name}: dim layout {layout} is not supported (ss before fs)")
    height = max(int(p.values["max_ss"]) + 1 for p in geom.panels)  # type: ignore[arg-type]
    out: list[LabPanel] = []
    for p in geom.panels:
        res = p.number("res")
        if not res > 0:
            raise FormatError(f"panel {p.name}: res must be positive (pixels per metre)")
        c = p.number("clen", clen) + clen_shift
        coffset = p.number("coffset") if p.get("coffset") is not None else 0.0
        fs, ss = p.values["fs"], p.values["ss"]
        fdet = crystfel_to_lab(_unit(fs))  # type: ignore[arg-type]
        sdet = crystfel_to_lab(_unit(ss))  # type: ignore[arg-type]
        corner = (p.number("corner_x") / res, p.number("corner_y") / res, c + coffset)
        adu = p.get("adu_per_photon")
        if adu is None and p.get("adu_per_eV") is not None and photon_energy_ev is not None:
            adu = float(p.get("adu_per_eV")) * photon_energy_ev  # type: ignore[arg-type]
        k = fixed.get(p.name, 0)
        out.append(LabPanel(
            name=p.name, fpixels=p.fpixels, spixels=p.spixels, pixel_size=1.0 / res,
            origin=crystfel_to_lab(corner), fdet=fdet, sdet=sdet,
            data_fast=int(p.values["min_fs"]),  # type: ignore[arg-type]
            data_slow=int(p.values["min_ss"]) + k * height,  # type: ignore[arg-type]
            mask_edge=int(p.get("mask_edge_pixels", 0) or 0),  # type: ignore[arg-type]
            ignored=bool(p.get("no_index", False)),
            adu_per_photon=None if adu is None or isinstance(adu, str) else float(adu),  # type: ignore[arg-type]
            max_adu=None if not isinstance(p.get("max_adu"), float) else float(p.get("max_adu")),  # type: ignore[arg-type]
        ))
    return out


def geometry_from_lab(panels: Iterable[LabPanel], *, clen: float | None = None,
                      wavelength: float | None = None) -> CrystfelGeometry:
    """A geometry file's model of pybragg panels (the inverse of :func:`lab_panels`).

    ``clen`` (m) is written globally and each panel's ``coffset`` is its corner's distance
    along the beam minus ``clen`` (default: the first panel's distance, so that a one-panel
    detector has ``coffset = 0``).
    """
    panels = list(panels)
    if not panels:
        raise ValueError("no panels")
    first = lab_to_crystfel(panels[0].origin)
    c = first[2] if clen is None else clen
    geom = CrystfelGeometry()
    if wavelength is not None:
        geom.globals["photon_energy"] = 12398.42 / (wavelength * 1e10)
    geom.globals["dim0"] = "ss"
    geom.globals["dim1"] = "fs"
    geom.globals["clen"] = c
    for lp in panels:
        corner = lab_to_crystfel(lp.origin)
        res = 1.0 / lp.pixel_size
        values: dict[str, object] = {
            "min_fs": lp.data_fast, "max_fs": lp.data_fast + lp.fpixels - 1,
            "min_ss": lp.data_slow, "max_ss": lp.data_slow + lp.spixels - 1,
            "fs": lab_to_crystfel(lp.fdet), "ss": lab_to_crystfel(lp.sdet),
            "corner_x": corner[0] * res, "corner_y": corner[1] * res,
            "res": res, "clen": c, "coffset": corner[2] - c,
        }
        if lp.mask_edge:
            values["mask_edge_pixels"] = lp.mask_edge
        if lp.ignored:
            values["no_index"] = True
        if lp.adu_per_photon is not None:
            values["adu_per_photon"] = lp.adu_per_photon
        if lp.max_adu is not None:
            values["max_adu"] = lp.max_adu
        geom.panels.append(CrystfelPanel(lp.name, values, {0: "ss", 1: "fs"}))
    return geom


def bad_pixels(geom: CrystfelGeometry, panels: list[LabPanel], shape: tuple[int, int]) -> list[tuple[int, int, int, int]]:
    """Rectangles (slow0, slow1, fast0, fast1; inclusive) of the data array that the bad
    regions, ``mask_edge_pixels`` and ``no_index`` exclude.

    A region in lab coordinates (``min_x``...: pixel units of CrystFEL's x and y) excludes every
    pixel whose centre lies inside it; a region in fs/ss excludes that rectangle of its panel.
    """
    out: list[tuple[int, int, int, int]] = []
    by_name = {p.name: p for p in panels}
    for lp in panels:
        if lp.ignored:
            out.append((lp.data_slow, lp.data_slow + lp.spixels - 1, lp.data_fast, lp.data_fast + lp.fpixels - 1))
        elif lp.mask_edge:
            e = lp.mask_edge
            s0, s1 = lp.data_slow, lp.data_slow + lp.spixels - 1
            f0, f1 = lp.data_fast, lp.data_fast + lp.fpixels - 1
            out += [(s0, s0 + e - 1, f0, f1), (s1 - e + 1, s1, f0, f1), (s0, s1, f0, f0 + e - 1), (s0, s1, f1 - e + 1, f1)]
    for region in geom.bad_regions:
        v = region.values
        if {"min_fs", "max_fs", "min_ss", "max_ss"} <= v.keys():
            rect = (int(v["min_ss"]), int(v["max_ss"]), int(v["min_fs"]), int(v["max_fs"]))  # type: ignore[arg-type]
            name = v.get("panel")
            if name is not None and name not in by_name:
                raise FormatError(f"{region.name}/panel: no panel named {name}")
            out.append(rect)
        elif {"min_x", "max_x", "min_y", "max_y"} <= v.keys():
            import numpy as np

            for lp in panels:
                res = 1.0 / lp.pixel_size
                f = (np.arange(lp.fpixels) + 0.5) * lp.pixel_size
                sl = (np.arange(lp.spixels) + 0.5) * lp.pixel_size
                # pixel centres in CrystFEL's x and y (pixel units): x = -Z, y = Y
                x = -(lp.origin[2] + np.add.outer(sl * lp.sdet[2], f * lp.fdet[2])) * res
                y = (lp.origin[1] + np.add.outer(sl * lp.sdet[1], f * lp.fdet[1])) * res
                inside = (x >= v["min_x"]) & (x <= v["max_x"]) & (y >= v["min_y"]) & (y <= v["max_y"])  # type: ignore[operator]
                for s_i, f_i in zip(*np.nonzero(inside)):
                    out.append((lp.data_slow + int(s_i),) * 2 + (lp.data_fast + int(f_i),) * 2)
        else:
            raise FormatError(f"{region.name}: a bad region needs min_x/max_x/min_y/max_y or min_fs/max_fs/min_ss/max_ss")
    return out


__all__ = [
    "BadRegion", "CrystfelGeometry", "CrystfelPanel", "LabPanel", "bad_pixels", "crystfel_to_lab",
    "format_geometry", "format_vector", "geometry_from_lab", "lab_panels", "lab_to_crystfel",
    "parse_geometry", "parse_vector", "read_geometry", "write_geometry",
]
