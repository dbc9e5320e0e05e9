"""The C engine: a thin wrapper over the cffi binding of ``csrc/``.

It copies a :class:`~pybragg.config.Config` into ``pb_config`` by field name,
builds a plan, renders and turns error codes into exceptions.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from pybragg.config import Config, iter_fields
from pybragg.errors import EngineError
from pybragg.inputs import Inputs
from pybragg.result import Geometry, Result, Stats


def _native() -> tuple[Any, Any]:
    from pybragg._native import ffi, lib

    return ffi, lib


def _check(code: int, err: Any) -> None:
    if code != 0:
        ffi, _ = _native()
        raise EngineError(ffi.string(err.message).decode() or f"C engine error {code}")


def _c_value(value: Any, ctype: Any) -> Any:
    """Python config value -> value for a cffi field of type ``ctype``."""
    if ctype.kind == "array":
        if value is None:
            return [-1] * ctype.length
        return [float(v) if ctype.item.cname == "double" else int(v) for v in value]
    if ctype.cname == "double":
        return math.nan if value is None else float(value)
    # int / long (enums and bools included); None means "unset"
    return -1 if value is None else int(value)


def config_to_c(config: Config) -> Any:
    """A new ``pb_config`` holding ``config`` (unset fields as the engine expects)."""
    ffi, lib = _native()
    cfg = ffi.new("pb_config *")
    lib.pb_config_init(cfg)
    for name, value in iter_fields(config):
        *path, last = name.split(".")
        target = cfg
        for part in path:
            target = getattr(target, part)
        ctype = dict(ffi.typeof(target).fields)[last].type
        setattr(target, last, _c_value(value, ctype))
    return cfg


def _struct_to_dict(obj: Any) -> dict[str, Any]:
    ffi, _ = _native()
    out: dict[str, Any] = {}
    ctype = ffi.typeof(obj)
    if ctype.kind == "pointer":
        ctype, obj = ctype.item, obj[0]
    for name, f in ctype.fields:
        value = getattr(obj, name)
        if f.type.kind == "array":
            value = tuple(value)
        out[name] = value
    return out


@dataclass(frozen=True)
class TraceRecord:
    """One traced quantity: name, loop index (layer, sub-pixel slow, sub-pixel fast,
    source, phi step, domain; -1 where it does not apply) and its values."""

    name: str
    index: tuple[int, ...]
    values: tuple[float, ...]


class Plan:
    """A C plan: the configuration resolved into geometry, sources and domains."""

    def __init__(self, config: Config, inputs: Inputs | None = None):
        ffi, lib = _native()
        inputs = inputs or Inputs()
        self._keep: list[Any] = []
        c_in = ffi.new("pb_inputs *")
        if inputs.hkl is not None:
            F = np.ascontiguousarray(inputs.hkl.F, dtype=np.float64)
            self._keep.append(F)
            c_in.fhkl = ffi.cast("const double *", F.ctypes.data)
            c_in.h_min, c_in.k_min, c_in.l_min = inputs.hkl.h_min, inputs.hkl.k_min, inputs.hkl.l_min
            c_in.nh, c_in.nk, c_in.nl = F.shape
        if inputs.sources is not None and len(inputs.sources):
            src = np.ascontiguousarray(inputs.sources, dtype=np.float64)
            self._keep.append(src)
            c_in.sources = ffi.cast("const double *", src.ctypes.data)
            c_in.n_sources = src.shape[0]
        if inputs.mask is not None:
            mask = np.ascontiguousarray(inputs.mask, dtype=np.uint8)
            self._keep.append(mask)
            c_in.mask = ffi.cast("const uint8_t *", mask.ctypes.data)
            c_in.mask_spixels, c_in.mask_fpixels = mask.shape
        self.config = config
        self._cfg = config_to_c(config)
        err = ffi.new("pb_error *")
        plan = lib.pb_plan_create(self._cfg, c_in, err)
        if plan == ffi.NULL:
            _check(err.code or 1, err)
        self._plan = ffi.gc(plan, lib.pb_plan_free)
        self.geometry = Geometry(_struct_to_dict(lib.pb_plan_geometry(self._plan)))
        n = ffi.new("int *")
        ptr = lib.pb_plan_sources(self._plan, n)
        self.sources = np.frombuffer(ffi.buffer(ptr, 8 * 5 * n[0]), dtype=np.float64).reshape(n[0], 5).copy()
        ptr = lib.pb_plan_mosaic(self._plan, n)
        self.mosaic = np.frombuffer(ffi.buffer(ptr, 8 * 9 * n[0]), dtype=np.float64).reshape(n[0], 3, 3).copy()

    @property
    def shape(self) -> tuple[int, int]:
        """(slow, fast) pixel counts."""
        return self.geometry.spixels, self.geometry.fpixels

    def stats(self, image: np.ndarray, omega_sum: float = 0.0, fallbacks: int = 0) -> Stats:
        """Statistics of ``image`` (any float dtype) as the reference computes them."""
        ffi, lib = _native()
        img = np.ascontiguousarray(image, dtype=np.float32)
        if img.shape != self.shape:
            raise ValueError(f"image has shape {img.shape}, the detector {self.shape}")
        st = ffi.new("pb_stats *")
        code = lib.pb_stats_compute(self._plan, ffi.cast("const float *", img.ctypes.data), st)
        if code != 0:
            raise EngineError(f"C engine error {code}: no memory for the image statistics")
        return _stats_from_c(st, self.geometry.fpixels, omega_sum, fallbacks)

    def result(self, image: np.ndarray, stats: Stats, backend: str, dtype: str, device: str, seconds: float,
               extras: dict[str, Any] | None = None) -> Result:
        """A :class:`~pybragg.result.Result` for an image rendered from this plan."""
        return Result(image=image, stats=stats, geometry=self.geometry, sources=self.sources, mosaic=self.mosaic,
                      config=self.config, backend=backend, dtype=dtype, device=device, seconds=seconds,
                      extras=extras or {})

    def trace(self, fpixel: int, spixel: int) -> tuple[list[TraceRecord], float]:
        """Intermediate quantities of one pixel in loop order, and its value."""
        ffi, lib = _native()
        count = ffi.new("int *")
        value = ffi.new("double *")
        err = ffi.new("pb_error *")
        capacity = 4096
        while True:
            records = ffi.new("pb_trace_record[]", capacity)
            _check(lib.pb_trace_pixel(self._plan, fpixel, spixel, records, capacity, count, value, err), err)
            if count[0] <= capacity:
                break
            capacity = count[0]
        out = [
            TraceRecord(ffi.string(r.name).decode(), tuple(r.index), tuple(r.values[0:r.n]))
            for r in records[0:count[0]]
        ]
        return out, float(value[0])

    def render(
        self, threads: int = 0, progress: Callable[[float], None] | None = None
    ) -> tuple[np.ndarray, Stats]:
        """Run the pixel loop; ``progress(fraction)`` is called from this thread."""
        ffi, lib = _native()
        image = np.zeros(self.shape, dtype=np.float32)
        stats = ffi.new("pb_stats *")
        opts = ffi.new("pb_render_options *")
        opts.nthreads = threads
        counter = ffi.new("long[1]")
        opts.progress = counter
        err = ffi.new("pb_error *")
        img_ptr = ffi.cast("float *", image.ctypes.data)
        if progress is None:
            _check(lib.pb_render(self._plan, img_ptr, stats, opts, err), err)
        else:
            codes: list[int] = []
            worker = threading.Thread(
                target=lambda: codes.append(lib.pb_render(self._plan, img_ptr, stats, opts, err)), daemon=True
            )
            worker.start()
            rows = max(1, self.shape[0])
            while worker.is_alive():
                worker.join(0.1)
                progress(min(1.0, counter[0] / rows))
            progress(1.0)
            _check(codes[0] if codes else 1, err)
        return image, _stats_from_c(stats, self.geometry.fpixels)


def _stats_from_c(st: Any, fpixels: int, omega_sum: float | None = None, fallbacks: int | None = None) -> Stats:
    idx = int(st.max_I_index)
    return Stats(
        max_I=float(st.max_I),
        max_I_fast=float(st.max_I_fast),
        max_I_slow=float(st.max_I_slow),
        max_I_pixel=None if idx < 0 else (idx // fpixels, idx % fpixels),
        sum=float(st.sum),
        n=int(st.n),
        mean=float(st.mean),
        rms=float(st.rms),
        rmsd=float(st.rmsd),
        omega_sum=float(st.omega_sum if omega_sum is None else omega_sum),
        interpolation_fallbacks=int(st.interpolation_fallbacks if fallbacks is None else fallbacks),
    )


def render(
    config: Config,
    inputs: Inputs | None = None,
    *,
    threads: int = 0,
    progress: Callable[[float], None] | None = None,
    **_: Any,
) -> Result:
    """Render ``config`` with the C engine (``seconds``: plan, pixel loop and statistics)."""
    _native()  # loaded once per process, before the clock starts (like an import)
    start = time.perf_counter()
    plan = Plan(config, inputs)
    image, stats = plan.render(threads=threads, progress=progress)
    return plan.result(image, stats, "c", "float32", "cpu", time.perf_counter() - start)


def noise_image(
    image: np.ndarray, roi: tuple[int, int, int, int], seed: int, adc_offset: float
) -> tuple[np.ndarray, float, int]:
    """Poisson image as the reference draws it: (uint16 image, photons, overloads)."""
    ffi, lib = _native()
    img = np.ascontiguousarray(image, dtype=np.float32)
    spixels, fpixels = img.shape
    out = np.zeros(img.shape, dtype=np.uint16)
    photons = ffi.new("double *")
    overloads = ffi.new("long *")
    err = ffi.new("pb_error *")
    c_roi = ffi.new("int[4]", list(roi))
    code = lib.pb_noise(
        ffi.cast("const float *", img.ctypes.data), fpixels, spixels, c_roi, int(seed), float(adc_offset),
        ffi.cast("uint16_t *", out.ctypes.data), photons, overloads, err,
    )
    _check(code, err)
    return out, float(photons[0]), int(overloads[0])


def random_uniform(seed: int, n: int) -> np.ndarray:
    """``n`` deviates of the reference's uniform generator seeded like ``-seed``."""
    ffi, lib = _native()
    out = np.zeros(n, dtype=np.float32)
    lib.pb_random_uniform(int(seed), n, ffi.cast("float *", out.ctypes.data))
    return out
