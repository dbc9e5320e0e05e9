"""The PyTorch engine: the C engine's pixel model, vectorized and differentiable.

Three entry points:

* :func:`render` -- same contract as :func:`pybragg.engines.c_engine.render`: a
  :class:`~pybragg.result.Result` whose image (numpy, of the chosen dtype, shape
  (slow, fast)) matches the C engine, with statistics from the C plan.
* :class:`TorchModel` -- the image as a differentiable function of continuous
  parameters: ``TorchModel(config, inputs).image(params)`` returns the whole
  (slow, fast) image tensor (the data array holding every panel), where ``params``
  maps names below to tensors (that may require grad) replacing the configuration's
  values.
* :func:`trace_pixel` -- ``trace_pixel(config, inputs, fpixel, spixel)`` (data-array
  coordinates) returns the intermediate quantities of one pixel and its value, record for record the same
  names, loop indices, order and skips as the C engine's
  :meth:`~pybragg.engines.c_engine.trace_pixel` (what ``pybragg trace`` lines up).
  The values are the torch engine's own: the kernel runs on a one-pixel chunk with a
  recorder that keeps its intermediate tensors (off, and free, when rendering), and
  they are laid out in the C engine's loop order (layer, sub-pixel slow, sub-pixel
  fast, source, phi step, mosaic domain).  Where the C engine carries a factor that
  is not oversampled (solid angle, capture fraction, polarization), the record holds
  the value in effect at that step of its loop; ``I_sum`` is the running sum of the
  kernel's terms in loop order.

The detector is the plan's list of panels (one for a detector the flags define):
every panel renders, in one call, into its place in the data array, with its own
origin, axes, pixel size and oversampling.  Everything discrete comes from the C
plan (:class:`~pybragg.plan.Plan`) and the configuration as they are: panels and
pixel counts, region of interest and mask (over the data array), oversampling and
the three ``oversample_*`` toggles, sensor layers, phi steps, mosaic domain count and
their random numbers, sources (directions, relative wavelengths), convention, pivot,
which reflections exist in the table.

Parameters (SI units; shapes in brackets, scalars otherwise):

``cell`` [6]
    a, b, c (m) and alpha, beta, gamma (rad).  Only for a configuration that gives a
    unit cell (``crystal.has_cell``); the default fills b, c and the angles the way
    the engine does (a non-positive b or c is a, a non-positive angle is 90 degrees).
``misset`` [3]
    rotations of the reciprocal axes about lab x, y, z (rad).  Default: the plan's
    applied misset (zeros without one); a random misset is taken from the plan's
    geometry and then treated as fixed angles.
``phi0``
    spindle angle of the first phi step (rad).
``osc``
    oscillation range (rad).  Whenever the plan's phi step is its ``osc / phisteps``
    (no explicit ``phistep`` was given, or one equal to that), the phi step becomes
    ``osc / phisteps`` (``phisteps`` from the plan).  With an explicit, different
    ``phistep`` the range only counted the steps: ``osc`` then has no effect.
``distance``
    sample to beam spot along the beam (m), the configuration's ``detector.distance``.
    It has no effect where the configuration fixes ``close_distance`` or ``pix0``, or
    gives explicit panels.
``Xbeam``, ``Ybeam``
    beam centre in the convention's frame (m); default: the plan's resolved centre.
    Like in the C engine they move the detector only where the convention uses them
    (not with ``pix0`` or explicit panels; XDS/DIALS place the detector by the near point).
``rotx``, ``roty``, ``rotz``, ``twotheta``
    detector rotations (rad); they rotate explicit panels' origins and axes too.
``lambda0``
    central wavelength (m); every source wavelength is scaled by ``lambda0 / plan's
    lambda0`` (file sources included).
``fluence``
    photons/m^2 (also scales the water background, as in the C engine).
``polarization``
    Kahn factor.
``fudge``
    lattice-transform radius scale.
``N`` [3]
    unit cells along a, b, c (real-valued).  A factor is left out where N <= 1, as in
    the C engine; the square spot's factor takes the sign pattern of the nearest whole
    N (see :func:`.lattice.grating`).
``mosaic_spread``
    isotropic mosaic spread (rad).  Domain ``i`` is rotated by ``spread * p_i``
    about axis ``u_i`` where ``p_i`` and ``u_i`` come from the deviates ``3i .. 3i+2``
    of the reference generator seeded with ``mosaic_seed`` (domain 0 stays the
    identity), with ``p_i`` the C engine's single-precision power.  The C engine also
    rounds the spread and the product to single precision; that rounding (a few 1e-8
    of the angle) is left out so that the image is smooth in the spread, and the
    rebuilt matrices match the plan's to about 1e-9.  The domain count comes from the
    plan: with a single domain the spread has no effect.

Implementation: the pixels inside the ROI and the mask are processed in chunks (see
:mod:`.driver`), each chunk one call of the kernel (:mod:`.kernel`) on tensors over
(pixel, layer x sub-pixel, source, orientation), sized so that the chunk's temporaries
fit ``memory_budget_gib``.  Without gradients on the CPU, :func:`render` runs two
chunks side by side in Python threads and gives each operation ``threads / 2``
threads; the orientation-level work then runs in place, in scratch tensors.

Precision: the nearest reflection is round(h) (ties to even), where the C engine takes
the reference's ceil(h - 0.5); the two differ only at exact half-integers, where the
Miller indices of the two engines, summed in different orders, do not agree to the last
bit anyway.  Everything runs in the chosen dtype, with the sines of the square lattice
factor reduced to small arguments first (as the C engine does) so that single
precision holds near the Bragg peaks, and the sphere transform's series near 0.  One
exception: the tophat spot has a sharp edge, which single-precision Miller indices
would move across whole sub-pixels, so a float32 model of that shape computes in
float64 (and returns float32).

Modules, after ``csrc/``: :mod:`.vec` (vector maths), :mod:`.geometry` (detector
axes, origin and the panels' pixels), :mod:`.crystal` (cell, misset, mosaic,
orientations), :mod:`.sources`, :mod:`.structure_factors` (table look-up and
interpolation), :mod:`.lattice` (the spot shapes' lattice factor), :mod:`.kernel`
(one chunk of pixels, and the :class:`~.kernel.RenderState` it runs on),
:mod:`.driver` (chunks and threads), :mod:`.model` (:class:`TorchModel` and
:func:`render`) and :mod:`.trace` (:func:`trace_pixel`).
"""

from pybragg.engines.torch.model import PARAMETERS, TorchModel, render
from pybragg.engines.torch.trace import trace_pixel

__all__ = ["PARAMETERS", "TorchModel", "render", "trace_pixel"]
