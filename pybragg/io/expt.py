"""DIALS experiment lists (``.expt`` JSON) of a render: the true models of beam, detector,
goniometer, scan and crystal, so that ``dials.index``/``dials.integrate`` can start from them and a
refinement can be compared with them.

Everything is in the imgCIF frame that DIALS uses (see :mod:`pybragg.io.frames`), as dxtbx
serialises its models: lengths in mm (detector) and Angstrom (wavelength, crystal), angles in
degrees.  The frame is the one the NeXus and CBF writers use, so the three files agree.
"""

from __future__ import annotations

import json
import math
import os
import uuid

import numpy as np

from .cbf import COUNT_CUTOFF, polarization_fraction, polarization_normal
from .frames import Setup


def _list(v) -> list[float]:
    return [0.0 if abs(float(x)) < 1e-15 else float(x) for x in v]


def hall_symbol(space_group: str | None) -> str:
    """The Hall symbol of a space group name (gemmi), ``" P 1"`` without one."""
    if not space_group:
        return " P 1"
    import gemmi

    sg = gemmi.find_spacegroup_by_name(space_group)
    if sg is None:
        raise ValueError(f"unknown space group {space_group!r}")
    hall = sg.hall
    return hall if hall.startswith(" ") else " " + hall


def experiment_list(setup: Setup, *, space_group: str | None = None, image: str | None = None,
                    nopolar: bool = False, identifier: str | None = None) -> dict:
    """The experiment list of one render as the dictionary dxtbx's JSON holds."""
    if setup.frame != "imgcif":
        raise ValueError("an experiment list needs a setup in the imgCIF frame")
    deg = 180.0 / math.pi
    density = setup.fluence / setup.exposure if setup.exposure > 0 else 0.0
    beam = {
        "__id__": "monochromatic",
        "direction": _list(-setup.beam),
        "wavelength": setup.wavelength * 1e10,
        "divergence": 0.0,
        "sigma_divergence": 0.0,
        "polarization_normal": _list(polarization_normal(setup)),
        "polarization_fraction": polarization_fraction(setup, nopolar),
        "flux": density * setup.beamsize**2,
        "transmission": 1.0,
        "probe": "x-ray",
        "sample_to_source_distance": 0.0,
    }
    panels = []
    for panel in setup.panels:
        thick_mm = setup.thickness * 1000.0
        mu_mm = setup.mu / 1000.0
        strategy = ({"type": "ParallaxCorrectedPxMmStrategy", "mu": mu_mm, "t0": thick_mm}
                    if thick_mm > 0 and mu_mm > 0 else {"type": "SimplePxMmStrategy"})
        panels.append({
            "name": panel.name,
            "type": "SENSOR_PAD",
            "fast_axis": _list(panel.fast),
            "slow_axis": _list(panel.slow),
            "origin": _list(panel.origin * 1000.0),
            "raw_image_offset": [panel.data_fast, panel.data_slow],
            "image_size": [panel.fpixels, panel.spixels],
            "pixel_size": [panel.pixel_size * 1000.0, panel.pixel_size * 1000.0],
            "trusted_range": [0.0, float(COUNT_CUTOFF)],
            "thickness": thick_mm,
            "material": "Si",
            "mu": mu_mm,
            "identifier": "",
            "mask": [],
            "gain": 1.0,
            "pedestal": 0.0,
            "px_mm_strategy": strategy,
        })
    identity = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    goniometer = {"rotation_axis": _list(setup.spindle), "fixed_rotation": identity, "setting_rotation": identity}
    scan = {
        "image_range": [1, 1],
        "batch_offset": 0,
        "properties": {
            "epochs": [0.0],
            "exposure_time": [setup.exposure],
            "oscillation": [setup.phi0 * deg],
            "oscillation_width": [setup.osc * deg],
        },
        "valid_image_ranges": {},
    }
    crystal = {
        "__id__": "crystal",
        "real_space_a": _list(setup.a * 1e10),
        "real_space_b": _list(setup.b * 1e10),
        "real_space_c": _list(setup.c * 1e10),
        "space_group_hall_symbol": hall_symbol(space_group),
    }
    if setup.mosaic_spread > 0:
        crystal["mosaicity"] = setup.mosaic_spread * deg
    experiment: dict = {
        "__id__": "Experiment",
        "identifier": identifier if identifier is not None else uuid.uuid4().hex,
        "beam": 0, "detector": 0, "goniometer": 0, "scan": 0, "crystal": 0,
    }
    imagesets = []
    if image is not None:
        imageset: dict = {"__id__": "ImageSequence", "template": image}
        if image.lower().endswith((".h5", ".nxs", ".nx5", ".hdf5", ".nexus")):
            imageset["single_file_indices"] = [0]
        imagesets.append(imageset)
        experiment["imageset"] = 0
    return {
        "__id__": "ExperimentList",
        "experiment": [experiment],
        "imageset": imagesets,
        "beam": [beam],
        "detector": [{"panels": panels}],
        "goniometer": [goniometer],
        "scan": [scan],
        "crystal": [crystal],
        "profile": [],
        "scaling_model": [],
    }


def write_expt(path: str | os.PathLike[str], setup: Setup, *, image: str | None = None, **options) -> None:
    """Write the experiment list of ``setup`` (imgCIF frame) as JSON.  ``image``: the image file
    the list points to, written relative to the list's folder where it can be."""
    if image is not None:
        folder = os.path.dirname(os.path.abspath(os.fspath(path)))
        target = os.path.abspath(image)
        try:
            image = os.path.relpath(target, folder)
        except ValueError:
            image = target
    doc = experiment_list(setup, image=image, **options)
    text = json.dumps(doc, indent=2, allow_nan=False)
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text + "\n")


def model_vectors(doc: dict) -> dict[str, np.ndarray]:
    """The main vectors of an experiment list read back (for checks): beam s0 direction of travel,
    panel 0's origin/fast/slow (mm), the spindle and the crystal axes (Angstrom)."""
    panel = doc["detector"][0]["panels"][0]
    xl = doc["crystal"][0]
    return {
        "beam": -np.asarray(doc["beam"][0]["direction"], dtype=float),
        "origin": np.asarray(panel["origin"], dtype=float),
        "fast": np.asarray(panel["fast_axis"], dtype=float),
        "slow": np.asarray(panel["slow_axis"], dtype=float),
        "spindle": np.asarray(doc["goniometer"][0]["rotation_axis"], dtype=float),
        "a": np.asarray(xl["real_space_a"], dtype=float),
        "b": np.asarray(xl["real_space_b"], dtype=float),
        "c": np.asarray(xl["real_space_c"], dtype=float),
    }
