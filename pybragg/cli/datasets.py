"""``pybragg series`` and ``pybragg stills``: datasets rendered on Dask, resumable.

``pybragg series --frames N --out FILE.nxs|DIR [--format nexus|cbf|smv] [options] -- <nanoBragg flags>``
renders a rotation series: frame i is the single render of the flags with
``-phi START+i*OSC -osc OSC -seed SEED+i``.

``pybragg stills --shots N --seed S --out FILE.h5|DIR [variations] [options] -- <nanoBragg flags>``
renders still shots of random orientation with per-shot variations, all drawn from (S, i), and
stores each shot's truth with the images.

``pybragg stills --reproduce I --out FILE.h5|DIR [--into FOLDER]`` (also ``series``) prints the
flags of one ``pybragg`` run that renders frame I exactly.

Exit codes: 0 success; 1 failure (unreadable input, unwritable output, unreachable scheduler, an
engine error on a worker); 2 usage error (bad option, an existing output without --resume, a
resume against a different command); 130 interrupted (the frames written so far are kept).
"""

from __future__ import annotations

import argparse
import os
import shlex
from collections.abc import Sequence
from typing import TextIO

from pybragg.cli.options import HelpShown, Parser
from pybragg.errors import UsageError


def _split(argv: Sequence[str], command: str) -> tuple[list[str], list[str]]:
    args = list(argv)
    if "--" not in args:
        if any(a in ("-h", "--help", "--reproduce") for a in args):
            return args, []
        count = "--frames 90" if command == "series" else "--shots 1000 --seed 1"
        raise UsageError(f"put the nanoBragg flags after '--', e.g. pybragg {command} {count} --out OUT "
                         "-- -cell 100 100 100 90 90 90 ...")
    i = args.index("--")
    return args[:i], args[i + 1:]


def _parser(command: str) -> Parser:
    series = command == "series"
    p = Parser(prog=f"pybragg {command}",
                description=("A rotation series: frame i is the render at -phi START+i*OSC with -seed SEED+i."
                             if series else
                             "Still shots of random orientation and per-shot variations drawn from (S, i)."),
                epilog="nanoBragg flags follow '--'. See docs/datasets.md.")
    if series:
        p.add_argument("--frames", type=int, metavar="N", help="number of frames")
    else:
        p.add_argument("--shots", type=int, metavar="N", help="number of shots")
        p.add_argument("--seed", type=int, metavar="S", help="seed S: shot i is drawn from (S, i)")
    p.add_argument("--out", required=True, help="FILE.nxs/FILE.h5 (one NXmx file) or a folder of frame files")
    p.add_argument("--format", choices=("nexus", "cbf", "smv"), default=None,
                   help="nexus for an HDF5 name; cbf (default) or smv for a folder")
    p.add_argument("--name", default=None, help="frame file prefix in a folder (default: the folder's name)")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--workers", type=int, default=None, metavar="K",
                       help="start a local Dask cluster of K worker processes (default: all cores; one per GPU)")
    where.add_argument("--scheduler", default=None, metavar="ADDRESS",
                       help="use an existing Dask cluster (default: $DASK_SCHEDULER_ADDRESS if set)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted dataset: render only missing frames")
    p.add_argument("--batch", type=int, default=0, metavar="B",
                   help="frames per Dask task (default 0: about half a second of frames per task)")
    p.add_argument("--threads", type=int, default=None, metavar="T",
                   help="engine threads per task (default: cores / task slots on the worker's host)")
    p.add_argument("--connect-timeout", type=float, default=10.0, metavar="S",
                   help="seconds to reach --scheduler (default 10)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar and no summary")
    p.add_argument("--reproduce", type=int, default=None, metavar="I",
                   help="print the flags of one pybragg run that renders frame I (from 0) of --out, and exit")
    p.add_argument("--into", default=".", metavar="FOLDER",
                   help="with --reproduce: where the shot's -mat and source files go (default: here)")
    if not series:
        v = p.add_argument_group("per-shot variations (all drawn from (S, i))")
        v.add_argument("--wavelength-jitter", type=float, default=0.0, metavar="F",
                       help="relative rms of the central wavelength")
        v.add_argument("--fluence-jitter", type=float, default=0.0, metavar="F", help="relative rms of the fluence")
        v.add_argument("--size-range", type=float, nargs=2, default=None, metavar=("MIN", "MAX"),
                       help="edge of a cubic crystal, uniform in MIN..MAX um (as -xtal_size)")
        v.add_argument("--sase", type=float, nargs=2, default=None, metavar=("BANDWIDTH", "MODES"),
                       help="spiky SASE-like spectrum: relative FWHM bandwidth and number of modes")
        v.add_argument("--spectrum", default=None, metavar="FILE",
                       help="pink-beam spectrum: lines of wavelength (A) and weight")
        v.add_argument("--spectrum-samples", type=int, default=0, metavar="K",
                       help="sources a spectrum is sampled into (default 4 per SASE mode, 16 for a file)")
    return p


def _output_flags(flags: Sequence[str]) -> list[str]:
    """The single-image output flags among ``flags`` (a dataset writes its own files instead)."""
    from pybragg.datasets.spec import flag_values
    from pybragg.flags.table import lookup

    names = ("-floatfile", "-intfile", "-noisefile", "-pgmfile", "-cbffile", "-nexusfile", "-exptfile", "-pngfile")
    return [name for name in names if lookup(name) is not None and flag_values(flags, name)]


def _reproduce(command: str, o: argparse.Namespace, out: TextIO) -> int:
    from pybragg import datasets

    ds = datasets.open_dataset(o.out)
    if ds.kind != command:
        raise UsageError(f"--reproduce: {o.out} is a {ds.kind} dataset (use pybragg {ds.kind})")
    if not 0 <= o.reproduce < ds.count:
        raise UsageError(f"--reproduce: frame {o.reproduce} is not in 0..{ds.count - 1}")
    flags = datasets.reproduce_flags(ds, o.reproduce, o.into)
    out.write("pybragg " + shlex.join(flags) + "\n")
    return 0


def run(command: str, argv: Sequence[str], out: TextIO, err: TextIO) -> int:
    """``pybragg series`` / ``pybragg stills``."""
    opts, flags = _split(argv, command)
    o = _parser(command).parse_args(opts)
    if o.reproduce is not None:
        return _reproduce(command, o, out)
    count = o.frames if command == "series" else o.shots
    if count is None:
        raise UsageError(f"pybragg {command}: give {'--frames N' if command == 'series' else '--shots N'}")
    if command == "stills" and o.seed is None:
        raise UsageError("pybragg stills: give --seed S (shot i is drawn from S and i)")
    if o.workers is not None and o.workers < 1:
        raise UsageError(f"--workers: at least 1, got {o.workers}")
    if o.threads is not None and o.threads < 1:
        raise UsageError(f"--threads: at least 1, got {o.threads}")
    if not o.connect_timeout > 0:
        raise UsageError("--connect-timeout: a positive number of seconds")
    if not flags:
        raise UsageError(f"pybragg {command}: no nanoBragg flags after '--'")
    from pybragg.datasets import spec
    from pybragg.datasets.draws import Variations, read_spectrum
    from pybragg.datasets.runner import run_dataset

    fmt = spec.resolve_format(o.out, o.format)
    if command == "series":
        job = spec.Job(spec.SERIES, flags, count, fmt=fmt, threads=o.threads)
    else:
        modes = None
        if o.sase is not None:
            if not float(o.sase[1]).is_integer():
                raise UsageError(f"--sase: MODES must be a whole number, got {o.sase[1]:g}")
            modes = (float(o.sase[0]), int(o.sase[1]))
        variations = Variations(
            wavelength_jitter=o.wavelength_jitter, fluence_jitter=o.fluence_jitter,
            size_range_um=tuple(o.size_range) if o.size_range else None, sase=modes,
            spectrum=read_spectrum(o.spectrum) if o.spectrum else None, spectrum_samples=o.spectrum_samples,
        )
        job = spec.Job(spec.STILLS, flags, count, seed=o.seed, variations=variations, fmt=fmt, threads=o.threads)
    ignored = _output_flags(flags)
    if ignored and not o.quiet:
        err.write(f"pybragg {command}: note: {', '.join(ignored)} ignored; frames go to {o.out}\n")
    existed = os.path.exists(o.out)
    if o.resume and not existed and not o.quiet:
        err.write(f"pybragg {command}: note: {o.out} does not exist yet; starting it\n")

    def interrupted(store) -> None:
        done = int(store.done().sum())
        err.write(f"pybragg {command}: interrupted with {done}/{job.count} frames written; "
                  "the same command with --resume continues\n")

    try:
        summary = run_dataset(job, o.out, resume=o.resume, name=o.name, scheduler=o.scheduler, workers=o.workers,
                              batch=o.batch, progress=None if o.quiet else err,
                              connect_timeout=o.connect_timeout, interrupted=interrupted)
    except KeyboardInterrupt as exc:  # Ctrl-C 130; SIGTERM/SIGHUP (errors.Interrupted) 128 + the signal
        return 128 + getattr(exc, "signo", 2)
    if not o.quiet:
        out.write(summary.text() + "\n")
    return 0


def main(name: str, args: Sequence[str], out: TextIO, err: TextIO) -> int:
    """Entry point of ``pybragg series`` and ``pybragg stills``."""
    try:
        return run(name, args, out, err)
    except HelpShown:
        return 0
