"""Vector maths of the torch engine (the inline 3-vectors of ``csrc/internal.h``, ``csrc/rotation.c``).

Vectors are tensors whose last axis has length 3 (or, for the ``*_components``
functions, three tensors that broadcast together); the formulas keep the C engine's
order of operations.  ``unit_np`` and ``cross_np`` work on plain floats, in double
precision, for the set-up.  :class:`Scratch` keeps the in-place rendering path's
temporaries.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping, Sequence
from typing import Any

import torch

Components = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


#: the precisions the engine computes in
DTYPES = {"float64": torch.float64, "float32": torch.float32}


def torch_dtype(dtype: str | torch.dtype) -> torch.dtype:
    """``"float64"``/``"float32"`` (or the torch dtype itself) as a torch dtype; others are refused."""
    value = dtype if isinstance(dtype, torch.dtype) else DTYPES.get(dtype)  # type: ignore[arg-type]
    if value is None:
        raise ValueError(f"unknown dtype {dtype!r} (choose from {', '.join(DTYPES)})")
    if value not in DTYPES.values():
        raise ValueError("the torch engine computes in float64 or float32")
    return value

def with_params(defaults: dict[str, torch.Tensor], params: Mapping[str, Any] | None, names: Sequence[str],
                dtype: torch.dtype, device: torch.device,
                shapes: Mapping[str, tuple[int, ...]] | None = None) -> dict[str, torch.Tensor]:
    """``defaults`` with ``params`` in their place: each a known name (``KeyError`` otherwise), on
    ``dtype`` and ``device``, of its shape in ``shapes`` (a scalar if absent; ``ValueError`` otherwise)."""
    for name, value in (params or {}).items():
        if name not in names:
            raise KeyError(f"unknown parameter {name!r} (choose from {', '.join(names)})")
        t = torch.as_tensor(value).to(dtype=dtype, device=device)
        shape = (shapes or {}).get(name, ())
        if tuple(t.shape) != shape:
            if not shape:
                raise ValueError(f"parameter {name!r} must be a scalar, got shape {tuple(t.shape)}")
            raise ValueError(f"parameter {name!r} must have shape {shape}, got {tuple(t.shape)}")
        defaults[name] = t
    return defaults


def dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return a[..., 0] * b[..., 0] + a[..., 1] * b[..., 1] + a[..., 2] * b[..., 2]


def dot_components(a: Sequence[torch.Tensor], b: Sequence[Any]) -> torch.Tensor:
    """a[0] b[0] + a[1] b[1] + a[2] b[2] with fused multiply-adds (``a`` holds the full shape)."""
    return torch.addcmul(torch.addcmul(a[0] * b[0], a[1], b[1]), a[2], b[2])


def cross(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    x = a[..., 1] * b[..., 2] - a[..., 2] * b[..., 1]
    y = a[..., 2] * b[..., 0] - a[..., 0] * b[..., 2]
    z = a[..., 0] * b[..., 1] - a[..., 1] * b[..., 0]
    return torch.stack((x, y, z), dim=-1)


def norm(a: torch.Tensor) -> torch.Tensor:
    return torch.sqrt(dot(a, a))


def unit(a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(a / |a|, |a|); a zero vector gives a zero vector (and a finite gradient)."""
    length = norm(a)
    zero = length == 0
    safe = torch.where(zero, torch.ones_like(length), length)
    direction = torch.where(zero[..., None], torch.zeros_like(a), a / safe[..., None])
    return direction, length


def rotate_xyz(v: torch.Tensor, rx: torch.Tensor, ry: torch.Tensor, rz: torch.Tensor) -> torch.Tensor:
    """Rotate about lab x, then y, then z (a zero angle rotates exactly by nothing)."""
    x, y, z = v[..., 0], v[..., 1], v[..., 2]
    c, s = torch.cos(rx), torch.sin(rx)
    y, z = y * c + z * (-s), y * s + z * c
    c, s = torch.cos(ry), torch.sin(ry)
    x, z = x * c + z * s, x * (-s) + z * c
    c, s = torch.cos(rz), torch.sin(rz)
    x, y = x * c + y * (-s), x * s + y * c
    return torch.stack((x, y, z), dim=-1)


def rotate_axis_components(v: Sequence[Any], axis: Any, phi: torch.Tensor) -> Components:
    """Right-handed rotation of v = (x, y, z) by phi about the (unit) axis, on components."""
    s, c = torch.sin(phi), torch.cos(phi)
    v0, v1, v2 = v
    a0, a1, a2 = axis[0], axis[1], axis[2]
    along = (a0 * v0 + a1 * v1 + a2 * v2) * (1.0 - c)
    x = a0 * along + v0 * c + (-a2 * v1 + a1 * v2) * s
    y = a1 * along + v1 * c + (a2 * v0 - a0 * v2) * s
    z = a2 * along + v2 * c + (-a1 * v0 + a0 * v1) * s
    return x, y, z


def rotate_axis(v: torch.Tensor, axis: torch.Tensor, phi: torch.Tensor) -> torch.Tensor:
    """Right-handed rotation of v by phi about the (unit) axis; broadcasts phi over v."""
    return torch.stack(rotate_axis_components(v.unbind(-1), axis.unbind(-1), phi), dim=-1)


def unit_np(v: Sequence[float]) -> tuple[list[float], float]:
    """The C engine's v3_unit in double precision."""
    x, y, z = (float(c) for c in v)
    length = math.sqrt(x * x + y * y + z * z)
    if length == 0.0:
        return [0.0, 0.0, 0.0], 0.0
    return [x / length, y / length, z / length], length


def cross_np(a: Sequence[float], b: Sequence[float]) -> list[float]:
    return [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]]


class Scratch:
    """Scratch tensors of the calling thread, reused from chunk to chunk (rendering only).

    Fresh large tensors cost page faults on every allocation (far more than the
    arithmetic of one pass over them), so the in-place rendering path writes its big
    temporaries with ``out=`` into these.
    """

    def __init__(self, dtype: torch.dtype, device: torch.device):
        self.dtype = dtype
        self.device = device
        self._local = threading.local()

    def get(self, name: str, shape: tuple[int, ...], dtype: torch.dtype | None = None) -> torch.Tensor:
        """This thread's tensor ``name`` viewed as ``shape`` (grown when too small)."""
        dtype = dtype or self.dtype
        store = self._local.__dict__
        n = math.prod(shape)
        have = store.get((name, dtype))
        if have is None or have.numel() < n:
            have = store[(name, dtype)] = torch.empty(n, dtype=dtype, device=self.device)
        return have[:n].view(shape)
