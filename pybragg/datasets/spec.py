"""A dataset job: the nanoBragg flags read once on the client, and what frame ``i`` is.

:class:`Job` parses the flags (:func:`pybragg.flags.parse_args`), reads every input file once
(:func:`pybragg.flags.load_inputs`) and resolves the base geometry with the C plan.  From then on
frame ``i`` is a pure function of the job and ``i``: :meth:`Job.frame` returns the
:class:`FrameTask` a worker renders (a configuration, a noise seed, a source list) and the truth
row the writer stores with it.  Nothing a worker does depends on the worker, the order, the
scheduler or an earlier run, which makes every dataset bit-reproducible and resumable.

* A **series**: frame ``i`` is the single render of the same flags with
  ``-phi START+i*OSC -osc OSC -seed SEED+i`` (``START``, ``OSC``, ``SEED`` from ``-phi``,
  ``-osc``, ``-seed``; defaults 0, 0.1 degrees and 1).  :meth:`Job.frame_flags` gives that command.
* **Stills**: shot ``i`` has the orientation, seed and variations drawn from ``(S, i)``
  (:mod:`pybragg.datasets.draws`); its configuration is built from its truth exactly as a
  ``pybragg`` run given the ``-mat`` file (and source file, ``-lambda``, ...) written from that
  truth builds it (:func:`pybragg.datasets.truth.reproduce_flags`).

:meth:`Job.fingerprint` is what ``--resume`` compares: every configuration field, the inputs'
digests, seeds, counts, format and engine, in a fixed order.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import numpy as np

from pybragg.config import Config, Misset, iter_fields
from pybragg.errors import UsageError
from pybragg.inputs import Inputs

from .draws import ShotDraws, Variations, draw_shot, mosflm_matrix, rotated_axes

SERIES = "series"
STILLS = "stills"
#: what ``--format`` names
FORMATS = ("nexus", "cbf", "smv")
#: output names that mean one HDF5 file
HDF5_SUFFIXES = (".nxs", ".h5", ".hdf5", ".hdf", ".nx5")
#: a series' oscillation per frame when the flags give no -osc (degrees)
DEFAULT_OSC_DEG = 0.1
#: a series' first noise seed when the flags give no -seed
DEFAULT_SEED = 1
#: version of the dataset layout (stored; a resume refuses another)
LAYOUT_VERSION = 1
#: metres per Ångström, as the flags convert -lambda (value / 1e10)
_PER_ANGSTROM = 1.0e10


@dataclass
class FrameTask:
    """What a worker renders for frame ``index``: small, self-contained, picklable."""

    index: int
    config: Config
    seed: int
    #: per-frame source list (a stills spectrum), else the shared inputs' sources
    sources: np.ndarray | None = None


@dataclass
class Shared:
    """Everything the frames share, sent once to each worker (``client.scatter``)."""

    inputs: Inputs
    backend: str
    dtype: str
    #: device kind: "cpu" or "cuda" (a worker picks its own cuda index)
    device: str
    memory_budget_gib: float
    #: engine threads per task (0: the worker's cores divided by its task slots)
    threads: int
    #: what a frame becomes: "float", "counts" (HDF5), "smv-noise", "smv-int" or "cbf"
    product: str
    adc_offset: float
    intfile_scale: float | None
    write_noise: bool = True


@dataclass
class TruthField:
    """One per-frame truth dataset: its shape per frame, dtype and units."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    units: str | None = None
    description: str = ""


def is_hdf5_path(path: str) -> bool:
    """Whether ``path`` names one HDF5 file rather than a folder of frames."""
    return os.fspath(path).lower().endswith(HDF5_SUFFIXES)


def resolve_format(out: str, fmt: str | None) -> str:
    """The output format: ``nexus`` for an HDF5 name, else ``fmt`` (default ``cbf``) for a folder."""
    if fmt is not None and fmt not in FORMATS:
        raise UsageError(f"--format: choose from {', '.join(FORMATS)}, got {fmt!r}")
    if is_hdf5_path(out):
        if fmt not in (None, "nexus"):
            raise UsageError(f"--format {fmt}: {out} names one HDF5 file; give a folder for one file per frame")
        return "nexus"
    if fmt == "nexus":
        raise UsageError(f"--format nexus: name the file FILE.nxs or FILE.h5, not {out!r}")
    return fmt or "cbf"


def flag_values(flags: Sequence[str], name: str) -> list[list[str]]:
    """The value tokens of every occurrence of flag ``name`` (any spelling) in ``flags``.

    A token that spells a flag is always a flag (the parser never takes one as a value).
    """
    from pybragg.flags.table import lookup

    want = lookup(name)
    if want is None:
        raise ValueError(f"no flag {name}")
    found: list[list[str]] = []
    tokens = list(flags)
    for i, token in enumerate(tokens):
        spelled, inline = token, None
        if token.startswith("--") and "=" in token:
            spelled, inline = token.split("=", 1)
        if lookup(spelled) is not want:
            continue
        if inline is not None:
            found.append([inline])
            continue
        values = []
        for value in tokens[i + 1:i + 1 + want.nargs]:
            if lookup(value) is not None:
                break
            values.append(value)
        found.append(values)
    return found


def _last_value(flags: Sequence[str], name: str) -> str | None:
    given = flag_values(flags, name)
    return given[-1][0] if given and given[-1] else None


def _json_value(value: Any) -> Any:
    """A configuration value as JSON holds it (tuples as lists, enums as ints, panels as objects)."""
    if isinstance(value, enum.Enum):
        return value.value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):  # a PanelConfig of -geom/-expt
        return {f.name: _json_value(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (tuple, list)):
        return [_json_value(v) for v in value]
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    return value


def _digest(*arrays: np.ndarray | None) -> str | None:
    if all(a is None for a in arrays):
        return None
    h = hashlib.sha256()
    for a in arrays:
        if a is None:
            h.update(b"none")
            continue
        a = np.ascontiguousarray(a)
        h.update(str(a.dtype).encode() + str(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()[:32]


class Job:
    """A series or a stills dataset, resolved on the client.

    ``kind``: :data:`SERIES` or :data:`STILLS`; ``flags``: nanoBragg flags; ``count``: frames or
    shots; ``seed``: the stills seed ``S`` (unused by a series); ``fmt``: ``nexus``, ``cbf`` or
    ``smv``; ``threads``: engine threads per task (0: automatic).
    """

    def __init__(
        self,
        kind: str,
        flags: Sequence[str],
        count: int,
        *,
        seed: int | None = None,
        variations: Variations | None = None,
        fmt: str = "nexus",
        threads: int | None = None,
        backend: str | None = None,
    ):
        from pybragg.engines import select_engine
        from pybragg.flags import load_inputs, parse_args
        from pybragg.plan import Plan

        if kind not in (SERIES, STILLS):
            raise ValueError(f"unknown dataset kind {kind!r}")
        if isinstance(flags, (str, bytes)):
            raise UsageError("give the nanoBragg flags as a list of arguments, not one string (use text.split())")
        if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 1:
            what = "--frames" if kind == SERIES else "--shots"
            raise UsageError(f"{what}: at least 1, got {count!r}")
        if fmt not in FORMATS:
            raise UsageError(f"--format: choose from {', '.join(FORMATS)}, got {fmt!r}")
        self.kind = kind
        self.flags = [str(f) for f in flags]
        self.count = int(count)
        self.fmt = fmt
        self.variations = variations or Variations()
        if kind == SERIES and variations is not None and variations != Variations():
            raise UsageError("per-shot variations are for stills, not a rotation series")
        if kind == STILLS:
            if seed is None:
                raise UsageError("--seed: stills need a seed S (every shot is drawn from S and its number)")
            if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
                raise UsageError(f"--seed: a non-negative integer, got {seed!r}")
        self.seed = None if seed is None else int(seed)

        inv = parse_args(self.flags)
        if inv.show_help:
            raise UsageError("put nanoBragg flags after '--' (see pybragg --help), not -h")
        self.invocation = inv
        config = inv.config
        crystal = config.crystal
        # the clock must not leak into a dataset: seeds the flags do not give are fixed
        if not flag_values(self.flags, "-misset_seed"):
            if crystal.misset_mode == Misset.RANDOM and kind == SERIES:
                raise UsageError("-misset random in a series needs -misset_seed SEED (else the clock picks it)")
            crystal.misset_seed = 1
        seeds = flag_values(self.flags, "-seed")
        self.first_seed = inv.outputs.noise_seed if seeds else DEFAULT_SEED
        if kind == STILLS and seeds:
            raise UsageError("-seed: a stills shot's noise seed is drawn from --seed S and the shot number")
        self.config = config
        self.inputs: Inputs = load_inputs(inv, write_dump=False)
        if kind == STILLS and self.variations.has_spectrum and self.inputs.sources is not None:
            raise UsageError("--sase/--spectrum give each shot its own sources: drop -sourcefile")
        self.backend, _, self.device = select_engine(backend or inv.backend, inv.device, lambda m: None)
        self.dtype = inv.dtype
        self.memory_budget_gib = inv.memory_budget_gib
        self.threads = inv.threads if threads is None else int(threads)
        out = inv.outputs
        self.write_noise = bool(out.write_noise)
        self.adc_offset = float(out.adc_offset)
        self.intfile_scale = out.intfile_scale
        if fmt == "nexus":
            self.product = "counts" if self.write_noise else "float"
        elif fmt == "smv":
            self.product = "smv-noise" if self.write_noise else "smv-int"
        else:
            self.product = "cbf"

        # series: the spindle as -phi/-osc type it (degrees), added up in decimal
        start = _last_value(self.flags, "-phi")
        if start is None:
            start = "0" if crystal.phi0 == 0.0 else repr(crystal.phi0 * _rtd())
        osc = _last_value(self.flags, "-osc")
        self._start_dec = Decimal(start)
        self._osc_dec = Decimal(repr(DEFAULT_OSC_DEG) if osc is None else osc)
        self.start_deg = float(self._start_dec)
        self.osc_deg = float(self._osc_dec)

        # the base geometry: detector, beam, and the crystal axes at phi = 0
        if kind == STILLS:
            unrotated = config.replace(**{"crystal.misset_mode": Misset.NONE})
            plan = Plan(unrotated, self.inputs)
        else:
            plan = Plan(self.frame_config(0), self.inputs)
        g = plan.geometry
        self.geometry = g
        #: (slow, fast) of a frame: the data array holding every panel
        self.shape = (int(getattr(g, "data_spixels", 0) or g.spixels), int(getattr(g, "data_fpixels", 0) or g.fpixels))
        self.base_axes_A = tuple(tuple(x * _PER_ANGSTROM for x in v) for v in (g.a, g.b, g.c))
        self.base_wavelength_A = config.beam.lambda0 * _PER_ANGSTROM
        self.base_fluence = float(g.fluence)
        #: where a stills spectrum's sources sit (towards the source, 10 m away)
        self.source_position = tuple(-10.0 * float(b) for b in g.beam)

    # ------------------------------------------------------------------ frames

    def frame_config(self, i: int) -> Config:
        """Series frame ``i``'s configuration (the flags with -phi START+i*OSC -osc OSC)."""
        from pybragg.flags.table import lookup

        degree = lookup("-phi").unit.convert  # type: ignore[union-attr]
        return self.config.replace(**{
            "crystal.phi0": degree(self.frame_phi_deg(i)),
            "crystal.osc": degree(self.osc_deg),
        })

    def frame_phi_deg(self, i: int) -> float:
        """Series frame ``i``'s start angle (degrees): START + i*OSC as typed, summed exactly in decimal."""
        return float(self._start_dec + i * self._osc_dec)

    def frame_flags(self, i: int) -> list[str]:
        """The single-render command line of series frame ``i`` (without output names)."""
        if self.kind != SERIES:
            raise ValueError("frame_flags is for a series; stills use pybragg.datasets.reproduce_flags")
        return [*self.flags, "-phi", repr(self.frame_phi_deg(i)), "-osc", repr(self.osc_deg),
                "-seed", str(self.first_seed + i)]

    def draws(self, i: int) -> ShotDraws:
        """The random draws of stills shot ``i``."""
        return draw_shot(self.seed, i, self.variations, self.base_wavelength_A)  # type: ignore[arg-type]

    def frame(self, i: int) -> tuple[FrameTask, dict[str, Any]]:
        """Frame ``i``: the task a worker renders and the truth row stored with it."""
        if not 0 <= i < self.count:
            raise IndexError(f"frame {i} of {self.count}")
        if self.kind == SERIES:
            seed = self.first_seed + i
            return FrameTask(i, self.frame_config(i), seed), {"phi": self.frame_phi_deg(i), "seed": seed}
        d = self.draws(i)
        truth = self.truth_of(d)
        config, sources = shot_config(self, truth)
        return FrameTask(i, config, d.seed, sources), truth

    def truth_of(self, d: ShotDraws) -> dict[str, Any]:
        """The truth row of stills draws ``d`` (the values a shot's configuration is built from)."""
        axes = rotated_axes(d.rotation, self.base_axes_A)  # type: ignore[arg-type]
        row: dict[str, Any] = {
            "real_space_vectors": np.array(axes, dtype=np.float64),
            "quaternion": np.array(d.quaternion, dtype=np.float64),
            "seed": d.seed,
        }
        if d.spectrum is not None:
            lam = float(np.mean(np.array(d.spectrum, dtype=np.float64)))
            row["spectrum"] = np.array(d.spectrum, dtype=np.float64)
        else:
            lam = self.base_wavelength_A * d.wavelength_factor
        row["wavelength"] = lam
        row["fluence"] = self.base_fluence * d.fluence_factor
        if d.size_um is not None:
            row["crystal_size"] = d.size_um
        return row

    def truth_fields(self) -> list[TruthField]:
        """The per-frame truth datasets, in the order they are written."""
        if self.kind == SERIES:
            return [
                TruthField("phi", (), "float64", "deg", "spindle angle at the start of the frame"),
                TruthField("seed", (), "int64", None, "noise seed (-seed) of the frame"),
            ]
        fields = [
            TruthField("real_space_vectors", (3, 3), "float64", "angstrom",
                       "rows a, b, c of the crystal in pybragg's lab frame at phi = 0"),
            TruthField("quaternion", (4,), "float64", None,
                       "unit quaternion (w, x, y, z) of the rotation applied to the unrotated cell"),
            TruthField("wavelength", (), "float64", "angstrom",
                       "central wavelength (the mean of the spectrum's sources where there is one)"),
            TruthField("fluence", (), "float64", "photons/m^2", "incident fluence"),
            TruthField("seed", (), "int64", None, "noise seed (-seed) of the shot"),
        ]
        if self.variations.size_range_um is not None:
            fields.append(TruthField("crystal_size", (), "float64", "um", "edge of the cubic crystal"))
        if self.variations.has_spectrum:
            fields.append(TruthField("spectrum", (self.variations.samples(),), "float64", "angstrom",
                                     "wavelengths of the shot's equal-weight sources"))
        return fields

    def shared(self) -> Shared:
        """The part of the job every worker needs once."""
        return Shared(self.inputs, self.backend, self.dtype, self.device or "cpu", self.memory_budget_gib,
                      self.threads, self.product, self.adc_offset, self.intfile_scale, self.write_noise)

    # ------------------------------------------------------------------ identity

    def fingerprint(self) -> dict[str, Any]:
        """What makes two commands the same dataset, in the order differences are reported."""
        import pybragg

        fp: dict[str, Any] = {
            "layout": LAYOUT_VERSION,
            "kind": self.kind,
            "count": self.count,
            "format": self.fmt,
            "product": self.product,
            "engine": f"{self.backend} {self.dtype} {self.device}",
            "seed": self.seed if self.kind == STILLS else self.first_seed,
        }
        if self.kind == SERIES:
            fp["phi_start_deg"] = self.start_deg
            fp["osc_deg"] = self.osc_deg
        else:
            for key, value in self.variations.as_dict().items():
                fp["variations." + key] = value
        fp["adc_offset"] = self.adc_offset
        fp["intfile_scale"] = self.intfile_scale
        for name, value in iter_fields(self.config):
            fp["config." + name] = _json_value(value)
        hkl = self.inputs.hkl
        fp["inputs.hkl"] = None if hkl is None else _digest(
            np.asarray(hkl.F), np.array([hkl.h_min, hkl.k_min, hkl.l_min]))
        fp["inputs.sources"] = _digest(self.inputs.sources)
        fp["inputs.mask"] = _digest(self.inputs.mask)
        fp["pybragg"] = pybragg.__version__
        fp["numpy"] = ".".join(np.__version__.split(".")[:2]) if self.kind == STILLS else None
        return fp

    def record(self) -> dict[str, Any]:
        """What the dataset stores about the job: the fingerprint and the flags (relative paths in
        them are relative to where the command ran; the run log names that folder)."""
        return {"fingerprint": self.fingerprint(), "flags": self.flags}


def _rtd() -> float:
    from pybragg.flags.table import RTD

    return RTD


def shot_config(job: Job, truth: dict[str, Any]) -> tuple[Config, np.ndarray | None]:
    """A stills shot's configuration and sources, built from its truth row alone.

    The same steps as ``pybragg <flags> -mat M [-misset 0 0 0] [-lambda L] [-flux 0 -fluence F]
    [-xtal_size X] [-sourcefile S]`` with the files written from the truth
    (:func:`pybragg.datasets.truth.reproduce_flags`).
    """
    from pybragg.flags.table import lookup
    from pybragg.io.matrix import reciprocal_vectors_from_mosflm

    v = job.variations
    changes: dict[str, Any] = {}
    lam_A = float(truth["wavelength"])
    sources = None
    if v.wavelength_jitter > 0.0 or v.has_spectrum:
        changes["beam.lambda0"] = lookup("-lambda").unit.convert(lam_A)  # type: ignore[union-attr]
    lambda0 = changes.get("beam.lambda0", job.config.beam.lambda0)
    matrix = mosflm_matrix(truth["real_space_vectors"].tolist(), lam_A)
    a_star, b_star, c_star = reciprocal_vectors_from_mosflm(np.array(matrix, dtype=np.float64), lambda0)
    changes["crystal.has_matrix"] = True
    changes["crystal.a_star"] = tuple(float(x) for x in a_star)
    changes["crystal.b_star"] = tuple(float(x) for x in b_star)
    changes["crystal.c_star"] = tuple(float(x) for x in c_star)
    if job.config.crystal.misset_mode != Misset.NONE:
        changes["crystal.misset_mode"] = Misset.ANGLES
        changes["crystal.misset"] = (0.0, 0.0, 0.0)
    if v.fluence_jitter > 0.0:
        changes["beam.flux"] = 0.0
        changes["beam.fluence"] = float(truth["fluence"])
    if v.size_range_um is not None:
        edge = lookup("-xtal_size").unit.convert(float(truth["crystal_size"]) / 1000.0)  # type: ignore[union-attr]
        changes["crystal.sample_size"] = (edge, edge, edge)
    if v.has_spectrum:
        lam = np.asarray(truth["spectrum"], dtype=np.float64) / _PER_ANGSTROM
        sources = np.empty((lam.size, 5), dtype=np.float64)
        sources[:, 0:3] = job.source_position
        sources[:, 3] = 1.0
        sources[:, 4] = lam
    return job.config.replace(**changes), sources


def config_differences(a: Config, b: Config) -> list[str]:
    """Dotted names of the fields where two configurations differ."""
    fb = dict(iter_fields(b))
    return [name for name, value in iter_fields(a) if fb.get(name) != value]


__all__ = [
    "DEFAULT_OSC_DEG",
    "DEFAULT_SEED",
    "FORMATS",
    "SERIES",
    "STILLS",
    "FrameTask",
    "Job",
    "Shared",
    "TruthField",
    "config_differences",
    "flag_values",
    "is_hdf5_path",
    "resolve_format",
    "shot_config",
]
