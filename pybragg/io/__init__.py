"""File formats read and written by pybragg.

HKL text and Fdump tables, MOSFLM matrices, SMV, PGM and float images, source lists.
"""

from .atomic import atomic_write
from .cformat import c_g
from .errors import FormatError
from .floatimage import read_float_image, write_float_image
from .hkl import HKLTable, read_fdump, read_hkl, write_fdump
from .matrix import read_mosflm_matrix, reciprocal_vectors_from_mosflm
from .pgm import read_pgm, write_pgm
from .smv import SMVImage, format_smv_header, read_smv, write_smv
from .sources import read_source_file

__all__ = [
    "FormatError",
    "HKLTable",
    "SMVImage",
    "atomic_write",
    "c_g",
    "format_smv_header",
    "read_fdump",
    "read_float_image",
    "read_hkl",
    "read_mosflm_matrix",
    "read_pgm",
    "read_smv",
    "read_source_file",
    "reciprocal_vectors_from_mosflm",
    "write_fdump",
    "write_float_image",
    "write_pgm",
    "write_smv",
]
