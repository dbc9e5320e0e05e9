"""Panel layouts shared by the C and torch engines' panel tests (tests/c_engine/test_panels.py,
tests/torch_engine/test_panels_torch.py): configurations, the golden multi-panel cases built by
hand from their ``detector.geom``, and a panel seen from behind."""

from __future__ import annotations

import json
import math

import numpy as np

from golden import GOLDEN
from pybragg import constants
from pybragg.config import Config, Convention, DetectorConfig, Misset, PanelConfig

MULTIPANEL = GOLDEN.parent / "golden-multipanel"


RIGHT = math.pi / 2


def crystal_config(**detector: object) -> Config:
    """A small cubic crystal, slightly misset, that lights up every panel."""
    cfg = Config(detector=DetectorConfig(**detector))  # type: ignore[arg-type]
    cfg.crystal.has_cell = True
    cfg.crystal.cell = (100e-10, 100e-10, 100e-10, RIGHT, RIGHT, RIGHT)
    cfg.crystal.misset_mode = Misset.ANGLES
    cfg.crystal.misset = (math.radians(6), math.radians(6), math.radians(6))
    cfg.crystal.default_F = 100.0
    cfg.crystal.N = (5.0, 5.0, 5.0)
    return cfg


def unit(v):
    n = math.sqrt(v[0] * v[0] + v[1] * v[1] + v[2] * v[2])
    return (v[0] / n, v[1] / n, v[2] / n)


def normal(fdet, sdet):
    """unit(unit(f) x unit(s)), computed as the C library computes it."""
    f, s = unit(fdet), unit(sdet)
    return unit((f[1] * s[2] - f[2] * s[1], f[2] * s[0] - f[0] * s[2], f[0] * s[1] - f[1] * s[0]))


def alone(cfg: Config, panel: PanelConfig) -> Config:
    """``panel`` as a one-panel CUSTOM detector with -pix0_vector (the configured convention's
    beam, polarization, spindle and two-theta axes given as CUSTOM vectors)."""
    out = cfg.copy()
    d = out.detector
    if d.convention != Convention.CUSTOM:
        ax = constants.CONVENTION_AXES[d.convention]
        out.beam.beam_vector, out.beam.polar_vector = ax.beam, ax.polar
        out.crystal.spindle_axis, d.twotheta_axis = ax.spindle, ax.twotheta_axis
    d.convention = Convention.CUSTOM
    d.panels = ()
    d.fpixels, d.spixels, d.pixel_size = panel.fpixels, panel.spixels, panel.pixel_size
    d.fdet_vector, d.sdet_vector = panel.fdet, panel.sdet
    d.odet_vector = normal(panel.fdet, panel.sdet)
    d.has_pix0, d.pix0_vector = True, panel.origin
    if d.roi is not None:
        x0, x1, y0, y1 = d.roi
        d.roi = (x0 - panel.data_fast, x1 - panel.data_fast, y0 - panel.data_slow, y1 - panel.data_slow)
    return out


def window(image: np.ndarray, p: PanelConfig) -> np.ndarray:
    return image[p.data_slow:p.data_slow + p.spixels, p.data_fast:p.data_fast + p.fpixels]


def bits(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.float32).view(np.uint32)


TILT = math.radians(20)


PANELS = (
    PanelConfig(name="near", fpixels=40, spixels=30, pixel_size=0.1e-3, origin=(0.1, 0.0035, -0.002),
                fdet=(0.0, 0.0, 1.0), sdet=(0.0, -1.0, 0.0), data_fast=0, data_slow=0),
    PanelConfig(name="tilted", fpixels=24, spixels=20, pixel_size=0.2e-3,
                origin=(0.09, -0.001, 0.0025), fdet=(math.sin(TILT), 0.0, math.cos(TILT)),
                sdet=(0.0, -2.0, 0.0), data_fast=45, data_slow=33),
)


def two_panel_config(**detector: object) -> Config:
    return crystal_config(panels=PANELS, **detector)


def geom_panels(case: str) -> tuple[PanelConfig, ...]:
    """The panels of ``<case>/detector.geom``, written out by hand.

    CrystFEL (x, y, z) is pybragg (z, y, -x); a corner is (corner_x, corner_y) pixels / res and
    clen + coffset along the beam; res is pixels per metre; min_fs/min_ss place the panel in
    the data array.
    """
    def panel(name, n_fs, n_ss, res, clen, corner, coffset, fs, ss, min_fs, min_ss):
        def lab(v):
            return (v[2], v[1], -v[0])
        x, y = corner[0] / res, corner[1] / res
        return PanelConfig(name=name, fpixels=n_fs, spixels=n_ss, pixel_size=1.0 / res,
                           origin=lab((x, y, clen + coffset)), fdet=lab(fs), sdet=lab(ss),
                           data_fast=min_fs, data_slow=min_ss)

    X, Y = (1.0, 0.0, 0.0), (0.0, 1.0, 0.0)
    mX, mY = (-1.0, 0.0, 0.0), (0.0, -1.0, 0.0)
    if case == "mp_two_panels":  # clen = 0.1 m, res = 10000
        return (
            panel("q0", 96, 64, 10000.0, 0.1, (48.0, 66.0), 0.0, mX, mY, 0, 0),
            panel("q1", 96, 64, 10000.0, 0.1, (48.0, -4.0), 0.0, mX, mY, 0, 64),
        )
    if case == "mp_rotated_offset":  # clen = 0.12 m, res = 8000
        return (
            panel("a", 120, 72, 8000.0, 0.12, (60.0, 80.0), 0.0, mX, mY, 0, 0),
            panel("b", 120, 72, 8000.0, 0.12, (-70.0, -60.0), 0.003, Y, mX, 0, 72),
            panel("c", 120, 72, 8000.0, 0.12, (70.0, 60.0), -0.002, mY, X, 0, 144),
        )
    raise KeyError(case)


def crystal_from_args(args: list[str]) -> Config:
    """The few flags the multi-panel cases use: -cell, -misset, -default_F, -N, -lambda."""
    cfg = Config()
    i = 0
    while i < len(args):
        flag = args[i]
        if flag == "-cell":
            v = [float(x) for x in args[i + 1:i + 7]]
            cfg.crystal.has_cell = True
            cfg.crystal.cell = (v[0] * 1e-10, v[1] * 1e-10, v[2] * 1e-10,
                                math.radians(v[3]), math.radians(v[4]), math.radians(v[5]))
            i += 7
        elif flag == "-misset":
            cfg.crystal.misset_mode = Misset.ANGLES
            cfg.crystal.misset = tuple(math.radians(float(x)) for x in args[i + 1:i + 4])  # type: ignore[assignment]
            i += 4
        elif flag == "-default_F":
            cfg.crystal.default_F = float(args[i + 1])
            i += 2
        elif flag == "-N":
            cfg.crystal.N = (float(args[i + 1]),) * 3  # type: ignore[assignment]
            i += 2
        elif flag == "-lambda":
            cfg.beam.lambda0 = float(args[i + 1]) * 1e-10
            i += 2
        else:
            raise ValueError(f"flag {flag} not handled here")
    return cfg


def multipanel_cases() -> list[str]:
    path = MULTIPANEL / "manifest.json"
    if not path.is_file():
        return ["<golden-multipanel data missing>"]
    return sorted(json.loads(path.read_text())["cases"])


def mirrored_pair(thick: float = 0.0) -> tuple[Config, Config, int]:
    """One panel seen from the front and the same pixels seen from behind (fast axis reversed, so
    that fs x ss points towards the sample, as in many real geometry files)."""
    n, px = 36, 0.1e-3
    front = PanelConfig(name="front", fpixels=n, spixels=28, pixel_size=px, origin=(0.08, 0.0014, -0.0018),
                        fdet=(0.0, 0.0, 1.0), sdet=(0.0, -1.0, 0.0))
    back = PanelConfig(name="back", fpixels=n, spixels=28, pixel_size=px,
                       origin=(0.08, 0.0014, -0.0018 + n * px), fdet=(0.0, 0.0, -1.0), sdet=(0.0, -1.0, 0.0))
    cfgs = []
    for panel in (front, back):
        # one sub-pixel: the un-oversampled factors come from a pixel's first sub-pixel, which a
        # reversed fast axis would change
        cfg = crystal_config(panels=(panel,), thick=thick, oversample=1)
        cfgs.append(cfg)
    return cfgs[0], cfgs[1], n
