"""NeXus/NXmx HDF5 files of a render (needs h5py; bitshuffle/LZ4 needs hdf5plugin).

The layout is the one DIALS's NXmx reader (dxtbx's ``FormatNXmx`` through the ``nxmx`` package)
takes apart; every vector is in the McStas frame of NeXus (see :mod:`pybragg.io.frames`)::

    /entry                      NXentry, definition = "NXmx"
      data/data                 (frames, slow, fast): int32 counts or float32 photons
      instrument/beam           NXbeam: incident_wavelength, its spectrum (a variant), flux, beam size
      instrument/detector       NXdetector: sensor, distance, beam centre, pixel size, count time,
                                saturation, pixel_mask, depends_on the two-theta arm
        transformations/two_theta    rotation of the detector arm about the two-theta axis
        <module>                NXdetector_module per panel: data_origin, data_size,
                                module_offset (to the corner of the panel's first pixel),
                                fast_pixel_direction, slow_pixel_direction
      sample                    NXsample: depends_on transformations/omega (the spindle),
                                omega, omega_end, omega_increment_set; unit_cell
      source                    NXsource

A panel's chain is fast_pixel_direction -> module_offset -> two_theta: the module's vectors and
offset are given as they stand before the two-theta rotation, so that the chain puts pixel (0, 0)'s
corner and the pixel axes exactly where the render had them.
"""

from __future__ import annotations

import datetime
import math
import os
import re
from collections.abc import Sequence

import numpy as np

from .frames import Setup, rotation_about

#: the largest count of an int32 pixel: the detector's saturation value
SATURATION = 2**31 - 1
COMPRESSIONS = ("deflate", "bslz4", "none")


def _module_names(setup: Setup) -> list[str]:
    if len(setup.panels) == 1:
        return ["module"]
    names: list[str] = []
    for i, panel in enumerate(setup.panels):
        clean = re.sub(r"[^A-Za-z0-9_]", "_", panel.name) or f"p{i}"
        name = f"module_{clean}"
        if name in names:
            name = f"{name}_{i}"
        names.append(name)
    return names


def _string(group, name: str, value: str, **attrs) -> None:
    ds = group.create_dataset(name, data=np.bytes_(value.encode("utf-8")))
    for key, val in attrs.items():
        ds.attrs[key] = val


def _axis(group, name: str, values, *, kind: str, vector, units: str, depends_on: str, offset=(0.0, 0.0, 0.0),
          component: str | None = None):
    ds = group.create_dataset(name, data=np.asarray(values, dtype=np.float64))
    ds.attrs["transformation_type"] = np.bytes_(kind.encode())
    ds.attrs["vector"] = np.asarray(vector, dtype=np.float64)
    ds.attrs["units"] = np.bytes_(units.encode())
    ds.attrs["offset"] = np.asarray(offset, dtype=np.float64)
    ds.attrs["offset_units"] = np.bytes_(b"m")
    ds.attrs["depends_on"] = np.bytes_(depends_on.encode())
    if component:
        ds.attrs["equipment_component"] = np.bytes_(component.encode())
    return ds


def _group(parent, name: str, nx_class: str):
    group = parent.create_group(name)
    group.attrs["NX_class"] = np.bytes_(nx_class.encode())
    return group


def _compression(name: str) -> dict:
    if name == "none":
        return {}
    if name == "deflate":
        return {"compression": "gzip", "compression_opts": 4, "shuffle": True}
    if name == "bslz4":
        import hdf5plugin

        return dict(hdf5plugin.Bitshuffle(nelems=0, cname="lz4"))
    raise ValueError(f"unknown compression {name!r} (choose from {', '.join(COMPRESSIONS)})")


def spectrum(sources: np.ndarray | None) -> tuple[np.ndarray, np.ndarray] | None:
    """Distinct wavelengths (m) of a source list and their summed weights, or None for one wavelength."""
    if sources is None or len(sources) == 0:
        return None
    wavelengths = np.asarray(sources[:, 4], dtype=np.float64)
    weights = np.asarray(sources[:, 3], dtype=np.float64)
    unique, inverse = np.unique(wavelengths, return_inverse=True)
    if unique.size < 2:
        return None
    summed = np.zeros(unique.size)
    np.add.at(summed, inverse, weights)
    return unique, summed


def write_nexus(
    path: str | os.PathLike[str],
    data: np.ndarray,
    setup: Setup,
    *,
    compression: str = "deflate",
    sources: np.ndarray | None = None,
    pixel_mask: np.ndarray | None = None,
    space_group: str | None = None,
    title: str = "pybragg simulation",
) -> None:
    """Write an NXmx file of one frame ``data`` (slow x fast; int32 counts or float32) for ``setup``
    (McStas frame).  ``pixel_mask``: uint32 NXmx mask bits (0: a good pixel)."""
    import h5py

    from pybragg import __version__

    if setup.frame != "mcstas":
        raise ValueError("a NeXus file needs a setup in the McStas frame")
    image = np.ascontiguousarray(data)
    if image.ndim != 2:
        raise ValueError("NeXus data must be a 2-D (slow, fast) array")
    if image.shape != (setup.data_spixels, setup.data_fpixels):
        raise ValueError(f"data of shape {image.shape} for a detector of {setup.data_spixels}x{setup.data_fpixels}")
    deg = 180.0 / math.pi
    R = rotation_about(setup.twotheta_axis, setup.twotheta)
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    first = setup.panels[0]
    centre = first.beam_centre(setup.beam)
    with h5py.File(path, "w") as f:
        f.attrs["creator"] = np.bytes_(f"pybragg {__version__}".encode())
        f.attrs["default"] = np.bytes_(b"entry")
        entry = _group(f, "entry", "NXentry")
        entry.attrs["default"] = np.bytes_(b"data")
        _string(entry, "definition", "NXmx")
        _string(entry, "start_time", now)
        _string(entry, "end_time", now)
        _string(entry, "title", title)

        nxdata = _group(entry, "data", "NXdata")
        nxdata.attrs["signal"] = np.bytes_(b"data")
        dtype = np.int32 if image.dtype.kind in "iu" else np.float32
        frames = image.astype(dtype, copy=False)[np.newaxis]
        dset = nxdata.create_dataset("data", data=frames, chunks=(1, *frames.shape[1:]), **_compression(compression))
        dset.attrs["units"] = np.bytes_(b"counts" if dtype == np.int32 else b"photons")

        instrument = _group(entry, "instrument", "NXinstrument")
        _string(instrument, "name", title, short_name=np.bytes_(b"pybragg"))
        beam = _group(instrument, "beam", "NXbeam")
        wl = beam.create_dataset("incident_wavelength", data=setup.wavelength * 1e10)
        wl.attrs["units"] = np.bytes_(b"angstrom")
        spec = spectrum(sources)
        if spec is not None:
            wl.attrs["variant"] = np.bytes_(b"incident_wavelength_spectrum")
            ws = beam.create_dataset("incident_wavelength_spectrum", data=spec[0] * 1e10)
            ws.attrs["units"] = np.bytes_(b"angstrom")
            beam.create_dataset("incident_wavelength_spectrum_weights", data=spec[1])
        if setup.exposure > 0:
            density = setup.fluence / setup.exposure
            fl = beam.create_dataset("flux", data=density)
            fl.attrs["units"] = np.bytes_(b"1/s/m^2")
            total = beam.create_dataset("total_flux", data=density * setup.beamsize**2)
            total.attrs["units"] = np.bytes_(b"Hz")
        size = beam.create_dataset("incident_beam_size", data=np.array([setup.beamsize, setup.beamsize]))
        size.attrs["units"] = np.bytes_(b"m")
        _string(beam, "profile", "top-hat")

        det = _group(instrument, "detector", "NXdetector")
        det["data"] = dset  # a hard link: the frames are stored once
        _string(det, "description", title)
        _string(det, "type", "simulated pixel array")
        _string(det, "depends_on", "/entry/instrument/detector/transformations/two_theta")
        if centre is not None:
            hit = first.origin + centre[0] * first.fast + centre[1] * first.slow
            d = det.create_dataset("distance", data=float(np.linalg.norm(hit)))
            d.attrs["units"] = np.bytes_(b"m")
            bx = det.create_dataset("beam_center_x", data=centre[0] / first.pixel_size)
            bx.attrs["units"] = np.bytes_(b"pixel")
            by = det.create_dataset("beam_center_y", data=centre[1] / first.pixel_size)
            by.attrs["units"] = np.bytes_(b"pixel")
        det.create_dataset("distance_derived", data=True)
        for name in ("x_pixel_size", "y_pixel_size"):
            ds = det.create_dataset(name, data=first.pixel_size)
            ds.attrs["units"] = np.bytes_(b"m")
        _string(det, "sensor_material", "Si")
        th = det.create_dataset("sensor_thickness", data=setup.thickness)
        th.attrs["units"] = np.bytes_(b"m")
        ct = det.create_dataset("count_time", data=setup.exposure)
        ct.attrs["units"] = np.bytes_(b"s")
        ft = det.create_dataset("frame_time", data=setup.exposure)
        ft.attrs["units"] = np.bytes_(b"s")
        det.create_dataset("saturation_value", data=np.int64(SATURATION))
        det.create_dataset("bit_depth_image", data=np.int32(32))
        if pixel_mask is not None:
            det.create_dataset("pixel_mask", data=np.ascontiguousarray(pixel_mask, dtype=np.uint32),
                               **_compression("deflate"))
            det.create_dataset("pixel_mask_applied", data=False)
        transformations = _group(det, "transformations", "NXtransformations")
        arm = "/entry/instrument/detector/transformations/two_theta"
        _axis(transformations, "two_theta", [setup.twotheta * deg], kind="rotation", vector=setup.twotheta_axis,
              units="deg", depends_on=".", component="detector_arm")
        for name, panel in zip(_module_names(setup), setup.panels):
            module = _group(det, name, "NXdetector_module")
            module.create_dataset("data_origin", data=np.array([panel.data_slow, panel.data_fast], dtype=np.int64))
            module.create_dataset("data_size", data=np.array([panel.spixels, panel.fpixels], dtype=np.int64))
            module.create_dataset("data_stride", data=np.array([1, 1], dtype=np.int64))
            corner = R.T @ panel.origin
            length = float(np.linalg.norm(corner))
            direction = corner / length if length > 0 else np.array([0.0, 0.0, 1.0])
            base = f"/entry/instrument/detector/{name}"
            _axis(module, "module_offset", [length], kind="translation", vector=direction, units="m",
                  depends_on=arm, component="detector_module")
            for axis_name, vector in (("fast_pixel_direction", panel.fast), ("slow_pixel_direction", panel.slow)):
                _axis(module, axis_name, [panel.pixel_size], kind="translation", vector=R.T @ vector, units="m",
                      depends_on=f"{base}/module_offset", component="detector_module")

        sample = _group(entry, "sample", "NXsample")
        _string(sample, "name", "pybragg crystal")
        _string(sample, "depends_on", "/entry/sample/transformations/omega")
        sample["beam"] = beam
        sample.create_dataset("unit_cell", data=np.asarray([setup.cell], dtype=np.float64))
        if space_group:
            _string(sample, "unit_cell_group", space_group)
        gonio = _group(sample, "transformations", "NXtransformations")
        _axis(gonio, "omega", [setup.phi0 * deg], kind="rotation", vector=setup.spindle, units="deg",
              depends_on=".")
        end = gonio.create_dataset("omega_end", data=np.array([(setup.phi0 + setup.osc) * deg]))
        end.attrs["units"] = np.bytes_(b"deg")
        inc = gonio.create_dataset("omega_increment_set", data=setup.osc * deg)
        inc.attrs["units"] = np.bytes_(b"deg")

        source = _group(entry, "source", "NXsource")
        _string(source, "name", title, short_name=np.bytes_(b"pybragg"))


def pixel_mask_bits(shape: tuple[int, int], covered: np.ndarray | None, rendered: np.ndarray | None) -> np.ndarray:
    """NXmx pixel_mask: bit 0 where no panel covers a pixel, bit 8 (user mask) where it was not rendered."""
    mask = np.zeros(shape, dtype=np.uint32)
    if covered is not None:
        mask[~covered] |= 1
    if rendered is not None:
        mask[~rendered & (mask == 0)] |= 1 << 8
    return mask


def check_compression(name: str, flag: str = "-nexus_compression") -> str | None:
    """A complaint when compression ``name`` cannot be written here, else None."""
    if name not in COMPRESSIONS:
        return f"{flag}: unknown compression {name!r} (choose from {', '.join(COMPRESSIONS)})"
    if name == "bslz4":
        try:
            import hdf5plugin  # noqa: F401
        except ImportError:
            return f"{flag} bslz4 needs the hdf5plugin package (pip install \"pybragg[nexus]\")"
    return None


__all__: Sequence[str] = ("COMPRESSIONS", "SATURATION", "check_compression", "pixel_mask_bits", "spectrum",
                          "write_nexus")
