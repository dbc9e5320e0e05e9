"""What a worker runs: frames rendered from their tasks and the inputs shared by every frame.

:func:`render_frames` is the one function the client submits (a batch of one or more frames per
task).  It reads no file: the structure factors, mask and sources arrive once per worker with
:class:`~pybragg.datasets.spec.Shared`.  A frame leaves the worker as the array the HDF5 writer
stores or as the bytes of its frame file, so that the client only writes.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass

import numpy as np

from pybragg.inputs import Inputs

from .spec import FrameTask, Shared

#: renders done by this process (the job log reports them per worker)
_RENDERS = {"count": 0}


@dataclass
class FramePayload:
    """A rendered frame on its way to the writer."""

    index: int
    #: (slow, fast) float32 or int32 for the HDF5 file, else None
    data: np.ndarray | None
    #: the whole frame file (SMV, CBF), else None
    blob: bytes | None
    #: seconds the worker spent on it (render and product)
    seconds: float
    #: host:pid of the worker process, and its render count after this frame
    worker: str
    renders: int
    max_I: float
    photons: float | None = None


def cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _worker_identity() -> tuple[str | None, object]:
    try:
        from distributed import get_worker

        w = get_worker()
        return w.address, w.name
    except (ImportError, ValueError):
        return None, None


def _placement(shared: Shared, plan: dict[str, tuple[int, str | None]] | None) -> tuple[int, str | None]:
    """Engine threads and torch device for this worker."""
    address, name = _worker_identity()
    threads = shared.threads
    device: str | None = shared.device
    if plan and address in plan:
        auto_threads, auto_device = plan[address]
        threads = threads or auto_threads
        device = auto_device or device
    if not threads:
        slots = 1
        try:
            from distributed import get_worker

            slots = max(1, int(get_worker().state.nthreads))
        except (ImportError, ValueError, AttributeError):
            pass
        threads = max(1, cores() // slots)
    if device == "cuda" and isinstance(name, int):
        import torch

        count = torch.cuda.device_count()
        if count > 1:
            device = f"cuda:{name % count}"
    return threads, device


def render_frames(tasks: list[FrameTask], shared: Shared,
                  plan: dict[str, tuple[int, str | None]] | None = None) -> list[FramePayload]:
    """Render every task of a batch, one after the other on this worker's device."""
    threads, device = _placement(shared, plan)
    if shared.backend == "torch" and len(tasks) > 1:
        batched = _render_batched(tasks, shared, threads, device)
        if batched is not None:
            return batched
    return [render_one(task, shared, threads=threads, device=device) for task in tasks]


def _task_inputs(task: FrameTask, shared: Shared) -> Inputs:
    if task.sources is None:
        return shared.inputs
    return Inputs(hkl=shared.inputs.hkl, sources=task.sources, mask=shared.inputs.mask)


def _render_batched(tasks: list[FrameTask], shared: Shared, threads: int,
                    device: str | None) -> list[FramePayload] | None:
    """The torch engine's batch of shots in one kernel pass (:mod:`pybragg.engines.torch.batch`) where it is
    faster; None to render one by one.  Every frame is its single render, bit for bit."""
    try:
        from pybragg.engines.torch import batch
        from pybragg.plan import Plan
    except ImportError:
        return None
    start = time.perf_counter()
    first = Plan(tasks[0].config, _task_inputs(tasks[0], shared))
    # (pixel x sub-pixel x source x orientation) elements of one shot
    elements = sum(int(p.fpixels) * int(p.spixels) * int(p.steps) for p in first.panels)
    if not batch.batch_wanted(device, elements):
        return None
    results = batch.render_results([(t.config, _task_inputs(t, shared)) for t in tasks], dtype=shared.dtype,
                                   device=None if device == "cpu" else device, threads=threads,
                                   memory_budget_gib=shared.memory_budget_gib)
    if results is None:
        return None
    seconds = (time.perf_counter() - start) / len(tasks)
    out = []
    for task, result in zip(tasks, results, strict=True):
        data, blob, photons = frame_product(result, task, shared)
        _RENDERS["count"] += 1
        out.append(FramePayload(task.index, data, blob, seconds, f"{socket.gethostname()}:{os.getpid()}",
                                _RENDERS["count"], float(result.stats.max_I), photons))
    return out


def render_one(task: FrameTask, shared: Shared, threads: int = 0, device: str | None = None) -> FramePayload:
    """Render one frame and turn it into what the writer stores."""
    from pybragg.simulator import Simulator

    start = time.perf_counter()
    inputs = shared.inputs
    if task.sources is not None:
        inputs = Inputs(hkl=inputs.hkl, sources=task.sources, mask=inputs.mask)
    sim = Simulator(task.config, inputs, backend=shared.backend, dtype=shared.dtype,
                    device=None if device == "cpu" else device, threads=threads,
                    memory_budget_gib=shared.memory_budget_gib, notice=lambda message: None)
    if sim.backend != shared.backend:
        from pybragg.errors import BackendUnavailable

        raise BackendUnavailable(f"the {shared.backend} engine is not available on worker {socket.gethostname()}")
    result = sim.run()
    data, blob, photons = frame_product(result, task, shared)
    _RENDERS["count"] += 1
    return FramePayload(task.index, data, blob, time.perf_counter() - start,
                        f"{socket.gethostname()}:{os.getpid()}", _RENDERS["count"], float(result.stats.max_I), photons)


def frame_product(result, task: FrameTask, shared: Shared) -> tuple[np.ndarray | None, bytes | None, float | None]:
    """The stored form of a render: (array, file bytes, photons)."""
    seed = task.seed
    from pybragg.writers import float32_image

    image = float32_image(result)
    roi = tuple(int(x) for x in result.geometry.roi)
    product = shared.product
    if product == "float":
        return image, None, None
    if product == "counts":
        from .formats import detector_counts

        counts = detector_counts(result, seed, noise=True)
        return counts, None, float(counts.sum(dtype=np.int64))
    if product in ("smv-noise", "smv-int"):
        from pybragg.io.smv import format_smv_header
        from pybragg.noise import noise_image
        from pybragg.writers import int_image, smv_fields, zero_uncovered

        photons = None
        if product == "smv-noise":
            pixels, photons, _ = noise_image(image, roi, seed, shared.adc_offset)  # type: ignore[arg-type]
            pixels = zero_uncovered(pixels, result)  # as -noisefile: no ADC offset between panels
        else:
            pixels, _ = int_image(result, shared.intfile_scale, shared.adc_offset)
        header = format_smv_header(smv_fields(result), shape=pixels.shape)
        return None, header + np.ascontiguousarray(pixels, dtype="<u2").tobytes(), photons
    if product == "cbf":
        from .formats import cbf_bytes

        return None, cbf_bytes(result, seed, shared, task.index), None
    raise ValueError(f"unknown frame product {product!r}")
