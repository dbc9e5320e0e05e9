"""Raw float32 images (the reference's ``-floatfile``)."""

from __future__ import annotations

import os

import numpy as np

from .atomic import atomic_write
from .errors import FormatError, describe_path, read_bytes


def float_image_bytes(image: np.ndarray) -> bytes:
    """The bytes of :func:`write_float_image`: little-endian float32, C order (slow, fast)."""
    return b"".join(float_image_buffers(image))


def float_image_buffers(image: np.ndarray) -> list[np.ndarray]:
    """:func:`float_image_bytes` as the array to write (``image`` itself when it is little-endian
    float32 in C order): :func:`pybragg.io.atomic.write_buffers` writes it without a copy."""
    return [np.ascontiguousarray(image, dtype="<f4")]


def write_float_image(path: str | os.PathLike[str], image: np.ndarray) -> None:
    """Write ``image`` as little-endian float32, C order (slow, fast)."""
    atomic_write(path, float_image_bytes(image))


def read_float_image(path: str | os.PathLike[str], shape: tuple[int, int] | None = None) -> np.ndarray:
    """Read a little-endian float32 image, optionally reshaped to (slow, fast)."""
    name = describe_path(path)
    raw = read_bytes(path)
    if len(raw) % 4:
        raise FormatError(f"{name}: size {len(raw)} bytes is not a multiple of 4 (float32)")
    values = np.frombuffer(raw, dtype="<f4").astype(np.float32)
    if shape is None:
        return values
    slow, fast = (int(n) for n in shape)
    if slow * fast != values.size:
        raise FormatError(
            f"{name}: expected {slow}x{fast} float32 pixels ({slow * fast * 4} bytes), "
            f"file has {len(raw)} bytes"
        )
    return values.reshape(slow, fast)
