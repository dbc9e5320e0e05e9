"""Datasets on an existing Dask cluster: ``dask scheduler`` and two ``dask worker`` processes on
127.0.0.1 (free ports), started here and stopped by their pids.

The same command gives the same bytes through the external scheduler (``--scheduler ADDRESS``
and ``DASK_SCHEDULER_ADDRESS``) as on a local cluster of one worker.  The workers run in another
folder than the client, where the ``-hkl`` file the flags name (a relative path) does not exist:
the structure factors reach them from the client, never from a path.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import distributed  # noqa: F401
import h5py  # noqa: F401
import pytest

from pybragg import datasets

ROOT = Path(__file__).resolve().parents[2]
FLAGS = ["-hkl", "F.hkl", "-cell", "60", "60", "60", "90", "90", "90", "-N", "3", "-detpixels", "32",
         "-distance", "50"]


def _env() -> dict[str, str]:
    paths = [str(ROOT), *(p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p)]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(paths), OMP_NUM_THREADS="1")
    env.pop("DASK_SCHEDULER_ADDRESS", None)
    return env


def _dask(*args: str) -> list[str]:
    exe = Path(sys.executable).parent / "dask"
    return [str(exe), *args] if exe.exists() else [sys.executable, "-m", "dask", *args]


def _md5(path: str | Path) -> str:
    return hashlib.md5(Path(path).read_bytes()).hexdigest()


@pytest.fixture
def cluster(tmp_path: Path):
    """The address of a scheduler with two single-threaded workers (no nanny), all on 127.0.0.1."""
    from distributed import Client

    where = tmp_path / "workers"
    where.mkdir()
    info = tmp_path / "scheduler.json"
    procs: list[subprocess.Popen] = []
    logs = []
    try:
        log = open(tmp_path / "scheduler.log", "wb")  # noqa: SIM115 - closed in the finally
        logs.append(log)
        procs.append(subprocess.Popen(
            _dask("scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard", "--scheduler-file", str(info)),
            cwd=where, env=_env(), stdout=log, stderr=subprocess.STDOUT))
        deadline = time.monotonic() + 60
        address = None
        while time.monotonic() < deadline and address is None:
            assert procs[0].poll() is None, (tmp_path / "scheduler.log").read_text()
            if info.exists():
                try:
                    address = json.loads(info.read_text())["address"]
                except (ValueError, KeyError):
                    pass
            time.sleep(0.05)
        assert address and address.startswith("tcp://127.0.0.1:"), address
        for k in range(2):
            log = open(tmp_path / f"worker{k}.log", "wb")  # noqa: SIM115 - closed in the finally
            logs.append(log)
            procs.append(subprocess.Popen(
                _dask("worker", address, "--nthreads", "1", "--no-nanny", "--no-dashboard", "--host", "127.0.0.1",
                      "--local-directory", str(where), "--name", f"w{k}"),
                cwd=where, env=_env(), stdout=log, stderr=subprocess.STDOUT))
        with Client(address, timeout=30, set_as_default=False) as client:
            client.wait_for_workers(2, timeout=60)
        yield address
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=10)
        for log in logs:
            log.close()


def test_external_scheduler_gives_the_same_files(tmp_path: Path, cluster: str, monkeypatch) -> None:
    here = tmp_path / "client"
    here.mkdir()
    (here / "F.hkl").write_text("".join(f"{h} {k} {l} {10 + (h * 7 + k * 3 + l) % 13}\n"
                                        for h in range(-6, 7) for k in range(-6, 7) for l in range(-6, 7)))
    monkeypatch.chdir(here)
    monkeypatch.delenv("DASK_SCHEDULER_ADDRESS", raising=False)
    # API, --scheduler address
    remote = datasets.stills(FLAGS, 6, 42, "remote.h5", scheduler=cluster, fluence_jitter=0.1)
    assert remote.summary.workers == 2 and remote.summary.scheduler == cluster
    assert len(remote.summary.per_worker) == 2
    from distributed import Client, LocalCluster

    one = LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=":0", host="127.0.0.1",
                       silence_logs=40)
    client = Client(one, set_as_default=False)
    try:
        local = datasets.stills(FLAGS, 6, 42, "local.h5", client=client, fluence_jitter=0.1)
        assert local.summary.workers == 1
        assert _md5("remote.h5") == _md5("local.h5")
        assert local.frame(3).sum() > 0
        ref = datasets.series([*FLAGS, "-seed", "5"], 4, "sweep_local.nxs", client=client)
    finally:
        client.close()
        one.close()
    # the command line, the scheduler from DASK_SCHEDULER_ADDRESS
    env = dict(_env(), DASK_SCHEDULER_ADDRESS=cluster)
    run = subprocess.run([sys.executable, "-m", "pybragg.cli.main", "series", "--frames", "4", "--out", "sweep.nxs",
                          "--", *FLAGS, "-seed", "5"], cwd=here, env=env, capture_output=True, text=True,
                         timeout=120, check=False)
    assert run.returncode == 0, run.stderr
    assert cluster in run.stdout and "4 frames rendered" in run.stdout
    assert _md5("sweep.nxs") == _md5(ref.path)
