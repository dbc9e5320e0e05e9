"""The plan: a configuration resolved into what every engine renders from.

:class:`Plan` hands a :class:`~pybragg.config.Config` and its :class:`~pybragg.inputs.Inputs`
to the C library's resolver (``pb_plan_create``), which derives the geometry (axes, origin,
beam centre, distances), the step counts, the sources and the mosaic domains exactly as the
reference does.  Both engines start from it: the C engine renders the plan itself, the torch
engine takes its discrete parts (pixels, sources, step counts, mosaic deviates, the table)
and rebuilds the continuous ones as differentiable tensors.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from pybragg._native import check, native
from pybragg.config import Config, PanelConfig, iter_fields
from pybragg.errors import UsageError
from pybragg.inputs import Inputs
from pybragg.memory import available_bytes
from pybragg.result import Geometry, PanelGeometry, Result, Stats


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


_INT_MIN, _INT_MAX = -(2**31), 2**31 - 1


def _c_int(value: Any, what: str) -> int:
    """``value`` as a C ``int``; a :class:`~pybragg.errors.UsageError` naming ``what`` outside its range."""
    number = int(value)
    if not _INT_MIN <= number <= _INT_MAX:
        raise UsageError(f"{what}: {number} is out of the C engine's range ({_INT_MIN} to {_INT_MAX})")
    return number


def _set_field(target: Any, last: str, value: Any, ctype: Any, name: str) -> None:
    try:
        setattr(target, last, _c_value(value, ctype))
    except OverflowError:
        raise UsageError(f"{name}: {value!r} is out of the C engine's range for a {ctype.cname}") from None


# configuration fields that travel in pb_inputs rather than pb_config
_NOT_IN_PB_CONFIG = frozenset({"detector.panels"})


def config_to_c(config: Config) -> Any:
    """A new ``pb_config`` holding ``config`` (unset fields as the engine expects)."""
    ffi, lib = native()
    cfg = ffi.new("pb_config *")
    lib.pb_config_init(cfg)
    for name, value in iter_fields(config):
        if name in _NOT_IN_PB_CONFIG:
            continue
        *path, last = name.split(".")
        target = cfg
        for part in path:
            target = getattr(target, part)
        ctype = dict(ffi.typeof(target).fields)[last].type
        _set_field(target, last, value, ctype, name)
    return cfg


def panels_to_c(panels: tuple[PanelConfig, ...]) -> Any:
    """A new ``pb_panel[]`` holding ``panels`` (None for no explicit panels)."""
    if not panels:
        return None
    ffi, _ = native()
    out = ffi.new("pb_panel[]", len(panels))
    for c, p in zip(out, panels):
        name = str(p.name).encode()
        if len(name) > 31:  # whole UTF-8 characters only
            name = name[:31].decode(errors="ignore").encode()
        c.name = name
        what = f"panel {p.name}"
        c.fpixels, c.spixels = _c_int(p.fpixels, what + " fast pixels"), _c_int(p.spixels, what + " slow pixels")
        c.pixel_size = float(p.pixel_size)
        c.origin = [float(v) for v in p.origin]
        c.fdet = [float(v) for v in p.fdet]
        c.sdet = [float(v) for v in p.sdet]
        c.data_fast = _c_int(p.data_fast, what + " data-array position")
        c.data_slow = _c_int(p.data_slow, what + " data-array position")
    return out


def _panel_geometry(c: Any) -> PanelGeometry:
    ffi, _ = native()
    values = {}
    for name, f in ffi.typeof("pb_panel_geometry").fields:
        value = getattr(c, name)
        if name == "name":
            value = ffi.string(value).decode(errors="replace")
        elif f.type.kind == "array":
            value = tuple(value)
        values[name] = value
    return PanelGeometry(**values)


def _struct_to_dict(obj: Any) -> dict[str, Any]:
    ffi, _ = native()
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


class Plan:
    """A C plan: the configuration resolved into geometry, sources and domains."""

    def __init__(self, config: Config, inputs: Inputs | None = None):
        ffi, lib = native()
        inputs = inputs or Inputs()
        self._keep: list[Any] = []
        c_in = ffi.new("pb_inputs *")
        if inputs.hkl is not None:
            F = np.ascontiguousarray(inputs.hkl.F, dtype=np.float64)
            self._keep.append(F)
            c_in.fhkl = ffi.cast("const double *", F.ctypes.data)
            c_in.h_min, c_in.k_min, c_in.l_min = (
                _c_int(v, f"-hkl: the lowest {axis} index")
                for v, axis in zip((inputs.hkl.h_min, inputs.hkl.k_min, inputs.hkl.l_min), "hkl"))
            c_in.nh, c_in.nk, c_in.nl = (_c_int(n, "-hkl: the table size") for n in F.shape)
        if inputs.sources is not None and len(inputs.sources):
            src = np.ascontiguousarray(inputs.sources, dtype=np.float64)
            self._keep.append(src)
            c_in.sources = ffi.cast("const double *", src.ctypes.data)
            c_in.n_sources = _c_int(src.shape[0], "-sourcefile: the number of sources")
        if inputs.mask is not None:
            mask = np.ascontiguousarray(inputs.mask, dtype=np.uint8)
            self._keep.append(mask)
            c_in.mask = ffi.cast("const uint8_t *", mask.ctypes.data)
            c_in.mask_spixels, c_in.mask_fpixels = (_c_int(n, "-mask: the mask size") for n in mask.shape)
        panels = panels_to_c(tuple(config.detector.panels))
        if panels is not None:
            self._keep.append(panels)
            c_in.panels = panels
            c_in.n_panels = _c_int(len(panels), "the number of panels")
        self.config = config
        self._cfg = config_to_c(config)
        # the memory rule (pybragg.memory): the plan refuses inputs that would need more
        c_in.memory_limit = float(available_bytes())
        err = ffi.new("pb_error *")
        plan = lib.pb_plan_create(self._cfg, c_in, err)
        if plan == ffi.NULL:
            check(err.code or 1, err)
        self.handle = ffi.gc(plan, lib.pb_plan_free)
        n = ffi.new("int *")
        ptr = lib.pb_plan_panels(self.handle, n)
        #: every panel as resolved (one for a detector without explicit panels)
        self.panels: list[PanelGeometry] = [_panel_geometry(ptr[i]) for i in range(n[0])]
        self.geometry = Geometry({**_struct_to_dict(lib.pb_plan_geometry(self.handle)), "panels": self.panels})
        ptr = lib.pb_plan_sources(self.handle, n)
        self.sources = np.frombuffer(ffi.buffer(ptr, 8 * 5 * n[0]), dtype=np.float64).reshape(n[0], 5).copy()
        ptr = lib.pb_plan_mosaic(self.handle, n)
        self.mosaic = np.frombuffer(ffi.buffer(ptr, 8 * 9 * n[0]), dtype=np.float64).reshape(n[0], 3, 3).copy()

    @property
    def shape(self) -> tuple[int, int]:
        """(slow, fast) pixel counts of the data array (the image every engine returns)."""
        return self.geometry.data_spixels, self.geometry.data_fpixels

    @property
    def rows(self) -> int:
        """Work units of the pixel loop: the rows of every panel (what progress counts)."""
        return sum(p.spixels for p in self.panels)

    def stats(self, image: np.ndarray, omega_sum: float = 0.0, fallbacks: int = 0) -> Stats:
        """Statistics of ``image`` (any float dtype) as the reference computes them."""
        ffi, lib = native()
        img = np.ascontiguousarray(image, dtype=np.float32)
        if img.shape != self.shape:
            raise ValueError(f"image has shape {img.shape}, the detector {self.shape}")
        st = ffi.new("pb_stats *")
        err = ffi.new("pb_error *")
        check(lib.pb_stats_compute(self.handle, ffi.cast("const float *", img.ctypes.data), st, err), err)
        return stats_from_c(st, self.geometry.data_fpixels, omega_sum, fallbacks)

    def result(self, image: np.ndarray, stats: Stats, backend: str, dtype: str, device: str, seconds: float,
               extras: dict[str, Any] | None = None) -> Result:
        """A :class:`~pybragg.result.Result` for an image rendered from this plan."""
        return Result(image=image, stats=stats, geometry=self.geometry, sources=self.sources, mosaic=self.mosaic,
                      config=self.config, backend=backend, dtype=dtype, device=device, seconds=seconds,
                      extras=extras or {})


def stats_from_c(st: Any, fpixels: int, omega_sum: float | None = None, fallbacks: int | None = None) -> Stats:
    """A :class:`Stats` from a ``pb_stats``; ``fpixels``: the data array's width."""
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
