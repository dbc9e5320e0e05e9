"""Constants shared by every engine, read once from the C library (``pb_get_constants``,
``pb_convention_axes``), so that there is one source for each.

* ``R_E_SQR`` -- Thomson cross-section, the classical electron radius squared (m^2);
* ``AVOGADRO`` (1/mol), ``WATER_F`` (structure factor of a water molecule), ``WATER_MW``
  (g/mol), ``WATER_DENSITY`` (g/m^3): the water background;
* ``ROUND_SCALE``, ``GAUSS_SCALE``, ``TOPHAT_RADIUS_SQR``: the spot shapes' constants;
* ``SOURCE_DISTANCE`` -- distance of generated sources from the sample (m);
* ``RAD2DEG`` -- degrees per radian, exactly as the engine converts;
* ``CONVENTION_AXES`` -- for each named :class:`~pybragg.config.Convention` (not CUSTOM, whose
  axes come from the configuration) its :class:`ConventionAxes`: beam, fdet, sdet, odet,
  twotheta_axis, polar, spindle as 3-tuples of floats.
"""

from __future__ import annotations

from typing import NamedTuple

from pybragg._native import check, native
from pybragg.config import Convention, Vec3

__all__ = [
    "AVOGADRO", "CONVENTION_AXES", "GAUSS_SCALE", "RAD2DEG", "ROUND_SCALE", "R_E_SQR", "SOURCE_DISTANCE",
    "TOPHAT_RADIUS_SQR", "WATER_DENSITY", "WATER_F", "WATER_MW", "ConventionAxes",
]


class ConventionAxes(NamedTuple):
    """The axes a named convention fixes (unit vectors, lab frame), in ``PB_AXIS_*`` order."""

    beam: Vec3
    fdet: Vec3
    sdet: Vec3
    odet: Vec3
    twotheta_axis: Vec3
    polar: Vec3
    spindle: Vec3


def _constants() -> dict[str, float]:
    ffi, lib = native()
    c = lib.pb_get_constants()
    return {name: float(getattr(c, name)) for name, _ in ffi.typeof("pb_constants").fields}


def _convention_axes() -> dict[Convention, ConventionAxes]:
    ffi, lib = native()
    out = {}
    for conv in Convention:
        if conv == Convention.CUSTOM:
            continue
        axes = ffi.new("double[7][3]")
        err = ffi.new("pb_error *")
        check(lib.pb_convention_axes(int(conv), axes, err), err)
        out[conv] = ConventionAxes(*(tuple(float(x) for x in axes[i]) for i in range(lib.PB_N_AXES)))
    return out


_C = _constants()
R_E_SQR: float = _C["r_e_sqr"]
AVOGADRO: float = _C["avogadro"]
WATER_F: float = _C["water_F"]
WATER_MW: float = _C["water_mw"]
WATER_DENSITY: float = _C["water_density"]
ROUND_SCALE: float = _C["round_scale"]
GAUSS_SCALE: float = _C["gauss_scale"]
TOPHAT_RADIUS_SQR: float = _C["tophat_radius_sqr"]
SOURCE_DISTANCE: float = _C["source_distance"]
RAD2DEG: float = _C["rad2deg"]
del _C

CONVENTION_AXES: dict[Convention, ConventionAxes] = _convention_axes()
