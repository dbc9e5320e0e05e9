"""Draw docs/images/response-stages.png: one simulated image before and after each stage of the
detector response (pybragg.response).  Run from the repository root:

    python docs/examples/response_stages.py
"""

from __future__ import annotations

import pathlib
import subprocess
import sys
import tempfile

import numpy as np

from pybragg.response import ResponseConfig, psf, respond

OUT = pathlib.Path(__file__).resolve().parents[1] / "images" / "response-stages.png"


def spots() -> np.ndarray:
    """Bragg spots of a small cell on 128 x 128 pixels of 0.1 mm (expected photons)."""
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pybragg", "-cell", "60", "60", "60", "90", "90", "90",
                        "-default_F", "80", "-N", "6", "-detpixels", "128", "-pixel", "0.1", "-distance", "60",
                        "-lambda", "1", "-misset", "10", "20", "30", "-fluence", "1e28", "-floatfile", "f.bin",
                        "-intfile", "i.img", "-nopgm", "-nonoise", "-q"], cwd=tmp, check=True)
        return np.fromfile(pathlib.Path(tmp) / "f.bin", dtype=np.float32).reshape(128, 128)


def main() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    expected = spots() + np.float32(2.0)  # a flat 2-photon background stands in for the water ring
    seed = 7
    counted = respond(expected, ResponseConfig(adc_offset=0.0, bits=32), seed).signal
    blurred, _, _ = psf(counted, "gauss", 1.5)
    full = ResponseConfig(psf="gauss", psf_fwhm=150e-6, pixel_size=1e-4, gain=1.5, readout_noise=3.0,
                          adc_offset=40.0, calibration=0.03, flicker=0.01)
    final = respond(expected, full, seed).counts
    panels = [(expected, "expected photons"), (counted, "Poisson counts"),
              (blurred, "+ Gaussian PSF (150 µm)"), (final, "+ gain 1.5, read-out 3, ADC 40")]
    fig, axes = plt.subplots(1, 4, figsize=(13, 3.6))
    for ax, (img, title), gain in zip(axes, panels, (1, 1, 1, 1.5)):
        data = np.asarray(img, dtype=float)[32:96, 32:96]
        floor = float(np.median(data))
        ax.imshow(data, cmap="gray_r", vmin=floor - 3 * gain, vmax=floor + 40 * gain)
        ax.set_title(title, fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(OUT, dpi=80)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
