"""Random command lines and input files for tests/cli/test_fuzz.py, and the fork server that runs them.

The strategies take every flag, its kind and its number of values from the flag table
(:data:`pybragg.flags.table.FLAGS`), so a new flag is fuzzed without a change here.  Values
come in classes: plain ones, boundaries of a C ``int`` and ``int64``, huge and tiny floats,
non-finite spellings and junk.  Input files are random bytes or a valid file of their kind
with extreme or broken values.

Forking is cheap where starting Python is not (0.4 s, 2-3 s with torch): :class:`ForkServer`
starts ``python tests/fuzz_cases.py serve ENGINES`` once; that process imports pybragg (and
torch) without running anything, then forks a child per command line that runs
``pybragg.cli.main.main(argv)`` in the example's scratch folder with stdout and stderr sent to
files, under an address-space limit, and reports how the child ended (its exit code, or the
signal that killed it, as ``waitpid`` says).  A child still running after the timeout gets
SIGINT and must then stop within a grace period like an interrupted render.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# --------------------------------------------------------------------------- the fork server


def _vm_size() -> int:
    with open("/proc/self/statm", encoding="ascii") as f:
        return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")


def _child(request: dict) -> None:
    """In the forked child: run one command line and leave with its exit code (never returns)."""
    code = 70
    try:
        os.chdir(request["cwd"])
        os.setsid()  # a SIGINT for this child reaches no one else
        import resource

        margin = int(request.get("memory_margin", 3 << 30))
        limit = _vm_size() + margin
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        for fd, name in ((1, "stdout"), (2, "stderr")):
            target = os.open(request[name], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(target, fd)
            os.close(target)
        sys.stdin = open(0, encoding="utf-8", closefd=False)  # noqa: SIM115
        sys.stdout = open(1, "w", encoding="utf-8", closefd=False)  # noqa: SIM115
        sys.stderr = open(2, "w", encoding="utf-8", closefd=False)  # noqa: SIM115
        signal.signal(signal.SIGINT, signal.default_int_handler)
        for signo in (signal.SIGTERM, signal.SIGHUP, signal.SIGPIPE):
            signal.signal(signo, signal.SIG_DFL)
        for key, value in request.get("env", {}).items():
            os.environ[key] = value
        fault = request.get("fault")
        if fault == "segv":  # the test's check of its own checks: a crash and a sanitizer report
            os.kill(os.getpid(), signal.SIGSEGV)
        elif fault == "asan":
            sys.stderr.write("=================================================================\n"
                             f"=={os.getpid()}==ERROR: AddressSanitizer: heap-buffer-overflow on address 0x1\n")
            code = 1
        else:
            from pybragg.cli.main import main

            code = main(request["argv"])
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:  # noqa: BLE001 - what escapes main is the finding
        import traceback

        with contextlib.suppress(BaseException):
            traceback.print_exc()
        code = 70
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(BaseException):  # a closed or full stream must not change the code
            stream.flush()
    os._exit(code if isinstance(code, int) and 0 <= code < 256 else 71)


def _wait(pid: int, timeout: float, grace: float) -> dict:
    start = time.monotonic()
    interrupted = killed = False
    deadline = start + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        now = time.monotonic()
        if now > deadline:
            if not interrupted:
                interrupted = True
                os.kill(pid, signal.SIGINT)
                deadline = now + grace
            elif not killed:
                killed = True
                os.kill(pid, signal.SIGKILL)
                deadline = now + 60
        time.sleep(0.005)
    result = {"seconds": time.monotonic() - start, "interrupted": interrupted, "killed": killed,
              "exit": None, "signal": None}
    if os.WIFEXITED(status):
        result["exit"] = os.WEXITSTATUS(status)
    elif os.WIFSIGNALED(status):
        result["signal"] = os.WTERMSIG(status)
    return result


def serve(engines: list[str]) -> None:
    """Answer one JSON request per line on stdin with one JSON line on stdout."""
    replies = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
    ready: dict = {"ready": True}
    try:
        import pybragg.cli.main
        import pybragg.flags
        import pybragg.writers  # noqa: F401 - what every run needs, imported once
        from pybragg.engines import ENGINES

        for name in engines:
            if name not in ENGINES:
                raise RuntimeError(f"unknown engine {name!r} (the registry has {', '.join(ENGINES)})")
            ENGINES[name].load()  # imports torch for the torch engine, without running it
    except Exception as exc:  # noqa: BLE001 - reported to the test, which fails
        ready = {"ready": False, "error": f"{type(exc).__name__}: {exc}"}
    replies.write(json.dumps(ready) + "\n")
    replies.flush()
    if not ready["ready"]:
        return
    for line in sys.stdin:
        request = json.loads(line)
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            replies.close()
            _child(request)
        replies.write(json.dumps(_wait(pid, float(request["timeout"]), float(request["grace"]))) + "\n")
        replies.flush()


class ForkServer:
    """The test's side of :func:`serve`."""

    def __init__(self, engines: list[str], env: dict[str, str] | None = None):
        environment = dict(os.environ if env is None else env)
        environment["PYTHONPATH"] = os.pathsep.join([str(ROOT), environment.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        self.proc = subprocess.Popen([sys.executable, __file__, "serve", ",".join(engines)], cwd=ROOT,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=environment, text=True)
        hello = json.loads(self.proc.stdout.readline() or '{"ready": false, "error": "the server died"}')
        if not hello["ready"]:
            self.close()
            raise RuntimeError(f"the fuzz server cannot load the engines {engines}: {hello['error']}")

    def run(self, argv: list[str], cwd: Path, *, timeout: float, grace: float,
            env: dict[str, str] | None = None, fault: str | None = None) -> Outcome:
        """Run ``pybragg argv`` in ``cwd``; the child's stdout and stderr go to files beside it.

        ``fault`` (``segv``, ``asan``) makes the child crash or print a sanitizer report instead.
        """
        logs = cwd.parent
        request = {"argv": argv, "cwd": str(cwd), "timeout": timeout, "grace": grace, "env": env or {},
                   "fault": fault,
                   "stdout": str(logs / f"{cwd.name}.stdout"), "stderr": str(logs / f"{cwd.name}.stderr")}
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the fuzz server died")
        reply = json.loads(line)
        def read(name: str) -> str:
            return Path(request[name]).read_text(encoding="utf-8", errors="replace")

        return Outcome(exit=reply["exit"], signal=reply["signal"], interrupted=reply["interrupted"],
                       killed=reply["killed"], seconds=reply["seconds"], stdout=read("stdout"),
                       stderr=read("stderr"))

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@dataclass
class Outcome:
    """How one run ended."""

    exit: int | None
    signal: int | None
    interrupted: bool
    killed: bool
    seconds: float
    stdout: str
    stderr: str


# --------------------------------------------------------------------------- command lines and files

#: flags the generator never draws: the engine is chosen by the test, help and version print and exit
NOT_DRAWN = {"--backend", "-h", "--version"}

FLOAT_SPECIALS = ["0", "-0", "-1", "1e-300", "5e-324", "1e300", "1.7976931348623157e308", "-1e308", "1e999",
                  "inf", "-inf", "nan", "NaN", "-nan", "infinity", "1e-5", "1e5", "3.5", "-3.5", "180", "360",
                  "1e20", "0x10", "abc", "", "1,5", "--1"]
INT_SPECIALS = ["-1", "0", "1", "2", "3", str(2**31 - 1), str(2**31), str(-2**31 - 1), str(2**32), str(2**63 - 1),
                str(2**63), str(-2**63 - 1), str(2**64), "1" + "0" * 30, "46341", "1.5", "nan", "inf", "x", ""]
#: a 254-character name is legal, a 256-character one is not
LONG_NAME = "o" * 250 + ".img"
TOO_LONG = "o" * 252 + ".img"
OUTPUT_NAMES = ["out_a.img", "out_b.bin", "out_c.cbf", "float.bin", "link.out", "missing_dir/x.img", LONG_NAME,
                TOO_LONG, "a_dir"]
BASE = ["-cell", "100", "100", "100", "90", "90", "90", "-default_F", "10", "-N", "2", "-lambda", "1",
        "-distance", "100", "-pixel", "0.1", "-floatfile", "float.bin"]

GEOM = """clen = 0.1
photon_energy = {energy}
res = {res}
p0/min_fs = 0
p0/max_fs = {fs}
p0/min_ss = 0
p0/max_ss = {ss}
p0/fs = {fsvec}
p0/ss = {ssvec}
p0/corner_x = {cx}
p0/corner_y = {cy}
"""


@dataclass
class Case:
    """One drawn command line and the files it reads (names relative to the scratch folder)."""

    argv: list[str]
    files: dict[str, bytes] = field(default_factory=dict)
    symlinks: dict[str, str] = field(default_factory=dict)
    dirs: list[str] = field(default_factory=list)


#: the value classes of the sweep over every numeric flag: one class per flag in the main suite,
#: rotating with the flag's place in the table, all of them with PYBRAGG_FUZZ_SWEEP=all
SWEEP_VALUES = ["nan", "inf", "-inf", "-1", "0", "1e300", "-1e300", "1e-300", str(2**31), str(2**63), "46341",
                "1e999", "200", "120"]


def sweep_cases(every: bool = False) -> list[Case]:
    """Every flag with numbers, each of its values set to an extreme (same value for all of them)."""
    from pybragg.flags.table import FLAGS, Kind

    cases = []
    numeric = [f for f in FLAGS if f.kind in (Kind.FLOAT, Kind.INT, Kind.COUNT) and f.name not in NOT_DRAWN]
    for i, flag in enumerate(numeric):
        values = SWEEP_VALUES if every else [SWEEP_VALUES[i % len(SWEEP_VALUES)]]
        for value in values:
            cases.append(Case(argv=[*BASE, "-detpixels", "8", flag.name, *[value] * flag.nargs]))
    return cases


def _hkl_range(low: int, high: int) -> bytes:
    return f"{low} {low} {low} 10\n{high} {high} {high} 10\n".encode()


#: the examples of issue 10, each a class of defect: run first, every time
ISSUE_CASES = [
    Case(argv=[*BASE, "-detpixels", "8", *extra]) for extra in (
        ["-divergence", "1", "-divsteps", "46341", "-square_div"],
        ["-dispersion", "200"], ["-dispersion", "300"], ["-default_F", "1e308"], ["-water", "1e12"],
        ["-twotheta", "120"], ["-fdet_vector", "0", "0", "1", "-sdet_vector", "0", "0", "1"],
        ["--threads", "100000"], ["-seed", str(2**63)], ["-N", str(2**31)], ["-oversample", str(2**31)],
        ["-intfile", "float.bin"], ["-floatfile", LONG_NAME], ["-intfile", "link.out"],
        ["-mat", "/dev/zero"],
        # found by this test: an overflowing direction, a zero pix0, a huge pixel, a huge --memory-budget
        ["-beam_vector", "1e300", "1e300", "1e300"], ["-pix0_vector_mm", "0", "0", "0"], ["-pixel", "120"],
        ["--memory-budget", "1e300"],
        # products of counts past 2^31 (class 1)
        ["-oversample", "46341"], ["-phisteps", "65536", "-osc", "1", "-mosaic_domains", "65536", "-mosaic", "1"],
        ["-detpixels", "65536"], ["-detpixels_f", "2147483647", "-detpixels_s", "2"],
        ["-dispersion", "10", "-dispsteps", "65536", "-divergence", "1", "-hdivsteps", "65536"],
    )
] + [
    Case(argv=[*BASE, "-detpixels", "8", "-hkl", "in.hkl"], files={"in.hkl": _hkl_range(-700, 700)}),
    Case(argv=[*BASE, "-detpixels", "8", "-hkl", "in.hkl"], files={"in.hkl": f"{2**63} 0 0 10\n".encode()}),
    Case(argv=[*BASE, "-detpixels", "8", "-hkl", "in.hkl", "-dump", "in.hkl"], files={"in.hkl": _hkl_range(-1, 1)}),
    Case(argv=[*BASE, "-detpixels", "8", "-hkl", "/dev/zero"]),
    Case(argv=[a for a in BASE if a not in ("-default_F", "10")] + ["-detpixels", "8"],
         files={"Fdump.bin": b"0 0 0 0 0 0\n\f" + b"\x00\x00\x00\x00\x00\x00\xf8\x7f" * 8}),
]
for _case in ISSUE_CASES:
    if "link.out" in _case.argv:
        _case.files["target.out"] = b"keep me\n"
        _case.symlinks["link.out"] = "target.out"


def strategies():
    """The hypothesis strategies (imported lazily: the server needs no hypothesis)."""
    from hypothesis import strategies as st

    from pybragg.flags.table import FLAGS, Kind

    # one branch of extremes and junk, one of any double, two of plausible values
    floats = st.one_of(st.sampled_from(FLOAT_SPECIALS),
                       st.floats(allow_nan=True, allow_infinity=True).map(repr),
                       st.floats(-1000, 1000).map(lambda v: f"{v:.6g}"),
                       st.floats(0.01, 20).map(lambda v: f"{v:.4g}"))
    ints = st.one_of(st.sampled_from(INT_SPECIALS), st.integers(-5, 40).map(str), st.integers(0, 4).map(str))
    reals = st.one_of(st.sampled_from([0.0, -0.0, 1.0, -1.0, 1e308, -1e308, 1e-308, 1e20, 5e-324,
                                       float("nan"), float("inf"), float("-inf")]),
                      st.floats(-1e4, 1e4))
    num = reals.map(lambda v: f"{v:.17g}" if math.isfinite(v) else repr(v))
    big_index = st.one_of(st.integers(-3, 3), st.sampled_from([-700, 700, 2**31, -2**31 - 1, 2**63, 10**20]))

    def hkl_text(draw) -> bytes:
        n = draw(st.integers(0, 6))
        lines = [f"{draw(big_index)} {draw(big_index)} {draw(big_index)} {draw(num)}" for _ in range(n)]
        if draw(st.booleans()):
            lines.append(draw(st.text(max_size=20)))
        return "\n".join(lines).encode("utf-8", "surrogatepass")

    def fdump(draw) -> bytes:
        dims = [draw(st.one_of(st.integers(-2, 2), st.sampled_from([2**31, -2**31, 700]))) for _ in range(6)]
        header = " ".join(map(str, dims)).encode() + b"\n\f"
        span = [max(0, dims[2 * i + 1] - dims[2 * i] + 2) for i in range(3)]
        count = span[0] * span[1] * span[2]
        import struct

        if count <= 1000:
            values = [draw(reals) for _ in range(min(count, 8))] + [1.0] * max(0, count - 8)
            body = struct.pack(f"<{count}d", *values)
            if draw(st.booleans()):
                body = body[: draw(st.integers(0, len(body)))]
        else:
            body = draw(st.binary(max_size=64))
        return header + body

    def matrix(draw) -> bytes:
        values = [draw(num) for _ in range(draw(st.integers(0, 10)))]
        return (" ".join(values) + "\n").encode()

    def stol(draw) -> bytes:
        rows = [f"{draw(num)} {draw(num)}" for _ in range(draw(st.integers(0, 5)))]
        return ("\n".join(rows) + "\n").encode()

    def sources(draw) -> bytes:
        rows = [" ".join(draw(num) for _ in range(draw(st.integers(1, 6)))) for _ in range(draw(st.integers(0, 4)))]
        return ("\n".join(rows) + "\n").encode()

    def geom(draw) -> bytes:
        vec = st.sampled_from(["x", "y", "-x", "-y", "+0x +0y", "1x", "nan x", "x y"])
        text = GEOM.format(energy=draw(num), res=draw(num), fs=draw(ints), ss=draw(ints), fsvec=draw(vec),
                           ssvec=draw(vec), cx=draw(num), cy=draw(num))
        return text.encode()

    def expt(draw) -> bytes:
        doc = json.loads((ROOT / "tests" / "data" / "two_panels.expt").read_text())
        panel = doc["detector"][0]["panels"][0]
        choice = draw(st.integers(0, 5))
        value = json.loads(json.dumps(draw(reals))) if choice else None
        if choice == 0:
            panel["image_size"] = [draw(st.sampled_from([0, -1, 2**31, 2**40, 8])), 8]
        elif choice == 1:
            panel["pixel_size"] = [value, 0.1]
        elif choice == 2:
            panel["fast_axis"] = [value, 0.0, 0.0]
        elif choice == 3:
            doc["beam"][0]["wavelength"] = value
        elif choice == 4:
            doc["crystal"][0]["real_space_a"] = [value, 0.0, 0.0]
        else:
            panel["origin"] = [value, -5.0, 0.0]
        for p in doc["detector"][0]["panels"]:  # keep the image small
            if p is not panel or choice != 0:
                p["image_size"] = [8, 6]
        text = json.dumps(doc, allow_nan=True)
        if draw(st.booleans()):
            text = text[: draw(st.integers(0, len(text)))]
        return text.encode()

    def smv(draw) -> bytes:
        size1, size2 = draw(st.sampled_from(["8", "0", "-1", "4294967296", "x", "100000"])), draw(
            st.sampled_from(["8", "3", "2147483648"]))
        extra = draw(st.sampled_from(["", "PIXEL_SIZE=nan;\n", "DISTANCE=-5;\n", "WAVELENGTH=0;\n",
                                      "BEAM_CENTER_X=1e308;\n", "HEADER_BYTES=99999999;\n"]))
        head = (f"{{\nHEADER_BYTES=512;\nDIM=2;\nBYTE_ORDER=little_endian;\nTYPE=unsigned_short;\nSIZE1={size1};\n"
                f"SIZE2={size2};\n{extra}}}\f").encode()
        head = head + b" " * max(0, 512 - len(head))
        return head + draw(st.binary(max_size=160))

    structured = {"-hkl": hkl_text, "-mat": matrix, "-stol": stol, "-4stol": stol, "-Q": stol,
                  "-sourcefile": sources, "-geom": geom, "-expt": expt, "-mask": smv, "-img": smv}
    suffix = {"-hkl": ".hkl", "-pdb": ".pdb", "-mat": ".mat", "-geom": ".geom", "-expt": ".expt",
              "-mask": ".img", "-img": ".img"}

    @st.composite
    def input_file(draw, flag) -> tuple[str, bytes]:
        make = structured.get(flag.name)
        kind = draw(st.integers(0, 9))
        if make is None or kind == 0:
            data = draw(st.binary(max_size=300))
        else:
            data = make(draw)
        ending = suffix.get(flag.name, ".txt")
        if flag.name == "-hkl" and kind == 1:
            ending = draw(st.sampled_from([".mtz", ".cif"]))
        return f"in{flag.name.lstrip('-')}{ending}", data

    @st.composite
    def cases(draw) -> Case:
        case = Case(argv=list(BASE))
        size = draw(st.sampled_from(["8", "12", "24", "1", "5"]))
        case.argv += ["-detpixels", size]
        if draw(st.integers(0, 3)) == 0:  # drop one of the base flags with its values
            starts = [i for i, t in enumerate(case.argv) if t.startswith("-") and t not in ("-0", "-1")]
            i = draw(st.sampled_from(starts))
            j = next((k for k in starts if k > i), len(case.argv))
            del case.argv[i:j]
        if draw(st.integers(0, 5)) == 0:  # an Fdump.bin in the folder, read when no -hkl is given
            case.files["Fdump.bin"] = fdump(draw)
            case.argv = [t for t in case.argv]
            if "-default_F" in case.argv:
                i = case.argv.index("-default_F")
                del case.argv[i:i + 2]
        if draw(st.booleans()):
            case.files["target.out"] = b"keep me\n"
            case.symlinks["link.out"] = "target.out"
        if draw(st.booleans()):
            case.dirs.append("a_dir")
        drawable = [f for f in FLAGS if f.name not in NOT_DRAWN]
        for _ in range(draw(st.integers(0, 5))):
            flag = draw(st.sampled_from(drawable))
            spelled = draw(st.sampled_from(flag.names))
            n = flag.nargs
            if flag.min_values is not None and draw(st.booleans()):
                n = draw(st.integers(flag.min_values, flag.nargs))
            if n and draw(st.integers(0, 12)) == 0:
                n -= 1  # one value missing
            values: list[str] = []
            for _ in range(n):
                if flag.kind is Kind.FLOAT:
                    values.append(draw(floats) if not flag.keywords or draw(st.booleans())
                                  else draw(st.sampled_from(flag.keyword_names)))
                elif flag.kind in (Kind.INT, Kind.COUNT):
                    values.append(draw(ints))
                elif flag.kind is Kind.KEYWORD:
                    values.append(draw(st.sampled_from([*flag.keyword_names, "bogus", ""])))
                elif flag.kind is Kind.TEXT:
                    values.append(draw(st.text(st.characters(blacklist_categories=("Cs",),
                                                             blacklist_characters="\0"), max_size=8)))
                elif flag.kind is Kind.PATH:
                    pick = draw(st.integers(0, 9))
                    if pick == 0:
                        values.append(draw(st.sampled_from(["/dev/zero", "/dev/null", "a_dir", "no_such_file",
                                                            "float.bin", "target.out"])))
                        if values[-1] == "a_dir" and "a_dir" not in case.dirs:
                            case.dirs.append("a_dir")
                    else:
                        name, data = draw(input_file(flag))
                        case.files[name] = data
                        values.append(name)
                elif flag.kind is Kind.OUTPATH:
                    pool = OUTPUT_NAMES + sorted(case.files)
                    values.append(draw(st.sampled_from(pool)))
                else:
                    values.append(draw(floats))
            case.argv += [spelled, *values]
        return case

    return cases()


# --------------------------------------------------------------------------- checks

ANY_FLAG = re.compile(r"(?<![\w-])(--?[A-Za-z][\w-]*)")


def named_things(argv: list[str], files: list[str]) -> set[str]:
    """The files an error message may name: those of the folder and every path-like value of ``argv``."""
    names = {Path(f).name for f in files}
    names |= {t for t in argv if not t.startswith("-") and ("/" in t or "." in t) and len(t) > 2}
    return names


def names_one(line: str, files: set[str], argv: list[str] = ()) -> bool:
    """True when ``line`` names a flag (a ``-name`` token of the flag table), one of ``files``, or
    quotes an argument of ``argv`` (a stray word: ``unexpected argument 'x'``)."""
    from pybragg.flags.table import lookup

    if any(lookup(token) is not None for token in ANY_FLAG.findall(line)):
        return True
    if any(name in line for name in files):
        return True
    return any(repr(token) in line for token in argv if token)


SANITIZER = ("ERROR: AddressSanitizer", "runtime error:", "ERROR: LeakSanitizer", "UndefinedBehaviorSanitizer")


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "serve":
        serve([e for e in sys.argv[2].split(",") if e])
    else:
        sys.stderr.write("usage: python tests/fuzz_cases.py serve ENGINE[,ENGINE...]\n")
        raise SystemExit(2)


if __name__ == "__main__":
    main()
