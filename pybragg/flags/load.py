"""Reading the files a command line names into :class:`~pybragg.inputs.Inputs`."""

from __future__ import annotations

import dataclasses
import math
import os

import numpy as np

from pybragg.config import SampleConfig
from pybragg.errors import ResourceLimitError, UsageError
from pybragg.inputs import Inputs
from pybragg.io.errors import FormatError
from pybragg.io.hkl import HKLTable, read_fdump, read_hkl, write_fdump
from pybragg.io.smv import read_smv
from pybragg.io.sources import read_source_file

#: how far a file's cell may differ from -cell and still be the same cell (rounding)
CELL_LENGTH_TOLERANCE = 0.05    # Angstrom, or this fraction of the length if larger:
CELL_LENGTH_FRACTION = 5e-4
CELL_ANGLE_TOLERANCE = 0.05     # degrees


def load_inputs(inv, write_dump: bool = False) -> Inputs:
    """Structure factors, sources and mask for a parsed command line.

    Like the reference: ``-hkl`` is read (and cached to the dump file when
    ``write_dump``); without ``-hkl`` an existing dump file is read back; with
    neither, ``-default_F`` must be non-zero.  An MTZ or structure-factor mmCIF ``-hkl``
    and a ``-pdb`` model are expanded to P1; their cell (and space group) is used when
    neither ``-cell`` nor ``-mat`` is given, and must agree with ``-cell`` when it is.
    """
    from pybragg.flags.parse import check_invocation
    from pybragg.simulator import check_detector_memory

    check_invocation(inv)
    check_detector_memory(inv.config, inv)  # before any file is read: a detector too large is refused first
    crystal = inv.config.crystal
    hkl = None
    space_group = None
    file_cell = None
    dump = inv.outputs.dumpfile
    pdb_path = getattr(inv, "pdb_path", None)
    if inv.hkl_path is not None:
        from pybragg.io.reflections import p1_table, read_reflections, reflection_format

        if reflection_format(inv.hkl_path) is None:
            if getattr(inv, "hkl_column", None) is not None:
                raise UsageError(f"-hkl_column: {inv.hkl_path} is a text table (h k l F): it has no columns to choose")
            try:
                hkl = read_hkl(inv.hkl_path, default_F=crystal.default_F)
            except ResourceLimitError as exc:
                raise ResourceLimitError(f"-hkl: {exc}") from None
        else:
            refl = _named("-hkl", lambda: read_reflections(inv.hkl_path, getattr(inv, "hkl_column", None)))
            space_group, file_cell = refl.space_group, refl.cell
            _take_cell(inv, "-hkl", inv.hkl_path, file_cell)
            hkl = _named("-hkl", lambda: p1_table(refl, crystal.default_F, inv.hkl_path))
        if write_dump and dump:
            write_fdump(dump, hkl)
    elif pdb_path is not None:
        hkl, space_group, file_cell = _model_table(inv, pdb_path)
        if write_dump and dump:
            write_fdump(dump, hkl)
    elif dump and os.path.exists(dump):
        hkl = read_fdump(dump)
    elif crystal.default_F == 0.0:
        raise UsageError("no structure factors: give -hkl FILE or a non-zero -default_F")
    if not (crystal.has_cell or crystal.has_matrix):
        raise UsageError("no unit cell: give -cell a b c alpha beta gamma or -mat FILE")
    sources = read_source_file(inv.source_path) if inv.source_path is not None else None
    mask = _mask(inv)
    stol = None
    if inv.stol_path is not None:
        from pybragg.io.stol import read_stol

        stol = read_stol(inv.stol_path, float(inv.extras.get("stol_scale", 1e10)))
    return Inputs(hkl=hkl, sources=sources, mask=mask, space_group=space_group, cell=file_cell, stol=stol)


def background_sample(inv) -> SampleConfig:
    """The amorphous sample of ``-stol``'s background: ``-bg_thick``, ``-bg_width``, ``-bg_height``
    (``-bg_size``), ``-density``, ``-MW``, ``-bg_molecules``; nonBragg's defaults (0.1 mm of water)."""
    x = inv.extras
    default = SampleConfig()
    molecules = float(x.get("bg_molecules", 0.0))
    return SampleConfig(
        thickness=float(x.get("bg_thickness", default.thickness)),
        width=float(x.get("bg_width", default.width)),
        height=float(x.get("bg_height", default.height)),
        density=float(x.get("density", default.density)),
        molecular_weight=float(x.get("molecular_weight", default.molecular_weight)),
        molecules=molecules or None,
    )


def add_background(sim, result):
    """The Bragg ``result`` of ``sim`` (built by :func:`pybragg.from_args`) with the amorphous background
    of its ``-stol`` table added, pixel by pixel in float32 (:func:`pybragg.background.render`, on the
    engine that rendered the spots); ``result`` itself without ``-stol``."""
    if sim.inputs.stol is None:
        return result
    from pybragg import background

    backend = "torch" if result.backend == "torch" else "c"
    spots_seconds = result.seconds
    both = background.render(sim.config, sim.inputs, background_sample(sim.invocation), onto=result,
                             backend=backend, dtype=sim.dtype, device=sim.device, threads=sim.threads)
    # the statistics of the combined image; the solid angle and the fallbacks of the spots' render
    both.stats = dataclasses.replace(both.stats, omega_sum=result.stats.omega_sum,
                                     interpolation_fallbacks=result.stats.interpolation_fallbacks)
    both.extras = {**result.extras, **both.extras, "spots_seconds": spots_seconds,
                   "background_seconds": both.seconds}
    both.seconds = spots_seconds + both.seconds
    both.backend, both.dtype, both.device = result.backend, result.dtype, result.device
    return both


def _mask(inv) -> np.ndarray | None:
    """The pixels to render (uint8, 1 = render) over the detector's data array: ``-mask`` (an SMV
    image of the data array) and the bad regions a ``-geom``/``-expt`` file gives, both applied."""
    from pybragg.flags.panels import data_shape, file_mask

    mask = None
    if inv.mask_path is not None:
        mask = (read_smv(inv.mask_path).data != 0).astype(np.uint8)
        panels = getattr(inv, "geometry_panels", None)
        if panels:
            shape = data_shape(panels)
            if mask.shape != shape:
                raise FormatError(f"-mask {inv.mask_path}: {mask.shape[1]} x {mask.shape[0]} pixels (fast x slow), "
                                 f"the detector's data array {shape[1]} x {shape[0]}")
    bad = file_mask(inv)
    if bad is not None:
        mask = bad if mask is None else mask & bad
    return mask


def _named(flag: str, read):
    """Run a reader, naming the flag in its error."""
    try:
        return read()
    except FormatError as exc:
        raise FormatError(f"{flag}: {exc}") from None
    except ResourceLimitError as exc:
        raise ResourceLimitError(f"{flag}: {exc}") from None


def _take_cell(inv, flag: str, path: str, cell: tuple[float, ...]) -> None:
    """Use a file's cell when the command line gives none; check it against -cell when it does."""
    crystal = inv.config.crystal
    if crystal.has_matrix:
        return
    if not crystal.has_cell:
        crystal.has_cell = True
        crystal.cell = (cell[0] * 1e-10, cell[1] * 1e-10, cell[2] * 1e-10,
                        math.radians(cell[3]), math.radians(cell[4]), math.radians(cell[5]))
        return
    given = (crystal.cell[0] * 1e10, crystal.cell[1] * 1e10, crystal.cell[2] * 1e10,
             *(math.degrees(x) for x in crystal.cell[3:]))
    for k in range(3):
        tol = max(CELL_LENGTH_TOLERANCE, CELL_LENGTH_FRACTION * cell[k])
        if abs(given[k] - cell[k]) > tol:
            raise UsageError(_cell_mismatch(flag, path, given, cell))
    for k in range(3, 6):
        if abs(given[k] - cell[k]) > CELL_ANGLE_TOLERANCE:
            raise UsageError(_cell_mismatch(flag, path, given, cell))


def _cell_mismatch(flag: str, path: str, given, cell) -> str:
    show = " ".join(f"{x:g}" for x in given)
    theirs = " ".join(f"{x:g}" for x in cell)
    return f"-cell {show} disagrees with the cell of {flag} {path} ({theirs}); give the file's cell or leave -cell out"


def _model_table(inv, path: str) -> tuple[HKLTable, str, tuple[float, ...]]:
    """Structure factors of a -pdb model out to the detector's corners, expanded to P1."""
    from pybragg.io.reflections import p1_table
    from pybragg.io.structure import corner_resolution, model_cell, model_reflections, read_model
    from pybragg.plan import Plan

    st = _named("-pdb", lambda: read_model(path))
    cell = model_cell(st)
    _take_cell(inv, "-pdb", path, cell)
    plan = Plan(inv.config, Inputs())
    g = plan.geometry
    d_corner = corner_resolution(g, plan.sources, g.lambda0)
    if g.dmin > 0:
        d_corner = max(d_corner, g.dmin * 1e10)
    # reach past the corners by two reciprocal cells, so that every reflection a pixel rounds to
    # (and the tricubic neighbourhood of it) is in the table
    star = sum(float(np.linalg.norm(v)) for v in (g.a_star, g.b_star, g.c_star))  # 1/Angstrom
    d_table = 1.0 / (1.0 / d_corner + 2.0 * star) if math.isfinite(d_corner) else 1.0 / (2.0 * star)
    refl = _named("-pdb", lambda: model_reflections(st, d_table, anomalous=bool(getattr(inv, "pdb_anomalous", False)),
                                                    wavelength=g.lambda0, name=path))
    table = _named("-pdb", lambda: p1_table(refl, inv.config.crystal.default_F, path))
    return table, refl.space_group, cell
