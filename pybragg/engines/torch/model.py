"""The torch engine's model (``pb_plan`` of ``csrc/plan.c``): a configuration resolved once.

:class:`TorchModel` takes everything discrete from the C plan once (pixels, sources,
steps, mosaic deviates, the structure-factor table); :meth:`TorchModel.state` turns
one set of continuous parameters into the :class:`~.kernel.RenderState` the kernel
runs on, and :meth:`TorchModel.image` renders it (see :mod:`.driver`).
:func:`render` is the engine's entry point behind ``Simulator(backend="torch")``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from pybragg.config import Config, Shape
from pybragg.constants import AVOGADRO, R_E_SQR, WATER_F, WATER_MW
from pybragg.engines.torch import driver
from pybragg.engines.torch.crystal import crystal_axes, default_cell, mosaic_deviates, orientations
from pybragg.engines.torch.geometry import (
    convention_axes,
    detector_states,
    panel_axes,
    plan_panel,
    selection,
    to_tensor,
)
from pybragg.engines.torch.kernel import KernelSetup, RenderState
from pybragg.engines.torch.lattice import Lattice
from pybragg.engines.torch.sources import build_sources
from pybragg.engines.torch.structure_factors import build_table
from pybragg.engines.torch.vec import Scratch, torch_dtype, with_params
from pybragg.errors import UsageError
from pybragg.inputs import Inputs
from pybragg.plan import Plan
from pybragg.result import Result

PARAMETERS = (
    "cell", "misset", "phi0", "osc", "distance", "Xbeam", "Ybeam", "rotx", "roty", "rotz", "twotheta",
    "lambda0", "fluence", "polarization", "fudge", "N", "mosaic_spread",
)
_SHAPES = {"cell": (6,), "misset": (3,), "N": (3,)}


class TorchModel:
    """The image as a differentiable function of the continuous parameters.

    ``TorchModel(config, inputs, dtype="float64", device="cpu")`` resolves the
    configuration with the C plan once; :meth:`image` renders the full (slow, fast)
    image -- the data array that holds every panel -- for any parameter values (see
    :data:`PARAMETERS` and the package docstring).  Pixels outside the ROI or the mask,
    and pixels no panel covers, are 0.  :meth:`images` renders several parameter sets
    (shots) in one kernel pass (:mod:`.batch`).  ``share``: a model of the same inputs
    whose structure-factor table this one reuses.
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
        share: TorchModel | None = None,
    ):
        self.dtype = torch_dtype(dtype)
        # A tophat spot has a sharp edge: single-precision Miller indices would move
        # sub-pixels across it, so that shape is computed in double precision.
        self.cdtype = self.dtype
        if self.dtype == torch.float32 and int(config.crystal.shape) == Shape.TOPHAT:
            self.cdtype = torch.float64
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        if not 0 < memory_budget_gib <= 2.0**30:  # at most 1 EiB: its bytes stay finite (Simulator's limit)
            raise UsageError("--memory-budget must be positive and at most 2^30 GiB")
        self.memory_budget_gib = float(memory_budget_gib)
        self.config = config
        self.inputs = inputs or Inputs()
        self.plan = plan if plan is not None else Plan(config, self.inputs)
        g = self.geometry = self.plan.geometry
        self.axes = convention_axes(config, g, self.cdtype, self.device)
        selected = selection(g, self.inputs)
        for pg in self.plan.panels:  # before the sub-pixel tables are built
            driver.check_subpixels(int(pg.oversample), int(g.thicksteps), torch.finfo(self.cdtype).bits // 8,
                                   self.memory_budget_gib, self.device)
        self.panels = tuple(plan_panel(i, pg, selected, g, self.cdtype, self.device)
                            for i, pg in enumerate(self.plan.panels))
        # explicit panels: their axes and origins before the detector rotations
        self._panel_axes = [panel_axes(self.axes, pc) for pc in config.detector.panels]
        self._panel_origins = [self._t(list(pc.origin)) for pc in config.detector.panels]
        self.shape = self.plan.shape  # the data array (slow, fast)
        self.mosaic = mosaic_deviates(int(config.crystal.mosaic_seed), int(g.mosaic_domains))
        hkl = self.inputs.hkl
        if (share is not None and hkl is not None and share.inputs.hkl is hkl and share.cdtype == self.cdtype
                and share.device == self.device
                and float(share.config.crystal.default_F) == float(config.crystal.default_F)):
            table = share.setup.table  # the same structure factors: built once (a batch of shots)
        else:
            table = build_table(hkl, float(config.crystal.default_F), self.cdtype, self.device) if hkl else None
        self.setup = KernelSetup(
            dtype=self.cdtype, device=self.device, sources=build_sources(self.plan, self.axes.polar),
            table=table, default_F=float(config.crystal.default_F),
            interpolate=bool(g.interpolate) and table is not None, curved=bool(g.curved),
            point_pixel=bool(g.point_pixel), oversample_thick=bool(g.oversample_thick),
            oversample_polar=bool(g.oversample_polar), oversample_omega=bool(g.oversample_omega),
            thick=float(g.thick), dmin=float(g.dmin), nopolar=bool(g.nopolar),
            water=float(config.beam.water_size) != 0.0, n_orient=int(g.phisteps) * int(g.mosaic_domains),
        )
        self.scratch = Scratch(self.cdtype, self.device)
        self.last_chunk_pixels = 0

    # ------------------------------------------------------------ parameters

    def _t(self, value: Any) -> torch.Tensor:
        return to_tensor(value, self.cdtype, self.device)

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
            values["cell"] = default_cell(cfg.crystal)
        return {k: self._t(v) for k, v in values.items()}

    def _resolve(self, params: Mapping[str, Any] | None) -> dict[str, torch.Tensor]:
        """The defaults with ``params`` in their place, checked and on the model's dtype and device."""
        if params and "cell" in params and not self.config.crystal.has_cell:
            raise ValueError("the 'cell' parameter needs a configuration with a unit cell")
        return with_params(self.defaults(), params, PARAMETERS, self.cdtype, self.device, _SHAPES)

    def state(self, params: Mapping[str, Any] | None = None) -> RenderState:
        """Everything the kernel needs for ``params`` (defaults for missing names) that no pixel changes."""
        p = self._resolve(params)
        g = self.geometry
        detectors = detector_states(self.config, g, self.axes, self._panel_axes, self._panel_origins, p)
        real, recip = crystal_axes(self.config.crystal, p.get("cell"), p["misset"])
        A = orientations(g, real, self.axes.spindle, p["phi0"], p["osc"], self.mosaic, p["mosaic_spread"])
        src = self.setup.sources
        lam = src.wavelengths(p["lambda0"], float(g.lambda0))  # (Ns,)
        lam4 = lam.view(1, 1, src.n, 1)
        A_t = A.permute(2, 1, 0)  # (xyz, abc, No)
        c0, c1, c2 = ((A_t[x][:, :, None, None] / lam4).contiguous() for x in range(3))
        la, lb, lc = (float(x) for x in A.detach().norm(dim=-1).amax(0).cpu())
        A_inc = torch.einsum("okx,sx->kos", A, src.incident)  # (abc, No, Ns)
        fluence = p["fluence"]
        w = float(self.config.beam.water_size)
        return RenderState(
            detectors=detectors, orientations=A, wavelength=lam, hkl_coef=(c0, c1, c2),
            hkl_bias=(-(A_inc[..., None] / lam4)).contiguous(), axis_length=(la, lb, lc),
            lattice=Lattice.of(int(g.shape), p["N"], p["fudge"], recip), kahn=p["polarization"],
            I_bg=WATER_F * WATER_F * R_E_SQR * fluence * w * w * w * 1e6 * AVOGADRO / WATER_MW,
            scale=R_E_SQR * fluence,
        )

    # ------------------------------------------------------------- rendering

    def chunk_pixels(self, grad: bool = False, concurrent: int = 1, intra: int = 1, panel: int = 0) -> int:
        """Pixels per chunk of ``panel`` (see :func:`.driver.chunk_pixels`)."""
        return driver.chunk_pixels(self, self.panels[panel], grad, concurrent, intra)

    def image(self, params: Mapping[str, Any] | None = None, *,
              progress: Callable[[float], None] | None = None) -> torch.Tensor:
        """The (slow, fast) image in photons for ``params`` (defaults for missing names).

        Gradients flow to every parameter tensor that requires grad.
        """
        return driver.render_image(self, params, progress, stats=False, workers=torch.get_num_threads())[0]

    def images(self, params_list: Sequence[Mapping[str, Any] | None], *,
               progress: Callable[[float], None] | None = None) -> list[torch.Tensor]:
        """:meth:`image` of every parameter set, rendered as one batch of shots (see :mod:`.batch`).

        Each image equals its :meth:`image`; gradients flow to each shot's parameters.
        """
        from pybragg.engines.torch.batch import render_batch

        return render_batch([self] * len(params_list), params_list, progress=progress,
                            workers=torch.get_num_threads())[0]


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
            image_t, omega_sum, fallbacks = driver.render_image(model, None, progress, stats=True,
                                                                workers=workers)
        image = image_t.cpu().numpy()
    finally:
        if threads and threads > 0:
            torch.set_num_threads(old_threads)
    plan = model.plan
    stats = plan.stats(image, omega_sum=omega_sum, fallbacks=fallbacks)
    name = str(dtype) if not isinstance(dtype, torch.dtype) else str(dtype).replace("torch.", "")
    return plan.result(image, stats, "torch", name, str(model.device), time.perf_counter() - start,
                       extras={"chunk_pixels": model.last_chunk_pixels, "workers": workers})
