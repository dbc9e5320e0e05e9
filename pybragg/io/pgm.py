"""Binary greyscale PGM (P5) preview images."""

from __future__ import annotations

import os

import numpy as np

from .atomic import atomic_write
from .cformat import c_g
from .errors import FormatError, describe_path, read_bytes

_WHITESPACE = b" \t\n\r\v\f"


def write_pgm(path: str | os.PathLike[str], data: np.ndarray, scale: float) -> None:
    """Write a (slow, fast) uint8 image as P5 PGM noting the scale in a comment."""
    atomic_write(path, pgm_bytes(data, scale))


def pgm_bytes(data: np.ndarray, scale: float) -> bytes:
    """The bytes of :func:`write_pgm`."""
    return b"".join(pgm_buffers(data, scale))


def pgm_buffers(data: np.ndarray, scale: float) -> list[bytes | np.ndarray]:
    """:func:`pgm_bytes` as the header and the pixels, for :func:`pybragg.io.atomic.write_buffers`."""
    pixels = np.asarray(data)
    if pixels.ndim != 2:
        raise ValueError(f"PGM image must be 2-D (slow, fast), got shape {pixels.shape}")
    if pixels.dtype != np.uint8:
        raise ValueError(f"PGM pixels must be uint8, got {pixels.dtype}")
    slow, fast = pixels.shape
    header = f"P5\n{fast} {slow}\n# pixels scaled by {c_g(scale)}\n255\n".encode("ascii")
    return [header, np.ascontiguousarray(pixels)]


def read_pgm(path: str | os.PathLike[str]) -> tuple[np.ndarray, dict]:
    """Read a P5 PGM; return pixels (slow, fast) and ``{"maxval", "comments"}``.

    Pixels are uint8 when maxval < 256, otherwise big-endian 16-bit read as uint16.
    """
    name = describe_path(path)
    raw = read_bytes(path)
    if not raw.startswith(b"P5"):
        raise FormatError(f"{name}: not a binary PGM file: does not start with 'P5'")
    pos = 2
    comments: list[str] = []
    numbers: list[int] = []
    labels = ("width", "height", "maxval")
    while len(numbers) < 3:
        # skip whitespace and comments between header tokens
        while pos < len(raw) and (raw[pos] in _WHITESPACE or raw[pos] == ord("#")):
            if raw[pos] == ord("#"):
                end = raw.find(b"\n", pos)
                end = len(raw) if end < 0 else end
                comments.append(raw[pos + 1 : end].decode("latin-1").strip())
                pos = end
            pos += 1
        start = pos
        while pos < len(raw) and raw[pos] not in _WHITESPACE and raw[pos] != ord("#"):
            pos += 1
        token = raw[start:pos]
        if not token.isdigit():
            what = "end of file" if not token else repr(token.decode("latin-1"))
            raise FormatError(f"{name}: bad PGM header: expected {labels[len(numbers)]}, got {what}")
        numbers.append(int(token))
    width, height, maxval = numbers
    if width <= 0 or height <= 0:
        raise FormatError(f"{name}: bad PGM header: size {width}x{height} must be positive")
    if not 0 < maxval < 65536:
        raise FormatError(f"{name}: bad PGM header: maxval {maxval} must be 1..65535")
    if pos >= len(raw) or raw[pos] not in _WHITESPACE:
        raise FormatError(f"{name}: bad PGM header: no whitespace after maxval")
    pos += 1
    dtype = "u1" if maxval < 256 else ">u2"
    need = width * height * np.dtype(dtype).itemsize
    if len(raw) - pos < need:
        raise FormatError(
            f"{name}: truncated: header says {width}x{height} pixels ({need} bytes) "
            f"but only {len(raw) - pos} data bytes follow"
        )
    pixels = np.frombuffer(raw, dtype=dtype, count=width * height, offset=pos)
    out_type = np.uint8 if maxval < 256 else np.uint16
    return pixels.astype(out_type).reshape(height, width), {
        "maxval": maxval,
        "comments": comments,
    }
