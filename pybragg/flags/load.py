"""Reading the files a command line names into :class:`~pybragg.inputs.Inputs`."""

from __future__ import annotations

import os

import numpy as np

from pybragg.errors import UsageError
from pybragg.inputs import Inputs
from pybragg.io.hkl import read_fdump, read_hkl, write_fdump
from pybragg.io.smv import read_smv
from pybragg.io.sources import read_source_file


def load_inputs(inv, write_dump: bool = False) -> Inputs:
    """Structure factors, sources and mask for a parsed command line.

    Like the reference: ``-hkl`` is read (and cached to the dump file when
    ``write_dump``); without ``-hkl`` an existing dump file is read back; with
    neither, ``-default_F`` must be non-zero.
    """
    crystal = inv.config.crystal
    hkl = None
    dump = inv.outputs.dumpfile
    if inv.hkl_path is not None:
        hkl = read_hkl(inv.hkl_path, default_F=crystal.default_F)
        if write_dump and dump:
            write_fdump(dump, hkl)
    elif dump and os.path.exists(dump):
        hkl = read_fdump(dump)
    elif crystal.default_F == 0.0:
        raise UsageError("no structure factors: give -hkl FILE or a non-zero -default_F")
    if not (crystal.has_cell or crystal.has_matrix):
        raise UsageError("no unit cell: give -cell a b c alpha beta gamma or -mat FILE")
    sources = read_source_file(inv.source_path) if inv.source_path is not None else None
    mask = None
    if inv.mask_path is not None:
        mask = (read_smv(inv.mask_path).data != 0).astype(np.uint8)
    return Inputs(hkl=hkl, sources=sources, mask=mask)
