"""cffi (API mode) definition of pybragg's extension module ``pybragg._pybragg_cffi``.

The declarations in ``pybragg_cdef.h`` are compiled against the real header
``csrc/pybragg.h``, so the C compiler checks every signature and struct field, and the
import checks struct sizes and enum values.  CMake runs this file at build time::

    python bindings/build_cffi.py OUT.c

which first checks that ``pybragg_cdef.h`` declares every function, struct, enum
constant and macro of the header (a binding that was never added cannot be caught by
the compiler), then writes the extension's C source to ``OUT.c``; CMake compiles it
and links it to the ``pybragg_engine`` shared library.  Nothing here runs a compiler.
"""

from __future__ import annotations

import pathlib
import re
import sys

from cffi import FFI

HERE = pathlib.Path(__file__).resolve().parent
CDEF = HERE / "pybragg_cdef.h"
HEADER = HERE.parent / "csrc" / "pybragg.h"
MODULE_NAME = "pybragg._pybragg_cffi"

SOURCE = '#include "pybragg.h"\n'

# macros of the header that are not part of the binding
NOT_BOUND_MACROS = {"PB_API"}


def make_ffi() -> FFI:
    """The FFI object of the extension module: declarations and C preamble."""
    ffi = FFI()
    ffi.cdef(CDEF.read_text(encoding="utf-8"))
    ffi.set_source(MODULE_NAME, SOURCE)
    return ffi


ffi = make_ffi()


def declared_names(text: str) -> set[str]:
    """Functions, struct tags, typedefs, enum constants and macros named ``pb_*``/``PB_*``."""
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.DOTALL)
    text = re.sub(r"//[^\n]*", " ", text)
    names = set()
    for macro in re.findall(r"^\s*#\s*define\s+(\w+)", text, flags=re.MULTILINE):
        # include guard, and the export attribute (no meaning to cffi)
        if not macro.endswith("_H") and macro not in NOT_BOUND_MACROS:
            names.add("macro " + macro)
    text = re.sub(r"^\s*#[^\n]*", " ", text, flags=re.MULTILINE)
    names.update("function " + n for n in re.findall(r"\b(pb_\w+)\s*\(", text))
    names.update("struct " + n for n in re.findall(r"\bstruct\s+(pb_\w+)", text))
    names.update("typedef " + n for n in re.findall(r"\}\s*(pb_\w+)\s*;", text))
    names.update("typedef " + n for n in re.findall(r"typedef\s+struct\s+\w+\s+(pb_\w+)\s*;", text))
    names.update("constant " + n for n in re.findall(r"\b(PB_\w+)\s*=", text))
    return names


def missing_declarations() -> list[str]:
    """What csrc/pybragg.h declares and pybragg_cdef.h does not."""
    header = declared_names(HEADER.read_text(encoding="utf-8"))
    cdef = declared_names(CDEF.read_text(encoding="utf-8"))
    return sorted(header - cdef)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(f"usage: {argv[0]} OUTPUT.c", file=sys.stderr)
        return 2
    missing = missing_declarations()
    if missing:
        print(
            f"error: {CDEF.name} is out of step with {HEADER}; add these declarations:\n  "
            + "\n  ".join(missing),
            file=sys.stderr,
        )
        return 1
    out = pathlib.Path(argv[1])
    out.parent.mkdir(parents=True, exist_ok=True)
    # emit_c_code rewrites the file only when its contents change, so an unchanged
    # binding does not force a recompile.
    ffi.emit_c_code(str(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
