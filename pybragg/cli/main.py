"""``pybragg``: the nanoBragg-compatible command line.

Exit codes: 0 success, 2 usage error (bad flag or value, an output that is an input or another
output), 1 any other failure (unreadable or garbled input file, engine failure, unwritable output,
a full or closed stdout after the files were written), 128 + N when signal N (SIGINT 130,
SIGTERM 143, SIGHUP 129) ends it, 141 quietly when the reader of stdout goes away (``| head``).

The files are written as one set (:func:`pybragg.io.atomic.commit_files`) before anything is
printed on stdout: the summary goes out after the files are in place, and whatever happens to
stdout does not change them.
"""

from __future__ import annotations

import contextlib
import errno
import gc
import importlib
import io
import math
import os
import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import TextIO

from pybragg.errors import EngineError, Interrupted, PybraggError, UsageError

RAD2DEG = 180.0 / math.pi


class ProgressBar:
    """A one-line progress bar on a terminal, shown once a render passes one second."""

    def __init__(self, stream: TextIO, delay: float = 1.0, width: int = 40):
        self.stream = stream
        self.delay = delay
        self.width = width
        self.start = time.monotonic()
        self.shown = False

    def __call__(self, fraction: float) -> None:
        elapsed = time.monotonic() - self.start
        if elapsed < self.delay and not self.shown:
            return
        self.shown = True
        filled = int(self.width * fraction)
        eta = elapsed / fraction - elapsed if fraction > 0 else float("nan")
        self.stream.write(
            f"\r[{'#' * filled}{'.' * (self.width - filled)}] {100 * fraction:5.1f}%  {elapsed:6.1f} s"
            + (f"  ~{eta:5.0f} s left" if fraction < 1 and math.isfinite(eta) else " " * 14)
        )
        self.stream.flush()

    def close(self) -> None:
        """End the bar's line if it was shown."""
        if self.shown:
            self.stream.write("\n")
            self.stream.flush()


def _v(vec: Sequence[float]) -> str:
    return " ".join(f"{x:.6g}" for x in vec)


def print_summary(result, out: TextIO) -> None:
    """The derived geometry, sampling and crystal, as a crystallographer checks them."""
    g = result.geometry
    conv = ["custom", "adxv", "mosflm", "xds", "dials", "denzo"][g.convention]
    w = out.write
    w(f"pybragg {result.backend} engine ({result.dtype}, {result.device})\n")
    w(f"  {conv} convention, detector pivots about the {'beam spot' if g.pivot == 1 else 'sample'}\n")
    w(f"  unit cell: {_v(g.cell)}  (A, deg)   volume {g.volume:.6g} A^3\n")
    w(f"  reciprocal cell: {_v(g.recip_cell)}  (1/A, deg)\n")
    for name, vec in (("a", g.a), ("b", g.b), ("c", g.c)):
        w(f"  {name} = {_v([x * 1e10 for x in vec])} A\n")
    if g.misset_applied:
        w(f"  misset: {_v([x * RAD2DEG for x in g.misset])} deg\n")
    shape = ["parallelepiped", "ellipsoidal", "gaussian", "tophat-spot"][g.shape]
    w(f"  {shape} crystal: {g.N[0]:.0f}x{g.N[1]:.0f}x{g.N[2]:.0f} cells "
      f"({g.xtal_size[0] * 1e6:.4g} x {g.xtal_size[1] * 1e6:.4g} x {g.xtal_size[2] * 1e6:.4g} um)\n")
    w(f"  structure factors: {'tricubic interpolation' if g.interpolate else 'nearest reflection'}\n")
    w(f"  wavelength {g.lambda0:.6g} m +/- {g.dispersion * 100:g}% in {g.dispsteps} steps\n")
    w(f"  {g.sources} sources ({g.divsteps} divergence steps; h {g.hdivrange:g}/{g.hdivstep:g} rad, "
      f"v {g.vdivrange:g}/{g.vdivstep:g} rad)\n")
    w(f"  {g.mosaic_domains} mosaic domains over {g.mosaic_spread * RAD2DEG:g} deg\n")
    w(f"  {g.phisteps} phi steps from {g.phi0 * RAD2DEG:g} to {(g.phi0 + g.osc) * RAD2DEG:g} deg\n")
    w(f"  {g.oversample}x{g.oversample} sub-pixels"
      + "".join(f" +{n}" for n, on in (("thick", g.oversample_thick), ("polar", g.oversample_polar),
                                        ("omega", g.oversample_omega)) if on)
      + f" (recommended {g.recommended_oversample}); {g.thicksteps} sensor layers, "
      f"{g.thick * 1e6:g} um thick, mu {g.mu:g} /m\n")
    pol = "off" if g.nopolar else f"Kahn factor {g.polarization:g}"
    w(f"  polarization {pol}; fluence {g.fluence:.6g} photons/m^2\n")
    if g.n_panels > 1:
        w(f"  detector of {g.n_panels} panels in a {g.data_fpixels}x{g.data_spixels} data array; first panel "
          f"{g.panels[0].name}:\n")
    w(f"  detector {g.fpixels}x{g.spixels} pixels of {g.pixel_size * 1e3:g} mm; distance {g.distance * 1e3:.6g} mm,"
      f" close distance {g.close_distance * 1e3:.6g} mm\n")
    w(f"  Xbeam={g.Xbeam * 1e3:.6g} Ybeam={g.Ybeam * 1e3:.6g}  Fbeam={g.Fbeam * 1e3:.6g} Sbeam={g.Sbeam * 1e3:.6g}"
      f"  Fclose={g.Fclose * 1e3:.6g} Sclose={g.Sclose * 1e3:.6g} mm\n")
    w(f"  XDS ORGX={g.ORGX:.6g} ORGY={g.ORGY:.6g}; DIALS origin {_v(g.dials_origin)} mm\n")
    w(f"  fast axis {_v(g.fdet)}; slow axis {_v(g.sdet)}; normal {_v(g.odet)}\n")
    w(f"  beam {_v(g.beam)}; spindle {_v(g.spindle)}; detector origin {_v([x * 1e3 for x in g.pix0])} mm\n")
    w(f"  roi: {g.roi[0]} <= x <= {g.roi[1]}, {g.roi[2]} <= y <= {g.roi[3]}\n")
    s = result.stats
    w(f"  solid angle subtended: {s.omega_sum / g.steps:.6g} sr\n")
    where = f"pixel (slow, fast) {s.max_I_pixel}" if s.max_I_pixel else "no pixel"
    w(f"  max_I = {s.max_I:.6g} at {s.max_I_fast:.6g} {s.max_I_slow:.6g} m ({where})\n")
    w(f"  mean= {s.mean:.6g} rms= {s.rms:.6g} rmsd= {s.rmsd:.6g}\n")
    if s.interpolation_fallbacks:
        sys.stderr.write(f"warning: {s.interpolation_fallbacks} structure-factor evaluations fell outside the "
                         "table for tricubic interpolation and used the nearest reflection instead\n")
    w(f"  rendered in {result.seconds:.3f} s\n")


def run_simulation(argv: Sequence[str], out: TextIO, err: TextIO) -> int:
    """Parse nanoBragg flags, render, print the summary and write the outputs."""
    from pybragg.flags import from_args
    from pybragg.flags.load import add_background
    from pybragg.io.atomic import check_distinct
    from pybragg.writers import check_writable, requested_paths, write_outputs

    if any(a in ("-h", "--help", "-help") for a in argv) or not argv:
        from pybragg.cli.help import format_help

        if argv:
            out.write(format_help())
            return 0
        err.write(format_help())
        return 2
    if "--version" in argv:
        out.write(version_text() + "\n")
        return 0
    # the Fdump.bin cache is written only once the run has succeeded (no file is left by a failed run)
    sim = from_args(argv, write_dump=False, notice=lambda m: err.write(m + "\n"))
    inv = sim.invocation
    o = inv.outputs
    check_distinct(*file_flags(argv, inv))
    try:
        check_writable(requested_paths(o))
    except OSError as exc:
        raise PybraggError(f"cannot write output: {exc}") from exc
    if inv.quiet:
        out = io.StringIO()
    show = inv.progress if inv.progress is not None else (err.isatty() and not inv.quiet)
    bar: Callable[[float], None] | None = ProgressBar(err) if show else None
    try:
        result = sim.run(progress=bar)
        result = add_background(sim, result)  # -stol: the amorphous background onto the spots
    except EngineError as exc:
        named = _name_input_file(exc, inv, argv)
        if named is exc:
            raise
        raise named from exc
    finally:
        if isinstance(bar, ProgressBar):
            bar.close()
    summary = io.StringIO()  # printed once the files are written
    print_summary(result, summary)
    try:
        written = write_outputs(result, o, space_group=getattr(sim.inputs, "space_group", None))
    except OSError as exc:
        raise PybraggError(f"cannot write output: {exc}") from exc
    out.write(summary.getvalue())
    out.write(f"  intfile_scale = {written.int_scale:.6g}\n")
    if written.pgm_scale is not None:
        out.write(f"  pgm_scale = {written.pgm_scale:.6g}\n")
    if written.photons is not None:
        out.write(f"  {written.photons:.0f} photons on noise image ({written.overloads} overloads), "
                  f"seed {o.noise_seed}\n")
    out.writelines(f"  wrote {path}\n" for path in written.files)
    _write_dump(sim, out, err)
    return 0


def file_flags(argv: Sequence[str], inv) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """``(flag, path)`` of the files a command line writes and of those it reads.

    Inputs are the flag table's file flags (``-hkl``, ``-mat``, ``-mask``, ``-geom``, ...) named
    as typed; the ``-dump`` cache is an output with ``-hkl`` or ``-pdb`` and an input (when it
    exists) without them.
    """
    from pybragg.flags.table import FLAGS, Kind, lookup
    from pybragg.io.stol import resolve_path
    from pybragg.writers import requested_outputs

    typed: dict[str, str] = {}
    for token in argv:
        flag = lookup(token)
        if flag is not None and flag.kind is Kind.PATH:
            for target in flag.targets:
                typed[target] = token
    inputs: list[tuple[str, str]] = []
    seen: set[str] = set()
    for flag in FLAGS:
        if flag.kind is not Kind.PATH:
            continue
        for target in flag.targets:
            path = getattr(inv, target, None) if "." not in target else None
            if target in seen or not path:
                continue
            seen.add(target)
            inputs.append((typed.get(target, flag.name), resolve_path(path) if target == "stol_path" else str(path)))
    outputs = requested_outputs(inv.outputs)
    dump = inv.outputs.dumpfile
    if dump:
        if inv.hkl_path is not None or getattr(inv, "pdb_path", None) is not None:
            outputs.append(("-dump", dump))
        elif os.path.exists(dump):
            inputs.append(("-dump", dump))
    return outputs, inputs


def _name_input_file(exc: EngineError, inv, argv: Sequence[str] = ()) -> EngineError:
    """The engine's complaint about an array read from a file, with the flag and file named; a
    complaint about the detector origin names ``-pix0_vector_mm`` when that is the flag typed."""
    message = str(exc)
    for start, flag, path in (("mask ", "-mask", inv.mask_path), ("source ", "-sourcefile", inv.source_path)):
        if path is not None and message.startswith(start):
            return EngineError(f"{flag} {path}: {message}")
    if message.startswith("-pix0_vector:") and "-pix0_vector_mm" in argv and "-pix0_vector" not in argv:
        return EngineError("-pix0_vector_mm" + message[len("-pix0_vector"):])
    return exc


def _write_dump(sim, out: TextIO, err: TextIO) -> None:
    """Cache the structure factors read from ``-hkl``; like the reference, only warn when that fails."""
    from pybragg.io.hkl import write_fdump

    inv = sim.invocation
    dump = inv.outputs.dumpfile
    if (inv.hkl_path is None and getattr(inv, "pdb_path", None) is None) or not dump or sim.inputs.hkl is None:
        return
    try:
        write_fdump(dump, sim.inputs.hkl)
    except OSError as exc:
        err.write(f"pybragg: warning: cannot write the structure-factor cache {dump}: {exc.strerror or exc}\n")
        return
    out.write(f"  wrote {dump}\n")


#: ``pybragg NAME ...`` -> the module whose ``main(name, args, out, err) -> int`` runs it
SUBCOMMANDS: dict[str, str] = {
    "compare": "pybragg.cli.tools",
    "trace": "pybragg.cli.tools",
    "series": "pybragg.cli.datasets",
    "stills": "pybragg.cli.datasets",
    "nonbragg": "pybragg.cli.nonbragg",
    "noisify": "pybragg.cli.noisify",
}


def version_text() -> str:
    """``pybragg X.Y.Z`` and the C library's version where it loads."""
    from pybragg import __version__

    text = f"pybragg {__version__}"
    try:
        from pybragg._native import native

        ffi, lib = native()
        text += f" (C engine {ffi.string(lib.pb_version()).decode()})"
    except Exception as exc:  # noqa: BLE001 - the version is printed whether or not the engine loads
        text += f" (C engine not loaded: {exc})"
    return text


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings of the readers (and any other) as one ``warning: ...`` line on stderr."""
    sys.stderr.write(f"warning: {message}\n")


#: subcommands whose stdout is held until they end (their files are written before it is printed)
BUFFERED = ("nonbragg", "noisify")
#: exit code when the reader of stdout went away (128 + SIGPIPE, as for a program that signal ends)
EXIT_BROKEN_PIPE = 128 + 13


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``pybragg`` console script."""
    args = list(sys.argv[1:] if argv is None else argv)
    _open_standard_fds()
    with warnings.catch_warnings(), _signals_raise_interrupted():
        warnings.showwarning = _show_warning
        code = _main(args)
    if argv is None and not (args and args[0] in SUBCOMMANDS):
        # a render's process ends now: the interpreter's last garbage collections then skip the
        # objects that are left (some 20 ms of the command's exit); destructors and atexit still run
        gc.freeze()
    return code


def _open_standard_fds() -> None:
    """Put /dev/null on a closed fd 0, 1 or 2 (``>&-``), so that no file written later gets that
    number and receives another library's prints; a closed stdout stays ``sys.stdout is None``."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            with contextlib.suppress(OSError):
                got = os.open(os.devnull, os.O_RDWR)
                if got != fd:
                    os.dup2(got, fd)
                    os.close(got)
    if sys.stderr is None:
        sys.stderr = open(os.devnull, "w")  # noqa: SIM115 - for the life of the process


def _raise_interrupted(signo: int, frame: object) -> None:
    raise Interrupted(signo)


@contextlib.contextmanager
def _signals_raise_interrupted() -> Iterator[None]:
    """SIGINT, SIGTERM and SIGHUP raise :class:`~pybragg.errors.Interrupted` (a KeyboardInterrupt)
    for the length of the command; one already ignored (``nohup``) stays ignored."""
    previous: list[tuple[int, object]] = []
    if threading.current_thread() is threading.main_thread():
        for name in ("SIGINT", "SIGTERM", "SIGHUP"):
            signo = getattr(signal, name, None)
            if signo is None:
                continue
            old = signal.getsignal(signo)
            if old is signal.SIG_IGN or old is None:
                continue
            signal.signal(signo, _raise_interrupted)
            previous.append((signo, old))
    try:
        yield
    finally:
        for signo, old in reversed(previous):
            signal.signal(signo, old)  # type: ignore[arg-type]


class StdoutFailed(Exception):
    """Writing the command's stdout failed (not an OSError, so that no file handler takes it)."""

    def __init__(self, error: OSError):
        super().__init__(error)
        self.error = error


class GuardedStdout:
    """``sys.stdout`` for the subcommands that print as they go: a failed write raises
    :class:`StdoutFailed`."""

    def __init__(self, stream: TextIO | None):
        self._stream = stream

    def _target(self) -> TextIO:
        if self._stream is None:
            raise StdoutFailed(OSError(errno.EBADF, os.strerror(errno.EBADF)))
        return self._stream

    def write(self, text: str) -> int:
        try:
            return self._target().write(text)
        except OSError as exc:
            raise StdoutFailed(exc) from exc

    def writelines(self, lines) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        try:
            self._target().flush()
        except OSError as exc:
            raise StdoutFailed(exc) from exc

    def isatty(self) -> bool:
        return self._stream is not None and self._stream.isatty()

    def __getattr__(self, name: str):
        return getattr(self._target(), name)


def _silence_stdout() -> None:
    """After stdout failed: later writes (the interpreter's last flush) go to /dev/null."""
    try:
        fd = sys.stdout.fileno() if sys.stdout is not None else -1
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
        return
    if fd >= 0:
        with contextlib.suppress(OSError):
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, fd)
            os.close(null)


def _emit(text: str) -> None:
    """Print ``text`` on stdout now and flush what else went there (raises StdoutFailed)."""
    out = GuardedStdout(sys.stdout)
    if text:
        out.write(text)
    if text or sys.stdout is not None:
        out.flush()


def _status(exc: BaseException) -> tuple[int, str | None] | None:
    """Exit code and stderr line of an exception that ends the command (None: not ours)."""
    if isinstance(exc, UsageError):
        return 2, f"pybragg: error: {exc}"
    if isinstance(exc, PybraggError):
        return exc.exit_code, f"pybragg: error: {exc}"
    if isinstance(exc, (StdoutFailed, BrokenPipeError)):
        error = exc.error if isinstance(exc, StdoutFailed) else exc
        _silence_stdout()
        if isinstance(error, BrokenPipeError):  # the reader went away (`pybragg ... | head`): quietly
            return EXIT_BROKEN_PIPE, None
        return 1, f"pybragg: error: stdout: {error.strerror or error}"
    if isinstance(exc, KeyboardInterrupt):
        signo = getattr(exc, "signo", signal.SIGINT)
        try:
            name = signal.Signals(signo).name
        except ValueError:
            name = f"signal {signo}"
        return 128 + signo, f"pybragg: interrupted ({name})"
    if isinstance(exc, MemoryError):
        return 1, "pybragg: error: out of memory"
    return None


def _main(args: list[str]) -> int:
    """Run one command; its stdout is printed after its files are written (see the module's note)."""
    held = io.StringIO()
    command = args[0] if args and args[0] in SUBCOMMANDS else None
    message: str | None = None
    try:
        try:
            if command is None:
                code = run_simulation(args, held, sys.stderr)
            else:
                module = importlib.import_module(SUBCOMMANDS[command])
                out = held if command in BUFFERED else GuardedStdout(sys.stdout)
                code = module.main(command, args[1:], out, sys.stderr)  # type: ignore[arg-type]
        except BaseException as exc:
            status = _status(exc)
            if status is None or isinstance(exc, KeyboardInterrupt):
                raise
            code, message = status
        try:
            _emit(held.getvalue())  # also what came before an error, as the command printed it
        except StdoutFailed as exc:
            status = _status(exc)
            if message is None and status is not None:
                code, message = status
    except KeyboardInterrupt as exc:
        code, message = _status(exc)  # type: ignore[misc]
    if message is not None:
        sys.stderr.write(message + "\n")
    return code


if __name__ == "__main__":
    raise SystemExit(main())
