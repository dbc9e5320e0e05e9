"""A still on a Jungfrau-4M-like detector: a CrystFEL geometry of 8 modules of 2 x 4 chips, rendered
by pybragg from ``-geom`` and shown with every panel in place.

The layout: 8 modules in 4 rows of 2, each module 2 x 4 chips of 256 x 256 pixels of 75 um, 2 pixels
between chips, 8 pixels between the two columns of modules and 36 between the rows; the top four
modules are read out the other way round (fs = -x, ss = -y) from the bottom four (fs = +x, ss = +y),
as on the real detector.  Each chip is one panel of the geometry file (64 panels); the data array is
the modules stacked along the slow axis, 4096 x 1024 pixels, as the detector writes its frames.  A
beamstop shadow is a bad region in lab coordinates, each chip's outer pixel ring is masked
(``mask_edge_pixels = 1``), and the modules are the file's groups.

    python docs/examples/jungfrau4m.py            # writes jungfrau4m.geom and jungfrau4m.png here

The render (C engine, two threads) takes under a second, the whole script about five; ``--chip 32``
makes a small copy of the layout (the test suite runs one).  Needs matplotlib for the picture.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np

from pybragg.io.crystfel import (
    BadRegion,
    CrystfelGeometry,
    CrystfelPanel,
    lab_panels,
    read_geometry,
    write_geometry,
)

HERE = Path(__file__).resolve().parent

#: a lysozyme-like crystal, a mosaic still at 9.5 keV, with water around it for a diffuse ring
FLAGS = [
    "-cell", "79.1", "79.1", "37.9", "90", "90", "90", "-misset", "20", "31", "47", "-default_F", "100",
    "-N", "12", "-mosaic", "0.5", "-mosaic_domains", "16", "-water", "0.25", "-oversample", "1",
    "-nonoise", "-nopgm", "-noprogress", "-q",
]


def jungfrau_geometry(chip: int = 256, chip_gap: int = 2, module_gaps: tuple[int, int] = (8, 36),
                      pixel: float = 75e-6, clen: float = 0.12, photon_energy: float = 9500.0) -> CrystfelGeometry:
    """The geometry file's model of the layout (sizes in pixels, ``pixel`` and ``clen`` in metres)."""
    geom = CrystfelGeometry()
    geom.globals.update({
        "photon_energy": photon_energy, "adu_per_photon": 1.0, "clen": clen, "res": 1.0 / pixel,
        "mask_edge_pixels": 1, "dim0": "ss", "dim1": "fs",
    })
    width, height = 4 * chip + 3 * chip_gap, 2 * chip + chip_gap  # one module, in pixels
    defaults = {"clen": clen, "res": 1.0 / pixel, "adu_per_photon": 1.0, "mask_edge_pixels": 1}
    for m in range(8):
        row, col = divmod(m, 2)
        centre = ((col - 0.5) * (width + module_gaps[0]), (1.5 - row) * (height + module_gaps[1]))
        flip = -1.0 if row < 2 else 1.0  # top modules: fs = -x, ss = -y
        fs, ss = (flip, 0.0, 0.0), (0.0, flip, 0.0)
        corner = (centre[0] - flip * width / 2, centre[1] - flip * height / 2)  # the module's first pixel
        members = []
        for r in range(2):
            for c in range(4):
                name = f"m{m}a{4 * r + c}"
                members.append(name)
                off_f, off_s = c * (chip + chip_gap), r * (chip + chip_gap)
                geom.panels.append(CrystfelPanel(name, {
                    **defaults,
                    "min_fs": c * chip, "max_fs": (c + 1) * chip - 1,
                    "min_ss": m * 2 * chip + r * chip, "max_ss": m * 2 * chip + (r + 1) * chip - 1,
                    "fs": fs, "ss": ss,
                    "corner_x": corner[0] + flip * off_f, "corner_y": corner[1] + flip * off_s,
                }, {0: "ss", 1: "fs"}))
        geom.groups[f"group_m{m}"] = tuple(members)
    geom.groups["group_all"] = tuple(f"m{m}" for m in range(8))
    # the beamstop's shadow: a disc around the beam is approximated by a square and its arm
    stop = chip / 8
    geom.bad_regions.append(BadRegion("badstop", {"min_x": -stop, "max_x": stop, "min_y": -stop, "max_y": stop}))
    geom.bad_regions.append(BadRegion("badarm", {"min_x": -stop / 4, "max_x": stop / 4, "min_y": -8 * stop,
                                                 "max_y": -stop}))
    return geom


def picture(image: np.ndarray, geom_path: str | os.PathLike[str], png: str | os.PathLike[str],
            title: str = "", dpi: int = 100) -> None:
    """The data array shown with every panel in place: each pixel at its centre's x, y in the
    plane of the detector (CrystFEL's lab frame, seen as CrystFEL's GUI shows it: +x to the right,
    +y up), a log brightness scale and the panels outlined."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Polygon

    geom = read_geometry(geom_path)
    panels = lab_panels(geom)
    res = 1.0 / panels[0].pixel_size
    xy = []  # each panel's pixel centres in CrystFEL's x, y (pixels): x = -Z, y = Y of pybragg's frame
    for p in panels:
        f = (np.arange(p.fpixels) + 0.5) * p.pixel_size
        s = (np.arange(p.spixels) + 0.5) * p.pixel_size
        x = -(p.origin[2] + np.add.outer(s * p.sdet[2], f * p.fdet[2])) * res
        y = (p.origin[1] + np.add.outer(s * p.sdet[1], f * p.fdet[1])) * res
        xy.append((x, y))
    x0 = int(np.floor(min(x.min() for x, _ in xy)))
    y1 = int(np.ceil(max(y.max() for _, y in xy)))
    width = int(np.ceil(max(x.max() for x, _ in xy))) - x0 + 1
    height = y1 - int(np.floor(min(y.min() for _, y in xy))) + 1
    canvas = np.full((height, width), np.nan)
    for p, (x, y) in zip(panels, xy):
        block = image[p.data_slow:p.data_slow + p.spixels, p.data_fast:p.data_fast + p.fpixels]
        canvas[np.floor(y1 - y).astype(int), np.floor(x - x0).astype(int)] = block
    # shrink to about 900 pixels across by the brightest of each block, so that one-pixel spots stay
    k = max(1, int(np.ceil(width / 900)))
    h, w = -(-height // k) * k, -(-width // k) * k
    padded = np.full((h, w), np.nan)
    padded[:height, :width] = canvas
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # blocks wholly in a gap
        small = np.nanmax(padded.reshape(h // k, k, w // k, k), axis=(1, 3))
    shown = np.log10(1.0 + small / max(float(np.nanpercentile(small, 50)), 1e-30))
    height, width = h, w
    fig, ax = plt.subplots(figsize=(7.6, 7.6 * height / width + 0.6))
    cmap = matplotlib.colormaps["gray_r"].with_extremes(bad="#f4e9d8")  # the gaps between panels
    ax.imshow(shown, cmap=cmap, vmin=0.0, vmax=float(np.nanpercentile(shown, 99.9)) or 1.0,
              extent=(x0, x0 + width, y1 - height, y1), interpolation="nearest")
    for p in panels:
        corners = []
        for f, s in ((0, 0), (p.fpixels, 0), (p.fpixels, p.spixels), (0, p.spixels)):
            pos = np.asarray(p.origin) + f * p.pixel_size * np.asarray(p.fdet) + s * p.pixel_size * np.asarray(p.sdet)
            corners.append((-pos[2] * res, pos[1] * res))
        ax.add_patch(Polygon(corners, closed=True, fill=False, edgecolor="#c0392b", linewidth=0.4))
    for m in range(8):
        module = [p for p in panels if p.name.startswith(f"m{m}a")]
        if module:
            first = module[0]
            cx = np.mean([-(q.origin[2] + 0.5 * q.fpixels * q.pixel_size * q.fdet[2]) * res for q in module])
            cy = np.mean([(q.origin[1] + 0.5 * q.spixels * q.pixel_size * q.sdet[1]) * res for q in module])
            ax.text(cx, cy, f"m{m}" + (" (fs = -x)" if first.fdet[2] > 0 else " (fs = +x)"), color="#c0392b",
                    ha="center", va="center", fontsize=7,
                    bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.7, "pad": 1.0})
    ax.set_xlabel("x (pixels, CrystFEL's lab frame)")
    ax.set_ylabel("y (pixels, to the zenith)")
    ax.set_title(title or f"{len(panels)} panels from {Path(geom_path).name}", fontsize=9)
    fig.tight_layout()
    fig.savefig(png, dpi=dpi)
    plt.close(fig)
    try:  # a palette of 96 colours: a quarter of the bytes, the same picture to the eye
        from PIL import Image

        with Image.open(png) as im:
            im.convert("RGB").quantize(colors=96).save(png, optimize=True)
    except ImportError:
        pass


def render(geom_path: str | os.PathLike[str], floatfile: str | os.PathLike[str], extra: list[str] | None = None,
           backend: str = "c") -> np.ndarray:
    """Render the still on the geometry with pybragg's command line; the float image (data array)."""
    from pybragg.cli.main import main

    code = main(["-geom", str(geom_path), *FLAGS, *(extra or []), "--backend", backend, "-floatfile", str(floatfile),
                 "-intfile", os.devnull])
    if code != 0:
        raise SystemExit(code)
    shape = tuple(int(n) for n in _shape(geom_path))
    return np.fromfile(floatfile, dtype="<f4").reshape(shape)


def _shape(geom_path) -> tuple[int, int]:
    panels = lab_panels(read_geometry(geom_path))
    return max(p.data_slow + p.spixels for p in panels), max(p.data_fast + p.fpixels for p in panels)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chip", type=int, default=256, help="pixels along a chip's edge (256 on the detector)")
    parser.add_argument("--outdir", default=str(HERE), help="where the .geom and .png go")
    parser.add_argument("--backend", default="c")
    args = parser.parse_args(argv)
    out = Path(args.outdir)
    geom_path, png = out / "jungfrau4m.geom", out / "jungfrau4m.png"
    write_geometry(geom_path, jungfrau_geometry(chip=args.chip),
                   comment="Jungfrau-4M-like: 8 modules of 2 x 4 chips of 256 x 256 pixels of 75 um, one panel per chip\n"
                           "written by docs/examples/jungfrau4m.py")
    with tempfile.TemporaryDirectory() as scratch:  # the 16 MB float image is not kept
        image = render(geom_path, Path(scratch) / "jungfrau4m.bin", backend=args.backend)
    picture(image, geom_path, png, title=f"pybragg -geom {geom_path.name}: a still on 64 panels (8 modules)")
    print(f"wrote {geom_path} and {png} (data array {image.shape[0]} x {image.shape[1]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
