"""Structure factors of an atomic model (PDB or mmCIF coordinates), computed with gemmi.

gemmi's ``StructureFactorCalculatorX`` sums, over every atom of the first model and its
symmetry mates in the unit cell, the atom's default X-ray form factor (gemmi's IT92 tables)
times its occupancy and isotropic Debye-Waller factor exp(-B s^2 / 4) and the phase of its
position: no bulk solvent, no anisotropic B, and no anomalous terms unless asked for
(then each element's f' and f'' at the wavelength, from gemmi's Cromer-Liberman tables).
The amplitudes are computed for the asymmetric unit out to a resolution and expanded to P1
(:func:`pybragg.io.reflections.expand_to_p1`).
"""

from __future__ import annotations

import math
import os

import numpy as np

from .errors import FormatError, describe_path
from .reflections import Reflections, _cell, _gemmi, check_file_size

HC_EV_ANGSTROM = 12398.42


def read_model(path: str | os.PathLike[str]):
    """The gemmi Structure of a PDB or mmCIF coordinate file, with cell and symmetry set up."""
    gemmi = _gemmi()
    name = describe_path(path)
    check_file_size(path)
    try:
        st = gemmi.read_structure(os.fspath(path))
    except (RuntimeError, ValueError, OSError) as exc:
        raise FormatError(f"{name}: not a readable PDB or mmCIF coordinate file: {exc}") from None
    if len(st) == 0 or not any(True for _ in _atoms(st[0])):
        raise FormatError(f"{name}: the model holds no atoms")
    if not st.cell.is_crystal() or not st.cell.a > 0:
        raise FormatError(f"{name}: the model has no unit cell (CRYST1 or _cell)")
    if st.find_spacegroup() is None:
        raise FormatError(f"{name}: unknown space group {st.spacegroup_hm!r}")
    st.setup_cell_images()
    return st


def _atoms(model):
    for chain in model:
        for residue in chain:
            yield from residue


def model_space_group(st) -> str:
    """The model's space group name (Hermann-Mauguin)."""
    return st.find_spacegroup().xhm()


def model_cell(st) -> tuple[float, float, float, float, float, float]:
    """The model's unit cell (Angstrom, degrees)."""
    return _cell(st.cell)


def model_reflections(st, d_min: float, *, anomalous: bool = False, wavelength: float = 1.0e-10,
                      name: str = "model") -> Reflections:
    """Amplitudes of the asymmetric unit of ``st`` out to ``d_min`` (Angstrom).

    With ``anomalous`` the amplitudes of the Friedel mates are computed too (``F_minus``).
    """
    gemmi = _gemmi()
    if not d_min > 0:
        raise ValueError("d_min must be positive")
    from pybragg.memory import check_allocation

    # the dense P1 grid the amplitudes end in spans about 2a/d x 2b/d x 2c/d indices: check it before
    # gemmi lists the reflections (and this computes them one by one)
    extent = [2 * int(length / d_min) + 3 for length in (st.cell.a, st.cell.b, st.cell.c)]
    check_allocation(8.0 * extent[0] * extent[1] * extent[2],
                     f"{name}: the structure-factor grid out to {d_min:.3g} A (about {extent[0]} x {extent[1]} x "
                     f"{extent[2]})")
    sg = st.find_spacegroup()
    hkl = np.asarray(gemmi.make_miller_array(st.cell, sg, d_min, 0.0, True), dtype=np.int64)
    if len(hkl) == 0:
        raise FormatError(f"{name}: no reflections out to {d_min:g} A")
    model = st[0].clone() if hasattr(st[0], "clone") else st[0]
    for atom in _atoms(model):
        atom.aniso = gemmi.SMat33f(0, 0, 0, 0, 0, 0)  # isotropic B only
    calc = gemmi.StructureFactorCalculatorX(st.cell)
    F_plus = np.array([calc.calculate_sf_from_model(model, [int(h), int(k), int(l)]) for h, k, l in hkl])
    F_minus = None
    if anomalous:
        energy = HC_EV_ANGSTROM / (wavelength * 1e10)
        elements = {atom.element.name: atom.element for atom in _atoms(model)}
        fprime = {}
        fdouble = {}
        for el_name, el in elements.items():
            fp, fpp = gemmi.cromer_liberman(el.atomic_number, energy)
            fprime[el_name], fdouble[el_name] = fp, fpp
        for el in elements.values():
            calc.addends.set(el, fprime[el.name])
        real_plus = [calc.calculate_sf_from_model(model, [int(h), int(k), int(l)]) for h, k, l in hkl]
        real_minus = [calc.calculate_sf_from_model(model, [-int(h), -int(k), -int(l)]) for h, k, l in hkl]
        # f'' enters as i * (its own structure factor): the difference between addends f'' and none
        calc.addends.clear()
        base_plus = F_plus
        base_minus = np.array([calc.calculate_sf_from_model(model, [-int(h), -int(k), -int(l)]) for h, k, l in hkl])
        for el in elements.values():
            calc.addends.set(el, fdouble[el.name])
        dbl_plus = np.array([calc.calculate_sf_from_model(model, [int(h), int(k), int(l)]) for h, k, l in hkl])
        dbl_minus = np.array([calc.calculate_sf_from_model(model, [-int(h), -int(k), -int(l)]) for h, k, l in hkl])
        calc.addends.clear()
        F_plus = np.asarray(real_plus) + 1j * (dbl_plus - base_plus)
        F_minus = np.abs(np.asarray(real_minus) + 1j * (dbl_minus - base_minus))
    return Reflections(hkl=hkl, F=np.abs(F_plus), F_minus=F_minus, cell=model_cell(st),
                       space_group=model_space_group(st), label="F(model)")


def corner_resolution(geometry, sources: np.ndarray | None, wavelength: float) -> float:
    """The finest d-spacing (Angstrom) any pixel corner of the detector sees, over every source."""
    from .frames import panels_of

    corners = []
    for panel in panels_of(geometry):
        for f in (0, panel.fpixels):
            for s in (0, panel.spixels):
                corners.append(panel.origin + f * panel.pixel_size * panel.fast + s * panel.pixel_size * panel.slow)
    pts = np.asarray(corners)
    pts = pts / np.linalg.norm(pts, axis=1, keepdims=True)
    beam = np.asarray(geometry.beam, dtype=np.float64)
    incident = [beam / np.linalg.norm(beam)]
    lam = [wavelength]
    if sources is not None and len(sources):
        src = np.asarray(sources, dtype=np.float64)
        for row in src:
            direction = -row[:3]
            n = float(np.linalg.norm(direction))
            if n > 0:
                incident.append(direction / n)
            if math.isfinite(row[4]) and row[4] > 0:
                lam.append(float(row[4]))
    cos2t = min(float(np.min(pts @ d)) for d in incident)
    two_theta = math.acos(max(-1.0, min(1.0, cos2t)))
    s_max = 2.0 * math.sin(two_theta / 2.0) / min(lam)
    if not s_max > 0:
        return math.inf
    return 1e10 / s_max
