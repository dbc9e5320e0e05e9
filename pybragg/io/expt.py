"""DIALS experiment lists (``.expt`` JSON) of a render: the true models of beam, detector,
goniometer, scan and crystal, so that ``dials.index``/``dials.integrate`` can start from them and a
refinement can be compared with them.

Everything is in the imgCIF frame that DIALS uses (see :mod:`pybragg.io.frames`), as dxtbx
serialises its models: lengths in mm (detector) and Angstrom (wavelength, crystal), angles in
degrees.  The frame is the one the NeXus and CBF writers use, so the three files agree.

:func:`read_expt` reads one experiment of a list back (``-expt``): the detector's panels (its
hierarchy composed), beam, goniometer, scan and crystal, turned into pybragg's lab frame by
:data:`IMGCIF_TO_LAB`, the inverse of the rotation the writer uses for the MOSFLM frame.
"""

from __future__ import annotations

import json
import math
import os
import uuid
from dataclasses import dataclass

import numpy as np

from .cbf import COUNT_CUTOFF, polarization_fraction, polarization_normal
from .crystfel import LabPanel, Vec3
from .errors import FormatError, shorten
from .frames import Setup, lab_to_imgcif


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


def write_expt(path: str | os.PathLike[str], setup: Setup, *, image: str | None = None,
               relative_to: str | None = None, **options) -> None:
    """Write the experiment list of ``setup`` (imgCIF frame) as JSON.  ``image``: the image file
    the list points to, written relative to the list's folder where it can be (``relative_to``:
    that folder, when ``path`` is a staged file elsewhere)."""
    if image is not None:
        folder = relative_to or os.path.dirname(os.path.abspath(os.fspath(path)))
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


# ---------------------------------------------------------------- reading an experiment list

#: imgCIF (DIALS) vectors -> pybragg's lab frame: the inverse of the MOSFLM frame's
#: :func:`~pybragg.io.frames.lab_to_imgcif` (an imgCIF (x, y, z) is pybragg's (-z, y, x): the
#: beam, travelling along imgCIF's -z, becomes pybragg's +X, the zenith stays +Y)
IMGCIF_TO_LAB = lab_to_imgcif((1.0, 0.0, 0.0), 2).T


@dataclass(frozen=True)
class ExptModel:
    """What an experiment list says of one experiment, in pybragg's lab frame and SI units.

    ``panels``: every panel of the detector (flattened from its hierarchy), stacked along the
    slow axis of the data array in file order; ``masks``: data-array rectangles (slow0, slow1,
    fast0, fast1; inclusive) of the panels' untrusted regions.  ``beam`` is the direction of
    travel; ``polar`` the E-vector and ``polarization`` the Kahn factor (2 x the fraction - 1);
    ``spindle`` the rotation axis with the goniometer's setting rotation applied; ``a``, ``b``,
    ``c`` the crystal's real-space axes (m) at spindle angle 0 (setting and fixed rotations
    applied); ``phi0``/``osc`` the first image's scan start and width (rad).  None: the file
    does not say.
    """

    panels: tuple[LabPanel, ...]
    masks: tuple[tuple[int, int, int, int], ...] = ()
    thickness: float | None = None
    mu: float | None = None
    wavelength: float | None = None
    beam: Vec3 | None = None
    polar: Vec3 | None = None
    polarization: float | None = None
    spindle: Vec3 | None = None
    a: Vec3 | None = None
    b: Vec3 | None = None
    c: Vec3 | None = None
    mosaic_spread: float | None = None
    phi0: float | None = None
    osc: float | None = None
    space_group_hall: str | None = None
    n_experiments: int = 1

    @property
    def shape(self) -> tuple[int, int]:
        """(slow, fast) pixels of the data array the panels fill."""
        return (max(p.data_slow + p.spixels for p in self.panels), max(p.data_fast + p.fpixels for p in self.panels))

    @property
    def reciprocal(self) -> tuple[Vec3, Vec3, Vec3] | None:
        """a*, b*, c* (1/m) of the crystal, or None without one."""
        if self.a is None or self.b is None or self.c is None:
            return None
        a, b, c = (np.asarray(v, dtype=np.float64) for v in (self.a, self.b, self.c))
        volume = float(a @ np.cross(b, c))
        return tuple(tuple(float(x) for x in v / volume)  # type: ignore[return-value]
                     for v in (np.cross(b, c), np.cross(c, a), np.cross(a, b)))


def _vec(doc: dict, key: str, where: str, n: int = 3) -> np.ndarray:
    value = doc.get(key)
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        arr = None
    if arr is None or arr.shape != (n,) or not np.isfinite(arr).all():
        raise FormatError(f"{where}: {key} must be {n} finite numbers, got {shorten(json.dumps(value))}")
    return arr


def _lab(v: np.ndarray) -> Vec3:
    out = IMGCIF_TO_LAB @ v
    return (float(out[0]), float(out[1]), float(out[2]))


def _matrix(doc: dict, key: str, where: str) -> np.ndarray:
    if key not in doc or doc[key] is None:
        return np.eye(3)
    return _vec(doc, key, where, 9).reshape(3, 3)


def _frames(det: dict, where: str) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Every panel's global (fast, slow, origin) in the file's frame: its own where the detector
    has no hierarchy, else composed down the hierarchy (a child's vectors are in its parent's
    fast, slow, normal axes; its origin is added to the parent's), as dxtbx does."""
    panels = det.get("panels")
    if not isinstance(panels, list) or not panels:
        raise FormatError(f"{where}: the detector has no panels")
    from .crystfel import check_panel_count

    try:
        check_panel_count(len(panels))
    except FormatError as exc:
        raise FormatError(f"{where}: {exc}") from None
    local = []
    for i, p in enumerate(panels):
        w = f"{where}: panel {i}"
        local.append((_vec(p, "fast_axis", w), _vec(p, "slow_axis", w), _vec(p, "origin", w)))
    hierarchy = det.get("hierarchy")
    if not hierarchy:
        return local
    out: list[tuple[np.ndarray, np.ndarray, np.ndarray] | None] = [None] * len(panels)

    def unit(v: np.ndarray, w: str) -> np.ndarray:
        n = float(np.linalg.norm(v))
        if not n > 0:
            raise FormatError(f"{w}: a zero axis")
        return v / n

    def walk(node: dict, parent: tuple[np.ndarray, np.ndarray] | None, depth: int) -> None:
        if depth > 64:
            raise FormatError(f"{where}: the detector hierarchy is too deep")
        if "panel" in node:
            index = node["panel"]
            if not isinstance(index, int) or not 0 <= index < len(panels):
                raise FormatError(f"{where}: the hierarchy names panel {index!r}, which does not exist")
            frame = local[index]
        else:
            w = f"{where}: hierarchy group {node.get('name', '')!r}"
            frame = (_vec(node, "fast_axis", w), _vec(node, "slow_axis", w), _vec(node, "origin", w))
        fast, slow, origin = frame
        if parent is not None:
            P, o = parent
            fast, slow, origin = P @ fast, P @ slow, o + P @ origin
        if "panel" in node:
            if out[index] is not None:
                raise FormatError(f"{where}: the hierarchy names panel {index} twice")
            out[index] = (fast, slow, origin)
            return
        f, s = unit(fast, where), unit(slow, where)
        P = np.array([f, s, unit(np.cross(f, s), where)]).T
        for child in node.get("children", []) or []:
            walk(child, (P, origin), depth + 1)

    walk(hierarchy, None, 0)
    for i, frame in enumerate(out):
        if frame is None:
            raise FormatError(f"{where}: panel {i} is not in the detector hierarchy")
    return out  # type: ignore[return-value]


def _detector(det: dict, where: str) -> tuple[list[LabPanel], list[tuple[int, int, int, int]], float | None, float | None]:
    from .crystfel import panel_name

    frames = _frames(det, where)
    panels: list[LabPanel] = []
    masks: list[tuple[int, int, int, int]] = []
    taken: set[str] = set()
    row = 0
    thickness = mu = None
    for i, (p, (fast, slow, origin)) in enumerate(zip(det["panels"], frames)):
        w = f"{where}: panel {i}"
        size = p.get("image_size")
        if not (isinstance(size, list) and len(size) == 2 and all(isinstance(n, int) and n > 0 for n in size)):
            raise FormatError(f"{w}: image_size must be two positive whole numbers, got {shorten(json.dumps(size))}")
        px = _vec(p, "pixel_size", w, 2)
        if not (px > 0).all():
            raise FormatError(f"{w}: pixel_size must be positive")
        if abs(px[0] - px[1]) > 1e-9 * max(px):
            raise FormatError(f"{w}: pixel_size {px[0]:g} x {px[1]:g} mm: pybragg's pixels are square")
        for name, v in (("fast_axis", fast), ("slow_axis", slow)):
            if not float(np.linalg.norm(v)) > 0:
                raise FormatError(f"{w}: {name} is zero")
        if float(np.linalg.norm(np.cross(fast, slow))) < 1e-9 * float(np.linalg.norm(fast) * np.linalg.norm(slow)):
            raise FormatError(f"{w}: fast_axis and slow_axis are parallel")
        fpix, spix = size
        panels.append(LabPanel(
            name=panel_name(str(p.get("name") or ""), i, taken), fpixels=fpix, spixels=spix,
            pixel_size=float(px[0]) * 1e-3, origin=_lab(origin * 1e-3),
            fdet=_lab(fast / np.linalg.norm(fast)), sdet=_lab(slow / np.linalg.norm(slow)),
            data_fast=0, data_slow=row,
        ))
        for rect in p.get("mask") or []:
            if not (isinstance(rect, list) and len(rect) == 4 and all(isinstance(n, int) for n in rect)):
                raise FormatError(f"{w}: a mask rectangle must be four whole numbers (f0, s0, f1, s1)")
            f0, s0, f1, s1 = max(rect[0], 0), max(rect[1], 0), min(rect[2], fpix), min(rect[3], spix)
            if f0 < f1 and s0 < s1:  # dxtbx's rectangles end before f1, s1
                masks.append((row + s0, row + s1 - 1, f0, f1 - 1))
        if i == 0:
            t, m = p.get("thickness"), p.get("mu")
            thickness = float(t) * 1e-3 if isinstance(t, (int, float)) and t > 0 else None
            mu = float(m) * 1e3 if isinstance(m, (int, float)) and m > 0 else None
        row += spix
    return panels, masks, thickness, mu


def _rotation(axis: np.ndarray, degrees: float) -> np.ndarray:
    from .frames import rotation_about

    return rotation_about(axis, math.radians(degrees))


def _goniometer(g: dict, where: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rotation axis datum, fixed rotation F, setting rotation S) of a goniometer; a multi-axis
    goniometer's axes (innermost first) before the scan axis make F, those after it S."""
    if "axes" in g:
        axes = np.asarray(g.get("axes"), dtype=np.float64)
        angles = np.asarray(g.get("angles"), dtype=np.float64)
        k = g.get("scan_axis")
        if axes.ndim != 2 or axes.shape[1] != 3 or angles.shape != (len(axes),) or not isinstance(k, int) \
                or not 0 <= k < len(axes):
            raise FormatError(f"{where}: a multi-axis goniometer needs axes, angles and a scan_axis")
        F, S = np.eye(3), np.eye(3)
        for i in range(k):
            F = _rotation(axes[i], angles[i]) @ F
        for i in range(k + 1, len(axes)):
            S = _rotation(axes[i], angles[i]) @ S
        return axes[k], F, S
    return _vec(g, "rotation_axis", where), _matrix(g, "fixed_rotation", where), _matrix(g, "setting_rotation", where)


def _model(doc: dict, kind: str, experiment: dict, where: str) -> dict | None:
    index = experiment.get(kind)
    if index is None:
        return None
    models = doc.get(kind)
    if not isinstance(index, int) or not isinstance(models, list) or not 0 <= index < len(models):
        raise FormatError(f"{where}: the experiment's {kind} {index!r} is not in the file")
    model = models[index]
    if not isinstance(model, dict):
        raise FormatError(f"{where}: {kind} {index} is not an object")
    return model


def read_expt(path: str | os.PathLike[str], experiment: int = 0) -> ExptModel:
    """Read experiment ``experiment`` of a DIALS experiment list (``.expt``/``.json``): its
    detector (every panel, the hierarchy composed), beam, goniometer, scan and crystal,
    converted to pybragg's lab frame (:data:`IMGCIF_TO_LAB`) and SI units."""
    from .errors import read_text

    where = os.fspath(path)
    try:
        doc = json.loads(read_text(path, max_line=None))  # JSON may be one long line
    except json.JSONDecodeError as exc:
        raise FormatError(f"{where}: not JSON: {exc.msg} at line {exc.lineno}") from None
    if not isinstance(doc, dict) or doc.get("__id__") != "ExperimentList":
        raise FormatError(f"{where}: not a DIALS experiment list (no \"__id__\": \"ExperimentList\")")
    experiments = doc.get("experiment")
    if not isinstance(experiments, list) or not experiments:
        raise FormatError(f"{where}: the list holds no experiment")
    if not 0 <= experiment < len(experiments):
        raise FormatError(f"{where}: no experiment {experiment} (the list holds {len(experiments)})")
    exp = experiments[experiment]
    det = _model(doc, "detector", exp, where)
    if det is None:
        raise FormatError(f"{where}: the experiment has no detector")
    panels, masks, thickness, mu = _detector(det, f"{where}: detector")
    values: dict = {"panels": tuple(panels), "masks": tuple(masks), "thickness": thickness, "mu": mu,
                    "n_experiments": len(experiments)}

    beam = _model(doc, "beam", exp, where)
    if beam is not None:
        w = f"{where}: beam"
        wl = beam.get("wavelength")
        if wl is not None:
            if not (isinstance(wl, (int, float)) and math.isfinite(wl) and wl > 0):
                raise FormatError(f"{w}: wavelength must be a positive number, got {shorten(json.dumps(wl))}")
            values["wavelength"] = float(wl) * 1e-10
        if "direction" in beam:
            towards_source = _vec(beam, "direction", w)
            n = float(np.linalg.norm(towards_source))
            if not n > 0:
                raise FormatError(f"{w}: direction is zero")
            travel = -towards_source / n
            values["beam"] = _lab(travel)
            if "polarization_normal" in beam:
                normal = _vec(beam, "polarization_normal", w)
                e = np.cross(travel, normal)
                if float(np.linalg.norm(e)) > 1e-9:
                    values["polar"] = _lab(e / np.linalg.norm(e))
        fraction = beam.get("polarization_fraction")
        if isinstance(fraction, (int, float)) and 0.0 <= fraction <= 1.0:
            values["polarization"] = 2.0 * float(fraction) - 1.0

    F = S = np.eye(3)
    gonio = _model(doc, "goniometer", exp, where)
    if gonio is not None:
        axis, F, S = _goniometer(gonio, f"{where}: goniometer")
        if not float(np.linalg.norm(axis)) > 0:
            raise FormatError(f"{where}: goniometer: rotation_axis is zero")
        values["spindle"] = _lab(S @ axis / np.linalg.norm(axis))

    scan = _model(doc, "scan", exp, where)
    if scan is not None:
        props = scan.get("properties") if isinstance(scan.get("properties"), dict) else {}
        start = props.get("oscillation", scan.get("oscillation"))
        width = props.get("oscillation_width")
        if isinstance(start, list) and start and width is None and "properties" not in scan and len(start) == 2:
            start, width = start[0], start[1]  # the older [start, width] form
        if isinstance(start, list):
            start = start[0] if start else None
        if isinstance(width, list):
            width = width[0] if width else None
        if isinstance(start, (int, float)) and math.isfinite(start):
            values["phi0"] = math.radians(float(start))
        if isinstance(width, (int, float)) and math.isfinite(width) and width >= 0:
            values["osc"] = math.radians(float(width))

    crystal = _model(doc, "crystal", exp, where)
    if crystal is not None:
        w = f"{where}: crystal"
        axes = [S @ F @ _vec(crystal, key, w) * 1e-10 for key in ("real_space_a", "real_space_b", "real_space_c")]
        if abs(float(axes[0] @ np.cross(axes[1], axes[2]))) < 1e-40:
            raise FormatError(f"{w}: the real-space axes do not span a cell")
        values["a"], values["b"], values["c"] = (_lab(v) for v in axes)
        mosaic = crystal.get("mosaicity")
        if isinstance(mosaic, (int, float)) and math.isfinite(mosaic) and mosaic > 0:
            values["mosaic_spread"] = math.radians(float(mosaic))
        hall = crystal.get("space_group_hall_symbol")
        if isinstance(hall, str):
            values["space_group_hall"] = hall
    return ExptModel(**values)
