"""``pybragg noisify <noisify flags>``: the reference noisify, a detector's response applied to a
float image of expected photons.

Reads ``-floatfile`` (float32, fast axis first), puts it on the photon scale (``-scale``,
``-fluence``), writes the noiseless SMV image (``-intfile``), its 8-bit PGM (``-pgmfile``) and the
image with the detector's response (``-noisefile``: flicker, calibration error, Poisson counting,
PSF, gain, read-out noise, ADC offset, 16 or 32 bits) through :mod:`pybragg.response`.

Exit codes: 0 success; 1 an unreadable input or unwritable output; 2 a usage error.  Nothing is
written when anything is wrong.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Sequence
from typing import TextIO

import numpy as np

from pybragg.errors import UsageError
from pybragg.io.errors import FormatError


def _header_value(header: str, key: str) -> float | None:
    """The number after the *last* ``KEY=`` in the header, as the reference reads it (None: absent)."""
    at = header.rfind(key)
    if at < 0:
        return None
    rest = header[at + len(key):]
    eq = rest.find("=")
    if eq < 0:
        return 0.0
    text = rest[eq + 1:].split(";")[0].strip()
    try:
        return float(text)
    except ValueError:
        return 0.0


def read_header(path: str) -> tuple[bytes, dict[str, float | None]]:
    """The SMV header of ``path`` (its HEADER_BYTES bytes) and the values noisify takes from it."""
    with open(path, "rb") as fh:
        data = fh.read(65536)
    if not data.startswith(b"{\nHEADER_BYT"):
        raise FormatError(f"-header: {path} does not look like an SMV (ADSC) image")
    text = data[:512].decode("latin-1")
    size = _header_value(text, "HEADER_BYTES")
    if size is None or size < 1 or size != int(size) or int(size) > len(data):
        raise FormatError(f"-header: {path}: bad HEADER_BYTES")
    raw = data[:int(size)]
    text = raw.decode("latin-1")
    keys = ("SIZE1", "SIZE2", "PIXEL_SIZE", "DISTANCE", "WAVELENGTH", "BEAM_CENTER_X", "BEAM_CENTER_Y")
    values = {key: _header_value(text, key) for key in keys}
    if not values["SIZE1"] or not values["SIZE2"] or values["SIZE1"] < 1 or values["SIZE2"] < 1:
        raise FormatError(f"-header: {path}: no SIZE1/SIZE2")
    return raw, values


def _guess_shape(pixels: int) -> tuple[int, int]:
    """The reference's guess of the pixel counts from the file's length: the squarest factors."""
    x = int(math.sqrt(pixels))
    y = pixels // x if x else 0
    while x > 0 and pixels != x * y:
        x -= 1
        y = pixels // x if x else 0
    if pixels != x * y:
        x, y = pixels, 1
    return x, y


def _smv_header(bits: int, geom: dict, xpixels: int, ypixels: int) -> bytes:
    kind = "unsigned_short" if bits == 16 else "long_integer"
    order = "little_endian" if sys.byteorder == "little" else "big_endian"
    text = (f"{{\nHEADER_BYTES=512;\nDIM=2;\nBYTE_ORDER={order};\nTYPE={kind};\n"
            f"SIZE1={xpixels};\nSIZE2={ypixels};\nPIXEL_SIZE={geom['pixel'] * 1000.0:g};\n"
            f"DISTANCE={geom['distance'] * 1000.0:g};\n"
            f"WAVELENGTH={geom['wavelength']:g};\nBEAM_CENTER_X={geom['xbeam'] * 1000.0:g};\n"
            f"BEAM_CENTER_Y={(geom['detsize_y'] - geom['ybeam']) * 1000:g};\n"
            f"PHI={geom['phi']:g};\nOSC_START={geom['phi']:g};\nOSC_RANGE={geom['osc']:g};\n"
            "DETECTOR_SN=000;\nBEAMLINE=fake;\n}\f")
    return text.encode("ascii").ljust(512, b" ")


def _writer(data: bytes):
    from pybragg.io.atomic import write_bytes

    return lambda path: write_bytes(path, data)


def _pgm(counts16: np.ndarray) -> bytes:
    ypixels, xpixels = counts16.shape
    grey = np.minimum(counts16, 255).astype(np.uint8)
    return f"P5\n{xpixels} {ypixels}\n# pixels scaled by 1\n255\n".encode("ascii") + grey.tobytes()


def _help(out: TextIO) -> None:
    from pybragg.flags.noisify import NOISIFY_FLAGS

    out.write("usage: pybragg noisify -floatfile FILE [flags]\n\n"
              "A detector's response (the reference noisify) applied to a float image of expected photons.\n\n")
    for flag in NOISIFY_FLAGS:
        names = flag.usage() + ("" if not flag.aliases else "  (also " + ", ".join(flag.aliases) + ")")
        unit = f" [{flag.unit.label}]" if flag.unit.label else ""
        out.write(f"  {names}\n      {flag.help}{unit}; default {flag.default or 'none'}\n")


def run_noisify(argv: Sequence[str], out: TextIO, err: TextIO) -> int:
    from pybragg.flags.noisify import parse_noisify
    from pybragg.io.atomic import check_distinct, commit_files
    from pybragg.response import ResponseConfig, noiseless_counts, photon_scale, psf, respond
    from pybragg.writers import check_writable

    inv = parse_noisify(argv)
    if inv.show_help:
        _help(out)
        return 0
    r, geom = inv.response, dict(inv.geometry)
    floatfile = str(inv.floatfile)
    header_raw = None
    xpixels, ypixels = int(geom["xpixels"]), int(geom["ypixels"])
    size = os.path.getsize(floatfile)
    if size % 4:
        raise FormatError(f"-floatfile: {floatfile}: {size} bytes is not a whole number of float32 values")
    pixels = size // 4
    if inv.headerfile:
        header_raw, values = read_header(str(inv.headerfile))
        xpixels, ypixels = int(values["SIZE1"]), int(values["SIZE2"])
        if values["PIXEL_SIZE"] is not None:
            geom["pixel"] = values["PIXEL_SIZE"] / 1000.0
        if values["DISTANCE"] is not None:
            geom["distance"] = values["DISTANCE"] / 1000.0
        geom["detsize_y"] = geom["pixel"] * ypixels
        if values["BEAM_CENTER_X"] is not None:
            geom["xbeam"] = values["BEAM_CENTER_X"] / 1000.0
        if values["BEAM_CENTER_Y"] is not None:
            geom["ybeam"] = geom["detsize_y"] - values["BEAM_CENTER_Y"] / 1000.0
        if values["WAVELENGTH"] is not None:
            geom["wavelength"] = values["WAVELENGTH"]
    if not xpixels and not ypixels:
        xpixels, ypixels = _guess_shape(pixels)
    elif xpixels and not ypixels:
        ypixels = pixels // xpixels
    elif ypixels and not xpixels:
        xpixels = pixels // ypixels
    if xpixels * ypixels != pixels or pixels == 0:
        raise FormatError(f"-floatfile: {floatfile} holds {pixels} float32 values, not {xpixels} x {ypixels} "
                          "pixels")
    geom["detsize_x"], geom["detsize_y"] = geom["pixel"] * xpixels, geom["pixel"] * ypixels
    if geom["xbeam"] is None:
        geom["xbeam"] = geom["detsize_x"] / 2.0
    if geom["ybeam"] is None:
        geom["ybeam"] = geom["detsize_y"] / 2.0

    bits = int(r["bits"])
    calibration, flicker, readout = float(r["calibration"]), float(r["flicker"]), float(r["readout_noise"])
    if not inv.write_noise:
        calibration = flicker = readout = 0.0
    config = ResponseConfig(
        flicker=flicker, calibration=calibration, calib_seed=int(r["calib_seed"]), gain=float(r["gain"]),
        adc_offset=float(r["adc_offset"]), readout_noise=readout, psf=r["psf"], psf_fwhm=float(r["psf_fwhm"]),
        psf_radius=int(r["psf_radius"]), pixel_size=float(geom["pixel"]), bits=bits)

    wanted = [("-intfile", str(inv.outputs["intfile"]))]
    if inv.write_pgm:
        wanted.append(("-pgmfile", str(inv.outputs["pgmfile"])))
    if inv.write_noise:
        wanted.append(("-noisefile", str(inv.outputs["noisefile"])))
    inputs = [("-floatfile", floatfile)] + ([("-header", str(inv.headerfile))] if inv.headerfile else [])
    check_distinct(wanted, inputs)
    paths = [path for _, path in wanted]
    check_writable(paths)

    raw = np.fromfile(floatfile, dtype=np.float32)
    image = raw.reshape(ypixels, xpixels)
    photons = photon_scale(image, float(r["scale"]), float(r["fluence"]))
    if not inv.write_noise and config.psf_active:
        photons, _, _ = psf(photons, str(config.psf), config.psf_fwhm_pixels, config.psf_radius)
    header = header_raw if header_raw is not None else _smv_header(bits, geom, xpixels, ypixels)
    noiseless = noiseless_counts(photons, config.gain, config.adc_offset, bits)
    noiseless16 = noiseless if bits == 16 else noiseless_counts(photons, config.gain, config.adc_offset, 16)

    out.write(f"noisify: {xpixels}x{ypixels} pixels of {floatfile}, seed {-int(r['seed'])}, "
              f"calibration seed {-int(r['calib_seed'])}\n")
    out.write(f"maximum value in input file: {float(image.max()):g} ({float(photons.max()):g} on photon scale)\n")
    jobs = [(paths[0], _writer(header + noiseless.tobytes()))]
    if inv.write_pgm:
        pgm = _pgm(noiseless16)
        jobs.append((paths[1], _writer(pgm)))
    if inv.write_noise:
        res = respond(photons, config, int(r["seed"]))
        s = res.stats
        if s.psf_applied:
            out.write(f"{s.photons_before_psf:.0f} photons on noise image before PSF\n")
            out.write(f"adding back {s.lost_photons:g} lost photons (psf_radius {s.psf_radius})\n")
        out.write(f"{s.photons:.0f} photons on noise image ({s.overloads} overloads)\n")
        noisy = res.counts
        jobs.append((paths[-1], _writer(header + noisy.tobytes())))
    commit_files(jobs)
    out.writelines(f"wrote {path}\n" for path in paths)
    return 0


def main(command: str, argv: Sequence[str], out: TextIO, err: TextIO) -> int:
    """``pybragg noisify``: exit 0, 1 (file) or 2 (usage); UsageError/FormatError reach the caller."""
    try:
        return run_noisify(argv, out, err)
    except (UsageError, FormatError):
        raise
    except OSError as exc:
        err.write(f"pybragg {command}: error: {exc}\n")
        return 1
