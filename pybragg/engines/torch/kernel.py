"""The pixel kernel of the torch engine (``render_pixel`` of ``csrc/kernel.c``), on chunks of pixels.

:func:`pixel_photons` computes the photons of a chunk of one panel's pixels: tensors
over (pixel, layer x sub-pixel, source, orientation), with the orientation axis
(phi steps x mosaic domains) innermost.  Quantities of a sub-pixel (position, solid
angle, capture fraction) and of a (sub-pixel, source) pair (polarization,
resolution cut) are computed once and broadcast over orientations; the Miller
indices are ``(a . diffracted - a . incident) / lambda``, the first term one
matrix product per chunk.  The C engine's rule for the un-oversampled factors is
kept: without ``oversample_omega`` the pixel is scaled by the first non-zero solid
angle of its sub-pixels (in loop order), without ``oversample_thick`` by the first
non-zero capture fraction of the last layer's sub-pixels, and without
``oversample_polar`` by the first non-zero polarization among the (layer,
sub-pixel, source) triples that passed the ``dmin`` cut (0 when none did).

Every formula is written once.  The orientation-level work, where the time goes,
has a second form for rendering without gradients (:func:`orientation_sum_`): in
scratch tensors, in place, the square lattice factor stacked over the axes and the
table look-up unclamped where that is needless.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from pybragg.config import Shape
from pybragg.engines.torch import structure_factors as sf
from pybragg.engines.torch.geometry import DetectorState, Panel
from pybragg.engines.torch.lattice import Lattice, lattice_factor, square_lattice_
from pybragg.engines.torch.sources import Sources
from pybragg.engines.torch.vec import Scratch, dot_components, rotate_axis_components


@dataclass(frozen=True)
class KernelSetup:
    """What the kernel needs that no parameter changes (from the plan and the configuration)."""

    dtype: torch.dtype
    device: torch.device
    sources: Sources
    table: sf.SFTable | None
    default_F: float
    interpolate: bool
    curved: bool
    point_pixel: bool
    oversample_thick: bool
    oversample_polar: bool
    oversample_omega: bool
    thick: float
    dmin: float
    nopolar: bool
    water: bool
    n_orient: int


@dataclass(frozen=True)
class RenderState:
    """Everything the kernel needs for one parameter set that does not depend on the pixel.

    ``detectors``: one per panel; ``orientations`` (No, abc, xyz) rows a, b, c (m);
    ``wavelength`` (Ns,); ``hkl_coef`` and ``hkl_bias``: h = a . diffracted / lambda -
    a . incident / lambda for every (axis, orientation, source) as the coefficients of
    the diffracted direction's x, y, z and the offset, laid out (abc, No, Ns, 1) to
    broadcast over a chunk's (pixel x sub-pixel) axis; ``axis_length``: the longest a,
    b, c over the orientations (m), which bounds the Miller indices; ``kahn``: the
    polarization factor; ``I_bg`` the water background, ``scale`` r_e^2 fluence.
    """

    detectors: tuple[DetectorState, ...]
    orientations: torch.Tensor
    wavelength: torch.Tensor
    hkl_coef: tuple[torch.Tensor, torch.Tensor, torch.Tensor]
    hkl_bias: torch.Tensor
    axis_length: tuple[float, float, float]
    lattice: Lattice
    kahn: torch.Tensor
    I_bg: torch.Tensor
    scale: torch.Tensor


def first_nonzero(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Along the last axis: the first non-zero value (0 when none) and its index."""
    first = x[..., 0]
    if x.shape[-1] == 1 or bool((first != 0).all()):
        return first, torch.zeros(first.shape, dtype=torch.int64, device=x.device)
    idx = (x != 0).to(torch.uint8).argmax(dim=-1, keepdim=True)
    return x.gather(-1, idx).squeeze(-1), idx.squeeze(-1)


def sum_halving(x: torch.Tensor) -> torch.Tensor:
    """Sum over the first axis by halving.

    Elementwise additions only, so that every element's sum is the same whatever the
    other axes' sizes (a reduction's order depends on them); log2(n) operations.
    """
    n = x.shape[0]
    while n > 1:
        h = n // 2
        x = torch.cat((x[:h] + x[n - h:n], x[h:n - h]))
        n -= h
    return x[0]


def sum_halving_(x: torch.Tensor) -> torch.Tensor:
    """:func:`sum_halving` in place (``x`` is overwritten; the same sums)."""
    n = x.shape[0]
    while n > 1:
        h = n // 2
        x[:h].add_(x[n - h:n])
        n -= h
    return x[0]


def per_m(x: torch.Tensor) -> torch.Tensor:
    """(No, Ns, Q[, 3]) -> (Q x Ns, No[, 3]) in the C engine's loop order (for the recorder)."""
    x = x.permute(2, 1, 0, 3) if x.dim() == 4 else x.permute(2, 1, 0)
    return x.reshape((x.shape[0] * x.shape[1], x.shape[2]) + tuple(x.shape[3:]))


def subpixels(setup: KernelSetup, det: DetectorState, panel: Panel, pix: torch.Tensor,
              rec: Any = None) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor | None]:
    """Per (pixel, sub-pixel), (P, T) each: diffracted direction (x, y, z), solid angle, capture fraction."""
    P, T = pix.shape[0], panel.n_sub
    f, s = pix % panel.fpixels, torch.div(pix, panel.fpixels, rounding_mode="floor")
    Fdet = panel.fdet_of_column.index_select(0, f)  # (P, os)
    Sdet = panel.sdet_of_row.index_select(0, s)
    fdet, sdet, odet, pix0 = det.fdet, det.sdet, det.odet, det.pix0
    pos = []
    for i in range(3):
        c = Fdet[:, None, None, :] * fdet[i] + Sdet[:, None, :, None] * sdet[i]  # (P, 1, os, os)
        if panel.layers > 1:
            c = c + panel.odet_offsets[None, :, None, None] * odet[i]
        pos.append((c + pix0[i]).reshape(P, T))
    if setup.curved:
        dist = det.distance
        start = det.beam * dist
        mid = rotate_axis_components((start[0], start[1], start[2]), sdet, pos[1] / dist)
        pos = list(rotate_axis_components(mid, fdet, pos[2] / dist))
    airpath = torch.sqrt(dot_components(pos, pos))
    dif = [c / airpath for c in pos]
    if setup.point_pixel:
        omega = 1.0 / airpath / airpath
    else:
        px = panel.pixel_size
        omega = px * px / airpath / airpath * det.close / airpath
    capture = None
    if setup.oversample_thick or setup.thick != 0.0:
        parallax = dot_components(dif, odet)
        capture = torch.exp(panel.capture_c1 / parallax) - torch.exp(panel.capture_c2 / parallax)
    if rec is not None:
        for name, value in (("Fdet", Fdet), ("Sdet", Sdet), ("Odet", panel.odet_offsets),
                            ("position", torch.stack(pos, -1)), ("diffracted", torch.stack(dif, -1)),
                            ("airpath", airpath), ("omega", omega), ("capture", capture)):
            rec.put(name, value)
    return dif, omega, capture


def source_terms(setup: KernelSetup, state: RenderState, dif: Sequence[torch.Tensor],
                 rec: Any = None) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Per (pixel, sub-pixel, source), (P, T, Ns): passed the resolution cut (None: no cut), polarization."""
    src = setup.sources
    d3 = [c[:, :, None] for c in dif]
    passed = None
    if setup.dmin > 0.0 or rec is not None:
        lam = state.wavelength
        S = [(d3[k] - src.incident[:, k]) / lam for k in range(3)]
        stol = 0.5 * torch.sqrt(dot_components(S, S))
        if rec is not None:
            for name, value in (("incident", src.incident), ("lambda", lam),
                                ("scattering", torch.stack(S, -1)), ("stol", stol)):
                rec.put(name, value)
    if setup.dmin > 0.0:
        passed = ~((stol > 0) & (setup.dmin > 0.5 / stol))
    polar = None
    if setup.oversample_polar or not setup.nopolar:
        iu, e_in = src.incident_unit, src.e_in
        cos2t = dot_components(d3, [iu[:, 0], iu[:, 1], iu[:, 2]])
        e_out = dot_components(d3, [e_in[:, 0], e_in[:, 1], e_in[:, 2]])
        cos2t_sqr = cos2t * cos2t
        # cos(2 psi) sin^2(2 theta) = E_out^2 - B_out^2 in the orthonormal frame (inc, E_in,
        # B_in), and E_out^2 + B_out^2 = 1 - cos^2(2 theta) for the unit diffracted direction
        term = torch.addcmul(cos2t_sqr - 1.0, e_out, e_out, value=2.0)
        if src.any_degenerate:
            term = torch.where(src.degenerate, 1 - cos2t_sqr, term)
        polar = 0.5 * (1.0 + cos2t_sqr - state.kahn * term)
    if rec is not None:
        rec.put("passed", passed)
        rec.put("polarization", polar)
    return passed, polar


def pixel_photons(setup: KernelSetup, state: RenderState, panel: Panel, pix: torch.Tensor, *,
                  stats: bool = False, scratch: Scratch | None = None, piece: int | None = None,
                  rec: Any = None) -> tuple[torch.Tensor, torch.Tensor | None, int | None]:
    """Photons of ``panel``'s pixels with flat indices ``pix`` (and their omega sum, fallbacks).

    With ``scratch`` (rendering without gradients) the orientation-level work runs
    in place (:func:`orientation_sum_`), in pieces of ``piece`` (pixel x sub-pixel)
    elements; otherwise it is differentiable.  ``rec`` (None in rendering) keeps the
    intermediate tensors for the trace.  ``stats``: also the omega sum and the
    interpolation fallbacks.
    """
    T, Ns, No = panel.n_sub, setup.sources.n, setup.n_orient
    P = pix.shape[0]
    det = state.detectors[panel.index]
    dif, omega, capture = subpixels(setup, det, panel, pix, rec)
    passed, polar = source_terms(setup, state, dif, rec)

    # ---- per (pixel, sub-pixel, source, orientation)
    Q = P * T
    dq = [c.reshape(1, 1, 1, Q) for c in dif]
    passed_t = passed.reshape(Q, Ns).t() if passed is not None else None
    if scratch is None:
        I_sub, FF, fallbacks = orientation_sum(setup, state, dq, passed_t, stats, rec)
    else:
        inside = (setup.table is not None and setup.device.type == "cpu"
                  and sf.indices_inside_table(setup.table, state.axis_length, setup.sources.incident,
                                              state.wavelength, dif))
        if piece is None or piece >= Q:
            I_sub, fallbacks = orientation_sum_(setup, state, dq, passed_t, stats, inside, scratch)
        else:
            I_sub = torch.empty((Ns, Q), dtype=setup.dtype, device=setup.device)
            fallbacks = 0 if setup.interpolate and stats else None
            for q0 in range(0, Q, piece):
                part, fb = orientation_sum_(setup, state, [c[..., q0:q0 + piece] for c in dq],
                                            passed_t[:, q0:q0 + piece] if passed_t is not None else None,
                                            stats, inside, scratch)
                I_sub[:, q0:q0 + piece] = part
                if fb is not None:
                    fallbacks += fb
    if setup.table is None:
        I_sub = I_sub * (setup.default_F * setup.default_F)
    I_sub = I_sub.t().reshape(P, T, Ns)

    # ---- weights and the pixel's sum
    weight = None
    if setup.oversample_thick:
        weight = capture[:, :, None]
    if setup.oversample_polar:
        weight = polar if weight is None else weight * polar
    if setup.oversample_omega:
        weight = omega[:, :, None] if weight is None else weight * omega[:, :, None]
    if weight is not None:
        I_sub = I_sub * weight
    if passed is not None:
        I_sub = torch.where(passed, I_sub, torch.zeros_like(I_sub))
    if rec is not None:
        # each orientation's term of the sum, with the factors the sum applies to it
        term = per_m(FF).view(P, T, Ns, No)
        if setup.table is None:
            term = term * (setup.default_F * setup.default_F)
        if weight is not None:
            term = term * weight[..., None]
        if passed is not None:
            term = torch.where(passed[..., None], term, torch.zeros_like(term))
        rec.put("term", term)  # (P, T, Ns, No)
    I = state.I_bg + I_sub.sum(dim=(1, 2))
    photons = state.scale * I / panel.steps
    if rec is not None:
        rec.put("I_background", state.I_bg)
        rec.put("I_total", I)
        rec.put("scale", state.scale / panel.steps)
    if not setup.oversample_thick and capture is not None:
        factor = first_nonzero(capture[:, (panel.layers - 1) * panel.oversample**2:])[0]
        photons = photons * factor
        if rec is not None:
            rec.put("capture_applied", factor)
    if not setup.oversample_polar and not setup.nopolar:
        pv = polar if passed is None else torch.where(passed, polar, torch.zeros_like(polar))
        factor = first_nonzero(pv.reshape(P, T * Ns))[0]
        photons = photons * factor
        if rec is not None:
            rec.put("polarization_applied", factor)
    omega_first, omega_idx = first_nonzero(omega)
    if not setup.oversample_omega:
        photons = photons * omega_first
        if rec is not None:
            rec.put("omega_applied", omega_first)
    if rec is not None:
        rec.put("photons", photons)
    omega_sum = None
    if stats:
        if setup.oversample_omega:
            omega_sum = omega.sum()
        else:
            omega_sum = (omega_first * (T - omega_idx).to(setup.dtype)).sum()
    return photons, omega_sum, fallbacks


def _interpolated(setup: KernelSetup, H: torch.Tensor,
                  F_cell: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Tricubic F where its neighbourhood lies in the table, ``F_cell`` elsewhere; and where it did."""
    assert setup.table is not None
    F_interp, ok = sf.tricubic_F(setup.table, list(H.unbind(0)))
    return torch.where(ok, F_interp, F_cell), ok


def _fallbacks(setup: KernelSetup, ok: torch.Tensor, F_latt: torch.Tensor,
               passed_t: torch.Tensor | None) -> int:
    """Interpolations that fell back to the nearest F, counted as the C engine counts them."""
    counted = ~ok
    if not setup.water:
        counted &= F_latt != 0
    if passed_t is not None:
        counted &= passed_t
    return int(counted.sum())


def orientation_sum(setup: KernelSetup, state: RenderState, dq: Sequence[torch.Tensor],
                    passed_t: torch.Tensor | None, stats: bool,
                    rec: Any = None) -> tuple[torch.Tensor, torch.Tensor, int | None]:
    """Sum over orientations of (F_cell F_latt)^2 for diffracted directions ``dq`` (differentiable).

    ``dq``: the x, y, z components, each (1, 1, 1, q) over (pixel x sub-pixel);
    ``passed_t``: (Ns, q) resolution cut or None.  Returns the (Ns, q) sums (without
    default_F^2 when there is no table), the (No, Ns, q) terms they sum, and the
    number of interpolation fallbacks (with ``stats``).  The Miller indices are
    stacked as (abc, No, Ns, q), q innermost (every broadcast then runs along
    contiguous memory): h = a . diffracted / lambda - a . incident / lambda.
    """
    coef, table = state.hkl_coef, setup.table
    H = torch.addcmul(state.hkl_bias, dq[0], coef[0])
    H = torch.addcmul(torch.addcmul(H, dq[1], coef[1]), dq[2], coef[2])
    needs_H0 = state.lattice.shape != Shape.SQUARE or table is not None or rec is not None
    H0 = torch.round(H) if needs_H0 else None
    if rec is not None:
        rec.put("hkl", per_m(H.permute(1, 2, 3, 0)))  # (M, No, 3)
        rec.put("hkl_nearest", per_m(H0.permute(1, 2, 3, 0)))
    F_cell = ok = None
    if table is not None:
        F_cell = sf.nearest_F(table, H0)
        if setup.interpolate:
            F_cell, ok = _interpolated(setup, H, F_cell)
    F_latt = lattice_factor(state.lattice, H, H0, rec)  # (No, Ns, q)
    if rec is not None:
        rec.put("F_latt", per_m(F_latt))
        M = H.shape[-1] * setup.sources.n
        rec.put("F_cell", per_m(F_cell) if F_cell is not None else
                torch.full((M, setup.n_orient), setup.default_F, dtype=setup.dtype))
    fallbacks = _fallbacks(setup, ok, F_latt, passed_t) if ok is not None and stats else None
    F = F_latt if F_cell is None else F_cell * F_latt
    FF = F * F
    return sum_halving(FF), FF, fallbacks


def orientation_sum_(setup: KernelSetup, state: RenderState, dq: Sequence[torch.Tensor],
                     passed_t: torch.Tensor | None, stats: bool, inside: bool,
                     scratch: Scratch) -> tuple[torch.Tensor, int | None]:
    """:func:`orientation_sum` for rendering without gradients: in scratch tensors, in place.

    The square lattice factor runs stacked over the axes (:func:`square_lattice_`);
    ``inside``: every nearest reflection lies in the table (no clamping).  Returns the
    (Ns, q) sums and the fallback count.
    """
    No, Ns, q = setup.n_orient, setup.sources.n, dq[0].shape[-1]
    coef, table, lat = state.hkl_coef, setup.table, state.lattice
    H = torch.addcmul(state.hkl_bias, dq[0], coef[0], out=scratch.get("H", (3, No, Ns, q)))
    H = H.addcmul_(dq[1], coef[1]).addcmul_(dq[2], coef[2])
    H0 = None
    if lat.shape != Shape.SQUARE or table is not None:
        H0 = torch.round(H, out=scratch.get("H0", H.shape))
    F_cell = ok = None
    if table is not None:
        F_cell = sf.nearest_F_(table, H0, scratch, inside)
        if setup.interpolate:
            F_cell, ok = _interpolated(setup, H, F_cell)
    if lat.shape == Shape.SQUARE:
        F_latt = square_lattice_(lat, H, H0, scratch)  # H and H0 are overwritten
    else:
        F_latt = lattice_factor(lat, H, H0)
    fallbacks = _fallbacks(setup, ok, F_latt, passed_t) if ok is not None and stats else None
    FF = F_latt if F_cell is None else F_cell.mul_(F_latt)
    return sum_halving_(FF.square_()), fallbacks
