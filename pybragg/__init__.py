"""pybragg: nanoBragg's diffraction-image model with a C engine and a torch engine.

>>> import pybragg
>>> sim = pybragg.from_args("-cell 100 100 100 90 90 90 -default_F 100 -N 5 -detpixels 32".split())
>>> sim.run().image.shape
(32, 32)
"""

from pybragg.compare import Comparison, compare, compare_images
from pybragg.config import (
    BeamConfig,
    Config,
    Convention,
    CrystalConfig,
    DetectorConfig,
    Misset,
    Pivot,
    Shape,
)
from pybragg.errors import BackendUnavailable, EngineError, PybraggError, UsageError
from pybragg.flags import from_args
from pybragg.inputs import Inputs
from pybragg.result import Geometry, Result, Stats
from pybragg.simulator import Simulator

__version__ = "0.1.0"

#: names served by :mod:`pybragg.datasets`, imported on first use (they need h5py and Dask)
_DATASETS = ("series", "stills", "open_dataset", "Dataset")


def __getattr__(name: str):
    if name in _DATASETS:
        from pybragg import datasets

        return getattr(datasets, name)
    raise AttributeError(f"module 'pybragg' has no attribute {name!r}")

__all__ = [
    "BackendUnavailable",
    "BeamConfig",
    "Comparison",
    "Config",
    "Convention",
    "CrystalConfig",
    "DetectorConfig",
    "EngineError",
    "Geometry",
    "Inputs",
    "Misset",
    "Pivot",
    "PybraggError",
    "Result",
    "Shape",
    "Simulator",
    "Stats",
    "UsageError",
    "__version__",
    "compare",
    "compare_images",
    "from_args",
]
