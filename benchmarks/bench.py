"""Timing of pybragg's engines, printed as ratios measured in one run.

    python benchmarks/bench.py                 # C engine and torch (CPU) on the standard cases
    python benchmarks/bench.py --reference /tmp/nanoBragg   # also a private build of the reference
    python benchmarks/bench.py --quick         # smaller frames, for a smoke test
    python benchmarks/bench.py --device cuda   # torch on a GPU as well

Cases: the whole Pilatus frame (the golden ``pilatus_roi`` case without
``-roi``: 2463x2527 pixels, 10 phi steps), a 1024x1024 simple case, and a
mosaic-and-divergence case.  Also a scaling series (cost against pixels x
sub-pixels x sources x phi steps x domains) and the C engine's 1 -> 2 thread
speed-up.  Every measurement runs in a fresh process; "wall" is the whole
command (start-up, input files, outputs), "render" the engine alone, "peak" the
process's maximum resident memory.  Nothing here asserts a speed: read the ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT.parent / "shared" / "golden"


def golden_args(name: str) -> list[str]:
    """A golden case's arguments with input paths made absolute and without outputs."""
    case = json.loads((GOLDEN / "manifest.json").read_text())["cases"][name]
    args = [a for a in case["args"] if a != "@OUT"]
    return [str(GOLDEN / a) if a.startswith("inputs/") else a for a in args]


def without(args: list[str], flag: str, nvalues: int) -> list[str]:
    if flag not in args:
        return args
    i = args.index(flag)
    return args[:i] + args[i + 1 + nvalues:]


def cases(quick: bool) -> dict[str, list[str]]:
    cell = ["-cell", "100", "100", "100", "90", "90", "90", "-misset", "10", "20", "30", "-default_F", "100"]
    pilatus = without(golden_args("pilatus_roi"), "-roi", 4)
    if quick:
        pilatus += ["-roi", "0", "2462", "1200", "1299"]
    n = "256" if quick else "1024"
    return {
        "pilatus_frame": pilatus,
        f"simple_{n}": cell + ["-N", "5", "-lambda", "1", "-distance", "100", "-detpixels", n, "-pixel", "0.1"],
        "mosaic_divergence": cell + ["-N", "10", "-lambda", "1", "-distance", "100", "-detpixels",
                                     "128" if quick else "384", "-pixel", "0.1", "-mosaic", "0.5",
                                     "-mosaic_dom", "10", "-divergence", "1", "-divsteps", "3",
                                     "-dispersion", "1", "-dispsteps", "2"],
    }


# Each factor of pixels x sub-pixels x sources x phi steps x domains swept from 1x to 8x
# (the others at 1), on a 1024 x 1024 detector with a 20-cell crystal (large enough that
# the per-run set-up is a small part of the time).
SCALING_BASE = ["-cell", "100", "100", "100", "90", "90", "90", "-misset", "10", "20", "30", "-default_F", "100",
                "-N", "20", "-lambda", "1", "-distance", "100", "-pixel", "0.1"]
SIDE = 1024
SCALING = {
    "pixels": lambda k: ["-detpixels", str(round(SIDE * k ** 0.5)), "-oversample", "1"],
    "sub-pixels": lambda k: ["-detpixels", str(SIDE), "-oversample", str(round(k ** 0.5))],
    # (a dispersion asks for at least 2 wavelengths, as in the reference: 1 source goes without)
    "sources": lambda k: ["-detpixels", str(SIDE), "-oversample", "1"]
    + (["-dispersion", "1", "-dispsteps", str(k)] if k > 1 else []),
    "phi steps": lambda k: ["-detpixels", str(SIDE), "-oversample", "1", "-osc", "0.1", "-phisteps", str(k)],
    "domains": lambda k: ["-detpixels", str(SIDE), "-oversample", "1", "-mosaic", "0.5", "-mosaic_dom", str(k)],
}
# sub-pixels come in squares; orientations are cheap next to the per-pixel set-up, so go further
SCALING_STEPS = {"sub-pixels": (1, 4, 9, 16), "phi steps": (1, 4, 16, 64), "domains": (1, 4, 16, 64)}


def measure(command: list[str], env: dict[str, str], repeat: int = 1) -> dict[str, float]:
    """Best of ``repeat`` runs of a command, each in a fresh scratch folder and process.

    Returns the smallest wall and render seconds and the largest peak memory (MiB):
    on a shared machine the fastest of a few runs is the steadiest estimate of the
    cost itself (as ``timeit`` reports).
    """
    runs = [_measure_once(command, env) for _ in range(max(1, repeat))]
    return {"wall": min(r["wall"] for r in runs), "render": min(r["render"] for r in runs),
            "peak_mib": max(r["peak_mib"] for r in runs)}


def _measure_once(command: list[str], env: dict[str, str]) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        out_path, err_path = Path(tmp) / "stdout.txt", Path(tmp) / "stderr.txt"
        with open(out_path, "w") as out, open(err_path, "w") as err:
            start = time.perf_counter()
            proc = subprocess.Popen(command, cwd=tmp, env=env, stdout=out, stderr=err)
            _, status, usage = os.wait4(proc.pid, 0)
            wall = time.perf_counter() - start
            proc.returncode = os.waitstatus_to_exitcode(status)
        stdout, stderr = out_path.read_text(), err_path.read_text()
    if proc.returncode != 0:
        raise RuntimeError(f"{command[0]} failed: {stderr.strip()[-500:]}")
    render = None
    for line in stdout.splitlines():
        if "rendered in" in line:
            render = float(line.split("rendered in")[1].split()[0])
    return {"wall": wall, "render": render if render is not None else wall, "peak_mib": usage.ru_maxrss / 1024.0}


def pybragg(args: list[str], backend: str, dtype: str = "float64", device: str | None = None,
            threads: int = 2, python: str | None = None) -> list[str]:
    exe = Path(python or sys.executable).parent / "pybragg"
    cmd = [str(exe)] if exe.exists() else [python or sys.executable, "-m", "pybragg.cli.main"]
    cmd += ["--backend", backend, "--dtype", dtype, "--threads", str(threads)]
    if device:
        cmd += ["--device", device]
    return cmd + args + ["-nonoise", "-nopgm", "-floatfile", "float.bin", "-intfile", "int.img"]


def environment(threads: int) -> dict[str, str]:
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = str(threads)
    return env


def row(label: str, values: dict[str, float], base: float | None = None, key: str = "wall") -> str:
    ratio = f"{values[key] / base:8.2f}x" if base else " " * 9
    return (f"  {label:<38} wall {values['wall']:8.2f} s  render {values['render']:8.2f} s  {ratio}"
            f"  peak {values['peak_mib']:7.0f} MiB")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="smaller frames")
    p.add_argument("--reference", help="path to a private build of nanoBragg to time on the same cases")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--baseline", metavar="PYTHON",
                   help="the Python of another environment with pybragg installed (an earlier commit): "
                        "its C engine is timed on the same cases, in turn with this one")
    p.add_argument("--device", default=None, help="also time torch on this device (e.g. cuda)")
    p.add_argument("--no-torch", action="store_true", help="skip the torch engine")
    p.add_argument("--skip-scaling", action="store_true")
    p.add_argument("--skip-cases", action="store_true", help="only the scaling and thread series")
    p.add_argument("--cases", help="comma-separated names of the cases to run (default: all)")
    p.add_argument("--repeat", type=int, default=None,
                   help="runs of every command, the fastest counts (default 3, 1 with --quick)")
    o = p.parse_args()
    env = environment(o.threads)
    rep = o.repeat if o.repeat is not None else (1 if o.quick else 3)
    print(f"pybragg benchmark: {os.cpu_count()} cores, {o.threads} threads, {'quick' if o.quick else 'full'}, "
          f"best of {rep} runs of every command")
    results: dict[str, dict] = {}
    selected = {} if o.skip_cases else cases(o.quick)
    if o.cases:
        unknown = set(o.cases.split(",")) - set(selected)
        if unknown:
            p.error(f"--cases: unknown case(s) {', '.join(sorted(unknown))} (one of {', '.join(selected)})")
        selected = {k: v for k, v in selected.items() if k in o.cases.split(",")}
    for name, args in selected.items():
        print(f"\n{name}: {' '.join(a if '/' not in a else Path(a).name for a in args)}")
        c = measure(pybragg(args, "c", threads=o.threads), env, rep)
        results[name] = {"c": c}
        print(row("C engine (float32 image, float64 math)", c))
        if o.baseline:
            b = measure(pybragg(args, "c", threads=o.threads, python=o.baseline), env, rep)
            results[name]["baseline"] = b
            print(row("C engine of --baseline", b))
            print(f"  -> C engine / baseline: render {c['render'] / b['render']:.3f}, wall {c['wall'] / b['wall']:.3f}")
        if o.reference:
            ref = measure([o.reference, *args, "-nonoise", "-nopgm", "-floatfile", "float.bin",
                           "-intfile", "int.img"], env, rep)
            results[name]["reference"] = ref
            print(row("reference nanoBragg", ref))
            print(f"  -> C engine / reference wall time: {c['wall'] / ref['wall']:.3f}"
                  f"  (render only vs reference wall: {c['render'] / ref['wall']:.3f})")
        if not o.no_torch:
            for dtype in ("float64", "float32"):
                t = measure(pybragg(args, "torch", dtype, "cpu", threads=o.threads), env, rep)
                results[name][f"torch_cpu_{dtype}"] = t
                print(row(f"torch CPU {dtype}", t, c["render"], "render"))
            if o.device:
                for dtype in ("float64", "float32"):
                    t = measure(pybragg(args, "torch", dtype, o.device, threads=o.threads), env, rep)
                    results[name][f"torch_{o.device}_{dtype}"] = t
                    print(row(f"torch {o.device} {dtype}", t, c["render"], "render"))
    if not o.skip_scaling:
        print("\nscaling (C engine, render seconds; t = a + b x factor fitted by least squares):")
        for label, flags in SCALING.items():
            steps = SCALING_STEPS.get(label, (1, 2, 4, 8))
            times = [measure(pybragg(SCALING_BASE + flags(k), "c", threads=o.threads), env, rep)["render"]
                     for k in steps]
            slope, intercept = np.polyfit(steps, times, 1)
            fitted = np.polyval([slope, intercept], steps)
            r2 = 1 - float(np.sum((np.array(times) - fitted) ** 2) / np.sum((np.array(times) - np.mean(times)) ** 2))
            series = "  ".join(f"x{k}: {t:.3f} s" for k, t in zip(steps, times, strict=True))
            print(f"  {label:<11} {series}   slope {slope:.4f} s/x, intercept {intercept:.3f} s, R^2 {r2:.4f}")
        print("\nthreads (C engine, render seconds of the Pilatus frame):")
        whole = without(golden_args("pilatus_roi"), "-roi", 4)
        for label, args in (("first 1000 rows", whole + ["-roi", "0", "2462", "0", "999"]), ("whole frame", whole)):
            # one and two threads taken turn about, so that both see the same spells of load
            ones, twos = [], []
            for _ in range(max(rep, 3)):
                ones.append(measure(pybragg(args, "c", threads=1), environment(1))["render"])
                twos.append(measure(pybragg(args, "c", threads=2), environment(2))["render"])
            one, two = min(ones), min(twos)
            print(f"  {label:<15} 1 thread {one:.3f} s, 2 threads {two:.3f} s: speed-up {one / two:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
