"""The :class:`Simulator`: one interface to every engine."""

from __future__ import annotations

import sys
from collections.abc import Callable

from pybragg.config import Config
from pybragg.engines import DEFAULT_BACKEND, DTYPES, select_engine
from pybragg.errors import UsageError
from pybragg.inputs import Inputs
from pybragg.result import Result


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
        if dtype not in DTYPES:
            raise UsageError(f"--dtype: unknown precision {dtype!r} (choose from {', '.join(DTYPES)})")
        if not memory_budget_gib > 0:
            raise UsageError("--memory-budget must be positive")
        self.config = config
        self.inputs = inputs or Inputs()
        self.dtype = dtype
        self.threads = threads
        self.memory_budget_gib = memory_budget_gib
        say = notice or (lambda message: print(message, file=sys.stderr))
        self.backend, self._engine, self.device = select_engine(backend, device, say)
        #: set by :func:`pybragg.from_args`: the parsed command line (outputs, seeds, paths)
        self.invocation: object | None = None

    def run(self, progress: Callable[[float], None] | None = None) -> Result:
        """Render the image; ``progress(fraction)`` is called now and then."""
        return self._engine.render(
            self.config,
            self.inputs,
            dtype=self.dtype,
            device=self.device,
            threads=self.threads,
            progress=progress,
            memory_budget_gib=self.memory_budget_gib,
        )
