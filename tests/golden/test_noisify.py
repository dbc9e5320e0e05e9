"""The detector response (pybragg.response) and ``pybragg noisify`` against the reference noisify's
own output (../shared/golden-noisify), noise statistics against formulas, and bad input."""

from __future__ import annotations

import gzip
import io
import json
import os
from pathlib import Path

import numpy as np
import pytest

from golden import GOLDEN as NANOBRAGG_GOLDEN
from golden import run_cli
from pybragg.cli.noisify import main as noisify_main
from pybragg.errors import UsageError
from pybragg.response import ResponseConfig, apply, psf, respond

GOLDEN = NANOBRAGG_GOLDEN.parent / "golden-noisify"  # read in place; missing data is an error
MANIFEST = json.loads((GOLDEN / "manifest.json").read_text()) if (GOLDEN / "manifest.json").exists() else \
    {"cases": {}, "output_flags": []}
OUTPUTS = ["-intfile", "int.img", "-noisefile", "noise.img", "-pgmfile", "image.pgm"]
HEADER_KEYS = ("SIZE1", "SIZE2", "PIXEL_SIZE", "DISTANCE", "WAVELENGTH", "BEAM_CENTER_X", "BEAM_CENTER_Y")


def gunzip(path: Path) -> bytes:
    return gzip.decompress(path.read_bytes())


def smv(raw: bytes) -> tuple[dict[str, str], np.ndarray]:
    size = int(raw[raw.index(b"HEADER_BYTES=") + 13:].split(b";")[0])
    header = {}
    for line in raw[:size].split(b"}")[0].decode("latin-1").splitlines():
        if "=" in line:
            key, value = line.split("=", 1)
            header[key.strip()] = value.strip().rstrip(";")
    dtype = "<u4" if header.get("TYPE") == "long_integer" else "<u2"
    data = np.frombuffer(raw[size:], dtype=dtype)
    return header, data


def pgm(raw: bytes) -> np.ndarray:
    lines = raw.split(b"\n", 4)
    return np.frombuffer(lines[4], dtype=np.uint8)


def run_noisify(args: list[str], cwd: Path) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    here = os.getcwd()
    os.chdir(cwd)
    try:
        try:
            code = noisify_main("noisify", args, out, err)
        except UsageError as exc:
            err.write(f"pybragg: error: {exc}\n")
            code = 2
        except Exception as exc:  # FormatError and friends: exit 1 as the command does
            code = getattr(exc, "exit_code", None)
            if code is None:
                raise
            err.write(f"pybragg: error: {exc}\n")
    finally:
        os.chdir(here)
    return code, out.getvalue(), err.getvalue()


def _case_folder(tmp_path: Path) -> Path:
    (tmp_path / "inputs").symlink_to(GOLDEN / "inputs")
    return tmp_path


MEASURED: dict[str, tuple[float, int]] = {}


@pytest.mark.parametrize("case", sorted(MANIFEST["cases"]))
def test_golden_noisify(case: str, tmp_path: Path) -> None:
    spec = MANIFEST["cases"][case]
    cwd = _case_folder(tmp_path)
    code, _, err = run_noisify(spec["args"] + OUTPUTS + ["-seed", str(spec["seed"])], cwd)
    assert code == 0, err
    ref_dir = GOLDEN / case
    # noise image: identical in >= 99.9% of the pixels, within 1 count elsewhere
    ref_h, ref = smv(gunzip(ref_dir / "noise.img.gz"))
    our_h, ours = smv((cwd / "noise.img").read_bytes())
    assert ours.dtype == ref.dtype and ours.shape == ref.shape
    diff = np.abs(ours.astype(np.int64) - ref.astype(np.int64))
    same = float((diff == 0).mean())
    MEASURED[case] = (same, int(diff.max()))
    assert same >= 0.999 and diff.max() <= 1, (same, diff.max())
    # noiseless image: header values and pixels
    ref_h, ref = smv(gunzip(ref_dir / "int.img.gz"))
    our_h, ours = smv((cwd / "int.img").read_bytes())
    for key in HEADER_KEYS:
        assert float(our_h[key]) == pytest.approx(float(ref_h[key]), rel=1e-4), key
    diff = np.abs(ours.astype(np.int64) - ref.astype(np.int64))
    assert (diff > 0).mean() <= 0.001 and diff.max() <= 1
    # PGM
    ref_pgm = pgm(gunzip(ref_dir / "image.pgm.gz"))
    our_pgm = pgm((cwd / "image.pgm").read_bytes())
    assert our_pgm.shape == ref_pgm.shape
    diff = np.abs(our_pgm.astype(int) - ref_pgm.astype(int))
    assert (diff > 0).mean() <= 0.001 and diff.max() <= 1


def test_noisify_subcommand_runs(tmp_path: Path) -> None:
    """``pybragg noisify`` as a command (subprocess): the poisson_only case, byte for byte."""
    spec = MANIFEST["cases"]["poisson_only"]
    cwd = _case_folder(tmp_path)
    proc = run_cli(["noisify", *spec["args"], *OUTPUTS, "-seed", str(spec["seed"])], cwd)
    assert proc.returncode == 0, proc.stderr
    assert (cwd / "noise.img").read_bytes() == gunzip(GOLDEN / "poisson_only" / "noise.img.gz")


# ---------------------------------------------------------------- statistics against formulas


def test_default_response_is_the_noise_image() -> None:
    """At its defaults the response is nanoBragg's Poisson image (the C library's pb_noise)."""
    from pybragg._native import native

    ffi, lib = native()
    rng = np.random.default_rng(3)
    image = (rng.random((40, 50)) * 30).astype(np.float32)
    image[5, 5] = 2e6  # the Gaussian branch of the sampler
    image[7, 9] = 70000.0  # an overload
    roi = (3, 45, 2, 30)
    ours = apply(image, ResponseConfig(adc_offset=40.0), seed=17, roi=roi)
    ref = np.zeros(image.shape, dtype=np.uint16)
    err = ffi.new("pb_error *")
    code = lib.pb_noise(ffi.cast("const float *", image.ctypes.data), 50, 40, ffi.new("int[4]", list(roi)), 17,
                        40.0, ffi.cast("uint16_t *", ref.ctypes.data), ffi.NULL, ffi.NULL, err)
    assert code == 0
    assert np.array_equal(ours, ref)


def test_mean_and_variance_with_gain_and_readout() -> None:
    mean, gain, adc, readout = 50.0, 2.0, 100.0, 3.0
    image = np.full((200, 200), mean, dtype=np.float32)
    counts = apply(image, ResponseConfig(gain=gain, adc_offset=adc, readout_noise=readout, bits=32), seed=5)
    values = counts.astype(np.float64)
    n = values.size
    # mean: gain * photons + adc; variance: gain^2 * photons + readout^2 (+ 1/12 from the truncation)
    assert values.mean() == pytest.approx(gain * mean + adc - 0.5, abs=5 * np.sqrt(gain**2 * mean / n) + 0.02)
    expected_var = gain**2 * mean + readout**2 + 1 / 12
    assert values.var() == pytest.approx(expected_var, rel=0.03)


def test_flicker_and_calibration_add_relative_variance() -> None:
    mean, flicker, calib = 1000.0, 0.05, 0.04
    image = np.full((200, 200), mean, dtype=np.float32)
    counts = apply(image, ResponseConfig(flicker=flicker, calibration=calib, adc_offset=0.0), seed=8)
    values = counts.astype(np.float64)
    assert values.mean() == pytest.approx(mean - 0.5, rel=0.003)
    expected_var = mean + mean**2 * ((1 + flicker**2) * (1 + calib**2) - 1)
    assert values.var() == pytest.approx(expected_var, rel=0.04)


@pytest.mark.parametrize(("kind", "radius", "rel"), [("gauss", 0, 1e-4), ("fiber", 60, 1e-2)])
def test_psf_conserves_photons(kind: str, radius: int, rel: float) -> None:
    """Inside the image the PSF keeps the photons: the kernel's part plus those beyond its radius,
    spread back evenly (the fiber's long tail makes its estimate of those coarser)."""
    image = np.zeros((128, 128), dtype=np.float32)
    image[64, 60] = 1000.0
    image[60, 70] = 250.0
    blurred, lost, used = psf(image, kind, 2.0, radius)
    assert used > 0 and lost >= 0
    assert float(blurred.sum(dtype=np.float64)) == pytest.approx(1250.0, rel=rel)
    assert blurred[64, 60] < 1000.0 and blurred[64, 61] > 0


def test_psf_in_the_response_keeps_the_photon_sum() -> None:
    image = np.zeros((64, 64), dtype=np.float32)
    image[16:48, 16:48] = 20.0
    res = respond(image, ResponseConfig(psf="gauss", psf_fwhm=150e-6, pixel_size=1e-4, adc_offset=0), seed=4)
    assert res.stats.psf_applied
    assert res.stats.photons == pytest.approx(res.stats.photons_before_psf, rel=1e-4)


def test_calibration_stream_is_the_same_across_images() -> None:
    """With its own generator the calibration error is one map for every -seed; as in the reference
    (shared shuffle table) it changes with -seed; either way the same seeds give the same image."""
    image = np.full((100, 100), 1e5, dtype=np.float32)

    def calib_map(seed: int, own: bool) -> np.ndarray:
        cfg = ResponseConfig(calibration=0.1, calib_seed=77, independent_calibration=own, adc_offset=0, bits=32)
        return apply(image, cfg, seed=seed).astype(np.float64) / 1e5 - 1

    a, b = calib_map(1, True), calib_map(2, True)
    assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.99
    assert not np.array_equal(a, b)  # the photon noise differs
    ref_a, ref_b = calib_map(1, False), calib_map(2, False)
    assert np.corrcoef(ref_a.ravel(), ref_b.ravel())[0, 1] < 0.5
    assert np.array_equal(calib_map(1, False), ref_a)


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(("args", "needle"), [
    (["-psf", "lorentz"], "-psf"),
    (["-readout_noise", "-1"], "-readout_noise"),
    (["-flicker", "-0.1"], "-flicker"),
    (["-calibration", "-0.2"], "-calibration"),
    (["-bits", "8"], "-bits"),
    (["-psf_fwhm", "abc"], "-psf_fwhm"),
    (["-psf_radii", "3"], "-psf_radii"),
])
def test_bad_flags(args: list[str], needle: str, tmp_path: Path) -> None:
    np.zeros((8, 8), dtype=np.float32).tofile(tmp_path / "in.bin")
    code, _, err = run_noisify(["-floatfile", "in.bin", *args], tmp_path)
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and needle in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.bin"]


def test_float_file_of_the_wrong_size(tmp_path: Path) -> None:
    np.zeros(100, dtype=np.float32).tofile(tmp_path / "in.bin")
    code, _, err = run_noisify(["-floatfile", "in.bin", "-detpixels", "16"], tmp_path)
    assert code == 1 and "in.bin" in err and len(err.strip().splitlines()) == 1
    (tmp_path / "odd.bin").write_bytes(b"12345")
    code, _, err = run_noisify(["-floatfile", "odd.bin"], tmp_path)
    assert code == 1 and "odd.bin" in err
    code, _, err = run_noisify(["-floatfile", "missing.bin"], tmp_path)
    assert code == 1 and "missing.bin" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.bin", "odd.bin"]


def test_response_config_rejects_bad_values() -> None:
    with pytest.raises(UsageError, match="-psf"):
        ResponseConfig(psf="box")
    with pytest.raises(UsageError, match="-readout_noise"):
        ResponseConfig(readout_noise=-1.0)


def test_nonoise_blurs_the_noiseless_image(tmp_path: Path) -> None:
    image = np.zeros((32, 32), dtype=np.float32)
    image[16, 16] = 10000.0
    image.tofile(tmp_path / "in.bin")
    code, _, err = run_noisify(["-floatfile", "in.bin", "-psf", "gauss", "-psf_fwhm", "200", "-nonoise",
                                "-intfile", "int.img", "-adc", "0"], tmp_path)
    assert code == 0, err
    assert not (tmp_path / "noiseimage.img").exists()
    _, data = smv((tmp_path / "int.img").read_bytes())
    data = data.reshape(32, 32)
    assert 0 < data[16, 16] < 10000 and data[16, 17] > 0


def test_main_command_writes_the_response(tmp_path: Path) -> None:
    """One ``pybragg`` run: its -noisefile is the response of its float image (the same module), and
    with no response flag it is the plain Poisson image."""
    base = ["-cell", "100", "100", "100", "90", "90", "90", "-default_F", "100", "-N", "5", "-detpixels", "48",
            "-distance", "100", "-pixel", "0.1", "-lambda", "1", "-seed", "5", "-floatfile", "f.bin", "-nopgm",
            "-intfile", "i.img", "-noisefile", "n.img", "-q"]
    extra = ["-readout_noise", "3", "-gain", "2", "-psf", "gauss", "-psf_fwhm", "100", "-calibration", "0.02",
             "-bits", "32"]
    proc = run_cli(base + extra, tmp_path)
    assert proc.returncode == 0, proc.stderr
    image = np.fromfile(tmp_path / "f.bin", dtype=np.float32).reshape(48, 48)
    header, noisy = smv((tmp_path / "n.img").read_bytes())
    assert header["TYPE"] == "long_integer"
    cfg = ResponseConfig(readout_noise=3.0, gain=2.0, psf="gauss", psf_fwhm=100e-6, calibration=0.02,
                         pixel_size=1e-4, bits=32)
    assert np.array_equal(noisy.reshape(48, 48), apply(image, cfg, seed=5))
    proc = run_cli(base, tmp_path)
    assert proc.returncode == 0, proc.stderr
    _, plain = smv((tmp_path / "n.img").read_bytes())
    assert np.array_equal(plain.reshape(48, 48), apply(image, ResponseConfig(), seed=5))
