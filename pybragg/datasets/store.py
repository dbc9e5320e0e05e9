"""Where a dataset's frames go, with its truth and its per-frame completion record.

Two stores, one record:

* :class:`NexusStore` -- one NXmx HDF5 file: the frames at ``/entry/data/data`` (frames, slow,
  fast), the truth at ``/entry/truth``, the job and the completion record at ``/entry/pybragg``.
* :class:`FolderStore` -- one file per frame (``NAME_00001.cbf`` or ``.img``) in a folder, beside
  ``NAME_dataset.h5`` holding the same truth, job and completion record.

How a killed run stays valid: the file is made complete -- every group, attribute and dataset,
the frames and truth allocated contiguously at their full size -- in a hidden temporary file that
is then renamed into place.  From then on a frame is written as raw bytes into its slot, flushed,
and only then marked done in ``/entry/pybragg/frame_complete`` (flushed again); no HDF5 metadata
changes after creation.  A SIGKILL at any moment leaves the structure intact, every frame marked
done in full, and at worst one frame written but not marked (it is rendered again).  A folder's
frame file is written to a hidden name and renamed, before its mark.

No time stamp goes into the dataset (the same command writes the same bytes); the run log
``FILE.log`` (``NAME.log`` in a folder) records, one JSON line per frame, when and where each
frame was rendered.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from pybragg.errors import PybraggError, UsageError

from .spec import SERIES, STILLS, Job, TruthField

RECORD = "entry/pybragg"
TRUTH = "entry/truth"
#: numbers of a frame file: NAME_00001.cbf (at least five digits, from 1)
FRAME_DIGITS = 5
EXTENSIONS = {"cbf": "cbf", "smv": "img"}


class DatasetError(PybraggError):
    """A dataset file or folder cannot be made, continued or read."""


def _bytes(text: str) -> np.bytes_:
    return np.bytes_(text.encode("utf-8"))


def _group(parent: Any, name: str, nx_class: str) -> Any:
    group = parent.require_group(name)
    group.attrs["NX_class"] = _bytes(nx_class)
    return group


def _flag_names(field: str) -> list[str]:
    """Flags that set configuration field ``field`` (dotted, without ``config.``)."""
    from pybragg.flags.table import FLAGS

    names = []
    for flag in FLAGS:
        targets = [t.split("[")[0] for t in flag.targets] + [t.split("[")[0] for t, _ in flag.sets]
        if "config." + field in targets:
            names.append(flag.name)
    return names


def _show(value: Any) -> str:
    if isinstance(value, list):
        return " ".join(_show(v) for v in value)
    if isinstance(value, float):
        return f"{value:.10g}"
    return str(value)


def first_difference(stored: dict[str, Any], fresh: dict[str, Any]) -> str | None:
    """A sentence naming the first entry where two fingerprints differ, or None."""
    keys = list(fresh) + [k for k in stored if k not in fresh]
    for key in keys:
        a, b = stored.get(key, "(none)"), fresh.get(key, "(none)")
        if a == b:
            continue
        label = key
        if key.startswith("config."):
            flags = _flag_names(key[len("config."):])
            label = key[len("config."):] + (f" ({', '.join(flags[:3])})" if flags else "")
        elif key.startswith("inputs."):
            label = f"the {key[len('inputs.'):]} input's content"
        return f"{label} is {_show(a)} there, {_show(b)} here"
    return None


def _template_result(job: Job, task: Any) -> Any:
    """A result of frame ``task``'s plan with an empty image: the geometry the metadata describe."""
    from pybragg.inputs import Inputs
    from pybragg.plan import Plan

    inputs = job.inputs if task.sources is None else Inputs(job.inputs.hkl, task.sources, job.inputs.mask)
    plan = Plan(task.config, inputs)
    zeros = np.zeros(plan.shape, dtype=np.float32)
    return plan.result(zeros, plan.stats(zeros), job.backend, job.dtype, job.device or "cpu", 0.0)


class Record:
    """The HDF5 side of a dataset, open for writing: frames (NXmx only), truth, completion."""

    def __init__(self, path: str, f: Any, fields: Sequence[TruthField]):
        self.path = path
        self.f = f
        self.count = int(f[RECORD]["frame_complete"].shape[0])
        self.complete = f[RECORD]["frame_complete"]
        self.fields = list(fields)
        self.truth = {fld.name: f[TRUTH][fld.name] for fld in self.fields}
        self.data = f.get("entry/data/data")
        wl = "entry/instrument/beam/incident_wavelength"
        self.wavelength = f[wl] if wl in f and f[wl].shape == (self.count,) else None

    def done(self) -> np.ndarray:
        """Boolean per frame: written in full and marked done."""
        return np.asarray(self.complete[()], dtype=np.uint8) == 1

    def write(self, items: Sequence[tuple[Any, dict[str, Any]]]) -> None:
        """Store frames (payload, truth row) and then mark them done."""
        for payload, truth in items:
            i = payload.index
            if self.data is not None:
                self.data[i] = payload.data
            for name, value in truth.items():
                if name in self.truth:
                    self.truth[name][i] = value
            if self.wavelength is not None:
                self.wavelength[i] = truth["wavelength"]
        self.f.flush()
        for payload, _ in items:
            self.complete[payload.index] = 1
        self.f.flush()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.f.close()


def stored_job(path: str) -> dict[str, Any]:
    """The job record of a dataset file (its fingerprint, flags and layout)."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            return _read_job(f, path)
    except OSError as exc:
        raise DatasetError(f"{path}: not a readable HDF5 file ({exc})") from exc


def _read_job(f: Any, path: str) -> dict[str, Any]:
    if f"{RECORD}/job" not in f:
        raise DatasetError(f"{path}: not a pybragg dataset (no /{RECORD}/job)")
    raw = f[RECORD]["job"][()]
    return json.loads(raw.decode("utf-8") if isinstance(raw, bytes) else str(raw))


def create_record(path: str, job: Job, *, frames: bool) -> Record:
    """Make the dataset's HDF5 file at ``path`` (it must not exist) and open it for writing."""
    import h5py

    from pybragg.io.atomic import new_file_mode

    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".part", dir=folder)
    os.close(fd)
    fields = job.truth_fields()
    try:
        task0, _ = job.frame(0)
        if frames:
            from .formats import make_multiframe, write_single_frame_nexus

            dtype = np.dtype(np.int32 if job.product == "counts" else np.float32)
            result = _template_result(job, task0)
            write_single_frame_nexus(tmp, result, dtype, task0.sources if task0.sources is not None else
                                     job.inputs.sources)
            f = h5py.File(tmp, "r+")
        else:
            f = h5py.File(tmp, "w")
            f.attrs["default"] = _bytes("entry")
            _group(f, "entry", "NXentry")
        with f:
            if frames:
                angles = np.array([job.frame_phi_deg(i) for i in range(job.count)]) if job.kind == SERIES else None
                varies = job.kind == STILLS and (job.variations.wavelength_jitter > 0 or job.variations.has_spectrum)
                make_multiframe(f, job.count, angles, per_frame_wavelength=varies)
            truth = _group(f, TRUTH, "NXcollection")
            for fld in fields:
                ds_dtype = np.int64 if fld.dtype == "int64" else np.float64
                from .formats import early_dataset

                ds = early_dataset(truth, fld.name, (job.count, *fld.shape), ds_dtype)
                if fld.units:
                    ds.attrs["units"] = _bytes(fld.units)
                ds.attrs["description"] = _bytes(fld.description)
            if job.kind == SERIES:
                vec = truth.create_dataset("real_space_vectors", data=np.array(job.base_axes_A))
                vec.attrs["units"] = _bytes("angstrom")
                vec.attrs["description"] = _bytes("rows a, b, c of the crystal in pybragg's lab frame at phi = 0")
                wl = truth.create_dataset("wavelength", data=job.base_wavelength_A)
                wl.attrs["units"] = _bytes("angstrom")
                fl = truth.create_dataset("fluence", data=job.base_fluence)
                fl.attrs["units"] = _bytes("photons/m^2")
            else:
                vec = truth.create_dataset("unrotated_real_space_vectors", data=np.array(job.base_axes_A))
                vec.attrs["units"] = _bytes("angstrom")
                vec.attrs["description"] = _bytes("rows a, b, c before each shot's rotation (quaternion)")
            record = _group(f, RECORD, "NXcollection")
            record.attrs["layout"] = np.int64(job.fingerprint()["layout"])
            record.create_dataset("job", data=_bytes(json.dumps(job.record())))
            from .formats import early_dataset

            done = early_dataset(record, "frame_complete", (job.count,), np.uint8)
            done[...] = np.zeros(job.count, dtype=np.uint8)
            done.attrs["description"] = _bytes("1 where the frame and its truth are written in full")
        os.chmod(tmp, new_file_mode(path))
        if os.path.exists(path):
            raise DatasetError(f"{path}: appeared while the dataset was being made; not overwritten")
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return Record(path, h5py.File(path, "r+"), fields)


def open_record(path: str, job: Job) -> Record:
    """Open an existing dataset file to continue it; refuse one made by a different command."""
    import h5py

    try:
        f = h5py.File(path, "r+")
    except OSError as exc:
        raise DatasetError(f"--resume: cannot open {path} ({exc})") from exc
    try:
        stored = _read_job(f, path)
        fresh = json.loads(json.dumps(job.record()))
        diff = first_difference(stored.get("fingerprint", {}), fresh["fingerprint"])
        if diff is not None:
            raise UsageError(f"--resume: {path} was made by a different command: {diff}")
        return Record(path, f, job.truth_fields())
    except BaseException:
        f.close()
        raise


class RunLog:
    """The run log: one JSON line per frame written (where, when, how long)."""

    def __init__(self, path: str, run: str):
        self.path = path
        self.run = run
        self.cwd = os.getcwd()
        self._fh = open(path, "a", encoding="utf-8")  # noqa: SIM115 - held open for the run

    def frames(self, items: Sequence[Any]) -> None:
        now = time.time()
        for p in items:
            self._fh.write(json.dumps({"run": self.run, "cwd": self.cwd, "frame": p.index, "worker": p.worker,
                                       "renders": p.renders, "seconds": round(p.seconds, 6),
                                       "written": round(now, 3)}) + "\n")
        self._fh.flush()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._fh.close()


def read_log(path: str) -> list[dict[str, Any]]:
    """The lines of a run log (a torn last line of a killed run is skipped)."""
    out = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            with contextlib.suppress(ValueError):
                out.append(json.loads(line))
    return out


class Store:
    """A dataset being written: which frames are done, and where the next ones go."""

    path: str
    log_path: str
    record: Record

    def done(self) -> np.ndarray:
        return self.record.done()

    def write(self, items: Sequence[tuple[Any, dict[str, Any]]]) -> None:
        raise NotImplementedError

    def close(self) -> None:
        self.record.close()


class NexusStore(Store):
    """One NXmx file holding frames, truth and the completion record."""

    def __init__(self, path: str, job: Job, resume: bool):
        self.path = path
        self.log_path = path + ".log"
        if os.path.isdir(path):
            raise UsageError(f"--out {path}: is a folder; an HDF5 name (.nxs, .h5) means one file")
        _check_folder(os.path.dirname(os.path.abspath(path)), path)
        if os.path.exists(path):
            if not resume:
                raise UsageError(f"--out {path} exists: add --resume to continue it (it is never overwritten)")
            self.record = open_record(path, job)
        else:
            self.record = create_record(path, job, frames=True)

    def write(self, items: Sequence[tuple[Any, dict[str, Any]]]) -> None:
        self.record.write(items)


class FolderStore(Store):
    """One file per frame in a folder, with ``NAME_dataset.h5`` holding truth and completion."""

    def __init__(self, folder: str, job: Job, resume: bool, name: str | None = None):
        self.path = folder
        self.name = name or os.path.basename(os.path.normpath(os.path.abspath(folder))) or "frame"
        self.ext = EXTENSIONS[job.fmt]
        self.digits = max(FRAME_DIGITS, len(str(job.count)))
        record_path = os.path.join(folder, f"{self.name}_dataset.h5")
        self.log_path = os.path.join(folder, f"{self.name}.log")
        if os.path.exists(folder) and not os.path.isdir(folder):
            raise UsageError(f"--out {folder}: exists and is not a folder")
        if not os.path.isdir(folder):
            parent = os.path.dirname(os.path.abspath(folder))
            _check_folder(parent, folder)
            os.mkdir(folder)
        if os.path.exists(record_path):
            if not resume:
                raise UsageError(f"--out {folder} holds a dataset: add --resume to continue it "
                                 "(it is never overwritten)")
            self.record = open_record(record_path, job)
        else:
            clash = [self.frame_path(i) for i in range(min(job.count, 3)) if os.path.exists(self.frame_path(i))]
            if clash:
                raise UsageError(f"--out {folder}: {os.path.basename(clash[0])} exists and is not part of a "
                                 "dataset; not overwritten")
            self.record = create_record(record_path, job, frames=False)

    def frame_path(self, index: int) -> str:
        """Where frame ``index`` (from 0) goes: ``NAME_00001.ext`` for frame 0."""
        return os.path.join(self.path, f"{self.name}_{index + 1:0{self.digits}d}.{self.ext}")

    def write(self, items: Sequence[tuple[Any, dict[str, Any]]]) -> None:
        from pybragg.io.atomic import atomic_write

        for payload, _ in items:
            atomic_write(self.frame_path(payload.index), payload.blob)
        self.record.write(items)


def _check_folder(folder: str, path: str) -> None:
    if not os.path.isdir(folder):
        raise UsageError(f"--out {path}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise UsageError(f"--out {path}: folder {folder} is not writable")


def _record_path(job: Job, out: str, name: str | None) -> str:
    if job.fmt == "nexus":
        return out
    base = name or os.path.basename(os.path.normpath(os.path.abspath(out))) or "frame"
    return os.path.join(out, f"{base}_dataset.h5")


def store_exists(job: Job, out: str, resume: bool, name: str | None = None) -> bool:
    """Whether ``out`` already holds this kind of output; without ``resume`` an existing one is refused."""
    path = _record_path(job, out, name)
    if job.fmt == "nexus" and os.path.isdir(out):
        raise UsageError(f"--out {out}: is a folder; an HDF5 name (.nxs, .h5) means one file")
    if os.path.exists(path) and not resume:
        what = "exists" if job.fmt == "nexus" else "holds a dataset"
        raise UsageError(f"--out {out} {what}: add --resume to continue it (it is never overwritten)")
    return os.path.exists(path)


def open_store(job: Job, out: str, resume: bool, name: str | None = None) -> Store:
    """The store of ``job`` at ``out``: made new, or continued with ``resume``."""
    if job.fmt == "nexus":
        return NexusStore(out, job, resume)
    return FolderStore(out, job, resume, name=name)
