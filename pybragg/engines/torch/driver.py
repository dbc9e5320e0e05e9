"""Chunks and threads of the torch engine (the pixel loop of ``pb_render`` in ``csrc/kernel.c``).

The pixels to render (inside the ROI and the mask) of every panel are split into
chunks sized so that a chunk's temporaries fit the model's memory budget; every
chunk is one call of :func:`.kernel.pixel_photons`, and its photons land in the
data array.

Without gradients on the CPU, up to ``_CPU_POOL_WORKERS`` Python threads render
chunks side by side (torch releases the GIL inside each operation), each operation
using the remaining threads.  A chunk there holds about ``_CPU_CHUNK_SUBPIXELS``
(pixel x sub-pixel) elements per operation thread, and its orientation-level work
runs in pieces of about ``_CPU_CHUNK_ELEMENTS`` elements (whose scratch tensors
stay in the caches and are reused from piece to piece).  On CUDA the chunks are as
large as the budget allows and run one after the other, in one piece.  When
gradients are recorded over several chunks, each chunk is checkpointed (recomputed
in the backward pass), so that memory stays bounded by about one chunk's graph.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.utils.checkpoint import checkpoint

from pybragg.engines.torch.geometry import Panel
from pybragg.engines.torch.kernel import RenderState, pixel_photons
from pybragg.errors import ResourceLimitError
from pybragg.memory import available_bytes, check_allocation, format_bytes

if TYPE_CHECKING:
    from pybragg.engines.torch.model import TorchModel

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


def pixel_bytes(model: TorchModel, panel: Panel, grad: bool = False, shots: int = 1) -> int:
    """Estimated bytes of temporaries per pixel of ``panel`` in one chunk of ``shots`` shots (a batch)."""
    setup = model.setup
    isz = torch.finfo(setup.dtype).bits // 8
    n_sub, n_src = panel.n_sub, setup.sources.n * max(shots, 1)
    e = n_sub * n_src * setup.n_orient
    per_e = (_ORIENT_TEMPS + (_TABLE_TEMPS if setup.table is not None else 0)
             + (_INTERP_TEMPS if setup.interpolate else 0))
    if grad:
        per_e *= _GRAD_FACTOR
    return isz * (per_e * e + _SOURCE_TEMPS * n_sub * n_src + _SUB_TEMPS * n_sub)


#: one pixel's temporaries up to this size are always allowed (a chunk holds at least one pixel): a
#: budget smaller than that is met to within this many bytes
PIXEL_SLACK = 1 << 20


def device_available(device: torch.device) -> int:
    """Bytes the engine's temporaries may take on ``device`` now: the memory rule's
    (:func:`pybragg.memory.available_bytes`) on the CPU, the free memory of a CUDA device."""
    if device.type == "cuda":
        try:
            free, _ = torch.cuda.mem_get_info(device)
            return int(free)
        except (RuntimeError, AssertionError):  # pragma: no cover - no driver
            return available_bytes()
    return available_bytes()


def budget_bytes(model: TorchModel) -> tuple[int, bool]:
    """The bytes chunks may use: ``--memory-budget``, or less where the device has less free;
    and whether ``--memory-budget`` is the smaller (True) or the device (False)."""
    budget = int(model.memory_budget_gib * 2**30)
    free = device_available(model.setup.device)
    return (budget, True) if budget <= free else (free, False)


#: bytes per sub-pixel of a panel's tables, built before any chunk (Python lists while they are made)
_SUB_TABLE_BYTES = 100


def check_subpixels(oversample: int, layers: int, itemsize: int, budget_gib: float, device: torch.device) -> None:
    """Refuse, before a panel's sub-pixel tables are built, an ``-oversample`` whose one pixel's
    sub-pixels (oversample^2 x sensor layers) cannot fit: their tables under the memory rule, their
    per-pixel temporaries under ``--memory-budget`` (as :func:`check_pixel_fits` would, later)."""
    n_sub = layers * oversample * oversample
    what = f"-oversample {oversample}: one pixel's {oversample} x {oversample} x {layers} sub-pixels"
    check_allocation(float(n_sub) * _SUB_TABLE_BYTES, f"{what} (their tables)")
    need = n_sub * itemsize * _SUB_TEMPS
    budget = int(budget_gib * 2**30)
    limit = min(budget, device_available(device))
    if need > max(limit, PIXEL_SLACK):
        raise ResourceLimitError(f"{what} need {format_bytes(need)} of temporaries, more than the "
                                 f"{format_bytes(limit)} " + ("--memory-budget" if limit == budget else "available")
                                 + " (lower -oversample)")


def check_pixel_fits(model: TorchModel, panel: Panel, grad: bool = False, shots: int = 1) -> None:
    """Refuse (:class:`~pybragg.errors.ResourceLimitError`) work whose one pixel's temporaries --
    sub-pixels x sources x orientations -- do not fit the budget: chunks cannot be smaller than a
    pixel, so the budget could not be kept."""
    per_pixel = pixel_bytes(model, panel, grad, shots)
    limit, is_budget = budget_bytes(model)
    if per_pixel <= max(limit, PIXEL_SLACK):
        return
    setup = model.setup
    work = (f"one pixel's {panel.n_sub} sub-pixels x {setup.sources.n * max(shots, 1)} sources x "
            f"{setup.n_orient} orientations (mosaic domains x phi steps)")
    if is_budget:
        raise ResourceLimitError(
            f"--memory-budget {model.memory_budget_gib:g}: {work} need {format_bytes(per_pixel)} of temporaries, "
            f"more than the {format_bytes(limit)} budget (raise --memory-budget, or lower -oversample, the "
            "sources or the orientations)")
    raise ResourceLimitError(
        f"{work} need {format_bytes(per_pixel)} of temporaries, more than the {format_bytes(limit)} "
        f"available on {setup.device} (lower -oversample, the sources or the orientations)")


def chunk_pixels(model: TorchModel, panel: Panel, grad: bool = False, concurrent: int = 1,
                 intra: int = 1, shots: int = 1) -> int:
    """Pixels per chunk of ``panel`` that keep the temporaries of ``concurrent`` chunks within the budget.

    On the CPU (without gradients) chunks are also capped near the size that runs
    fastest: about ``_CPU_CHUNK_SUBPIXELS`` (pixel x sub-pixel) elements per thread of
    each operation (``intra``), or one piece of ``_CPU_CHUNK_ELEMENTS``
    orientation-level elements where that is more.  ``shots``: a batch of that many
    shots in each chunk (:mod:`.batch`).
    """
    setup = model.setup
    n_sub = panel.n_sub
    e = n_sub * setup.sources.n * max(shots, 1) * setup.n_orient
    check_pixel_fits(model, panel, grad, shots)
    per_pixel = pixel_bytes(model, panel, grad, shots)
    pixels = int(budget_bytes(model)[0] // max(per_pixel * max(concurrent, 1), 1))
    if setup.device.type == "cpu" and not grad:
        intra = max(intra, 1)
        pixels = min(pixels, max(1, _CPU_CHUNK_ELEMENTS * intra // max(e, 1),
                                 _CPU_CHUNK_SUBPIXELS * intra // n_sub))
    return max(1, pixels)


def render_image(model: TorchModel, params: Mapping[str, Any] | None,
                 progress: Callable[[float], None] | None, stats: bool,
                 workers: int = 1) -> tuple[torch.Tensor, float, int]:
    """The (slow, fast) data array, omega sum and fallback count for ``params``.

    Without gradients on the CPU, ``workers`` threads render: a pool of up to
    ``_CPU_POOL_WORKERS`` Python threads takes whole chunks, each operation using the
    remaining threads.  Otherwise the chunks run one after the other.
    """
    grad = torch.is_grad_enabled() and any(
        isinstance(v, torch.Tensor) and v.requires_grad for v in (params or {}).values())
    state = model.state(params)
    cpu = model.device.type == "cpu"
    n = sum(int(p.selected.numel()) for p in model.panels)
    pool, intra = 1, 1
    if not grad and cpu:
        workers = max(1, workers)
        pool = min(workers, _CPU_POOL_WORKERS)
        limit = budget_bytes(model)[0]
        if any(pixel_bytes(model, panel) * pool > limit for panel in model.panels):
            pool = 1  # chunks of one pixel side by side would pass the budget: one after the other
        intra = max(1, workers // pool)
    # the units of work: (panel, first pixel, pixel count)
    units: list[tuple[Panel, int, int]] = []
    for i, panel in enumerate(model.panels):
        chunk = chunk_pixels(model, panel, grad, pool, intra)
        if pool > 1:
            chunk = max(1, min(chunk, -(-n // pool)))  # at least one chunk per pool thread
        if i == 0:
            model.last_chunk_pixels = chunk
        units += [(panel, start, chunk) for start in range(0, int(panel.selected.numel()), chunk)]
    n_units = len(units)
    pool = max(1, min(pool, n_units))
    sp, fp = model.shape
    isz = torch.finfo(model.dtype).bits // 8
    if cpu:
        check_allocation(float(sp) * fp * isz, f"the torch engine's {fp} x {sp} image")
    elif float(sp) * fp * isz > device_available(model.device):
        raise ResourceLimitError(f"the torch engine's {fp} x {sp} image needs {format_bytes(float(sp) * fp * isz)}, "
                                 f"more than the {format_bytes(device_available(model.device))} free on {model.device}")
    if cpu:
        # calloc'ed pages: a large detector with a small ROI pays only for what it touches
        np_dtype = np.float64 if model.dtype == torch.float64 else np.float32
        flat = torch.from_numpy(np.zeros(sp * fp, dtype=np_dtype))
    else:
        flat = torch.zeros(sp * fp, dtype=model.dtype, device=model.device)
    if grad:
        return _render_grad(model, state, units, flat, progress).view(sp, fp), 0.0, 0

    omega_sum = 0.0
    fallbacks = 0
    setup = model.setup

    def run(unit: tuple[Panel, int, int]) -> tuple[torch.Tensor, torch.Tensor, Any, Any]:
        panel, start, count = unit
        piece = None
        if cpu:
            per_q = setup.n_orient * setup.sources.n
            piece = max(1, _CPU_CHUNK_ELEMENTS * torch.get_num_threads() // per_q)
        with torch.no_grad():
            out, om, fb = pixel_photons(setup, state, panel, panel.selected[start:start + count], stats=stats,
                                        scratch=model.scratch, piece=piece)
        return panel.data_index[start:start + count], out, om, fb

    def collect(result: tuple[torch.Tensor, torch.Tensor, Any, Any], done: int) -> None:
        nonlocal omega_sum, fallbacks
        where, out, om, fb = result
        flat[where] = out.detach().to(model.dtype)
        if om is not None:
            omega_sum += float(om)
        if fb is not None:
            fallbacks += int(fb)
        if progress is not None:
            progress(done / n_units)

    if n == 0:
        if progress is not None:
            progress(1.0)
    elif not cpu:
        for i, unit in enumerate(units):
            collect(run(unit), i + 1)
    else:
        old = torch.get_num_threads()
        torch.set_num_threads(intra)  # before the pool's threads start: they inherit it
        try:
            if pool == 1:
                for i, unit in enumerate(units):
                    collect(run(unit), i + 1)
            else:
                executor = ThreadPoolExecutor(max_workers=pool)
                try:
                    futures = [executor.submit(run, unit) for unit in units]
                    for done, future in enumerate(as_completed(futures), start=1):
                        collect(future.result(), done)
                finally:
                    # on Ctrl-C (or any error) the chunks not yet started are dropped: the render
                    # stops once the running ones end, not after the whole image
                    executor.shutdown(wait=True, cancel_futures=True)
        finally:
            torch.set_num_threads(old)
    return flat.view(sp, fp), omega_sum, fallbacks


def _render_grad(model: TorchModel, state: RenderState, units: list[tuple[Panel, int, int]],
                 flat: torch.Tensor, progress: Callable[[float], None] | None) -> torch.Tensor:
    """The differentiable path: chunk after chunk, each checkpointed when there are several."""
    values, where = [], []
    for i, (panel, start, count) in enumerate(units):
        pix = panel.selected[start:start + count]

        def photons(q: torch.Tensor, panel: Panel = panel) -> torch.Tensor:
            return pixel_photons(model.setup, state, panel, q)[0]

        values.append(checkpoint(photons, pix, use_reentrant=False) if len(units) > 1 else photons(pix))
        where.append(panel.data_index[start:start + count])
        if progress is not None:
            progress((i + 1) / len(units))
    if not units and progress is not None:
        progress(1.0)
    if values:
        flat = flat.index_put((torch.cat(where),), torch.cat(values).to(model.dtype))
    return flat
