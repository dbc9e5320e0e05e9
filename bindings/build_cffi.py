"""cffi (API mode) definition of pybragg's extension module ``pybragg._pybragg_cffi``.

The declarations in ``pybragg_cdef.h`` are compiled against the real header
``csrc/pybragg.h``, so the C compiler checks them.  CMake runs this file at build time::

    python bindings/build_cffi.py OUT.c

which writes the extension's C source to ``OUT.c``; CMake compiles and links it to the
``pybragg_engine`` shared library.  Nothing here compiles anything itself.
"""

from __future__ import annotations

import pathlib
import sys

from cffi import FFI

HERE = pathlib.Path(__file__).resolve().parent
CDEF = HERE / "pybragg_cdef.h"
MODULE_NAME = "pybragg._pybragg_cffi"

SOURCE = '#include "pybragg.h"\n'


def make_ffi() -> FFI:
    """The FFI object of the extension module: declarations and C preamble."""
    ffi = FFI()
    ffi.cdef(CDEF.read_text(encoding="utf-8"))
    ffi.set_source(MODULE_NAME, SOURCE)
    return ffi


ffi = make_ffi()


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(f"usage: {argv[0]} OUTPUT.c", file=sys.stderr)
        return 2
    out = pathlib.Path(argv[1])
    out.parent.mkdir(parents=True, exist_ok=True)
    # emit_c_code rewrites the file only when its contents change, so an unchanged
    # binding does not force a recompile.
    ffi.emit_c_code(str(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
