"""Gradients of the torch engine's image with respect to every continuous parameter.

Each test renders a tiny detector (6x6 pixels of 4 mm) in float64 and compares the
analytic Jacobian with central differences (``torch.autograd.gradcheck``).  The
parameter is written ``base + scale * u`` and the image divided by its peak, so that
``u`` and the image are of order one; each test also requires the Jacobian to be
clearly non-zero, so that a parameter the image ignored could not pass.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pybragg.engines.torch import PARAMETERS, TorchModel, render
from pybragg.engines.torch.crystal import mosaic_rotations
from pybragg.flags.load import load_inputs
from pybragg.flags.parse import parse_args

BASE = ("-cell 70 80 90 80 85 95 -misset 10 20 30 -default_F 100 -N 5 -lambda 1 -distance 100 "
        "-detpixels 6 -pixel 4 -oversample 1")
DEG = math.pi / 180

# parameter: (extra flags making the image smooth in it and sensitive to it, scale of u,
#             smallest max |d image / d u| / peak accepted)
CASES = {
    "cell": ("-gauss_xtal", [1e-10, 1e-10, 1e-10, DEG, DEG, DEG], 0.05),
    "misset": ("-gauss_xtal", [DEG, DEG, DEG], 0.05),
    "phi0": ("-gauss_xtal -phi 3", DEG, 0.05),
    "osc": ("-gauss_xtal -osc 3 -phisteps 3", DEG, 0.01),
    "distance": ("-gauss_xtal", 1e-3, 0.05),
    "Xbeam": ("-gauss_xtal", 1e-3, 0.5),
    "Ybeam": ("-gauss_xtal", 1e-3, 0.5),
    "rotx": ("-gauss_xtal -detector_rotx 2", DEG, 0.01),
    "roty": ("-gauss_xtal -detector_roty 2", DEG, 0.01),
    "rotz": ("-gauss_xtal -detector_rotz 2", DEG, 0.01),
    "twotheta": ("-gauss_xtal -twotheta 10", DEG, 0.01),
    "lambda0": ("-gauss_xtal", 1e-12, 0.05),
    "fluence": ("-gauss_xtal -water 5", None, 0.5),  # u scales the fluence relatively
    "polarization": ("-gauss_xtal -water 100 -polar 0.5 -twotheta 45 -distance 40", 1.0, 0.02),
    "fudge": ("-gauss_xtal -fudge 1.5", 0.1, 0.01),
    "N": ("-Na 4 -Nb 5 -Nc 6", 0.1, 0.1),  # square spots, h never an integer
    "mosaic_spread": ("-gauss_xtal -mosaic 1 -mosaic_dom 4", DEG, 0.01),
}


def tiny_model(extra: str = "", **kwargs) -> TorchModel:
    inv = parse_args((BASE + " " + extra).split())
    return TorchModel(inv.config, load_inputs(inv), **kwargs)


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def test_every_parameter_is_covered() -> None:
    assert set(CASES) == set(PARAMETERS)


@pytest.mark.parametrize("name", sorted(CASES))
def test_gradcheck(name: str) -> None:
    extra, scale, min_jacobian = CASES[name]
    model = tiny_model(extra)
    base = model.defaults()[name]
    sc = base.clone() if scale is None else torch.as_tensor(scale, dtype=torch.float64)
    with torch.no_grad():
        peak = model.image().max()
    assert peak > 0

    def image(u: torch.Tensor) -> torch.Tensor:
        return model.image({name: base + sc * u}) / peak

    u = torch.zeros_like(base, requires_grad=True)
    assert torch.autograd.gradcheck(image, (u,), eps=1e-6, atol=1e-6, rtol=1e-4)
    jac = torch.autograd.functional.jacobian(image, u)
    assert float(jac.abs().max()) > min_jacobian


def test_defaults_reproduce_render() -> None:
    model = tiny_model("-gauss_xtal -mosaic 1 -mosaic_dom 3 -osc 2 -phisteps 2")
    image = model.image().numpy()
    result = render(model.config, model.inputs, dtype="float64", threads=1)
    np.testing.assert_allclose(image, result.image, rtol=1e-12, atol=0)
    # the same values passed explicitly change nothing
    again = model.image(model.defaults()).numpy()
    np.testing.assert_allclose(again, image, rtol=1e-12, atol=0)


def test_mosaic_domains_rebuilt_like_the_plan() -> None:
    model = tiny_model("-mosaic 0.8 -mosaic_dom 12 -mosaic_seed 777")
    U = mosaic_rotations(model.mosaic, model.defaults()["mosaic_spread"]).numpy()
    np.testing.assert_allclose(U, model.plan.mosaic, rtol=0, atol=1e-8)
    np.testing.assert_array_equal(U[0], np.eye(3))


def test_gradient_through_many_checkpointed_chunks() -> None:
    """A budget that forces several chunks gives the same image and gradient as one chunk."""
    whole = tiny_model("-gauss_xtal -oversample 2")
    split = tiny_model("-gauss_xtal -oversample 2", memory_budget_gib=1e-6)
    assert split.chunk_pixels(grad=True) < 36 <= whole.chunk_pixels(grad=True)
    grads = []
    images = []
    for model in (whole, split):
        cell = model.defaults()["cell"].requires_grad_(True)
        distance = model.defaults()["distance"].requires_grad_(True)
        img = model.image({"cell": cell, "distance": distance})
        (img * torch.linspace(0.5, 1.5, img.numel(), dtype=img.dtype).view_as(img)).sum().backward()
        images.append(img.detach())
        grads.append(torch.cat((cell.grad * 1e-10, distance.grad.view(1) * 1e-3)))
    torch.testing.assert_close(images[1], images[0], rtol=1e-13, atol=0)
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-10, atol=0)


def test_float32_model_and_parameter_checks() -> None:
    model = tiny_model("-gauss_xtal", dtype="float32")
    img = model.image({"distance": torch.tensor(0.1, requires_grad=True)})
    assert img.dtype == torch.float32 and img.shape == (6, 6)
    with pytest.raises(KeyError):
        model.image({"nonsense": torch.tensor(1.0)})
    with pytest.raises(ValueError):
        model.image({"misset": torch.zeros(2)})
