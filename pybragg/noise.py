"""The reference's random streams: its uniform generator and its Poisson noise image.

Both run in the C library (``csrc/random.c``, ``csrc/noise.c``), whose single-precision
arithmetic reproduces the reference's draws operation by operation; every engine and
output path uses these, so the same seeds give the same numbers everywhere.
"""

from __future__ import annotations

import numpy as np

from pybragg._native import check, native


def noise_image(
    image: np.ndarray, roi: tuple[int, int, int, int], seed: int, adc_offset: float
) -> tuple[np.ndarray, float, int]:
    """Poisson image as the reference draws it: (uint16 image, photons, overloads)."""
    ffi, lib = native()
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
    check(code, err)
    return out, float(photons[0]), int(overloads[0])


def random_uniform(seed: int, n: int) -> np.ndarray:
    """``n`` deviates of the reference's uniform generator seeded like ``-seed``."""
    ffi, lib = native()
    out = np.zeros(n, dtype=np.float32)
    err = ffi.new("pb_error *")
    check(lib.pb_random_uniform(int(seed), n, ffi.cast("float *", out.ctypes.data), err), err)
    return out
