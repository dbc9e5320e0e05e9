"""The C engine: the pixel loop of ``csrc/`` run over a :class:`~pybragg.plan.Plan`.

Entry points, mirrored by :mod:`pybragg.engines.torch`:

* :func:`render` -- ``render(config, inputs, *, threads, progress, ...) -> Result``;
* :func:`trace_pixel` -- one pixel's intermediate quantities in loop order.
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
from pybragg.plan import Plan, stats_from_c
from pybragg.result import Result, Stats, TraceRecord

# machine code of the pixel kernel (pb_render_options.code_path); every path gives the same image
CODE_PATHS = {"auto": 0, "portable": 1, "avx2": 2}


def code_paths() -> list[str]:
    """The kernel's code paths that this build and processor run, besides ``auto``."""
    _, lib = native()
    return [name for name, code in CODE_PATHS.items() if code and lib.pb_code_path_supported(code)]


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
    if progress is None:
        check(lib.pb_render(plan.handle, img_ptr, stats, opts, err), err)
    else:
        codes: list[int] = []
        worker = threading.Thread(
            target=lambda: codes.append(lib.pb_render(plan.handle, img_ptr, stats, opts, err)), daemon=True
        )
        worker.start()
        rows = max(1, plan.rows)
        while worker.is_alive():
            worker.join(0.1)
            progress(min(1.0, counter[0] / rows))
        progress(1.0)
        check(codes[0] if codes else 1, err)
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


def trace_pixel(
    config: Config, inputs: Inputs | None, fpixel: int, spixel: int, *, plan: Plan | None = None, **_: Any
) -> tuple[list[TraceRecord], float]:
    """Intermediate quantities of pixel (``fpixel``, ``spixel``) in loop order, and its value."""
    ffi, lib = native()
    plan = plan if plan is not None else Plan(config, inputs)
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
