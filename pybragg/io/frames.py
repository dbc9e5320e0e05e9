"""Laboratory frames of the files pybragg writes, and the one description of a render they share.

pybragg renders in its own lab frame (the reference's): for the default MOSFLM convention the
beam travels along +X and Y points to the zenith; the XDS, DIALS and ADXV conventions send the
beam along +Z with their Y axis pointing down (the way an XDS detector's Y runs down the image).
The formats pybragg writes use two other frames:

* **McStas** (NeXus/NXmx): the beam travels along +z, +y points up, x = y cross z.
* **imgCIF** (CBF axis categories, DIALS experiment lists): the beam travels along -z (the source
  lies towards +z), +y points up, and x = y cross z.

Every writer maps pybragg's vectors with :func:`lab_to_mcstas` or :func:`lab_to_imgcif`, proper
rotations built here and nowhere else: the one that takes pybragg's beam direction to the
target's beam direction and the convention's "up" to +y.  For the MOSFLM frame a pybragg vector
(X, Y, Z) is the McStas vector (-Z, Y, X) and the imgCIF vector (Z, Y, -X); for the XDS, DIALS
and ADXV frames (X, Y, Z) is McStas (-X, -Y, Z) and imgCIF (X, -Y, -Z).  A rotation keeps what
must be right in every file: the beam centre, distances and every angle between the beam, the
detector axes, the spindle and the crystal axes (handedness included).

:class:`Setup` is what the writers need of a :class:`~pybragg.result.Result`: beam, panels,
spindle, scan and crystal, as vectors in one frame; :func:`setup_from_result` builds it in
pybragg's frame and :meth:`Setup.rotated` moves it to another.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

#: NeXus (McStas) to imgCIF: a half turn about y
MCSTAS_TO_IMGCIF = np.diag([-1.0, 1.0, -1.0])

#: the direction that becomes +y ("up") in the McStas and imgCIF frames, per convention
#: (indexed by :class:`pybragg.config.Convention`: CUSTOM, ADXV, MOSFLM, XDS, DIALS, DENZO)
_UP = {
    0: (0.0, 1.0, 0.0),   # CUSTOM: as MOSFLM (a custom beam along X gives MOSFLM's rotation)
    1: (0.0, -1.0, 0.0),  # ADXV
    2: (0.0, 1.0, 0.0),   # MOSFLM: Y to the zenith
    3: (0.0, -1.0, 0.0),  # XDS
    4: (0.0, -1.0, 0.0),  # DIALS
    5: (0.0, 1.0, 0.0),   # DENZO
}


def _unit(v) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    n = float(np.linalg.norm(v))
    if not n > 0.0:
        raise ValueError("zero vector")
    return v / n


def lab_to_mcstas(beam, convention: int) -> np.ndarray:
    """3x3 rotation taking pybragg lab vectors to McStas vectors.

    Rows are the McStas axes written in pybragg's frame: z along the beam, y along the
    convention's "up" made perpendicular to the beam, x = y cross z.
    """
    z = _unit(beam)
    up = np.asarray(_UP.get(int(convention), (0.0, 1.0, 0.0)), dtype=np.float64)
    y = up - float(up @ z) * z
    if np.linalg.norm(y) < 1e-6:
        # a beam along the "up" direction: take pybragg's Z (or X) as up instead
        for other in ((0.0, 0.0, 1.0), (1.0, 0.0, 0.0)):
            o = np.asarray(other)
            y = o - float(o @ z) * z
            if np.linalg.norm(y) > 1e-6:
                break
    y = _unit(y)
    x = np.cross(y, z)
    return np.array([x, y, z])


def lab_to_imgcif(beam, convention: int) -> np.ndarray:
    """3x3 rotation taking pybragg lab vectors to imgCIF (and DIALS) vectors."""
    return MCSTAS_TO_IMGCIF @ lab_to_mcstas(beam, convention)


@dataclass(frozen=True)
class Panel:
    """One flat panel: its pixels, where it sits in the data array and where in space (SI).

    ``origin`` is the corner of the panel's first pixel (the sample is at the origin of the
    frame); pixel (f, s) of the panel has its centre at
    ``origin + (f + 0.5) * pixel_size * fast + (s + 0.5) * pixel_size * slow``.
    """

    name: str
    fpixels: int
    spixels: int
    pixel_size: float
    origin: np.ndarray
    fast: np.ndarray
    slow: np.ndarray
    data_fast: int = 0
    data_slow: int = 0

    @property
    def normal(self) -> np.ndarray:
        """fast x slow, normalised."""
        return _unit(np.cross(self.fast, self.slow))

    def pixel_centre(self, f: float, s: float) -> np.ndarray:
        """Position (m) of the centre of pixel (f, s) of this panel."""
        return self.origin + (f + 0.5) * self.pixel_size * self.fast + (s + 0.5) * self.pixel_size * self.slow

    def beam_centre(self, beam: np.ndarray) -> tuple[float, float] | None:
        """Where a ray from the sample along ``beam`` meets the panel's plane: (fast, slow) in metres
        from the corner of the first pixel, or None when it never does."""
        n = self.normal
        along = float(beam @ n)
        if abs(along) < 1e-12:
            return None
        t = float(self.origin @ n) / along
        if t <= 0:
            return None
        hit = t * beam - self.origin
        # solve hit = F fast + S slow (the axes need not be orthogonal)
        basis = np.array([self.fast, self.slow]).T
        (F, S), *_ = np.linalg.lstsq(basis, hit, rcond=None)
        return float(F), float(S)

    def rotated(self, R: np.ndarray) -> Panel:
        return replace(self, origin=R @ self.origin, fast=R @ self.fast, slow=R @ self.slow)


@dataclass(frozen=True)
class Setup:
    """A render's beam, detector, goniometer, scan and crystal, in one frame.

    Vectors: ``beam`` is the direction of travel of the X-rays, ``polar`` the E-vector,
    ``spindle`` the right-handed rotation axis, ``twotheta_axis`` the detector's two-theta
    axis, ``up`` the frame's zenith; ``a``, ``b``, ``c`` the real-space crystal axes (m) at spindle
    angle 0.  Angles in radians, lengths in metres.
    """

    frame: str
    convention: int
    beam: np.ndarray
    polar: np.ndarray
    spindle: np.ndarray
    twotheta_axis: np.ndarray
    twotheta: float
    panels: tuple[Panel, ...]
    data_fpixels: int
    data_spixels: int
    wavelength: float
    phi0: float
    osc: float
    phistep: float
    phisteps: int
    a: np.ndarray
    b: np.ndarray
    c: np.ndarray
    cell: tuple[float, ...]
    mosaic_spread: float
    distance: float
    close_distance: float
    thickness: float
    mu: float
    exposure: float
    flux: float
    fluence: float
    beamsize: float
    polarization: float

    def rotated(self, R: np.ndarray, frame: str) -> Setup:
        """The same setup with every vector rotated by ``R`` (a proper rotation)."""
        if not np.allclose(R @ R.T, np.eye(3), atol=1e-12) or np.linalg.det(R) < 0:
            raise ValueError("not a proper rotation")
        return replace(
            self, frame=frame, beam=R @ self.beam, polar=R @ self.polar, spindle=R @ self.spindle,
            twotheta_axis=R @ self.twotheta_axis, panels=tuple(p.rotated(R) for p in self.panels),
            a=R @ self.a, b=R @ self.b, c=R @ self.c,
        )

    def in_mcstas(self) -> Setup:
        """This setup (in pybragg's frame) in the McStas frame of NeXus."""
        return self._from_lab(lab_to_mcstas(self.beam, self.convention), "mcstas")

    def in_imgcif(self) -> Setup:
        """This setup (in pybragg's frame) in the imgCIF frame of CBF and DIALS."""
        return self._from_lab(lab_to_imgcif(self.beam, self.convention), "imgcif")

    def _from_lab(self, R: np.ndarray, frame: str) -> Setup:
        if self.frame != "pybragg":
            raise ValueError(f"setup is already in the {self.frame} frame")
        return self.rotated(R, frame)

    @property
    def scan_end(self) -> float:
        """Spindle angle at the end of the exposure (rad)."""
        return self.phi0 + self.osc


def _vec(v) -> np.ndarray:
    return np.asarray(tuple(float(x) for x in v), dtype=np.float64)


def panels_of(geometry) -> tuple[Panel, ...]:
    """The panels of a geometry: ``geometry.panels`` where the plan has them, else the one panel
    of the single-panel fields (pix0, fdet, sdet, fpixels, spixels, pixel_size)."""
    panels = getattr(geometry, "panels", None)
    if panels:
        out = []
        for i, p in enumerate(panels):
            out.append(Panel(
                name=str(getattr(p, "name", "") or f"p{i}"),
                fpixels=int(p.fpixels), spixels=int(p.spixels), pixel_size=float(p.pixel_size),
                origin=_vec(p.pix0), fast=_unit(_vec(p.fdet)), slow=_unit(_vec(p.sdet)),
                data_fast=int(getattr(p, "data_fast", 0)), data_slow=int(getattr(p, "data_slow", 0)),
            ))
        return tuple(out)
    return (Panel(
        name="p0", fpixels=int(geometry.fpixels), spixels=int(geometry.spixels),
        pixel_size=float(geometry.pixel_size), origin=_vec(geometry.pix0),
        fast=_unit(_vec(geometry.fdet)), slow=_unit(_vec(geometry.sdet)),
    ),)


def setup_from_result(result) -> Setup:
    """The :class:`Setup` of a :class:`~pybragg.result.Result`, in pybragg's lab frame."""
    g = result.geometry
    panels = panels_of(g)
    data_f = int(getattr(g, "data_fpixels", 0) or max(p.data_fast + p.fpixels for p in panels))
    data_s = int(getattr(g, "data_spixels", 0) or max(p.data_slow + p.spixels for p in panels))
    beam_cfg = result.config.beam
    return Setup(
        frame="pybragg", convention=int(g.convention),
        beam=_unit(_vec(g.beam)), polar=_unit(_vec(g.polar)), spindle=_unit(_vec(g.spindle)),
        twotheta_axis=_unit(_vec(g.twotheta_axis)), twotheta=float(g.twotheta),
        panels=panels, data_fpixels=data_f, data_spixels=data_s,
        wavelength=float(g.lambda0), phi0=float(g.phi0), osc=float(g.osc), phistep=float(g.phistep),
        phisteps=int(g.phisteps), a=_vec(g.a), b=_vec(g.b), c=_vec(g.c), cell=tuple(float(x) for x in g.cell),
        mosaic_spread=float(g.mosaic_spread) if math.isfinite(g.mosaic_spread) else 0.0,
        distance=float(g.distance), close_distance=float(g.close_distance), thickness=float(g.thick),
        mu=float(g.mu) if math.isfinite(g.mu) and g.mu > 0 else 0.0,
        exposure=float(g.exposure if math.isfinite(g.exposure) else beam_cfg.exposure),
        flux=float(g.flux), fluence=float(g.fluence), beamsize=float(g.beamsize),
        polarization=float(g.polarization),
    )


def rotation_about(axis, angle: float) -> np.ndarray:
    """Right-handed rotation by ``angle`` (rad) about ``axis``."""
    k = _unit(axis)
    K = np.array([[0.0, -k[2], k[1]], [k[2], 0.0, -k[0]], [-k[1], k[0], 0.0]])
    return np.eye(3) + math.sin(angle) * K + (1.0 - math.cos(angle)) * (K @ K)
