"""Detectors read from files: ``-geom`` (CrystFEL) and ``-expt`` (DIALS) -> ``DetectorConfig.panels``.

Applied after every flag (pass 3 of :func:`~pybragg.flags.parse.parse_args`) and before ``-mat``
is converted, so that the wavelength the file gives is the one the matrix sees.  Command-line
flags win over the file: ``-lambda``/``-energy`` over its wavelength, ``-distance`` sets the
camera length (every panel moves along the beam, keeping its offset), and with ``-expt`` the
beam, polarization, spindle, scan, crystal and sensor flags over the experiment's models.  The
flags that place the one flag-defined panel (pixel counts and size, beam centre, origin and
axes, pivot, named conventions) are refused: the file places every panel.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from ..config import Convention, PanelConfig
from ..errors import UsageError
from ..io.errors import FormatError

if TYPE_CHECKING:
    from ..io.crystfel import CrystfelGeometry, LabPanel

#: flags whose only job is to place the flag-defined panel (or to pick the axes of a named
#: convention), which a detector read from a file replaces
PLACING_FLAGS = (
    "-detpixels", "-detpixels_f", "-detpixels_s", "-detsize", "-detsize_f", "-detsize_s", "-pixel",
    "-Xbeam", "-Ybeam", "-Xclose", "-Yclose", "-ORGX", "-ORGY", "-close_distance", "-pivot",
    "-pix0_vector", "-pix0_vector_mm", "-fdet_vector", "-sdet_vector", "-odet_vector",
    "-mosflm", "-xds", "-dials", "-adxv", "-denzo",
)


@dataclass
class GeometryTemplate:
    """What ``-geomfile`` keeps of a ``-geom`` file: its model (bad regions, groups), its panels as
    read (edge masks, ``no_index``, ADU scales) and the camera length in use."""

    geometry: CrystfelGeometry
    panels: list[LabPanel] = field(default_factory=list)
    clen: float | None = None


def panel_config(lp: LabPanel) -> PanelConfig:
    """The configuration of one panel read from a file."""
    return PanelConfig(name=lp.name, fpixels=lp.fpixels, spixels=lp.spixels, pixel_size=lp.pixel_size,
                       origin=lp.origin, fdet=lp.fdet, sdet=lp.sdet, data_fast=lp.data_fast,
                       data_slow=lp.data_slow)


def _refuse_placing(names: set[str], flag: str) -> None:
    for name in PLACING_FLAGS:
        if name in names:
            raise UsageError(f"{name} places the flag-defined detector, which {flag} replaces: the file places "
                             "every panel (leave it out; -distance moves the whole detector)")


def _custom_axes(inv, names: set[str]) -> None:
    """A CUSTOM convention set by a vector flag keeps MOSFLM's two-theta axis unless one is given
    (CrystFEL's and the experiment list's frames are MOSFLM's)."""
    det = inv.config.detector
    if det.convention == Convention.CUSTOM and "-twotheta_axis" not in names:
        from ..constants import CONVENTION_AXES

        det.twotheta_axis = CONVENTION_AXES[Convention.MOSFLM].twotheta_axis


def apply_detector_files(inv, names: set[str]) -> None:
    """Fill ``inv.config.detector.panels`` (and what else the file gives) from ``-geom`` or ``-expt``."""
    geom_path = getattr(inv, "geom_path", None)
    expt_path = getattr(inv, "expt_path", None)
    if geom_path is not None and expt_path is not None:
        raise UsageError("-geom and -expt both give the detector: give one of them")
    if geom_path is not None:
        _refuse_placing(names, "-geom")
        _apply_geom(inv, geom_path, names)
    elif expt_path is not None:
        _refuse_placing(names, "-expt")
        _apply_expt(inv, expt_path, names)
    if geom_path is not None or expt_path is not None:
        from ..simulator import check_detector_memory

        # before the data array's mask is made from the file's bad regions
        check_detector_memory(inv.config, inv)


def _apply_geom(inv, path: str, names: set[str]) -> None:
    from ..io.crystfel import lab_panels, read_geometry  # here: only -geom needs the CrystFEL reader

    try:
        geom = read_geometry(path)
    except FormatError as exc:
        raise FormatError(f"-geom: {exc}") from None
    beam = inv.config.beam
    det = inv.config.detector
    try:
        if not names & {"-lambda", "-energy"}:
            wavelength = geom.wavelength()
            if wavelength is not None:
                beam.lambda0 = wavelength
        energy_ev = 12398.42 / (beam.lambda0 * 1e10)
        clen = det.distance if "-distance" in names else None
        panels = lab_panels(geom, clen=clen, photon_energy_ev=energy_ev)
    except FormatError as exc:
        raise FormatError(f"-geom {path}: {exc}") from None
    det.panels = tuple(panel_config(p) for p in panels)
    _custom_axes(inv, names)
    first = geom.panels[0].get("clen")
    inv.geometry = geom
    inv.geometry_panels = panels
    inv.outputs.geom_template = GeometryTemplate(
        geom, panels, clen if clen is not None else (float(first) if isinstance(first, float) else None))  # type: ignore[arg-type]


def _apply_expt(inv, path: str, names: set[str]) -> None:
    from ..io.crystfel import LabPanel
    from ..io.expt import read_expt

    try:
        model = read_expt(path)
    except FormatError as exc:
        raise FormatError(f"-expt: {exc}") from None
    cfg = inv.config
    det, beam, crystal = cfg.detector, cfg.beam, cfg.crystal
    panels = list(model.panels)
    direction = np.asarray(model.beam if model.beam is not None and "-beam_vector" not in names
                           else beam.beam_vector, dtype=np.float64)
    direction = direction / np.linalg.norm(direction)
    if "-distance" in names:
        # move the detector along the beam until panel 0's plane lies -distance from the sample
        p0 = panels[0]
        normal = np.cross(p0.fdet, p0.sdet)
        along = float(direction @ normal)
        if abs(along) < 1e-12:
            raise UsageError(f"-distance: panel {p0.name} of -expt {path} is parallel to the beam")
        shift = (det.distance - float(np.asarray(p0.origin) @ normal) / along) * direction
        panels = [LabPanel(**{**p.__dict__, "origin": tuple(float(x) for x in np.asarray(p.origin) + shift)})
                  for p in panels]
    det.panels = tuple(panel_config(p) for p in panels)
    det.convention = Convention.CUSTOM
    if model.beam is not None and "-beam_vector" not in names:
        beam.beam_vector = model.beam
    if model.polar is not None and "-polar_vector" not in names:
        beam.polar_vector = model.polar
    if model.polarization is not None and not names & {"-polar", "-nopolar"}:
        beam.polarization = model.polarization
    if model.spindle is not None and "-spindle_axis" not in names:
        crystal.spindle_axis = model.spindle
    _custom_axes(inv, names)
    if model.wavelength is not None and not names & {"-lambda", "-energy"}:
        beam.lambda0 = model.wavelength
    if model.thickness is not None and "-detector_thick" not in names \
            and not ("-detector_absorb" in names and det.mu == 0.0):
        det.thick = model.thickness
    if model.mu is not None and "-detector_absorb" not in names:
        det.mu = model.mu
    if model.phi0 is not None and "-phi" not in names:
        crystal.phi0 = model.phi0
    if model.osc is not None and model.osc > 0 and "-osc" not in names:
        crystal.osc = model.osc
    recip = model.reciprocal
    if recip is not None and not names & {"-cell", "-mat"}:
        crystal.has_matrix = True
        crystal.a_star, crystal.b_star, crystal.c_star = recip
    if model.mosaic_spread is not None and not names & {"-mosaic"}:
        crystal.mosaic_spread = model.mosaic_spread
    inv.expt = model
    inv.geometry_panels = panels
    if model.n_experiments > 1:
        inv.notices.append(f"-expt {path}: the list holds {model.n_experiments} experiments; the first is used")


def data_shape(panels) -> tuple[int, int]:
    """(slow, fast) pixels of the data array that ``panels`` fill."""
    return (max(p.data_slow + p.spixels for p in panels), max(p.data_fast + p.fpixels for p in panels))


def file_mask(inv) -> np.ndarray | None:
    """The data-array mask (uint8, 1 = render) a detector file gives: the bad regions, edge masks
    and ``no_index`` panels of a ``-geom``, the untrusted rectangles of an ``-expt``; None when it
    gives none."""
    panels = getattr(inv, "geometry_panels", None)
    if not panels:
        return None
    shape = data_shape(panels)
    geom = getattr(inv, "geometry", None)
    if geom is not None:
        from ..io.crystfel import bad_pixel_mask

        try:
            bad = bad_pixel_mask(geom, panels, shape)
        except FormatError as exc:
            raise FormatError(f"-geom {inv.geom_path}: {exc}") from None
    else:
        model = getattr(inv, "expt", None)
        if model is None or not model.masks:
            return None
        bad = np.zeros(shape, dtype=bool)
        for s0, s1, f0, f1 in model.masks:
            bad[s0:s1 + 1, f0:f1 + 1] = True
    if not bad.any():
        return None
    return (~bad).astype(np.uint8)


__all__ = ["PLACING_FLAGS", "GeometryTemplate", "apply_detector_files", "data_shape", "file_mask", "panel_config"]
