"""Datasets: rotation series and serial stills, resumable, rendered on Dask.

* :func:`series` -- frame ``i`` is the single render of the flags at ``-phi START + i*OSC`` with
  noise seed ``SEED + i``: one NXmx file (frames stacked at ``/entry/data/data``) or a folder of
  CBF/SMV frames;
* :func:`stills` -- shot ``i`` has a uniformly random orientation and optional per-shot
  variations drawn from ``(S, i)``; the truth of every shot is stored with the images;
* :class:`Dataset`, :func:`open_dataset` -- frames, truth, completion record and run log of a
  dataset on disk; :func:`reproduce_flags` -- one ``pybragg`` command that renders a frame
  exactly.

The pieces: :mod:`~pybragg.datasets.spec` (what frame ``i`` is), :mod:`~pybragg.datasets.draws`
(per-shot randomness and the orientation matrix), :mod:`~pybragg.datasets.worker` (what a worker
runs), :mod:`~pybragg.datasets.store` (the file, its truth and completion record),
:mod:`~pybragg.datasets.formats` (NXmx and CBF through :mod:`pybragg.io`),
:mod:`~pybragg.datasets.runner` (Dask: cluster, scatter, bounded window, progress).
Dask, distributed and h5py come with the ``[dask]`` extra.
"""

from .api import Dataset, open_dataset, reproduce_flags, series, stills
from .draws import Variations
from .runner import RunSummary
from .spec import Job

__all__ = ["Dataset", "Job", "RunSummary", "Variations", "open_dataset", "reproduce_flags", "series", "stills"]
