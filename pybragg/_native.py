"""The C engine, as cffi sees it: ``ffi`` and ``lib`` of the extension ``pybragg._pybragg_cffi``.

The extension is compiled (API mode) from ``bindings/build_cffi.py`` by ``pip install .``
and sits next to the engine library ``libpybragg_engine.so`` in the installed package.

When pybragg is imported from a source checkout rather than from the installed copy
(``python -m pytest`` in the repository root puts the checkout first on ``sys.path``),
the checkout has no compiled extension; the one installed into the current environment
is loaded instead, so ``pip install . && python -m pytest`` tests what was just built.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import sys
from types import ModuleType
from typing import Any

__all__ = ["check", "ffi", "lib", "native"]

_MODULE = "pybragg._pybragg_cffi"
_NOT_BUILT = "pybragg's C engine is not built; install with `pip install .`"


def _installed_wheel_extension(here: str) -> str | None:
    """The extension file of pybragg installed from a wheel, found without :mod:`importlib.metadata`
    (some 25 ms of start-up): the ``pybragg-*.dist-info`` of the first ``sys.path`` entry that holds
    pybragg's metadata (where ``importlib.metadata`` finds it) and ``pybragg/_pybragg_cffi*`` beside
    it.  None when that is not the layout (egg-info, several records, no such file): then ask
    :mod:`importlib.metadata`."""
    for entry in sys.path:
        try:
            names = [n for n in os.listdir(entry or ".") if n.lower().startswith("pybragg")
                     and n.lower().endswith((".dist-info", ".egg-info"))]
        except OSError:
            continue
        if not names:
            continue
        if len(names) != 1 or not names[0].startswith("pybragg-") or not names[0].endswith(".dist-info"):
            return None
        folder = os.path.realpath(os.path.join(entry or ".", "pybragg"))
        if folder == here:
            return None
        for suffix in importlib.machinery.EXTENSION_SUFFIXES:
            path = os.path.join(folder, "_pybragg_cffi" + suffix)
            if os.path.isfile(path):
                return path
        return None
    return None


def _installed_extension_path(here: str) -> str | None:
    """The extension file of the installed pybragg distribution, if it lives elsewhere than here."""
    found = _installed_wheel_extension(here)
    if found is not None:
        return found
    import pathlib
    from importlib import metadata  # only from a source checkout: it costs some 25 ms of start-up

    try:
        dist = metadata.distribution("pybragg")
    except metadata.PackageNotFoundError:
        return None
    names = {"_pybragg_cffi" + suffix for suffix in importlib.machinery.EXTENSION_SUFFIXES}
    for record in dist.files or ():
        if record.name not in names or record.parent.name != "pybragg":
            continue
        path = pathlib.Path(str(dist.locate_file(record))).resolve()
        if str(path.parent) == here or not path.is_file():
            continue
        return str(path)
    return None


def _load_installed_extension() -> ModuleType | None:
    """The extension of the installed pybragg distribution, if it lives elsewhere than here."""
    path = _installed_extension_path(os.path.dirname(os.path.realpath(__file__)))
    if path is None:
        return None
    spec = importlib.util.spec_from_file_location(_MODULE, path)
    if spec is None or spec.loader is None:
        return None
    module = importlib.util.module_from_spec(spec)
    sys.modules[_MODULE] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(_MODULE, None)
        raise
    return module


try:
    from pybragg._pybragg_cffi import ffi, lib
except ModuleNotFoundError as exc:
    if exc.name != _MODULE:
        raise
    _ext = _load_installed_extension()
    if _ext is None:
        raise ImportError(_NOT_BUILT, name=_MODULE) from exc
    ffi, lib = _ext.ffi, _ext.lib
except ImportError as exc:
    # Built, but it cannot be loaded (missing engine library, wrong interpreter, ...).
    raise ImportError(
        f"pybragg's C engine failed to load ({exc}); reinstall with `pip install .`", name=_MODULE
    ) from exc


def native() -> tuple[Any, Any]:
    """``(ffi, lib)`` of the C library."""
    return ffi, lib


def check(code: int, err: Any) -> None:
    """Raise the library's message for a non-zero code: :class:`~pybragg.errors.ResourceLimitError`
    for ``PB_ERR_LIMIT`` (the input needs more memory than the limit), else
    :class:`~pybragg.errors.EngineError`."""
    if code != 0:
        from pybragg.errors import EngineError, ResourceLimitError

        message = ffi.string(err.message).decode(errors="replace") or f"C engine error {code}"
        if code == lib.PB_ERR_LIMIT:
            raise ResourceLimitError(message)
        raise EngineError(message)
