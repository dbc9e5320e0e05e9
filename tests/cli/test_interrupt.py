"""A real SIGINT (or SIGTERM) sent to a long render stops it within a second or two, on both engines
(issue 10, class 5): exit code 128 + N, one line on stderr, no output or temporary file left.

The C engine renders in a worker thread while the main thread waits: the signal's exception sets
the library's cancellation flag (rows not yet started are skipped), the worker is joined and the
exception propagates; the torch engine runs Python between chunks and is interrupted there.
Each render would take well over 20 s; the signal is sent once the progress meter shows it
rendering.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LONG = ["-default_F", "100", "-N", "5", "-cell", "50", "50", "50", "90", "90", "90", "-lambda", "1",
        "-distance", "100", "-mosaic", "1", "-progress", "-floatfile", "float.bin", "-intfile", "int.img",
        "-noisefile", "noise.img", "--threads", "2"]
#: seconds from the signal to the exit (the engines stop within a second; the rest is a loaded machine)
WITHIN = 3.0


def start(args: list[str], cwd: Path) -> tuple[subprocess.Popen, list[bytes], threading.Event]:
    """The CLI in a subprocess of the checkout; stderr collected by a thread, an event set once the
    progress meter has drawn (the render is under way)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "pybragg", *args], cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    chunks: list[bytes] = []
    drawing = threading.Event()

    def read() -> None:
        assert proc.stderr is not None
        while chunk := os.read(proc.stderr.fileno(), 4096):
            chunks.append(chunk)
            if b"\r[" in b"".join(chunks):
                drawing.set()
        drawing.set()

    threading.Thread(target=read, daemon=True).start()
    return proc, chunks, drawing


@pytest.mark.parametrize(("backend", "size", "domains", "signo"), [
    ("c", "2000", "1000", signal.SIGINT),
    ("c", "2000", "1000", signal.SIGTERM),
    ("torch", "4000", "10", signal.SIGINT),
])
def test_a_signal_stops_a_long_render(backend: str, size: str, domains: str, signo: int, tmp_path: Path) -> None:
    args = [*LONG, "-detpixels", size, "-mosaic_domains", domains, "--backend", backend]
    if backend == "torch":
        # the torch engine stops between chunks: small ones (a 10 MiB budget), so that a loaded
        # machine still finishes the running ones well within the bound
        args += ["--memory-budget", "0.01"]
    proc, chunks, drawing = start(args, tmp_path)
    try:
        assert drawing.wait(120), b"".join(chunks).decode(errors="replace")
        assert proc.poll() is None, "the render ended before the signal"
        time.sleep(0.5)  # well inside the render
        sent = time.monotonic()
        proc.send_signal(signo)
        code = proc.wait(timeout=60)
        took = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    stderr = b"".join(chunks).decode(errors="replace")
    left = [float(x) for x in re.findall(r"~\s*(\d+) s left", stderr)]
    assert left and max(left) >= 10, ("the render was nearly done when interrupted", stderr)
    assert took < WITHIN, (took, stderr)
    assert code == 128 + signo, (code, stderr)
    # the progress meter's line (carriage returns, ended by a newline), then exactly one line
    lines = [line for line in stderr.split("\n") if line and not line.lstrip("\r").startswith("[")]
    assert lines == [f"pybragg: interrupted ({signal.Signals(signo).name})"], stderr
    assert "Traceback" not in stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == [], "output or temporary files left"
