"""Datasets: rotation series and stills on Dask (pybragg.datasets, ``pybragg series``/``stills``).

What must hold: a series frame is the single render of the same flags at its angle and seed
(float data with -nonoise, counts with noise, SMV and CBF frames); a stills shot is reproduced bit
for bit by one ``pybragg`` run built from its stored truth; the same command gives the same bytes
on 1 or 2 workers; a run killed with SIGKILL leaves a valid file, and ``--resume`` ends with the
file an uninterrupted run writes without rendering a completed frame again; bad input gets one
line and exit code 2 (1 for an unreachable scheduler) and never touches an existing output.

Every dataset is small (32 x 32 or 48 x 48 pixels, 4 to 8 frames); one local Dask cluster of two
worker processes serves the module.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import distributed  # noqa: F401
import h5py
import numpy as np
import pytest

import pybragg
import pybragg.io.frames
from pybragg import datasets
from pybragg.datasets import draws, spec
from pybragg.writers import float32_image

ROOT = Path(__file__).resolve().parents[2]
CELL = ["-cell", "100", "100", "100", "90", "90", "90"]
SMALL = [*CELL, "-default_F", "100", "-N", "5", "-detpixels", "32", "-distance", "80"]
STILL = ["-cell", "70", "80", "90", "90", "95", "90", "-default_F", "100", "-N", "4", "-detpixels", "32",
         "-distance", "60"]


def _env() -> dict[str, str]:
    paths = [str(ROOT), *(p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p)]
    return dict(os.environ, PYTHONPATH=os.pathsep.join(paths), OMP_NUM_THREADS="1")


def _cli(args: list[str], cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pybragg.cli.main", *args], cwd=cwd, env=_env(),
                          capture_output=True, text=True, timeout=timeout, check=False)


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def _render(flags: list[str]):
    return pybragg.from_args(flags, backend="c").run()


def _counts(result, seed: int, noise: bool = True) -> np.ndarray:
    """The counts -cbffile/-nexusfile of a single render hold."""
    from types import SimpleNamespace

    from pybragg.writers import detector_counts

    return detector_counts(result, SimpleNamespace(write_noise=noise, noise_seed=seed))


@pytest.fixture(scope="module")
def client():
    import dask
    from distributed import Client, LocalCluster

    from pybragg.datasets.runner import QUIET_DASK

    with dask.config.set(QUIET_DASK):
        cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                               host="127.0.0.1", silence_logs=40)
    c = Client(cluster, set_as_default=False)
    try:
        yield c
    finally:
        c.close()
        cluster.close()


# --------------------------------------------------------------------------- series


def test_series_float_frames_equal_single_renders(tmp_path: Path, client) -> None:
    flags = [*SMALL, "-phi", "10", "-osc", "0.5", "-nonoise"]
    ds = datasets.series(flags, 4, str(tmp_path / "sweep.nxs"), client=client)
    assert ds.complete.all() and ds.kind == "series" and ds.count == 4
    with h5py.File(ds.path, "r") as f:
        data = f["entry/data/data"]
        assert data.shape == (4, 32, 32) and data.dtype == np.float32
        assert f["entry/definition"][()] == b"NXmx"
        omega = f["entry/sample/transformations/omega"]
        assert np.allclose(omega[()], [10.0, 10.5, 11.0, 11.5])
        assert np.allclose(f["entry/sample/transformations/omega_end"][()], [10.5, 11.0, 11.5, 12.0])
        assert f["entry/instrument/detector/data"].id == data.id  # one dataset, two names (NXmx)
    job = datasets.api._job_from_record(ds.job)
    assert job.frame_flags(2)[-6:] == ["-phi", "11.0", "-osc", "0.5", "-seed", "3"]
    for i in range(4):
        single = _render(job.frame_flags(i))
        assert np.array_equal(ds.frame(i), float32_image(single)), f"frame {i}"
    assert np.allclose(ds.truth["phi"], [10.0, 10.5, 11.0, 11.5])
    assert ds.truth["real_space_vectors"].shape == (3, 3)


def test_series_counts_equal_single_renders_with_noise(tmp_path: Path, client) -> None:
    flags = [*SMALL, "-seed", "100", "-osc", "0.2"]
    ds = datasets.series(flags, 4, str(tmp_path / "sweep.nxs"), client=client)
    assert ds.frame(0).dtype == np.int32
    for i in range(4):
        single = _render([*SMALL, "-seed", str(100 + i), "-osc", "0.2", "-phi", repr(0.2 * i)])
        counts = _counts(single, 100 + i)
        assert np.array_equal(ds.frame(i), counts), f"frame {i}"
        assert counts.sum() > 0
    assert list(ds.truth["seed"]) == [100, 101, 102, 103]


def test_series_smv_frames_are_the_noise_images_of_single_runs(tmp_path: Path, client) -> None:
    flags = [*SMALL, "-seed", "5", "-adc", "10"]
    ds = datasets.series(flags, 4, str(tmp_path / "sweep"), format="smv", client=client)
    assert sorted(p.name for p in (tmp_path / "sweep").iterdir()) == [
        "sweep.log", "sweep_00001.img", "sweep_00002.img", "sweep_00003.img", "sweep_00004.img", "sweep_dataset.h5"]
    # frame 3 (the fourth) against the real command: the same bytes as its -noisefile
    job = datasets.api._job_from_record(ds.job)
    run = _cli([*job.frame_flags(3), "-noisefile", "n.img", "-floatfile", "f.bin", "-intfile", "i.img", "-nopgm"],
               tmp_path)
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "n.img").read_bytes() == Path(ds.frame_path(3)).read_bytes()


def test_series_cbf_frames(tmp_path: Path, client) -> None:
    import pybragg.io.cbf  # noqa: F401
    from pybragg.io.cbf import read_cbf

    flags = [*SMALL, "-seed", "9", "-phi", "30"]
    ds = datasets.series(flags, 3, str(tmp_path / "cbfs"), client=client, name="scan")
    for i in range(3):
        head, pixels = read_cbf(ds.frame_path(i))
        single = _render([*SMALL, "-seed", str(9 + i), "-phi", repr(30 + 0.1 * i), "-osc", "0.1"])
        assert np.array_equal(pixels, _counts(single, 9 + i))
        assert f"# Start_angle {30 + 0.1 * i:.6f} deg." in head
        assert os.path.basename(ds.frame_path(i)) == f"scan_{i + 1:05d}.cbf"
    # the same command writes the same bytes (no wall-clock time stamps)
    again = datasets.series(flags, 3, str(tmp_path / "cbfs2"), client=client, name="scan")
    for i in range(3):
        assert _md5(Path(ds.frame_path(i))) == _md5(Path(again.frame_path(i)))


def test_series_file_reads_as_nxmx(tmp_path: Path, client) -> None:
    import nxmx
    flags = [*SMALL, "-nonoise", "-osc", "0.25", "-phi", "3"]
    ds = datasets.series(flags, 4, str(tmp_path / "s.nxs"), client=client)
    single = _render([*SMALL, "-nonoise", "-osc", "0.25", "-phi", "3"])
    with h5py.File(ds.path, "r") as f:
        entry = nxmx.NXmx(f).entries[0]
        assert entry.definition == "NXmx"
        detector = entry.instruments[0].detectors[0]
        (module,) = detector.modules
        assert tuple(module.data_size) == (32, 32)
        omega = entry.samples[0].depends_on
        assert np.allclose(omega[()].to("deg").magnitude, [3.0, 3.25, 3.5, 3.75])
        assert np.allclose([omega.end[k].to("deg").magnitude for k in range(4)], [3.25, 3.5, 3.75, 4.0])
        axes = nxmx.get_rotation_axes(nxmx.get_dependency_chain(omega))
        R = pybragg.io.frames.lab_to_mcstas(single.geometry.beam, single.geometry.convention)
        assert np.allclose(axes.axes[0], R @ np.array(single.geometry.spindle), atol=1e-12)
        wl = entry.instruments[0].beams[0].incident_wavelength.to("angstrom").magnitude
        assert wl == pytest.approx(1.0)
        assert "start_time" not in f["entry"]  # no wall clock in a dataset: the same bytes every time


# --------------------------------------------------------------------------- stills


VARIED = {"wavelength_jitter": 0.01, "fluence_jitter": 0.2, "size_range_um": (0.02, 0.04), "sase": (0.005, 3)}


def test_stills_reproduced_from_their_truth(tmp_path: Path, client) -> None:
    ds = datasets.stills([*STILL, "-nonoise", "-misset", "5", "6", "7"], 4, 2024, str(tmp_path / "shots.h5"),
                         client=client, **VARIED)
    truth = ds.truth
    assert truth["real_space_vectors"].shape == (4, 3, 3)
    assert truth["wavelength"].shape == (4,) and truth["fluence"].shape == (4,) and truth["seed"].shape == (4,)
    assert truth["spectrum"].shape == (4, 12) and truth["crystal_size"].shape == (4,)
    assert np.allclose(truth["wavelength"], truth["spectrum"].mean(axis=1))
    lengths = np.linalg.norm(truth["real_space_vectors"], axis=2)
    assert np.allclose(lengths, [70, 80, 90])
    with h5py.File(ds.path, "r") as f:
        wl = f["entry/instrument/beam/incident_wavelength"][()]
        assert np.array_equal(wl, truth["wavelength"])
    job = datasets.api._job_from_record(ds.job)
    for i in range(4):
        flags = datasets.reproduce_flags(ds, i, str(tmp_path / "repro"))
        sim = pybragg.from_args(flags, backend="c")
        task, _ = job.frame(i)
        # the configuration a single run builds from the files equals the shot's, field by field
        sim.config.crystal.misset_seed = task.config.crystal.misset_seed  # (unused by a fixed misset)
        assert spec.config_differences(sim.config, task.config) == []
        assert np.array_equal(sim.inputs.sources, task.sources)
        assert np.array_equal(float32_image(sim.run()), ds.frame(i)), f"shot {i}"
    # shots differ from each other
    assert not np.array_equal(ds.frame(0), ds.frame(1))


def test_stills_reproduced_by_the_command(tmp_path: Path, client, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    ds = datasets.stills(STILL, 3, 7, str(tmp_path / "shots.h5"), client=client, wavelength_jitter=0.02)
    show = _cli(["stills", "--reproduce", "1", "--out", "shots.h5", "--into", "repro"], tmp_path)
    assert show.returncode == 0, show.stderr
    line = show.stdout.strip()
    assert line.startswith("pybragg ") and "-mat repro/shot_00002.mat" in line
    run = _cli([*shlex.split(line)[1:], "-floatfile", "f.bin", "-noisefile", "n.img", "-intfile", "i.img",
                "-nopgm"], tmp_path)
    assert run.returncode == 0, run.stderr
    image = np.fromfile(tmp_path / "f.bin", dtype=np.float32).reshape(32, 32)
    single = _render(shlex.split(line)[1:])
    assert np.array_equal(float32_image(single), image)
    assert np.array_equal(_counts(single, int(ds.truth["seed"][1])), ds.frame(1))


def test_stills_pink_spectrum(tmp_path: Path, client) -> None:
    spectrum = tmp_path / "pink.txt"
    spectrum.write_text("# wavelength weight\n0.98 0\n1.00 1\n1.02 0\n")
    ds = datasets.stills([*STILL, "-nonoise"], 2, 3, str(tmp_path / "pink.h5"), client=client,
                         spectrum=str(spectrum), spectrum_samples=8)
    lam = ds.truth["spectrum"]
    assert lam.shape == (2, 8) and np.array_equal(lam[0], lam[1])  # the same spectrum every shot
    assert np.isclose(lam[0].mean(), 1.0) and lam[0].min() > 0.98 and lam[0].max() < 1.02
    flags = datasets.reproduce_flags(ds, 1, str(tmp_path / "r"))
    assert np.array_equal(float32_image(_render(flags)), ds.frame(1))


def test_orientations_are_uniform_on_so3() -> None:
    v = draws.Variations()
    R = np.array([draws.draw_shot(5, i, v, 1.0).rotation for i in range(4000)])
    assert np.allclose(np.einsum("nij,nkj->nik", R, R), np.eye(3), atol=1e-12)
    assert np.allclose(np.linalg.det(R), 1.0)
    # Haar measure: E[R] = 0, E[R_ij^2] = 1/3, trace distributed as 1 + 2 cos(theta), E[tr] = 0
    assert np.abs(R.mean(axis=0)).max() < 0.04
    assert np.abs((R**2).mean(axis=0) - 1 / 3).max() < 0.03
    # the rotation angle's density is (1 - cos theta) / pi: P(theta < pi/2) = (pi/2 - 1) / pi
    theta = np.arccos(np.clip((np.trace(R, axis1=1, axis2=2) - 1) / 2, -1, 1))
    assert abs((theta < np.pi / 2).mean() - (np.pi / 2 - 1) / np.pi) < 0.025
    # every draw comes from (S, i) alone: the same in any order, different for another S
    assert draws.draw_shot(5, 17, v, 1.0) == draws.draw_shot(5, 17, v, 1.0)
    assert draws.draw_shot(6, 17, v, 1.0).quaternion != draws.draw_shot(5, 17, v, 1.0).quaternion
    # turning a variation on does not change the other draws
    jitter = draws.draw_shot(5, 17, draws.Variations(fluence_jitter=0.1), 1.0)
    assert jitter.quaternion == draws.draw_shot(5, 17, v, 1.0).quaternion


def test_mosflm_matrix_round_trips_exactly(tmp_path: Path) -> None:
    from pybragg.io.matrix import read_mosflm_matrix

    axes = ((10.1, 0.3, -2.0), (0.5, 20.2, 1.0), (-1.5, 0.25, 30.3))
    m = draws.mosflm_matrix(axes, 1.3)
    (tmp_path / "m.mat").write_text(draws.format_matrix(m))
    assert np.array_equal(read_mosflm_matrix(tmp_path / "m.mat"), np.array(m))
    recip = np.array(m).T / 1.3  # rows a*, b*, c*
    assert np.allclose(recip @ np.array(axes).T, np.eye(3), atol=1e-14)


# --------------------------------------------------------------------------- determinism and resumption


def test_one_and_two_workers_write_the_same_bytes(tmp_path: Path, client) -> None:
    flags = STILL
    one = datasets.stills(flags, 6, 99, str(tmp_path / "one.h5"), workers=1, fluence_jitter=0.1)
    two = datasets.stills(flags, 6, 99, str(tmp_path / "two.h5"), client=client, fluence_jitter=0.1)
    assert one.summary.workers == 1 and two.summary.workers == 2
    assert len(two.summary.per_worker) == 2  # both workers rendered
    assert _md5(Path(one.path)) == _md5(Path(two.path))
    # a batch of frames per task, submitted in another grouping: the same bytes again
    three = datasets.stills(flags, 6, 99, str(tmp_path / "three.h5"), client=client, fluence_jitter=0.1, batch=4)
    assert _md5(Path(three.path)) == _md5(Path(one.path))


SLOW = [*CELL, "-default_F", "100", "-N", "5", "-detpixels", "64", "-oversample", "5", "-seed", "3",
        "-osc", "0.2", "-nonoise"]


def test_sigkill_then_resume_equals_an_uninterrupted_run(tmp_path: Path, client) -> None:
    import psutil
    out = tmp_path / "killed.nxs"
    log = tmp_path / "killed.nxs.log"
    args = ["series", "--frames", "6", "--out", "killed.nxs", "--workers", "1", "--threads", "1", "--batch", "1",
            "-q", "--", *SLOW]
    proc = subprocess.Popen([sys.executable, "-m", "pybragg.cli.main", *args], cwd=tmp_path, env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    children: list = []
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                break
            try:
                children = [p for p in psutil.Process(proc.pid).children(recursive=True)] or children
            except psutil.Error:
                pass
            if log.exists() and len(log.read_text().splitlines()) >= 2:
                break
            time.sleep(0.05)
        assert proc.poll() is None, f"the run ended before it could be killed: {proc.communicate()[1][-500:]}"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        for child in children:  # the worker processes of the killed run, by pid
            try:
                child.kill()
            except psutil.Error:
                pass
        proc.stdout.close()
        proc.stderr.close()
    # a valid file up to its completed frames
    killed = datasets.open_dataset(str(out))
    done = killed.complete
    first_run = [e["frame"] for e in killed.log()]
    assert 2 <= done.sum() < 6, done
    assert set(np.flatnonzero(done)) <= set(first_run)
    job = datasets.api._job_from_record(killed.job)
    for i in np.flatnonzero(done)[:2]:
        assert np.array_equal(killed.frame(int(i)), float32_image(_render(job.frame_flags(int(i)))))
    # the same command with --resume (here through the API, on the module's cluster): only the missing frames
    resumed = datasets.series(SLOW, 6, str(out), resume=True, client=client)
    assert resumed.summary.skipped == done.sum() and resumed.summary.rendered == 6 - done.sum()
    entries = datasets.open_dataset(str(out)).log()
    runs = sorted({e["run"] for e in entries}, key=lambda r: min(e["written"] for e in entries if e["run"] == r))
    assert len(runs) == 2
    second = [e["frame"] for e in entries if e["run"] == runs[1]]
    assert sorted(second) == sorted(int(i) for i in np.flatnonzero(~done))
    # and ends with the file an uninterrupted run writes
    whole = datasets.series(SLOW, 6, str(tmp_path / "whole.nxs"), client=client)
    assert datasets.open_dataset(str(out)).complete.all()
    assert _md5(out) == _md5(Path(whole.path))


def test_a_failing_frame_is_named_and_the_file_stays_valid(tmp_path: Path, client) -> None:
    from pybragg.datasets.runner import run_job
    from pybragg.datasets.store import open_store

    job = datasets.Job("series", [*SMALL, "-nonoise"], 3, fmt="nexus")
    job.backend = "no-such-engine"  # every worker refuses it
    store = open_store(job, str(tmp_path / "bad.nxs"), False)
    try:
        with pytest.raises(pybragg.PybraggError) as info:
            run_job(job, store, client=client, batch=1)
        assert str(info.value).startswith("frame ") and "no-such-engine" in str(info.value), str(info.value)
    finally:
        store.close()
    assert datasets.open_dataset(str(tmp_path / "bad.nxs")).complete.sum() == 0
    assert pybragg.series is datasets.series and pybragg.stills is datasets.stills  # the package's API


def test_resume_of_a_finished_dataset_renders_nothing(tmp_path: Path, client) -> None:
    out = str(tmp_path / "s.nxs")
    datasets.series([*SMALL, "-nonoise"], 4, out, client=client)
    before = _md5(Path(out))
    again = datasets.series([*SMALL, "-nonoise"], 4, out, client=client, resume=True)
    assert again.summary.rendered == 0 and again.summary.skipped == 4
    assert _md5(Path(out)) == before


def test_torch_engine_frames_equal_its_single_renders() -> None:
    """The worker's path with the torch engine (run here, without a cluster: Dask is the C tests' part)."""
    import torch  # noqa: F401

    from pybragg.datasets.worker import render_frames

    flags = [*CELL, "-default_F", "100", "-N", "5", "-detpixels", "24", "-nonoise", "--backend", "torch"]
    job = datasets.Job("series", flags, 2, fmt="nexus")
    assert job.fingerprint()["engine"] == "torch float64 cpu"
    payloads = render_frames([job.frame(i)[0] for i in range(2)], job.shared())
    for i, payload in enumerate(payloads):
        single = pybragg.from_args(job.frame_flags(i)).run()
        assert single.backend == "torch" and payload.index == i
        assert np.array_equal(payload.data, float32_image(single))


def test_placement_threads_and_devices() -> None:
    """Engine threads fit each host's cores; with GPUs each worker of a host takes its own device."""
    from pybragg.datasets.runner import placement

    class FakeClient:
        def __init__(self, workers, cores, gpus):
            self.workers, self.cores, self.gpus = workers, cores, gpus

        def scheduler_info(self):
            return {"workers": self.workers}

        def run(self, fn, *args):
            name = fn.__name__
            if name == "_cores_here":
                return self.cores
            if name == "_gpus_here":
                return self.gpus
            return {}

    workers = {"tcp://a:1": {"host": "a", "nthreads": 1}, "tcp://a:2": {"host": "a", "nthreads": 1},
               "tcp://b:1": {"host": "b", "nthreads": 4}}
    cores = {"tcp://a:1": 16, "tcp://a:2": 16, "tcp://b:1": 8}
    job = datasets.Job("series", SMALL, 2, fmt="nexus")
    plan, n, slots, _ = placement(FakeClient(workers, cores, {}), job)
    assert (n, slots) == (3, 6)
    assert plan == {"tcp://a:1": (8, "cpu"), "tcp://a:2": (8, "cpu"), "tcp://b:1": (2, "cpu")}
    job.device = "cuda"
    plan, _, _, _ = placement(FakeClient(workers, cores, {a: 2 for a in workers}), job)
    assert [plan[a][1] for a in sorted(plan)] == ["cuda:0", "cuda:1", "cuda:0"]
    job.threads = 3
    plan, _, _, _ = placement(FakeClient(workers, cores, {}), job)
    assert {t for t, _ in plan.values()} == {3}


# --------------------------------------------------------------------------- bad input


def _main(args: list[str], capsys) -> tuple[int, str]:
    from pybragg.cli.main import main

    code = main(args)
    return code, capsys.readouterr().err


def test_bad_input(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    code, err = _main(["series", "--frames", "0", "--out", "a.nxs", "--", *SMALL], capsys)
    assert code == 2 and err.count("\n") == 1 and "--frames" in err
    code, err = _main(["stills", "--shots", "3", "--out", "a.h5", "--", *SMALL], capsys)
    assert code == 2 and "--seed" in err
    code, err = _main(["series", "--frames", "3", "--out", "a.nxs", *SMALL], capsys)
    assert code == 2 and "'--'" in err
    code, err = _main(["series", "--frames", "3", "--out", "a.nxs", "--", *SMALL, "-bogus"], capsys)
    assert code == 2 and "-bogus" in err
    code, err = _main(["series", "--frames", "3", "--out", "a.nxs", "--format", "cbf", "--", *SMALL], capsys)
    assert code == 2 and "HDF5" in err
    code, err = _main(["stills", "--shots", "3", "--seed", "1", "--out", "b.h5", "--sase", "0.01", "2.5", "--",
                       *SMALL], capsys)
    assert code == 2 and "--sase" in err
    assert sorted(os.listdir(tmp_path)) == []


def test_existing_output_is_never_overwritten(tmp_path: Path, capsys, monkeypatch, client) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "taken.nxs").write_bytes(b"not a dataset")
    code, err = _main(["series", "--frames", "2", "--out", "taken.nxs", "--", *SMALL], capsys)
    assert code == 2 and "--resume" in err and err.count("\n") == 1
    assert (tmp_path / "taken.nxs").read_bytes() == b"not a dataset"
    code, err = _main(["series", "--frames", "2", "--out", "taken.nxs", "--resume", "--", *SMALL], capsys)
    assert code == 1 and "taken.nxs" in err
    assert (tmp_path / "taken.nxs").read_bytes() == b"not a dataset"
    # a resume against a file made by different flags: refused, naming the first difference
    datasets.series([*SMALL, "-nonoise"], 2, str(tmp_path / "made.nxs"), client=client)
    before = _md5(tmp_path / "made.nxs")
    changed = [*SMALL[:-4], "-N", "6", "-distance", "80", "-nonoise"]
    code, err = _main(["series", "--frames", "2", "--out", "made.nxs", "--resume", "--", *changed], capsys)
    assert code == 2 and "crystal.N (-N" in err and "5 5 5 there, 6 6 6 here" in err
    code, err = _main(["series", "--frames", "3", "--out", "made.nxs", "--resume", "--", *SMALL, "-nonoise"], capsys)
    assert code == 2 and "count is 2 there, 3 here" in err
    assert _md5(tmp_path / "made.nxs") == before


def test_unreachable_scheduler_fails_within_seconds(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    start = time.monotonic()
    code, err = _main(["series", "--frames", "2", "--out", "a.nxs", "--scheduler", f"tcp://127.0.0.1:{port}",
                       "--connect-timeout", "2", "--", *SMALL], capsys)
    assert time.monotonic() - start < 15
    assert code == 1 and "cannot reach the Dask scheduler" in err and err.count("\n") == 1
    assert os.listdir(tmp_path) == []  # the scheduler is reached before any file is made


def test_progress_and_summary(tmp_path: Path, client) -> None:
    import io

    stream = io.StringIO()
    ds = datasets.series([*SMALL, "-nonoise"], 4, str(tmp_path / "p.nxs"), client=client, progress=stream)
    text = stream.getvalue()
    assert "4/4 frames" in text and "frames/s" in text
    summary = ds.summary.text()
    assert "4 frames rendered" in summary and "frames/s" in summary and "2 worker(s)" in summary
    entries = ds.log()
    assert sorted(e["frame"] for e in entries) == [0, 1, 2, 3]
    assert all(e["seconds"] > 0 for e in entries)
    assert json.loads(json.dumps(ds.job))["fingerprint"]["count"] == 4


def test_a_lost_task_is_rendered_again(tmp_path: Path, client, monkeypatch) -> None:
    """A task the scheduler cancels (its worker or its scattered inputs went away) is resubmitted with
    the inputs sent again, up to MAX_LOST_RETRIES times; the frames are those of a clean run."""
    from pybragg.datasets import runner

    submit = type(client).submit
    cancelled: list[str] = []

    def losing_submit(self, *args, **kwargs):
        future = submit(self, *args, **kwargs)
        if len(cancelled) < 2:  # the first two tasks are lost
            cancelled.append(future.key)
            self.cancel(future)
        return future

    monkeypatch.setattr(type(client), "submit", losing_submit)
    ds = datasets.series([*SMALL, "-nonoise"], 3, str(tmp_path / "lost.nxs"), client=client, batch=1)
    assert len(cancelled) == 2 and np.all(ds.complete)
    for i in range(3):
        assert np.array_equal(ds.frame(i), float32_image(_render(datasets.api._job_from_record(ds.job).frame_flags(i))))
    monkeypatch.setattr(runner, "MAX_LOST_RETRIES", 1)
    cancelled.clear()
    with pytest.raises(pybragg.PybraggError, match=r"^frame \d: the task was lost 2 times"):
        datasets.series([*SMALL, "-nonoise"], 3, str(tmp_path / "lost2.nxs"), client=client, batch=1)


def test_stills_on_a_multipanel_geometry_file(tmp_path: Path, client) -> None:
    """-geom panels travel in the job record; each shot is the single render of its flags."""
    geom = ROOT.parent / "shared" / "golden-multipanel" / "mp_two_panels" / "detector.geom"
    flags = ["-cell", "100", "100", "100", "90", "90", "90", "-default_F", "100", "-N", "3", "-geom", str(geom),
             "-nonoise"]
    ds = datasets.stills(flags, 2, 5, str(tmp_path / "panels.h5"), client=client)
    assert ds.complete.all() and ds.frame(0).shape == (128, 96)
    single = _render(ds.reproduce_flags(1, str(tmp_path / "repro")))
    assert np.array_equal(ds.frame(1), float32_image(single))
