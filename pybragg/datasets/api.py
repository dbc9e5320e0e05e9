"""The Python API of datasets: :func:`series`, :func:`stills`, :class:`Dataset`, :func:`reproduce_flags`.

>>> import pybragg
>>> flags = "-cell 100 100 100 90 90 90 -default_F 100 -N 5 -detpixels 32 -nonoise".split()
>>> ds = pybragg.series(flags, frames=4, out="sweep.nxs")          # doctest: +SKIP
>>> ds.frame(0).shape, ds.truth["phi"]                               # doctest: +SKIP
((32, 32), array([0. , 0.1, 0.2, 0.3]))

Pass ``client=`` a :class:`distributed.Client` you already have (a notebook's, a
dask-jobqueue cluster's); otherwise ``scheduler=`` an address, or a local cluster of
``workers`` processes is started and stopped around the run.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Sequence
from typing import Any, TextIO

import numpy as np

from .draws import Variations, format_matrix, mosflm_matrix, read_spectrum
from .runner import RunSummary, run_dataset
from .spec import SERIES, STILLS, Job, resolve_format
from .store import RECORD, TRUTH, DatasetError, read_log, stored_job


class Dataset:
    """A dataset on disk: its frames, truth, job record and completion record.

    ``path``: the NXmx file, or the folder of frame files.  ``summary``: the throughput of the
    run that returned it (None when opened with :func:`open_dataset`).
    """

    def __init__(self, path: str, summary: RunSummary | None = None):
        self.path = os.fspath(path)
        self.summary = summary
        if os.path.isdir(self.path):
            found = sorted(glob.glob(os.path.join(glob.escape(self.path), "*_dataset.h5")))
            if not found:
                raise DatasetError(f"{self.path}: no *_dataset.h5 record in this folder")
            self.record_path = found[0]
            self.name = os.path.basename(found[0])[: -len("_dataset.h5")]
        else:
            self.record_path = self.path
            self.name = None
        job = stored_job(self.record_path)
        self.job = job
        fp = job["fingerprint"]
        self.kind: str = fp["kind"]
        self.count: int = int(fp["count"])
        self.format: str = fp["format"]
        self.flags: list[str] = list(job["flags"])
        self.log_path = (self.path + ".log") if self.name is None else os.path.join(self.path, f"{self.name}.log")

    def _open(self) -> Any:
        import h5py

        return h5py.File(self.record_path, "r")

    @property
    def complete(self) -> np.ndarray:
        """Boolean per frame: written in full."""
        with self._open() as f:
            return np.asarray(f[RECORD]["frame_complete"][()]) == 1

    @property
    def truth(self) -> dict[str, np.ndarray]:
        """Every truth dataset (``real_space_vectors``, ``wavelength``, ``seed``, ...) as arrays."""
        with self._open() as f:
            return {name: np.asarray(ds[()]) for name, ds in f[TRUTH].items()}

    def frame_path(self, index: int) -> str:
        """The file of frame ``index`` (a folder dataset)."""
        if self.name is None:
            raise ValueError("an NXmx dataset keeps its frames in one file")
        digits = max(5, len(str(self.count)))
        ext = "cbf" if self.format == "cbf" else "img"
        return os.path.join(self.path, f"{self.name}_{index + 1:0{digits}d}.{ext}")

    def frame(self, index: int) -> np.ndarray:
        """The pixels of frame ``index`` as stored (float32 photons or int32 counts; SMV uint16)."""
        if not 0 <= index < self.count:
            raise IndexError(f"frame {index} of {self.count}")
        if self.name is None:
            with self._open() as f:
                return np.asarray(f["entry/data/data"][index])
        if self.format == "cbf":
            from pybragg.io.cbf import read_cbf

            return read_cbf(self.frame_path(index))[1]
        from pybragg.io.smv import read_smv

        return read_smv(self.frame_path(index)).data

    def log(self) -> list[dict[str, Any]]:
        """The run log: one entry per frame written, with its run, worker and render time."""
        return read_log(self.log_path) if os.path.exists(self.log_path) else []

    def reproduce_flags(self, index: int, folder: str) -> list[str]:
        """nanoBragg flags of one ``pybragg`` run that renders frame ``index`` exactly
        (writing the matrix and source files it needs into ``folder``)."""
        return reproduce_flags(self, index, folder)

    def __repr__(self) -> str:
        done = int(self.complete.sum())
        return f"Dataset({self.path!r}, {self.kind}, {done}/{self.count} frames, {self.format})"


def open_dataset(path: str) -> Dataset:
    """A dataset written earlier (an NXmx file or a folder of frames)."""
    return Dataset(path)


def _job_from_record(record: dict[str, Any]) -> Job:
    fp = record["fingerprint"]
    variations = None
    if fp["kind"] == STILLS:
        prefix = "variations."
        variations = Variations.from_dict({k[len(prefix):]: v for k, v in fp.items() if k.startswith(prefix)})
    backend = fp["engine"].split()[0]
    return Job(fp["kind"], record["flags"], int(fp["count"]), seed=fp["seed"] if fp["kind"] == STILLS else None,
               variations=variations, fmt=fp["format"], backend=backend)


def reproduce_flags(dataset: Dataset | str, index: int, folder: str) -> list[str]:
    """The flags of a single ``pybragg`` run that renders frame ``index`` of ``dataset`` exactly.

    A series frame: the dataset's flags with ``-phi``, ``-osc`` and ``-seed``.  A stills shot:
    the flags with ``-mat`` (a MOSFLM matrix built from the stored real-space vectors and
    wavelength by :func:`pybragg.datasets.draws.mosflm_matrix`), ``-seed`` and, where they vary,
    ``-lambda``, ``-flux 0 -fluence``, ``-xtal_size`` and ``-sourcefile``; the files go to
    ``folder``.  Add the output flags you want (``-floatfile``, ``-noisefile``, ``-nexusfile`` ...).
    """
    ds = dataset if isinstance(dataset, Dataset) else Dataset(dataset)
    if not 0 <= index < ds.count:
        raise IndexError(f"frame {index} of {ds.count}")
    job = _job_from_record(ds.job)
    if ds.kind == SERIES:
        return job.frame_flags(index)
    truth = {name: value[index] for name, value in ds.truth.items() if value.ndim and value.shape[0] == ds.count
             and name != "unrotated_real_space_vectors"}
    return shot_flags(job, truth, index, folder)


def shot_flags(job: Job, truth: dict[str, Any], index: int, folder: str) -> list[str]:
    """The single-run flags of a stills shot from its truth row (files written into ``folder``)."""
    os.makedirs(folder, exist_ok=True)
    v = job.variations
    lam = float(truth["wavelength"])
    mat = os.path.join(folder, f"shot_{index + 1:05d}.mat")
    with open(mat, "w", encoding="ascii") as fh:
        fh.write(format_matrix(mosflm_matrix(np.asarray(truth["real_space_vectors"]).tolist(), lam)))
    flags = [*job.flags, "-mat", mat]
    if job.config.crystal.misset_mode != 0:
        flags += ["-misset", "0", "0", "0"]
    if v.wavelength_jitter > 0.0 or v.has_spectrum:
        flags += ["-lambda", repr(lam)]
    if v.fluence_jitter > 0.0:
        flags += ["-flux", "0", "-fluence", repr(float(truth["fluence"]))]
    if v.size_range_um is not None:
        flags += ["-xtal_size", repr(float(truth["crystal_size"]) / 1000.0)]
    if v.has_spectrum:
        src = os.path.join(folder, f"shot_{index + 1:05d}.sources")
        x, y, z = (repr(c) for c in job.source_position)
        with open(src, "w", encoding="ascii") as fh:
            fh.write(f"# X Y Z weight lambda(m): shot {index + 1}\n")
            fh.writelines(f"{x} {y} {z} 1.0 {float(lam_k) / 1.0e10!r}\n"
                          for lam_k in np.asarray(truth["spectrum"], dtype=np.float64))
        flags += ["-sourcefile", src]
    flags += ["-seed", str(int(truth["seed"]))]
    return flags


def _run(job: Job, out: str, *, resume: bool, client: Any, scheduler: str | None, workers: int | None,
         batch: int, progress: TextIO | None, name: str | None) -> Dataset:
    summary = run_dataset(job, out, resume=resume, name=name, client=client, scheduler=scheduler, workers=workers,
                          batch=batch, progress=progress)
    return Dataset(out, summary)


def series(
    flags: Sequence[str],
    frames: int,
    out: str,
    *,
    format: str | None = None,
    resume: bool = False,
    client: Any = None,
    scheduler: str | None = None,
    workers: int | None = None,
    batch: int = 0,
    threads: int | None = None,
    progress: TextIO | None = None,
    name: str | None = None,
) -> Dataset:
    """A rotation series of ``frames`` frames from nanoBragg ``flags``, written to ``out``.

    Frame ``i`` is the single render of ``flags`` with ``-phi START+i*OSC -osc OSC -seed SEED+i``
    (from the flags' ``-phi``, ``-osc``, ``-seed``; defaults 0, 0.1 degrees, 1).  ``out``: an NXmx
    file (``.nxs``/``.h5``) or a folder of ``format`` (``cbf`` or ``smv``) frames.  ``progress``: a
    stream for the progress bar (None: silent).
    """
    fmt = resolve_format(out, format)
    job = Job(SERIES, flags, frames, fmt=fmt, threads=threads)
    return _run(job, out, resume=resume, client=client, scheduler=scheduler, workers=workers, batch=batch,
                progress=progress, name=name)


def stills(
    flags: Sequence[str],
    shots: int,
    seed: int,
    out: str,
    *,
    wavelength_jitter: float = 0.0,
    fluence_jitter: float = 0.0,
    size_range_um: tuple[float, float] | None = None,
    sase: tuple[float, int] | None = None,
    spectrum: str | Sequence[tuple[float, float]] | None = None,
    spectrum_samples: int = 0,
    format: str | None = None,
    resume: bool = False,
    client: Any = None,
    scheduler: str | None = None,
    workers: int | None = None,
    batch: int = 0,
    threads: int | None = None,
    progress: TextIO | None = None,
    name: str | None = None,
) -> Dataset:
    """``shots`` still shots of random orientation (uniform on SO(3)) drawn from ``(seed, i)``.

    Variations (all drawn from ``(seed, i)``): ``wavelength_jitter`` and ``fluence_jitter``
    (relative rms), ``size_range_um`` (cubic crystal edge, µm), ``sase`` (relative FWHM bandwidth,
    modes) or ``spectrum`` (a file of ``wavelength(Å) weight`` lines, or those rows) sampled into
    ``spectrum_samples`` sources.  The truth of every shot is stored at ``/entry/truth``.
    """
    rows = None
    if spectrum is not None:
        rows = read_spectrum(spectrum) if isinstance(spectrum, (str, os.PathLike)) else tuple(
            (float(a), float(b)) for a, b in spectrum)
    variations = Variations(
        wavelength_jitter=float(wavelength_jitter), fluence_jitter=float(fluence_jitter),
        size_range_um=None if size_range_um is None else (float(size_range_um[0]), float(size_range_um[1])),
        sase=None if sase is None else (float(sase[0]), int(sase[1])), spectrum=rows,
        spectrum_samples=int(spectrum_samples),
    )
    fmt = resolve_format(out, format)
    job = Job(STILLS, flags, shots, seed=seed, variations=variations, fmt=fmt, threads=threads)
    return _run(job, out, resume=resume, client=client, scheduler=scheduler, workers=workers, batch=batch,
                progress=progress, name=name)


__all__ = ["Dataset", "open_dataset", "reproduce_flags", "series", "shot_flags", "stills"]
