"""Both engines agree on hundreds of random configurations (hypothesis).

Each example draws a small detector and a mix of the model's options —
conventions, pivots, detector rotations and two-theta, spot shapes,
oversampling and its toggles, phi steps, mosaic domains, divergence,
dispersion, sensor absorption, polarization, curved detector, point pixel,
ROI — renders it with the C engine and the torch engine (float64) in this
process and holds the images to the C engine's golden bars.
"""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pybragg
from golden import FLOAT_BARS
from pybragg.flags import from_args


def _num(x: float) -> str:
    return f"{x:.6g}"


@st.composite
def configurations(draw: st.DrawFn) -> list[str]:
    """nanoBragg flags for one small random configuration."""
    a = draw(st.floats(40, 120))
    b = draw(st.floats(40, 120))
    c = draw(st.floats(40, 120))
    angles = draw(st.sampled_from([(90, 90, 90), (90, 90, 120), (80, 95, 100), (75, 85, 95)]))
    args = ["-cell", _num(a), _num(b), _num(c), *map(str, angles)]
    args += ["-misset", *(_num(draw(st.floats(-180, 180))) for _ in range(3))]
    args += ["-default_F", _num(draw(st.floats(1, 200)))]
    shape = draw(st.sampled_from(["square", "round", "gauss", "tophat"]))
    if shape != "square":
        args += [f"-{shape}_xtal" if shape != "tophat" else "-tophat_spots"]
        args += ["-fudge", _num(draw(st.floats(0.5, 2)))]
    n = [draw(st.integers(1, 12)) for _ in range(3)]
    args += ["-Na", str(n[0]), "-Nb", str(n[1]), "-Nc", str(n[2])]
    args += ["-lambda", _num(draw(st.floats(0.7, 2.5)))]
    pixels = draw(st.integers(12, 24))
    args += ["-detpixels_x", str(pixels), "-detpixels_y", str(draw(st.integers(12, 24)))]
    args += ["-pixel", _num(draw(st.floats(0.3, 1.5)))]

    convention = draw(st.sampled_from(["mosflm", "xds", "adxv", "denzo", "dials", "custom"]))
    if convention == "custom":
        args += ["-fdet_vector", "0", "0", "1", "-sdet_vector", "0", "-1", "0", "-odet_vector", "1", "0", "0",
                 "-beam_vector", "1", "0", "0"]
        if draw(st.booleans()):
            args += ["-pix0_vector_mm", _num(draw(st.floats(50, 120))), _num(draw(st.floats(-5, 15))),
                     _num(draw(st.floats(-15, 5)))]
        else:
            args += ["-distance", _num(draw(st.floats(50, 150)))]
        args += ["-pivot", draw(st.sampled_from(["beam", "sample"]))]
    else:
        args += [f"-{convention}"]
        if draw(st.booleans()):
            args += ["-distance", _num(draw(st.floats(40, 150)))]
        else:
            args += ["-close_distance", _num(draw(st.floats(40, 150)))]
        if draw(st.booleans()):
            args += ["-Xbeam", _num(draw(st.floats(0, 15))), "-Ybeam", _num(draw(st.floats(0, 15)))]
    if draw(st.booleans()):
        args += ["-detector_rotx", _num(draw(st.floats(-5, 5))), "-detector_roty", _num(draw(st.floats(-5, 5))),
                 "-detector_rotz", _num(draw(st.floats(-5, 5)))]
    if draw(st.booleans()):
        args += ["-twotheta", _num(draw(st.floats(-20, 20)))]

    args += ["-oversample", str(draw(st.integers(1, 3)))]
    for toggle in ("-oversample_thick", "-oversample_polar", "-oversample_omega"):
        if draw(st.booleans()):
            args.append(toggle)
    if draw(st.booleans()):
        args += ["-phi", _num(draw(st.floats(-30, 30))), "-osc", _num(draw(st.floats(0.1, 3))),
                 "-phisteps", str(draw(st.integers(1, 4)))]
    if draw(st.booleans()):
        args += ["-mosaic", _num(draw(st.floats(0.05, 2))), "-mosaic_dom", str(draw(st.integers(2, 5))),
                 "-mosaic_seed", str(draw(st.integers(1, 10**6)))]
    if draw(st.booleans()):
        args += ["-divergence", _num(draw(st.floats(0.1, 3))), "-divsteps", str(draw(st.integers(2, 3))),
                 draw(st.sampled_from(["-round_div", "-square_div"]))]
    if draw(st.booleans()):
        args += ["-dispersion", _num(draw(st.floats(0.1, 5))), "-dispsteps", str(draw(st.integers(2, 3)))]
    if draw(st.booleans()):
        args += ["-detector_abs", _num(draw(st.floats(50, 500))), "-detector_thick",
                 _num(draw(st.floats(10, 500))), "-detector_thicksteps", str(draw(st.integers(1, 3)))]
    if draw(st.booleans()):
        args += ["-polar", _num(draw(st.floats(-1, 1)))]
    elif draw(st.booleans()):
        args += ["-nopolar"]
    if draw(st.booleans()):
        args += ["-curved_det"]
    if draw(st.booleans()):
        args += ["-point_pixel"]
    if draw(st.booleans()):
        x0 = draw(st.integers(0, 6))
        y0 = draw(st.integers(0, 6))
        args += ["-roi", str(x0), str(x0 + draw(st.integers(2, 8))), str(y0), str(y0 + draw(st.integers(2, 8)))]
    if draw(st.booleans()):
        args += ["-dmin", _num(draw(st.floats(1, 20)))]
    if draw(st.booleans()):
        args += ["-water", _num(draw(st.floats(1, 50)))]
    return args


@settings(max_examples=220, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(configurations())
def test_c_and_torch_agree(args: list[str]) -> None:
    sim = from_args(args)
    comparison = pybragg.compare(sim.config, sim.inputs, engines=("c", "torch"), dtype="float64", threads=1)
    c_image, torch_image = (r.image for r in comparison.extras["results"])
    tol, corr_min = FLOAT_BARS["float64"]
    peak = float(np.abs(c_image).max())
    assert comparison.max_abs_diff <= tol * peak + 1e-30, (args, comparison.report())
    # correlation says something only where the image varies well beyond float32 rounding: the C
    # image is stored in float32 (relative rounding up to 6e-8), and a correlation of 0.999999 needs
    # the rounding noise under about 1e-3 of the image's spread, so the spread must exceed about
    # 1e-4 of the mean (a water-dominated image of spread 1e-6 x mean failed on rounding alone)
    if c_image.std() > 1e-4 * abs(float(c_image.mean())):
        assert comparison.correlation >= corr_min, (args, comparison.report())
    assert torch_image.shape == c_image.shape
