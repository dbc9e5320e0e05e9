"""PNG previews of an image (needs Pillow): linear, square-root or logarithmic scale and a colour map.

``grey`` (bright spots on black), ``inverse`` (dark spots on white, as most image viewers of
diffraction show them) and ``heat`` (black, red, yellow, white) are built in; with matplotlib
installed any of its colour maps can be named too.  The PGM stays as the reference writes it; this
is a separate, viewer-friendly picture.
"""

from __future__ import annotations

import os

import numpy as np

SCALES = ("linear", "sqrt", "log")
BUILTIN_CMAPS = ("grey", "inverse", "heat")


def _heat(t: np.ndarray) -> np.ndarray:
    r = np.clip(3.0 * t, 0.0, 1.0)
    g = np.clip(3.0 * t - 1.0, 0.0, 1.0)
    b = np.clip(3.0 * t - 2.0, 0.0, 1.0)
    return np.stack([r, g, b], axis=-1)


def known_cmap(name: str) -> bool:
    """True when ``name`` is a built-in colour map or one of matplotlib's (when installed)."""
    if name in BUILTIN_CMAPS:
        return True
    try:
        import matplotlib

        matplotlib.colormaps[name]
    except (ImportError, KeyError):
        return False
    return True


def scaled(image: np.ndarray, scale: str = "log", vmax: float | None = None) -> tuple[np.ndarray, float]:
    """Values in [0, 1] and the value shown at full brightness (default: the brightest pixel)."""
    value = np.nan_to_num(np.asarray(image, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    value = np.maximum(value, 0.0)
    top = float(value.max()) if vmax is None else float(vmax)
    if not top > 0:
        return np.zeros(value.shape), top
    if scale == "linear":
        t = value / top
    elif scale == "sqrt":
        t = np.sqrt(value / top)
    elif scale == "log":
        t = np.log1p(value) / np.log1p(top) if top > 0 else np.zeros(value.shape)
    else:
        raise ValueError(f"unknown scale {scale!r} (choose from {', '.join(SCALES)})")
    return np.clip(t, 0.0, 1.0), top


def png_pixels(image: np.ndarray, scale: str = "log", cmap: str = "inverse", vmax: float | None = None) -> np.ndarray:
    """8-bit pixels of the preview: (slow, fast) for grey maps, (slow, fast, 3) for colour maps."""
    t, _ = scaled(image, scale, vmax)
    if cmap == "grey":
        return np.round(255.0 * t).astype(np.uint8)
    if cmap == "inverse":
        return np.round(255.0 * (1.0 - t)).astype(np.uint8)
    if cmap == "heat":
        rgb = _heat(t)
    else:
        import matplotlib

        rgb = matplotlib.colormaps[cmap](t)[..., :3]
    return np.round(255.0 * rgb).astype(np.uint8)


def write_png(path: str | os.PathLike[str], pixels: np.ndarray, text: dict[str, str] | None = None) -> None:
    """Write 8-bit grey (2-D) or RGB (3-D) pixels as a PNG, with optional text chunks."""
    from PIL import Image, PngImagePlugin

    info = PngImagePlugin.PngInfo()
    for key, value in (text or {}).items():
        info.add_text(key, value)
    Image.fromarray(np.ascontiguousarray(pixels)).save(path, format="PNG", pnginfo=info)
