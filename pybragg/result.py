"""What a simulation returns: the image, its statistics and the derived geometry."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pybragg.config import Config


@dataclass(frozen=True)
class Stats:
    """Statistics of the float image, as the reference reports them.

    ``max_I_fast``/``max_I_slow``: position (m) of the last sub-pixel visited in
    the brightest pixel; ``max_I_pixel``: (slow, fast) index of that pixel or None.
    ``mean`` and ``rms`` run over rendered pixels (inside the ROI and the mask),
    ``rmsd`` over every pixel of the ROI.  ``omega_sum`` is the solid angle summed
    over sub-pixels and layers (divide by ``Geometry.steps`` for steradians).
    """

    max_I: float
    max_I_fast: float
    max_I_slow: float
    max_I_pixel: tuple[int, int] | None
    sum: float
    n: int
    mean: float
    rms: float
    rmsd: float
    omega_sum: float
    interpolation_fallbacks: int


Vec3 = tuple[float, float, float]


@dataclass(frozen=True)
class PanelGeometry:
    """One panel as the plan resolved it (``pb_panel_geometry``), after the detector rotations.

    ``pix0``: corner of its first pixel (m); ``fdet``, ``sdet``, ``odet``: unit axes;
    ``distance``: sample to its plane along the beam, ``close_distance``: along its normal (m);
    ``Fbeam``/``Sbeam``, ``Fclose``/``Sclose``: beam spot and near point from pix0 (m);
    ``data_fast``/``data_slow``: where its first pixel sits in the data array; ``oversample``:
    its sub-pixels per pixel edge; ``steps``: sources x domains x phi steps x oversample².
    """

    name: str
    fpixels: int
    spixels: int
    data_fast: int
    data_slow: int
    pixel_size: float
    pix0: Vec3
    fdet: Vec3
    sdet: Vec3
    odet: Vec3
    distance: float
    close_distance: float
    Fbeam: float
    Sbeam: float
    Fclose: float
    Sclose: float
    oversample: int
    steps: int


class Geometry:
    """Everything derived from the configuration (fields of ``pb_geometry``).

    Attributes are plain floats, ints and tuples; SI units except where the C
    header says otherwise (``cell`` in Angstrom and degrees, ``dials_origin`` in mm,
    reciprocal axes in 1/Angstrom).  The detector fields describe panel 0; ``panels``
    lists every panel (:class:`PanelGeometry`), ``n_panels`` counts them, and the image
    is the data array of ``data_spixels`` x ``data_fpixels`` pixels that holds them.
    """

    def __init__(self, fields: dict[str, Any]):
        self.__dict__.update(fields)

    def as_dict(self) -> dict[str, Any]:
        """The fields as a dictionary."""
        return dict(self.__dict__)

    def __repr__(self) -> str:
        return f"Geometry({self.__dict__!r})"


@dataclass
class Result:
    """Outcome of :meth:`pybragg.Simulator.run`."""

    #: photons per pixel, shape (slow, fast)
    image: np.ndarray
    stats: Stats
    geometry: Geometry
    #: (n, 5): unit direction towards the source (x, y, z), weight, wavelength (m)
    sources: np.ndarray
    #: (n, 3, 3) mosaic domain rotations
    mosaic: np.ndarray
    config: Config
    backend: str
    dtype: str = "float64"
    device: str = "cpu"
    seconds: float = 0.0
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def phi_angles(self) -> np.ndarray:
        """Spindle angle of every phi step (rad)."""
        g = self.geometry
        return g.phi0 + g.phistep * np.arange(g.phisteps)


@dataclass(frozen=True)
class TraceRecord:
    """One traced quantity: name, loop index (layer, sub-pixel slow, sub-pixel fast,
    source, phi step, domain; -1 where it does not apply) and its values."""

    name: str
    index: tuple[int, ...]
    values: tuple[float, ...]
