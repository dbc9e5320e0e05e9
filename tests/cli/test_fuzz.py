"""Property-based test of the command line (issue 10): whatever the flags and files, either a clean
image or one clear error, and never a crash, a traceback, a signal or a file left behind.

Command lines come from tests/fuzz_cases.py (every flag of the flag table, values of every class,
random or broken input files of every kind, the issue's own examples, and a sweep of every numeric
flag at an extreme); each runs on every engine of the registry, or on those named by
``PYBRAGG_FUZZ_ENGINES`` (``c`` in the torch-free sanitizer environment; an engine asked for that
cannot load fails the test, it is never skipped).  Each run must end in one of two ways:

* exit 0 with every requested output present (a symlinked output still a symlink, written
  through), a ``-floatfile`` image that is finite and non-negative, and the input files unchanged;
* a non-zero exit with exactly one stderr line ``pybragg: error: ...`` that names a flag (a
  ``-name`` of the flag table), one of the command line's files or, quoted, a stray argument, and
  the folder exactly as it was (no output, no ``*.part``, no ``.pybragg-*``).

Never a traceback, a sanitizer report (AddressSanitizer, UBSan ``runtime error:``), or death by
a signal.  A run still going after ``PYBRAGG_FUZZ_TIMEOUT`` seconds (4) gets SIGINT and must stop
as an interrupted render does (exit 130, nothing left behind) within ``PYBRAGG_FUZZ_GRACE``
seconds (3, for a loaded machine).

Environment: ``PYBRAGG_FUZZ_EXAMPLES`` drawn command lines (25; the draw is derandomized, so a run
is repeatable), ``PYBRAGG_FUZZ_SWEEP=all`` every value class for every numeric flag on every
engine (the main suite takes one class and one engine per flag, in turn), ``PYBRAGG_FUZZ_RECORD=FILE``
appends every failing run to FILE as a JSON line instead of stopping at the first (a survey),
``PYBRAGG_FUZZ_LOG=FILE`` every run with its time.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, example, given, settings

from fuzz_cases import (
    ISSUE_CASES,
    SANITIZER,
    Case,
    ForkServer,
    named_things,
    names_one,
    strategies,
    sweep_cases,
)
from pybragg.engines import ENGINES

EXAMPLES = int(os.environ.get("PYBRAGG_FUZZ_EXAMPLES", "25"))
TIMEOUT = float(os.environ.get("PYBRAGG_FUZZ_TIMEOUT", "4"))
GRACE = float(os.environ.get("PYBRAGG_FUZZ_GRACE", "3"))
RECORD = os.environ.get("PYBRAGG_FUZZ_RECORD")
#: every run (engine, seconds, exit, command line) as a JSON line, to see where the time goes
LOG = os.environ.get("PYBRAGG_FUZZ_LOG")
SWEEP_ALL = os.environ.get("PYBRAGG_FUZZ_SWEEP", "") == "all"
FUZZ_ENGINES = [e for e in os.environ.get("PYBRAGG_FUZZ_ENGINES", ",".join(ENGINES)).split(",") if e]


@pytest.fixture(scope="module")
def server():
    # fails (does not skip) when an engine asked for cannot be loaded, e.g. torch missing
    srv = ForkServer(FUZZ_ENGINES)
    yield srv
    srv.close()


def _snapshot(folder: Path) -> dict[str, tuple[str, bytes]]:
    """Every entry under ``folder``: kind and content (a symlink's target, a file's bytes)."""
    seen = {}
    for path in sorted(folder.rglob("*")):
        name = str(path.relative_to(folder))
        if path.is_symlink():
            seen[name] = ("link", os.readlink(path).encode())
        elif path.is_dir():
            seen[name] = ("dir", b"")
        else:
            seen[name] = ("file", path.read_bytes())
    return seen


def _expected_outputs(argv: list[str], folder: Path) -> tuple[list[str], str | None, set[str]]:
    """The outputs the command line asks for, by pybragg's own reading of it, the float image, and
    every name in ``folder`` a successful run may change (the outputs, their symlinks' targets, the
    ``-dump`` cache)."""
    from pybragg.flags.parse import parse_args
    from pybragg.writers import requested_paths

    here = os.getcwd()
    os.chdir(folder)
    try:
        inv = parse_args(argv)
    finally:
        os.chdir(here)
    wanted = requested_paths(inv.outputs)
    may_change = set(wanted)
    if inv.outputs.dumpfile and (inv.hkl_path is not None or getattr(inv, "pdb_path", None) is not None):
        may_change.add(inv.outputs.dumpfile)
    for name in list(may_change):
        if (folder / name).is_symlink():
            may_change.add(os.readlink(folder / name))
    return wanted, inv.outputs.floatfile, may_change


def _lay_out(case: Case, folder: Path) -> None:
    folder.mkdir(parents=True)
    for name, data in case.files.items():
        (folder / name).write_bytes(data)
    for name, target in case.symlinks.items():
        (folder / name).symlink_to(target)
    for name in case.dirs:
        (folder / name).mkdir(exist_ok=True)


def check_run(server: ForkServer, case: Case, engine: str, folder: Path, fault: str | None = None) -> list[str]:
    """Run ``case`` on ``engine`` in ``folder``; the problems found (empty when all is well)."""
    argv = [*case.argv, "--backend", engine]
    _lay_out(case, folder)
    before = _snapshot(folder)
    out = server.run(argv, folder, timeout=TIMEOUT, grace=GRACE, fault=fault)
    after = _snapshot(folder)
    if LOG:
        with open(LOG, "a", encoding="utf-8") as f:
            f.write(json.dumps({"engine": engine, "seconds": round(out.seconds, 3), "exit": out.exit,
                                "interrupted": out.interrupted, "argv": case.argv}) + "\n")
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    problems = []
    if any(marker in out.stderr for marker in SANITIZER):
        problems.append("a sanitizer report")
    if "Traceback" in out.stderr:
        problems.append("a traceback")
    if out.killed:
        problems.append(f"still running {GRACE:g} s after SIGINT (sent after {TIMEOUT:g} s): killed")
    elif out.signal is not None:
        problems.append(f"died by signal {out.signal}")
    leftovers = [n for n in after if Path(n).name.endswith(".part") or Path(n).name.startswith(".pybragg-")]
    if leftovers:
        problems.append(f"temporary files left: {leftovers}")
    inputs = {t for t in case.argv if t in case.files} | ({"Fdump.bin"} if "Fdump.bin" in case.files else set())
    if out.exit == 0 and not out.interrupted:
        wanted, floatfile, may_change = _expected_outputs(argv, folder)
        for path in wanted:
            if not (folder / path).exists():
                problems.append(f"exit 0 but the output {path} is missing")
        for link in case.symlinks:
            if not (folder / link).is_symlink():
                problems.append(f"the symlinked output {link} was replaced instead of written through")
        for name in sorted(before):
            if before[name] != after.get(name) and (name in inputs or name not in may_change):
                problems.append(f"{'the input' if name in inputs else 'a file that is no output,'} {name} was changed")
        if floatfile and (folder / floatfile).is_file():
            raw = (folder / floatfile).read_bytes()
            image = np.frombuffer(raw[: len(raw) // 4 * 4], dtype="<f4")
            if image.size == 0:
                problems.append("an empty float image")
            elif not np.all(np.isfinite(image)):
                problems.append(f"{np.count_nonzero(~np.isfinite(image))} non-finite pixels")
            elif image.min() < 0:
                problems.append(f"negative pixels (min {image.min():g})")
    elif out.exit is not None:
        if out.interrupted:
            if out.exit != 130:
                problems.append(f"exit {out.exit} after SIGINT, not 130")
        else:
            errors = [line for line in lines if line.startswith("pybragg: error:")]
            if len(errors) != 1:
                problems.append(f"{len(errors)} 'pybragg: error:' lines on stderr, not 1")
            elif not names_one(errors[0], named_things(argv, list(case.files) + list(case.symlinks)), argv):
                problems.append("the error line names no flag or file")
            if out.exit == 70:
                problems.append("an exception escaped main()")
        if before != after:
            changed = sorted(set(before) ^ set(after)) + sorted(n for n in before if n in after and before[n] != after[n])
            problems.append(f"the folder changed on a failed run: {changed[:6]}")
    return [f"{p} [exit {out.exit}, signal {out.signal}, {out.seconds:.2f} s; stderr: "
            f"{' | '.join(lines)[-600:]!r}]" for p in problems]


def test_the_checks_catch_a_crash_and_a_sanitizer_report(server: ForkServer, tmp_path: Path) -> None:
    """The checks themselves: a clean render and a clean refusal pass, a child killed by a signal
    and one that prints an AddressSanitizer report do not."""
    case = Case(argv=["-cell", "100", "100", "100", "90", "90", "90", "-default_F", "1", "-detpixels", "4",
                      "-floatfile", "float.bin"])
    engine = FUZZ_ENGINES[0]
    assert check_run(server, case, engine, tmp_path / "fine") == []
    segv = check_run(server, case, engine, tmp_path / "segv", fault="segv")
    # under AddressSanitizer its SEGV handler reports the crash and exits 1
    assert any(p.startswith(("died by signal 11", "a sanitizer report")) for p in segv), segv
    asan = check_run(server, case, engine, tmp_path / "asan", fault="asan")
    assert any(p.startswith("a sanitizer report") for p in asan), asan
    bad = Case(argv=[*case.argv, "-distance", "nan"])
    assert check_run(server, bad, engine, tmp_path / "bad") == []


def _check_all(server: ForkServer, case: Case, base: Path, counter: itertools.count,
               engines: list[str] | None = None) -> None:
    """``case`` on every engine asked for; the first failure raises (or, with RECORD, every one is kept)."""
    for engine in engines or FUZZ_ENGINES:
        folder = base / f"case{next(counter):05d}"
        problems = check_run(server, case, engine, folder)
        if problems:
            report = {"engine": engine, "argv": case.argv, "problems": problems,
                      "files": {k: v[:80].decode("latin-1") + ("..." if len(v) > 80 else "")
                                for k, v in case.files.items()}, "symlinks": case.symlinks}
            if not RECORD:
                raise AssertionError(json.dumps(report, indent=1))
            with open(RECORD, "a", encoding="utf-8") as f:
                f.write(json.dumps(report) + "\n")
        shutil.rmtree(folder, ignore_errors=True)


def _with_examples(cases: list[Case]):
    def decorate(test):
        for case in reversed(cases):
            test = example(case)(test)
        return test
    return decorate


def test_random_command_lines(server: ForkServer, tmp_path_factory: pytest.TempPathFactory) -> None:
    """The issue's examples first, then ``PYBRAGG_FUZZ_EXAMPLES`` drawn command lines."""
    base = tmp_path_factory.mktemp("fuzz")
    counter = itertools.count()

    @settings(max_examples=EXAMPLES, derandomize=True, database=None, deadline=None,
              phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck),
              print_blob=False, report_multiple_bugs=False)
    @_with_examples(ISSUE_CASES)
    @given(strategies())
    def run(case: Case) -> None:
        _check_all(server, case, base, counter)

    run()


def test_every_numeric_flag_at_an_extreme(server: ForkServer, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Each numeric flag of the table with one extreme or non-finite value, on one engine (value
    classes and engines in turn over the table); every class on every engine for every flag with
    ``PYBRAGG_FUZZ_SWEEP=all``."""
    base = tmp_path_factory.mktemp("sweep")
    counter = itertools.count()
    for i, case in enumerate(sweep_cases(every=SWEEP_ALL)):
        engines = None if SWEEP_ALL else [FUZZ_ENGINES[i % len(FUZZ_ENGINES)]]
        _check_all(server, case, base, counter, engines)
