"""The amorphous background in the torch engine (``csrc/background.c``): nonBragg's physics, differentiable.

:class:`BackgroundModel` resolves a configuration, a sample
(:class:`~pybragg.config.SampleConfig`) and a stol table (``inputs.stol``) once, from the
C plan (panels, pixels inside the ROI and the mask, sub-pixels, sensor layers, sources);
:meth:`BackgroundModel.image` renders the background's photons, the full (slow, fast)
data array, for any values of the continuous parameters below (tensors that may require
grad).  :func:`render_background` is what ``pybragg.background.render(backend="torch")``
runs.

The pixel's sub-pixel positions, solid angle, capture fraction and polarization are the
Bragg kernel's own (:func:`.kernel.subpixels`, :func:`.kernel.source_terms`); as in the C
engine every factor is evaluated per (sub-pixel, layer, source) and the sum is divided by
sources x oversample^2.  The table is padded with its end values at +-1e98 and +-1e99 and
interpolated by the cubic through four points, term by term in Lagrange's form, as
``table_value`` does; that look-up always computes in float64 (single precision cannot
hold the padding), also in a float32 model.

Parameters (SI units, scalars):

``thickness``, ``width``, ``height``
    the sample (m); width and height are clipped to the beam size (where the plan has
    one), as ``pb_background_resolve`` does -- a clipped size has no gradient.
``density``
    g/m^3.  With ``sample.molecules`` set the number of molecules is fixed, and the
    sample's size and density then have (almost) no effect, as in the C engine.
``fluence``
    photons/m^2.
``distance``, ``Xbeam``, ``Ybeam``, ``rotx``, ``roty``, ``rotz``, ``twotheta``
    the detector, as in :class:`~pybragg.engines.torch.TorchModel`.
``lambda0``
    central wavelength (m): every source's wavelength is scaled by ``lambda0 / plan's lambda0``.
``polarization``
    Kahn factor.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.checkpoint import checkpoint

from pybragg.config import Config, SampleConfig
from pybragg.constants import AVOGADRO, R_E_SQR
from pybragg.engines.torch.geometry import (
    DetectorState,
    Panel,
    convention_axes,
    detector_states,
    panel_axes,
    plan_panel,
    selection,
    to_tensor,
)
from pybragg.engines.torch.kernel import KernelSetup, source_terms, subpixels
from pybragg.engines.torch.sources import build_sources
from pybragg.engines.torch.vec import dot_components, torch_dtype, with_params
from pybragg.inputs import Inputs
from pybragg.plan import Plan

__all__ = ["BG_PARAMETERS", "BackgroundModel", "render_background"]

BG_PARAMETERS = (
    "thickness", "width", "height", "density", "fluence", "distance", "Xbeam", "Ybeam", "rotx", "roty",
    "rotz", "twotheta", "lambda0", "polarization",
)
_PAD_NEAR, _PAD_FAR = 1e98, 1e99
# bytes of temporaries per (pixel x sub-pixel x source) element, in units of the float size
_TEMPS = 48


@dataclass(frozen=True)
class BackgroundState:
    """One parameter set: the panels' detectors, the source wavelengths (Ns,), the Kahn factor,
    ``scale`` = r_e^2 x fluence x molecules (a pixel's sum is scaled by it and divided by
    sources x oversample^2) and the number of molecules."""

    detectors: tuple[DetectorState, ...]
    wavelength: torch.Tensor
    kahn: torch.Tensor
    scale: torch.Tensor
    molecules: torch.Tensor


def padded_table(stol: np.ndarray, F: np.ndarray, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The table with its end values at -1e99, -1e98 and 1e98, 1e99 (float64)."""
    stol = np.asarray(stol, dtype=np.float64)
    F = np.asarray(F, dtype=np.float64)
    x = np.concatenate(([-_PAD_FAR, -_PAD_NEAR], stol, [_PAD_NEAR, _PAD_FAR]))
    y = np.concatenate(([F[0], F[0]], F, [F[-1], F[-1]]))
    return (torch.as_tensor(x, dtype=torch.float64, device=device),
            torch.as_tensor(y, dtype=torch.float64, device=device))


def table_value(x: torch.Tensor, y: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """F at sin(theta)/lambda ``s`` (float64): the cubic through the four padded points from k - 1 on,
    k the last point with x[k] <= s (at least 1, at most len - 3), in Lagrange's form term by term."""
    m = x.shape[0]
    k = (torch.searchsorted(x, s.detach(), right=True) - 1).clamp_(1, m - 3)
    xs = [x[k + (i - 1)] for i in range(4)]
    ys = [y[k + (i - 1)] for i in range(4)]
    total = torch.zeros_like(s)
    for i in range(4):
        num: Any = 1.0
        den: Any = 1.0
        for j in range(4):
            if j == i:
                continue
            num = num * (s - xs[j])
            den = den * (xs[i] - xs[j])
        total = total + num * ys[i] / den
    return total


class BackgroundModel:
    """The amorphous background as a differentiable function of the sample, beam and detector.

    ``BackgroundModel(config, inputs, sample, dtype="float64", device="cpu")``: ``inputs.stol``
    holds the table; :meth:`image` renders the (slow, fast) data array in photons (pixels outside
    the ROI, the mask or every panel are 0) for parameters :data:`BG_PARAMETERS` (defaults: the
    configuration's and the sample's values).
    """

    def __init__(self, config: Config, inputs: Inputs, sample: SampleConfig | None = None, *,
                 dtype: str | torch.dtype = "float64", device: str | torch.device | None = None,
                 memory_budget_gib: float = 1.0, plan: Plan | None = None):
        self.dtype = torch_dtype(dtype)
        if inputs is None or inputs.stol is None:
            raise ValueError("the background needs a stol table (inputs.stol)")
        if not memory_budget_gib > 0:
            raise ValueError("memory_budget_gib must be positive")
        self.memory_budget_gib = float(memory_budget_gib)
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.config, self.inputs = config, inputs
        self.sample = sample or SampleConfig()
        self.plan = plan if plan is not None else Plan(config, inputs)
        g = self.geometry = self.plan.geometry
        self.axes = convention_axes(config, g, self.dtype, self.device)
        selected = selection(g, inputs)
        self.panels = tuple(plan_panel(i, pg, selected, g, self.dtype, self.device)
                            for i, pg in enumerate(self.plan.panels))
        self._panel_axes = [panel_axes(self.axes, pc) for pc in config.detector.panels]
        self._panel_origins = [self._t(list(pc.origin)) for pc in config.detector.panels]
        self.shape = self.plan.shape
        # every factor per sub-pixel: no un-oversampled factor, no resolution cut
        self.setup = KernelSetup(
            dtype=self.dtype, device=self.device, sources=build_sources(self.plan, self.axes.polar), table=None,
            default_F=0.0, interpolate=False, curved=bool(g.curved), point_pixel=bool(g.point_pixel),
            oversample_thick=False, oversample_polar=False, oversample_omega=False, thick=float(g.thick),
            dmin=0.0, nopolar=bool(g.nopolar), water=False, n_orient=1,
        )
        self.table_x, self.table_y = padded_table(inputs.stol.stol, inputs.stol.F, self.device)
        w = np.asarray(self.plan.sources, dtype=np.float64)[:, 3]
        weights = np.ones_like(w) if (w == w[0]).all() else w / (w.sum() / w.size)
        self.weights = self._t(weights)

    def _t(self, value: Any) -> torch.Tensor:
        return to_tensor(value, self.dtype, self.device)

    # ------------------------------------------------------------ parameters

    def defaults(self) -> dict[str, torch.Tensor]:
        """The parameter values that the configuration and the sample imply."""
        g, s = self.geometry, self.sample
        values = {
            "thickness": s.thickness, "width": s.width, "height": s.height, "density": s.density,
            "fluence": g.fluence, "distance": self.config.detector.distance, "Xbeam": g.Xbeam, "Ybeam": g.Ybeam,
            "rotx": g.rotx, "roty": g.roty, "rotz": g.rotz, "twotheta": g.twotheta, "lambda0": g.lambda0,
            "polarization": g.polarization,
        }
        return {k: self._t(v) for k, v in values.items()}

    def _resolve(self, params: Mapping[str, Any] | None) -> dict[str, torch.Tensor]:
        return with_params(self.defaults(), params, BG_PARAMETERS, self.dtype, self.device)

    def molecules(self, p: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """The number of molecules in the beam, as ``pb_background_resolve`` computes it."""
        beamsize = float(self.geometry.beamsize)
        width, height = p["width"], p["height"]
        if beamsize >= 0.0:
            width = torch.clamp(width, max=beamsize)
            height = torch.clamp(height, max=beamsize)
        volume = p["thickness"] * width * height
        mw = float(self.sample.molecular_weight)
        density = p["density"]
        if self.sample.molecules:
            density = float(self.sample.molecules) / volume / AVOGADRO * mw
        return volume * density * AVOGADRO / mw

    def state(self, params: Mapping[str, Any] | None = None) -> BackgroundState:
        """Everything the pixels need for ``params`` (defaults for missing names)."""
        p = self._resolve(params)
        g = self.geometry
        detectors = detector_states(self.config, g, self.axes, self._panel_axes, self._panel_origins, p)
        molecules = self.molecules(p)
        return BackgroundState(
            detectors=detectors, wavelength=self.setup.sources.wavelengths(p["lambda0"], float(g.lambda0)),
            kahn=p["polarization"], scale=R_E_SQR * p["fluence"] * molecules, molecules=molecules,
        )

    # ------------------------------------------------------------- rendering

    def pixel_photons(self, state: BackgroundState, panel: Panel,
                      pix: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Background photons of ``panel``'s pixels with flat indices ``pix``, and their omega sum."""
        setup = self.setup
        det = state.detectors[panel.index]
        dif, omega, capture = subpixels(setup, det, panel, pix)  # (P, T)
        _, polar = source_terms(setup, state, dif)  # type: ignore[arg-type]  # (P, T, Ns) or None
        incident = setup.sources.incident
        d3 = [c[:, :, None] for c in dif]
        S = [(d3[k] - incident[:, k]) / state.wavelength for k in range(3)]
        stol = 0.5 * torch.sqrt(dot_components(S, S))
        F = table_value(self.table_x, self.table_y, stol.to(torch.float64)).to(self.dtype)
        term = torch.where(F < 0, -F, F) * F
        if polar is not None:
            term = term * polar
        term = term * omega[:, :, None] * self.weights
        if capture is not None:
            term = term * capture[:, :, None]
        I = term.sum(dim=(1, 2))
        photons = I * state.scale / float(setup.sources.n * panel.oversample**2)
        return photons, omega.sum()

    def chunk_pixels(self, panel: Panel) -> int:
        """Pixels per chunk of ``panel`` within the memory budget."""
        isz = torch.finfo(self.dtype).bits // 8
        per_pixel = max(1, (_TEMPS + 16) * isz * panel.n_sub * self.setup.sources.n)
        return max(1, int(self.memory_budget_gib * 2**30 // per_pixel))

    def render(self, params: Mapping[str, Any] | None = None) -> tuple[torch.Tensor, float]:
        """The (slow, fast) image in photons and the omega sum of its sub-pixels."""
        state = self.state(params)
        grad = torch.is_grad_enabled() and any(
            isinstance(v, torch.Tensor) and v.requires_grad for v in (params or {}).values())
        units = [(panel, start, self.chunk_pixels(panel)) for panel in self.panels
                 for start in range(0, int(panel.selected.numel()), self.chunk_pixels(panel))]
        sp, fp = self.shape
        flat = torch.zeros(sp * fp, dtype=self.dtype, device=self.device)
        values, where = [], []
        omega_sum = 0.0
        for panel, start, count in units:
            pix = panel.selected[start:start + count]

            def photons(q: torch.Tensor, panel: Panel = panel) -> torch.Tensor:
                return self.pixel_photons(state, panel, q)[0]

            if grad:
                values.append(checkpoint(photons, pix, use_reentrant=False) if len(units) > 1 else photons(pix))
            else:
                out, om = self.pixel_photons(state, panel, pix)
                values.append(out)
                omega_sum += float(om)
            where.append(panel.data_index[start:start + count])
        if values:
            flat = flat.index_put((torch.cat(where),), torch.cat(values))
        return flat.view(sp, fp), omega_sum

    def image(self, params: Mapping[str, Any] | None = None) -> torch.Tensor:
        """The (slow, fast) background image in photons for ``params``; gradients flow to every
        parameter tensor that requires grad."""
        return self.render(params)[0]


def render_background(config: Config, inputs: Inputs, sample: SampleConfig | None = None, *,
                      plan: Plan | None = None, dtype: str = "float64", device: str | None = None,
                      memory_budget_gib: float = 1.0) -> tuple[np.ndarray, float]:
    """The background image (numpy, of ``dtype``, the data array's shape) and its omega sum."""
    model = BackgroundModel(config, inputs, sample, dtype=dtype, device=device, plan=plan,
                            memory_budget_gib=memory_budget_gib)
    with torch.no_grad():
        image, omega_sum = model.render()
    return image.cpu().numpy(), omega_sum
