"""Lattice factor of the torch engine (``lattice_factor`` of ``csrc/kernel.c``).

:func:`lattice_factor` is the factor of every spot shape as a differentiable
function of the fractional Miller indices, the cell counts ``N`` and ``fudge``
(the differentiable path, the trace and every non-square shape when rendering).
:func:`square_lattice_` is the square crystal's factor for rendering without
gradients: the three axes as one stacked tensor, computed in place, with the sign
left out (the image only takes the factor's square).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from pybragg.config import Shape
from pybragg.constants import GAUSS_SCALE, ROUND_SCALE, TOPHAT_RADIUS_SQR
from pybragg.engines.torch.vec import Scratch


@dataclass(frozen=True)
class Lattice:
    """The spot shape and its parameters for one parameter set.

    ``N`` (3,): unit cells along a, b, c (real-valued); ``values`` the same as floats,
    ``gt1`` which exceed 1 (a factor is left out elsewhere, as in the C engine),
    ``even`` whether the nearest whole count is even (the square factor's sign);
    ``recip`` (3, 3): rows a*, b*, c* (1/A) for the gauss and tophat shapes.
    """

    shape: int
    N: torch.Tensor
    values: tuple[float, float, float]
    gt1: tuple[bool, bool, bool]
    even: tuple[bool, bool, bool]
    fudge: torch.Tensor
    recip: torch.Tensor

    @classmethod
    def of(cls, shape: int, N: torch.Tensor, fudge: torch.Tensor, recip: torch.Tensor) -> Lattice:
        values = tuple(float(x) for x in N.detach().cpu())
        return cls(shape=int(shape), N=N, values=values, gt1=tuple(x > 1 for x in values),
                   even=tuple(round(x) % 2 == 0 for x in values), fudge=fudge, recip=recip)


def grating(h: torch.Tensor, N: torch.Tensor, even: bool) -> torch.Tensor:
    """sin(pi N h) / sin(pi h) for N cells along an axis.

    As in the C engine, both sines are reduced first: with h = n + d (n whole,
    |d| <= 1/2) the factor is (-1)^(n (N - 1)) sin(pi N d) / sin(pi d), and N at
    d = 0 (times the same sign).  The sign takes the parity of the nearest whole N,
    so that the factor stays smooth in a real-valued N (``even``: that whole N is even).
    """
    n = torch.round(h)
    d = h - n
    den = torch.sin(d * math.pi)
    at_zero = den == 0
    den = torch.where(at_zero, torch.ones_like(den), den)
    ratio = torch.sin(d * N * math.pi) / den
    ratio = torch.where(at_zero, N.expand_as(ratio), ratio)
    if even:
        ratio = ratio * (1.0 - 2.0 * torch.remainder(n, 2))  # (-1)^n for an even number of cells
    return ratio


def lattice_factor(lat: Lattice, H: torch.Tensor, H0: torch.Tensor | None, rec: Any = None) -> torch.Tensor:
    """Lattice factor of fractional indices ``H`` (abc, ...) with nearest whole ``H0``.

    Returns the factor over ``H``'s remaining axes.  ``rec`` (the trace's recorder)
    keeps a square crystal's three grating factors.
    """
    N = lat.N
    if lat.shape == Shape.SQUARE:
        hkl = H.unbind(0)
        F = None
        parts = []
        for k in range(3):
            if not lat.gt1[k]:
                parts.append(None)
                continue  # the C engine leaves this factor out
            g = grating(hkl[k], N[k], lat.even[k])
            parts.append(g)
            F = g if F is None else F * g
        if rec is not None:
            abc = torch.stack([torch.ones_like(hkl[0]) if g is None else g for g in parts], -1)
            rec.put("F_latt_abc", abc.permute(2, 1, 0, 3).reshape(-1, hkl[0].shape[0], 3))
        return F if F is not None else torch.ones_like(hkl[0])
    assert H0 is not None
    dh = (H - H0).unbind(0)
    Na, Nb, Nc = N[0], N[1], N[2]
    if lat.shape == Shape.ROUND:
        hrad = dh[0].square() * (Na * Na) + dh[1].square() * (Nb * Nb) + dh[2].square() * (Nc * Nc)
        return Na * Nb * Nc * ROUND_SCALE * sphere_transform(hrad * lat.fudge)
    recip = lat.recip  # rows a*, b*, c* (1/A)
    rad = None
    for x in range(3):
        d = torch.addcmul(torch.addcmul(dh[0] * recip[0, x], dh[1], recip[1, x]), dh[2], recip[2, x])
        rad = d.square() if rad is None else rad + d.square()
    rad = rad * (Na * Na * Nb * Nb * Nc * Nc)
    if lat.shape == Shape.GAUSS:
        return Na * Nb * Nc * torch.exp(-(rad / GAUSS_SCALE * lat.fudge))
    return Na * Nb * Nc * (rad * lat.fudge < TOPHAT_RADIUS_SQR).to(H.dtype)


def sphere_transform(r2: torch.Tensor) -> torch.Tensor:
    """3 (sin x - x cos x) / x^3 at x = pi sqrt(r2), 1 at 0."""
    zero = r2 == 0
    x = math.pi * torch.sqrt(torch.where(zero, torch.ones_like(r2), r2))
    sphere = 3.0 * (torch.sin(x) / x - torch.cos(x)) / (x * x)
    # the difference above cancels for small x: there the series takes over, as in the C
    # engine (below 0.01, exact in double precision; single precision needs it further
    # out and one more term)
    x2 = x * x
    if r2.dtype == torch.float64:
        series, below = 1.0 - x2 / 10.0 + x2 * x2 / 280.0, 0.01
    else:
        series, below = 1.0 - x2 / 10.0 + x2 * x2 / 280.0 - x2 * x2 * x2 / 15120.0, 0.5
    sphere = torch.where(x < below, series, sphere)
    return torch.where(zero, torch.ones_like(sphere), sphere)


def square_lattice_(lat: Lattice, H: torch.Tensor, H0: torch.Tensor | None, scratch: Scratch) -> torch.Tensor:
    """The square crystal's factor, product over the axes with N > 1 (rendering only).

    The three axes run as one stacked tensor, reduced by the nearest whole indices
    ``H0`` (``H`` and ``H0`` are overwritten).  The sign (-1)^(n (N - 1)) of
    :func:`grating` is left out: the image only takes the square of the factor.
    """
    axes = [k for k in range(3) if lat.gt1[k]]
    if not axes:
        return torch.ones_like(H[0])
    if H0 is None:
        H0 = torch.round(H, out=scratch.get("H0", H.shape))
    if len(axes) < 3:
        sel = torch.tensor(axes, device=H.device)
        H, H0 = H.index_select(0, sel), H0.index_select(0, sel)
    if lat.N.dim() > 1:  # a batch of shots (:mod:`.batch`): N per (axis, 1, shot x source, 1)
        Nv = lat.N if len(axes) == 3 else lat.N.index_select(0, sel)
    else:
        Nv = torch.tensor([lat.values[k] for k in axes], dtype=H.dtype, device=H.device)
    D = H.sub_(H0)  # |D| <= 1/2
    # x = pi D + tiny: a power of two far below any non-zero pi D (which it leaves as it
    # is), so that D = 0 gives sin(N tiny) / sin(tiny) = N without a 0 / 0
    tiny = 2.0**-500 if D.dtype == torch.float64 else 2.0**-100
    x = torch.add(torch.tensor(tiny, dtype=D.dtype, device=D.device), D, alpha=math.pi, out=D)
    if Nv.dim() == 1:
        Nv = Nv.view((-1,) + (1,) * (D.dim() - 1))
    num = torch.mul(x, Nv, out=H0)
    ratio = num.sin_().div_(x.sin_())
    F = ratio[0]
    for i in range(1, len(axes)):
        F = F.mul_(ratio[i])
    return F
