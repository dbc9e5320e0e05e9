"""Writers of a result: float image, SMV images (scaled and noisy), PGM, CBF, NeXus, DIALS
experiment list and PNG preview, all of them written completely or none of them."""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from pybragg.errors import UsageError
from pybragg.io.atomic import atomic_write, commit_files, final_target, write_buffers
from pybragg.io.cformat import c_g
from pybragg.io.floatimage import float_image_buffers
from pybragg.io.pgm import pgm_buffers
from pybragg.io.smv import smv_buffers
from pybragg.result import Result

RAD2DEG = 180.0 / math.pi


INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1  # the range of the CBF and NeXus counts

def smv_fields(result: Result) -> list[tuple[str, str]]:
    """Header fields (after SIZE1/SIZE2) of the SMV images, as the reference writes them."""
    g = result.geometry
    px = g.pixel_size
    mm = 1000.0
    return [
        ("PIXEL_SIZE", c_g(px * mm)),
        ("DISTANCE", c_g(g.distance * mm)),
        ("WAVELENGTH", c_g(g.lambda0 * 1e10)),
        ("BEAM_CENTER_X", c_g(g.Xbeam * mm)),
        ("BEAM_CENTER_Y", c_g(g.Ybeam * mm)),
        ("ADXV_CENTER_X", c_g(g.Fbeam * mm)),
        ("ADXV_CENTER_Y", c_g((g.detsize_s - g.Sbeam) * mm)),
        ("MOSFLM_CENTER_X", c_g((g.Sbeam - 0.5 * px) * mm)),
        ("MOSFLM_CENTER_Y", c_g((g.Fbeam - 0.5 * px) * mm)),
        ("DENZO_X_BEAM", c_g(g.Sbeam * mm)),
        ("DENZO_Y_BEAM", c_g(g.Fbeam * mm)),
        ("DIALS_ORIGIN", ",".join(c_g(v) for v in g.dials_origin)),
        ("XDS_ORGX", c_g(g.ORGX)),
        ("XDS_ORGY", c_g(g.ORGY)),
        ("CLOSE_DISTANCE", c_g(g.close_distance * mm)),
        ("PHI", c_g(g.phi0 * RAD2DEG)),
        ("OSC_START", c_g(g.phi0 * RAD2DEG)),
        ("OSC_RANGE", c_g(g.osc * RAD2DEG)),
        ("TWOTHETA", c_g(g.twotheta * RAD2DEG)),
        ("DETECTOR_SN", "000"),
        ("BEAMLINE", "fake"),
    ]


def roi_mask(result: Result) -> np.ndarray:
    """Boolean (slow, fast) array: True inside the region of interest."""
    mask = np.zeros((result.geometry.spixels, result.geometry.fpixels), dtype=bool)
    mask[roi_slices(result)] = True
    return mask


def roi_slices(result: Result) -> tuple[slice, slice]:
    """(slow, fast) slices of the region of interest (its bounds are inclusive)."""
    xmin, xmax, ymin, ymax = result.geometry.roi
    return slice(max(ymin, 0), ymax + 1), slice(max(xmin, 0), xmax + 1)


def float32_image(result: Result) -> np.ndarray:
    """The image as the float32 values the reference stores."""
    return np.ascontiguousarray(result.image, dtype=np.float32)


def _zero_outside_roi(image: np.ndarray, result: Result) -> np.ndarray:
    """``image`` (a new array of the caller's) with 0 outside the region of interest and in the gaps."""
    rows, cols = roi_slices(result)
    if rows.indices(image.shape[0]) == (0, image.shape[0], 1) and cols.indices(image.shape[1]) == (0, image.shape[1], 1):
        return zero_uncovered(image, result)  # the region is the whole image: nothing to clear
    out = np.zeros_like(image)
    out[rows, cols] = image[rows, cols]
    return zero_uncovered(out, result)


def uncovered(result: Result) -> np.ndarray | None:
    """Boolean (slow, fast) array of the data-array pixels no panel covers (None when the panels
    cover every pixel, as a flag-defined detector does)."""
    g = result.geometry
    panels = getattr(g, "panels", None) or ()
    shape = result.image.shape
    if len(panels) < 2:
        return None
    out = np.ones(shape, dtype=bool)
    for p in panels:
        out[p.data_slow:p.data_slow + p.spixels, p.data_fast:p.data_fast + p.fpixels] = False
    return out if out.any() else None


def zero_uncovered(image: np.ndarray, result: Result) -> np.ndarray:
    """``image`` with the pixels no panel covers set to 0 (the SMV images' gaps hold no ADC offset)."""
    gaps = uncovered(result)
    if gaps is not None:
        image[gaps] = 0
    return image


def _scaled_in_blocks(image: np.ndarray, dtype: type, scale: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """``scale(float64 copy of rows)`` cast to ``dtype``, a cache-sized block of rows at a time."""
    out = np.empty(image.shape, dtype=dtype)
    block = max(1, (1 << 18) // max(image.shape[1], 1))  # rows per block: its float64 values stay in cache
    for start in range(0, image.shape[0], block):
        out[start:start + block] = scale(image[start:start + block].astype(np.float64))
    return out


def int_scale(result: Result, scale: float | None) -> float:
    """The scale of the integer image: ``scale`` when positive, else the brightest pixel at 55000."""
    if scale is None or scale <= 0.0:
        return 55000.0 / result.stats.max_I if result.stats.max_I > 0.0 else 1.0
    return scale


def int_image(result: Result, scale: float | None, adc_offset: float) -> tuple[np.ndarray, float]:
    """Noiseless integer image and the scale used (default: brightest pixel at 55000).

    Like the reference: ``floor(float32(clip(I * scale + adc, 0, 65535) + 0.5))``
    computed in double precision, 0 outside the ROI.
    """
    scale = int_scale(result, scale)

    def to_counts(value: np.ndarray) -> np.ndarray:
        value *= scale
        value += adc_offset
        np.clip(value, 0.0, 65535.0, out=value)
        value += 0.5
        rounded = value.astype(np.float32)
        return np.floor(rounded, out=rounded)

    counts = _scaled_in_blocks(float32_image(result), np.uint16, to_counts)
    return _zero_outside_roi(counts, result), scale


def pgm_image(result: Result, scale: float | None, int_scale: float) -> tuple[np.ndarray, float]:
    """8-bit image and the scale used (default: 5 rms deviations at 250)."""
    if scale is None or scale <= 0.0:
        scale = 250.0 / (5.0 * result.stats.rmsd) if result.stats.rmsd > 0.0 else int_scale

    def to_grey(value: np.ndarray) -> np.ndarray:
        value *= scale
        return np.minimum(value, 255.0, out=value)

    grey = _scaled_in_blocks(float32_image(result), np.uint8, to_grey)
    return _zero_outside_roi(grey, result), scale


class _InThread:
    """``work()`` run in a thread started now; :meth:`result` waits for it and returns its value
    (or raises its exception)."""

    def __init__(self, work: Callable[[], Any], name: str = "pybragg-noise") -> None:
        self._out: list[Any] = []
        self._error: list[BaseException] = []

        def run() -> None:
            try:
                self._out.append(work())
            except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread
                self._error.append(exc)

        self._thread = threading.Thread(target=run, name=name, daemon=True)
        self._thread.start()

    def result(self) -> Any:
        while self._thread.is_alive():
            self._thread.join(0.1)  # short waits: a signal's handler runs in between
        if self._error:
            raise self._error[0]
        return self._out[0]


@dataclass
class Written:
    """What :func:`write_outputs` wrote and the numbers it derived."""

    files: list[str]
    int_scale: float
    pgm_scale: float | None
    photons: float | None
    overloads: int | None


def check_writable(paths: list[str]) -> None:
    """Raise OSError naming the first path that cannot be written (before anything is rendered).

    A symlink is judged by its target (the file that gets written); an existing device or FIFO
    must be writable itself, any other output's folder must exist and be writable, and the name
    must fit the folder's file system.
    """
    for path in paths:
        target = final_target(path)
        if os.path.isdir(target):
            raise OSError(f"{path}: is a folder")
        if os.path.exists(target) and not os.path.isfile(target):  # a device, FIFO or socket: written into
            if not os.access(target, os.W_OK):
                raise OSError(f"{path}: is not writable")
            continue
        folder = os.path.dirname(target)
        if os.path.exists(folder) and not os.path.isdir(folder):
            raise OSError(f"{path}: {folder} is not a folder")
        if not os.path.isdir(folder):
            raise OSError(f"{path}: folder {folder} does not exist")
        if not os.access(folder, os.W_OK):
            raise OSError(f"{path}: folder {folder} is not writable")
        try:
            longest = os.pathconf(folder, "PC_NAME_MAX")
        except (OSError, ValueError):
            longest = 255
        if longest > 0 and len(os.fsencode(os.path.basename(target))) > longest:
            raise OSError(f"{path}: file name too long (at most {longest} bytes in {folder})")


def requested_outputs(outputs) -> list[tuple[str, str]]:
    """``(flag, path)`` of every file ``outputs`` asks for, in the order they are written."""
    wanted = [(flag, p) for flag, p in (("-floatfile", outputs.floatfile), ("-intfile", outputs.intfile)) if p]
    if outputs.write_pgm and outputs.pgmfile:
        wanted.append(("-pgmfile", outputs.pgmfile))
    if outputs.write_noise and outputs.noisefile:
        wanted.append(("-noisefile", outputs.noisefile))
    flags = ("-cbffile", "-nexusfile", "-exptfile", "-pngfile", "-geomfile")
    wanted += [(flag, p) for flag, p in zip(flags, _extra_paths(outputs), strict=True) if p]
    return wanted


def requested_paths(outputs) -> list[str]:
    """Every file ``outputs`` asks for, in the order they are written."""
    return [path for _, path in requested_outputs(outputs)]


def _extra_paths(outputs) -> tuple[str | None, ...]:
    return tuple(getattr(outputs, name, None) for name in ("cbffile", "nexusfile", "exptfile", "pngfile", "geomfile"))


def response_config(result: Result, outputs):
    """The detector response the flags ask for (:class:`~pybragg.response.ResponseConfig`), with the
    detector's pixel size; its defaults make the plain Poisson noise image."""
    from pybragg.response import ResponseConfig

    given = dict(getattr(outputs, "response", None) or {})
    if "psf_radius" in given:
        given["psf_radius"] = int(given["psf_radius"])  # type: ignore[call-overload]
    pixel = getattr(result.geometry, "pixel_size", None) or 1e-4
    return ResponseConfig(adc_offset=outputs.adc_offset, pixel_size=float(pixel), **given)  # type: ignore[arg-type]


def write_smv32(path: str, data: np.ndarray, fields: list[tuple[str, str]]) -> None:
    """Write a (slow, fast) uint32 image as SMV (TYPE=long_integer), as noisify's -bits 32 does."""
    atomic_write(path, smv32_bytes(data, fields))


def smv32_bytes(data: np.ndarray, fields: list[tuple[str, str]]) -> bytes:
    """The bytes of :func:`write_smv32`."""
    return b"".join(smv32_buffers(data, fields))


def smv32_buffers(data: np.ndarray, fields: list[tuple[str, str]]) -> list[bytes | np.ndarray]:
    """:func:`smv32_bytes` as the header and the little-endian uint32 pixels, for
    :func:`pybragg.io.atomic.write_buffers`."""
    from pybragg.io.smv import format_smv_header

    header = format_smv_header(fields, shape=data.shape)
    longer = header.replace(b"TYPE=unsigned_short;", b"TYPE=long_integer;", 1)
    longer += b" " * (len(header) - len(longer))
    return [longer, np.ascontiguousarray(data, dtype="<u4")]


def detector_counts(result: Result, outputs) -> np.ndarray:
    """The counts the CBF and NeXus files hold: the noise image's photons as int32 (the same
    draws, from the same stream and seed, as ``-noisefile``, but before the ADC offset and without
    the 16-bit cap), or with -nonoise the float image rounded."""
    from dataclasses import replace

    from pybragg.response import ResponseConfig, respond

    image = float32_image(result)
    if not outputs.write_noise:
        value = np.rint(np.asarray(image, dtype=np.float64))
        return np.clip(value, INT32_MIN, INT32_MAX).astype(np.int32)
    # the detector response of the flags (at its defaults the plain Poisson noise image), 32 bits
    base = response_config(result, outputs) if getattr(outputs, "response", None) else ResponseConfig()
    config = replace(base, adc_offset=0.0, bits=32)
    counts = respond(image, config, outputs.noise_seed, tuple(result.geometry.roi)).counts
    return np.minimum(counts, INT32_MAX).astype(np.int32)


def _pixel_mask(result: Result, setup) -> np.ndarray:
    from pybragg.io.nexus import pixel_mask_bits

    shape = (setup.data_spixels, setup.data_fpixels)
    covered = np.zeros(shape, dtype=bool)
    for panel in setup.panels:
        covered[panel.data_slow:panel.data_slow + panel.spixels, panel.data_fast:panel.data_fast + panel.fpixels] = True
    rendered = np.zeros(shape, dtype=bool)
    rendered[roi_slices(result)] = True
    return pixel_mask_bits(shape, covered, rendered)


def _extra_jobs(result: Result, outputs, space_group: str | None) -> list[tuple[str, Callable[[str], None]]]:
    """Jobs of the CBF, NeXus, experiment-list and PNG outputs."""
    cbffile, nexusfile, exptfile, pngfile, geomfile = _extra_paths(outputs)
    jobs: list[tuple[str, Callable[[str], None]]] = []
    if not (cbffile or nexusfile or exptfile or pngfile or geomfile):
        return jobs
    from pybragg.io.frames import setup_from_result

    setup = setup_from_result(result)
    nopolar = bool(result.geometry.nopolar)
    counts = detector_counts(result, outputs) if (cbffile or nexusfile) else None
    if cbffile:
        from pybragg.io.cbf import write_cbf

        imgcif = setup.in_imgcif()
        jobs.append((cbffile, lambda path: write_cbf(path, counts, imgcif, nopolar=nopolar)))
    if nexusfile:
        from pybragg.io.nexus import write_nexus

        mcstas = setup.in_mcstas()
        data = counts if outputs.write_noise else float32_image(result)
        mask = _pixel_mask(result, setup)
        jobs.append((nexusfile, lambda path: write_nexus(
            path, data, mcstas, compression=outputs.nexus_compression, sources=result.sources,
            pixel_mask=mask, space_group=space_group)))
    if exptfile:
        from pybragg.io.expt import write_expt

        image = nexusfile or cbffile or (outputs.noisefile if outputs.write_noise else None) or outputs.intfile
        imgcif = setup.in_imgcif()
        folder = os.path.dirname(os.path.abspath(exptfile))  # the list's, not its staged file's
        jobs.append((exptfile, lambda path: write_expt(path, imgcif, image=image, relative_to=folder,
                                                       space_group=space_group, nopolar=nopolar)))
    if pngfile:
        from pybragg.io.png import png_pixels, write_png

        preview = png_pixels(float32_image(result), outputs.png_scale, outputs.png_cmap, outputs.png_max)
        text = {"Software": "pybragg", "Scale": outputs.png_scale, "Colormap": outputs.png_cmap}
        jobs.append((pngfile, lambda path: write_png(path, preview, text)))
    if geomfile:
        from pybragg.io.crystfel import format_geometry

        text_geom = format_geometry(geometry_file(result, outputs), comment=_geom_comment(result, outputs))
        jobs.append((geomfile, lambda path: _write_text(path, text_geom)))
    return jobs


def _write_text(path: str, text: str) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)


def _geom_comment(result: Result, outputs) -> str:
    from pybragg import __version__

    n = len(getattr(result.geometry, "panels", None) or ()) or 1
    lines = [f"CrystFEL geometry written by pybragg {__version__}: {n} panel{'s' if n != 1 else ''} as rendered",
             "(after the detector rotations), in CrystFEL's frame: +z along the beam, +y to the zenith"]
    if getattr(outputs, "nexusfile", None):
        lines.append(f"frames: {os.path.basename(outputs.nexusfile)} /entry/data/data (frame, ss, fs)")
    else:
        lines.append("data array: the float and SMV images (ss, fs); adu_per_photon 1 for the photons of the "
                     "noise image, CBF and NeXus")
    return "\n".join(lines)


def geometry_file(result: Result, outputs=None):
    """The CrystFEL geometry (:class:`~pybragg.io.crystfel.CrystfelGeometry`) of the detector a
    render used: every panel where the plan placed it, in CrystFEL's frame (the McStas frame of
    :mod:`pybragg.io.frames`, whatever the convention), the wavelength, ``adu_per_photon = 1``;
    a ``-geom`` file's bad regions, groups, edge masks, ``no_index`` and ADU scales are carried
    over (``outputs.geom_template``); with ``-nexusfile`` the frames' location and layout."""
    from pybragg.io.crystfel import LabPanel, crystfel_to_lab, geometry_from_lab
    from pybragg.io.frames import setup_from_result

    setup = setup_from_result(result).in_mcstas()
    template = getattr(outputs, "geom_template", None)
    extras = list(getattr(template, "panels", None) or ())
    # the configuration's names (the plan keeps 31 bytes of each)
    configured = [c.name for c in getattr(result.config.detector, "panels", ()) or ()]
    names = configured if len(configured) == len(setup.panels) else [p.name for p in setup.panels]
    panels = []
    for i, p in enumerate(setup.panels):
        extra = extras[i] if i < len(extras) else None
        panels.append(LabPanel(
            name=names[i], fpixels=p.fpixels, spixels=p.spixels,
            pixel_size=p.pixel_size, origin=crystfel_to_lab(p.origin), fdet=crystfel_to_lab(p.fast),
            sdet=crystfel_to_lab(p.slow), data_fast=p.data_fast, data_slow=p.data_slow,
            mask_edge=extra.mask_edge if extra is not None else 0,
            ignored=extra.ignored if extra is not None else False,
            adu_per_photon=extra.adu_per_photon if extra is not None else None,
            max_adu=extra.max_adu if extra is not None else None,
        ))
    nexus = bool(getattr(outputs, "nexusfile", None))
    geom = geometry_from_lab(panels, clen=getattr(template, "clen", None), wavelength=setup.wavelength,
                             adu_per_photon=1.0, data="/entry/data/data" if nexus else None, frames_dim=nexus)
    source = getattr(template, "geometry", None)
    if source is not None:
        geom.bad_regions = [type(r)(r.name, dict(r.values)) for r in source.bad_regions]
        geom.groups = dict(source.groups)
    return geom


def check_formats(result: Result, outputs) -> None:
    """Raise UsageError for an output the render cannot be written as (before anything is written)."""
    cbffile = getattr(outputs, "cbffile", None)
    if cbffile:
        n = len(getattr(result.geometry, "panels", None) or ()) or 1
        if n > 1:
            raise UsageError(f"-cbffile {cbffile}: a CBF holds one panel and this detector has {n} "
                             "(write -nexusfile instead)")


def write_outputs(result: Result, outputs, space_group: str | None = None) -> Written:
    """Write every output that ``outputs`` asks for: all of them completely, or none
    (:func:`pybragg.io.atomic.commit_files`: staged, then moved in place together, put back if a
    move fails or a signal comes).

    ``space_group``: the crystal's space group (from an MTZ, mmCIF or model file), for the
    experiment list and the NeXus file.
    """
    from pybragg.noise import noise_image

    jobs: list[tuple[str, Callable[[str], None]]] = []
    fields = smv_fields(result)
    image = float32_image(result)
    if outputs.write_noise and outputs.noisefile:
        # the noise image's serial random stream runs in C without the GIL, beside the other images
        response = response_config(result, outputs)
        noise = _InThread(lambda: noise_image(
            image, tuple(result.geometry.roi), outputs.noise_seed, outputs.adc_offset, response
        ))
    if outputs.floatfile:
        jobs.append((outputs.floatfile, lambda path: write_buffers(path, float_image_buffers(image))))
    scale = int_scale(result, outputs.intfile_scale)
    if outputs.intfile:
        # scaled in a thread (NumPy without the GIL) while the float image is written
        counts = _InThread(lambda: int_image(result, scale, outputs.adc_offset)[0], name="pybragg-int-image")
        jobs.append((outputs.intfile, lambda path: write_buffers(path, smv_buffers(counts.result(), fields))))
    pgm_scale = None
    if outputs.write_pgm and outputs.pgmfile:
        grey, pgm_scale = pgm_image(result, outputs.pgm_scale, scale)
        jobs.append((outputs.pgmfile, lambda path: write_buffers(path, pgm_buffers(grey, pgm_scale))))
    photons = overloads = None
    if outputs.write_noise and outputs.noisefile:
        noisy, photons, overloads = noise.result()
        noisy = zero_uncovered(noisy, result)
        if noisy.dtype == np.uint32:
            jobs.append((outputs.noisefile, lambda path: write_buffers(path, smv32_buffers(noisy, fields))))
        else:
            jobs.append((outputs.noisefile, lambda path: write_buffers(path, smv_buffers(noisy, fields))))
    check_formats(result, outputs)
    jobs += _extra_jobs(result, outputs, space_group)
    commit_files(jobs)
    return Written([path for path, _ in jobs], scale, pgm_scale, photons, overloads)
