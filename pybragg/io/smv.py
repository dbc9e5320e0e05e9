"""SMV (ADSC-style) detector images: ``{KEY=VALUE;...}`` header + uint16 pixels."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from .atomic import atomic_write
from .errors import FormatError, describe_path, read_bytes, shorten

HEADER_BLOCK = 512
_FIXED_KEYS = ("HEADER_BYTES", "DIM", "BYTE_ORDER", "TYPE", "SIZE1", "SIZE2")


@dataclass
class SMVImage:
    """An SMV image: header fields in file order and pixels as (slow, fast) uint16."""

    header: dict[str, str]
    data: np.ndarray
    header_bytes: int = field(default=HEADER_BLOCK)

    def value(self, key: str) -> float | None:
        """Header value as a float, or None if missing or not a number."""
        text = self.header.get(key)
        if text is None:
            return None
        try:
            return float(text)
        except ValueError:
            return None


def _parse_header(text: str) -> dict[str, str]:
    """Parse the ``KEY=VALUE;`` lines between the braces."""
    header: dict[str, str] = {}
    for raw_line in text.splitlines():
        key, sep, value = raw_line.partition("=")
        key = key.strip()
        if not sep or not key:
            continue  # not a KEY=VALUE line; real headers occasionally carry such noise
        value = value.strip()
        if value.endswith(";"):
            value = value[:-1].rstrip()
        header[key] = value
    return header


def _positive_int(name: str, header: dict[str, str], key: str) -> int:
    """A required positive integer header field."""
    if key not in header:
        raise FormatError(f"{name}: SMV header has no {key}")
    text = header[key]
    try:
        number = int(text)
    except ValueError:
        try:
            as_float = float(text)
        except ValueError:
            as_float = float("nan")
        if not as_float.is_integer():
            raise FormatError(f"{name}: SMV header {key}={shorten(text)} is not an integer") from None
        number = int(as_float)
    if number <= 0:
        raise FormatError(f"{name}: SMV header {key}={number} must be positive")
    return number


def read_smv(path: str | os.PathLike[str]) -> SMVImage:
    """Read an SMV image.

    The pixels are taken as the last ``2*SIZE1*SIZE2`` bytes of the file, because
    the reference can write headers longer than the HEADER_BYTES they declare.
    """
    name = describe_path(path)
    raw = read_bytes(path)
    if not raw.startswith(b"{"):
        raise FormatError(f"{name}: not an SMV file: does not start with '{{'")
    close = raw.find(b"}")
    if close < 0:
        raise FormatError(f"{name}: not an SMV file: header has no closing '}}'")
    header = _parse_header(raw[1:close].decode("latin-1"))
    if "HEADER_BYTES" not in header:
        raise FormatError(f"{name}: not an SMV file: header has no HEADER_BYTES")
    header_bytes = _positive_int(name, header, "HEADER_BYTES")
    fast = _positive_int(name, header, "SIZE1")
    slow = _positive_int(name, header, "SIZE2")
    dtype_name = header.get("TYPE", "unsigned_short")
    if dtype_name != "unsigned_short":
        raise FormatError(f"{name}: unsupported SMV TYPE={shorten(dtype_name)} (only unsigned_short)")
    order = header.get("BYTE_ORDER", "little_endian")
    if order not in ("little_endian", "big_endian"):
        raise FormatError(f"{name}: unsupported SMV BYTE_ORDER={shorten(order)}")
    nbytes = 2 * fast * slow
    # Data normally start at HEADER_BYTES, but the reference lets long headers
    # overflow that size; the pixels are then the last bytes of the file.
    header_end = max(header_bytes, close + 1)
    if len(raw) < header_end + nbytes:
        raise FormatError(
            f"{name}: truncated: header says {fast}x{slow} pixels ({nbytes} bytes) "
            f"but only {max(len(raw) - header_end, 0)} data bytes follow"
        )
    dtype = "<u2" if order == "little_endian" else ">u2"
    data = np.frombuffer(raw, dtype=dtype, count=fast * slow, offset=len(raw) - nbytes)
    return SMVImage(
        header=header,
        data=data.astype(np.uint16).reshape(slow, fast),
        header_bytes=header_bytes,
    )


def _check_field(key: str, value: str) -> None:
    """Reject keys/values that would corrupt the header syntax."""
    bad_key = not key or any(c in key for c in "=;{}\n\r\f")
    bad_value = any(c in value for c in ";{}\n\r\f")
    if bad_key or bad_value:
        raise ValueError(f"SMV header field {key!r}={value!r} contains a reserved character")


def format_smv_header(fields: list[tuple[str, str]], shape: tuple[int, int] | None = None) -> bytes:
    """Build a complete, space-padded SMV header.

    The fixed fields (HEADER_BYTES, DIM, BYTE_ORDER, TYPE, SIZE1, SIZE2) come first,
    with SIZE1/SIZE2 taken from ``shape`` = (slow, fast) or else from ``fields``;
    the remaining ``fields`` follow in order. ``DIALS_ORIGIN`` is written without
    its trailing ';' like the reference does. The header is 512 bytes, or the
    next multiple of 512 that holds it, and HEADER_BYTES states that size.
    """
    given = {key: str(value) for key, value in fields}
    if shape is not None:
        slow, fast = (int(n) for n in shape)
        for key, size in (("SIZE1", fast), ("SIZE2", slow)):
            if key in given and given[key].strip() != str(size):
                raise ValueError(f"SMV field {key}={given[key]} disagrees with image shape {shape}")
    else:
        try:
            fast, slow = int(given["SIZE1"]), int(given["SIZE2"])
        except (KeyError, ValueError):
            raise ValueError("format_smv_header needs a shape or integer SIZE1/SIZE2 fields") from None
    for key, fixed in (
        ("DIM", "2"),
        ("BYTE_ORDER", "little_endian"),
        ("TYPE", "unsigned_short"),
    ):
        if key in given and given[key].strip() != fixed:
            raise ValueError(f"SMV field {key}={given[key]} is not supported (must be {fixed})")
    body = ""
    for key, raw_value in fields:
        if key in _FIXED_KEYS:
            continue
        value = str(raw_value)
        _check_field(key, value)
        body += f"{key}={value}\n" if key == "DIALS_ORIGIN" else f"{key}={value};\n"
    size = HEADER_BLOCK
    while True:
        text = (
            f"{{\nHEADER_BYTES={size};\nDIM=2;\nBYTE_ORDER=little_endian;\nTYPE=unsigned_short;\n"
            f"SIZE1={fast};\nSIZE2={slow};\n{body}}}\f"
        ).encode("latin-1")
        if len(text) <= size:
            return text + b" " * (size - len(text))
        size = -(-len(text) // HEADER_BLOCK) * HEADER_BLOCK


def write_smv(path: str | os.PathLike[str], data: np.ndarray, fields: list[tuple[str, str]]) -> None:
    """Write a (slow, fast) uint16 image as SMV with the given extra header fields."""
    atomic_write(path, smv_bytes(data, fields))


def smv_bytes(data: np.ndarray, fields: list[tuple[str, str]]) -> bytes:
    """The bytes of :func:`write_smv`."""
    return b"".join(smv_buffers(data, fields))


def smv_buffers(data: np.ndarray, fields: list[tuple[str, str]]) -> list[bytes | np.ndarray]:
    """:func:`smv_bytes` as the header and the little-endian uint16 pixels, for
    :func:`pybragg.io.atomic.write_buffers` (the pixels are not copied into bytes)."""
    pixels = np.asarray(data)
    if pixels.ndim != 2:
        raise ValueError(f"SMV image must be 2-D (slow, fast), got shape {pixels.shape}")
    if 0 in pixels.shape:
        raise ValueError("SMV image must have at least one pixel")
    fits = pixels.dtype == np.uint16 or (
        np.issubdtype(pixels.dtype, np.integer)
        and (pixels.size == 0 or (int(pixels.min()) >= 0 and int(pixels.max()) <= 0xFFFF))
    )
    if not fits:
        raise ValueError(f"SMV pixels must be uint16, got {pixels.dtype}")
    header = format_smv_header(fields, shape=(pixels.shape[0], pixels.shape[1]))
    return [header, np.ascontiguousarray(pixels, dtype="<u2")]
