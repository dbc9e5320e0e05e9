"""The dataset formats, built on the single-image writers of :mod:`pybragg.io`.

The per-frame geometry and metadata come from the format modules, unchanged:

* CBF frames: :func:`pybragg.io.cbf.cbf_bytes` of the frame's counts (those of ``-cbffile``,
  :func:`pybragg.writers.detector_counts`: photons with noise, the rounded float image without) and its :func:`~pybragg.io.frames.setup_from_result` in the imgCIF frame; the mini
  header's time stamp is the frame's start on a fixed clock (:func:`frame_timestamp`), so the same
  command writes the same bytes.
* NXmx: :func:`pybragg.io.nexus.write_nexus` writes the one-frame file of the first frame's setup
  (beam, detector modules, goniometer, sample); :func:`make_multiframe` then turns it into the
  dataset's file -- the part :mod:`pybragg.io.nexus` has no API for: ``/entry/data/data`` becomes
  ``(frames, slow, fast)`` stored contiguously and allocated at once (so that writing a frame
  touches no HDF5 metadata and a killed run leaves a valid file), the goniometer's angle gets one
  value per frame, a per-shot wavelength becomes an array, and the wall-clock time stamps are
  dropped (the run log keeps them).
"""

from __future__ import annotations

import datetime
import math
from typing import Any

import numpy as np

#: the fixed clock of frame time stamps: frame i starts i exposures after it
EPOCH = datetime.datetime(2000, 1, 1, tzinfo=datetime.timezone.utc)


def frame_timestamp(index: int, exposure: float) -> str:
    """The mini-header time stamp of frame ``index`` (milliseconds, as Pilatus writes them)."""
    step = exposure if math.isfinite(exposure) and exposure > 0 else 1.0
    moment = EPOCH + datetime.timedelta(seconds=index * step)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]


def detector_counts(result: Any, seed: int, noise: bool) -> np.ndarray:
    """The counts a CBF or NXmx frame holds: exactly what ``-cbffile``/``-nexusfile`` of the single
    render with ``-seed seed`` store (:func:`pybragg.writers.detector_counts`)."""
    from types import SimpleNamespace

    from pybragg.writers import detector_counts as _counts

    return _counts(result, SimpleNamespace(write_noise=bool(noise), noise_seed=int(seed)))


def cbf_bytes(result: Any, seed: int, shared: Any, index: int = 0) -> bytes:
    """The CBF file of one rendered frame."""
    from pybragg.io.cbf import cbf_bytes as _cbf_bytes
    from pybragg.io.frames import setup_from_result

    counts = detector_counts(result, seed, shared.write_noise)
    setup = setup_from_result(result)
    return _cbf_bytes(counts, setup.in_imgcif(), nopolar=bool(result.geometry.nopolar),
                      timestamp=frame_timestamp(index, setup.exposure))


def _pixel_mask(result: Any, setup: Any) -> np.ndarray:
    """NXmx pixel mask of a render: pixels no panel covers, pixels outside the ROI (as -nexusfile)."""
    from pybragg.io.nexus import pixel_mask_bits
    from pybragg.writers import roi_slices

    shape = (setup.data_spixels, setup.data_fpixels)
    covered = np.zeros(shape, dtype=bool)
    for p in setup.panels:
        covered[p.data_slow:p.data_slow + p.spixels, p.data_fast:p.data_fast + p.fpixels] = True
    rendered = np.zeros(shape, dtype=bool)
    rendered[roi_slices(result)] = True
    return pixel_mask_bits(shape, covered, rendered)


def write_single_frame_nexus(path: str, result: Any, dtype: np.dtype, sources: np.ndarray | None,
                             space_group: str | None = None) -> None:
    """The one-frame NXmx file of ``result``'s setup (zero pixels), by :func:`pybragg.io.nexus.write_nexus`."""
    from pybragg.io.frames import setup_from_result
    from pybragg.io.nexus import write_nexus

    setup = setup_from_result(result)
    zeros = np.zeros((setup.data_spixels, setup.data_fpixels), dtype=dtype)
    write_nexus(path, zeros, setup.in_mcstas(), compression="deflate", sources=sources,
                pixel_mask=_pixel_mask(result, setup), space_group=space_group)


def early_dataset(group: Any, name: str, shape: tuple[int, ...], dtype: Any) -> Any:
    """A contiguous dataset allocated in the file now (no fill written, no chunk index).

    Writing into it later changes raw bytes only, never the file's metadata: a process killed
    while writing leaves every other frame and the whole structure intact.
    """
    import h5py

    dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    dcpl.set_layout(h5py.h5d.CONTIGUOUS)
    dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)
    dcpl.set_fill_time(h5py.h5d.FILL_TIME_NEVER)
    dcpl.set_obj_track_times(False)
    space = h5py.h5s.create_simple(tuple(int(n) for n in shape))
    tid = h5py.h5t.py_create(np.dtype(dtype), logical=True)
    dsid = h5py.h5d.create(group.id, name.encode(), tid, space, dcpl=dcpl)
    return h5py.Dataset(dsid)


def _set_attrs(dst: Any, attrs: dict[str, Any]) -> None:
    for key, value in attrs.items():
        dst.attrs[key] = value


def make_multiframe(f: Any, count: int, angles_deg: np.ndarray | None, per_frame_wavelength: bool) -> Any:
    """Turn the one-frame NXmx file open in ``f`` into a ``count``-frame dataset file.

    ``angles_deg``: the goniometer angle at the start of every frame (a series), or None to keep
    one fixed angle for every shot (stills).  ``per_frame_wavelength``: make
    ``/entry/instrument/beam/incident_wavelength`` one value per frame (written with each frame).
    Returns the new ``/entry/data/data``.
    """
    entry = f["entry"]
    for name in ("start_time", "end_time"):  # wall-clock: the run log keeps them instead
        if name in entry:
            ds = entry[name]
            if ds.dtype.kind == "S" and ds.shape == ():  # blank the bytes the file keeps after a delete
                ds[()] = np.bytes_(b"0" * ds.dtype.itemsize)
            del entry[name]
    nxdata = entry["data"]
    old = nxdata["data"]
    shape = (count, *old.shape[1:])
    dtype = old.dtype
    attrs = dict(old.attrs.items())
    det_links = [path for path in ("instrument/detector/data",) if path in entry]
    for path in det_links:
        del entry[path]
    del nxdata["data"]
    data = early_dataset(nxdata, "data", shape, dtype)
    _set_attrs(data, attrs)
    for path in det_links:
        entry[path] = data  # a hard link, as write_nexus makes it
    sample = entry.get("sample")
    axis_path = None
    if sample is not None and "depends_on" in sample:
        raw = sample["depends_on"][()]
        axis_path = raw.decode() if isinstance(raw, bytes) else str(raw)
    if angles_deg is not None and axis_path and axis_path in f:
        axis = f[axis_path]
        parent, name = axis.parent, axis.name.rsplit("/", 1)[1]
        step = float(f[axis_path + "_increment_set"][()]) if axis_path + "_increment_set" in f else 0.0
        axis_attrs = dict(axis.attrs.items())
        del parent[name]
        new = parent.create_dataset(name, data=np.asarray(angles_deg, dtype=np.float64))
        _set_attrs(new, axis_attrs)
        if name + "_end" in parent:
            end_attrs = dict(parent[name + "_end"].attrs.items())
            del parent[name + "_end"]
            end = parent.create_dataset(name + "_end", data=np.asarray(angles_deg, dtype=np.float64) + step)
            _set_attrs(end, end_attrs)
    elif axis_path and axis_path in f and axis_path + "_end" in f:
        # stills: every shot at the same angle, no rotation during a shot
        parent = f[axis_path].parent
        name = f[axis_path].name.rsplit("/", 1)[1]
        angle = float(np.asarray(f[axis_path][()]).ravel()[0])
        for suffix, value in (("", angle), ("_end", angle)):
            a = dict(parent[name + suffix].attrs.items())
            del parent[name + suffix]
            ds = parent.create_dataset(name + suffix, data=np.full(count, value, dtype=np.float64))
            _set_attrs(ds, a)
        if name + "_increment_set" in parent:
            a = dict(parent[name + "_increment_set"].attrs.items())
            del parent[name + "_increment_set"]
            ds = parent.create_dataset(name + "_increment_set", data=0.0)
            _set_attrs(ds, a)
    if per_frame_wavelength and "instrument/beam/incident_wavelength" in entry:
        beam = entry["instrument/beam"]
        a = {k: v for k, v in beam["incident_wavelength"].attrs.items() if k != "variant"}
        del beam["incident_wavelength"]
        for name in ("incident_wavelength_spectrum", "incident_wavelength_spectrum_weights"):
            if name in beam:
                del beam[name]
        wl = early_dataset(beam, "incident_wavelength", (count,), np.float64)
        _set_attrs(wl, a)
    return data


__all__ = ["EPOCH", "cbf_bytes", "detector_counts", "early_dataset", "frame_timestamp", "make_multiframe",
           "write_single_frame_nexus"]
