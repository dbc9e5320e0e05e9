"""Per-shot random draws of a stills dataset, and the orientation matrix built from its truth.

Everything random about shot ``i`` of a dataset with seed ``S`` comes from one numpy
:class:`~numpy.random.Generator` seeded by ``SeedSequence(S, spawn_key=(i,))``, drawn in a fixed
order whatever options are on (orientation, noise seed, wavelength, fluence, crystal size, then the
spectrum): the same ``(S, i)`` gives the same shot on any machine, in any order, on any number of
workers, and turning one variation on does not change the draws of the others.  (numpy keeps the
PCG64 stream and these samplers stable within a release series; the dataset records its numpy
version.)

The orientation is a uniformly random rotation (Haar measure on SO(3)): the rotation of a uniformly
random unit quaternion (four independent normal deviates, normalised).

The matrix given to the engine is built from the truth by :func:`mosflm_matrix` in plain IEEE
double arithmetic (cross products, no LAPACK), so that a ``-mat`` file written from the stored
truth (:func:`format_matrix`, 17 significant digits, read back exactly) reproduces the shot bit
for bit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

Vec3 = tuple[float, float, float]
Matrix3 = tuple[Vec3, Vec3, Vec3]

#: FWHM of a Gaussian in units of its standard deviation
FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))


@dataclass(frozen=True)
class Variations:
    """What varies from shot to shot of a stills dataset (all drawn from ``(S, i)``).

    ``wavelength_jitter``: relative rms of the central wavelength (Gaussian);
    ``fluence_jitter``: relative rms of the fluence (Gaussian, clipped at 0);
    ``size_range_um``: edge of a cubic crystal (``-xtal_size``) uniform in this range (µm);
    ``sase``: (relative FWHM bandwidth, number of modes): a spiky SASE-like spectrum per shot;
    ``spectrum``: a pink-beam spectrum, (wavelength in Å, weight) rows, the same for every shot
    (scaled with the wavelength jitter);
    ``spectrum_samples``: sources (equal weights) the spectrum is sampled into.
    """

    wavelength_jitter: float = 0.0
    fluence_jitter: float = 0.0
    size_range_um: tuple[float, float] | None = None
    sase: tuple[float, int] | None = None
    spectrum: tuple[tuple[float, float], ...] | None = None
    spectrum_samples: int = 0

    def __post_init__(self) -> None:
        from pybragg.errors import UsageError

        for name in ("wavelength_jitter", "fluence_jitter"):
            value = getattr(self, name)
            if not (math.isfinite(value) and 0.0 <= value < 1.0):
                raise UsageError(f"--{name.replace('_', '-')}: a relative rms between 0 and 1, got {value!r}")
        if self.size_range_um is not None:
            lo, hi = self.size_range_um
            if not (math.isfinite(lo) and math.isfinite(hi) and 0.0 < lo <= hi):
                raise UsageError(f"--size-range: 0 < MIN <= MAX (µm), got {lo!r} {hi!r}")
        if self.sase is not None:
            bandwidth, modes = self.sase
            if not (math.isfinite(bandwidth) and 0.0 < bandwidth < 1.0):
                raise UsageError(f"--sase: a relative bandwidth between 0 and 1, got {bandwidth!r}")
            if not (isinstance(modes, int) and modes >= 1):
                raise UsageError(f"--sase: at least one mode, got {modes!r}")
        if self.sase is not None and self.spectrum is not None:
            raise UsageError("--sase and --spectrum: give one spectrum, not both")
        if self.spectrum is not None:
            weights = [w for _, w in self.spectrum]
            if not self.spectrum or any(not (lam > 0.0 and math.isfinite(lam)) for lam, _ in self.spectrum):
                raise UsageError("--spectrum: every wavelength must be positive")
            if any(not (w >= 0.0 and math.isfinite(w)) for w in weights) or not sum(weights) > 0.0:
                raise UsageError("--spectrum: weights must be non-negative and not all zero")
        if self.spectrum_samples < 0:
            raise UsageError("--spectrum-samples: a positive number of sources")

    @property
    def has_spectrum(self) -> bool:
        return self.sase is not None or self.spectrum is not None

    def samples(self) -> int:
        """Sources a spectrum is sampled into (default: 4 per SASE mode, 16 for a file)."""
        if self.spectrum_samples:
            return self.spectrum_samples
        if self.sase is not None:
            return 4 * self.sase[1]
        return 16

    def as_dict(self) -> dict[str, object]:
        return {
            "wavelength_jitter": self.wavelength_jitter,
            "fluence_jitter": self.fluence_jitter,
            "size_range_um": list(self.size_range_um) if self.size_range_um else None,
            "sase": list(self.sase) if self.sase else None,
            "spectrum": [list(row) for row in self.spectrum] if self.spectrum else None,
            "spectrum_samples": self.samples() if self.has_spectrum else 0,
        }

    @classmethod
    def from_dict(cls, d: dict[str, object]) -> Variations:
        size = d.get("size_range_um")
        sase = d.get("sase")
        spectrum = d.get("spectrum")
        return cls(
            wavelength_jitter=float(d.get("wavelength_jitter") or 0.0),  # type: ignore[arg-type]
            fluence_jitter=float(d.get("fluence_jitter") or 0.0),  # type: ignore[arg-type]
            size_range_um=(float(size[0]), float(size[1])) if size else None,  # type: ignore[index]
            sase=(float(sase[0]), int(sase[1])) if sase else None,  # type: ignore[index]
            spectrum=tuple((float(a), float(b)) for a, b in spectrum) if spectrum else None,  # type: ignore[union-attr]
            spectrum_samples=int(d.get("spectrum_samples") or 0),  # type: ignore[arg-type]
        )


@dataclass(frozen=True)
class ShotDraws:
    """The random part of one shot, in the units its truth is stored in."""

    index: int
    quaternion: tuple[float, float, float, float]
    rotation: Matrix3
    seed: int
    #: multiplier of the central wavelength and of the fluence (1 without jitter)
    wavelength_factor: float
    fluence_factor: float
    #: cubic crystal edge (µm), or None
    size_um: float | None
    #: source wavelengths (Å) of the shot's spectrum, or None
    spectrum: tuple[float, ...] | None = field(default=None)


def shot_generator(seed: int, index: int) -> np.random.Generator:
    """The generator of shot ``index`` of a dataset seeded ``seed``."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(int(seed), spawn_key=(int(index),))))


def quaternion_rotation(q: tuple[float, float, float, float]) -> Matrix3:
    """The rotation matrix of a unit quaternion (w, x, y, z)."""
    w, x, y, z = q
    return (
        (1.0 - 2.0 * (y * y + z * z), 2.0 * (x * y - z * w), 2.0 * (x * z + y * w)),
        (2.0 * (x * y + z * w), 1.0 - 2.0 * (x * x + z * z), 2.0 * (y * z - x * w)),
        (2.0 * (x * z - y * w), 2.0 * (y * z + x * w), 1.0 - 2.0 * (x * x + y * y)),
    )


def draw_shot(seed: int, index: int, variations: Variations, wavelength_A: float) -> ShotDraws:
    """Every random number of shot ``index``, always drawn in the same order."""
    rng = shot_generator(seed, index)
    q = rng.standard_normal(4)
    while not float(q @ q) > 1e-12:  # (never in practice) a direction needs a length
        q = rng.standard_normal(4)
    q = q / math.sqrt(float(q @ q))
    if q[0] < 0.0:  # q and -q are one rotation: keep w >= 0
        q = -q
    quat = (float(q[0]), float(q[1]), float(q[2]), float(q[3]))
    noise_seed = int(rng.integers(1, 2**31 - 1))
    z_wavelength = float(rng.standard_normal())
    z_fluence = float(rng.standard_normal())
    u_size = float(rng.random())
    lam_factor = 1.0
    if variations.wavelength_jitter > 0.0:
        lam_factor = max(1.0 + variations.wavelength_jitter * z_wavelength, 1e-3)
    flu_factor = 1.0
    if variations.fluence_jitter > 0.0:
        flu_factor = max(1.0 + variations.fluence_jitter * z_fluence, 0.0)
    size = None
    if variations.size_range_um is not None:
        lo, hi = variations.size_range_um
        size = lo + (hi - lo) * u_size
    spectrum = None
    centre = wavelength_A * lam_factor
    if variations.sase is not None:
        spectrum = _sase_spectrum(rng, centre, variations.sase[0], variations.sase[1], variations.samples())
    elif variations.spectrum is not None:
        spectrum = tuple(lam * lam_factor for lam in pink_samples(variations.spectrum, variations.samples()))
    return ShotDraws(index, quat, quaternion_rotation(quat), noise_seed, lam_factor, flu_factor, size, spectrum)


def _sase_spectrum(rng: np.random.Generator, centre_A: float, bandwidth: float, modes: int,
                   samples: int) -> tuple[float, ...]:
    """A spiky SASE-like spectrum as ``samples`` equal-weight wavelengths (Å), sorted.

    ``modes`` spikes centred at Gaussian positions (FWHM ``bandwidth`` relative to the centre),
    exponentially distributed intensities (chaotic light), each of relative rms width
    ``bandwidth / modes / 2.355``; the engine gives every source the same weight, so a spike's
    intensity is carried by the number of samples drawn from it.
    """
    sigma = bandwidth / FWHM_PER_SIGMA
    centres = centre_A * (1.0 + sigma * rng.standard_normal(modes))
    intensity = rng.exponential(1.0, modes)
    total = float(intensity.sum())
    p = intensity / total if total > 0.0 else np.full(modes, 1.0 / modes)
    which = rng.choice(modes, size=samples, p=p)
    spread = rng.standard_normal(samples)
    lam = centres[which] * (1.0 + (sigma / modes) * spread)
    lam = np.maximum(lam, centre_A * 1e-3)
    return tuple(float(x) for x in np.sort(lam))


def pink_samples(spectrum: tuple[tuple[float, float], ...], samples: int) -> tuple[float, ...]:
    """``samples`` equal-weight wavelengths (Å) at the quantiles (k + 1/2)/n of a tabulated spectrum.

    The rows (wavelength, weight) are taken as a piecewise-linear density between the sorted
    wavelengths (a single row is a line).  No randomness: every shot gets the same samples.
    """
    rows = sorted(spectrum)
    lam = np.array([r[0] for r in rows], dtype=np.float64)
    w = np.array([r[1] for r in rows], dtype=np.float64)
    if len(rows) == 1:
        return (float(lam[0]),) * samples
    # cumulative area of the trapezoids
    area = np.concatenate([[0.0], np.cumsum(0.5 * (w[1:] + w[:-1]) * np.diff(lam))])
    if not area[-1] > 0.0:
        raise ValueError("spectrum has no area")
    q = (np.arange(samples) + 0.5) / samples * area[-1]
    return tuple(float(x) for x in np.interp(q, area, lam))


def read_spectrum(path: str) -> tuple[tuple[float, float], ...]:
    """A pink-beam spectrum file: lines ``wavelength(Å) weight`` (# comments, blank lines skipped)."""
    from pybragg.io.errors import FormatError, describe_path, read_text

    name = describe_path(path)
    rows: list[tuple[float, float]] = []
    for lineno, line in enumerate(read_text(path).splitlines(), start=1):
        text = line.split("#", 1)[0].replace(",", " ").split()
        if not text:
            continue
        if len(text) < 2:
            raise FormatError(f"{name}: line {lineno}: expected a wavelength (Å) and a weight")
        try:
            lam, weight = float(text[0]), float(text[1])
        except ValueError:
            raise FormatError(f"{name}: line {lineno}: not a number") from None
        if not (math.isfinite(lam) and lam > 0.0 and math.isfinite(weight) and weight >= 0.0):
            raise FormatError(f"{name}: line {lineno}: need a positive wavelength and a non-negative weight")
        rows.append((lam, weight))
    if not rows:
        raise FormatError(f"{name}: no spectrum lines found")
    if not sum(w for _, w in rows) > 0.0:
        raise FormatError(f"{name}: every weight is zero")
    return tuple(rows)


# --------------------------------------------------------------------------- orientation


def _cross(a: Vec3, b: Vec3) -> Vec3:
    return (a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0])


def _dot(a: Vec3, b: Vec3) -> float:
    return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]


def rotate(rotation: Matrix3, v: Vec3) -> Vec3:
    """``rotation @ v`` in plain double arithmetic."""
    return (_dot(rotation[0], v), _dot(rotation[1], v), _dot(rotation[2], v))


def rotated_axes(rotation: Matrix3, axes: Matrix3) -> Matrix3:
    """Each row of ``axes`` (a, b, c) turned by ``rotation``."""
    return (rotate(rotation, axes[0]), rotate(rotation, axes[1]), rotate(rotation, axes[2]))


def mosflm_matrix(real_space_A: Matrix3, wavelength_A: float) -> Matrix3:
    """The MOSFLM matrix (rows x, y, z; columns a*, b*, c* times the wavelength) of real axes in Å.

    ``a* = (b x c) / V`` etc. with ``V = a . (b x c)``, in plain double arithmetic: the same
    numbers on every machine.
    """
    a, b, c = (tuple(float(x) for x in row) for row in real_space_A)
    bxc, cxa, axb = _cross(b, c), _cross(c, a), _cross(a, b)  # type: ignore[arg-type]
    volume = _dot(a, bxc)  # type: ignore[arg-type]
    if not (volume != 0.0 and math.isfinite(volume)):
        raise ValueError("real-space axes span no volume")
    lam = float(wavelength_A)
    recip = [tuple(x / volume for x in v) for v in (bxc, cxa, axb)]
    return tuple(tuple(recip[j][r] * lam for j in range(3)) for r in range(3))  # type: ignore[return-value]


def format_matrix(matrix: Matrix3) -> str:
    """The text of a MOSFLM ``-mat`` file holding ``matrix`` exactly (every float round-trips)."""
    lines = [" ".join(repr(float(x)) for x in row) for row in matrix]
    return "\n".join(lines) + "\n"
