"""The C engine: the pixel loop of ``csrc/`` run over a :class:`~pybragg.plan.Plan`.

Entry points, mirrored by :mod:`pybragg.engines.torch`:

* :func:`render` -- ``render(config, inputs, *, threads, progress, ...) -> Result``;
* :func:`trace_pixel` -- one pixel's intermediate quantities in loop order.

A render started from the main thread runs in a worker thread while the main thread waits
(:func:`run_interruptible`), so that Ctrl-C (or any exception raised in the main thread, such as
the command line's SIGTERM handler's) sets the library's cancellation flag: the engine stops
within a row of pixels and the exception propagates.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from pybragg._native import check, native
from pybragg.config import Config
from pybragg.errors import UsageError
from pybragg.inputs import Inputs
from pybragg.memory import check_allocation
from pybragg.plan import Plan, stats_from_c
from pybragg.result import Result, Stats, TraceRecord

# machine code of the pixel kernel (pb_render_options.code_path); every path gives the same image
CODE_PATHS = {"auto": 0, "portable": 1, "avx2": 2}


def code_paths() -> list[str]:
    """The kernel's code paths that this build and processor run, besides ``auto``."""
    _, lib = native()
    return [name for name, code in CODE_PATHS.items() if code and lib.pb_code_path_supported(code)]


def run_interruptible(call: Callable[[], int], opts: Any, err: Any, progress: Callable[[], None] | None = None,
                      poll: float = 0.1) -> None:
    """Run ``call()`` (a C pass taking ``opts``, a ``pb_render_options *``) and :func:`check` its code.

    From the main thread, or with ``progress`` (called every ``poll`` seconds from this thread),
    the pass runs in a worker thread.  An exception in the waiting thread (KeyboardInterrupt,
    an exception from ``progress``) sets ``opts.cancel``; the worker is joined, the engine having
    stopped within a row, and the exception is re-raised.  The buffers the pass writes stay
    alive until then, whatever else arrives.
    """
    ffi, _ = native()
    cancel = ffi.new("int[1]")
    opts.cancel = cancel
    if progress is None and threading.current_thread() is not threading.main_thread():
        check(call(), err)
        return
    codes: list[int] = []
    # Waited for through an Event, not Thread.join: an exception raised inside join() can leave the
    # thread marked as stopped while it still runs (CPython 3.11, bpo-45274), and the buffers the
    # pass writes would be freed under it.
    done = threading.Event()

    def work() -> None:
        try:
            codes.append(call())
        finally:
            done.set()

    threading.Thread(target=work, name="pybragg-c-render", daemon=True).start()
    try:
        while not done.wait(poll):
            if progress is not None:
                progress()
    except BaseException:
        cancel[0] = 1
        while not done.is_set():
            try:
                done.wait(poll)
            except BaseException:  # noqa: BLE001, S112 -- a second interrupt: the pass still writes our buffers
                continue
        raise
    check(codes[0] if codes else 1, err)


def render_plan(
    plan: Plan, threads: int = 0, progress: Callable[[float], None] | None = None, code_path: str | None = None
) -> tuple[np.ndarray, Stats]:
    """Run the pixel loop over ``plan``; ``progress(fraction)`` is called from this thread.

    ``code_path`` (default: the environment's ``PYBRAGG_C_CODE_PATH``, else ``auto``) picks the
    kernel's machine code, for tests: one of :data:`CODE_PATHS`.
    """
    ffi, lib = native()
    path = code_path or os.environ.get("PYBRAGG_C_CODE_PATH", "auto")
    if path not in CODE_PATHS:
        source = "code_path" if code_path else "PYBRAGG_C_CODE_PATH"
        raise UsageError(f"{source}: unknown C code path {path!r} (one of {', '.join(CODE_PATHS)})")
    image = np.zeros(plan.shape, dtype=np.float32)
    stats = ffi.new("pb_stats *")
    opts = ffi.new("pb_render_options *")
    opts.nthreads = threads
    opts.code_path = CODE_PATHS[path]
    counter = ffi.new("long[1]")
    opts.progress = counter
    err = ffi.new("pb_error *")
    img_ptr = ffi.cast("float *", image.ctypes.data)
    rows = max(1, plan.rows)
    report = None if progress is None else (lambda: progress(min(1.0, counter[0] / rows)))
    run_interruptible(lambda: lib.pb_render(plan.handle, img_ptr, stats, opts, err), opts, err, report)
    if progress is not None:
        progress(1.0)
    return image, stats_from_c(stats, plan.geometry.data_fpixels)


def render(
    config: Config,
    inputs: Inputs | None = None,
    *,
    threads: int = 0,
    progress: Callable[[float], None] | None = None,
    **_: Any,
) -> Result:
    """Render ``config`` with the C engine (``seconds``: plan, pixel loop and statistics)."""
    native()  # loaded once per process, before the clock starts (like an import)
    start = time.perf_counter()
    plan = Plan(config, inputs)
    image, stats = render_plan(plan, threads=threads, progress=progress)
    return plan.result(image, stats, "c", "float32", "cpu", time.perf_counter() - start)


def _check_trace_size(plan: Plan, fpixel: int, spixel: int) -> None:
    """Refuse a trace whose records would not fit in memory or overflow the engine's int count."""
    ffi, _ = native()
    g = plan.geometry
    panel = next((p for p in plan.panels if 0 <= fpixel - p.data_fast < p.fpixels
                  and 0 <= spixel - p.data_slow < p.spixels), None)
    if panel is None:
        return  # the engine says which pixel lies on no panel
    orientations = int(g.phisteps) * int(g.mosaic_domains)
    # records per pixel, sub-pixel and layer, source and orientation (kernel.c, with room to spare)
    bound = 16 + int(g.thicksteps) * int(panel.oversample) ** 2 * (8 + int(g.sources) * (8 + 8 * orientations))
    what = f"the trace of pixel ({fpixel}, {spixel}): up to {bound} records"
    if bound > 2**31 - 1:
        raise UsageError(f"{what}, more than the engine can count (2^31 - 1): fewer sub-pixels, sources or domains")
    check_allocation(float(bound) * ffi.sizeof("pb_trace_record"), what)


def trace_pixel(
    config: Config, inputs: Inputs | None, fpixel: int, spixel: int, *, plan: Plan | None = None, **_: Any
) -> tuple[list[TraceRecord], float]:
    """Intermediate quantities of pixel (``fpixel``, ``spixel``) in loop order, and its value."""
    ffi, lib = native()
    plan = plan if plan is not None else Plan(config, inputs)
    _check_trace_size(plan, fpixel, spixel)
    count = ffi.new("int *")
    value = ffi.new("double *")
    err = ffi.new("pb_error *")
    capacity = 4096
    while True:
        records = ffi.new("pb_trace_record[]", capacity)
        check(lib.pb_trace_pixel(plan.handle, fpixel, spixel, records, capacity, count, value, err), err)
        if count[0] <= capacity:
            break
        capacity = count[0]
    out = [
        TraceRecord(ffi.string(r.name).decode(), tuple(r.index), tuple(r.values[0:r.n]))
        for r in records[0:count[0]]
    ]
    return out, float(value[0])
