"""Arrays that a simulation reads from files: structure factors, sources, mask."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pybragg.errors import UsageError
from pybragg.io.hkl import HKLTable
from pybragg.io.stol import StolTable


@dataclass
class Inputs:
    """File-borne inputs of a simulation, shared by every engine.

    ``hkl``: structure-factor table (None: every reflection has ``default_F``);
    ``sources``: (n, 5) array of X, Y, Z (m), weight, wavelength (m), NaN where the
    default applies (None: sources come from divergence and dispersion);
    ``mask``: uint8 (slow, fast), 0 = pixel not rendered (None: all pixels).
    ``space_group`` and ``cell`` (Angstrom, degrees) are metadata of the file the structure
    factors came from (an MTZ, mmCIF or model file; None for a text table); the engines ignore
    them, the experiment-list and NeXus writers record the space group.
    """

    hkl: HKLTable | None = None
    sources: np.ndarray | None = None
    mask: np.ndarray | None = None
    space_group: str | None = None
    cell: tuple[float, ...] | None = None
    #: amorphous structure factors of the background stage (:class:`pybragg.io.stol.StolTable`,
    #: sin(theta)/lambda in 1/m); None: no background
    stol: StolTable | None = None

    def __post_init__(self) -> None:
        # UsageError is a ValueError: bad arrays raise a PybraggError, as the whole API does
        if self.hkl is not None and not isinstance(self.hkl, HKLTable):
            raise UsageError(f"Inputs.hkl must be an HKLTable, got {type(self.hkl).__name__}")
        if self.stol is not None and not isinstance(self.stol, StolTable):
            raise UsageError(f"Inputs.stol must be a StolTable, got {type(self.stol).__name__}")
        if self.sources is not None:
            try:
                self.sources = np.ascontiguousarray(self.sources, dtype=np.float64)
            except (TypeError, ValueError) as exc:
                raise UsageError(f"Inputs.sources must be an (n, 5) array of numbers: {exc}") from None
            if self.sources.ndim != 2 or self.sources.shape[1] != 5:
                raise UsageError("sources must be an (n, 5) array")
            if self.sources.shape[0] > 2**31 - 1:
                raise UsageError(f"Inputs.sources: {self.sources.shape[0]} sources, more than the engine's 2^31 - 1")
        if self.mask is not None:
            try:
                self.mask = np.ascontiguousarray(np.asarray(self.mask) != 0, dtype=np.uint8)
            except (TypeError, ValueError) as exc:
                raise UsageError(f"Inputs.mask must be a 2-D array: {exc}") from None
            if self.mask.ndim != 2:
                raise UsageError("mask must be a 2-D (slow, fast) array")
