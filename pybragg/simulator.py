"""The :class:`Simulator`: one interface to every engine."""

from __future__ import annotations

import math
import sys
from collections.abc import Callable

import numpy as np

from pybragg.config import Config, check_config
from pybragg.engines import DEFAULT_BACKEND, DTYPES, select_engine
from pybragg.errors import EngineError, UsageError
from pybragg.inputs import Inputs
from pybragg.memory import check_allocation
from pybragg.result import Result

#: bytes one pixel of the data array takes from the render to the last output written: the
#: engine's image (float32, or float64 in the torch engine), the scaled copies and the float,
#: integer and noise images of the writers (an estimate that errs on the large side)
PIXEL_BYTES = 32
#: most CPU threads a render may ask for (``--threads``; a larger number is a typing error, not a machine)
MAX_THREADS = 4096
#: the largest --memory-budget (GiB, 1 EiB): its bytes stay a finite float and an int64
MAX_MEMORY_BUDGET_GIB = 2.0**30

#: the inputs that scale the intensity, for the message of an image that overflows
SCALE_INPUTS = "-hkl or -default_F values, -fluence/-flux, -water, -N or the crystal size, -sourcefile weights"


def detector_pixels(config: Config) -> tuple[int, int]:
    """(slow, fast) pixels of the data array ``config`` describes, as the plan will resolve them
    (pixel counts win over sizes; the panels of a detector file span their data array)."""
    det = config.detector
    panels = tuple(getattr(det, "panels", ()) or ())
    if panels:
        return (max(int(p.data_slow) + int(p.spixels) for p in panels),
                max(int(p.data_fast) + int(p.fpixels) for p in panels))
    px = float(det.pixel_size)
    counts = []
    for n, size in ((det.spixels, det.detsize_s), (det.fpixels, det.detsize_f)):
        if n is not None and int(n) > 0:
            counts.append(int(n))
        elif px > 0 and size is not None and math.isfinite(float(size) / px):
            counts.append(max(0, math.ceil(float(size) / px - 0.5)))
        else:
            counts.append(0)  # the plan refuses it with its own message
    return counts[0], counts[1]


def detector_source(config: Config, invocation: object | None = None) -> str:
    """The flags or file that set the detector's size, for a message."""
    if getattr(config.detector, "panels", ()):
        for attr, flag in (("geom_path", "-geom"), ("expt_path", "-expt")):
            path = getattr(invocation, attr, None)
            if path:
                return f"{flag} {path}"
        return "the detector's panels"
    return "-detpixels/-detsize/-pixel"


def check_detector_memory(config: Config, invocation: object | None = None) -> None:
    """Refuse a detector whose image and outputs do not fit the memory rule
    (:func:`pybragg.memory.check_allocation`), naming the flag or file that sized it."""
    slow, fast = detector_pixels(config)
    check_allocation(float(slow) * float(fast) * PIXEL_BYTES,
                     f"{detector_source(config, invocation)}: the detector's {fast} x {slow} pixels "
                     "(image and outputs)")


def check_image(image: np.ndarray, what: str = "the rendered image") -> None:
    """Refuse an image with a non-finite or negative pixel (:class:`~pybragg.errors.EngineError`):
    an accepted input renders a finite, non-negative image, so such an image is never written."""
    values = np.asarray(image)
    if values.dtype.kind == "f" and values.size and values.min() >= 0 and np.isfinite(values.max()):
        return  # (a NaN would be the minimum and the maximum): the common case in two passes, not four
    finite = np.isfinite(values)
    if not finite.all():
        n_nan = int(np.isnan(values).sum())
        n_inf = int(values.size - finite.sum()) - n_nan
        if n_inf:
            raise EngineError(f"{what} has {n_inf} infinite pixel{'s' if n_inf != 1 else ''}: the intensity "
                              f"overflows (check {SCALE_INPUTS})")
        raise EngineError(f"{what} has {n_nan} pixel{'s' if n_nan != 1 else ''} that are not a number: "
                          f"a derived quantity is undefined (check the wavelengths (-lambda, -dispersion, "
                          f"-sourcefile), the detector geometry and {SCALE_INPUTS})")
    n_neg = int((values < 0).sum())
    if n_neg:
        raise EngineError(f"{what} has {n_neg} negative pixel{'s' if n_neg != 1 else ''} (check -sourcefile "
                          "weights, -polar, the detector geometry (-twotheta, the detector vectors))")


class Simulator:
    """Render a :class:`~pybragg.config.Config` with an engine of the registry
    (:data:`pybragg.engines.ENGINES`; ``auto`` by default, as on the command line).

    Built from nanoBragg flags with :func:`pybragg.from_args`:

    >>> import pybragg
    >>> sim = pybragg.from_args(["-cell", "100", "100", "100", "90", "90", "90",
    ...                          "-default_F", "100", "-N", "5", "-detpixels", "64"])
    >>> result = sim.run()
    >>> result.image.shape
    (64, 64)

    Bad arguments raise :class:`~pybragg.errors.UsageError`; a render whose image would be
    non-finite or negative raises :class:`~pybragg.errors.EngineError`; a detector too large
    for the memory rule raises :class:`~pybragg.errors.ResourceLimitError`.
    """

    def __init__(
        self,
        config: Config,
        inputs: Inputs | None = None,
        backend: str = DEFAULT_BACKEND,
        dtype: str = "float64",
        device: str | None = None,
        threads: int = 0,
        memory_budget_gib: float = 2.0,
        notice: Callable[[str], None] | None = None,
    ):
        if not isinstance(config, Config):
            raise UsageError(f"Simulator: config must be a pybragg.Config, not {type(config).__name__} "
                             "(use pybragg.from_args for a command line)")
        check_config(config)
        if inputs is not None and not isinstance(inputs, Inputs):
            raise UsageError(f"Simulator: inputs must be a pybragg.Inputs, not {type(inputs).__name__}")
        if not isinstance(backend, str):
            raise UsageError(f"--backend: expected a name, got {type(backend).__name__}")
        if dtype not in DTYPES:
            raise UsageError(f"--dtype: unknown precision {dtype!r} (choose from {', '.join(DTYPES)})")
        if device is not None and not isinstance(device, str):
            raise UsageError(f"--device: expected a name such as cpu or cuda:0, got {type(device).__name__}")
        if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)):
            raise UsageError(f"--threads: expected an integer, got {threads!r}")
        if not 0 <= threads <= MAX_THREADS:
            raise UsageError(f"--threads: {threads} is out of range (0 to {MAX_THREADS})")
        if isinstance(memory_budget_gib, bool) or not isinstance(memory_budget_gib, (int, float, np.number)):
            raise UsageError(f"--memory-budget: expected a number of GiB, got {memory_budget_gib!r}")
        if not (memory_budget_gib > 0 and math.isfinite(memory_budget_gib)):
            raise UsageError("--memory-budget must be positive")
        if memory_budget_gib > MAX_MEMORY_BUDGET_GIB:
            raise UsageError(f"--memory-budget: {memory_budget_gib:g} is too large (at most {MAX_MEMORY_BUDGET_GIB:g} GiB)")
        self.config = config
        self.inputs = inputs or Inputs()
        self.dtype = dtype
        self.threads = int(threads)
        self.memory_budget_gib = float(memory_budget_gib)
        say = notice or (lambda message: print(message, file=sys.stderr))
        self.backend, self._engine, self.device = select_engine(backend, device, say)
        #: set by :func:`pybragg.from_args`: the parsed command line (outputs, seeds, paths)
        self.invocation: object | None = None

    def run(self, progress: Callable[[float], None] | None = None) -> Result:
        """Render the image; ``progress(fraction)`` is called now and then."""
        check_config(self.config)  # it may have been changed since
        check_detector_memory(self.config, self.invocation)
        result = self._engine.render(
            self.config,
            self.inputs,
            dtype=self.dtype,
            device=self.device,
            threads=self.threads,
            progress=progress,
            memory_budget_gib=self.memory_budget_gib,
        )
        check_image(result.image)
        return result
