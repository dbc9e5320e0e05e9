"""Sources of the torch engine (``csrc/sources.c``): the plan's beams as tensors.

The plan lists, for every source, the unit direction towards it, a weight and a
wavelength; the engine needs the incident direction (the reverse), its unit vector,
the polarization frame's E axis and the wavelengths (scaled by the differentiable
``lambda0``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from pybragg.engines.torch.geometry import to_tensor
from pybragg.engines.torch.vec import cross, norm, unit
from pybragg.plan import Plan


@dataclass(frozen=True)
class Sources:
    """(Ns, 3) incident directions and their units, (Ns,) the plan's wavelengths (m).

    ``e_in`` (Ns, 3): the unit E axis of each source's polarization frame (polarization
    axis x incident, then incident x that); ``degenerate`` (Ns,) marks a polarization
    axis along the source's direction, where the C engine's psi is 0.
    """

    incident: torch.Tensor
    incident_unit: torch.Tensor
    wavelength: torch.Tensor
    e_in: torch.Tensor
    degenerate: torch.Tensor
    any_degenerate: bool

    @property
    def n(self) -> int:
        return int(self.incident.shape[0])

    def wavelengths(self, lambda0: torch.Tensor, plan_lambda0: float) -> torch.Tensor:
        """Every source's wavelength scaled by ``lambda0 / plan_lambda0`` (Ns,)."""
        return self.wavelength * (lambda0 / plan_lambda0)


def build_sources(plan: Plan, polar: torch.Tensor) -> Sources:
    """The plan's sources on ``polar``'s dtype and device (``polar``: the unit polarization axis)."""
    src = np.asarray(plan.sources, dtype=np.float64)
    dtype, device = polar.dtype, polar.device
    incident = to_tensor(-src[:, :3], dtype, device)  # the direction towards the source, reversed
    incident_unit = unit(incident)[0]
    b_in = unit(cross(polar.expand_as(incident_unit), incident_unit))[0]
    e_in = unit(cross(incident_unit, b_in))[0]
    degenerate = norm(b_in) == 0
    return Sources(incident=incident, incident_unit=incident_unit,
                   wavelength=to_tensor(src[:, 4], dtype, device), e_in=e_in, degenerate=degenerate,
                   any_degenerate=bool(degenerate.any()))
