"""The reference's random streams: its uniform generator and its noise image.

Both run in the C library (``csrc/random.c``; the noise image through the detector response,
``csrc/response.c`` and :mod:`pybragg.response`), whose single-precision
arithmetic reproduces the reference's draws operation by operation; every engine and
output path uses these, so the same seeds give the same numbers everywhere.
"""

from __future__ import annotations

import numpy as np

from pybragg._native import check, native
from pybragg.response import ResponseConfig, respond


def noise_image(
    image: np.ndarray, roi: tuple[int, int, int, int], seed: int, adc_offset: float,
    response: ResponseConfig | None = None,
) -> tuple[np.ndarray, float, int]:
    """The noise image: (counts, photons, overloads) by the detector response of :mod:`pybragg.response`.

    With ``response`` None (or at its defaults) this is the reference's Poisson image,
    ``min(65535, poisson(image) + adc_offset)`` as uint16, 0 outside ``roi``; ``adc_offset``
    always wins over ``response.adc_offset``.
    """
    from dataclasses import replace

    config = replace(response or ResponseConfig(), adc_offset=float(adc_offset))
    res = respond(image, config, seed, roi)
    return res.counts, res.stats.photons, res.stats.overloads


def random_uniform(seed: int, n: int) -> np.ndarray:
    """``n`` deviates of the reference's uniform generator seeded like ``-seed``."""
    ffi, lib = native()
    out = np.zeros(n, dtype=np.float32)
    err = ffi.new("pb_error *")
    check(lib.pb_random_uniform(int(seed), n, ffi.cast("float *", out.ctypes.data), err), err)
    return out
