"""Structure factors of the torch engine (the table look-ups of ``csrc/kernel.c``).

The table is padded with ``default_F`` (one cell before every axis, at least one
after, at least 4 cells in all: the tricubic stencil) and kept flat.  The nearest
reflection's F comes from :func:`nearest_F` (differentiable path and trace) or
:func:`nearest_F_` (rendering without gradients: scratch tensors, a faster gather,
and no clamping where :func:`indices_inside_table` shows it needless);
:func:`tricubic_F` interpolates.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from pybragg.engines.torch.geometry import to_tensor
from pybragg.engines.torch.vec import Scratch
from pybragg.io.hkl import HKLTable


@dataclass(frozen=True)
class SFTable:
    """The padded flat table and what indexing it needs.

    Nearest whole indices are clamped to [``index_lo``, ``index_hi``] (the padded
    table's range); the flat index sum(stride * (h0 - lo)) is exact in the compute type
    while the partial sums stay below 2^mantissa, otherwise it is summed in
    ``index_exact_dtype`` (float64).
    """

    table: torch.Tensor
    shape: tuple[int, int, int]
    minimum: tuple[int, int, int]
    padded_shape: tuple[int, int, int]
    strides: tuple[int, int, int]
    index_lo: tuple[int, int, int]
    index_hi: tuple[int, int, int]
    index_offset: float
    index_exact_dtype: torch.dtype | None


def build_table(hkl: HKLTable, default_F: float, dtype: torch.dtype, device: torch.device) -> SFTable:
    F = np.asarray(hkl.F, dtype=np.float64)
    pads = [(1, max(1, 3 - n)) for n in F.shape]
    padded = np.pad(F, pads, mode="constant", constant_values=default_F)
    pk, pl = padded.shape[1], padded.shape[2]
    strides = (pk * pl, pl, 1)
    minimum = (int(hkl.h_min), int(hkl.k_min), int(hkl.l_min))
    lo = tuple(m - 1 for m in minimum)
    hi = tuple(m - 1 + n + 1 for m, n in zip(minimum, F.shape, strict=True))
    bound = sum(s * max(abs(a), abs(b)) for s, a, b in zip(strides, lo, hi, strict=True))
    exact = torch.float64 if bound >= 2 ** (53 if dtype == torch.float64 else 24) - 1 else None
    return SFTable(
        table=to_tensor(padded.ravel(), dtype, device), shape=tuple(F.shape), minimum=minimum,
        padded_shape=tuple(padded.shape), strides=strides, index_lo=lo, index_hi=hi,
        index_offset=float(sum(s * a for s, a in zip(strides, lo, strict=True))), index_exact_dtype=exact,
    )


def nearest_F(t: SFTable, H0: torch.Tensor) -> torch.Tensor:
    """F of the nearest reflections ``H0`` (abc, ...); default_F outside the table.

    The indices are clamped to the padded table's range, whose border holds
    default_F; the flat index is summed in the floating-point type (exact: see
    :class:`SFTable`) and converted to an integer once.
    """
    if t.index_exact_dtype is not None and H0.dtype != t.index_exact_dtype:
        H0 = H0.to(t.index_exact_dtype)
    c = [torch.clamp(H0[k], t.index_lo[k], t.index_hi[k]) for k in range(3)]
    flat = c[2].add(c[1], alpha=t.strides[1]).add_(c[0], alpha=t.strides[0]).sub_(t.index_offset)
    return t.table.take(flat.to(torch.int64))


def nearest_F_(t: SFTable, H0: torch.Tensor, scratch: Scratch, inside: bool) -> torch.Tensor:
    """:func:`nearest_F` in scratch tensors, without clamping when ``inside`` (rendering only)."""
    if t.index_exact_dtype is not None and H0.dtype != t.index_exact_dtype:
        H0 = H0.to(t.index_exact_dtype)
    lo, hi, strides = t.index_lo, t.index_hi, t.strides
    buf = scratch.get("index", H0.shape, H0.dtype)
    if inside:
        c = list(H0.unbind(0))
        flat = torch.add(c[2], c[1], alpha=strides[1], out=buf[0])
    else:
        c = [torch.clamp(H0[k], lo[k], hi[k], out=buf[k]) for k in range(3)]
        flat = c[2].add_(c[1], alpha=strides[1])
    flat = flat.add_(c[0], alpha=strides[0]).sub_(t.index_offset)
    # a gather along the flat table (index_select) runs several times faster than take
    itype = torch.int32 if t.table.numel() < 2**31 else torch.int64
    index = scratch.get("index_int", (flat.numel(),), itype).copy_(flat.view(-1))
    F = torch.index_select(t.table, 0, index, out=scratch.get("F_cell", (flat.numel(),)))
    return F.view(flat.shape)


def lagrange4(x0: torch.Tensor, x: torch.Tensor, y: Sequence[torch.Tensor]) -> torch.Tensor:
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


def tricubic_F(t: SFTable, hkl: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Interpolated F and whether the 4x4x4 neighbourhood was inside the table."""
    nh, nk, nl = t.shape
    hmin, kmin, lmin = t.minimum
    h, k, l = hkl
    bad = ((h - hmin + 3 > nh) | (h - 2 < hmin) | (k - kmin + 3 > nk) | (k - 2 < kmin)
           | (l - lmin + 3 > nl) | (l - 2 < lmin))
    hf, kf, lf = torch.floor(h), torch.floor(k), torch.floor(l)
    # indices into the padded table (one default_F cell before every axis)
    ph, pk, pl = t.padded_shape
    hi = torch.clamp(hf - hmin, 0, ph - 4).to(torch.int64)
    ki = torch.clamp(kf - kmin, 0, pk - 4).to(torch.int64)
    li = torch.clamp(lf - lmin, 0, pl - 4).to(torch.int64)
    sh, sk, _ = t.strides
    along_h = []
    for i in range(4):
        along_k = []
        for j in range(4):
            row = (hi + i) * sh + (ki + j) * sk + li
            ys = [t.table.take(row + m) for m in range(4)]
            along_k.append(lagrange4(lf, l, ys))
        along_h.append(lagrange4(kf, k, along_k))
    return lagrange4(hf, h, along_h), ~bad


def indices_inside_table(t: SFTable, axis_length: Sequence[float], incident: torch.Tensor,
                         wavelength: torch.Tensor, dif: Sequence[torch.Tensor]) -> bool:
    """Whether every nearest reflection of the diffracted directions ``dif`` lies in the table.

    |h| <= |a| |diffracted - incident| / lambda bounds each index over all
    orientations (``axis_length``: the longest a, b, c in m); inside the padded
    table's range the look-up needs no clamping.
    """
    iv = incident
    cos = dif[0][..., None] * iv[:, 0] + dif[1][..., None] * iv[:, 1] + dif[2][..., None] * iv[:, 2]
    # |d - i|^2 = 1 + |i|^2 - 2 d . i for a unit d
    far = (1.0 + (iv * iv).sum(-1) - 2.0 * cos.reshape(-1, iv.shape[0]).amin(0)).clamp_min(0.0).sqrt()
    s_max = float((far / wavelength).amax())
    for k in range(3):
        bound = math.ceil(axis_length[k] * s_max * (1.0 + 1e-6) + 1e-6)
        if -bound < t.index_lo[k] or bound > t.index_hi[k]:
            return False
    return True
