"""Engine selection: the C engine and the torch engine behind one entry point.

Each engine module offers ``render(config, inputs, *, dtype, device, threads,
progress, memory_budget_gib) -> Result``.  ``auto`` picks torch on a GPU and the
C engine otherwise; a torch request that cannot be honoured falls back to the C
engine with a one-line notice (the model is pyFAI's choice of integrators).
"""

from __future__ import annotations

import ctypes.util
import importlib.util
import os
import sys
from collections.abc import Callable
from types import ModuleType

from pybragg.errors import BackendUnavailable, UsageError

BACKENDS = ("auto", "c", "torch")
DTYPES = ("float64", "float32")


def torch_available() -> bool:
    """True when torch can be imported."""
    return importlib.util.find_spec("torch") is not None


# device files (Linux) and libraries (Windows) of the GPU drivers that torch.cuda runs
# on: NVIDIA (also gVisor's proxy), AMD ROCm, WSL2
_GPU_DEVICE_FILES = ("/dev/nvidiactl", "/dev/nvidia0", "/proc/driver/nvidia", "/dev/kfd", "/dev/dxg")
_GPU_LIBRARIES = ("cuda", "nvcuda", "amdhip64")


def _gpu_driver_present() -> bool:
    """Whether the machine shows a GPU driver, found without importing torch.

    Importing torch takes seconds; ``auto`` asks torch about CUDA only where a driver is
    there to find, so that a plain run on a machine without a GPU starts at once.
    """
    if sys.platform.startswith("linux"):  # the driver's device files (a library search is slow)
        return any(os.path.exists(path) for path in _GPU_DEVICE_FILES)
    if sys.platform == "darwin":  # no CUDA on macOS
        return False
    return any(ctypes.util.find_library(name) is not None for name in _GPU_LIBRARIES)


def _cuda_available() -> bool:
    if not torch_available() or not _gpu_driver_present():
        return False
    import torch

    return bool(torch.cuda.is_available())


def _torch_device_usable(device: str | None) -> tuple[bool, str]:
    import torch

    name = device or ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
        torch.zeros(1, device=dev)
    except (RuntimeError, AssertionError, ValueError) as exc:
        return False, f"device {name!r} is not usable ({str(exc).splitlines()[0]})"
    return True, name


def select_engine(
    backend: str = "auto", device: str | None = None, notice: Callable[[str], None] | None = None
) -> tuple[str, ModuleType, str | None]:
    """Resolve ``backend`` to ``(name, engine module, device)``.

    ``notice`` receives a one-line message when a fallback happens.
    """
    if backend not in BACKENDS:
        raise UsageError(f"--backend: unknown engine {backend!r} (choose from {', '.join(BACKENDS)})")
    say = notice or (lambda message: None)
    if backend == "auto":
        backend = "torch" if (device not in (None, "cpu") or _cuda_available()) else "c"
        if backend == "torch" and not torch_available():
            backend = "c"
    if backend == "torch":
        if not torch_available():
            say("notice: torch is not installed; using the C engine")
            backend = "c"
        else:
            ok, detail = _torch_device_usable(device)
            if not ok:
                say(f"notice: {detail}; using the C engine")
                backend = "c"
            else:
                device = detail
    if backend == "c":
        if device not in (None, "cpu"):
            say(f"notice: the C engine runs on the CPU, not {device}")
        from pybragg.engines import c_engine

        return "c", c_engine, "cpu"
    try:
        from pybragg.engines import torch_engine
    except ImportError as exc:  # pragma: no cover - torch present but engine broken
        raise BackendUnavailable(f"torch engine unavailable: {exc}") from exc
    return "torch", torch_engine, device
