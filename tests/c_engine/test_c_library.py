"""The C library as a library: what it exports, what its public calls promise."""

from __future__ import annotations

import enum
import math
import pathlib
import re
import shutil
import subprocess
import sys

import pytest

from pybragg import _native, constants
from pybragg.config import Config, Convention, DetectorConfig, iter_fields
from pybragg.plan import Plan, config_to_c

ROOT = pathlib.Path(__file__).resolve().parents[2]
HEADER = ROOT / "csrc" / "pybragg.h"

# Symbols the static linker itself defines in a shared object (not code of ours).
LINKER_SYMBOLS = {"_init", "_fini", "_edata", "_end", "__bss_start"}


def engine_library() -> pathlib.Path:
    """``libpybragg_engine`` next to the cffi extension that pybragg loaded."""
    ext = pathlib.Path(sys.modules[_native._MODULE].__file__).resolve()
    found = sorted(p for p in ext.parent.iterdir() if p.name.startswith("libpybragg_engine."))
    assert found, f"no engine library next to {ext}"
    return found[0]


def exported_symbols(path: pathlib.Path) -> list[tuple[str, str]]:
    """(type, name) of every symbol the library defines in its dynamic symbol table."""
    nm = shutil.which("nm")
    if nm is None:
        pytest.skip("nm (binutils) is not installed")
    out = subprocess.run([nm, "-D", "--defined-only", str(path)], check=True, capture_output=True, text=True)
    symbols = []
    for line in out.stdout.splitlines():
        parts = line.split()
        if len(parts) == 3:  # address, type, name
            symbols.append((parts[1], parts[2]))
        elif len(parts) == 2:  # absolute symbols without an address on some binutils
            symbols.append((parts[0], parts[1]))
    return symbols


def test_only_pb_symbols_are_exported():
    symbols = exported_symbols(engine_library())
    assert symbols, "nm found no exported symbols at all"
    ours = [(kind, name) for kind, name in symbols if name not in LINKER_SYMBOLS]
    bad = [f"{kind} {name}" for kind, name in ours if not name.startswith("pb_")]
    assert not bad, f"internal symbols leak out of the library: {bad}"


def test_exports_are_the_public_functions():
    """Exactly the functions that pybragg.h marks PB_API are exported (as code)."""
    text = re.sub(r"/\*.*?\*/", " ", HEADER.read_text(encoding="utf-8"), flags=re.DOTALL)
    declared = set(re.findall(r"^PB_API\b[^;(]*?\b(pb_\w+)\s*\(", text, flags=re.MULTILINE))
    assert declared
    exported = {name: kind for kind, name in exported_symbols(engine_library()) if name not in LINKER_SYMBOLS}
    assert set(exported) == declared
    assert all(kind == "T" for kind in exported.values())


# ---- defaults: pb_config_init and the Config dataclasses agree ----

# configuration fields that do not live in pb_config (they travel in pb_inputs)
NOT_IN_PB_CONFIG = {"detector.panels"}


def _c_leaves(obj, ctype, prefix=""):
    """(dotted name, value) of every leaf field of a cffi struct."""
    for name, f in ctype.fields:
        value = getattr(obj, name)
        if f.type.kind == "struct":
            yield from _c_leaves(value, f.type, prefix + name + ".")
        elif f.type.kind == "array":
            yield prefix + name, list(value)
        else:
            yield prefix + name, value


def _same(a, b) -> bool:
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and math.isnan(a):
        return isinstance(b, float) and math.isnan(b)
    return a == b and type(a) is type(b)


def test_config_defaults_match_pb_config_init():
    ffi, lib = _native.native()
    cfg = ffi.new("pb_config *")
    lib.pb_config_init(cfg)
    c_fields = dict(_c_leaves(cfg[0], ffi.typeof("pb_config")))
    py_fields = dict(iter_fields(Config()))
    assert set(c_fields) == set(py_fields) - NOT_IN_PB_CONFIG
    # the same "unset" mapping as config_to_c (None -> NaN, or -1 for counts and the ROI)
    via_plan = dict(_c_leaves(config_to_c(Config())[0], ffi.typeof("pb_config")))
    for name, c_value in c_fields.items():
        assert _same(c_value, via_plan[name]), f"{name}: pb_config_init {c_value!r}, Config() {py_fields[name]!r}"


def test_config_to_c_copies_every_field():
    """A value differing from the default in every field reaches the C struct."""
    ffi, lib = _native.native()
    config = Config()
    init = ffi.new("pb_config *")
    lib.pb_config_init(init)
    c_fields = dict(_c_leaves(init[0], ffi.typeof("pb_config")))
    changed = {}
    for name, value in iter_fields(config):
        if name in NOT_IN_PB_CONFIG:
            continue
        if isinstance(value, tuple):
            changed[name] = tuple(type(v)(v + 3) for v in value)
        elif value is None:
            changed[name] = (7,) * len(c_fields[name]) if isinstance(c_fields[name], list) else 7
        elif isinstance(value, bool):
            changed[name] = not value
        elif isinstance(value, enum.IntEnum):
            changed[name] = int(value) ^ 1
        else:
            changed[name] = type(value)(value + 3)
    got = dict(_c_leaves(config_to_c(config.replace(**changed))[0], ffi.typeof("pb_config")))
    for name, new in changed.items():
        value = got[name]
        if isinstance(value, list):
            want = [float(v) for v in new]
            assert [float(v) for v in value] == want, name
        else:
            assert float(value) == float(new), name


# ---- shared constants ----


def test_constants_from_the_library():
    assert constants.R_E_SQR == 7.94079248018965e-30
    assert constants.AVOGADRO == 6.02214179e23
    assert constants.WATER_F == 2.57
    assert constants.WATER_MW == 18.0
    assert constants.WATER_DENSITY == 1e6
    assert constants.ROUND_SCALE == 0.723601254558268
    assert constants.GAUSS_SCALE == 0.63
    assert constants.TOPHAT_RADIUS_SQR == 0.3969
    assert constants.SOURCE_DISTANCE == 10.0
    assert constants.RAD2DEG == 180.0 * 0.318309886183790671538


def test_convention_axes():
    axes = constants.CONVENTION_AXES
    assert set(axes) == set(Convention) - {Convention.CUSTOM}
    assert axes[Convention.MOSFLM].beam == (1.0, 0.0, 0.0)
    assert axes[Convention.MOSFLM].fdet == (0.0, 0.0, 1.0)
    assert axes[Convention.XDS].sdet == (0.0, 1.0, 0.0)
    assert axes[Convention.DIALS].spindle == (0.0, 1.0, 0.0)
    for conv, ax in axes.items():
        assert len(ax) == 7
        assert all(len(v) == 3 and sum(x * x for x in v) == 1.0 for v in ax)
        # the plan's geometry of that convention starts from exactly these axes
        g = Plan(Config(detector=DetectorConfig(convention=conv, fpixels=8, spixels=8)).replace(
            **{"crystal.has_cell": True, "crystal.cell": (1e-9, 1e-9, 1e-9, 1.5707963267948966, 1.5707963267948966,
                                                         1.5707963267948966)})).geometry
        assert (g.beam, g.fdet, g.sdet, g.odet, g.twotheta_axis, g.polar, g.spindle) == tuple(ax)


@pytest.mark.parametrize("convention", [0, 6, -1])
def test_convention_axes_refuses_custom_and_unknown(convention):
    ffi, lib = _native.native()
    axes = ffi.new("double[7][3]")
    err = ffi.new("pb_error *")
    assert lib.pb_convention_axes(convention, axes, err) == lib.PB_ERR_INVALID
    assert ffi.string(err.message)


def test_fallible_calls_report_through_pb_error():
    ffi, lib = _native.native()
    err = ffi.new("pb_error *")
    assert lib.pb_random_uniform(1, -1, ffi.NULL, err) == lib.PB_ERR_INVALID
    assert b"deviates" in ffi.string(err.message)
    err = ffi.new("pb_error *")
    stats = ffi.new("pb_stats *")
    assert lib.pb_stats_compute(ffi.NULL, ffi.NULL, stats, err) == lib.PB_ERR_INVALID
    assert ffi.string(err.message)
