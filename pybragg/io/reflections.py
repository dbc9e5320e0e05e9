"""Reflection files read with gemmi (MTZ, structure-factor mmCIF) and expanded to the full P1 sphere.

A file holds the amplitudes of an asymmetric unit (or of any set of reflections) and its space
group; :func:`expand_to_p1` applies the space group's rotations and Friedel's law (Bijvoet mates
from F(+)/F(-) columns where the chosen amplitudes are such a pair), so that pybragg, which looks
reflections up by their indices in the crystal's own frame, finds every one it needs.

Column choice: the one named with ``-hkl_column``, else the first amplitude-like column of the
file (MTZ types F, G, J, K; mmCIF ``F_meas_au``, ``F_meas``, ``F_calc``, ``pdbx_F_plus``,
``intensity_meas``, ...).  An intensity is turned into an amplitude, sqrt(max(I, 0)), with a
warning; an anomalous pair (MTZ type G or K, mmCIF ``pdbx_F_plus``/``pdbx_F_minus``) gives
F(+) to the reflection and its proper-rotation equivalents and F(-) to their Friedel mates.
"""

from __future__ import annotations

import os
import re
import warnings
from dataclasses import dataclass

import numpy as np

from .errors import FormatError, describe_path
from .hkl import HKLTable, HKLWarning, table_from_arrays

MTZ_MAGIC = b"MTZ "
#: MTZ column types: amplitude, anomalous amplitude, intensity, anomalous intensity
_MTZ_TYPES = ("F", "G", "J", "K")
_CIF_AMPLITUDES = ("F_meas_au", "F_meas", "F_calc", "F_calc_au", "pdbx_F_plus", "pdbx_F_minus")
_CIF_INTENSITIES = ("intensity_meas", "intensity_calc", "F_squared_meas", "F_squared_calc",
                    "pdbx_I_plus", "pdbx_I_minus")
_CIF_PAIRS = {"pdbx_F_plus": "pdbx_F_minus", "pdbx_F_minus": "pdbx_F_plus",
              "pdbx_I_plus": "pdbx_I_minus", "pdbx_I_minus": "pdbx_I_plus"}


@dataclass
class Reflections:
    """Amplitudes of a set of reflections, with the cell and space group they belong to.

    ``F_minus`` (where not None) holds the amplitudes of the Friedel mates (-h -k -l), so that
    ``F`` is F(+); NaN where a reflection has no value.  ``cell``: a, b, c (Angstrom), alpha,
    beta, gamma (degrees); ``space_group``: its Hermann-Mauguin name.
    """

    hkl: np.ndarray
    F: np.ndarray
    cell: tuple[float, float, float, float, float, float]
    space_group: str
    label: str
    F_minus: np.ndarray | None = None


def is_reflection_file(path: str | os.PathLike[str]) -> bool:
    """True for an MTZ (by its magic bytes) or a CIF (its first data line opens a ``data_`` block)."""
    return reflection_format(path) is not None


def reflection_format(path: str | os.PathLike[str]) -> str | None:
    """``"mtz"``, ``"cif"`` or None (a text table) from the first bytes of a file."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(4096)
    except OSError:
        return None
    if head.startswith(MTZ_MAGIC):
        return "mtz"
    for line in head.splitlines():
        text = line.strip()
        if not text or text.startswith(b"#"):
            continue
        return "cif" if text.lower().startswith(b"data_") else None
    return None


def _gemmi():
    try:
        import gemmi
    except ImportError:
        raise FormatError('reading MTZ, mmCIF and model files needs the gemmi package '
                          '(pip install "pybragg[gemmi]")') from None
    return gemmi


def _cell(cell) -> tuple[float, float, float, float, float, float]:
    return (float(cell.a), float(cell.b), float(cell.c), float(cell.alpha), float(cell.beta), float(cell.gamma))


def _partner(label: str, labels: list[str]) -> str | None:
    """The other half of an anomalous pair: F(+) <-> F(-), FPLUS <-> FMINUS, F+ <-> F-."""
    for a, b in (("(+)", "(-)"), ("(-)", "(+)"), ("PLUS", "MINUS"), ("MINUS", "PLUS"), ("plus", "minus"),
                 ("minus", "plus"), ("+", "-"), ("-", "+")):
        if a in label:
            other = label.replace(a, b)
            if other in labels:
                return other
    return None


def _is_minus(label: str) -> bool:
    return bool(re.search(r"\(-\)|MINUS|minus|-$", label))


def _amplitudes(name: str, label: str, values: np.ndarray, intensity: bool) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    if intensity:
        warnings.warn(HKLWarning(
            f"{name}: column {label} holds intensities: its amplitudes are sqrt(I), negative intensities as 0"
        ), stacklevel=3)
        return np.sqrt(np.clip(values, 0.0, None))
    return values


def read_mtz(path: str | os.PathLike[str], column: str | None = None) -> Reflections:
    """Amplitudes of an MTZ file (see the module docstring for the column chosen)."""
    gemmi = _gemmi()
    name = describe_path(path)
    check_file_size(path)
    _check_mtz_layout(name, path)
    try:
        mtz = gemmi.read_mtz_file(os.fspath(path))
    except (RuntimeError, ValueError, OSError) as exc:
        raise FormatError(f"{name}: not a readable MTZ file: {exc}") from None
    labels = [c.label for c in mtz.columns]
    types = {c.label: c.type for c in mtz.columns}
    candidates = [c.label for c in mtz.columns if c.type in _MTZ_TYPES]
    if column is not None:
        if column not in labels:
            shown = ", ".join(f"{c} ({types[c]})" for c in candidates) or "none"
            raise FormatError(f"{name}: no column {column!r} (amplitude and intensity columns: {shown})")
        if types[column] not in _MTZ_TYPES:
            raise FormatError(f"{name}: column {column!r} has MTZ type {types[column]}, "
                              "not an amplitude (F, G) or intensity (J, K)")
        chosen = column
    elif candidates:
        chosen = candidates[0]
    else:
        raise FormatError(f"{name}: no amplitude or intensity column (MTZ types F, G, J, K); "
                          f"its columns are {', '.join(labels)}")
    if mtz.nreflections == 0:
        raise FormatError(f"{name}: the MTZ holds no reflections")
    kind = types[chosen]
    intensity = kind in ("J", "K")
    hkl = np.asarray(mtz.make_miller_array(), dtype=np.int64)
    col = mtz.column_with_label(chosen)
    cell = col.dataset.cell if col.dataset.cell.a > 0 else mtz.cell
    minus = None
    if kind in ("G", "K"):
        other = _partner(chosen, labels)
        if other is None or types.get(other) != kind:
            raise FormatError(f"{name}: column {chosen!r} is half of an anomalous pair but its partner is missing")
        plus_label, minus_label = (other, chosen) if _is_minus(chosen) else (chosen, other)
        F = _amplitudes(name, plus_label, mtz.column_with_label(plus_label).array, intensity)
        minus = _amplitudes(name, minus_label, mtz.column_with_label(minus_label).array, intensity)
        label = f"{plus_label}/{minus_label}"
    else:
        F = _amplitudes(name, chosen, col.array, intensity)
        label = chosen
    if mtz.spacegroup is None:
        raise FormatError(f"{name}: the MTZ has no space group")
    return _clean(name, Reflections(hkl=hkl, F=F, F_minus=minus, cell=_cell(cell),
                                    space_group=mtz.spacegroup.xhm(), label=label))


def _check_mtz_layout(name: str, path: str | os.PathLike[str]) -> None:
    """Refuse quickly a file that starts like an MTZ but whose header record is not where it says."""
    size = os.path.getsize(path)
    with open(path, "rb") as handle:
        head = handle.read(12)
        if len(head) < 12 or not head.startswith(MTZ_MAGIC):
            raise FormatError(f"{name}: not a readable MTZ file: too short")
        stamp = head[9] >> 4 if len(head) > 9 else 4
        order = "little" if stamp in (4, 0) else "big"
        where = int.from_bytes(head[4:8], order, signed=True)
        offset = 4 * (where - 1)
        if not 20 <= offset <= size - 80:
            raise FormatError(f"{name}: not a readable MTZ file: its header record would start at byte {offset} "
                              f"of {size}")
        handle.seek(offset)
        if not handle.read(80).startswith(b"VERS"):
            raise FormatError(f"{name}: not a readable MTZ file: no header record (VERS) at byte {offset}")


def read_sf_cif(path: str | os.PathLike[str], column: str | None = None) -> Reflections:
    """Amplitudes of a structure-factor mmCIF (the first block with a ``_refln`` loop)."""
    gemmi = _gemmi()
    name = describe_path(path)
    check_file_size(path)
    try:
        doc = gemmi.cif.read(os.fspath(path))
        blocks = gemmi.as_refln_blocks(doc)
    except (RuntimeError, ValueError, OSError) as exc:
        raise FormatError(f"{name}: not a readable mmCIF file: {exc}") from None
    block = next((b for b in blocks if b.default_loop is not None and "index_h" in b.column_labels()), None)
    if block is None:
        raise FormatError(f"{name}: no _refln reflections in the file (for a coordinate file use -pdb)")
    labels = list(block.column_labels())
    known = [t for t in labels if t in _CIF_AMPLITUDES or t in _CIF_INTENSITIES]
    if column is not None:
        chosen = column.removeprefix("_refln.")
        if chosen not in labels:
            raise FormatError(f"{name}: no column _refln.{chosen} (amplitude and intensity columns: "
                              f"{', '.join(known) or 'none'})")
    elif known:
        chosen = known[0]
    else:
        raise FormatError(f"{name}: no amplitude or intensity column in _refln "
                          f"(looked for {', '.join(_CIF_AMPLITUDES + _CIF_INTENSITIES)})")
    intensity = chosen in _CIF_INTENSITIES
    hkl = np.asarray(block.make_miller_array(), dtype=np.int64)
    if len(hkl) == 0:
        raise FormatError(f"{name}: the _refln loop holds no reflections")
    minus = None
    if chosen in _CIF_PAIRS:
        other = _CIF_PAIRS[chosen]
        if other not in labels:
            raise FormatError(f"{name}: column {chosen} is half of an anomalous pair but {other} is missing")
        plus_label, minus_label = (other, chosen) if "minus" in chosen else (chosen, other)
        F = _amplitudes(name, plus_label, block.make_float_array(plus_label), intensity)
        minus = _amplitudes(name, minus_label, block.make_float_array(minus_label), intensity)
        label = f"{plus_label}/{minus_label}"
    else:
        F = _amplitudes(name, chosen, block.make_float_array(chosen), intensity)
        label = chosen
    if block.cell is None or not block.cell.a > 0:
        raise FormatError(f"{name}: the file gives no unit cell (_cell)")
    space_group = block.spacegroup.xhm() if block.spacegroup is not None else None
    if space_group is None:
        warnings.warn(HKLWarning(f"{name}: no space group (_symmetry or _space_group): taken as P 1"), stacklevel=2)
        space_group = "P 1"
    return _clean(name, Reflections(hkl=hkl, F=F, F_minus=minus, cell=_cell(block.cell), space_group=space_group,
                                    label=label))


def _clean(name: str, refl: Reflections) -> Reflections:
    """Drop reflections without a value; a missing half of a pair takes the other half's value."""
    F = refl.F
    if refl.F_minus is not None:
        minus = refl.F_minus
        F = np.where(np.isnan(F), minus, F)
        minus = np.where(np.isnan(minus), F, minus)
        keep = np.isfinite(F) & np.isfinite(minus)
        refl.F_minus = minus[keep]
    else:
        keep = np.isfinite(F)
    refl.hkl = refl.hkl[keep]
    refl.F = F[keep]
    if len(refl.hkl) == 0:
        raise FormatError(f"{name}: column {refl.label} has no values")
    return refl


def read_reflections(path: str | os.PathLike[str], column: str | None = None) -> Reflections:
    """An MTZ or structure-factor mmCIF, by its content."""
    kind = reflection_format(path)
    if kind == "mtz":
        return read_mtz(path, column)
    if kind == "cif":
        return read_sf_cif(path, column)
    raise FormatError(f"{describe_path(path)}: neither an MTZ nor an mmCIF file")


def rotations(space_group: str) -> list[np.ndarray]:
    """Integer rotation matrices R of the space group's operations (h' = h R), without repeats."""
    gemmi = _gemmi()
    sg = gemmi.find_spacegroup_by_name(space_group)
    if sg is None:
        raise FormatError(f"unknown space group {space_group!r}")
    out: list[np.ndarray] = []
    for op in sg.operations().sym_ops:
        R = np.asarray(op.rot, dtype=np.int64) // gemmi.Op.DEN
        if not any(np.array_equal(R, other) for other in out):
            out.append(R)
    return out


def expand_to_p1(hkl: np.ndarray, F: np.ndarray, space_group: str,
                 F_minus: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Every symmetry equivalent and Friedel mate of each reflection, with its amplitude.

    ``h R`` for each rotation R of the group carries F (F(+) for a proper rotation, F(-) for an
    improper one), and ``-h R`` carries the other; without ``F_minus`` both carry F.
    """
    hkl = np.asarray(hkl, dtype=np.int64).reshape(-1, 3)
    F = np.asarray(F, dtype=np.float64)
    minus = F if F_minus is None else np.asarray(F_minus, dtype=np.float64)
    parts_h: list[np.ndarray] = []
    parts_F: list[np.ndarray] = []
    for R in rotations(space_group):
        proper = round(np.linalg.det(R)) > 0
        equiv = hkl @ R
        parts_h += [equiv, -equiv]
        parts_F += [F, minus] if proper else [minus, F]
    return np.concatenate(parts_h), np.concatenate(parts_F)


def p1_table(refl: Reflections, default_F: float = 0.0, name: str = "the structure-factor table") -> HKLTable:
    """The dense P1 table of ``refl`` (see :func:`expand_to_p1`); ``name`` (the file) starts the
    messages of :func:`~pybragg.io.hkl.table_from_arrays`."""
    idx, values = expand_to_p1(refl.hkl, refl.F, refl.space_group, refl.F_minus)
    return table_from_arrays(idx, values, default_F, name)


#: bytes of memory gemmi and the expansion take per byte of an MTZ, mmCIF or model file (a guess on the
#: large side: a text mmCIF becomes columns of numbers, a model its atoms and the map of its structure factors)
GEMMI_BYTES_PER_BYTE = 16


def check_file_size(path: str | os.PathLike[str], factor: float = GEMMI_BYTES_PER_BYTE) -> None:
    """Refuse, before a library reads it, a file that is not a regular file (a device or a pipe has no
    size to check) or whose reading would not fit the memory rule."""
    from pybragg.memory import check_allocation, format_bytes

    name = describe_path(path)
    try:
        info = os.stat(path)
    except OSError as exc:
        raise FormatError(f"{name}: cannot read: {exc.strerror or exc}") from None
    import stat

    if not stat.S_ISREG(info.st_mode):
        raise FormatError(f"{name}: not a regular file (an MTZ, mmCIF or model file must be one)")
    check_allocation(factor * info.st_size, f"{name}: reading its {format_bytes(info.st_size)}")
