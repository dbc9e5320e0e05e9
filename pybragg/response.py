"""The detector's response: an image of expected photons -> the counts a detector records.

One module for every output path (``pybragg``'s noise image, ``pybragg noisify``, the Python API):
source flicker, a per-pixel calibration error, Poisson photon counting, a Gaussian or fiber
point-spread function, gain, ADC offset, read-out noise and the 16- or 32-bit integer cast, in
the order and with the random draws of the reference's ``noisify``.

The random draws and the PSF run in the C library (``csrc/response.c``): the photon and calibration
streams are the reference's generator (``csrc/random.c``), including the shuffle table and Gaussian
spare that the reference's two seeds share, and the PSF's sums are accumulated in the reference's
order in single precision with the C library's ``erf``/``exp``/``atan``, so the same seeds give the
same image.  The steps around them (photon scale, the noiseless integer image, PGM) are NumPy.

With every option at its default (:class:`ResponseConfig()`), :func:`apply` is nanoBragg's Poisson
noise image: ``min(65535, poisson(image) + adc)``.

Example::

    from pybragg.response import ResponseConfig, apply
    counts = apply(result.image, ResponseConfig(gain=1.5, readout_noise=3.0, psf="gauss",
                                                psf_fwhm=120e-6, pixel_size=1e-4), seed=1)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from pybragg._native import check, native
from pybragg.errors import UsageError
from pybragg.memory import check_allocation

#: the reference noisify's default calibration seed, as its internal state (+123456789); typed on
#: its command line that state would be ``-calib_seed -123456789``
NOISIFY_CALIB_SEED = -123456789

_PSF_CODES = {None: 0, "gauss": 1, "fiber": 2}


@dataclass(frozen=True)
class ResponseConfig:
    """How the detector turns expected photons into counts (SI units; defaults: an ideal
    photon counter, nanoBragg's noise image)."""

    #: fractional source flicker: every pixel's expected photons times (1 + flicker * gauss)
    flicker: float = 0.0
    #: fractional per-pixel calibration error from its own seed (the same from image to image)
    calibration: float = 0.0
    #: seed of the calibration error as typed (negated internally)
    calib_seed: int = NOISIFY_CALIB_SEED
    #: ADU per photon
    gain: float = 1.0
    #: offset added to every pixel (ADU)
    adc_offset: float = 40.0
    #: Gaussian read-out noise (ADU rms)
    readout_noise: float = 0.0
    #: point-spread function: None, "gauss" or "fiber"
    psf: str | None = None
    #: full width at half maximum of the PSF (m)
    psf_fwhm: float = 46e-6
    #: rendering radius of the PSF in pixels (0: automatic)
    psf_radius: int = 0
    #: pixel size (m), to express psf_fwhm in pixels
    pixel_size: float = 1e-4
    #: 16 or 32 bits per pixel
    bits: int = 16
    #: False (the reference): the calibration stream shares the generator's shuffle table and
    #: Gaussian spare with the photon stream, so its errors depend on ``seed`` too; True: the
    #: calibration error has a generator of its own and is the same map for every ``seed``
    independent_calibration: bool = False

    def __post_init__(self) -> None:
        for name in ("flicker", "calibration", "readout_noise"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise UsageError(f"-{name}: must not be negative, got {value:g}")
        if self.psf not in _PSF_CODES:
            raise UsageError(f"-psf: expected gauss or fiber, got {self.psf!r}")
        if self.psf_radius < 0:
            raise UsageError(f"-psf_radius: must not be negative, got {self.psf_radius}")
        if self.bits not in (16, 32):
            raise UsageError(f"-bits: expected 16 or 32, got {self.bits}")
        if not self.pixel_size > 0:
            raise UsageError(f"pixel size must be > 0, got {self.pixel_size:g}")

    @property
    def psf_fwhm_pixels(self) -> float:
        """The PSF's fwhm in pixels, from a single-precision fwhm as the reference keeps it."""
        return float(np.float32(self.psf_fwhm)) / self.pixel_size

    @property
    def psf_active(self) -> bool:
        return self.psf is not None and float(np.float32(self.psf_fwhm)) > 0.0

    @property
    def is_default_noise(self) -> bool:
        """True when the response is nanoBragg's plain Poisson noise image."""
        return (self.flicker == 0 and self.calibration == 0 and self.gain == 1.0 and self.readout_noise == 0
                and not self.psf_active and self.bits == 16)


@dataclass
class ResponseStats:
    """What one response run reports (as noisify prints it)."""

    photons_before_psf: float
    photons: float
    lost_photons: float = 0.0
    psf_radius: int = 0
    psf_applied: bool = False
    overloads: int = 0


@dataclass
class ResponseImage:
    """Counts (uint16 or uint32), the photon signal before gain (float32) and the run's numbers."""

    counts: np.ndarray
    signal: np.ndarray
    stats: ResponseStats = field(default_factory=lambda: ResponseStats(0.0, 0.0))


def _c_params(ffi, config: ResponseConfig, seed: int):
    p = ffi.new("pb_response_params *")
    p.seed = int(seed)
    p.calib_seed = int(config.calib_seed)
    p.flicker = float(config.flicker)
    p.calibration = float(config.calibration)
    p.gain = float(config.gain)
    p.adc_offset = float(config.adc_offset)
    p.readout_noise = float(config.readout_noise)
    p.psf_type = _PSF_CODES[config.psf] if config.psf_active else 0
    p.psf_fwhm_pixels = config.psf_fwhm_pixels if config.psf_active else 0.0
    p.psf_radius = int(config.psf_radius)
    p.calib_independent = 1 if config.independent_calibration else 0
    return p


def _response_bytes(config: ResponseConfig, fpixels: int, spixels: int) -> float:
    """Most bytes :func:`respond` takes: its three images (float32, uint16, uint32) and, with a
    point-spread function, the engine's spread image and its kernel, whose radius never exceeds
    the detector's larger side (``-psf_radius`` when given)."""
    total = 10.0 * fpixels * spixels
    if config.psf_active:
        side = max(fpixels, spixels)
        radius = min(int(config.psf_radius), side) if config.psf_radius > 0 else side
        total += 8.0 * fpixels * spixels + 8.0 * (2 * radius + 1) ** 2
    return total


def respond(image: np.ndarray, config: ResponseConfig, seed: int,
            roi: tuple[int, int, int, int] | None = None) -> ResponseImage:
    """The detector's response to ``image`` (expected photons per pixel, 2-D), every stage.

    ``roi`` (xmin, xmax, ymin, ymax, inclusive; -1: open) limits the pixels that get counts (0
    elsewhere, no random draws), as nanoBragg's noise image does.
    """
    ffi, lib = native()
    img = np.ascontiguousarray(image, dtype=np.float32)
    if img.ndim != 2:
        raise ValueError(f"the response needs a 2-D image, got shape {img.shape}")
    spixels, fpixels = img.shape
    check_allocation(_response_bytes(config, fpixels, spixels), "the detector response (-noisefile, -psf)")
    signal = np.zeros(img.shape, dtype=np.float32)
    out16 = np.zeros(img.shape, dtype=np.uint16)
    out32 = np.zeros(img.shape, dtype=np.uint32)
    stats = ffi.new("pb_response_stats *")
    err = ffi.new("pb_error *")
    c_roi = ffi.new("int[4]", list(roi)) if roi is not None else ffi.NULL
    code = lib.pb_response(
        ffi.cast("const float *", img.ctypes.data), fpixels, spixels, c_roi, _c_params(ffi, config, seed),
        ffi.cast("float *", signal.ctypes.data), ffi.cast("uint16_t *", out16.ctypes.data),
        ffi.cast("uint32_t *", out32.ctypes.data), stats, err,
    )
    check(code, err)
    counts = out16 if config.bits == 16 else out32
    overloads = stats.overloads16 if config.bits == 16 else stats.overloads32
    return ResponseImage(counts, signal, ResponseStats(
        float(stats.photons_before_psf), float(stats.photons), float(stats.lost_photons),
        int(stats.psf_radius), bool(stats.psf_applied), int(overloads)))


def apply(image, config: ResponseConfig | None = None, seed: int = 1,
          roi: tuple[int, int, int, int] | None = None) -> np.ndarray:
    """Counts the detector records for ``image``: a :class:`~pybragg.result.Result` or an array of
    expected photons per pixel.  ``seed`` as typed after ``-seed`` (negated internally)."""
    config = config or ResponseConfig()
    array = getattr(image, "image", image)
    if roi is None and hasattr(image, "geometry"):
        roi = tuple(image.geometry.roi)
    return respond(np.asarray(array), config, seed, roi).counts


def psf(image: np.ndarray, kind: str, fwhm_pixels: float, radius: int = 0) -> tuple[np.ndarray, float, int]:
    """The point-spread function alone: (blurred float32 image, photons spread back evenly, radius)."""
    if kind not in ("gauss", "fiber"):
        raise UsageError(f"-psf: expected gauss or fiber, got {kind!r}")
    ffi, lib = native()
    img = np.ascontiguousarray(image, dtype=np.float32)
    spixels, fpixels = img.shape
    out = np.zeros(img.shape, dtype=np.float32)
    lost = ffi.new("double *")
    used = ffi.new("int *")
    err = ffi.new("pb_error *")
    check(lib.pb_response_psf(ffi.cast("const float *", img.ctypes.data), fpixels, spixels, _PSF_CODES[kind],
                              float(fwhm_pixels), int(radius), ffi.cast("float *", out.ctypes.data), lost, used,
                              err), err)
    return out, float(lost[0]), int(used[0])


def noiseless_counts(photons: np.ndarray, gain: float, adc_offset: float, bits: int) -> np.ndarray:
    """The noiseless integer image (noisify's -intfile): photons * gain + adc, cut to [0, 65535] even
    with 32 bits (as the reference cuts it), as uint16 or uint32."""
    adu = photons.astype(np.float64) * gain + adc_offset
    adu = np.clip(adu, 0.0, 65535.0)
    return adu.astype(np.uint32 if bits == 32 else np.uint16)


def photon_scale(image: np.ndarray, scale: float, fluence: float) -> np.ndarray:
    """noisify's photon scale: float32(fluence * r_e^2 * scale * image), in the reference's order."""
    from pybragg.constants import R_E_SQR

    factor = (fluence * R_E_SQR) * scale
    return (factor * np.asarray(image, dtype=np.float64)).astype(np.float32)
