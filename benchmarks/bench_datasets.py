"""Throughput of datasets (``pybragg series``/``stills``) on Dask, and what it projects to a cluster.

    python benchmarks/bench_datasets.py            # a series of 48 frames of 256 x 256 pixels
    python benchmarks/bench_datasets.py --quick    # 16 frames of 128 x 128, for a smoke test
    python benchmarks/bench_datasets.py --json out.json

Measured here, on this machine:

1. frames/s of a series against the number of local workers (1, 2, all cores; each worker one
   task slot with cores/workers engine threads), after the cluster has started, and the start-up;
2. the overhead of a series against the same renders done in one process through the Python API
   (``Simulator(...).run()`` per frame with every core, the frame turned into its stored form), in
   wall-clock time and in CPU time (the client, its scheduler and every worker process counted;
   CPU time is the fairer measure on a machine that others share);
3. the scheduler's overhead per task (no-op tasks through the same bounded window the datasets use)
   and the writer's cost per frame (the client's share of every frame);
4. on paper: the throughput of N nodes, min(N x per-node rate, 1 / scheduler overhead per task,
   1 / writer cost per frame), and the batch size (frames per task) that keeps the scheduler out
   of the way.

Nothing here asserts a speed.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np


def flags(pixels: int) -> list[str]:
    return ["-cell", "100", "100", "100", "90", "90", "90", "-misset", "10", "20", "30", "-default_F", "100",
            "-N", "10", "-detpixels", str(pixels), "-distance", "100", "-oversample", "2", "-mosaic", "0.3",
            "-mosaic_dom", "4", "-seed", "1", "-osc", "0.1", "-phisteps", "2"]


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover
        return os.cpu_count() or 1


def in_process(job, threads: int) -> tuple[float, float]:
    """The same frames rendered in this process, one after the other: (seconds, CPU seconds)."""
    from pybragg.datasets.worker import render_one

    shared = job.shared()
    start, cpu = time.perf_counter(), time.process_time()
    for i in range(job.count):
        task, _ = job.frame(i)
        render_one(task, shared, threads=threads)
    return time.perf_counter() - start, time.process_time() - cpu


def _cpu() -> float:
    return time.process_time()


def series_run(job, client, folder: str, tag: str) -> tuple[object, float]:
    """A series on ``client``: its summary and the CPU seconds it cost (client, scheduler, workers)."""
    from pybragg.datasets.runner import run_job
    from pybragg.datasets.store import open_store

    store = open_store(job, os.path.join(folder, f"{tag}.nxs"), False)
    before = sum(client.run(_cpu).values()) + time.process_time()
    try:
        summary = run_job(job, store, client=client)
    finally:
        store.close()
    after = sum(client.run(_cpu).values()) + time.process_time()
    return summary, after - before


def noop(x: int) -> int:
    return x


def scheduler_overhead(client, n: int, window: int) -> float:
    """Seconds per no-op task through a bounded window of ``window`` tasks in flight."""
    from distributed import as_completed

    ac = as_completed(loop=client.loop)
    it = iter(range(n))
    start = time.perf_counter()
    for _ in range(window):
        ac.add(client.submit(noop, next(it), pure=False))
    for _future in ac:
        k = next(it, None)
        if k is not None:
            ac.add(client.submit(noop, k, pure=False))
    return (time.perf_counter() - start) / n


def writer_cost(job, folder: str, n: int, tag: str = "writer") -> float:
    """Seconds the client spends writing one frame (data, truth, completion record, two flushes)."""
    from pybragg.datasets.store import open_store
    from pybragg.datasets.worker import FramePayload

    shape = job.shape
    dtype = np.float32 if job.product == "float" else np.int32
    data = np.ones(shape, dtype=dtype)
    store = open_store(job, os.path.join(folder, f"{tag}.nxs"), False)
    try:
        rows = [job.frame(i)[1] for i in range(min(n, job.count))]
        start = time.perf_counter()
        for i, truth in enumerate(rows):
            store.write([(FramePayload(i, data, None, 0.0, "w", 1, 0.0), truth)])
        return (time.perf_counter() - start) / len(rows)
    finally:
        store.close()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--frames", type=int, default=None)
    p.add_argument("--pixels", type=int, default=None)
    p.add_argument("--repeats", type=int, default=2, help="best of this many runs of each measurement")
    p.add_argument("--json", default=None)
    o = p.parse_args()
    import logging

    from distributed import Client, LocalCluster

    logging.getLogger("distributed").setLevel(logging.WARNING)

    from pybragg.datasets.spec import SERIES, Job

    frames = o.frames or (16 if o.quick else 48)
    pixels = o.pixels or (128 if o.quick else 256)
    n_cores = cores()
    counts = sorted({1, 2, n_cores})
    out: dict[str, object] = {"frames": frames, "pixels": pixels, "cores": n_cores,
                              "load_before": os.getloadavg()[0]}
    print(f"series of {frames} frames, {pixels} x {pixels} pixels, {n_cores} cores "
          f"(load average {os.getloadavg()[0]:.1f}); best of {o.repeats}")
    import dask

    from pybragg.datasets.runner import QUIET_DASK

    dask.config.set(QUIET_DASK)  # the settings of the clusters `pybragg series` starts
    clusters = {}
    try:
        for k in counts:
            t0 = time.perf_counter()
            cluster = LocalCluster(n_workers=k, threads_per_worker=1, processes=True, dashboard_address=":0",
                                   host="127.0.0.1", silence_logs=40)
            clusters[k] = (cluster, Client(cluster, set_as_default=False), time.perf_counter() - t0)
        with tempfile.TemporaryDirectory() as folder:
            job = Job(SERIES, flags(pixels), frames, fmt="nexus", threads=n_cores)
            t_proc = cpu_proc = math.inf
            best: dict[int, object] = {}
            cpu_series: dict[int, float] = {}
            for rep in range(o.repeats):
                t, cpu = in_process(job, n_cores)
                t_proc, cpu_proc = min(t_proc, t), min(cpu_proc, cpu)
                for k in counts:
                    job_k = Job(SERIES, flags(pixels), frames, fmt="nexus", threads=max(1, n_cores // k))
                    summary, cpu = series_run(job_k, clusters[k][1], folder, f"w{k}-{rep}")
                    cpu_series[k] = min(cpu_series.get(k, math.inf), cpu)
                    if k not in best or summary.frames_per_s > best[k].frames_per_s:  # type: ignore[attr-defined]
                        best[k] = summary
            out["in_process_s"] = t_proc
            out["in_process_cpu_s"] = cpu_proc
            print(f"  in one process (Python API, {n_cores} threads): {t_proc:.3g} s, {frames / t_proc:.3g} frames/s "
                  f"({t_proc / frames:.3g} s per frame; {cpu_proc / frames:.3g} CPU s per frame)")
            rates: dict[int, float] = {}
            for k in counts:
                s = best[k]
                rates[k] = s.frames_per_s  # type: ignore[attr-defined]
                extra = cpu_series[k] / cpu_proc - 1.0
                print(f"  {k} worker(s) x {max(1, n_cores // k)} thread(s): {rates[k]:.3g} frames/s "
                      f"({s.rendering_s:.3g} s; cluster start {clusters[k][2]:.2g} s; slots "  # type: ignore[attr-defined]
                      f"{100 * s.busy:.0f}% busy; up to {s.batch} frames per task); "  # type: ignore[attr-defined]
                      f"CPU {cpu_series[k] / frames:.3g} s per frame, {100 * extra:+.1f}% against one process")
                out[f"workers_{k}"] = {"frames_per_s": rates[k], "seconds": s.rendering_s,  # type: ignore[attr-defined]
                                       "startup_s": clusters[k][2], "batch": s.batch,  # type: ignore[attr-defined]
                                       "cpu_s": cpu_series[k], "cpu_overhead": extra}
            top = max(rates.values())
            overhead = (frames / top) / t_proc - 1.0
            out["series_overhead"] = overhead
            print(f"  series (best worker count) against one process: {100 * overhead:+.1f}% in time "
                  f"(goal under 10%; cluster start-up not counted), "
                  f"{100 * min(cpu_series.values()) / cpu_proc - 100:+.1f}% in CPU time (client, scheduler and "
                  "workers together)")
            client = clusters[counts[-1]][1]
            n_noop = 400 if o.quick else 2000
            latency = scheduler_overhead(client, n_noop, 2 * counts[-1])
            per_task = min(scheduler_overhead(client, n_noop, 256) for _ in range(o.repeats))
            out["scheduler_latency_s"] = latency
            out["scheduler_overhead_s"] = per_task
            write = min(writer_cost(job, folder, frames, f"writer{r}") for r in range(o.repeats))
            out["writer_s_per_frame"] = write
        print(f"  scheduler overhead per task: {1e3 * per_task:.3g} ms with 256 in flight "
              f"({1 / per_task:.0f} tasks/s at most); {1e3 * latency:.3g} ms with {2 * counts[-1]} in flight")
        print(f"  writer (client) per frame of {pixels}x{pixels}: {1e3 * write:.3g} ms")
        print("  projected (per-node rate measured here; on paper):")
        print(f"    {'nodes':>6} {'batch 1':>10} {'limit':>10} {'batch 16':>10} {'limit':>10}")
        for nodes in (1, 10, 100, 1000):
            row: dict[str, object] = {}
            for batch in (1, 16):
                limits = {"nodes": nodes * top, "scheduler": batch / per_task, "writer": 1.0 / write}
                which = min(limits, key=limits.get)  # type: ignore[arg-type]
                row[f"batch{batch}"], row[f"limit{batch}"] = limits[which], which
            print(f"    {nodes:>6} {row['batch1']:>10.3g} {row['limit1']:>10} {row['batch16']:>10.3g} "
                  f"{row['limit16']:>10}")
            out[f"projected_{nodes}"] = row
    finally:
        for cluster, client, _ in clusters.values():
            client.close()
            cluster.close()
    out["load_after"] = os.getloadavg()[0]
    if o.json:
        Path(o.json).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
