"""``pybragg nonbragg <nonBragg flags>``: nonBragg's amorphous-background images.

nonBragg's command line (flag names matched exactly, see :mod:`pybragg.flags.nonbragg`) with its
units, defaults and outputs: ``-floatfile`` (float32), ``-intfile`` (SMV, brightest pixel at 55000
unless ``-scale``), ``-pgmfile`` (8-bit PGM, a correct one: nonBragg writes twice as many bytes as
pixels), ``-noisefile`` (Poisson SMV by nanoBragg's noise rule, ``-seed``).  ``--backend c|torch``.
Exit codes: 0 success, 1 unreadable table or unwritable output, 2 usage error, 3 engine failure.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TextIO

from pybragg.errors import EngineError, PybraggError

RAD2DEG = 180.0 / math.pi


def _help(name: str) -> str:
    from pybragg.flags.nonbragg import FLAGS

    lines = [f"usage: pybragg {name} -stol FILE [nonBragg flags]", "",
             "nonBragg's amorphous background (water, air, ...) from a table of sin(theta)/lambda and F.", ""]
    for flag in FLAGS:
        names = ", ".join(flag.names)
        meta = " ".join(flag.metavars)
        unit = f" [{flag.unit.label}]" if flag.unit.label else ""
        default = f" (default {flag.default})" if flag.default else ""
        lines.append(f"  {names} {meta}".rstrip() + f": {flag.help}{unit}{default}")
    return "\n".join(lines) + "\n"


def header_fields(result, detsize_y: float) -> list[tuple[str, str]]:
    """The SMV header fields nonBragg writes (after SIZE1/SIZE2)."""
    from pybragg.io.cformat import c_g

    g = result.geometry
    px, mm = g.pixel_size, 1000.0
    return [
        ("PIXEL_SIZE", c_g(px * mm)),
        ("DISTANCE", c_g(g.distance * mm)),
        ("WAVELENGTH", c_g(g.lambda0 * 1e10)),
        ("BEAM_CENTER_X", c_g(g.Fbeam * mm)),
        ("BEAM_CENTER_Y", c_g((detsize_y - g.Sbeam) * mm)),
        ("ORGX", c_g(g.Fclose / px)),
        ("ORGY", c_g(g.Sclose / px)),
        ("CLOSE_DISTANCE", c_g(g.close_distance * mm)),
        ("PHI", c_g(g.phi0 * RAD2DEG)),
        ("OSC_START", c_g(g.phi0 * RAD2DEG)),
        ("OSC_RANGE", c_g((g.osc if g.phisteps > 1 or g.osc else 0.0) * RAD2DEG)),
        ("TWOTHETA", c_g(g.twotheta * RAD2DEG)),
        ("DETECTOR_SN", "000"),
        ("BEAMLINE", "fake"),
    ]


def reference_rmsd(image, roi: tuple[int, int, int, int], mean: float) -> float:
    """nonBragg's rms deviation, which its PGM scale uses: its loop reads, for each pixel of the ROI,
    the pixel after it in file order (0 after the last one)."""
    import numpy as np

    inside = np.zeros(image.shape, dtype=bool)
    xmin, xmax, ymin, ymax = roi
    inside[max(ymin, 0):ymax + 1, max(xmin, 0):xmax + 1] = True
    flat = np.append(image.ravel().astype(np.float64), 0.0)
    idx = np.flatnonzero(inside.ravel())
    n = max(idx.size, 2)
    dev = flat[idx + 1] - mean
    return math.sqrt(float(np.dot(dev, dev)) / (n - 1))


def run(args: Sequence[str], out: TextIO) -> int:
    """Parse, render and write; raises PybraggError subclasses for the caller to report."""
    from pybragg import background
    from pybragg.flags.nonbragg import parse, resolve
    from pybragg.inputs import Inputs
    from pybragg.io.atomic import check_distinct, commit_files, write_bytes
    from pybragg.io.floatimage import float_image_bytes
    from pybragg.io.pgm import pgm_bytes
    from pybragg.io.smv import smv_bytes
    from pybragg.io.sources import read_source_file
    from pybragg.io.stol import read_stol, resolve_path
    from pybragg.noise import noise_image
    from pybragg.plan import Plan
    from pybragg.writers import check_writable, float32_image, int_image, pgm_image

    inv = parse(args)
    if inv.show_help:
        out.write(_help("nonbragg"))
        return 0
    config, sample, header = resolve(inv)
    table = read_stol(inv.stol_path, inv.stol_scale)
    sources = read_source_file(inv.source_path) if inv.source_path else None
    inputs = Inputs(stol=table, sources=sources)
    wanted = [("-floatfile", inv.floatfile), ("-intfile", inv.intfile)] + (
        [("-pgmfile", inv.pgmfile)] if inv.write_pgm else []) + ([("-noisefile", inv.noisefile)] if inv.write_noise else [])
    stol_flag = next((a for a in reversed(args) if a in ("-stol", "-4stol", "-Q")), "-stol")
    check_distinct(wanted, [(stol_flag, resolve_path(inv.stol_path)), ("-sourcefile", inv.source_path)])
    paths = [path for _, path in wanted]
    try:
        check_writable(paths)
    except OSError as exc:
        raise PybraggError(str(exc)) from exc
    try:
        plan = Plan(config, inputs)
        result = background.render(config, inputs, sample, backend=inv.backend, dtype=inv.dtype,
                                   device=inv.device, plan=plan)
    except (EngineError, ValueError) as exc:
        raise EngineError(str(exc)) from exc
    info = result.extras["sample"]
    g = result.geometry
    out.write("nonBragg amorphous material diffraction simulator (pybragg)\n")
    out.write(f"reading {inv.stol_path}: {table.stol.size} points\n")
    for what, key in (("high", "width_clipped"), ("wide", "height_clipped")):
        if info[key]:
            out.write(f"WARNING: clipping sample ({what}) with beam ({g.beamsize:g} m)\n")
    out.write(f"  sample is {info['thickness']:g} m thick x {info['width']:g} m high x {info['height']:g} m wide, "
              f"{info['density'] / 1e6:g} g/cm^3 and {sample.molecular_weight:g} g/mol "
              f"({info['molecules']:g} molecules)\n")
    out.write(f"  incident fluence: {g.fluence:g} photons/m^2\n")
    out.write(f"  {g.sources} sources, {g.oversample} pixel oversample steps\n")
    fields = header_fields(result, header["detsize_y"])
    image = float32_image(result)
    counts, int_scale = int_image(result, inv.intfile_scale, inv.adc_offset)
    jobs = [(inv.floatfile, lambda p: write_bytes(p, float_image_bytes(image))),
            (inv.intfile, lambda p: write_bytes(p, smv_bytes(counts, fields)))]
    st = result.stats
    out.write(f"max_I = {st.max_I:g}\nmean= {st.mean:g} rms= {st.rms:g} rmsd= {st.rmsd:g}\n")
    out.write(f"intfile_scale = {int_scale:g}\n")
    if inv.write_pgm:
        pgm_scale = inv.pgm_scale
        if pgm_scale is None or pgm_scale <= 0.0:
            rmsd = reference_rmsd(image, tuple(g.roi), st.mean)
            pgm_scale = 250.0 / (5.0 * rmsd) if rmsd > 0.0 else int_scale
        grey, pgm_scale = pgm_image(result, pgm_scale, int_scale)
        out.write(f"pgm_scale = {pgm_scale:g}\n")
        jobs.append((inv.pgmfile, lambda p: write_bytes(p, pgm_bytes(grey, pgm_scale))))
    if inv.write_noise:
        noisy, photons, overloads = noise_image(image, tuple(g.roi), inv.noise_seed, inv.adc_offset)
        out.write(f"{photons:.0f} photons on noise image ({overloads} overloads)\n")
        jobs.append((inv.noisefile, lambda p: write_bytes(p, smv_bytes(noisy, fields))))
    try:
        commit_files(jobs)
    except OSError as exc:
        raise PybraggError(str(exc)) from exc
    out.writelines(f"wrote {path}\n" for path, _ in jobs)
    return 0


def main(name: str, args: Sequence[str], out: TextIO, err: TextIO) -> int:
    """``pybragg nonbragg``: 0 on success; errors are one line on ``err``."""
    from pybragg.errors import UsageError

    try:
        return run(args, out)
    except UsageError as exc:
        err.write(f"pybragg {name}: error: {exc}\n")
        return 2
    except PybraggError as exc:
        err.write(f"pybragg {name}: error: {exc}\n")
        return exc.exit_code
