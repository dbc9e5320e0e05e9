"""The PyTorch engine: the C engine's pixel model, vectorized and differentiable.

Three entry points:

* :func:`render` -- same contract as :func:`pybragg.engines.c_engine.render`: a
  :class:`~pybragg.result.Result` whose image (numpy, of the chosen dtype, shape
  (slow, fast)) matches the C engine, with statistics from the C plan.
* :class:`TorchModel` -- the image as a differentiable function of continuous
  parameters: ``TorchModel(config, inputs).image(params)`` returns the whole
  (slow, fast) image tensor, where ``params`` maps names below to tensors (that may
  require grad) replacing the configuration's values.
* :func:`trace_pixel` -- ``trace_pixel(config, inputs, fpixel, spixel)`` returns the
  intermediate quantities of one pixel and its value, record for record the same
  names, loop indices, order and skips as the C engine's
  :meth:`~pybragg.engines.c_engine.trace_pixel` (what ``pybragg trace`` lines up).
  The values are the torch engine's own: the kernel runs on a one-pixel chunk with a
  recorder that keeps its intermediate tensors (off, and free, when rendering), and
  they are laid out in the C engine's loop order (layer, sub-pixel slow, sub-pixel
  fast, source, phi step, mosaic domain).  Where the C engine carries a factor that
  is not oversampled (solid angle, capture fraction, polarization), the record holds
  the value in effect at that step of its loop; ``I_sum`` is the running sum of the
  kernel's terms in loop order.

Everything discrete comes from the C plan (:class:`~pybragg.plan.Plan`)
and the configuration as they are: pixel counts, region of interest and mask,
oversampling and the three ``oversample_*`` toggles, sensor layers, phi steps,
mosaic domain count and their random numbers, sources (directions, relative
wavelengths), convention, pivot, which reflections exist in the table.

Parameters (SI units; shapes in brackets, scalars otherwise):

``cell`` [6]
    a, b, c (m) and alpha, beta, gamma (rad).  Only for a configuration that gives a
    unit cell (``crystal.has_cell``); the default fills b, c and the angles the way
    the engine does (a non-positive b or c is a, a non-positive angle is 90 degrees).
``misset`` [3]
    rotations of the reciprocal axes about lab x, y, z (rad).  Default: the plan's
    applied misset (zeros without one); a random misset is taken from the plan's
    geometry and then treated as fixed angles.
``phi0``
    spindle angle of the first phi step (rad).
``osc``
    oscillation range (rad).  Whenever the plan's phi step is its ``osc / phisteps``
    (no explicit ``phistep`` was given, or one equal to that), the phi step becomes
    ``osc / phisteps`` (``phisteps`` from the plan).  With an explicit, different
    ``phistep`` the range only counted the steps: ``osc`` then has no effect.
``distance``
    sample to beam spot along the beam (m), the configuration's ``detector.distance``.
    It has no effect where the configuration fixes ``close_distance`` or ``pix0``.
``Xbeam``, ``Ybeam``
    beam centre in the convention's frame (m); default: the plan's resolved centre.
    Like in the C engine they move the detector only where the convention uses them
    (not with ``pix0``; XDS/DIALS place the detector by the near point).
``rotx``, ``roty``, ``rotz``, ``twotheta``
    detector rotations (rad).
``lambda0``
    central wavelength (m); every source wavelength is scaled by ``lambda0 / plan's
    lambda0`` (file sources included).
``fluence``
    photons/m^2 (also scales the water background, as in the C engine).
``polarization``
    Kahn factor.
``fudge``
    lattice-transform radius scale.
``N`` [3]
    unit cells along a, b, c (real-valued).  A factor is left out where N <= 1, as in
    the C engine; the square spot's factor takes the sign pattern of the nearest whole
    N (see :meth:`TorchModel._grating`).
``mosaic_spread``
    isotropic mosaic spread (rad).  Domain ``i`` is rotated by ``spread * p_i``
    about axis ``u_i`` where ``p_i`` and ``u_i`` come from the deviates ``3i .. 3i+2``
    of the reference generator seeded with ``mosaic_seed`` (domain 0 stays the
    identity), with ``p_i`` the C engine's single-precision power.  The C engine also
    rounds the spread and the product to single precision; that rounding (a few 1e-8
    of the angle) is left out so that the image is smooth in the spread, and the
    rebuilt matrices match the plan's to about 1e-9.  The domain count comes from the
    plan: with a single domain the spread has no effect.

Implementation: the pixels inside the ROI and the mask are processed in chunks; each
chunk holds tensors over (pixel, layer x sub-pixel, source, orientation), with the
orientation axis (phi steps x mosaic domains) innermost, sized so that the chunk's
temporaries fit ``memory_budget_gib``.  Quantities of a sub-pixel (position, solid
angle, capture fraction) and of a (sub-pixel, source) pair (polarization, resolution
cut) are computed once and broadcast over orientations; the Miller indices are
``(a . diffracted - a . incident) / lambda``, the first term one matrix product per
chunk.  The C engine's rule for the un-oversampled factors is kept: without
``oversample_omega`` the pixel is scaled by the first non-zero solid angle of its
sub-pixels (in loop order), without ``oversample_thick`` by the first non-zero
capture fraction of the last layer's sub-pixels, and without ``oversample_polar``
by the first non-zero polarization among the (layer, sub-pixel, source) triples
that passed the ``dmin`` cut (0 when none did).

Precision: the nearest reflection is round(h) (ties to even), where the C engine takes
the reference's ceil(h - 0.5); the two differ only at exact half-integers, where the
Miller indices of the two engines, summed in different orders, do not agree to the last
bit anyway.  Everything runs in the chosen dtype, with the sines of the square lattice
factor reduced to small arguments first (as the C engine does) so that single
precision holds near the Bragg peaks, and the sphere transform's series near 0.  One
exception: the tophat spot has a sharp edge, which single-precision Miller indices
would move across whole sub-pixels, so a float32 model of that shape computes in
float64 (and returns float32).

Threads and devices: without gradients on the CPU, :func:`render` runs two chunks side
by side in Python threads (torch releases the GIL inside each operation) and gives
each operation ``threads / 2`` threads.  A chunk there holds about 2^16 (pixel x
sub-pixel) elements per operation thread, and its orientation-level work runs in
pieces of about 2^17 elements (whose scratch tensors stay in the caches and are reused
from piece to piece); where every nearest reflection of a chunk is bounded inside the
structure-factor table (|h| <= |a| |diffracted - incident| / lambda), its look-up
skips the clamping.  On CUDA the chunks are as large as the budget allows and run
one after the other, in one piece.  When gradients are recorded over
several chunks, each chunk is checkpointed (recomputed in the backward pass), so that
memory stays bounded by about one chunk's graph.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Any

import numpy as np
import torch
from torch.utils.checkpoint import checkpoint

from pybragg.config import Config, Convention, Pivot, Shape
from pybragg.inputs import Inputs
from pybragg.noise import random_uniform
from pybragg.plan import Plan
from pybragg.result import Result, TraceRecord

__all__ = ["PARAMETERS", "TorchModel", "render", "trace_pixel"]

R_E_SQR = 7.94079248018965e-30  # Thomson cross-section (m^2)
AVOGADRO = 6.02214179e23
WATER_F = 2.57
WATER_MW = 18.0
ROUND_SCALE = 0.723601254558268

PARAMETERS = (
    "cell", "misset", "phi0", "osc", "distance", "Xbeam", "Ybeam", "rotx", "roty", "rotz", "twotheta",
    "lambda0", "fluence", "polarization", "fudge", "N", "mosaic_spread",
)
_SHAPES = {"cell": (6,), "misset": (3,), "N": (3,)}

# beam, fdet, sdet, odet, twotheta axis, polarization, spindle of each named convention
_CONVENTION_AXES = {
    Convention.ADXV: ((0, 0, 1), (1, 0, 0), (0, -1, 0), (0, 0, 1), (-1, 0, 0), (1, 0, 0), (1, 0, 0)),
    Convention.MOSFLM: ((1, 0, 0), (0, 0, 1), (0, -1, 0), (1, 0, 0), (0, 0, -1), (0, 0, 1), (0, 0, 1)),
    Convention.DENZO: ((1, 0, 0), (0, 0, 1), (0, -1, 0), (1, 0, 0), (0, 0, -1), (0, 0, 1), (0, 0, 1)),
    Convention.XDS: ((0, 0, 1), (1, 0, 0), (0, 1, 0), (0, 0, 1), (1, 0, 0), (1, 0, 0), (1, 0, 0)),
    Convention.DIALS: ((0, 0, 1), (1, 0, 0), (0, 1, 0), (0, 0, 1), (0, 1, 0), (0, 1, 0), (0, 1, 0)),
}

_DTYPES = {"float64": torch.float64, "float32": torch.float32}

# bytes of live temporaries per element of the (pixel, sub-pixel, source, orientation)
# tensors, per (pixel, sub-pixel, source) element and per (pixel, sub-pixel) element,
# in units of the float size; measured peaks stay below these estimates
_ORIENT_TEMPS = 14
_TABLE_TEMPS = 10  # extra, with a structure-factor table (int64 indices count double)
_INTERP_TEMPS = 40  # extra, with tricubic interpolation
_GRAD_FACTOR = 3  # intermediates kept for the backward pass of one chunk
_SOURCE_TEMPS = 24
_SUB_TEMPS = 40
# On the CPU (rendering), the orientation-level operations run fastest on about this
# many elements per thread of an operation (smaller: per-operation overhead; larger:
# cache); a chunk's pixels are split into such pieces for them, while its per-pixel
# operations run on at least this many (pixel x sub-pixel) elements at once, so that
# their overhead is shared by several pieces.
_CPU_CHUNK_ELEMENTS = 1 << 17
_CPU_CHUNK_SUBPIXELS = 1 << 16
# On the CPU, this many Python threads render chunks side by side (torch releases the
# GIL inside operations); the other threads of a call go to each operation.  Measured
# on 2 and 16 cores: two chunk threads hide the per-operation overhead, more contend
# for the GIL.
_CPU_POOL_WORKERS = 2


def _unset(x: float | None) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


# ---------------------------------------------------------------------------
# small vector helpers; vectors are tensors whose last axis has length 3, and the
# formulas keep the C engine's order of operations


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return a[..., 0] * b[..., 0] + a[..., 1] * b[..., 1] + a[..., 2] * b[..., 2]


def _cross(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    x = a[..., 1] * b[..., 2] - a[..., 2] * b[..., 1]
    y = a[..., 2] * b[..., 0] - a[..., 0] * b[..., 2]
    z = a[..., 0] * b[..., 1] - a[..., 1] * b[..., 0]
    return torch.stack((x, y, z), dim=-1)


def _norm(a: torch.Tensor) -> torch.Tensor:
    return torch.sqrt(_dot(a, a))


def _unit(a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(a / |a|, |a|); a zero vector gives a zero vector (and a finite gradient)."""
    length = _norm(a)
    zero = length == 0
    safe = torch.where(zero, torch.ones_like(length), length)
    unit = torch.where(zero[..., None], torch.zeros_like(a), a / safe[..., None])
    return unit, length


def _rotate_xyz(v: torch.Tensor, rx: torch.Tensor, ry: torch.Tensor, rz: torch.Tensor) -> torch.Tensor:
    """Rotate about lab x, then y, then z (a zero angle rotates exactly by nothing)."""
    x, y, z = v[..., 0], v[..., 1], v[..., 2]
    c, s = torch.cos(rx), torch.sin(rx)
    y, z = y * c + z * (-s), y * s + z * c
    c, s = torch.cos(ry), torch.sin(ry)
    x, z = x * c + z * s, x * (-s) + z * c
    c, s = torch.cos(rz), torch.sin(rz)
    x, y = x * c + y * (-s), x * s + y * c
    return torch.stack((x, y, z), dim=-1)


def _rotate_axis(v: torch.Tensor, axis: torch.Tensor, phi: torch.Tensor) -> torch.Tensor:
    """Right-handed rotation of v by phi about the (unit) axis; broadcasts phi over v."""
    s, c = torch.sin(phi), torch.cos(phi)
    v0, v1, v2 = v[..., 0], v[..., 1], v[..., 2]
    a0, a1, a2 = axis[..., 0], axis[..., 1], axis[..., 2]
    along = (a0 * v0 + a1 * v1 + a2 * v2) * (1.0 - c)
    x = a0 * along + v0 * c + (-a2 * v1 + a1 * v2) * s
    y = a1 * along + v1 * c + (a2 * v0 - a0 * v2) * s
    z = a2 * along + v2 * c + (-a1 * v0 + a0 * v1) * s
    return torch.stack((x, y, z), dim=-1)


def _rotate_axis_c(v: tuple[Any, Any, Any], axis: torch.Tensor,
                   phi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """_rotate_axis on separate components (tensors that broadcast together)."""
    s, c = torch.sin(phi), torch.cos(phi)
    v0, v1, v2 = v
    a0, a1, a2 = axis[0], axis[1], axis[2]
    along = (a0 * v0 + a1 * v1 + a2 * v2) * (1.0 - c)
    x = a0 * along + v0 * c + (-a2 * v1 + a1 * v2) * s
    y = a1 * along + v1 * c + (a2 * v0 - a0 * v2) * s
    z = a2 * along + v2 * c + (-a1 * v0 + a0 * v1) * s
    return x, y, z


def _unit_np(v: tuple[float, float, float] | list[float]) -> tuple[list[float], float]:
    """The C engine's v3_unit in double precision."""
    x, y, z = (float(c) for c in v)
    length = math.sqrt(x * x + y * y + z * z)
    if length == 0.0:
        return [0.0, 0.0, 0.0], 0.0
    return [x / length, y / length, z / length], length


def _cross_np(a: list[float], b: list[float]) -> list[float]:
    return [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]]


def _per_m(x: torch.Tensor) -> torch.Tensor:
    """(No, Ns, Q[, 3]) -> (Q x Ns, No[, 3]) in the C engine's loop order (for the recorder)."""
    x = x.permute(2, 1, 0, 3) if x.dim() == 4 else x.permute(2, 1, 0)
    return x.reshape((x.shape[0] * x.shape[1], x.shape[2]) + tuple(x.shape[3:]))


def _first_nonzero(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Along the last axis: the first non-zero value (0 when none) and its index."""
    first = x[..., 0]
    if x.shape[-1] == 1 or bool((first != 0).all()):
        return first, torch.zeros(first.shape, dtype=torch.int64, device=x.device)
    idx = (x != 0).to(torch.uint8).argmax(dim=-1, keepdim=True)
    return x.gather(-1, idx).squeeze(-1), idx.squeeze(-1)


def _lagrange4(x0: torch.Tensor, x: torch.Tensor, y: list[torch.Tensor]) -> torch.Tensor:
    """Cubic through (x0-1 .. x0+2, y[0..3]) at x, in the C engine's order of operations."""
    d0 = x - (x0 - 1.0)
    d1 = x - x0
    d2 = x - (x0 + 1.0)
    d3 = x - (x0 + 2.0)
    t0 = d1 * d2 * d3 * y[0] / -6.0
    t1 = d0 * d2 * d3 * y[1] / 2.0
    t2 = d0 * d1 * d3 * y[2] / -2.0
    t3 = d0 * d1 * d2 * y[3] / 6.0
    return t0 + t1 + t2 + t3


def _sum_leading(x: torch.Tensor, ip: bool) -> torch.Tensor:
    """Sum over the first axis by halving (x is overwritten when ``ip``).

    Elementwise additions only, so that every element's sum is the same whatever the
    other axes' sizes (a reduction's order depends on them); log2(n) operations.
    """
    n = x.shape[0]
    while n > 1:
        h = n // 2
        if ip:
            x[:h].add_(x[n - h:n])
        else:
            x = torch.cat((x[:h] + x[n - h:n], x[h:n - h]))
        n -= h
    return x[0]


class _Recorder:
    """Intermediate tensors of one kernel call, by name (detached copies on the CPU)."""

    def __init__(self) -> None:
        self.values: dict[str, np.ndarray | None] = {}

    def put(self, name: str, value: Any) -> None:
        if value is None:
            self.values[name] = None
        elif isinstance(value, torch.Tensor):
            self.values[name] = value.detach().to(device="cpu").clone().numpy()
        else:
            self.values[name] = np.asarray(value)

    def __getitem__(self, name: str) -> np.ndarray:
        return self.values[name]

    def get(self, name: str) -> np.ndarray | None:
        return self.values.get(name)


def _running_first_nonzero(x: np.ndarray) -> np.ndarray:
    """Along a 1-D array: the first non-zero value seen so far (the value itself before it).

    The C engine computes a factor that is not oversampled only while the one in
    effect is 0, so this is the factor in effect at every step of its loop.
    """
    out = np.array(x, copy=True)
    nz = np.flatnonzero(x != 0)
    if nz.size:
        out[nz[0]:] = x[nz[0]]
    return out


class TorchModel:
    """The image as a differentiable function of the continuous parameters.

    ``TorchModel(config, inputs, dtype="float64", device="cpu")`` resolves the
    configuration with the C plan once; :meth:`image` renders the full (slow, fast)
    image for any parameter values (see the module docstring for the names).
    Pixels outside the ROI or the mask are 0.
    """

    def __init__(
        self,
        config: Config,
        inputs: Inputs | None = None,
        *,
        dtype: str | torch.dtype = "float64",
        device: str | torch.device | None = None,
        memory_budget_gib: float = 2.0,
        plan: Plan | None = None,
    ):
        if isinstance(dtype, torch.dtype):
            self.dtype = dtype
        elif dtype in _DTYPES:
            self.dtype = _DTYPES[dtype]
        else:
            raise ValueError(f"unknown dtype {dtype!r} (choose from {', '.join(_DTYPES)})")
        if self.dtype not in (torch.float64, torch.float32):
            raise ValueError("the torch engine computes in float64 or float32")
        # A tophat spot has a sharp edge: single-precision Miller indices would move
        # sub-pixels across it, so that shape is computed in double precision.
        self.cdtype = self.dtype
        if self.dtype == torch.float32 and int(config.crystal.shape) == Shape.TOPHAT:
            self.cdtype = torch.float64
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        if not memory_budget_gib > 0:
            raise ValueError("memory_budget_gib must be positive")
        self.memory_budget_gib = float(memory_budget_gib)
        self.config = config
        self.inputs = inputs or Inputs()
        self.plan = plan if plan is not None else Plan(config, self.inputs)
        g = self.geometry = self.plan.geometry
        self._prepare_constants(g)
        self._prepare_pixels(g)
        self._prepare_table(g)
        self._scratch = threading.local()

    # ------------------------------------------------------------------ set-up

    def _t(self, value: Any) -> torch.Tensor:
        return torch.as_tensor(np.asarray(value, dtype=np.float64), dtype=self.cdtype, device=self.device)

    def _prepare_constants(self, g: Any) -> None:
        cfg = self.config
        d = cfg.detector
        if g.convention == Convention.CUSTOM:
            axes = (cfg.beam.beam_vector, d.fdet_vector, d.sdet_vector, d.odet_vector, d.twotheta_axis,
                    cfg.beam.polar_vector, cfg.crystal.spindle_axis)
        else:
            axes = _CONVENTION_AXES[Convention(g.convention)]
        beam, fdet, sdet, odet, tt_axis, polar, spindle = (list(map(float, a)) for a in axes)
        beam, _ = _unit_np(beam)
        fdet, _ = _unit_np(fdet)
        sdet, _ = _unit_np(sdet)
        odet_u, length = _unit_np(odet)
        if length != 1.0:
            odet_u, _ = _unit_np(_cross_np(fdet, sdet))
        polar, _ = _unit_np(polar)
        spindle, _ = _unit_np(spindle)
        self._axes0 = {name: self._t(v) for name, v in (
            ("beam", beam), ("fdet", fdet), ("sdet", sdet), ("odet", odet_u), ("tt_axis", tt_axis),
            ("polar", polar), ("spindle", spindle))}
        # sources: the direction towards the source, reversed, is the incident direction
        src = np.asarray(self.plan.sources, dtype=np.float64)
        self.n_sources = src.shape[0]
        incident = -src[:, :3]
        self._incident = self._t(incident)
        self._incident_unit = _unit(self._incident)[0]
        self._source_lambda = self._t(src[:, 4])
        pol = self._axes0["polar"].expand_as(self._incident_unit)
        b_in = _unit(_cross(pol, self._incident_unit))[0]
        e_in = _unit(_cross(self._incident_unit, b_in))[0]
        self._e_in = e_in
        # a polarization axis along a source's direction: the C engine's psi is then 0
        degenerate = _norm(b_in) == 0
        self._degenerate_polar = bool(degenerate.any())
        self._polar_degenerate_src = degenerate
        # sampling
        self.oversample = int(g.oversample)
        self.layers = int(g.thicksteps)
        self.n_sub = self.layers * self.oversample**2
        self.n_orient = int(g.phisteps) * int(g.mosaic_domains)
        self.steps = int(g.steps)
        layer_of_sub = np.repeat(np.arange(self.layers), self.oversample**2)
        self._odet_offsets = self._t(np.arange(self.layers) * float(g.thickstep))
        mu = float(g.mu)
        self._capture_c1 = self._t([(-int(k)) * g.thickstep * mu for k in layer_of_sub])
        self._capture_c2 = self._t([-(int(k) + 1) * g.thickstep * mu for k in layer_of_sub])
        # mosaic: the deviates behind each domain's rotation
        n_dom = int(g.mosaic_domains)
        u = random_uniform(int(cfg.crystal.mosaic_seed), 3 * n_dom).astype(np.float32)
        r = 2.0 * u.astype(np.float64).reshape(n_dom, 3) - 1.0
        r1, r2, r3 = r[:, 0], r[:, 1], r[:, 2]
        ring = np.sqrt(1.0 - r2 * r2)
        with np.errstate(all="ignore"):
            self._mosaic_p = np.power((1.0 - r3 * r3).astype(np.float32), np.float32(1.0 / 3.0))
        self._mosaic_axis = np.stack((ring * np.sin(math.pi * r1), ring * np.cos(math.pi * r1), r2), axis=1)

    def _prepare_pixels(self, g: Any) -> None:
        fp, sp = int(g.fpixels), int(g.spixels)
        x0, x1, y0, y1 = (int(v) for v in g.roi)
        sel = np.zeros((sp, fp), dtype=bool)
        sel[max(y0, 0):max(y1 + 1, 0), max(x0, 0):max(x1 + 1, 0)] = True
        if self.inputs.mask is not None:
            sel &= np.asarray(self.inputs.mask) != 0
        self.shape = (sp, fp)
        # sub-pixel centres along the fast and slow axes (m) of every column and row
        os_ = int(g.oversample)
        sub = float(g.pixel_size) / os_
        steps = torch.arange(os_, device=self.device, dtype=torch.int64)
        self._fdet_of_column, self._sdet_of_row = (
            (torch.arange(n, device=self.device, dtype=torch.int64)[:, None] * os_ + steps)
            .to(self.cdtype).mul_(sub).add_(sub / 2.0) for n in (fp, sp))
        self._selected = torch.as_tensor(np.flatnonzero(sel.ravel()), dtype=torch.int64, device=self.device)

    def _prepare_table(self, g: Any) -> None:
        hkl = self.inputs.hkl
        self.default_F = float(self.config.crystal.default_F)
        self.has_table = hkl is not None
        self.interpolate = bool(g.interpolate) and self.has_table
        if self.has_table:
            F = np.asarray(hkl.F, dtype=np.float64)
            self._table_shape = F.shape
            self._table_min = (int(hkl.h_min), int(hkl.k_min), int(hkl.l_min))
            # padded with default_F: one cell before every axis, at least one after, and
            # at least 4 cells in all (the tricubic stencil)
            pads = [(1, max(1, 3 - n)) for n in F.shape]
            padded = np.pad(F, pads, mode="constant", constant_values=self.default_F)
            self._table = self._t(padded.ravel())
            pk, pl = padded.shape[1], padded.shape[2]
            self._padded_shape = padded.shape
            self._padded_strides = (pk * pl, pl, 1)
            # nearest whole indices are clamped to [lo, hi] (the padded table's range); the
            # flat index sum(stride * (h0 - lo)) is exact in the compute type while the
            # partial sums stay below 2^mantissa, otherwise it is summed in float64
            self._index_lo = [m - 1 for m in self._table_min]
            self._index_hi = [m - 1 + n + 1 for m, n in zip(self._table_min, F.shape, strict=True)]
            self._index_offset = float(sum(s * lo for s, lo in zip(self._padded_strides, self._index_lo, strict=True)))
            bound = sum(s * max(abs(lo), abs(hi)) for s, lo, hi in
                        zip(self._padded_strides, self._index_lo, self._index_hi, strict=True))
            self._index_exact_dtype = None
            if bound >= 2 ** (53 if self.cdtype == torch.float64 else 24) - 1:
                self._index_exact_dtype = torch.float64

    def _buffer(self, name: str, shape: tuple[int, ...], dtype: torch.dtype | None = None) -> torch.Tensor:
        """A scratch tensor of this thread, reused from chunk to chunk (rendering only).

        Fresh large tensors cost page faults on every allocation (far more than the
        arithmetic of one pass over them), so the kernel's big temporaries are written
        with ``out=`` into these.
        """
        dtype = dtype or self.cdtype
        store = self._scratch.__dict__
        n = math.prod(shape)
        have = store.get((name, dtype))
        if have is None or have.numel() < n:
            have = store[(name, dtype)] = torch.empty(n, dtype=dtype, device=self.device)
        return have[:n].view(shape)

    # ------------------------------------------------------------ parameters

    def defaults(self) -> dict[str, torch.Tensor]:
        """The parameter values that the configuration implies (``image()`` renders these)."""
        g, cfg = self.geometry, self.config
        values: dict[str, Any] = {
            "misset": list(g.misset),
            "phi0": g.phi0,
            "osc": g.osc,
            "distance": cfg.detector.distance,
            "Xbeam": g.Xbeam,
            "Ybeam": g.Ybeam,
            "rotx": g.rotx,
            "roty": g.roty,
            "rotz": g.rotz,
            "twotheta": g.twotheta,
            "lambda0": g.lambda0,
            "fluence": g.fluence,
            "polarization": g.polarization,
            "fudge": g.fudge,
            "N": list(g.N),
            "mosaic_spread": g.mosaic_spread,
        }
        if cfg.crystal.has_cell:
            a, b, c, al, be, ga = (float(x) for x in cfg.crystal.cell)
            values["cell"] = [a, b if b > 0 else a, c if c > 0 else a,
                              al if al > 0 else math.pi / 2, be if be > 0 else math.pi / 2,
                              ga if ga > 0 else math.pi / 2]
        return {k: self._t(v) for k, v in values.items()}

    def _resolve(self, params: Mapping[str, Any] | None) -> dict[str, torch.Tensor]:
        values = self.defaults()
        for name, value in (params or {}).items():
            if name not in PARAMETERS:
                raise KeyError(f"unknown parameter {name!r} (choose from {', '.join(PARAMETERS)})")
            if name == "cell" and not self.config.crystal.has_cell:
                raise ValueError("the 'cell' parameter needs a configuration with a unit cell")
            t = torch.as_tensor(value)
            t = t.to(dtype=self.cdtype, device=self.device)
            shape = _SHAPES.get(name, ())
            if tuple(t.shape) != shape:
                raise ValueError(f"parameter {name!r} must have shape {shape}, got {tuple(t.shape)}")
            values[name] = t
        return values

    def _detector(self, p: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """geometry_resolve of the C engine: rotated axes, detector origin, distances."""
        g, d = self.geometry, self.config.detector
        ax = self._axes0
        px, detsize_f, detsize_s = float(g.pixel_size), float(g.detsize_f), float(g.detsize_s)
        Fclose: Any = (d.ORGX - 0.5) * px if not _unset(d.ORGX) else detsize_f / 2.0
        Sclose: Any = (d.ORGY - 0.5) * px if not _unset(d.ORGY) else detsize_s / 2.0
        Xbeam, Ybeam = p["Xbeam"], p["Ybeam"]
        conv = Convention(g.convention)
        pivot = Pivot(g.pivot)
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
        beam, fdet, sdet, odet, tt_axis = ax["beam"], ax["fdet"], ax["sdet"], ax["odet"], ax["tt_axis"]
        ratio = _dot(beam, _rotate_xyz(odet, rx, ry, rz))
        tiny = torch.finfo(self.cdtype).tiny
        ratio = torch.where(ratio == 0, torch.full_like(ratio, tiny), ratio)
        if not _unset(d.close_distance):
            close = self._t(float(d.close_distance))
        else:
            close = torch.abs(ratio * p["distance"])
        distance = close / ratio
        pix0 = None
        if d.has_pix0:
            pix0 = self._t(list(d.pix0_vector))
        elif pivot == Pivot.SAMPLE:
            pix0 = -Fclose * fdet - Sclose * sdet + close * odet
        if pix0 is not None:
            pix0 = _rotate_axis(_rotate_xyz(pix0, rx, ry, rz), tt_axis, tt)
        fdet, sdet, odet = (_rotate_axis(_rotate_xyz(v, rx, ry, rz), tt_axis, tt) for v in (fdet, sdet, odet))
        if pix0 is None:
            pix0 = -Fbeam * fdet - Sbeam * sdet + distance * beam
        close = _dot(pix0, odet)
        distance = close / ratio
        return {"fdet": fdet, "sdet": sdet, "odet": odet, "pix0": pix0, "beam": beam,
                "close": close, "distance": distance}

    def _crystal(self, p: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """crystal_resolve of the C engine: real axes (m, rows a, b, c) and reciprocal axes (1/A)."""
        c = self.config.crystal
        zero = self._t(0.0)
        lens = None
        V_cell = None
        if c.has_cell:
            cell = p["cell"]
            lens = cell[:3] * 1e10
            la, lb, lc = lens[0], lens[1], lens[2]
            al, be, ga = cell[3], cell[4], cell[5]
            half = (al + be + ga) / 2
            skew = torch.sin(half) * torch.sin(half - al) * torch.sin(half - be) * torch.sin(half - ga)
            skew = torch.abs(skew)
            V_cell = 2.0 * la * lb * lc * torch.sqrt(skew)
            V_star = 1.0 / V_cell
            a_s = lb * lc * torch.sin(al) * V_star
            b_s = lc * la * torch.sin(be) * V_star
            c_s = la * lb * torch.sin(ga) * V_star
            sin_ga_s = torch.clamp(lc * V_star / a_s / b_s, -1.0, 1.0)
            cos_al_s = (torch.cos(be) * torch.cos(ga) - torch.cos(al)) / (torch.sin(be) * torch.sin(ga))
            cos_be_s = (torch.cos(ga) * torch.cos(al) - torch.cos(be)) / (torch.sin(ga) * torch.sin(al))
            cos_ga_s = (torch.cos(al) * torch.cos(be) - torch.cos(ga)) / (torch.sin(al) * torch.sin(be))
            one = torch.ones_like(cos_al_s)
            cos_al_s = torch.where(cos_al_s * cos_al_s > 1.0, one, cos_al_s)
            cos_be_s = torch.where(cos_be_s * cos_be_s > 1.0, one, cos_be_s)
            cos_ga_s = torch.where(cos_ga_s * cos_ga_s > 1.0, one, cos_ga_s)
            a_star = torch.stack((a_s, zero, zero))
            b_star = torch.stack((b_s * cos_ga_s, b_s * sin_ga_s, zero))
            c_star = torch.stack((c_s * cos_be_s, c_s * (cos_al_s - cos_be_s * cos_ga_s) / sin_ga_s,
                                  c_s * V_cell / (la * lb * lc * sin_ga_s)))
        if c.has_matrix:
            a_star = self._t([x * 1e-10 for x in c.a_star])
            b_star = self._t([x * 1e-10 for x in c.b_star])
            c_star = self._t([x * 1e-10 for x in c.c_star])
        m = p["misset"]
        a_star, b_star, c_star = (_rotate_xyz(v, m[0], m[1], m[2]) for v in (a_star, b_star, c_star))
        axb_s, bxc_s, cxa_s = _cross(a_star, b_star), _cross(b_star, c_star), _cross(c_star, a_star)
        V_star = _dot(a_star, bxc_s)
        if c.has_cell:
            def rescale(v: torch.Tensor, length: torch.Tensor) -> torch.Tensor:
                n = _norm(v)
                n = torch.where(n > 0, n, torch.ones_like(n))
                return v * (length / V_cell / n)

            bxc_s = rescale(bxc_s, lens[0])
            cxa_s = rescale(cxa_s, lens[1])
            axb_s = rescale(axb_s, lens[2])
            V_star = 1.0 / V_cell
        V = 1.0 / V_star
        a, b, cc = bxc_s * V, cxa_s * V, axb_s * V
        recip = torch.stack((_cross(b, cc) * V_star, _cross(cc, a) * V_star, _cross(a, b) * V_star))
        real = torch.stack((a, b, cc)) * 1e-10
        return real, recip

    def _mosaic(self, p: dict[str, torch.Tensor]) -> torch.Tensor:
        """(domains, 3, 3) rotations rebuilt from the reference generator's deviates.

        The rotation angle of domain i is ``spread * p_i`` with ``p_i`` the C engine's
        single-precision power; the C engine also rounds ``spread`` and the product to
        single precision, which moves the angle by a few 1e-8 of itself -- left out here
        so that the image stays a smooth function of the spread.
        """
        spread = p["mosaic_spread"]
        angle = spread * self._t(self._mosaic_p.astype(np.float64))
        ux, uy, uz = (self._t(self._mosaic_axis[:, k]) for k in range(3))
        c, s = torch.cos(angle), torch.sin(angle)
        omc = 1.0 - c
        omc_x = omc * ux
        xy, xz, yz = omc_x * uy, omc_x * uz, omc * uy * uz
        sx, sy, sz = s * ux, s * uy, s * uz
        U = torch.stack((c + omc * (ux * ux), xy - sz, xz + sy,
                         xy + sz, c + omc * (uy * uy), yz - sx,
                         xz - sy, yz + sx, c + omc * (uz * uz)), dim=-1).view(-1, 3, 3)
        eye = torch.eye(3, dtype=self.cdtype, device=self.device)[None]
        first = torch.arange(U.shape[0], device=self.device)[:, None, None] == 0
        return torch.where(first, eye, U)

    def _orientations(self, p: dict[str, torch.Tensor], real: torch.Tensor) -> torch.Tensor:
        """(phisteps * domains, 3, 3): rows a, b, c (m) of every crystal orientation."""
        g = self.geometry
        n_phi = int(g.phisteps)
        phistep: Any = float(g.phistep)
        if float(g.phisteps) > 0 and float(g.phistep) == float(g.osc) / n_phi:
            phistep = p["osc"] / n_phi
        steps = torch.arange(n_phi, dtype=self.cdtype, device=self.device)
        phi = p["phi0"] + phistep * steps  # (phi,)
        spindle = self._axes0["spindle"]
        abc = _rotate_axis(real[None, :, :], spindle, phi[:, None])  # (phi, 3, 3)
        if int(g.mosaic_domains) > 1:
            U = self._mosaic(p)  # (dom, 3, 3)
            out = (U[None, :, None, :, :] * abc[:, None, :, None, :]).sum(-1)  # (phi, dom, abc, xyz)
        else:
            out = abc[:, None]
        return out.reshape(-1, 3, 3)

    def _context(self, params: Mapping[str, Any] | None) -> dict[str, Any]:
        """Everything the kernel needs that does not depend on the pixel."""
        p = self._resolve(params)
        ctx: dict[str, Any] = dict(self._detector(p))
        real, recip = self._crystal(p)
        A = self._orientations(p, real)  # (No, abc, xyz)
        ctx["A_rows"] = A  # (No, abc, xyz)
        lam = self._source_lambda * (p["lambda0"] / float(self.geometry.lambda0))  # (Ns,)
        ctx["lambda"] = lam
        # h = a . diffracted / lambda - a . incident / lambda for every (axis, orientation,
        # source): the coefficients of the diffracted direction's x, y, z and the offset,
        # laid out (abc, No, Ns, 1) to broadcast over a chunk's (pixel x sub-pixel) axis
        Ns = lam.shape[0]
        lam4 = lam.view(1, 1, Ns, 1)
        A_t = A.permute(2, 1, 0)  # (xyz, abc, No)
        ctx["hkl_coef"] = [(A_t[x][:, :, None, None] / lam4).contiguous() for x in range(3)]
        A_inc = torch.einsum("okx,sx->kos", A, self._incident)  # (abc, No, Ns)
        ctx["hkl_bias"] = (-(A_inc[..., None] / lam4)).contiguous()  # (abc, No, Ns, 1)
        ctx["recip"] = recip
        # longest a, b, c over the orientations (m): bounds the Miller indices
        ctx["axis_length"] = [float(x) for x in A.detach().norm(dim=-1).amax(0).cpu()]
        N = p["N"]
        ctx["N"] = N
        values = [float(x) for x in N.detach().cpu()]
        ctx["N_gt1"] = [x > 1 for x in values]
        ctx["N_even"] = [round(x) % 2 == 0 for x in values]
        ctx["N_values"] = values
        ctx["fudge"] = p["fudge"]
        ctx["kahn"] = p["polarization"]
        fluence = p["fluence"]
        w = float(self.config.beam.water_size)
        ctx["I_bg"] = WATER_F * WATER_F * R_E_SQR * fluence * w * w * w * 1e6 * AVOGADRO / WATER_MW
        ctx["scale"] = R_E_SQR * fluence
        return ctx

    # ----------------------------------------------------------------- kernel

    def _grating(self, h: torch.Tensor, N: torch.Tensor, even: bool, ip: bool) -> torch.Tensor:
        """sin(pi N h) / sin(pi h) for N cells along an axis; h may be overwritten.

        As in the C engine, both sines are reduced first: with h = n + d (n whole,
        |d| <= 1/2) the factor is (-1)^(n (N - 1)) sin(pi N d) / sin(pi d), and N at
        d = 0 (times the same sign).  The sign takes the parity of the nearest whole N,
        so that the factor stays smooth in a real-valued N (``even``: that whole N is even).
        """
        n = torch.round(h)
        d = h.sub_(n) if ip else h - n
        t = d * N
        den = torch.sin(d.mul_(math.pi) if ip else d * math.pi)
        at_zero = den == 0
        if not ip:
            den = torch.where(at_zero, torch.ones_like(den), den)
        num = t.mul_(math.pi).sin_() if ip else torch.sin(t * math.pi)
        ratio = num.div_(den) if ip else num / den
        if ip:
            ratio = ratio.masked_fill_(at_zero, N)
        else:
            ratio = torch.where(at_zero, N.expand_as(ratio), ratio)
        if even:
            # (-1)^n for an even number of cells
            sign = n.remainder_(2).mul_(-2.0).add_(1.0) if ip else 1.0 - 2.0 * torch.remainder(n, 2)
            ratio = ratio.mul_(sign) if ip else ratio * sign
        return ratio

    def _grating_ip(self, ctx: dict[str, Any], H: torch.Tensor, H0: torch.Tensor | None) -> torch.Tensor:
        """The square crystal's factor, product over the axes with N > 1, rendering only.

        The three axes run as one stacked tensor, reduced by the nearest whole indices
        ``H0`` (``H`` is overwritten).  The sign (-1)^(n (N - 1)) of :meth:`_grating` is
        left out: the image only takes the square of the factor.
        """
        axes = [k for k in range(3) if ctx["N_gt1"][k]]
        if not axes:
            return torch.ones_like(H[0])
        if H0 is None:
            H0 = torch.round(H, out=self._buffer("H0", H.shape))
        if len(axes) < 3:
            sel = torch.tensor(axes, device=H.device)
            H, H0 = H.index_select(0, sel), H0.index_select(0, sel)
        values = ctx["N_values"]
        Nv = torch.tensor([values[k] for k in axes], dtype=H.dtype, device=H.device)
        D = H.sub_(H0)  # |D| <= 1/2
        # x = pi D + tiny: a power of two far below any non-zero pi D (which it leaves as it
        # is), so that D = 0 gives sin(N tiny) / sin(tiny) = N without a 0 / 0
        tiny = 2.0**-500 if D.dtype == torch.float64 else 2.0**-100
        x = torch.add(torch.tensor(tiny, dtype=D.dtype, device=D.device), D, alpha=math.pi, out=D)
        num = torch.mul(x, Nv.view((-1,) + (1,) * (D.dim() - 1)), out=H0)
        ratio = num.sin_().div_(x.sin_())
        F = ratio[0]
        for i in range(1, len(axes)):
            F = F.mul_(ratio[i])
        return F

    def _lattice(self, ctx: dict[str, Any], H: torch.Tensor, H0: torch.Tensor | None,
                 ip: bool, rec: _Recorder | None = None) -> torch.Tensor:
        """Lattice factor of fractional indices ``H`` (abc, ...) with nearest whole ``H0``.

        Returns the factor over ``H``'s remaining axes; ``H`` is overwritten when ``ip``.
        ``rec`` (never with ``ip``) keeps a square crystal's three grating factors.
        """
        N = ctx["N"]
        shape = int(self.geometry.shape)
        if shape == Shape.SQUARE:
            if ip:
                return self._grating_ip(ctx, H, H0)
            hkl = H.unbind(0)
            F = None
            parts = []
            for k in range(3):
                if not ctx["N_gt1"][k]:
                    parts.append(None)
                    continue  # the C engine leaves this factor out
                g = self._grating(hkl[k], N[k], ctx["N_even"][k], ip)
                parts.append(g)
                F = g if F is None else F * g
            if rec is not None:
                rec.put("F_latt_abc", torch.stack([torch.ones_like(hkl[0]) if g is None else g for g in parts], -1)
                        .permute(2, 1, 0, 3).reshape(-1, hkl[0].shape[0], 3))
            return F if F is not None else torch.ones_like(hkl[0])
        hkl, h0 = H.unbind(0), H0.unbind(0)
        Na, Nb, Nc = N[0], N[1], N[2]
        dh = [hkl[k].sub_(h0[k]) if ip else hkl[k] - h0[k] for k in range(3)]
        fudge = ctx["fudge"]
        if shape == Shape.ROUND:
            hrad = None
            for k in range(3):
                t = dh[k].square_().mul_(N[k] * N[k]) if ip else dh[k] * dh[k] * N[k] * N[k]
                hrad = t if hrad is None else (hrad.add_(t) if ip else hrad + t)
            r2 = hrad * fudge
            zero = r2 == 0
            x = math.pi * torch.sqrt(torch.where(zero, torch.ones_like(r2), r2))
            sphere = 3.0 * (torch.sin(x) / x - torch.cos(x)) / (x * x)
            # the difference above cancels for small x: there the series takes over, as in
            # the C engine (below 0.01, exact in double precision; single precision needs
            # it further out and one more term)
            x2 = x * x
            if self.cdtype == torch.float64:
                series, below = 1.0 - x2 / 10.0 + x2 * x2 / 280.0, 0.01
            else:
                series, below = 1.0 - x2 / 10.0 + x2 * x2 / 280.0 - x2 * x2 * x2 / 15120.0, 0.5
            sphere = torch.where(x < below, series, sphere)
            sphere = torch.where(zero, torch.ones_like(sphere), sphere)
            return Na * Nb * Nc * ROUND_SCALE * sphere
        recip = ctx["recip"]  # rows a*, b*, c* (1/A)
        rad = None
        for x in range(3):
            d = dh[0] * recip[0, x]
            d = d.addcmul_(dh[1], recip[1, x]).addcmul_(dh[2], recip[2, x]) if ip else \
                torch.addcmul(torch.addcmul(d, dh[1], recip[1, x]), dh[2], recip[2, x])
            d = d.square_() if ip else d * d
            rad = d if rad is None else (rad.add_(d) if ip else rad + d)
        rad = rad * (Na * Na * Nb * Nb * Nc * Nc)
        if shape == Shape.GAUSS:
            return Na * Nb * Nc * torch.exp(-(rad / 0.63 * fudge))
        return Na * Nb * Nc * (rad * fudge < 0.3969).to(self.cdtype)

    def _nearest_F(self, H0: torch.Tensor, ip: bool = False, inside: bool = False) -> torch.Tensor:
        """F of the nearest reflections ``H0`` (abc, ...); default_F outside the table.

        The indices are clamped to the padded table's range, whose border holds
        default_F (not needed when ``inside``: all of them are known to lie in it).  The
        flat index is summed in the floating-point type (exact: see
        :meth:`_prepare_table`) and converted to an integer once.
        """
        if self._index_exact_dtype is not None and H0.dtype != self._index_exact_dtype:
            H0 = H0.to(self._index_exact_dtype)
        lo, hi, strides = self._index_lo, self._index_hi, self._padded_strides
        if ip:
            buf = self._buffer("index", H0.shape, H0.dtype)
            if inside:
                c = list(H0.unbind(0))
                flat = torch.add(c[2], c[1], alpha=strides[1], out=buf[0])
            else:
                c = [torch.clamp(H0[k], lo[k], hi[k], out=buf[k]) for k in range(3)]
                flat = c[2].add_(c[1], alpha=strides[1])
        else:
            c = [torch.clamp(H0[k], lo[k], hi[k]) for k in range(3)]
            flat = c[2].add(c[1], alpha=strides[1])
        flat = flat.add_(c[0], alpha=strides[0]).sub_(self._index_offset)
        if not ip:
            return self._table.take(flat.to(torch.int64))
        # a gather along the flat table (index_select) runs several times faster than take
        itype = torch.int32 if self._table.numel() < 2**31 else torch.int64
        index = self._buffer("index_int", (flat.numel(),), itype).copy_(flat.view(-1))
        F = torch.index_select(self._table, 0, index, out=self._buffer("F_cell", (flat.numel(),)))
        return F.view(flat.shape)

    def _tricubic_F(self, hkl: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Interpolated F (M, No) and whether the 4x4x4 neighbourhood was inside the table."""
        nh, nk, nl = self._table_shape
        hmin, kmin, lmin = self._table_min
        h, k, l = hkl
        bad = ((h - hmin + 3 > nh) | (h - 2 < hmin) | (k - kmin + 3 > nk) | (k - 2 < kmin)
               | (l - lmin + 3 > nl) | (l - 2 < lmin))
        hf, kf, lf = torch.floor(h), torch.floor(k), torch.floor(l)
        # indices into the padded table (one default_F cell before every axis)
        ph, pk, pl = self._padded_shape
        hi = torch.clamp(hf - hmin, 0, ph - 4).to(torch.int64)
        ki = torch.clamp(kf - kmin, 0, pk - 4).to(torch.int64)
        li = torch.clamp(lf - lmin, 0, pl - 4).to(torch.int64)
        sh, sk, _ = self._padded_strides
        along_h = []
        for i in range(4):
            along_k = []
            for j in range(4):
                row = (hi + i) * sh + (ki + j) * sk + li
                ys = [self._table.take(row + m) for m in range(4)]
                along_k.append(_lagrange4(lf, l, ys))
            along_h.append(_lagrange4(kf, k, along_k))
        return _lagrange4(hf, h, along_h), ~bad

    def _kernel(self, ctx: dict[str, Any], pix: torch.Tensor, grad: bool, stats: bool,
                rec: _Recorder | None = None) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """Photons of the pixels with flat indices ``pix`` (and their omega sum, fallbacks).

        ``rec`` (None in rendering) keeps the intermediate tensors for :func:`trace_pixel`;
        it turns the in-place arithmetic off, which changes no value.
        """
        g = self.geometry
        dt = self.cdtype
        # in-place arithmetic where nothing needs the operands afterwards
        ip = not grad and rec is None
        os_, L, T, Ns = self.oversample, self.layers, self.n_sub, self.n_sources
        No = self.n_orient
        P = pix.shape[0]
        fpixels = self.shape[1]
        f, s = pix % fpixels, torch.div(pix, fpixels, rounding_mode="floor")
        Fdet = self._fdet_of_column.index_select(0, f)  # (P, os)
        Sdet = self._sdet_of_row.index_select(0, s)
        fdet, sdet, odet, pix0 = ctx["fdet"], ctx["sdet"], ctx["odet"], ctx["pix0"]

        def dot3(a: list[torch.Tensor], b: Any) -> torch.Tensor:
            """a[0] b[0] + a[1] b[1] + a[2] b[2] with fused multiply-adds (a holds the full shape)."""
            r = a[0] * b[0]
            if ip:
                return r.addcmul_(a[1], b[1]).addcmul_(a[2], b[2])
            return torch.addcmul(torch.addcmul(r, a[1], b[1]), a[2], b[2])

        # ---- per (pixel, sub-pixel): position components, (P, T) each
        pos = []
        for i in range(3):
            c = Fdet[:, None, None, :] * fdet[i] + Sdet[:, None, :, None] * sdet[i]  # (P, 1, os, os)
            if L > 1:
                c = c + self._odet_offsets[None, :, None, None] * odet[i]
            c = c.add_(pix0[i]) if ip else c + pix0[i]
            pos.append(c.reshape(P, T))
        if g.curved:
            dist = ctx["distance"]
            start = ctx["beam"] * dist
            mid = _rotate_axis_c((start[0], start[1], start[2]), sdet, pos[1] / dist)
            pos = list(_rotate_axis_c(mid, fdet, pos[2] / dist))
        if rec is not None:
            rec.put("Fdet", Fdet)
            rec.put("Sdet", Sdet)
            rec.put("Odet", self._odet_offsets)
            rec.put("position", torch.stack(pos, -1))  # (P, T, 3)
        airpath = dot3(pos, pos)
        airpath = airpath.sqrt_() if ip else torch.sqrt(airpath)
        dif = [c.div_(airpath) for c in pos] if ip else [c / airpath for c in pos]
        px = float(g.pixel_size)
        if g.point_pixel:
            omega = 1.0 / airpath
            omega = omega.div_(airpath) if ip else omega / airpath
        else:
            omega = px * px / airpath
            omega = omega.div_(airpath).mul_(ctx["close"]).div_(airpath) if ip else \
                omega / airpath * ctx["close"] / airpath
        os_thick, os_polar, os_omega = bool(g.oversample_thick), bool(g.oversample_polar), bool(g.oversample_omega)
        capture = None
        if os_thick or float(g.thick) != 0.0:
            parallax = dot3(dif, odet)
            capture = torch.exp(self._capture_c1 / parallax) - torch.exp(self._capture_c2 / parallax)
        if rec is not None:
            rec.put("diffracted", torch.stack(dif, -1))  # (P, T, 3)
            rec.put("airpath", airpath)
            rec.put("omega", omega)
            rec.put("capture", capture)

        # ---- per (pixel, sub-pixel, source): resolution cut and polarization, (P, T, Ns)
        d3 = [c[:, :, None] for c in dif]
        passed = None
        dmin = float(g.dmin)
        if dmin > 0.0 or rec is not None:
            lam = ctx["lambda"]
            S = [(d3[k] - self._incident[:, k]) / lam for k in range(3)]
            stol = 0.5 * torch.sqrt(dot3(S, S))
            if rec is not None:
                rec.put("incident", self._incident)
                rec.put("lambda", lam)
                rec.put("scattering", torch.stack(S, -1))  # (P, T, Ns, 3)
                rec.put("stol", stol)
        if dmin > 0.0:
            passed = ~((stol > 0) & (dmin > 0.5 / stol))
        polar = None
        if os_polar or not g.nopolar:
            iu, e_in = self._incident_unit, self._e_in
            cos2t = dot3(d3, [iu[:, 0], iu[:, 1], iu[:, 2]])
            e_out = dot3(d3, [e_in[:, 0], e_in[:, 1], e_in[:, 2]])
            cos2t_sqr = cos2t * cos2t
            # cos(2 psi) sin^2(2 theta) = E_out^2 - B_out^2 in the orthonormal frame (inc, E_in,
            # B_in), and E_out^2 + B_out^2 = 1 - cos^2(2 theta) for the unit diffracted direction
            term = torch.addcmul(cos2t_sqr - 1.0, e_out, e_out, value=2.0)
            if self._degenerate_polar:
                term = torch.where(self._polar_degenerate_src, 1 - cos2t_sqr, term)
            polar = 0.5 * (1.0 + cos2t_sqr - ctx["kahn"] * term)
        if rec is not None:
            rec.put("passed", passed)
            rec.put("polarization", polar)

        # ---- per (pixel, sub-pixel, source, orientation), in pieces of the (pixel x
        # sub-pixel) axis Q when rendering on the CPU (see _CPU_CHUNK_ELEMENTS)
        Q = P * T
        dq = [c.reshape(1, 1, 1, Q) for c in dif]
        passed_t = passed.reshape(Q, Ns).t() if passed is not None else None
        inside = ip and self.has_table and self.device.type == "cpu" and self._indices_inside_table(ctx, dif)
        piece = Q
        if ip and self.device.type == "cpu":
            piece = max(1, _CPU_CHUNK_ELEMENTS * torch.get_num_threads() // (No * Ns))
        if piece >= Q:
            I_sub, FF, fallbacks = self._orientation_sum(ctx, dq, passed_t, ip, stats, inside, rec)
        else:
            I_sub = torch.empty((Ns, Q), dtype=dt, device=self.device)
            fallbacks = 0 if self.interpolate and stats else None
            for q0 in range(0, Q, piece):
                part, _, fb = self._orientation_sum(ctx, [c[..., q0:q0 + piece] for c in dq],
                                                    passed_t[:, q0:q0 + piece] if passed_t is not None else None,
                                                    ip, stats, inside, None)
                I_sub[:, q0:q0 + piece] = part
                if fb is not None:
                    fallbacks += fb
        if not self.has_table:
            I_sub = I_sub * (self.default_F * self.default_F)
        I_sub = I_sub.t().reshape(P, T, Ns)

        # ---- weights and the pixel's sum
        weight = None
        if os_thick:
            weight = capture[:, :, None]
        if os_polar:
            weight = polar if weight is None else weight * polar
        if os_omega:
            weight = omega[:, :, None] if weight is None else weight * omega[:, :, None]
        if weight is not None:
            I_sub = I_sub * weight
        if passed is not None:
            I_sub = torch.where(passed, I_sub, torch.zeros_like(I_sub))
        if rec is not None:
            # each orientation's term of the sum, with the factors the sum applies to it
            term = _per_m(FF).view(P, T, Ns, No)
            if not self.has_table:
                term = term * (self.default_F * self.default_F)
            if weight is not None:
                term = term * weight[..., None]
            if passed is not None:
                term = torch.where(passed[..., None], term, torch.zeros_like(term))
            rec.put("term", term)  # (P, T, Ns, No)
        I = ctx["I_bg"] + I_sub.sum(dim=(1, 2))
        photons = ctx["scale"] * I / self.steps
        if rec is not None:
            rec.put("I_background", ctx["I_bg"])
            rec.put("I_total", I)
            rec.put("scale", ctx["scale"] / self.steps)
        if not os_thick and capture is not None:
            last = capture[:, (L - 1) * os_ * os_:]
            factor = _first_nonzero(last)[0]
            photons = photons * factor
            if rec is not None:
                rec.put("capture_applied", factor)
        if not os_polar and not g.nopolar:
            pv = polar if passed is None else torch.where(passed, polar, torch.zeros_like(polar))
            factor = _first_nonzero(pv.reshape(P, T * Ns))[0]
            photons = photons * factor
            if rec is not None:
                rec.put("polarization_applied", factor)
        omega_first, omega_idx = _first_nonzero(omega)
        if not os_omega:
            photons = photons * omega_first
            if rec is not None:
                rec.put("omega_applied", omega_first)
        if rec is not None:
            rec.put("photons", photons)
        omega_sum = None
        if stats:
            if os_omega:
                omega_sum = omega.sum()
            else:
                omega_sum = (omega_first * (T - omega_idx).to(dt)).sum()
        return photons, omega_sum, fallbacks

    def _orientation_sum(self, ctx: dict[str, Any], dq: list[torch.Tensor], passed_t: torch.Tensor | None,
                         ip: bool, stats: bool, inside: bool,
                         rec: _Recorder | None) -> tuple[torch.Tensor, torch.Tensor, Any]:
        """Sum over orientations of (F_cell F_latt)^2 for diffracted directions ``dq``.

        ``dq``: the x, y, z components, each (1, 1, 1, q) over (pixel x sub-pixel);
        ``passed_t``: (Ns, q) resolution cut or None.  Returns the (Ns, q) sums (without
        default_F^2 when there is no table), the (No, Ns, q) terms they sum, and the
        number of interpolation fallbacks (with ``stats``).  The Miller indices are
        stacked as (abc, No, Ns, q), q innermost (every broadcast then runs along
        contiguous memory): h = a . diffracted / lambda - a . incident / lambda.
        """
        g = self.geometry
        No, Ns = self.n_orient, self.n_sources
        q = dq[0].shape[-1]
        coef = ctx["hkl_coef"]
        if ip:
            H = torch.addcmul(ctx["hkl_bias"], dq[0], coef[0], out=self._buffer("H", (3, No, Ns, q)))
            H = H.addcmul_(dq[1], coef[1]).addcmul_(dq[2], coef[2])
        else:
            H = torch.addcmul(ctx["hkl_bias"], dq[0], coef[0])
            H = torch.addcmul(torch.addcmul(H, dq[1], coef[1]), dq[2], coef[2])
        H0 = None
        if int(g.shape) != Shape.SQUARE or self.has_table or rec is not None:
            H0 = torch.round(H, out=self._buffer("H0", H.shape)) if ip else torch.round(H)
        if rec is not None:
            rec.put("hkl", _per_m(H.permute(1, 2, 3, 0)))  # (M, No, 3)
            rec.put("hkl_nearest", _per_m(H0.permute(1, 2, 3, 0)))
        fallbacks = None
        F_cell = None
        if self.has_table:
            F_cell = self._nearest_F(H0, ip, inside)
            if self.interpolate:
                F_interp, ok = self._tricubic_F(list(H.unbind(0)))
                F_cell = torch.where(ok, F_interp, F_cell)
        F_latt = self._lattice(ctx, H, H0, ip, rec)  # (No, Ns, q); H and H0 are gone in place
        if rec is not None:
            rec.put("F_latt", _per_m(F_latt))
            rec.put("F_cell", _per_m(F_cell) if F_cell is not None else
                    torch.full((q * Ns, No), self.default_F, dtype=self.cdtype))
        if self.interpolate and stats:
            counted = ~ok
            if float(self.config.beam.water_size) == 0.0:
                counted &= F_latt != 0
            if passed_t is not None:
                counted &= passed_t
            fallbacks = int(counted.sum())
        if F_cell is not None:
            FF = F_cell.mul_(F_latt) if ip else F_cell * F_latt
            FF = FF.square_() if ip else FF * FF
        else:
            FF = F_latt.square_() if ip else F_latt * F_latt
        return _sum_leading(FF, ip), FF, fallbacks

    def _indices_inside_table(self, ctx: dict[str, Any], dif: list[torch.Tensor]) -> bool:
        """Whether every nearest reflection of these diffracted directions lies in the table.

        |h| <= |a| |diffracted - incident| / lambda bounds each index over all
        orientations; inside the padded table's range the look-up needs no clamping.
        """
        iv = self._incident
        cos = dif[0][..., None] * iv[:, 0] + dif[1][..., None] * iv[:, 1] + dif[2][..., None] * iv[:, 2]
        # |d - i|^2 = 1 + |i|^2 - 2 d . i for a unit d
        far = (1.0 + (iv * iv).sum(-1) - 2.0 * cos.reshape(-1, iv.shape[0]).amin(0)).clamp_min(0.0).sqrt()
        s_max = float((far / ctx["lambda"]).amax())
        for k in range(3):
            bound = math.ceil(ctx["axis_length"][k] * s_max * (1.0 + 1e-6) + 1e-6)
            if -bound < self._index_lo[k] or bound > self._index_hi[k]:
                return False
        return True

    # ---------------------------------------------------------------- driving

    def chunk_pixels(self, grad: bool = False, concurrent: int = 1, intra: int = 1) -> int:
        """Pixels per chunk that keep the temporaries of ``concurrent`` chunks within the budget.

        On the CPU (without gradients) chunks are also capped near the size that runs
        fastest: about ``_CPU_CHUNK_SUBPIXELS`` (pixel x sub-pixel) elements per thread of
        each operation (``intra``), or one piece of ``_CPU_CHUNK_ELEMENTS``
        orientation-level elements where that is more.
        """
        isz = torch.finfo(self.cdtype).bits // 8
        e = self.n_sub * self.n_sources * self.n_orient
        per_e = _ORIENT_TEMPS + (_TABLE_TEMPS if self.has_table else 0) + (_INTERP_TEMPS if self.interpolate else 0)
        if grad:
            per_e *= _GRAD_FACTOR
        per_pixel = isz * (per_e * e + _SOURCE_TEMPS * self.n_sub * self.n_sources + _SUB_TEMPS * self.n_sub)
        pixels = int(self.memory_budget_gib * 2**30 // max(per_pixel * max(concurrent, 1), 1))
        if self.device.type == "cpu" and not grad:
            intra = max(intra, 1)
            pixels = min(pixels, max(1, _CPU_CHUNK_ELEMENTS * intra // max(e, 1),
                                     _CPU_CHUNK_SUBPIXELS * intra // self.n_sub))
        return max(1, pixels)

    def _render(self, params: Mapping[str, Any] | None, progress: Callable[[float], None] | None,
                stats: bool, workers: int = 1) -> tuple[torch.Tensor, float, int]:
        """Image, omega sum and fallback count.

        Without gradients on the CPU, ``workers`` threads render: a pool of up to
        ``_CPU_POOL_WORKERS`` Python threads takes whole chunks, each operation using the
        remaining threads.  Otherwise the chunks run one after the other.
        """
        grad = torch.is_grad_enabled() and any(
            isinstance(v, torch.Tensor) and v.requires_grad for v in (params or {}).values())
        ctx = self._context(params)
        sel = self._selected
        n = sel.numel()
        pool, intra = 1, 1
        if not grad and self.device.type == "cpu":
            workers = max(1, workers)
            pool = min(workers, _CPU_POOL_WORKERS)
            intra = max(1, workers // pool)
        chunk = self.chunk_pixels(grad, pool, intra)
        if pool > 1:
            chunk = max(1, min(chunk, -(-n // pool)))  # at least one chunk per pool thread
        n_chunks = max(1, -(-n // chunk))
        pool = max(1, min(pool, n_chunks))
        self.last_chunk_pixels = chunk
        sp, fp = self.shape
        if self.device.type == "cpu":
            # calloc'ed pages: a large detector with a small ROI pays only for what it touches
            flat = torch.from_numpy(np.zeros(sp * fp, dtype=np.float64 if self.dtype == torch.float64 else np.float32))
        else:
            flat = torch.zeros(sp * fp, dtype=self.dtype, device=self.device)
        if grad:
            values = []
            for i in range(n_chunks):
                pix = sel[i * chunk:(i + 1) * chunk]
                if n_chunks > 1:
                    out = checkpoint(lambda q: self._kernel(ctx, q, True, False)[0], pix, use_reentrant=False)
                else:
                    out = self._kernel(ctx, pix, True, False)[0]
                values.append(out)
                if progress is not None:
                    progress((i + 1) / n_chunks)
            if n:
                flat = flat.index_put((sel,), torch.cat(values).to(self.dtype))
            return flat.view(sp, fp), 0.0, 0

        omega_sum = 0.0
        fallbacks = 0

        def run(i: int) -> tuple[torch.Tensor, torch.Tensor, Any, Any]:
            pix = sel[i * chunk:(i + 1) * chunk]
            with torch.no_grad():
                out, om, fb = self._kernel(ctx, pix, False, stats)
            return pix, out, om, fb

        def collect(result: tuple[torch.Tensor, torch.Tensor, Any, Any], done: int) -> None:
            nonlocal omega_sum, fallbacks
            pix, out, om, fb = result
            flat[pix] = out.detach().to(self.dtype)
            if om is not None:
                omega_sum += float(om)
            if fb is not None:
                fallbacks += int(fb)
            if progress is not None:
                progress(done / n_chunks)

        if n == 0:
            if progress is not None:
                progress(1.0)
        elif self.device.type != "cpu":
            for i in range(n_chunks):
                collect(run(i), i + 1)
        else:
            old = torch.get_num_threads()
            torch.set_num_threads(intra)  # before the pool's threads start: they inherit it
            try:
                if pool == 1:
                    for i in range(n_chunks):
                        collect(run(i), i + 1)
                else:
                    with ThreadPoolExecutor(max_workers=pool) as executor:
                        futures = [executor.submit(run, i) for i in range(n_chunks)]
                        for done, future in enumerate(as_completed(futures), start=1):
                            collect(future.result(), done)
            finally:
                torch.set_num_threads(old)
        return flat.view(sp, fp), omega_sum, fallbacks

    def image(self, params: Mapping[str, Any] | None = None, *,
              progress: Callable[[float], None] | None = None) -> torch.Tensor:
        """The (slow, fast) image in photons for ``params`` (defaults for missing names).

        Gradients flow to every parameter tensor that requires grad.
        """
        return self._render(params, progress, stats=False, workers=torch.get_num_threads())[0]


def render(
    config: Config,
    inputs: Inputs | None = None,
    *,
    dtype: str = "float64",
    device: str | None = None,
    threads: int = 0,
    progress: Callable[[float], None] | None = None,
    memory_budget_gib: float = 2.0,
    **_: Any,
) -> Result:
    """Render ``config`` with the torch engine (same result as the C engine's ``render``)."""
    start = time.perf_counter()
    old_threads = torch.get_num_threads()
    if threads and threads > 0:
        torch.set_num_threads(int(threads))
    try:
        workers = int(threads) if threads and threads > 0 else torch.get_num_threads()
        model = TorchModel(config, inputs, dtype=dtype, device=device, memory_budget_gib=memory_budget_gib)
        with torch.no_grad():
            image_t, omega_sum, fallbacks = model._render(None, progress, stats=True, workers=workers)
        image = image_t.cpu().numpy()
    finally:
        if threads and threads > 0:
            torch.set_num_threads(old_threads)
    plan = model.plan
    stats = plan.stats(image, omega_sum=omega_sum, fallbacks=fallbacks)
    name = str(dtype) if not isinstance(dtype, torch.dtype) else str(dtype).replace("torch.", "")
    return plan.result(image, stats, "torch", name, str(model.device), time.perf_counter() - start,
                       extras={"chunk_pixels": model.last_chunk_pixels, "workers": workers})


def trace_pixel(
    config: Config,
    inputs: Inputs | None = None,
    fpixel: int = 0,
    spixel: int = 0,
    *,
    dtype: str = "float64",
    device: str | None = None,
) -> tuple[list[TraceRecord], float]:
    """The intermediate quantities of one pixel as the torch engine computes them.

    The same records as :meth:`pybragg.engines.c_engine.trace_pixel` (names, loop
    indices (layer, sub-pixel slow, sub-pixel fast, source, phi step, domain; -1
    where one does not apply), values, loop order and skips), taken from the model's
    kernel run on a one-pixel chunk (see the module docstring), and the pixel's value
    rounded to single precision as the C engine reports it.  A pixel outside the
    region of interest or the mask is traced all the same.  Raises ValueError for a
    pixel outside the detector.
    """
    model = TorchModel(config, inputs, dtype=dtype, device=device)
    sp, fp = model.shape
    fpixel, spixel = int(fpixel), int(spixel)
    if not (0 <= fpixel < fp and 0 <= spixel < sp):
        raise ValueError(f"pixel (slow {spixel}, fast {fpixel}) is outside the {sp}x{fp} detector")
    rec = _Recorder()
    with torch.no_grad():
        ctx = model._context(None)
        for name in ("pix0", "fdet", "sdet", "odet"):
            rec.put(name, ctx[name])
        pix = torch.tensor([spixel * fp + fpixel], dtype=torch.int64, device=model.device)
        model._kernel(ctx, pix, False, False, rec)

    g = model.geometry
    os_, L, Ns = model.oversample, model.layers, model.n_sources
    n_dom = int(g.mosaic_domains)
    No = model.n_orient
    T = L * os_ * os_
    os_thick, os_polar, os_omega = bool(g.oversample_thick), bool(g.oversample_polar), bool(g.oversample_omega)
    water = float(config.beam.water_size) != 0.0
    records: list[TraceRecord] = []

    def emit(name: str, index: tuple[int, ...], values: Any) -> None:
        records.append(TraceRecord(name, index, tuple(float(v) for v in np.ravel(values))))

    none = (-1,) * 6
    for name in ("pix0", "fdet", "sdet", "odet", "I_background"):
        emit(name, none, rec[name])

    # the solid angle, capture fraction and polarization in effect at each step of
    # the C loop (those not oversampled are computed once and then carried)
    omega = rec["omega"].reshape(T)
    omega_eff = omega if os_omega else _running_first_nonzero(omega)
    capture = rec.get("capture")
    if capture is None:
        capture_eff = np.ones(T)
    elif os_thick:
        capture_eff = capture.reshape(T)
    else:
        capture_eff = np.concatenate([_running_first_nonzero(c) for c in capture.reshape(L, os_ * os_)])
    passed = rec.get("passed")
    passed = np.ones((T, Ns), dtype=bool) if passed is None else passed.reshape(T, Ns)
    polar = rec.get("polarization")
    if polar is None:
        polar_eff = np.ones((T, Ns))
    elif os_polar:
        polar_eff = polar.reshape(T, Ns)
    else:
        polar_eff = _running_first_nonzero(np.where(passed, polar.reshape(T, Ns), 0.0).ravel()).reshape(T, Ns)

    Fdet, Sdet, Odet = rec["Fdet"].reshape(os_), rec["Sdet"].reshape(os_), rec["Odet"].reshape(L)
    position, diffracted = rec["position"].reshape(T, 3), rec["diffracted"].reshape(T, 3)
    airpath = rec["airpath"].reshape(T)
    incident, lam = rec["incident"].reshape(Ns, 3), rec["lambda"].reshape(Ns)
    scattering, stol = rec["scattering"].reshape(T, Ns, 3), rec["stol"].reshape(T, Ns)
    hkl, hkl0 = rec["hkl"].reshape(T, Ns, No, 3), rec["hkl_nearest"].reshape(T, Ns, No, 3)
    abc = rec.get("F_latt_abc")
    abc = None if abc is None else abc.reshape(T, Ns, No, 3)
    F_latt, F_cell = rec["F_latt"].reshape(T, Ns, No), rec["F_cell"].reshape(T, Ns, No)
    # the running sum of the C loop: the background, then every term in loop order
    term = rec["term"].reshape(T * Ns * No)
    I_sum = (np.cumsum(term) + rec["I_background"].reshape(())).reshape(T, Ns, No)

    t = 0
    for layer in range(L):
        for ss in range(os_):
            for sf in range(os_):
                sub = (layer, ss, sf)
                at = sub + (-1, -1, -1)
                emit("subpixel_fso", at, (Fdet[sf], Sdet[ss], Odet[layer]))
                emit("position", at, position[t])
                emit("diffracted", at, diffracted[t])
                emit("airpath", at, airpath[t])
                emit("omega", at, omega_eff[t])
                emit("capture_fraction", at, capture_eff[t])
                for s in range(Ns):
                    at = sub + (s, -1, -1)
                    emit("incident", at, incident[s])
                    emit("lambda", at, lam[s])
                    emit("scattering", at, scattering[t, s])
                    emit("stol", at, stol[t, s])
                    if not passed[t, s]:
                        continue  # the resolution cut
                    emit("polarization", at, polar_eff[t, s])
                    for o in range(No):
                        if F_latt[t, s, o] == 0.0 and not water:
                            continue
                        at = sub + (s, o // n_dom, o % n_dom)
                        emit("hkl", at, hkl[t, s, o])
                        emit("hkl_nearest", at, hkl0[t, s, o] + 0.0)  # whole numbers: no -0 (as in C)
                        if abc is not None:
                            emit("F_latt_abc", at, abc[t, s, o])
                        emit("F_latt", at, F_latt[t, s, o])
                        emit("F_cell", at, F_cell[t, s, o])
                        emit("I_sum", at, I_sum[t, s, o])
                t += 1

    emit("I_total", none, rec["I_total"])
    emit("scale", none, rec["scale"])
    if not os_omega:
        emit("omega_applied", none, rec["omega_applied"])
    if not os_polar:
        applied = rec.get("polarization_applied")
        emit("polarization_applied", none, 1.0 if applied is None else applied)
    if not os_thick:
        applied = rec.get("capture_applied")
        emit("capture_applied", none, 1.0 if applied is None else applied)
    value = float(np.float32(rec["photons"].reshape(())))
    emit("pixel", none, value)
    return records, value
