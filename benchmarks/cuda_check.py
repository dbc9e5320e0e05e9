"""The torch engine on a GPU: golden suite and timings in one prepared run.

    python benchmarks/cuda_check.py                      # golden at ../shared/golden, device cuda
    python benchmarks/cuda_check.py --golden DIR --device cuda --out report.json

1. Renders every golden case with ``--backend torch`` on the device in float64
   and float32 and holds the float image to the bars of the golden README.
2. Times the whole Pilatus frame and a 1024 x 1024 case with the torch engine on
   the device (float64, float32) against the C engine on this machine's CPUs,
   and reports the device's peak memory.
3. Renders 16 stills (random orientations, wavelengths and fluences) of 64 x 64 and
   256 x 256 pixels in one batched kernel pass (``pybragg.engines.torch.batch``) and
   one by one, checks that every shot's image is the same, and times both.
Exit status 1 when a golden case or a batched shot fails.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

BARS = {"float64": (1e-5, 0.999999), "float32": (2e-3, 0.9999)}


def case_args(golden: Path, name: str, data: dict) -> list[str]:
    args = [a for a in data["args"] if a != "@OUT"]
    if name == "misset_random":  # see tests/golden.py SUBSTRING_EQUIVALENTS
        i = args.index("random")
        args[i - 1:i + 3] = ["-misset", "4242", "0", "100"]
    return [str(golden / a) if a.startswith("inputs/") else a for a in args]


def check_golden(golden: Path, device: str) -> tuple[list[dict], int]:
    import pybragg

    cases = json.loads((golden / "manifest.json").read_text())["cases"]
    rows, failures = [], 0
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)  # -hkl may leave Fdump.bin behind
        for name, data in sorted(cases.items()):
            ref = np.frombuffer(gzip.decompress((golden / name / "float.bin.gz").read_bytes()), dtype="<f4")
            for dtype in ("float64", "float32"):
                start = time.perf_counter()
                sim = pybragg.from_args(case_args(golden, name, data), backend="torch", dtype=dtype,
                                                  device=device, notice=print)
                image = sim.run().image.astype(np.float64).ravel()
                seconds = time.perf_counter() - start
                tol, corr_min = BARS[dtype]
                rel = float(np.abs(image - ref).max() / np.abs(ref).max())
                corr = float(np.corrcoef(image, ref)[0, 1]) if ref.std() > 0 else 1.0
                ok = sim.backend == "torch" and rel <= tol and corr >= corr_min
                failures += not ok
                rows.append({"case": name, "dtype": dtype, "ok": ok, "max_rel": rel, "corr": corr,
                             "seconds": seconds})
                print(f"{'ok  ' if ok else 'FAIL'} {name:<28} {dtype}  max|d|/max {rel:.2e}  corr {corr:.9f}"
                      f"  {seconds:.3f} s", flush=True)
    return rows, failures


def timings(golden: Path, device: str) -> list[dict]:
    import torch

    import pybragg

    pilatus = json.loads((golden / "manifest.json").read_text())["cases"]["pilatus_roi"]
    frame = case_args(golden, "pilatus_roi", pilatus)
    i = frame.index("-roi")
    frame = frame[:i] + frame[i + 5:]
    simple = ["-cell", "100", "100", "100", "90", "90", "90", "-misset", "10", "20", "30", "-default_F", "100",
              "-N", "5", "-lambda", "1", "-distance", "100", "-detpixels", "1024", "-pixel", "0.1"]
    out = []
    for label, args in (("pilatus_frame", frame), ("simple_1024", simple)):
        c = pybragg.from_args(args, backend="c")
        c.run()
        t_c = min(c.run().seconds for _ in range(2))
        row = {"case": label, "c_cpu_seconds": t_c, "cpu_threads": os.cpu_count()}
        for dtype in ("float64", "float32"):
            sim = pybragg.from_args(args, backend="torch", dtype=dtype, device=device)
            sim.run()  # warm-up
            torch.cuda.reset_peak_memory_stats()
            t = min(sim.run().seconds for _ in range(3))
            row[f"torch_{dtype}_seconds"] = t
            row[f"torch_{dtype}_vs_c"] = t / t_c
            row[f"torch_{dtype}_peak_gib"] = torch.cuda.max_memory_allocated() / 2**30
        out.append(row)
        print(json.dumps(row), flush=True)
    return out


def batched_stills(device: str) -> tuple[list[dict], int]:
    """Batched against one-by-one stills on the device: equality and time per shot."""
    import pybragg
    from pybragg.engines.torch import batch

    rng = np.random.default_rng(7)
    rows, failures = [], 0
    for side in (64, 256):
        base = ["-cell", "79", "79", "38", "90", "90", "90", "-default_F", "100", "-N", "8", "-distance", "100",
                "-detpixels", str(side), "-pixel", "0.2", "-oversample", "1"]
        jobs = []
        for _ in range(16):
            args = base + ["-misset", *(f"{a:.4f}" for a in rng.uniform(-180, 180, 3)),
                           "-lambda", f"{rng.uniform(0.98, 1.02):.5f}", "-fluence", f"{rng.uniform(0.5, 1.5) * 1e24:.4e}"]
            sim = pybragg.from_args(args, backend="torch", device=device)
            jobs.append((sim.config, sim.inputs))
        for dtype in ("float64", "float32"):
            batch.render_results(jobs[:2], dtype=dtype, device=device)  # warm-up
            start = time.perf_counter()
            batched = batch.render_results(jobs, dtype=dtype, device=device)
            t_batch = (time.perf_counter() - start) / len(jobs)
            start = time.perf_counter()
            singles = [pybragg.Simulator(c, i, backend="torch", dtype=dtype, device=device).run() for c, i in jobs]
            t_single = (time.perf_counter() - start) / len(jobs)
            same = batched is not None and all(np.array_equal(b.image, s.image) for b, s in zip(batched, singles))
            failures += not same
            row = {"side": side, "dtype": dtype, "shots": len(jobs), "identical": same,
                   "batched_seconds_per_shot": t_batch, "single_seconds_per_shot": t_single,
                   "speedup": t_single / t_batch}
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows, failures


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--golden", default=str(ROOT.parent / "shared" / "golden"))
    p.add_argument("--device", default="cuda")
    p.add_argument("--out", default=None, help="write the report as JSON here")
    o = p.parse_args()
    import torch

    print(f"torch {torch.__version__}, cuda available: {torch.cuda.is_available()}", flush=True)
    if o.device.startswith("cuda"):
        if not torch.cuda.is_available():
            print("no CUDA device", file=sys.stderr)
            return 2
        print(f"device: {torch.cuda.get_device_name()}", flush=True)
    golden = Path(o.golden).resolve()
    rows, failures = check_golden(golden, o.device)
    stills, stills_failures = batched_stills(o.device)
    report = {"golden": rows, "failures": failures + stills_failures, "batched_stills": stills,
              "timings": timings(golden, o.device) if o.device.startswith("cuda") else []}
    print(f"golden: {len(rows) - failures} of {len(rows)} renders within the bars; batched stills: "
          f"{len(stills) - stills_failures} of {len(stills)} identical to single renders", flush=True)
    failures += stills_failures
    if o.out:
        Path(o.out).write_text(json.dumps(report, indent=1))
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
