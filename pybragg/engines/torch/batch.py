"""Several shots in one kernel pass (the torch engine's batch; no C counterpart).

Shots that share the detector, the pixels, the sources' directions and the
structure-factor table but differ in continuous parameters (orientation, cell,
wavelength, fluence, N, spot-shape and mosaic parameters) render together: their
:class:`~.kernel.RenderState`\\ s are folded into one whose *source* axis is (shot x
source).  The kernel then runs unchanged on (pixel, sub-pixel, shot x source,
orientation) tensors -- every orientation-level operation is elementwise over that
axis and the orientation sum (:func:`.kernel.sum_halving`) is elementwise too -- so
one pass does the work of ``B`` single renders with ``1/B`` of the operations.  The
per-pixel sums and the un-oversampled factors then run per shot on that shot's slice,
with the same shapes and in the same order as :func:`.kernel.pixel_photons`, so
that every shot's image is bit for bit its single render's.

Memory: a chunk of ``B`` shots holds ``B`` times the (pixel x source) temporaries;
a batch is split into passes of at most as many shots as keep one single render's
chunk within the budget (:func:`shots_per_pass`).  Shots that cannot share (other
detectors, pixel sets, spot-shape factors left out, or interpolated structure factors
with statistics) render one by one; the result is the same either way.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.utils.checkpoint import checkpoint

from pybragg.engines.torch import driver
from pybragg.engines.torch import structure_factors as sf
from pybragg.engines.torch.geometry import Panel
from pybragg.engines.torch.kernel import (
    KernelSetup,
    RenderState,
    first_nonzero,
    orientation_sum,
    orientation_sum_,
    source_terms,
    subpixels,
)
from pybragg.engines.torch.lattice import Lattice

if TYPE_CHECKING:
    from pybragg.config import Config
    from pybragg.engines.torch.model import TorchModel
    from pybragg.inputs import Inputs
    from pybragg.result import Result


def _same(a: Any, b: Any) -> bool:
    """Equal values: tensors element for element (and dtype), dataclasses field by field."""
    if a is b:
        return True
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.dtype == b.dtype
                and a.shape == b.shape and a.device == b.device and bool(torch.equal(a, b)))
    if dataclasses.is_dataclass(a) and not isinstance(a, type):
        return type(a) is type(b) and all(_same(getattr(a, f.name), getattr(b, f.name))
                                          for f in dataclasses.fields(a))
    if isinstance(a, (tuple, list)):
        return isinstance(b, (tuple, list)) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return bool(a == b)


def compatible(models: Sequence[TorchModel]) -> bool:
    """Whether these models' shots can share a kernel pass (pixels, sources' directions, table, ...)."""
    base = models[0]
    for m in models[1:]:
        if m is base:
            continue
        if (m.dtype != base.dtype or m.cdtype != base.cdtype or m.device != base.device
                or tuple(m.shape) != tuple(base.shape) or m.setup.table is not base.setup.table):
            return False
        for f in dataclasses.fields(KernelSetup):
            if f.name in ("sources", "table"):
                continue
            if not _same(getattr(m.setup, f.name), getattr(base.setup, f.name)):
                return False
        a, b = m.setup.sources, base.setup.sources
        if not all(_same(getattr(a, k), getattr(b, k)) for k in ("incident", "incident_unit", "e_in", "degenerate")):
            return False
        if not _same(m.panels, base.panels):
            return False
    return True


def merge_states(setup: KernelSetup, states: Sequence[RenderState]) -> tuple[KernelSetup, RenderState] | None:
    """The setup and state of a batch (source axis = shot x source), or None where the shots cannot share."""
    first = states[0]
    lat0 = first.lattice
    for s in states[1:]:
        if (not _same(s.detectors, first.detectors) or s.lattice.shape != lat0.shape
                or s.lattice.gt1 != lat0.gt1 or s.lattice.even != lat0.even):
            return None
    B, ns = len(states), setup.sources.n
    src = setup.sources
    wavelength = torch.cat([s.wavelength for s in states])
    sources = dataclasses.replace(src, incident=src.incident.repeat(B, 1),
                                  incident_unit=src.incident_unit.repeat(B, 1), wavelength=wavelength,
                                  e_in=src.e_in.repeat(B, 1), degenerate=src.degenerate.repeat(B))
    bsetup = dataclasses.replace(setup, sources=sources)

    N = torch.stack([s.lattice.N for s in states], 1)  # (3, B)
    N = N[:, :, None].expand(3, B, ns).reshape(3, 1, B * ns, 1)
    fudge = torch.stack([s.lattice.fudge for s in states])[:, None].expand(B, ns).reshape(1, B * ns, 1)
    recip = torch.stack([s.lattice.recip for s in states], -1)  # (3, 3, B)
    recip = recip[..., None].expand(3, 3, B, ns).reshape(3, 3, 1, B * ns, 1)
    lattice = Lattice(shape=lat0.shape, N=N, values=lat0.values, gt1=lat0.gt1, even=lat0.even, fudge=fudge,
                      recip=recip)
    kahn = torch.stack([s.kahn for s in states])[:, None].expand(B, ns).reshape(B * ns)
    lengths = tuple(max(s.axis_length[k] for s in states) for k in range(3))
    state = dataclasses.replace(
        first, wavelength=wavelength, lattice=lattice, kahn=kahn, axis_length=lengths,
        hkl_coef=tuple(torch.cat([s.hkl_coef[k] for s in states], dim=2) for k in range(3)),
        hkl_bias=torch.cat([s.hkl_bias for s in states], dim=2))
    return bsetup, state


def batch_photons(setup: KernelSetup, bsetup: KernelSetup, bstate: RenderState, states: Sequence[RenderState],
                  panels: Sequence[Panel], pix: torch.Tensor, *, stats: bool = False, scratch: Any = None,
                  piece: int | None = None) -> tuple[list[torch.Tensor], torch.Tensor | None]:
    """Photons of every shot for ``panels[0]``'s pixels ``pix`` (``panels``: each shot's panel), and the omega sum.

    The same operations as :func:`.kernel.pixel_photons` (without the trace and the
    fallback count), the orientation-level ones once for the batch.
    """
    panel = panels[0]
    T, Ns = panel.n_sub, setup.sources.n
    B, P = len(states), pix.shape[0]
    det = bstate.detectors[panel.index]
    dif, omega, capture = subpixels(bsetup, det, panel, pix)
    passed, polar = source_terms(bsetup, bstate, dif)
    Q = P * T
    dq = [c.reshape(1, 1, 1, Q) for c in dif]
    passed_t = passed.reshape(Q, B * Ns).t() if passed is not None else None
    if scratch is None:
        I_all = orientation_sum(bsetup, bstate, dq, passed_t, False)[0]
    else:
        inside = (setup.table is not None and setup.device.type == "cpu"
                  and sf.indices_inside_table(setup.table, bstate.axis_length, bsetup.sources.incident,
                                              bstate.wavelength, dif))
        if piece is None or piece >= Q:
            I_all = orientation_sum_(bsetup, bstate, dq, passed_t, False, inside, scratch)[0]
        else:
            I_all = torch.empty((B * Ns, Q), dtype=setup.dtype, device=setup.device)
            for q0 in range(0, Q, piece):
                part = orientation_sum_(bsetup, bstate, [c[..., q0:q0 + piece] for c in dq],
                                        passed_t[:, q0:q0 + piece] if passed_t is not None else None,
                                        False, inside, scratch)[0]
                I_all[:, q0:q0 + piece] = part
    out = []
    for b, state in enumerate(states):
        cut = slice(b * Ns, (b + 1) * Ns)
        I_sub = I_all[cut]
        polar_b = polar[:, :, cut].contiguous() if polar is not None else None
        passed_b = passed[:, :, cut].contiguous() if passed is not None else None
        # from here on, pixel_photons' operations on this shot's (P, T, Ns) tensors
        if setup.table is None:
            I_sub = I_sub * (setup.default_F * setup.default_F)
        I_sub = I_sub.t().reshape(P, T, Ns)
        weight = None
        if setup.oversample_thick:
            weight = capture[:, :, None]
        if setup.oversample_polar:
            weight = polar_b if weight is None else weight * polar_b
        if setup.oversample_omega:
            weight = omega[:, :, None] if weight is None else weight * omega[:, :, None]
        if weight is not None:
            I_sub = I_sub * weight
        if passed_b is not None:
            I_sub = torch.where(passed_b, I_sub, torch.zeros_like(I_sub))
        I = state.I_bg + I_sub.sum(dim=(1, 2))
        photons = state.scale * I / panels[b].steps
        if not setup.oversample_thick and capture is not None:
            photons = photons * first_nonzero(capture[:, (panel.layers - 1) * panel.oversample**2:])[0]
        if not setup.oversample_polar and not setup.nopolar:
            pv = polar_b if passed_b is None else torch.where(passed_b, polar_b, torch.zeros_like(polar_b))
            photons = photons * first_nonzero(pv.reshape(P, T * Ns))[0]
        omega_first, omega_idx = first_nonzero(omega)
        if not setup.oversample_omega:
            photons = photons * omega_first
        out.append(photons)
    omega_sum = None
    if stats:
        omega_first, omega_idx = first_nonzero(omega)
        if setup.oversample_omega:
            omega_sum = omega.sum()
        else:
            omega_sum = (omega_first * (T - omega_idx).to(setup.dtype)).sum()
    return out, omega_sum


def shots_per_pass(model: TorchModel, shots: int, grad: bool = False, concurrent: int = 1, intra: int = 1) -> int:
    """Shots per kernel pass: the most that keep one single render's chunk of every panel within the budget."""
    budget = model.memory_budget_gib * 2**30
    best = shots
    for panel in model.panels:
        want = min(int(panel.selected.numel()), driver.chunk_pixels(model, panel, grad, concurrent, intra))
        if want <= 0:
            continue
        while best > 1 and driver.pixel_bytes(model, panel, grad, best) * want * max(concurrent, 1) > budget:
            best -= 1
    return max(1, best)


def _grad_wanted(params: Mapping[str, Any] | None) -> bool:
    return torch.is_grad_enabled() and any(
        isinstance(v, torch.Tensor) and v.requires_grad for v in (params or {}).values())


def render_batch(models: Sequence[TorchModel], params_list: Sequence[Mapping[str, Any] | None], *,
                 progress: Callable[[float], None] | None = None, stats: bool = False,
                 workers: int = 1) -> tuple[list[torch.Tensor], list[float], list[int], int]:
    """Every shot's (slow, fast) image, omega sum and fallback count; and the shots per pass used.

    ``models[i]`` renders ``params_list[i]`` (the same model for every shot, or
    :func:`compatible` models sharing a table).  Each image equals
    ``driver.render_image(models[i], params_list[i], ...)``; shots that cannot share a
    pass render that way.
    """
    if len(models) != len(params_list):
        raise ValueError("one model per parameter set")
    n_shots = len(models)
    if n_shots == 0:
        return [], [], [], 0
    base = models[0]
    grad = any(_grad_wanted(p) for p in params_list)
    cpu = base.device.type == "cpu"

    def singles(idx: Sequence[int]) -> list[tuple[torch.Tensor, float, int]]:
        return [driver.render_image(models[i], params_list[i], None, stats=stats, workers=workers) for i in idx]

    if n_shots == 1 or not compatible(models) or (stats and base.setup.interpolate):
        done = singles(range(n_shots))
        if progress is not None:
            progress(1.0)
        return [d[0] for d in done], [d[1] for d in done], [d[2] for d in done], 1
    pool, intra = 1, 1
    if not grad and cpu:
        workers = max(1, workers)
        pool = min(workers, driver._CPU_POOL_WORKERS)
        intra = max(1, workers // pool)
    per_pass = shots_per_pass(base, n_shots, grad, pool, intra)
    images: list[Any] = [None] * n_shots
    omegas = [0.0] * n_shots
    fallbacks = [0] * n_shots
    groups = [list(range(i, min(i + per_pass, n_shots))) for i in range(0, n_shots, per_pass)]
    for g_i, group in enumerate(groups):
        states = [models[i].state(params_list[i]) for i in group]
        merged = merge_states(base.setup, states) if len(group) > 1 else None
        if merged is None:
            for i, (img, om, fb) in zip(group, singles(group), strict=True):
                images[i], omegas[i], fallbacks[i] = img, om, fb
        else:
            imgs, om = _render_pass(base, [models[i] for i in group], states, merged, grad, stats, pool, intra)
            for i, img in zip(group, imgs, strict=True):
                images[i], omegas[i] = img, om
        if progress is not None:
            progress((g_i + 1) / len(groups))
    return images, omegas, fallbacks, per_pass


def _render_pass(base: TorchModel, models: Sequence[TorchModel], states: Sequence[RenderState],
                 merged: tuple[KernelSetup, RenderState], grad: bool, stats: bool, pool: int,
                 intra: int) -> tuple[list[torch.Tensor], float]:
    """One batch through the chunks of every panel (the loop of :func:`.driver.render_image`)."""
    bsetup, bstate = merged
    B = len(states)
    cpu = base.device.type == "cpu"
    n = sum(int(p.selected.numel()) for p in base.panels)
    units: list[tuple[int, int, int]] = []
    for i, panel in enumerate(base.panels):
        # a single render's chunks (shots_per_pass keeps B of them within the budget): the same
        # omega sums, chunk by chunk, as the single renders
        chunk = driver.chunk_pixels(base, panel, grad, pool, intra)
        if pool > 1:
            chunk = max(1, min(chunk, -(-n // pool)))
        if i == 0:
            base.last_chunk_pixels = chunk
        units += [(i, start, chunk) for start in range(0, int(panel.selected.numel()), chunk)]
    pool = max(1, min(pool, len(units)))
    sp, fp = base.shape

    def zeros() -> torch.Tensor:
        if cpu:
            np_dtype = np.float64 if base.dtype == torch.float64 else np.float32
            return torch.from_numpy(np.zeros(sp * fp, dtype=np_dtype))
        return torch.zeros(sp * fp, dtype=base.dtype, device=base.device)

    def photons(i: int, pix: torch.Tensor, scratch: Any = None, piece: int | None = None
                ) -> tuple[list[torch.Tensor], torch.Tensor | None]:
        return batch_photons(base.setup, bsetup, bstate, states, [m.panels[i] for m in models], pix,
                             stats=stats, scratch=scratch, piece=piece)

    if grad:
        values: list[list[torch.Tensor]] = [[] for _ in range(B)]
        where = []
        for i, start, count in units:
            pix = base.panels[i].selected[start:start + count]

            def fn(q: torch.Tensor, i: int = i) -> tuple[torch.Tensor, ...]:
                return tuple(photons(i, q)[0])

            outs = checkpoint(fn, pix, use_reentrant=False) if len(units) > 1 else fn(pix)
            for b in range(B):
                values[b].append(outs[b])
            where.append(base.panels[i].data_index[start:start + count])
        flats = []
        for b in range(B):
            flat = zeros()
            if values[b]:
                flat = flat.index_put((torch.cat(where),), torch.cat(values[b]).to(base.dtype))
            flats.append(flat.view(sp, fp))
        return flats, 0.0

    flats = [zeros() for _ in range(B)]
    omega_sum = 0.0

    def run(unit: tuple[int, int, int]) -> tuple[torch.Tensor, list[torch.Tensor], Any]:
        i, start, count = unit
        panel = base.panels[i]
        piece = None
        if cpu:
            per_q = bsetup.n_orient * bsetup.sources.n
            piece = max(1, driver._CPU_CHUNK_ELEMENTS * torch.get_num_threads() // per_q)
        with torch.no_grad():
            outs, om = photons(i, panel.selected[start:start + count], scratch=base.scratch, piece=piece)
        return panel.data_index[start:start + count], outs, om

    def collect(result: tuple[torch.Tensor, list[torch.Tensor], Any]) -> None:
        nonlocal omega_sum
        where, outs, om = result
        for flat, out in zip(flats, outs, strict=True):
            flat[where] = out.detach().to(base.dtype)
        if om is not None:
            omega_sum += float(om)

    if n == 0:
        pass
    elif not cpu:
        for unit in units:
            collect(run(unit))
    else:
        old = torch.get_num_threads()
        torch.set_num_threads(intra)
        try:
            if pool == 1:
                for unit in units:
                    collect(run(unit))
            else:
                with ThreadPoolExecutor(max_workers=pool) as executor:
                    futures = [executor.submit(run, unit) for unit in units]
                    for future in as_completed(futures):
                        collect(future.result())
        finally:
            torch.set_num_threads(old)
    return [f.view(sp, fp) for f in flats], omega_sum


#: on the CPU, shots batch where one shot has at most this many (pixel x sub-pixel x source x
#: orientation) elements: there per-call overhead dominates (measured on 2 cores: 2-5x faster
#: at 32x32 and 64x64 pixels, about even at 128x128, slower at 256x256)
CPU_BATCH_ELEMENTS = 1 << 14


def batch_wanted(device: str | None, elements: int) -> bool:
    """Whether a dataset worker should batch its shots: always on CUDA, on the CPU only for small shots."""
    if device is not None and str(device).startswith("cuda"):
        return True
    return elements <= CPU_BATCH_ELEMENTS


def render_results(jobs: Sequence[tuple[Config, Inputs]], *, dtype: str = "float64", device: str | None = None,
                   threads: int = 0, memory_budget_gib: float = 2.0) -> list[Result] | None:
    """The :func:`.model.render` result of every (configuration, inputs), rendered as a batch.

    None where the shots cannot share a kernel pass (the caller renders them one by
    one); otherwise every result's image and statistics are the single render's.
    """
    from pybragg.engines.torch.model import TorchModel
    from pybragg.plan import Plan

    start = time.perf_counter()
    old_threads = torch.get_num_threads()
    if threads and threads > 0:
        torch.set_num_threads(int(threads))
    try:
        workers = int(threads) if threads and threads > 0 else torch.get_num_threads()
        models: list[TorchModel] = []
        for config, inputs in jobs:
            plan = Plan(config, inputs)
            models.append(TorchModel(config, inputs, dtype=dtype, device=device, memory_budget_gib=memory_budget_gib,
                                     plan=plan, share=models[0] if models else None))
        if not compatible(models) or models[0].setup.interpolate:
            return None
        with torch.no_grad():
            images, omegas, fallbacks, per_pass = render_batch(models, [None] * len(models), stats=True,
                                                               workers=workers)
        arrays = [img.cpu().numpy() for img in images]
    finally:
        if threads and threads > 0:
            torch.set_num_threads(old_threads)
    seconds = (time.perf_counter() - start) / max(len(models), 1)
    name = str(dtype) if not isinstance(dtype, torch.dtype) else str(dtype).replace("torch.", "")
    out = []
    for m, image, om, fb in zip(models, arrays, omegas, fallbacks, strict=True):
        stats = m.plan.stats(image, omega_sum=om, fallbacks=fb)
        out.append(m.plan.result(image, stats, "torch", name, str(m.device), seconds,
                                 extras={"chunk_pixels": models[0].last_chunk_pixels, "workers": workers,
                                         "batch": per_pass}))
    return out
