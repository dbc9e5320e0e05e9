"""Crystal and mosaic of the torch engine (``csrc/crystal.c``, the mosaic of ``csrc/sources.c``).

:func:`crystal_axes` rebuilds the real and reciprocal axes from the (differentiable)
cell and misset as ``crystal_resolve`` does; :func:`mosaic_rotations` rebuilds the
mosaic domains' rotations from the reference generator's deviates and the spread;
:func:`orientations` turns the axes by every phi step and domain.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from pybragg.config import CrystalConfig
from pybragg.engines.torch.geometry import to_tensor
from pybragg.engines.torch.vec import cross, dot, norm, rotate_axis, rotate_xyz
from pybragg.noise import random_uniform


def default_cell(crystal: CrystalConfig) -> list[float]:
    """a, b, c (m) and the angles (rad) as the engine fills them (b, c: a; angles: 90 degrees)."""
    a, b, c, al, be, ga = (float(x) for x in crystal.cell)
    right = math.pi / 2
    return [a, b if b > 0 else a, c if c > 0 else a, al if al > 0 else right, be if be > 0 else right,
            ga if ga > 0 else right]


def crystal_axes(crystal: CrystalConfig, cell: torch.Tensor | None,
                 misset: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """crystal_resolve of the C engine: real axes (m, rows a, b, c) and reciprocal axes (1/A)."""
    dtype, device = misset.dtype, misset.device
    zero = to_tensor(0.0, dtype, device)
    lens: Any = None
    V_cell: Any = None
    if crystal.has_cell:
        assert cell is not None
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
    if crystal.has_matrix:
        a_star, b_star, c_star = (to_tensor([x * 1e-10 for x in v], dtype, device)
                                  for v in (crystal.a_star, crystal.b_star, crystal.c_star))
    m = misset
    a_star, b_star, c_star = (rotate_xyz(v, m[0], m[1], m[2]) for v in (a_star, b_star, c_star))
    axb_s, bxc_s, cxa_s = cross(a_star, b_star), cross(b_star, c_star), cross(c_star, a_star)
    V_star = dot(a_star, bxc_s)
    if crystal.has_cell:
        def rescale(v: torch.Tensor, length: torch.Tensor) -> torch.Tensor:
            n = norm(v)
            n = torch.where(n > 0, n, torch.ones_like(n))
            return v * (length / V_cell / n)

        bxc_s = rescale(bxc_s, lens[0])
        cxa_s = rescale(cxa_s, lens[1])
        axb_s = rescale(axb_s, lens[2])
        V_star = 1.0 / V_cell
    V = 1.0 / V_star
    a, b, cc = bxc_s * V, cxa_s * V, axb_s * V
    recip = torch.stack((cross(b, cc) * V_star, cross(cc, a) * V_star, cross(a, b) * V_star))
    real = torch.stack((a, b, cc)) * 1e-10
    return real, recip


@dataclass(frozen=True)
class MosaicDeviates:
    """Per domain: the C engine's single-precision power ``p`` (domains,) and unit axis (domains, 3)."""

    power: np.ndarray
    axis: np.ndarray

    @property
    def domains(self) -> int:
        return int(self.power.shape[0])


def mosaic_deviates(seed: int, domains: int) -> MosaicDeviates:
    """The deviates 3i .. 3i+2 of the reference generator behind domain i's rotation."""
    u = random_uniform(int(seed), 3 * domains).astype(np.float32)
    r = 2.0 * u.astype(np.float64).reshape(domains, 3) - 1.0
    r1, r2, r3 = r[:, 0], r[:, 1], r[:, 2]
    ring = np.sqrt(1.0 - r2 * r2)
    with np.errstate(all="ignore"):
        power = np.power((1.0 - r3 * r3).astype(np.float32), np.float32(1.0 / 3.0))
    axis = np.stack((ring * np.sin(math.pi * r1), ring * np.cos(math.pi * r1), r2), axis=1)
    return MosaicDeviates(power=power, axis=axis)


def mosaic_rotations(deviates: MosaicDeviates, spread: torch.Tensor) -> torch.Tensor:
    """(domains, 3, 3) rotations rebuilt from the reference generator's deviates.

    The rotation angle of domain i is ``spread * p_i`` with ``p_i`` the C engine's
    single-precision power; the C engine also rounds ``spread`` and the product to
    single precision, which moves the angle by a few 1e-8 of itself -- left out here
    so that the image stays a smooth function of the spread.  Domain 0 stays the identity.
    """
    dtype, device = spread.dtype, spread.device
    angle = spread * to_tensor(deviates.power.astype(np.float64), dtype, device)
    ux, uy, uz = (to_tensor(deviates.axis[:, k], dtype, device) for k in range(3))
    c, s = torch.cos(angle), torch.sin(angle)
    omc = 1.0 - c
    omc_x = omc * ux
    xy, xz, yz = omc_x * uy, omc_x * uz, omc * uy * uz
    sx, sy, sz = s * ux, s * uy, s * uz
    U = torch.stack((c + omc * (ux * ux), xy - sz, xz + sy,
                     xy + sz, c + omc * (uy * uy), yz - sx,
                     xz - sy, yz + sx, c + omc * (uz * uz)), dim=-1).view(-1, 3, 3)
    eye = torch.eye(3, dtype=dtype, device=device)[None]
    first = torch.arange(U.shape[0], device=device)[:, None, None] == 0
    return torch.where(first, eye, U)


def orientations(g: Any, real: torch.Tensor, spindle: torch.Tensor, phi0: torch.Tensor, osc: torch.Tensor,
                 deviates: MosaicDeviates, spread: torch.Tensor) -> torch.Tensor:
    """(phisteps * domains, 3, 3): rows a, b, c (m) of every crystal orientation (``g``: the plan's geometry).

    The phi step is the plan's, or ``osc / phisteps`` (differentiable in ``osc``)
    wherever the plan's step is exactly that.
    """
    n_phi = int(g.phisteps)
    phistep: Any = float(g.phistep)
    if float(g.phisteps) > 0 and float(g.phistep) == float(g.osc) / n_phi:
        phistep = osc / n_phi
    steps = torch.arange(n_phi, dtype=real.dtype, device=real.device)
    phi = phi0 + phistep * steps  # (phi,)
    abc = rotate_axis(real[None, :, :], spindle, phi[:, None])  # (phi, 3, 3)
    if int(g.mosaic_domains) > 1:
        U = mosaic_rotations(deviates, spread)  # (dom, 3, 3)
        out = (U[None, :, None, :, :] * abc[:, None, :, None, :]).sum(-1)  # (phi, dom, abc, xyz)
    else:
        out = abc[:, None]
    return out.reshape(-1, 3, 3)
