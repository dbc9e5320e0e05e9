"""Recover a detector distance, beam centre and cell length by gradient descent.

A target image is simulated with the true geometry.  The model starts from a
perturbed geometry (distance 0.5 mm long, beam centre 0.15 mm off in both
directions, cell 0.3 A too long) and a quasi-Newton optimizer (L-BFGS) follows
the gradient of the image mismatch, computed by the torch engine's autograd,
back to the truth.

    python docs/examples/fit_geometry.py

Needs pybragg with the torch extra (``pip install "pybragg[torch]"``); runs in a
few seconds on a CPU.
"""

from __future__ import annotations

import math

import torch

import pybragg
from pybragg.engines.torch import TorchModel

# Gaussian spots of a small crystal (smooth in every parameter) on a 64 x 64 detector
# that reaches 11 degrees, so distance and cell length are not interchangeable.
FLAGS = [
    "-cell", "100", "100", "100", "90", "90", "90", "-misset", "10", "20", "30", "-default_F", "100",
    "-N", "4", "-gauss_xtal", "-lambda", "1", "-distance", "50", "-detpixels", "64", "-pixel", "0.3",
    "-oversample", "1",
]

# truth and perturbed start (SI units); the MOSFLM default beam centre of a
# 64 x 0.3 mm detector is (19.2 + 0.3) / 2 = 9.75 mm
TRUTH = {"distance": 0.050, "Xbeam": 9.75e-3, "Ybeam": 9.75e-3, "a": 100e-10}
START = {"distance": 0.0505, "Xbeam": 9.90e-3, "Ybeam": 9.60e-3, "a": 100.3e-10}
# the optimizer works in these units so that every unknown is O(1): mm, 0.1 mm, 0.1 mm, 0.1 A
SCALE = {"distance": 1e-3, "Xbeam": 1e-4, "Ybeam": 1e-4, "a": 1e-11}


def params_from(values: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Model parameters; the cubic cell's three lengths are one unknown."""
    a = values["a"]
    right = torch.full((), math.pi / 2, dtype=torch.float64)
    return {
        "distance": values["distance"],
        "Xbeam": values["Xbeam"],
        "Ybeam": values["Ybeam"],
        "cell": torch.stack([a, a, a, right, right, right]),
    }


def fit(rounds: int = 4, verbose: bool = True) -> dict[str, float]:
    """Fit the perturbed geometry to the simulated target; return the fitted values."""
    sim = pybragg.from_args(FLAGS)
    model = TorchModel(sim.config, sim.inputs, dtype="float64")
    truth = {k: torch.tensor(v, dtype=torch.float64) for k, v in TRUTH.items()}
    with torch.no_grad():
        target = model.image(params_from(truth)).sqrt()

    # unknowns: scaled offsets from the starting point
    offsets = {k: torch.zeros((), dtype=torch.float64, requires_grad=True) for k in START}

    def current() -> dict[str, torch.Tensor]:
        return {k: START[k] + SCALE[k] * offsets[k] for k in START}

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        # square roots of photon counts: bright and faint spots both matter
        loss = ((model.image(params_from(current())).sqrt() - target) ** 2).mean()
        loss.backward()
        return loss

    optimizer = torch.optim.LBFGS(offsets.values(), lr=1.0, max_iter=20, line_search_fn="strong_wolfe")
    for rnd in range(rounds):
        loss = optimizer.step(closure)
        if verbose:
            v = {k: float(x.detach()) for k, x in current().items()}
            print(f"round {rnd}: loss {float(loss.detach()):.3g}  distance {v['distance'] * 1e3:.5f} mm  "
                  f"beam {v['Xbeam'] * 1e3:.5f} {v['Ybeam'] * 1e3:.5f} mm  a {v['a'] * 1e10:.5f} A")
    fitted = {k: float(x.detach()) for k, x in current().items()}
    if verbose:
        for k, true in TRUTH.items():
            print(f"{k:>8}: start {START[k]:.6g}  fitted {fitted[k]:.6g}  truth {true:.6g}")
    return fitted


if __name__ == "__main__":
    fit()
