"""Running a dataset on Dask: a local cluster, an existing scheduler, or the caller's client.

The client (this process) is the only writer.  It scatters the shared inputs once to every
worker, keeps a bounded window of tasks in flight (two per worker thread, so that workers never
wait and memory holds at most that many frames), writes each finished batch and marks it done,
and submits the next.  Frames are rendered by :func:`pybragg.datasets.worker.render_frames`.

Engine threads: a local cluster gets ``--workers`` processes of one task slot each and gives every
task ``cores // workers`` engine threads; on an existing cluster each worker gets its host's cores
divided by the task slots on that host.  With the torch engine on GPUs, a local cluster starts one
worker per device and each worker renders on its own device.  The C engine's image is the same
for any thread count, so none of this changes a bit of the dataset.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import math
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, TextIO

from pybragg.errors import PybraggError, UsageError

from .spec import Job
from .store import RunLog, Store, open_store, store_exists
from .worker import FramePayload, cores, render_frames

#: seconds to wait for a scheduler to answer
CONNECT_TIMEOUT = 10.0
#: seconds to wait for the first worker of an existing cluster
WORKER_TIMEOUT = 60.0
#: automatic batches: frames per task so that a task lasts about this long ...
TARGET_TASK_S = 0.5
#: ... but no more frames than this, nor more bytes of frames than this, per task
MAX_AUTO_BATCH = 32
#: times a run re-sends its inputs and resubmits frames whose task was lost (cancelled by the
#: scheduler because a worker, or the inputs scattered to it, went away) before it gives up
MAX_LOST_RETRIES = 3
MAX_BATCH_BYTES = 64 << 20
#: Dask settings of the local clusters this module starts: no statistical profiler in the workers
#: (it samples every task's stack every 10 ms) and slower housekeeping ticks.  Idle, a one-worker
#: cluster then costs about a quarter of the CPU time it does with Dask's defaults (measured 0.023
#: against 0.089 CPU seconds per second).  Clusters you bring keep their own settings.
QUIET_DASK = {
    "distributed.worker.profile.enabled": False,
    "distributed.admin.tick.interval": "500ms",
    "distributed.admin.system-monitor.interval": "2s",
    "distributed.worker.memory.monitor-interval": "1s",
}


@dataclass
class RunSummary:
    """Throughput of one run."""

    kind: str
    path: str
    count: int
    rendered: int
    skipped: int
    seconds: float
    workers: int
    slots: int
    threads: int
    scheduler: str
    #: seconds the workers spent rendering, summed
    worker_seconds: float = 0.0
    #: time from the first submission to the first frame back
    first_frame_s: float = 0.0
    #: time to start (or reach) the cluster and scatter the inputs
    startup_s: float = 0.0
    #: most frames in one task
    batch: int = 1
    per_worker: dict[str, int] = field(default_factory=dict)

    @property
    def rendering_s(self) -> float:
        """Seconds from the first submission to the last frame written."""
        return max(self.seconds - self.startup_s, 0.0)

    @property
    def frames_per_s(self) -> float:
        return self.rendered / self.rendering_s if self.rendering_s > 0 else 0.0

    @property
    def busy(self) -> float:
        """Fraction of the task slots' time spent rendering."""
        capacity = self.rendering_s * max(self.slots, 1)
        return self.worker_seconds / capacity if capacity > 0 else 0.0

    def text(self) -> str:
        what = "frames" if self.kind == "series" else "shots"
        done = f"{self.rendered} {what} rendered" + (f", {self.skipped} already done" if self.skipped else "")
        if self.rendered:
            per = self.worker_seconds / self.rendered
            rate = (f"{self.frames_per_s:.3g} {what}/s on {self.workers} worker(s) x "
                    f"{max(self.slots // max(self.workers, 1), 1)} slot(s), {self.threads} engine thread(s) per task, "
                    f"up to {self.batch} frame(s) per task; "
                    f"{per:.3g} s per frame on a worker, slots {100 * self.busy:.0f}% busy")
        else:
            rate = "nothing to render"
        return (f"{self.kind}: {done} in {self.seconds:.3g} s ({self.startup_s:.2g} s to start {self.scheduler}): "
                f"{rate}; {self.path}")


class FrameProgress:
    """A progress bar over frames on a terminal (a line every ``interval`` seconds elsewhere)."""

    def __init__(self, stream: TextIO | None, total: int, done: int, *, interval: float = 10.0, width: int = 30):
        self.stream = stream
        self.total = total
        self.start_done = done
        self.done = done
        self.start = time.monotonic()
        self.tty = bool(stream is not None and getattr(stream, "isatty", lambda: False)())
        self.interval = interval if not self.tty else 0.2
        self.width = width
        self.last = -math.inf
        self.shown = False
        self.closed = False
        self.printed = -1

    def line(self) -> str:
        elapsed = time.monotonic() - self.start
        new = self.done - self.start_done
        rate = new / elapsed if elapsed > 0 else 0.0
        left = (self.total - self.done) / rate if rate > 0 else math.nan
        fraction = self.done / self.total if self.total else 1.0
        filled = int(self.width * fraction)
        eta = f"~{left:.0f} s left" if math.isfinite(left) and self.done < self.total else ""
        return (f"[{'#' * filled}{'.' * (self.width - filled)}] {self.done}/{self.total} frames  "
                f"{rate:.3g} frames/s  {elapsed:.0f} s  {eta}").rstrip()

    def update(self, done: int, force: bool = False) -> None:
        self.done = done
        if self.stream is None:
            return
        now = time.monotonic()
        if not force and now - self.last < self.interval:
            return
        if not self.tty and done == self.printed:
            return
        self.last = now
        self.printed = done
        self.shown = True
        if self.tty:
            self.stream.write("\r" + self.line().ljust(90))
        else:
            self.stream.write(self.line() + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.stream is None or self.closed:
            return
        self.closed = True
        self.update(self.done, force=True)
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


@contextlib.contextmanager
def dask_client(client: Any = None, scheduler: str | None = None, workers: int | None = None,
                connect_timeout: float = CONNECT_TIMEOUT, gpus: int = 0) -> Iterator[tuple[Any, str]]:
    """A Dask client: ``client`` itself, one connected to ``scheduler`` (or
    ``DASK_SCHEDULER_ADDRESS``), or one of a new local cluster of ``workers`` processes."""
    if client is not None:
        yield client, str(getattr(client, "scheduler", None) and client.scheduler.address)
        return
    try:
        from distributed import Client, LocalCluster
    except ImportError as exc:  # pragma: no cover - the [dask] extra
        raise PybraggError("datasets need Dask: pip install 'pybragg[dask]'") from exc
    address = scheduler or os.environ.get("DASK_SCHEDULER_ADDRESS") or None
    if address:
        if workers is not None:
            raise UsageError("--workers starts a local cluster; an existing one (--scheduler) has its own workers")
        try:
            remote = Client(address, timeout=connect_timeout, set_as_default=False)
        except (OSError, TimeoutError, ValueError) as exc:
            raise PybraggError(f"cannot reach the Dask scheduler at {address} within {connect_timeout:g} s "
                               f"({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from exc
        try:
            try:
                remote.wait_for_workers(1, timeout=WORKER_TIMEOUT)
            except (TimeoutError, OSError) as exc:
                raise PybraggError(f"the Dask scheduler at {address} has no worker "
                                   f"(waited {WORKER_TIMEOUT:g} s)") from exc
            yield remote, address
        finally:
            with contextlib.suppress(Exception):
                remote.close()
        return
    n = workers if workers is not None else (gpus or cores())
    if n < 1:
        raise UsageError(f"--workers: at least 1, got {n}")
    import dask

    with dask.config.set(QUIET_DASK):
        cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=":0",
                               silence_logs=logging.ERROR, host="127.0.0.1", protocol="tcp")
        yield from _local(cluster, n)


def _local(cluster: Any, n: int) -> Iterator[tuple[Any, str]]:
    from distributed import Client

    try:
        local = Client(cluster, set_as_default=False)
        try:
            yield local, f"local cluster of {n}"
        finally:
            with contextlib.suppress(Exception):
                local.close()
    finally:
        with contextlib.suppress(Exception):
            cluster.close()


def _cores_here() -> int:
    return cores()


def _gpus_here() -> int:
    try:
        import torch

        return int(torch.cuda.device_count())
    except Exception:  # noqa: BLE001 - no torch, no driver: no GPU
        return 0


def _warm(backend: str) -> int:
    """Import the engine and load its library on a worker (before the clock of the first frame)."""
    from pybragg.engines import ENGINES

    if backend not in ENGINES:  # the frames will say so
        return os.getpid()
    ENGINES[backend].load()
    if backend == "c":
        from pybragg._native import native

        native()
    return os.getpid()


def placement(client: Any, job: Job) -> tuple[dict[str, tuple[int, str | None]], int, int, int]:
    """Engine threads and device of every worker: (plan, workers, slots, threads of the first)."""
    info = client.scheduler_info()["workers"]
    if not info:
        raise PybraggError("the Dask cluster has no worker")
    worker_cores = client.run(_cores_here)
    try:
        client.run(_warm, job.backend)
    except Exception as exc:
        raise PybraggError(f"a worker cannot load the {job.backend} engine: {type(exc).__name__}: {exc}") from exc
    by_host: dict[str, int] = {}
    for address, w in info.items():
        by_host[w.get("host", address)] = by_host.get(w.get("host", address), 0) + int(w.get("nthreads", 1))
    gpus: dict[str, int] = {}
    if job.device and job.device.startswith("cuda"):
        gpus = client.run(_gpus_here)
    plan: dict[str, tuple[int, str | None]] = {}
    rank: dict[str, int] = {}
    for address in sorted(info):
        w = info[address]
        host = w.get("host", address)
        slots_here = by_host[host]
        threads = job.threads or max(1, int(worker_cores.get(address, 1)) // max(slots_here, 1))
        device = job.device
        n_gpu = gpus.get(address, 0)
        if device and device.startswith("cuda") and n_gpu > 1:
            k = rank.get(host, 0)
            rank[host] = k + 1
            device = f"cuda:{k % n_gpu}"
        plan[address] = (threads, device)
    slots = sum(int(w.get("nthreads", 1)) for w in info.values())
    first = plan[min(plan)][0]
    return plan, len(info), slots, first


def run_job(
    job: Job,
    store: Store,
    *,
    client: Any = None,
    scheduler: str | None = None,
    workers: int | None = None,
    batch: int = 0,
    progress: TextIO | None = None,
    window: int | None = None,
    connect_timeout: float = CONNECT_TIMEOUT,
    on_batch: Any = None,
) -> RunSummary:
    """Render every frame of ``job`` that ``store`` lacks, writing them as they come back.

    ``batch``: frames per task; 0 chooses it from the frames' render time (one frame per task
    until the first comes back, then about :data:`TARGET_TASK_S` seconds of frames per task,
    fewer near the end so that every slot keeps work).  How frames are grouped changes no bit.
    """
    if batch < 0:
        raise UsageError(f"--batch: frames per task (0: automatic), got {batch}")
    done = store.done()
    todo = [i for i in range(job.count) if not done[i]]
    skipped = job.count - len(todo)
    run_id = f"{time.strftime('%Y-%m-%dT%H:%M:%S')}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    start = time.monotonic()
    if not todo:
        return RunSummary(job.kind, store.path, job.count, 0, skipped, 0.0, 0, 0, 0, "none")
    gpus = _gpus_here() if job.device and job.device.startswith("cuda") else 0
    log = RunLog(store.log_path, run_id)
    bar = FrameProgress(progress, job.count, skipped)
    try:
        with dask_client(client, scheduler, workers, connect_timeout, gpus=gpus) as (dask, where):
            from distributed import as_completed

            plan, n_workers, slots, threads = placement(dask, job)
            shared_f = dask.scatter(job.shared(), broadcast=True, hash=False)
            plan_f = dask.scatter(plan, broadcast=True, hash=False)
            pending = collections.deque(todo)
            frame_bytes = 4 * job.shape[0] * job.shape[1]
            truth: dict[int, dict[str, Any]] = {}
            in_flight = as_completed(with_results=True, raise_errors=False, loop=dask.loop)
            frames_of: dict[str, list[int]] = {}
            limit = window or max(2, 2 * slots)
            token = f"{os.getpid()}-{int(time.time() * 1000)}"
            summary = RunSummary(job.kind, store.path, job.count, 0, skipped, 0.0, n_workers, slots, threads, where)
            submitted_at = time.monotonic()
            summary.startup_s = submitted_at - start
            bar.start = submitted_at

            def size() -> int:
                if batch:
                    return batch
                if not summary.rendered:
                    return 1
                per_frame = max(summary.worker_seconds / summary.rendered, 1e-6)
                n = min(int(TARGET_TASK_S / per_frame), MAX_AUTO_BATCH, MAX_BATCH_BYTES // max(frame_bytes, 1))
                return max(1, min(n, len(pending) // (2 * max(slots, 1))))

            def submit() -> bool:
                if not pending:
                    return False
                n = min(size(), len(pending))
                indices = [pending.popleft() for _ in range(n)]
                summary.batch = max(summary.batch, n)
                tasks = []
                for i in indices:
                    task, row = job.frame(i)
                    tasks.append(task)
                    truth[i] = row
                future = dask.submit(render_frames, tasks, shared_f, plan_f, key=f"pybragg-{token}-{indices[0]}",
                                     pure=False)
                frames_of[future.key] = indices
                in_flight.add(future)
                return True

            def failed(future: Any, indices: list[int]) -> None:
                try:
                    exc = future.exception()
                except Exception as lost:  # noqa: BLE001 - a cancelled or lost task
                    exc = lost
                what = f"frame {indices[0]}" if len(indices) == 1 else f"frames {indices[0]}..{indices[-1]}"
                if exc is None:  # cancelled by the scheduler, again and again
                    raise PybraggError(f"{what}: the task was lost "
                                       f"{MAX_LOST_RETRIES + 1} times (a worker or the inputs sent to it went away)")
                text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                if isinstance(exc, PybraggError):
                    error = type(exc)(f"{what}: {text}")
                else:
                    error = PybraggError(f"{what}: {type(exc).__name__}: {text}")
                raise error from exc

            for _ in range(limit):
                if not submit():
                    break
            n_done = skipped
            lost_retries = 0
            try:
                for future, payloads in in_flight:
                    indices = frames_of.pop(future.key)
                    if future.status == "cancelled" and lost_retries < MAX_LOST_RETRIES:
                        # lost, not failed: send the inputs again and render these frames anew
                        lost_retries += 1
                        shared_f = dask.scatter(job.shared(), broadcast=True, hash=False)
                        plan_f = dask.scatter(plan, broadcast=True, hash=False)
                        pending.extendleft(reversed(indices))
                        submit()
                        continue
                    if future.status != "finished":
                        failed(future, indices)
                    items: list[tuple[FramePayload, dict[str, Any]]] = [(p, truth.pop(p.index)) for p in payloads]
                    store.write(items)
                    log.frames(payloads)
                    if summary.rendered == 0:
                        summary.first_frame_s = time.monotonic() - submitted_at
                    summary.rendered += len(payloads)
                    for p in payloads:
                        summary.worker_seconds += p.seconds
                        summary.per_worker[p.worker] = summary.per_worker.get(p.worker, 0) + 1
                    n_done += len(payloads)
                    bar.update(n_done)
                    if on_batch is not None:
                        on_batch(payloads)
                    submit()
            finally:
                with contextlib.suppress(Exception):
                    for f in list(in_flight.futures):
                        f.cancel()
            summary.seconds = time.monotonic() - start
            bar.close()
            return summary
    finally:
        if not bar.closed:
            bar.close()
        log.close()



def run_dataset(
    job: Job,
    out: str,
    *,
    resume: bool = False,
    name: str | None = None,
    client: Any = None,
    scheduler: str | None = None,
    workers: int | None = None,
    batch: int = 0,
    progress: TextIO | None = None,
    connect_timeout: float = CONNECT_TIMEOUT,
    interrupted: Any = None,
) -> RunSummary:
    """Make or continue the dataset of ``job`` at ``out`` and render what it lacks.

    The order keeps failures harmless: an existing output is checked (refused without
    ``resume``, compared with ``job`` with it) before any cluster starts; the scheduler is reached
    before a new file is made, so an unreachable one leaves nothing behind.  ``interrupted(store)``
    is called on Ctrl-C before it propagates.
    """
    store = open_store(job, out, resume, name=name) if store_exists(job, out, resume, name=name) else None
    try:
        if store is not None and store.done().all():
            return run_job(job, store)
        gpus = _gpus_here() if job.device and job.device.startswith("cuda") else 0
        with dask_client(client, scheduler, workers, connect_timeout, gpus=gpus) as (dask, _where):
            if store is None:
                store = open_store(job, out, resume, name=name)
            try:
                return run_job(job, store, client=dask, batch=batch, progress=progress)
            except KeyboardInterrupt:
                if interrupted is not None:
                    interrupted(store)
                raise
    finally:
        if store is not None:
            store.close()
