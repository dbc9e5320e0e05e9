"""The C plan's memory rule under a hard limit (issue 10, class 2): a process whose address space is
capped with ``resource.setrlimit(RLIMIT_AS)`` gets a ResourceLimitError that names the flag and the
size, before anything is allocated -- not a MemoryError, not a signal.  (The table's copy is checked
with PYBRAGG_MEMORY_LIMIT in tests/c_engine/test_c_limits.py: under a hard limit the reader's own
check of the table comes first.)

Each case runs in its own subprocess (the limit is set between fork and exec), on the checkout.
Here rather than in tests/c_engine: AddressSanitizer (which CI runs over tests/c_engine) reserves
terabytes of address space and cannot run under RLIMIT_AS.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

resource = pytest.importorskip("resource")  # POSIX only

ROOT = Path(__file__).resolve().parents[2]
LIMIT = 1 << 30  # 1 GiB of address space; the interpreter with numpy and the engine takes about 150 MiB

SCRIPT = textwrap.dedent("""
    import dataclasses, json, sys
    from pybragg.errors import ResourceLimitError
    from pybragg.flags import from_args
    from pybragg.plan import Plan

    case = sys.argv[1]
    small = ["-default_F", "100", "-N", "2", "-cell", "50", "50", "50", "90", "90", "90", "-lambda", "1",
             "-distance", "100", "-detpixels", "8"]
    extra = {"sources": ["-divergence", "1", "-divsteps", "6000", "-square_div"],
             "orientations": ["-mosaic", "1", "-mosaic_domains", "10000000"]}.get(case, [])
    sim = from_args(small + extra, backend="c")
    config, inputs = sim.config, sim.inputs
    if case == "detector":
        config = dataclasses.replace(config, detector=dataclasses.replace(config.detector, fpixels=20000,
                                                                          spixels=20000))
    try:
        Plan(config, inputs)
    except ResourceLimitError as exc:
        print(json.dumps({"error": str(exc)}))
    else:
        print(json.dumps({"error": None}))
""")


def run_limited(case: str) -> subprocess.CompletedProcess:
    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (LIMIT, LIMIT))

    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "2", "OPENBLAS_NUM_THREADS": "1"}
    env.pop("PYBRAGG_MEMORY_LIMIT", None)
    return subprocess.run([sys.executable, "-c", SCRIPT, case], env=env, preexec_fn=cap, check=False,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(("case", "names"), [
    ("sources", "-divsteps/-dispsteps: 6000 x 6000 x 1 sources needs 1.3 GiB"),
    ("orientations", "-phisteps/-mosaic_domains: 1 x 10000000 crystal orientations needs 1.3 GiB"),
    ("detector", "-detpixels/-detsize: the 20000 x 20000 image needs 1.5 GiB"),
])
def test_a_hard_address_space_limit(case: str, names: str) -> None:
    proc = run_limited(case)
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-2000:])
    error = json.loads(proc.stdout.strip().splitlines()[-1])["error"]
    assert error is not None, "the plan was made"
    assert error.startswith(names), error
    assert error.endswith("available") and "more than the" in error
