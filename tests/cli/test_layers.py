"""The package's layers: no module imports one of a higher layer (function-local imports included).

The data path runs flags or files -> configuration and inputs -> plan -> engine -> result ->
writers; the core (configuration, inputs, plan, engines, results, the Simulator) never imports
the command line, its flag language or the writers.
"""

from __future__ import annotations

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[2] / "pybragg"

# lowest first; a module may import modules of its own layer or below
LAYERS: list[tuple[str, ...]] = [
    ("pybragg.errors", "pybragg.memory", "pybragg.config", "pybragg._native", "pybragg.constants", "pybragg.io"),
    ("pybragg.inputs", "pybragg.result"),
    ("pybragg.noise", "pybragg.response", "pybragg.plan"),
    ("pybragg.engines",),
    ("pybragg.simulator", "pybragg.background"),
    ("pybragg.compare", "pybragg.flags", "pybragg.writers"),
    ("pybragg.datasets",),
    ("pybragg.cli", "pybragg.__main__"),
]


def _layer(module: str) -> int:
    for level, prefixes in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return level
    raise AssertionError(f"{module} belongs to no layer: add it to LAYERS in {__file__}")


def _modules() -> list[tuple[str, pathlib.Path]]:
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out.append((".".join(parts), path))
    return out


def _imports(module: str, path: pathlib.Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            found.add(name)
            # "from pybragg.engines import c_engine" imports the submodule
            found.update(f"{name}.{alias.name}" for alias in node.names)
    return {name for name in found if name == "pybragg" or name.startswith("pybragg.")}


MODULES = [(m, p) for m, p in _modules() if m != "pybragg"]  # the package root re-exports everything


@pytest.mark.parametrize(("module", "path"), MODULES, ids=[m for m, _ in MODULES])
def test_no_module_imports_a_higher_layer(module: str, path: pathlib.Path) -> None:
    mine = _layer(module)
    known = {m for m, _ in _modules()}
    higher = sorted(
        name for name in _imports(module, path) if name in known and name != "pybragg" and _layer(name) > mine
    )
    assert not higher, f"{module} (layer {mine}) imports higher layers: {higher}"


def test_the_core_never_imports_the_command_line() -> None:
    core = ("pybragg.config", "pybragg.inputs", "pybragg.result", "pybragg.simulator", "pybragg.plan",
            "pybragg.engines")
    cli = ("pybragg.cli", "pybragg.flags", "pybragg.writers")
    for module, path in MODULES:
        if any(module == c or module.startswith(c + ".") for c in core):
            bad = [n for n in _imports(module, path) if any(n == c or n.startswith(c + ".") for c in cli)]
            assert not bad, f"{module} imports {bad}"
