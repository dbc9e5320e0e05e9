"""``pybragg compare`` and ``pybragg trace``: where do two computations part?

``pybragg compare [options] -- <nanoBragg flags>`` renders one configuration with
two engines in this process (or one engine against a float image from any other
program) and reports how the images differ.

``pybragg trace --pixel SLOW FAST [--panel NAME] [options] -- <nanoBragg flags>`` makes the
engines report the intermediate quantities of one pixel side by side and marks
the first one that differs beyond the tolerance.

Exit codes: 0 success; 1 failure (unreadable file, unwritable output, out of
memory: the message names the option or flag whose work needed it); 2 usage
error; 3 an engine failed; 4 ``compare``: correlation under ``--threshold``,
``trace``: a quantity differs beyond ``--rtol``/``--atol``.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TextIO

import numpy as np

from pybragg.cli.options import HelpShown, Parser
from pybragg.engines import ENGINES
from pybragg.errors import EngineError, PybraggError, ResourceLimitError, UsageError

EXIT_ENGINE = 3
EXIT_DIFFERENT = 4
INDEX_KEYS = ("layer", "sub_s", "sub_f", "source", "phi", "domain")


def _split(argv: Sequence[str], command: str, parser: Parser) -> tuple[list[str], list[str]]:
    """Options before ``--`` and nanoBragg flags after it (``--help`` needs no flags).

    Without any argument the error line is the command's own usage.
    """
    args = list(argv)
    if not args:
        usage = " ".join(parser.format_usage().split())
        raise UsageError(f"pybragg {command}: no options and no nanoBragg flags; {usage} -- <nanoBragg flags>")
    if "--" not in args:
        if "-h" in args or "--help" in args:
            return args, []
        raise UsageError(f"put the nanoBragg flags after '--', e.g. pybragg {command} "
                         f"{'--pixel 10 20 ' if command == 'trace' else ''}-- -cell 100 100 100 90 90 90 ...")
    i = args.index("--")
    return args[:i], args[i + 1:]


#: what torch and numpy say when an allocation fails (torch raises RuntimeError)
_OOM_WORDS = ("out of memory", "can't allocate memory", "unable to allocate", "cannot allocate memory",
              "not enough memory")


@contextmanager
def _memory(what: str) -> Iterator[None]:
    """An allocation failure inside as a :class:`ResourceLimitError` that names ``what`` asked for it.

    A :class:`ResourceLimitError` raised on purpose (the memory rule, :mod:`pybragg.memory`) already
    names its flag or file and passes unchanged.
    """
    try:
        yield
    except PybraggError:
        raise
    except MemoryError as exc:
        raise ResourceLimitError(f"{what}: out of memory ({exc or 'the allocation failed'})") from exc
    except RuntimeError as exc:
        if any(word in str(exc).lower() for word in _OOM_WORDS):
            raise ResourceLimitError(f"{what}: out of memory ({str(exc).splitlines()[0][:160]})") from exc
        raise


def _tolerance(value: float, flag: str) -> float:
    if not (math.isfinite(value) and value >= 0.0):
        raise UsageError(f"{flag}: a tolerance must be a finite number >= 0, got {value:g}")
    return value


def _engines(text: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    if not names or any(n not in ENGINES for n in names):
        raise UsageError(f"--engines: expected names from {','.join(ENGINES)}, got {text!r}")
    return names


def _simulator(flags: list[str], backend: str, dtype: str, device: str | None):
    """A simulator on exactly the engine asked for (no silent fallback here)."""
    from pybragg.flags import from_args

    notices: list[str] = []
    sim = from_args(flags, backend=backend, dtype=dtype, device=device, notice=notices.append)
    if sim.backend != backend:
        raise EngineError(f"the {backend} engine is not available here ({'; '.join(notices) or 'no reason given'})")
    return sim


def _render(flags: list[str], backend: str, dtype: str, device: str | None):
    with _memory(f"--engines {backend}: reading the input files of the nanoBragg flags"):
        sim = _simulator(flags, backend, dtype, device)
    try:
        with _memory(f"--engines {backend}: rendering with the {backend} engine"):
            return sim.run()
    except PybraggError:
        raise
    except (RuntimeError, ValueError) as exc:
        raise EngineError(f"{backend} engine failed: {exc}") from exc


# --------------------------------------------------------------------------- compare

def _previews(outdir: str, a: np.ndarray, b: np.ndarray, labels: tuple[str, str]) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    both = np.concatenate([a.ravel(), b.ravel()])
    vmax = float(np.percentile(both, 99.9)) or float(both.max()) or 1.0
    written = []
    for image, label, name in ((a, labels[0], "image_a.png"), (b, labels[1], "image_b.png")):
        fig, ax = plt.subplots(figsize=(6, 6 * image.shape[0] / max(image.shape[1], 1) + 0.5))
        shown = ax.imshow(image, cmap="gray_r", vmin=0.0, vmax=vmax, interpolation="nearest")
        ax.set_title(f"{label} (photons/pixel, common scale)")
        ax.set_xlabel("fast pixel")
        ax.set_ylabel("slow pixel")
        fig.colorbar(shown, ax=ax, shrink=0.8)
        path = os.path.join(outdir, name)
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    diff = a.astype(np.float64) - b.astype(np.float64)
    lim = float(np.abs(diff).max()) or 1.0
    fig, ax = plt.subplots(figsize=(6, 6 * a.shape[0] / max(a.shape[1], 1) + 0.5))
    shown = ax.imshow(diff, cmap="RdBu_r", vmin=-lim, vmax=lim, interpolation="nearest")
    ax.set_title(f"{labels[0]} - {labels[1]}")
    ax.set_xlabel("fast pixel")
    ax.set_ylabel("slow pixel")
    fig.colorbar(shown, ax=ax, shrink=0.8)
    path = os.path.join(outdir, "difference.png")
    fig.savefig(path, dpi=100)
    plt.close(fig)
    written.append(path)
    return written


def run_compare(argv: Sequence[str], out: TextIO, err: TextIO) -> int:
    """The ``pybragg compare`` command."""
    from pybragg.compare import compare_images
    from pybragg.io.floatimage import read_float_image

    p = Parser(prog="pybragg compare", description="Compare two renders of one configuration.")
    p.add_argument("--threshold", type=float, default=None, help="fail (exit 4) when correlation is below this")
    p.add_argument("--roi", type=int, nargs=4, metavar=("XMIN", "XMAX", "YMIN", "YMAX"),
                   help="compare only these pixels (inclusive, fast = x, slow = y)")
    p.add_argument("--outdir", default=None, help="write summary.json and PNG previews here")
    p.add_argument("--against", default=None, metavar="FILE",
                   help="raw float32 image (slow-major) from another program, compared with --engines' first")
    p.add_argument("--engines", default=",".join(ENGINES), help=f"two engines to compare (default {','.join(ENGINES)})")
    p.add_argument("--dtype", default="float64", choices=("float64", "float32"))
    p.add_argument("--device", default=None)
    opts, flags = _split(argv, "compare", p)
    o = p.parse_args(opts)
    engines = _engines(o.engines)
    if o.against is None and len(engines) != 2:
        raise UsageError("--engines: name two engines, or one with --against FILE")
    if o.threshold is not None and not -1.0 <= o.threshold <= 1.0:
        raise UsageError("--threshold: a correlation between -1 and 1")
    if o.outdir is not None and os.path.exists(o.outdir) and not os.path.isdir(o.outdir):
        raise UsageError(f"--outdir: {o.outdir} exists and is not a folder")
    if o.outdir is not None and importlib.util.find_spec("matplotlib") is None:
        raise PybraggError("--outdir: the PNG previews need matplotlib (pip install 'pybragg[plot]')")

    first = _render(flags, engines[0], o.dtype, o.device)
    shape = first.image.shape
    if o.against is not None:
        with _memory(f"--against {o.against}"):
            other = read_float_image(o.against, shape)
        label_b = os.path.basename(o.against)
    else:
        second = _render(flags, engines[1], o.dtype, o.device)
        other = second.image
        label_b = f"{second.backend} ({second.dtype})"
    a, b = np.asarray(first.image, dtype=np.float64), np.asarray(other, dtype=np.float64)
    offset = (0, 0)
    if o.roi is not None:
        xmin, xmax, ymin, ymax = o.roi
        if xmin > xmax or ymin > ymax:
            which = f"XMIN {xmin} > XMAX {xmax}" if xmin > xmax else f"YMIN {ymin} > YMAX {ymax}"
            raise UsageError(f"--roi {xmin} {xmax} {ymin} {ymax}: the box is inverted ({which}; "
                             "XMIN must not exceed XMAX, nor YMIN YMAX)")
        if not (0 <= xmin <= xmax < shape[1] and 0 <= ymin <= ymax < shape[0]):
            raise UsageError(f"--roi {xmin} {xmax} {ymin} {ymax} is outside the {shape[1]}x{shape[0]} detector")
        a, b = a[ymin:ymax + 1, xmin:xmax + 1], b[ymin:ymax + 1, xmin:xmax + 1]
        offset = (ymin, xmin)
    with _memory("--roi" if o.roi is not None else f"--engines {o.engines}: comparing the images"):
        result = compare_images(a, b, f"{engines[0]} ({first.dtype})", label_b)
    # report pixels in detector coordinates
    result.max_abs_pixel = (result.max_abs_pixel[0] + offset[0], result.max_abs_pixel[1] + offset[1])
    result.max_rel_pixel = (result.max_rel_pixel[0] + offset[0], result.max_rel_pixel[1] + offset[1])
    out.write(result.report() + "\n")
    if o.outdir is not None:
        try:
            os.makedirs(o.outdir, exist_ok=True)
            summary = result.to_dict()
            summary["threshold"] = o.threshold
            summary["roi"] = o.roi
            summary["flags"] = flags
            from pybragg.io.atomic import atomic_write

            atomic_write(os.path.join(o.outdir, "summary.json"), json.dumps(summary, indent=2).encode())
            with _memory(f"--outdir {o.outdir}: the PNG previews"):
                previews = _previews(o.outdir, a, b, (result.label_a, result.label_b))
            out.writelines(f"  wrote {path}\n" for path in previews)
            out.write(f"  wrote {os.path.join(o.outdir, 'summary.json')}\n")
        except OSError as exc:
            raise PybraggError(f"--outdir: cannot write: {exc}") from exc
    if o.threshold is not None and not result.correlation >= o.threshold:
        err.write(f"pybragg compare: correlation {result.correlation:.9f} is under the threshold {o.threshold}\n")
        return EXIT_DIFFERENT
    return 0


# --------------------------------------------------------------------------- trace

@dataclass
class TraceRow:
    """One quantity of the traced pixel, as each implementation reports it."""

    name: str
    index: tuple[int, ...]
    values: dict[str, tuple[float, ...] | None]
    differs: bool = False


def _trace_records(engine: str, base, fpixel: int, spixel: int, dtype: str, device: str | None):
    """One engine's trace of a pixel, from the configuration and inputs already loaded."""
    from pybragg.engines import select_engine

    notices: list[str] = []
    name, module, dev = select_engine(engine, device, notices.append)
    if name != engine:
        raise EngineError(f"the {ENGINES[engine].title} engine is not available here "
                          f"({'; '.join(notices) or 'no reason given'})")
    return module.trace_pixel(base.config, base.inputs, fpixel, spixel, dtype=dtype, device=dev)


def read_trace_log(path: str) -> list[tuple[str, tuple[float, ...]]]:
    """A third implementation's trace: one ``NAME value [value...]`` line per quantity.

    Blank lines and lines starting with ``#`` are skipped; values are numbers.
    """
    from pybragg.io.errors import FormatError, read_text

    rows = []
    for number, line in enumerate(read_text(path).splitlines(), start=1):
        parts = line.split()
        if not parts or parts[0].startswith("#"):
            continue
        try:
            values = tuple(float(v) for v in parts[1:])
        except ValueError:
            raise FormatError(f"{path}: line {number}: expected 'NAME value [value...]', got {line.strip()!r}")
        if not values:
            raise FormatError(f"{path}: line {number}: {parts[0]} has no value")
        rows.append((parts[0], values))
    return rows


def _close(a: tuple[float, ...], b: tuple[float, ...], rtol: float, atol: float) -> bool:
    if len(a) != len(b):
        return False
    return all(
        (math.isnan(x) and math.isnan(y)) or abs(x - y) <= rtol * max(abs(x), abs(y)) + atol
        for x, y in zip(a, b, strict=True)
    )


def align_traces(traces: dict[str, list[Any]], log: list[tuple[str, tuple[float, ...]]] | None,
                 rtol: float, atol: float) -> list[TraceRow]:
    """Line up the engines' records by (name, loop index) and a log by occurrence.

    A quantity that one engine reports and another does not counts as a difference
    too (rows come in the first engine's order, then the others' extras); a log may
    leave quantities out.
    """
    labels = list(traces)
    keyed = {label: {(r.name, r.index): r.values for r in recs} for label, recs in traces.items()}
    order: list[tuple[str, tuple[int, ...]]] = []
    known: set[tuple[str, tuple[int, ...]]] = set()
    for label in labels:
        for r in traces[label]:
            if (r.name, r.index) not in known:
                known.add((r.name, r.index))
                order.append((r.name, r.index))
    occurrences: dict[str, list[tuple[float, ...]]] = {}
    for name, values in log or []:
        occurrences.setdefault(name, []).append(values)
    seen: dict[str, int] = {}
    rows = []
    for name, index in order:
        values: dict[str, tuple[float, ...] | None] = {label: keyed[label].get((name, index)) for label in labels}
        if log is not None:
            k = seen.get(name, 0)
            seen[name] = k + 1
            found = occurrences.get(name, [])
            values["log"] = found[k] if k < len(found) else None
        present = [v for v in values.values() if v is not None]
        # an engine without the quantity differs; a log need not report everything
        missing = any(values[label] is None for label in labels)
        differs = missing or any(not _close(present[0], v, rtol, atol) for v in present[1:])
        rows.append(TraceRow(name, index, values, differs))
    return rows


def _parse_steps(items: list[str]) -> dict[str, int]:
    steps = {}
    for item in items:
        key, _, value = item.partition("=")
        if key not in INDEX_KEYS or not value.lstrip("-").isdigit():
            raise UsageError(f"--step: expected KEY=N with KEY one of {', '.join(INDEX_KEYS)}, got {item!r}")
        steps[key] = int(value)
    return steps


def _fmt(values: tuple[float, ...] | None) -> str:
    if values is None:
        return "-"
    return " ".join(f"{v:.12g}" for v in values)


def run_trace(argv: Sequence[str], out: TextIO, err: TextIO) -> int:
    """The ``pybragg trace`` command."""
    p = Parser(prog="pybragg trace", description="Trace one pixel through the engines.")
    p.add_argument("--pixel", type=int, nargs=2, metavar=("SLOW", "FAST"), required=True,
                   help="the pixel: data-array coordinates, or within --panel")
    p.add_argument("--panel", default=None, metavar="NAME",
                   help="--pixel counts SLOW FAST within this panel (its name in the -geom or -expt file)")
    p.add_argument("--step", action="append", default=[], metavar="KEY=N",
                   help=f"keep only this loop position ({', '.join(INDEX_KEYS)}); repeatable")
    p.add_argument("--json", action="store_true", help="print the rows as JSON")
    p.add_argument("--engines", default=",".join(ENGINES), help=f"engines to trace (default {','.join(ENGINES)})")
    p.add_argument("--against-log", default=None, metavar="FILE",
                   help="a third implementation's trace, one 'NAME value [value...]' line per quantity")
    p.add_argument("--rtol", type=float, default=1e-6, help="relative tolerance (default 1e-6)")
    p.add_argument("--atol", type=float, default=1e-12, help="absolute tolerance (default 1e-12)")
    p.add_argument("--dtype", default="float64", choices=("float64", "float32"))
    p.add_argument("--device", default=None)
    opts, flags = _split(argv, "trace", p)
    o = p.parse_args(opts)
    engines = _engines(o.engines)
    rtol, atol = _tolerance(o.rtol, "--rtol"), _tolerance(o.atol, "--atol")
    steps = _parse_steps(o.step)
    log = read_trace_log(o.against_log) if o.against_log else None
    spixel, fpixel = o.pixel
    from pybragg.plan import Plan

    with _memory("--engines: reading the input files of the nanoBragg flags"):
        base = _simulator(flags, "c", o.dtype, None)  # flags parsed and input files read once
    plan = Plan(base.config, base.inputs)
    g_rows, g_cols = plan.shape
    panel = _panel_of(plan, base.config, o.panel, spixel, fpixel) if o.panel is not None else None
    if panel is not None:
        spixel, fpixel = spixel + panel[1].data_slow, fpixel + panel[1].data_fast
    if not (0 <= spixel < g_rows and 0 <= fpixel < g_cols):
        raise UsageError(f"--pixel {spixel} {fpixel} is outside the {g_cols}x{g_rows} (fast x slow) detector")
    if panel is None and len(plan.panels) > 1:
        panel = next(((name, pg) for name, pg in zip(_panel_names(plan, base.config), plan.panels)
                      if 0 <= spixel - pg.data_slow < pg.spixels and 0 <= fpixel - pg.data_fast < pg.fpixels), None)
    traces: dict[str, list[Any]] = {}
    pixel_values: dict[str, float] = {}
    for engine in engines:
        try:
            with _memory(f"--engines {engine}: tracing pixel (slow {spixel}, fast {fpixel}) with the {engine} engine"):
                records, value = _trace_records(engine, base, fpixel, spixel, o.dtype, o.device)
        except PybraggError:
            raise
        except (RuntimeError, ValueError) as exc:
            raise EngineError(f"{engine} engine failed to trace: {exc}") from exc
        traces[engine] = records
        pixel_values[engine] = value
    rows = align_traces(traces, log, rtol, atol)
    if steps:
        for key, value in steps.items():
            i = INDEX_KEYS.index(key)
            seen = sorted({r.index[i] for r in rows if r.index[i] >= 0})
            if value not in seen:
                span = f"{key} runs from {seen[0]} to {seen[-1]}" if seen else f"no quantity depends on {key}"
                raise UsageError(f"--step {key}={value}: this pixel's loops have no such position ({span})")
        keep = [INDEX_KEYS.index(k) for k in steps]
        rows = [r for r in rows if all(r.index[i] in (-1, steps[INDEX_KEYS[i]]) for i in keep)]
    first = next((r for r in rows if r.differs), None)
    if o.json:
        payload = {
            "pixel": {"slow": spixel, "fast": fpixel},
            **({"panel": {"name": panel[0], "slow": spixel - panel[1].data_slow,
                          "fast": fpixel - panel[1].data_fast}} if panel is not None else {}),
            "values": pixel_values,
            "first_difference": None if first is None else {"name": first.name, "index": list(first.index)},
            "rows": [
                {"name": r.name, "index": dict(zip(INDEX_KEYS, r.index, strict=True)), "differs": r.differs,
                 "values": {k: (None if v is None else list(v)) for k, v in r.values.items()}}
                for r in rows
            ],
        }
        out.write(json.dumps(payload, indent=1) + "\n")
    else:
        labels = list(rows[0].values) if rows else list(engines)
        where = "" if panel is None else (f" = panel {panel[0]} (slow {spixel - panel[1].data_slow}, "
                                          f"fast {fpixel - panel[1].data_fast})")
        out.write(f"pixel (slow {spixel}, fast {fpixel}){where}: " + ", ".join(f"{k} {v:.9g}" for k, v in
                                                                      pixel_values.items()) + "\n")
        out.write(f"{'quantity':<22} {'index (layer,sub_s,sub_f,source,phi,domain)':<44} " +
                  " | ".join(f"{label:>40}" for label in labels) + "\n")
        for r in rows:
            index = ",".join("." if i < 0 else str(i) for i in r.index)
            mark = "   <-- first difference" if r is first else ("   <-- differs" if r.differs else "")
            out.write(f"{r.name:<22} {index:<44} " + " | ".join(f"{_fmt(r.values[k]):>40}" for k in labels)
                      + mark + "\n")
    if first is not None:
        where = ", ".join(f"{k}={v}" for k, v in zip(INDEX_KEYS, first.index, strict=True) if v >= 0)
        err.write(f"pybragg trace: first difference: {first.name}" + (f" at {where}" if where else "") + "\n")
        return EXIT_DIFFERENT
    return 0


def _panel_names(plan, config) -> list[str]:
    """The panels' names as the configuration gives them (the plan keeps 31 bytes of each)."""
    names = [p.name for p in getattr(config.detector, "panels", ()) or ()]
    return names if len(names) == len(plan.panels) else [p.name for p in plan.panels]


def _panel_of(plan, config, name: str, spixel: int, fpixel: int):
    """(name, PanelGeometry) of ``--panel NAME``, with ``--pixel`` checked against its size."""
    names = _panel_names(plan, config)
    if name not in names:
        shown = ", ".join(names[:8]) + (f", ... ({len(names)} panels)" if len(names) > 8 else "")
        raise UsageError(f"--panel {name}: the detector has no such panel (its panels: {shown})")
    pg = plan.panels[names.index(name)]
    if not (0 <= spixel < pg.spixels and 0 <= fpixel < pg.fpixels):
        raise UsageError(f"--pixel {spixel} {fpixel} is outside panel {name} ({pg.fpixels}x{pg.spixels} fast x slow)")
    return name, pg


def main(command: str, argv: Sequence[str], out: TextIO, err: TextIO) -> int:
    """Dispatch ``pybragg compare`` / ``pybragg trace``; engine failures exit 3."""
    try:
        if command == "compare":
            return run_compare(argv, out, err)
        return run_trace(argv, out, err)
    except HelpShown:
        return 0
    except EngineError as exc:
        err.write(f"pybragg {command}: engine failure: {exc}\n")
        return EXIT_ENGINE
