"""The amorphous-background stage: nonBragg's diffuse scattering, in both engines.

A realistic image is a pipeline of stages; this module is the second one::

    spots = pybragg.Simulator(config, inputs).run()                    # Bragg spots
    image = pybragg.background.render(config, inputs, sample, onto=spots)  # + water, air, ...

``inputs.stol`` holds the table (:func:`pybragg.io.stol.read_stol`, ``read_stol("water")`` for the
shipped one) and ``sample`` the amorphous sample (:class:`~pybragg.config.SampleConfig`).  The
background uses the configuration's detector (panels, rotations, two-theta, curved or point
pixels, ROI, mask), sources (divergence, dispersion), polarization, fluence and sub-pixels (the
panel's oversample).  Every factor is evaluated per sub-pixel and source (nonBragg's rule), and the
sum is divided by sources x oversample^2.  ``onto`` (a :class:`~pybragg.result.Result` or an array of
the data array's shape) is the image the background is added to, pixel by pixel in float32: the
combined image is the float sum of the two stages.  The result is a :class:`~pybragg.result.Result`
whose statistics describe the combined image; ``extras["sample"]`` holds the resolved sample
(clipped width and height, volume, density, molecules).

``backend="c"`` (default) runs ``pb_render_background`` of the C library; ``backend="torch"`` runs
:mod:`pybragg.engines.torch.background` (``dtype`` float64 or float32, ``device``), which is also
differentiable (see :class:`pybragg.engines.torch.background.BackgroundModel`).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from pybragg.config import Config, SampleConfig
from pybragg.inputs import Inputs
from pybragg.plan import Plan, stats_from_c
from pybragg.result import Result

__all__ = ["c_background", "render", "resolve_sample"]


def c_background(sample: SampleConfig, inputs: Inputs) -> tuple[Any, list[Any]]:
    """A ``pb_background`` for the C library (and the arrays it points into, to keep alive)."""
    from pybragg._native import native

    if inputs is None or inputs.stol is None:
        raise ValueError("the background needs a stol table (inputs.stol)")
    ffi, _ = native()
    bg = ffi.new("pb_background *")
    bg.thickness = sample.thickness
    bg.width = sample.width
    bg.height = sample.height
    bg.density = sample.density
    bg.molecular_weight = sample.molecular_weight
    bg.molecules = sample.molecules or 0.0
    stol = np.ascontiguousarray(inputs.stol.stol, dtype=np.float64)
    F = np.ascontiguousarray(inputs.stol.F, dtype=np.float64)
    bg.stol = ffi.cast("const double *", stol.ctypes.data)
    bg.F = ffi.cast("const double *", F.ctypes.data)
    bg.n = stol.size
    return bg, [stol, F]


def resolve_sample(plan: Plan, sample: SampleConfig, inputs: Inputs) -> dict[str, float]:
    """The sample after clipping by the beam: thickness, width, height, volume, density, molecules."""
    from pybragg._native import check, native

    ffi, lib = native()
    bg, keep = c_background(sample, inputs)
    info = ffi.new("pb_background_info *")
    err = ffi.new("pb_error *")
    check(lib.pb_background_resolve(plan.handle, bg, info, err), err)
    del keep
    return {name: float(getattr(info, name)) for name in
            ("thickness", "width", "height", "volume", "density", "molecules", "width_clipped",
             "height_clipped")}


def _onto_array(onto: Result | np.ndarray | None, shape: tuple[int, int]) -> np.ndarray:
    if onto is None:
        return np.zeros(shape, dtype=np.float32)
    image = onto.image if isinstance(onto, Result) else onto
    image = np.array(image, dtype=np.float32, copy=True)
    if image.shape != shape:
        raise ValueError(f"the image to add the background to has shape {image.shape}, the detector {shape}")
    return image


def render(config: Config, inputs: Inputs, sample: SampleConfig | None = None, *,
           onto: Result | np.ndarray | None = None, backend: str = "c", dtype: str = "float64",
           device: str | None = None, threads: int = 0, plan: Plan | None = None) -> Result:
    """The amorphous background of ``sample`` (with ``inputs.stol``), added onto ``onto``."""
    from pybragg.simulator import check_image  # a non-finite or negative image is never returned

    sample = sample or SampleConfig()
    start = time.perf_counter()
    plan = plan if plan is not None else Plan(config, inputs)
    info = resolve_sample(plan, sample, inputs)
    if backend == "torch":
        from pybragg.engines.torch.background import render_background

        bg_image, omega_sum = render_background(config, inputs, sample, plan=plan, dtype=dtype, device=device)
        image = _onto_array(onto, plan.shape)
        selected = bg_image != 0
        image[selected] = image[selected] + bg_image[selected].astype(np.float32)
        stats = plan.stats(image, omega_sum=omega_sum)
        check_image(image, "the image with the background")
        return plan.result(image, stats, "torch", dtype, device or "cpu", time.perf_counter() - start,
                           {"sample": info, "background": bg_image})
    if backend != "c":
        raise ValueError(f"unknown backend {backend!r} (c or torch)")
    from pybragg._native import native

    ffi, lib = native()
    image = _onto_array(onto, plan.shape)
    bg, keep = c_background(sample, inputs)
    st = ffi.new("pb_stats *")
    opts = ffi.new("pb_render_options *")
    opts.nthreads = threads
    err = ffi.new("pb_error *")
    from pybragg.engines.c_engine import run_interruptible  # Ctrl-C stops the pass within a row

    img_ptr = ffi.cast("float *", image.ctypes.data)
    run_interruptible(lambda: lib.pb_render_background(plan.handle, bg, img_ptr, st, opts, err), opts, err)
    del keep
    stats = stats_from_c(st, plan.geometry.data_fpixels)
    check_image(image, "the image with the background")
    return plan.result(image, stats, "c", "float32", "cpu", time.perf_counter() - start, {"sample": info})
