"""The reference nonBragg's images in ``../shared/golden-nonbragg`` (read in place) and how a case runs
through ``pybragg nonbragg``: shared by the C engine's golden test and the torch engine's."""

from __future__ import annotations

import gzip
import io
import json
import os
from pathlib import Path

from golden import GOLDEN as NANOBRAGG_GOLDEN

#: missing golden data is an error, not a skip
GOLDEN = NANOBRAGG_GOLDEN.parent / "golden-nonbragg"
HEADER_KEYS = ("SIZE1", "SIZE2", "PIXEL_SIZE", "DISTANCE", "WAVELENGTH", "BEAM_CENTER_X", "BEAM_CENTER_Y")


def _manifest() -> dict:
    return json.loads((GOLDEN / "manifest.json").read_text())


CASES = sorted(_manifest()["cases"])


def _ref(name: str, what: str) -> bytes:
    return gzip.decompress((GOLDEN / name / f"{what}.gz").read_bytes())


def run_case(name: str, work: Path, backend: str = "c", dtype: str = "float64") -> None:
    from pybragg.cli.nonbragg import main

    m = _manifest()
    case = m["cases"][name]
    (work / "inputs").symlink_to(GOLDEN / "inputs")
    args = [*case["args"], *m["output_flags"], "-seed", str(case["seed"]), "-noprogress",
            "--backend", backend, "--dtype", dtype]
    cwd = os.getcwd()
    os.chdir(work)
    try:
        out, err = io.StringIO(), io.StringIO()
        assert main("nonbragg", args, out, err) == 0, err.getvalue()
    finally:
        os.chdir(cwd)
