"""The picture of docs/realistic-images.md's Background section: spots, water, spots + water.

Run from the repository root: ``python docs/examples/background_stages.py`` (writes
docs/images/background-stages.png).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import LogNorm

from pybragg import background
from pybragg.flags import from_args
from pybragg.flags.load import background_sample

ARGS = ["-cell", "60", "60", "60", "90", "90", "90", "-default_F", "3000", "-N", "40", "-misset", "10", "20", "30",
        "-fluence", "1e24", "-detpixels", "160", "-pixel", "0.4", "-distance", "60", "-lambda", "1",
        "-oversample", "2", "-stol", "water", "-bg_thick", "0.0002"]


def main() -> None:
    sim = from_args(ARGS)
    spots = sim.run()
    both = background.render(sim.config, sim.inputs, background_sample(sim.invocation), onto=spots)
    water = both.image - spots.image.astype(np.float32)
    norm = LogNorm(vmin=1e3, vmax=float(both.image.max()))
    fig, axes = plt.subplots(1, 3, figsize=(10.5, 3.8), constrained_layout=True)
    for ax, image, title in zip(axes, (spots.image, water, both.image),
                                ("Bragg spots", "water background (0.2 µm)", "spots + background"), strict=True):
        im = ax.imshow(np.maximum(image, 1e3), cmap="gray_r", norm=norm)
        ax.set_title(title)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(im, ax=axes, shrink=0.8, label="photons per pixel (log scale)")
    out = Path(__file__).resolve().parents[1] / "images" / "background-stages.png"
    fig.savefig(out, dpi=80)
    print(f"spots max {spots.image.max():.4g}, water {water.min():.4g} .. {water.max():.4g}; wrote {out}")


if __name__ == "__main__":
    main()
