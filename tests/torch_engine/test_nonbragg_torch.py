"""The amorphous background in the torch engine: golden cases, torch vs C, gradients."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from golden import FLOAT_BARS
from nonbragg_cases import CASES, _ref, run_case


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", CASES)
def test_golden_nonbragg_torch(name: str, dtype: str, tmp_path: Path) -> None:
    run_case(name, tmp_path, backend="torch", dtype=dtype)
    ref = np.frombuffer(_ref(name, "float.bin"), "<f4").astype(np.float64)
    ours = np.fromfile(tmp_path / "float.bin", "<f4").astype(np.float64)
    assert ours.size == ref.size
    tol, corr_min = FLOAT_BARS[dtype]
    rel = float(np.abs(ours - ref).max() / ref.max())
    corr = float(np.corrcoef(ours, ref)[0, 1])
    assert rel <= tol and corr >= corr_min, (rel, corr)


def _config(**changes: object):
    from pybragg.config import Config

    cfg = Config()
    cfg.crystal.has_cell = True
    cfg.crystal.cell = (50e-10, 50e-10, 50e-10, math.pi / 2, math.pi / 2, math.pi / 2)
    cfg.detector.fpixels, cfg.detector.spixels = 40, 32
    cfg.detector.pixel_size = 0.6e-3
    cfg.detector.distance = 50e-3
    cfg.beam.fluence = 1e24
    for key, value in changes.items():
        cfg = cfg.replace(**{key: value})
    return cfg


def _inputs():
    from pybragg.inputs import Inputs
    from pybragg.io.stol import read_stol

    return Inputs(stol=read_stol("water"))


XDS, CUSTOM = 3, 0  # pybragg.config.Convention
GEOMETRIES = {
    "rotated_twotheta_curved": {
        "detector.rotx": 0.05, "detector.roty": -0.03, "detector.rotz": 0.02, "detector.twotheta": 0.3,
        "detector.curved": True, "detector.oversample": 2, "beam.polarization": 0.9,
    },
    "sensor_divergence_dispersion": {
        "detector.thick": 0.3e-3, "detector.mu": 3000.0, "detector.thicksteps": 2, "beam.hdivrange": 2e-3,
        "beam.hdivsteps": 2, "beam.dispersion": 0.05, "beam.dispsteps": 2, "detector.twotheta": -0.2,
    },
    "xds_point_pixel_roi": {
        "detector.convention": XDS, "detector.point_pixel": True, "detector.roi": (3, 30, 5, 25),
        "beam.nopolar": True,
    },
}


@pytest.mark.parametrize("case", sorted(GEOMETRIES))
def test_torch_matches_c(case: str) -> None:
    from pybragg import background
    from pybragg.config import SampleConfig

    cfg = _config(**GEOMETRIES[case])
    inputs = _inputs()
    sample = SampleConfig(thickness=0.2e-3, width=0.05e-3)
    c = background.render(cfg, inputs, sample)
    assert c.image.max() > 0
    for dtype, (tol, corr_min) in FLOAT_BARS.items():
        t = background.render(cfg, inputs, sample, backend="torch", dtype=dtype)
        diff = np.abs(t.image.astype(np.float64) - c.image.astype(np.float64)).max() / c.image.max()
        assert diff <= (1e-6 if dtype == "float64" else tol), (dtype, diff)
        assert np.corrcoef(t.image.ravel(), c.image.ravel())[0, 1] >= corr_min
        assert t.stats.omega_sum == pytest.approx(c.stats.omega_sum, rel=1e-5)
        assert t.extras["sample"] == c.extras["sample"]


def test_explicit_panels_and_onto() -> None:
    from pybragg import background
    from pybragg.config import PanelConfig, SampleConfig

    panels = (PanelConfig(name="a", fpixels=12, spixels=10, pixel_size=0.5e-3, origin=(0.05, 6e-3, 8e-3)),
              PanelConfig(name="b", fpixels=12, spixels=10, pixel_size=0.5e-3, origin=(0.05, 6e-3, -1e-3),
                          data_fast=12))
    cfg = _config(**{"detector.panels": panels, "detector.convention": CUSTOM, "detector.twotheta": 0.1})
    inputs = _inputs()
    onto = np.random.default_rng(1).random((10, 24), dtype=np.float32) * 100
    c = background.render(cfg, inputs, SampleConfig(), onto=onto)
    t = background.render(cfg, inputs, SampleConfig(), onto=onto, backend="torch")
    assert c.image.shape == (10, 24) and np.abs(c.image - onto).min() > 0
    np.testing.assert_allclose(t.image, c.image, rtol=1e-6)


def _model(**changes: object):
    from pybragg.config import SampleConfig
    from pybragg.engines.torch.background import BackgroundModel

    cfg = _config(**{"detector.fpixels": 6, "detector.spixels": 5, "detector.twotheta": 0.2,
                     "detector.curved": True, "detector.oversample": 2, "beam.polarization": 0.8, **changes})
    return BackgroundModel(cfg, _inputs(), SampleConfig(thickness=0.2e-3), dtype="float64")


def test_gradcheck_thickness_distance_geometry() -> None:
    model = _model()
    d = model.defaults()
    names = ("thickness", "distance", "twotheta", "Xbeam", "density", "fluence")
    scale = {n: float(d[n]) for n in names}

    def f(*x: torch.Tensor) -> torch.Tensor:
        # parameters in units of their defaults, the image in units of its default maximum
        return model.image({n: v * scale[n] for n, v in zip(names, x, strict=True)}) / peak

    peak = float(model.image().max())
    ones = tuple(torch.ones((), dtype=torch.float64, requires_grad=True) for _ in names)
    assert torch.autograd.gradcheck(f, ones, eps=1e-6, atol=1e-7, rtol=1e-5)


def test_gradients_against_central_differences() -> None:
    model = _model(**{"detector.rotx": 0.03})
    d = model.defaults()
    # the table's piecewise cubic has kinks at its points, which a step may cross: 1e-5 for angles
    for name, h, rel in (("thickness", 1e-7, 1e-8), ("distance", 1e-6, 1e-6), ("rotx", 1e-6, 1e-5)):
        x = d[name].clone().requires_grad_(True)
        total = model.image({name: x}).sum()
        (g,) = torch.autograd.grad(total, x)
        with torch.no_grad():
            up = model.image({name: d[name] + h}).sum()
            down = model.image({name: d[name] - h}).sum()
        fd = (up - down) / (2 * h)
        assert float(g) == pytest.approx(float(fd), rel=rel), name
    # thickness enters linearly: d(sum)/d(thickness) = sum / thickness
    x = d["thickness"].clone().requires_grad_(True)
    total = model.image({"thickness": x}).sum()
    (g,) = torch.autograd.grad(total, x)
    assert float(g) == pytest.approx(float(total.detach()) / float(x.detach()), rel=1e-12)


def test_bad_parameters() -> None:
    model = _model()
    with pytest.raises(KeyError, match="unknown parameter"):
        model.image({"cell": torch.ones(6)})
    with pytest.raises(ValueError, match="scalar"):
        model.image({"thickness": torch.ones(2)})
