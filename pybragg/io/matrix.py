"""MOSFLM-style orientation matrix files (``-mat``)."""

from __future__ import annotations

import math
import os

import numpy as np

from .errors import FormatError, describe_path, read_text, shorten

#: largest element accepted: lambda * a* is about lambda / a, far below 1 for any crystal
MAX_ELEMENT = 1e6


def read_mosflm_matrix(path: str | os.PathLike[str]) -> np.ndarray:
    """Return the 3x3 matrix A from the first nine numbers of a MOSFLM matrix file.

    Rows are x, y, z components; columns are a*, b*, c* times the wavelength
    (dimensionless). Everything after the ninth number is ignored.
    """
    name = describe_path(path)
    tokens = read_text(path).split()[:9]
    values: list[float] = []
    for position, token in enumerate(tokens, start=1):
        try:
            value = float(token)
        except ValueError:
            raise FormatError(
                f"{name}: number {position} of the matrix is not numeric: {shorten(token)}"
            ) from None
        if not math.isfinite(value):
            raise FormatError(f"{name}: number {position} of the matrix is not finite: {shorten(token)}")
        if abs(value) > MAX_ELEMENT:
            raise FormatError(f"{name}: number {position} of the matrix is implausibly large (|value| > "
                              f"{MAX_ELEMENT:g}; it is a reciprocal axis times the wavelength): {shorten(token)}")
        values.append(value)
    if len(values) < 9:
        raise FormatError(f"{name}: expected 9 numbers for a 3x3 orientation matrix, found {len(values)}")
    matrix = np.array(values, dtype=np.float64).reshape(3, 3)
    det = float(np.linalg.det(matrix))
    if not abs(det) >= 1e-30:
        raise FormatError(f"{name}: orientation matrix is singular (determinant {det:g})")
    return matrix


def reciprocal_vectors_from_mosflm(
    A: np.ndarray, wavelength_m: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Convert a MOSFLM matrix to reciprocal vectors a*, b*, c* in 1/m.

    Column j of ``A`` is a reciprocal vector times the wavelength, so dividing
    by the wavelength in metres gives SI units.
    """
    matrix = np.asarray(A, dtype=np.float64)
    if matrix.shape != (3, 3):
        raise ValueError(f"orientation matrix must be 3x3, got shape {matrix.shape}")
    if not wavelength_m > 0 or not math.isfinite(wavelength_m):
        raise ValueError(f"wavelength must be positive and finite, got {wavelength_m!r}")
    scaled = matrix / float(wavelength_m)
    return scaled[:, 0].copy(), scaled[:, 1].copy(), scaled[:, 2].copy()
