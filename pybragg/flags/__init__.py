"""nanoBragg's command-line language: flags -> configuration and inputs.

This layer sits above the core (configuration, plan, engines, :class:`~pybragg.simulator.Simulator`)
and below the ``pybragg`` command (:mod:`pybragg.cli`):

* :mod:`pybragg.flags.table` -- the one table of every flag (spellings, units, defaults, targets);
* :mod:`pybragg.flags.parse` -- an argument list -> :class:`~pybragg.flags.parse.Invocation`
  (the :class:`~pybragg.config.Config`, output options, seeds, input paths, engine options);
* :mod:`pybragg.flags.load` -- the files an invocation names -> :class:`~pybragg.inputs.Inputs`;
* :func:`from_args` -- all three, returning a :class:`~pybragg.simulator.Simulator`.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence

from pybragg.errors import UsageError
from pybragg.flags.load import load_inputs
from pybragg.flags.parse import Invocation, parse_args
from pybragg.simulator import Simulator

__all__ = ["Invocation", "from_args", "load_inputs", "parse_args"]


#: the engine options :func:`from_args` takes as keywords
_OVERRIDES = frozenset({"backend", "dtype", "device", "threads", "memory_budget_gib"})


def from_args(
    argv: Sequence[str],
    *,
    write_dump: bool = False,
    notice: Callable[[str], None] | None = None,
    **overrides: object,
) -> Simulator:
    """A :class:`~pybragg.simulator.Simulator` built from nanoBragg flags (plus ``--backend`` etc.).

    Files named by the flags (``-hkl``, ``-mat``, ``-mask``, ``-sourcefile``, ``-geom``, ``-expt``,
    a ``Fdump.bin`` cache) are read now; ``write_dump`` writes the cache after reading ``-hkl``.  Keyword
    arguments override the engine flags (``backend``, ``dtype``, ``device``, ``threads``,
    ``memory_budget_gib``).  The parsed command line is kept as ``simulator.invocation``.

    >>> sim = from_args("-cell 100 100 100 90 90 90 -default_F 100 -N 5 -detpixels 32".split())
    >>> sim.run().image.shape
    (32, 32)
    """
    if isinstance(argv, (str, bytes)):
        raise UsageError("from_args expects a list of arguments, not one string (use text.split())")
    try:
        args = list(argv)
    except TypeError:
        raise UsageError(f"from_args expects a list of arguments, not {type(argv).__name__}") from None
    unknown = sorted(set(overrides) - _OVERRIDES)
    if unknown:
        raise UsageError(f"from_args: unknown keyword {unknown[0]!r} (one of {', '.join(sorted(_OVERRIDES))})")
    inv = parse_args(args)
    inputs = load_inputs(inv, write_dump=write_dump)
    if inv.notices:
        say = notice or (lambda message: print(message, file=sys.stderr))
        for message in inv.notices:
            say(message)
    kwargs: dict[str, object] = {
        "backend": inv.backend,
        "dtype": inv.dtype,
        "device": inv.device,
        "threads": inv.threads,
        "memory_budget_gib": inv.memory_budget_gib,
    }
    kwargs.update(overrides)
    sim = Simulator(inv.config, inputs, notice=notice, **kwargs)  # type: ignore[arg-type]
    sim.invocation = inv
    return sim
