"""What a detector of many panels costs against the same pixels on one panel.

    python benchmarks/bench_panels.py            # C engine and torch (CPU, float64 and float32)
    python benchmarks/bench_panels.py --quick    # smaller detectors, for a smoke test
    python benchmarks/bench_panels.py --device cuda

Two comparisons, each rendered in turn in one process (best of ``--repeat``):

* **tiled**: one flat 1024 x 1024 panel against the same plane cut into 8 x 8 panels of 128 x 128
  (explicit ``DetectorConfig.panels``, each where its pixels were): the same pixels, the same
  image (the largest difference is printed), so the ratio is the whole cost of the panels;
* **jungfrau**: the 64 chips of ``docs/examples/jungfrau4m.geom`` (4096 x 1024 pixels read from
  ``-geom``, gaps between them) against one flat panel of as many pixels (2048 x 2048, same pixel
  size and distance).

Prints each render time and the ratio panels / one panel.  Nothing here asserts a speed.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CRYSTAL = ["-cell", "79.1", "79.1", "37.9", "90", "90", "90", "-misset", "20", "31", "47", "-default_F", "100",
           "-N", "10", "-oversample", "1", "-lambda", "1.3"]


def simulator(args: list[str], backend: str, dtype: str, device: str | None, threads: int):
    import pybragg

    return pybragg.from_args([*args, "--backend", backend, "--dtype", dtype, "--threads", str(threads)],
                             **({"device": device} if device else {}))


def tiled(sim, tile: int):
    """The single panel of ``sim`` cut into tiles of ``tile`` x ``tile`` pixels, as explicit panels."""
    from pybragg.config import PanelConfig
    from pybragg.plan import Plan

    g = Plan(sim.config, sim.inputs).panels[0]
    pix0, f, s = (np.asarray(v, dtype=np.float64) for v in (g.pix0, g.fdet, g.sdet))
    panels = []
    for i in range(g.spixels // tile):
        for j in range(g.fpixels // tile):
            origin = pix0 + (j * tile * g.pixel_size) * f + (i * tile * g.pixel_size) * s
            panels.append(PanelConfig(name=f"t{i}_{j}", fpixels=tile, spixels=tile, pixel_size=g.pixel_size,
                                      origin=tuple(float(x) for x in origin), fdet=g.fdet, sdet=g.sdet,
                                      data_fast=j * tile, data_slow=i * tile))
    cfg = sim.config.copy()
    cfg.detector.panels = tuple(panels)
    return cfg


def best(run, repeat: int) -> tuple[float, np.ndarray]:
    times, image = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        image = run()
        times.append(time.perf_counter() - t)
    return min(times), image  # type: ignore[return-value]


def compare(label: str, one, many, repeat: int) -> None:
    """Render both in turn ``repeat`` times; print the best times, their ratio, the image difference."""
    one(), many()  # warm-up (library load, torch kernels)
    t_one = t_many = float("inf")
    img_one = img_many = None
    for _ in range(repeat):
        t, img_one = best(one, 1)
        t_one = min(t_one, t)
        t, img_many = best(many, 1)
        t_many = min(t_many, t)
    line = f"  {label:<34} one panel {t_one:7.3f} s   panels {t_many:7.3f} s   ratio {t_many / t_one:6.3f}"
    if img_one is not None and img_many is not None and img_one.shape == img_many.shape:
        peak = float(np.abs(img_one).max()) or 1.0
        line += f"   max |difference| / max {float(np.abs(img_many - img_one).max()) / peak:.2g}"
    print(line, flush=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="256 x 256 tiled case, jungfrau chips cut to 64 pixels")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "0") or 0))
    p.add_argument("--device", default=None, help="torch device (default: the CPU)")
    p.add_argument("--engines", default="c,torch")
    o = p.parse_args(argv)
    from pybragg.engines import ENGINES

    side, tile = (256, 32) if o.quick else (1024, 128)
    flat = [*CRYSTAL, "-distance", "100", "-detpixels", str(side), "-pixel", "0.1"]
    geom = ROOT / "docs" / "examples" / "jungfrau4m.geom"
    if o.quick:
        sys.path.insert(0, str(ROOT / "docs" / "examples"))
        import tempfile

        from jungfrau4m import jungfrau_geometry

        from pybragg.io.crystfel import write_geometry

        geom = Path(tempfile.mkdtemp()) / "small.geom"
        write_geometry(geom, jungfrau_geometry(chip=64))
    from pybragg.io.crystfel import lab_panels, read_geometry

    chips = lab_panels(read_geometry(geom))
    n_pixels = sum(c.fpixels * c.spixels for c in chips)
    square = round(n_pixels ** 0.5)
    jf = [*CRYSTAL, "-geom", str(geom)]
    # one flat panel of as many pixels, same pixel size, at clen
    jf_one = [*CRYSTAL, "-distance", "120", "-detpixels", str(square), "-pixel", f"{chips[0].pixel_size * 1e3:.17g}"]

    runs = [("c", "float64")]
    if "torch" in o.engines and ENGINES["torch"].available():
        runs += [("torch", "float64"), ("torch", "float32")]
    runs = [r for r in runs if r[0] in o.engines.split(",")]
    print(f"panels vs one panel: best of {o.repeat}, threads {o.threads or 'all'}")
    for backend, dtype in runs:
        device = o.device if backend == "torch" else None
        print(f"{backend} engine ({dtype}{', ' + device if device else ''}):")
        one = simulator(flat, backend, dtype, device, o.threads)
        many = simulator(flat, backend, dtype, device, o.threads)
        many.config = tiled(one, tile)
        n_tiles = (side // tile) ** 2
        compare(f"tiled {side}x{side}: {n_tiles} panels", lambda s=one: s.run().image,
                lambda s=many: s.run().image, o.repeat)
        a, b = simulator(jf_one, backend, dtype, device, o.threads), simulator(jf, backend, dtype, device, o.threads)
        compare(f"jungfrau: {len(chips)} chips, {n_pixels} px", lambda s=a: s.run().image,
                lambda s=b: s.run().image, o.repeat)
    return 0


if __name__ == "__main__":
    sys.exit(main())
