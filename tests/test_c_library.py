"""The C library as a library: what it exports, what its public calls promise."""

from __future__ import annotations

import pathlib
import re
import shutil
import subprocess
import sys

import pytest

from pybragg import _native

ROOT = pathlib.Path(__file__).resolve().parents[1]
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
