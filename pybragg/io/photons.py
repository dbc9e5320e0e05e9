"""Detector counts of a render, as the CBF and NeXus writers store them.

With noise, a pixel holds the photons of the noise image: the same Poisson draws, from the same
stream and seed, as ``-noisefile`` (:func:`pybragg.noise.noise_image`), but as int32, before the
ADC offset and without the 16-bit cap.  The C library's ``pb_noise`` draws them (the caller passes
those draws in, see :func:`photon_counts`); it caps at 65535,
so where a pixel reaches the cap its draw is repeated here by replaying the reference's random
stream in Python (the minimal-standard generator with its shuffle table and the Poisson sampler,
in the same single- and double-precision steps as ``csrc/random.c``).  Pixels below the cap are
taken from the C draw as they are; the replay, which only runs when some pixel reaches the cap,
checks that it reproduces every one of them.

Without noise, a pixel holds the float image rounded to the nearest count.
"""

from __future__ import annotations

import math
import struct

import numpy as np

INT32_MAX = 2**31 - 1

_MCG_A = 16807
_MCG_M = 2147483647
_MCG_Q = 127773
_MCG_R = 2836
_SHUFFLE_N = 32
_SHUFFLE_DIV = 1 + (_MCG_M - 1) // _SHUFFLE_N
_UNIFORM_MAX = 1.0 - 1.2e-7
_F32 = struct.Struct("f")
_LANCZOS = (76.18009172947146, -86.50532032941677, 24.01409824083091,
            -1.231739572450155, 0.1208650973866179e-2, -0.5395239384953e-5)


def _f32(x: float) -> float:
    """``x`` rounded to single precision (as a C cast to float)."""
    return _F32.unpack(_F32.pack(x))[0]


_UNIFORM_MAX_F = _f32(_UNIFORM_MAX)


class ReferenceStream:
    """The reference's random stream (the same numbers as ``csrc/random.c`` for the same seed)."""

    def __init__(self, seed: int):
        self.idum = -int(seed)
        self.iy = 0
        self.iv = [0] * _SHUFFLE_N
        self.gauss_spare = 0.0
        self.gauss_ready = False

    @staticmethod
    def _next(x: int) -> int:
        hi = int(x / _MCG_Q)  # C division truncates toward zero
        x = _MCG_A * (x - hi * _MCG_Q) - _MCG_R * hi
        return x + _MCG_M if x < 0 else x

    def uniform(self) -> float:
        if self.idum <= 0 or self.iy == 0:
            self.idum = max(-self.idum, 1)
            for j in range(_SHUFFLE_N + 7, -1, -1):
                self.idum = self._next(self.idum)
                if j < _SHUFFLE_N:
                    self.iv[j] = self.idum
            self.iy = self.iv[0]
        self.idum = self._next(self.idum)
        slot = self.iy // _SHUFFLE_DIV
        self.iy = self.iv[slot]
        self.iv[slot] = self.idum
        u = _f32((1.0 / _MCG_M) * self.iy)
        return _UNIFORM_MAX_F if u > _UNIFORM_MAX else u

    def skip_uniforms(self, n: int) -> None:
        """Draw ``n`` uniforms and forget them (no reload can happen after the first draw)."""
        if n <= 0:
            return
        self.uniform()
        idum, iy, iv = self.idum, self.iy, self.iv
        nxt = self._next
        for _ in range(n - 1):
            idum = nxt(idum)
            slot = iy // _SHUFFLE_DIV
            iy = iv[slot]
            iv[slot] = idum
        self.idum, self.iy = idum, iy

    def gauss(self) -> float:
        if self.gauss_ready:
            self.gauss_ready = False
            return self.gauss_spare
        while True:
            v1 = _f32(2.0 * self.uniform() - 1.0)
            v2 = _f32(2.0 * self.uniform() - 1.0)
            rsq = _f32(_f32(v1 * v1) + _f32(v2 * v2))
            if not (rsq >= 1.0 or rsq == 0.0):
                break
        fac = _f32(math.sqrt(-2.0 * math.log(rsq) / rsq))
        self.gauss_spare = _f32(v1 * fac)
        self.gauss_ready = True
        return _f32(v2 * fac)

    def poisson(self, mean: float) -> float:
        mean = _f32(mean)
        if mean > 1.0e6:
            return _f32(mean + math.sqrt(mean) * self.gauss())
        if mean < 12.0:
            limit = _f32(math.exp(-mean))
            k = -1.0
            t = 1.0
            while True:
                k = _f32(k + 1.0)
                t = _f32(t * self.uniform())
                if not t > limit:
                    return k
        width = _f32(math.sqrt(2.0 * mean))
        log_mean = _f32(math.log(mean))
        norm = _f32(_f32(mean * log_mean) - _log_gamma(_f32(mean + 1.0)))
        while True:
            while True:
                y = _f32(math.tan(math.pi * self.uniform()))
                k = _f32(_f32(width * y) + mean)
                if not k < 0.0:
                    break
            k = _f32(math.floor(k))
            y2 = _f32(y * y)
            lg = _log_gamma(_f32(k + 1.0))
            expo = _f32(_f32(_f32(k * log_mean) - lg) - norm)
            t = _f32(0.9 * (1.0 + y2) * math.exp(expo))
            if not self.uniform() > t:
                return k


def _log_gamma(xx: float) -> float:
    x = y = xx
    tmp = x + 5.5
    tmp -= (x + 0.5) * math.log(tmp)
    series = 1.000000000190015
    for coef in _LANCZOS:
        y += 1.0
        series += coef / y
    return _f32(-tmp + math.log(2.5066282746310005 * series / x))


def _roi_bounds(roi: tuple[int, int, int, int], shape: tuple[int, int]) -> tuple[int, int, int, int]:
    # the same bounds as pb_noise: a negative entry means "the edge"; the maxima are inclusive
    spixels, fpixels = shape
    xmin, xmax, ymin, ymax = roi
    return (max(xmin, 0), fpixels if xmax < 0 else xmax, max(ymin, 0), spixels if ymax < 0 else ymax)


def replay_counts(image: np.ndarray, roi: tuple[int, int, int, int], seed: int,
                  known: np.ndarray | None = None, stop: int | None = None) -> np.ndarray:
    """Poisson draws of the noise image replayed in Python: float32 counts, 0 outside the ROI.

    ``known`` (the capped C draws) lets pixels of small mean skip their sampler: a draw of k
    photons from a mean below 12 takes exactly k + 1 uniforms.  ``stop``: replay only the first
    ``stop`` pixels in file order.
    """
    img = np.ascontiguousarray(image, dtype=np.float32)
    spixels, fpixels = img.shape
    xmin, xmax, ymin, ymax = _roi_bounds(roi, img.shape)
    out = np.zeros(img.shape, dtype=np.float32)
    flat_img = img.ravel().tolist()
    flat_known = known.ravel().tolist() if known is not None else None
    flat_out = out.ravel()
    stream = ReferenceStream(seed)
    n = spixels * fpixels if stop is None else min(stop, spixels * fpixels)
    for idx in range(n):
        s, f = divmod(idx, fpixels)
        if f < xmin or f > xmax or s < ymin or s > ymax:
            continue
        mean = flat_img[idx]
        if flat_known is not None and mean < 12.0 and flat_known[idx] < 65535:
            k = flat_known[idx]
            stream.skip_uniforms(int(k) + 1)
            flat_out[idx] = k
            continue
        flat_out[idx] = stream.poisson(mean)
    return out


def photon_counts(image: np.ndarray, roi: tuple[int, int, int, int], seed: int, capped: np.ndarray) -> np.ndarray:
    """The noise image's photons (int32, no ADC offset, no 16-bit cap), 0 outside the ROI.

    ``capped``: the C library's draws for the same image, ROI and seed with no ADC offset
    (``pybragg.noise.noise_image(image, roi, seed, 0.0)[0]``), capped at 65535; the pixels at the
    cap are drawn again by :func:`replay_counts`.
    """
    img = np.ascontiguousarray(image, dtype=np.float32)
    counts = np.asarray(capped).astype(np.int64)
    full = counts >= 65535
    if full.any():
        last = int(np.flatnonzero(full.ravel())[-1]) + 1
        replayed = replay_counts(img, roi, seed, known=np.asarray(capped), stop=last)
        exact = np.trunc(replayed.astype(np.float64))
        head = counts.ravel()[:last]
        again = exact.ravel()[:last]
        below = head < 65535
        if not np.array_equal(again[below], head[below]):
            raise RuntimeError("replayed noise stream differs from the C library's draws")
        head[~below] = again[~below]
    return np.clip(counts, 0, INT32_MAX).astype(np.int32)


def rounded_counts(image: np.ndarray) -> np.ndarray:
    """The float image rounded to counts (int32, clipped to its range)."""
    value = np.rint(np.asarray(image, dtype=np.float64))
    return np.clip(value, -INT32_MAX - 1, INT32_MAX).astype(np.int32)
