"""Pixel-by-pixel comparison of two renders of one configuration.

>>> from pybragg.compare import compare_images
>>> import numpy as np
>>> c = compare_images(np.ones((2, 2)), np.ones((2, 2)))
>>> c.max_abs_diff
0.0
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from pybragg.config import Config
from pybragg.inputs import Inputs


@dataclass
class Comparison:
    """How two images of the same detector differ.

    ``correlation`` is Pearson's coefficient; NaN when one image is constant and
    the other differs from it (1 when both are identical).

    ``max_rel_diff`` is the largest ``|a - b| / max(|a|, |b|)`` over pixels whose
    larger magnitude exceeds ``1e-6`` of the brighter image's maximum (fainter
    pixels carry no meaningful relative difference).  Pixels are (slow, fast).
    """

    label_a: str
    label_b: str
    shape: tuple[int, int]
    correlation: float
    rmse: float
    max_abs_diff: float
    max_abs_pixel: tuple[int, int]
    max_rel_diff: float
    max_rel_pixel: tuple[int, int]
    sum_a: float
    sum_b: float
    max_a: float
    max_b: float
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def sum_ratio(self) -> float:
        """sum(b) / sum(a) (NaN when a sums to zero)."""
        return self.sum_b / self.sum_a if self.sum_a != 0 else math.nan

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form (what ``pybragg compare`` writes to summary.json)."""
        out = asdict(self)
        out["sum_ratio"] = self.sum_ratio
        out["shape"] = list(self.shape)
        out["max_abs_pixel"] = list(self.max_abs_pixel)
        out["max_rel_pixel"] = list(self.max_rel_pixel)
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in out.items()}

    def report(self) -> str:
        """A few lines for a terminal."""
        return "\n".join([
            f"{self.label_a} vs {self.label_b}: {self.shape[1]}x{self.shape[0]} pixels",
            f"  correlation        {self.correlation:.9f}",
            f"  RMSE               {self.rmse:.6g}",
            f"  max |difference|   {self.max_abs_diff:.6g} at pixel (slow, fast) {self.max_abs_pixel}",
            f"  max relative diff  {self.max_rel_diff:.6g} at pixel (slow, fast) {self.max_rel_pixel}",
            f"  sums               {self.sum_a:.9g} / {self.sum_b:.9g} (ratio {self.sum_ratio:.9f})",
            f"  maxima             {self.max_a:.6g} / {self.max_b:.6g}",
        ])


def compare_images(a: np.ndarray, b: np.ndarray, label_a: str = "a", label_b: str = "b") -> Comparison:
    """Compare two float images of identical shape."""
    a64 = np.asarray(a, dtype=np.float64)
    b64 = np.asarray(b, dtype=np.float64)
    if a64.shape != b64.shape:
        raise ValueError(f"images differ in shape: {a64.shape} vs {b64.shape}")
    if a64.ndim != 2:
        raise ValueError("images must be 2-D (slow, fast)")
    diff = np.abs(a64 - b64)
    i_abs = np.unravel_index(int(np.argmax(diff)), diff.shape)
    big = np.maximum(np.abs(a64), np.abs(b64))
    floor = 1e-6 * float(big.max()) if big.size else 0.0
    rel = np.where(big > floor, diff / np.where(big > 0, big, 1.0), 0.0)
    i_rel = np.unravel_index(int(np.argmax(rel)), rel.shape)
    if a64.std() > 0 and b64.std() > 0:
        corr = float(np.corrcoef(a64.ravel(), b64.ravel())[0, 1])
    else:
        # a constant image has no correlation with anything but an identical one
        corr = 1.0 if np.array_equal(a64, b64) else math.nan
    return Comparison(
        label_a=label_a,
        label_b=label_b,
        shape=(int(a64.shape[0]), int(a64.shape[1])),
        correlation=corr,
        rmse=float(np.sqrt(np.mean(diff**2))),
        max_abs_diff=float(diff[i_abs]),
        max_abs_pixel=(int(i_abs[0]), int(i_abs[1])),
        max_rel_diff=float(rel[i_rel]),
        max_rel_pixel=(int(i_rel[0]), int(i_rel[1])),
        sum_a=float(a64.sum()),
        sum_b=float(b64.sum()),
        max_a=float(a64.max()),
        max_b=float(b64.max()),
    )


def compare(
    config: Config,
    inputs: Inputs | None = None,
    *,
    engines: tuple[str, str] = ("c", "torch"),
    dtype: str = "float64",
    device: str | None = None,
    threads: int = 0,
    roi: tuple[int, int, int, int] | None = None,
) -> Comparison:
    """Render ``config`` with two engines in this process and compare the images.

    ``roi`` (xmin, xmax, ymin, ymax, inclusive) restricts the comparison to part of
    the detector.  The rendered results are in ``comparison.extras["results"]``.
    """
    from pybragg.simulator import Simulator

    results = []
    for name in engines:
        sim = Simulator(config, inputs, backend=name, dtype=dtype, device=device, threads=threads)
        results.append(sim.run())
    a, b = (r.image for r in results)
    if roi is not None:
        xmin, xmax, ymin, ymax = roi
        a, b = a[ymin:ymax + 1, xmin:xmax + 1], b[ymin:ymax + 1, xmin:xmax + 1]
    labels = [f"{r.backend} ({r.dtype})" for r in results]
    out = compare_images(a, b, *labels)
    out.extras["results"] = results
    return out
