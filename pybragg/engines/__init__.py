"""The engine registry: every engine behind one entry point.

Each engine module offers ``render(config, inputs, *, dtype, device, threads, progress,
memory_budget_gib) -> Result`` and ``trace_pixel(config, inputs, fpixel, spixel, ...)``.
:data:`ENGINES` declares each engine once -- its name, how to tell whether it can run here,
the device kinds it runs on and the engine to fall back to -- in the spirit of pyFAI's method
registry; the ``--backend`` choices, ``auto``, the fallback notices and the tests' engine
parametrization all come from it.  ``auto`` picks the first engine (in registry order) that
is available and has a GPU to run on, and otherwise :data:`CPU_DEFAULT`; a request that cannot
be honoured falls back along ``fallback`` with a one-line notice.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType

from pybragg.errors import BackendUnavailable, UsageError

DTYPES = ("float64", "float32")


def torch_available() -> bool:
    """True when torch can be imported."""
    return importlib.util.find_spec("torch") is not None


def _always() -> bool:
    return True


@dataclass(frozen=True)
class EngineSpec:
    """One engine: what it is called, where it lives, what it runs on."""

    name: str
    #: how messages call it ("the C engine")
    title: str
    #: the module holding ``render`` and ``trace_pixel``
    module: str
    #: one line for ``--help`` and notices
    description: str
    #: whether the engine can be imported here (cheap: nothing heavy is imported)
    available: Callable[[], bool]
    #: device kinds (torch device types) it renders on
    devices: tuple[str, ...]
    #: the engine used instead when this one cannot run
    fallback: str | None = None
    #: whether ``dtype`` chooses its arithmetic (the C engine always renders in double)
    honours_dtype: bool = True

    def load(self) -> ModuleType:
        """Import and return the engine module."""
        try:
            return importlib.import_module(self.module)
        except ImportError as exc:  # pragma: no cover - dependency present but engine broken
            raise BackendUnavailable(f"{self.name} engine unavailable: {exc}") from exc


#: every engine (``auto`` takes the first that runs on a GPU where one is present)
ENGINES: dict[str, EngineSpec] = {
    spec.name: spec
    for spec in (
        EngineSpec("c", "C", "pybragg.engines.c_engine", "C99 with OpenMP: the CPU engine",
                   available=_always, devices=("cpu",), honours_dtype=False),
        EngineSpec("torch", "torch", "pybragg.engines.torch", "PyTorch: vectorized, differentiable, CPU or GPU",
                   available=torch_available, devices=("cpu", "cuda"), fallback="c"),
    )
}
#: ``auto`` without a GPU
CPU_DEFAULT = "c"
#: what ``--backend`` and :class:`~pybragg.simulator.Simulator` use when nothing is said
DEFAULT_BACKEND = "auto"
#: the choices of ``--backend``
BACKENDS = ("auto", *ENGINES)


def available_engines() -> tuple[str, ...]:
    """Names of the engines that can run here."""
    return tuple(name for name, spec in ENGINES.items() if spec.available())


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
    import ctypes.util  # here only: it imports subprocess, which a plain run does not need

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


def _auto(device: str | None) -> str:
    """The engine ``auto`` means: a GPU engine where a GPU is asked for or present."""
    wants_gpu = device not in (None, "cpu")
    for name, spec in ENGINES.items():
        if "cuda" in spec.devices and spec.available() and (wants_gpu or _cuda_available()):
            return name
    return CPU_DEFAULT


def select_engine(
    backend: str = DEFAULT_BACKEND, device: str | None = None, notice: Callable[[str], None] | None = None
) -> tuple[str, ModuleType, str | None]:
    """Resolve ``backend`` to ``(name, engine module, device)``.

    ``notice`` receives a one-line message when a fallback happens.
    """
    if backend not in BACKENDS:
        raise UsageError(f"--backend: unknown engine {backend!r} (choose from {', '.join(BACKENDS)})")
    say = notice or (lambda message: None)
    name = _auto(device) if backend == "auto" else backend
    while True:
        spec = ENGINES[name]
        reason = None
        if not spec.available():
            reason = f"{name} is not installed"
        elif spec.devices != ("cpu",):
            ok, detail = _torch_device_usable(device)
            if ok:
                device = detail
            else:
                reason = detail
        if reason is None or spec.fallback is None:
            break
        if backend != "auto":
            say(f"notice: {reason}; using the {ENGINES[spec.fallback].title} engine")
        name, device = spec.fallback, None  # the notice said where the render goes
    if reason is not None:
        raise BackendUnavailable(f"{name} engine unavailable: {reason}")
    if spec.devices == ("cpu",):
        if device not in (None, "cpu"):
            say(f"notice: the {spec.title} engine runs on the CPU, not {device}")
        device = "cpu"
    return name, spec.load(), device
