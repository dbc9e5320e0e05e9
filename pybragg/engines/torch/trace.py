"""One pixel's intermediate quantities, laid out as the C trace (``pb_trace_pixel``, ``csrc/kernel.c``).

:func:`trace_pixel` runs the differentiable kernel on a one-pixel chunk with a
:class:`Recorder` that keeps its intermediate tensors (off, and free, when
rendering), and lays them out in the C engine's loop order (layer, sub-pixel slow,
sub-pixel fast, source, phi step, mosaic domain).  Where the C engine carries a
factor that is not oversampled (solid angle, capture fraction, polarization), the
record holds the value in effect at that step of its loop; ``I_sum`` is the
running sum of the kernel's terms in loop order.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from pybragg.config import Config
from pybragg.engines.torch.kernel import pixel_photons
from pybragg.engines.torch.model import TorchModel
from pybragg.inputs import Inputs
from pybragg.result import TraceRecord


class Recorder:
    """Intermediate tensors of one kernel call, by name (detached copies on the CPU)."""

    def __init__(self) -> None:
        self.values: dict[str, np.ndarray | None] = {}

    def put(self, name: str, value: Any) -> None:
        if value is None:
            self.values[name] = None
        elif isinstance(value, torch.Tensor):
            self.values[name] = value.detach().to(device="cpu").clone().numpy()
        else:
            self.values[name] = np.asarray(value)

    def __getitem__(self, name: str) -> Any:
        return self.values[name]

    def get(self, name: str) -> np.ndarray | None:
        return self.values.get(name)


def running_first_nonzero(x: np.ndarray) -> np.ndarray:
    """Along a 1-D array: the first non-zero value seen so far (the value itself before it).

    The C engine computes a factor that is not oversampled only while the one in
    effect is 0, so this is the factor in effect at every step of its loop.
    """
    out = np.array(x, copy=True)
    nz = np.flatnonzero(x != 0)
    if nz.size:
        out[nz[0]:] = x[nz[0]]
    return out


def trace_pixel(
    config: Config,
    inputs: Inputs | None = None,
    fpixel: int = 0,
    spixel: int = 0,
    *,
    dtype: str = "float64",
    device: str | None = None,
) -> tuple[list[TraceRecord], float]:
    """The intermediate quantities of one pixel as the torch engine computes them.

    The same records as :meth:`pybragg.engines.c_engine.trace_pixel` (names, loop
    indices (layer, sub-pixel slow, sub-pixel fast, source, phi step, domain; -1
    where one does not apply), values, loop order and skips), taken from the model's
    kernel run on a one-pixel chunk (see the module docstring), and the pixel's value
    rounded to single precision as the C engine reports it.  A pixel outside the
    region of interest or the mask is traced all the same.  ``fpixel`` and ``spixel``
    are data-array coordinates; the panel is the one covering that pixel.  Raises
    ValueError for a pixel outside the data array or on no panel.
    """
    model = TorchModel(config, inputs, dtype=dtype, device=device)
    sp, fp = model.shape
    fpixel, spixel = int(fpixel), int(spixel)
    if not (0 <= fpixel < fp and 0 <= spixel < sp):
        raise ValueError(f"pixel (slow {spixel}, fast {fpixel}) is outside the {sp}x{fp} detector")
    panel = next((p for p in model.panels if 0 <= fpixel - p.data_fast < p.fpixels
                  and 0 <= spixel - p.data_slow < p.spixels), None)
    if panel is None:
        raise ValueError(f"pixel (slow {spixel}, fast {fpixel}) lies on no panel")
    rec = Recorder()
    with torch.no_grad():
        state = model.state(None)
        det = state.detectors[panel.index]
        for name in ("pix0", "fdet", "sdet", "odet"):
            rec.put(name, getattr(det, name))
        local = (spixel - panel.data_slow) * panel.fpixels + fpixel - panel.data_fast
        pix = torch.tensor([local], dtype=torch.int64, device=model.device)
        pixel_photons(model.setup, state, panel, pix, rec=rec)

    g, setup = model.geometry, model.setup
    os_, L, Ns = panel.oversample, panel.layers, setup.sources.n
    n_dom = int(g.mosaic_domains)
    No = setup.n_orient
    T = panel.n_sub
    os_thick, os_polar, os_omega = setup.oversample_thick, setup.oversample_polar, setup.oversample_omega
    water = setup.water
    records: list[TraceRecord] = []

    def emit(name: str, index: tuple[int, ...], values: Any) -> None:
        records.append(TraceRecord(name, index, tuple(float(v) for v in np.ravel(values))))

    none = (-1,) * 6
    for name in ("pix0", "fdet", "sdet", "odet", "I_background"):
        emit(name, none, rec[name])

    # the solid angle, capture fraction and polarization in effect at each step of
    # the C loop (those not oversampled are computed once and then carried)
    omega = rec["omega"].reshape(T)
    omega_eff = omega if os_omega else running_first_nonzero(omega)
    capture = rec.get("capture")
    if capture is None:
        capture_eff = np.ones(T)
    elif os_thick:
        capture_eff = capture.reshape(T)
    else:
        capture_eff = np.concatenate([running_first_nonzero(c) for c in capture.reshape(L, os_ * os_)])
    passed = rec.get("passed")
    passed = np.ones((T, Ns), dtype=bool) if passed is None else passed.reshape(T, Ns)
    polar = rec.get("polarization")
    if polar is None:
        polar_eff = np.ones((T, Ns))
    elif os_polar:
        polar_eff = polar.reshape(T, Ns)
    else:
        polar_eff = running_first_nonzero(np.where(passed, polar.reshape(T, Ns), 0.0).ravel()).reshape(T, Ns)

    Fdet, Sdet, Odet = rec["Fdet"].reshape(os_), rec["Sdet"].reshape(os_), rec["Odet"].reshape(L)
    position, diffracted = rec["position"].reshape(T, 3), rec["diffracted"].reshape(T, 3)
    airpath = rec["airpath"].reshape(T)
    incident, lam = rec["incident"].reshape(Ns, 3), rec["lambda"].reshape(Ns)
    scattering, stol = rec["scattering"].reshape(T, Ns, 3), rec["stol"].reshape(T, Ns)
    hkl, hkl0 = rec["hkl"].reshape(T, Ns, No, 3), rec["hkl_nearest"].reshape(T, Ns, No, 3)
    abc = rec.get("F_latt_abc")
    abc = None if abc is None else abc.reshape(T, Ns, No, 3)
    F_latt, F_cell = rec["F_latt"].reshape(T, Ns, No), rec["F_cell"].reshape(T, Ns, No)
    # the running sum of the C loop: the background, then every term in loop order
    term = rec["term"].reshape(T * Ns * No)
    I_sum = (np.cumsum(term) + rec["I_background"].reshape(())).reshape(T, Ns, No)

    t = 0
    for layer in range(L):
        for ss in range(os_):
            for sf in range(os_):
                sub = (layer, ss, sf)
                at = sub + (-1, -1, -1)
                emit("subpixel_fso", at, (Fdet[sf], Sdet[ss], Odet[layer]))
                emit("position", at, position[t])
                emit("diffracted", at, diffracted[t])
                emit("airpath", at, airpath[t])
                emit("omega", at, omega_eff[t])
                emit("capture_fraction", at, capture_eff[t])
                for s in range(Ns):
                    at = sub + (s, -1, -1)
                    emit("incident", at, incident[s])
                    emit("lambda", at, lam[s])
                    emit("scattering", at, scattering[t, s])
                    emit("stol", at, stol[t, s])
                    if not passed[t, s]:
                        continue  # the resolution cut
                    emit("polarization", at, polar_eff[t, s])
                    for o in range(No):
                        if F_latt[t, s, o] == 0.0 and not water:
                            continue
                        at = sub + (s, o // n_dom, o % n_dom)
                        emit("hkl", at, hkl[t, s, o])
                        emit("hkl_nearest", at, hkl0[t, s, o] + 0.0)  # whole numbers: no -0 (as in C)
                        if abc is not None:
                            emit("F_latt_abc", at, abc[t, s, o])
                        emit("F_latt", at, F_latt[t, s, o])
                        emit("F_cell", at, F_cell[t, s, o])
                        emit("I_sum", at, I_sum[t, s, o])
                t += 1

    emit("I_total", none, rec["I_total"])
    emit("scale", none, rec["scale"])
    if not os_omega:
        emit("omega_applied", none, rec["omega_applied"])
    if not os_polar:
        applied = rec.get("polarization_applied")
        emit("polarization_applied", none, 1.0 if applied is None else applied)
    if not os_thick:
        applied = rec.get("capture_applied")
        emit("capture_applied", none, 1.0 if applied is None else applied)
    value = float(np.float32(rec["photons"].reshape(())))
    emit("pixel", none, value)
    return records, value
