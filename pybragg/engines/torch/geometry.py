"""Detector geometry of the torch engine (``csrc/geometry.c``, ``csrc/panels.c``): axes, origin, pixels.

The detector is a list of panels: the one panel that the detector flags define, or
the configuration's explicit panels, each placed like a CUSTOM-convention detector
with its origin as pix0 (its own axes, pixel size, pixel counts and oversampling;
the convention's beam, polarization, spindle and twotheta axes).
:func:`convention_axes` gives the convention's (or the custom) unit axes once per
model, :func:`panel_axes` an explicit panel's; :func:`resolve_detector` rebuilds a
panel's rotated axes, origin and distances from the (differentiable) detector
parameters for every parameter set, as ``geometry_resolve`` does; :class:`Panel`
holds what is fixed about a panel's pixels (which are rendered and where they go in
the data array, their sub-pixel centres, the sensor layers).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from pybragg.config import Config, Convention, PanelConfig, Pivot
from pybragg.constants import CONVENTION_AXES
from pybragg.engines.torch.vec import cross_np, dot, rotate_axis, rotate_xyz, unit_np
from pybragg.inputs import Inputs
from pybragg.result import PanelGeometry


def unset(x: float | None) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


@dataclass(frozen=True)
class Axes:
    """The unit axes before the detector rotations (tensors of shape (3,))."""

    beam: torch.Tensor
    fdet: torch.Tensor
    sdet: torch.Tensor
    odet: torch.Tensor
    twotheta: torch.Tensor
    polar: torch.Tensor
    spindle: torch.Tensor


@dataclass(frozen=True)
class DetectorState:
    """One panel for one parameter set: rotated axes, origin (pix0) and distances (m)."""

    fdet: torch.Tensor
    sdet: torch.Tensor
    odet: torch.Tensor
    pix0: torch.Tensor
    beam: torch.Tensor
    close: torch.Tensor
    distance: torch.Tensor


@dataclass(frozen=True)
class Panel:
    """What is fixed about a panel's pixels.

    ``selected``: flat indices (slow-major, within the panel) of the pixels to render
    (inside the ROI and the mask), ``data_index`` where they go in the flat data
    array; (``data_slow``, ``data_fast``): where the panel's first pixel sits in it.
    ``fdet_of_column`` (fpixels, oversample) and ``sdet_of_row`` (spixels, oversample):
    sub-pixel centres along the fast and slow axes (m).  ``odet_offsets`` (layers,): the
    sensor layers' depths; ``capture_c1``, ``capture_c2`` (sub-pixels,): the exponents
    of the capture fraction of each (layer, sub-pixel) over the parallax.
    """

    index: int
    fpixels: int
    spixels: int
    data_fast: int
    data_slow: int
    pixel_size: float
    oversample: int
    layers: int
    steps: int
    selected: torch.Tensor
    data_index: torch.Tensor
    fdet_of_column: torch.Tensor
    sdet_of_row: torch.Tensor
    odet_offsets: torch.Tensor
    capture_c1: torch.Tensor
    capture_c2: torch.Tensor

    @property
    def n_sub(self) -> int:
        """Sub-pixels of a pixel: layers x oversample^2."""
        return self.layers * self.oversample**2


def to_tensor(value: Any, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    return torch.as_tensor(np.asarray(value, dtype=np.float64), dtype=dtype, device=device)


def convention_axes(config: Config, g: Any, dtype: torch.dtype, device: torch.device) -> Axes:
    """The beam, detector, twotheta, polarization and spindle axes, normalised as the C engine does."""
    d = config.detector
    if g.convention == Convention.CUSTOM:
        axes = (config.beam.beam_vector, d.fdet_vector, d.sdet_vector, d.odet_vector, d.twotheta_axis,
                config.beam.polar_vector, config.crystal.spindle_axis)
    else:
        axes = CONVENTION_AXES[Convention(g.convention)]
    beam, fdet, sdet, odet, tt_axis, polar, spindle = (list(map(float, a)) for a in axes)
    beam, _ = unit_np(beam)
    fdet, _ = unit_np(fdet)
    sdet, _ = unit_np(sdet)
    odet_u, length = unit_np(odet)
    if length != 1.0:
        odet_u, _ = unit_np(cross_np(fdet, sdet))
    polar, _ = unit_np(polar)
    spindle, _ = unit_np(spindle)
    return Axes(*(to_tensor(v, dtype, device) for v in (beam, fdet, sdet, odet_u, tt_axis, polar, spindle)))


def panel_axes(axes: Axes, panel: PanelConfig) -> Axes:
    """An explicit panel's unit axes: its fast and slow axes, their normal, the convention's others."""
    fdet, _ = unit_np(panel.fdet)
    sdet, _ = unit_np(panel.sdet)
    odet, _ = unit_np(cross_np(fdet, sdet))
    dtype, device = axes.fdet.dtype, axes.fdet.device
    return replace(axes, fdet=to_tensor(fdet, dtype, device), sdet=to_tensor(sdet, dtype, device),
                   odet=to_tensor(odet, dtype, device))


def resolve_detector(config: Config, g: Any, axes: Axes, p: Mapping[str, torch.Tensor],
                     origin: torch.Tensor | None = None) -> DetectorState:
    """geometry_resolve of the C engine for parameters ``p``.

    Without ``origin``: the flag-defined detector.  With it: an explicit panel
    (``axes`` from :func:`panel_axes`) whose pix0 before the rotations is ``origin``.
    """
    d = config.detector
    px, detsize_f, detsize_s = float(g.pixel_size), float(g.detsize_f), float(g.detsize_s)
    Fclose: Any = (d.ORGX - 0.5) * px if not unset(d.ORGX) else detsize_f / 2.0
    Sclose: Any = (d.ORGY - 0.5) * px if not unset(d.ORGY) else detsize_s / 2.0
    Xbeam, Ybeam = p["Xbeam"], p["Ybeam"]
    conv = Convention(g.convention)
    if conv == Convention.CUSTOM:
        Fbeam, Sbeam, Fclose, Sclose = Xbeam, Ybeam, Xbeam, Ybeam
    elif conv == Convention.ADXV:
        Fbeam, Sbeam = Xbeam, detsize_s - Ybeam
    elif conv in (Convention.MOSFLM, Convention.DENZO):
        half = 0.5 * px if conv == Convention.MOSFLM else 0.0 * px
        Fbeam, Sbeam = Ybeam + half, Xbeam + half
    else:
        Fbeam, Sbeam = Xbeam, Ybeam
    rx, ry, rz, tt = p["rotx"], p["roty"], p["rotz"], p["twotheta"]
    beam, fdet, sdet, odet = axes.beam, axes.fdet, axes.sdet, axes.odet
    ratio = dot(beam, rotate_xyz(odet, rx, ry, rz))
    tiny = torch.finfo(ratio.dtype).tiny
    ratio = torch.where(ratio == 0, torch.full_like(ratio, tiny), ratio)
    if not unset(d.close_distance):
        close = to_tensor(float(d.close_distance), ratio.dtype, ratio.device)
    else:
        close = torch.abs(ratio * p["distance"])
    distance = close / ratio

    def rotated(v: torch.Tensor) -> torch.Tensor:
        return rotate_axis(rotate_xyz(v, rx, ry, rz), axes.twotheta, tt)

    pix0 = None
    if origin is not None:
        pix0 = origin
    elif d.has_pix0:
        pix0 = to_tensor(list(d.pix0_vector), ratio.dtype, ratio.device)
    elif Pivot(g.pivot) == Pivot.SAMPLE:
        pix0 = -Fclose * fdet - Sclose * sdet + close * odet
    if pix0 is not None:
        pix0 = rotated(pix0)
    fdet, sdet, odet = (rotated(v) for v in (fdet, sdet, odet))
    if pix0 is None:
        pix0 = -Fbeam * fdet - Sbeam * sdet + distance * beam
    close = dot(pix0, odet)
    distance = close / ratio
    if origin is not None:
        # an explicit panel seen from behind takes the opposite normal, as in csrc/panels.c
        # (face_the_sample): a discrete choice, so the sign carries no gradient
        side = torch.where(close < 0, -1.0, 1.0).to(close.dtype).detach()
        odet, close = odet * side, close * side
    return DetectorState(fdet=fdet, sdet=sdet, odet=odet, pix0=pix0, beam=beam, close=close,
                         distance=distance)


def detector_states(config: Config, g: Any, axes: Axes, panel_axes: Sequence[Axes],
                    panel_origins: Sequence[torch.Tensor], p: Mapping[str, torch.Tensor]) -> tuple[DetectorState, ...]:
    """Every panel's :class:`DetectorState` for parameters ``p``: the explicit panels' (axes from
    :func:`panel_axes`, origins before the rotations) or the flag-defined detector's one."""
    if panel_axes:
        return tuple(resolve_detector(config, g, pa, p, origin)
                     for pa, origin in zip(panel_axes, panel_origins, strict=True))
    return (resolve_detector(config, g, axes, p),)


def selection(g: Any, inputs: Inputs) -> np.ndarray:
    """(slow, fast) over the data array: the pixels inside the ROI and the mask."""
    sp, fp = int(g.data_spixels), int(g.data_fpixels)
    x0, x1, y0, y1 = (int(v) for v in g.roi)
    sel = np.zeros((sp, fp), dtype=bool)
    sel[max(y0, 0):max(y1 + 1, 0), max(x0, 0):max(x1 + 1, 0)] = True
    if inputs.mask is not None:
        sel &= np.asarray(inputs.mask) != 0
    return sel


def plan_panel(index: int, pg: PanelGeometry, selected: np.ndarray, g: Any, dtype: torch.dtype,
               device: torch.device) -> Panel:
    """Panel ``index`` of the plan (``pg``; ``g``: the plan's geometry) with its pixels among
    ``selected`` (over the data array): which to render, their sub-pixel tables, the sensor layers."""
    fp, sp, f0, s0 = int(pg.fpixels), int(pg.spixels), int(pg.data_fast), int(pg.data_slow)
    local = np.flatnonzero(selected[s0:s0 + sp, f0:f0 + fp].ravel())
    data = (s0 + local // fp) * selected.shape[1] + f0 + local % fp
    oversample, pixel_size = int(pg.oversample), float(pg.pixel_size)
    sub = pixel_size / oversample
    offsets = torch.arange(oversample, device=device, dtype=torch.int64)
    fdet_of_column, sdet_of_row = (
        (torch.arange(n, device=device, dtype=torch.int64)[:, None] * oversample + offsets)
        .to(dtype).mul_(sub).add_(sub / 2.0) for n in (fp, sp))
    layers = int(g.thicksteps)
    layer_of_sub = np.repeat(np.arange(layers), oversample**2)
    thickstep, mu = float(g.thickstep), float(g.mu)
    return Panel(
        index=index, fpixels=fp, spixels=sp, data_fast=f0, data_slow=s0, pixel_size=pixel_size,
        oversample=oversample, layers=layers, steps=int(pg.steps),
        selected=torch.as_tensor(local, dtype=torch.int64, device=device),
        data_index=torch.as_tensor(data, dtype=torch.int64, device=device),
        fdet_of_column=fdet_of_column, sdet_of_row=sdet_of_row,
        odet_offsets=to_tensor(np.arange(layers) * thickstep, dtype, device),
        capture_c1=to_tensor([(-int(k)) * thickstep * mu for k in layer_of_sub], dtype, device),
        capture_c2=to_tensor([-(int(k) + 1) * thickstep * mu for k in layer_of_sub], dtype, device),
    )
