"""One ``pybragg`` run: Bragg spots + amorphous background (-stol) [+ detector response] = the stages."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from golden import run_cli, smv_pixels

SPOTS = ["-cell", "50", "50", "50", "90", "90", "90", "-default_F", "100", "-N", "5", "-detpixels", "40",
         "-pixel", "0.5", "-distance", "60", "-oversample", "2", "-fluence", "1e20", "-twotheta", "5"]
QUIET = ["-noprogress", "-nopgm"]


def _stages(argv: list[str], backend: str = "c", dtype: str = "float64") -> tuple[np.ndarray, np.ndarray, tuple]:
    """The spots' render and spots + background by the Python stages, for the same flags."""
    from pybragg import background
    from pybragg.flags import from_args
    from pybragg.flags.load import background_sample

    sim = from_args(argv + ["--backend", backend, "--dtype", dtype])
    spots = sim.run()
    both = background.render(sim.config, sim.inputs, background_sample(sim.invocation), onto=spots,
                             backend=backend, dtype=dtype)
    return spots.image.astype(np.float32), both.image, tuple(both.geometry.roi)


@pytest.mark.parametrize("backend, dtype", [("c", "float64"), ("torch", "float64"), ("torch", "float32")])
def test_spots_plus_water_is_the_sum_of_the_stages(tmp_path: Path, backend: str, dtype: str) -> None:
    bg = ["-stol", "water", "-bg_thick", "0.1", "-bg_width", "0.08", "-beamsize", "0.05"]
    proc = run_cli([*SPOTS, *bg, *QUIET, "-nonoise", "-floatfile", "f.bin", "--backend", backend, "--dtype",
                    dtype], tmp_path)
    assert proc.returncode == 0, proc.stderr
    ours = np.fromfile(tmp_path / "f.bin", "<f4").reshape(40, 40)
    spots, expected, _ = _stages([*SPOTS, *bg], backend, dtype)
    assert np.array_equal(ours, expected)
    water = expected - spots
    assert water.min() > 0 and spots.max() > 0  # both stages are there


def test_response_is_applied_to_the_sum(tmp_path: Path) -> None:
    from pybragg.noise import noise_image
    from pybragg.response import ResponseConfig

    bg = ["-stol", "water", "-bg_thick", "0.2"]
    response = ["-readout_noise", "3", "-gain", "2", "-seed", "7"]
    proc = run_cli([*SPOTS, *bg, *response, *QUIET, "-floatfile", "f.bin", "-noisefile", "n.img"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    _, expected, roi = _stages([*SPOTS, *bg])
    assert np.array_equal(np.fromfile(tmp_path / "f.bin", "<f4").reshape(40, 40), expected)
    noisy, _, _ = noise_image(expected, roi, 7, 40.0, ResponseConfig(readout_noise=3.0, gain=2.0))
    _, ours = smv_pixels((tmp_path / "n.img").read_bytes())
    assert np.array_equal(ours.reshape(40, 40), noisy)


def test_sample_flags(tmp_path: Path) -> None:
    """-density, -MW, -bg_molecules, -bg_size and -4stol reach the background; -sample_thick stays the crystal's."""
    from pybragg.flags import parse_args
    from pybragg.flags.load import background_sample

    inv = parse_args([*SPOTS, "-stol", "air", "-density", "0.0012", "-MW", "28.8", "-bg_size", "2"])
    s = background_sample(inv)
    assert (s.thickness, s.width, s.height) == (2e-3, 2e-3, 2e-3)
    assert s.density == pytest.approx(1200.0) and s.molecular_weight == 28.8 and s.molecules is None
    assert background_sample(parse_args(["-bg_molecules", "1e15"])).molecules == 1e15
    inv = parse_args([*SPOTS, "-stol", "water", "-sample_thick", "0.1"])
    assert inv.config.crystal.sample_size[0] == pytest.approx(1e-4)  # nanoBragg's crystal size along a
    assert background_sample(inv).thickness == 1e-4  # the background's default, untouched

    def floats(args: list[str], name: str) -> np.ndarray:
        # spots too faint to change a float32 pixel of the background
        proc = run_cli([*SPOTS, "-default_F", "1e-12", *args, *QUIET, "-nonoise", "-floatfile", name], tmp_path)
        assert proc.returncode == 0, proc.stderr
        return np.fromfile(tmp_path / name, "<f4")

    table = tmp_path / "water4.stol"
    from pybragg.io.stol import read_stol

    w = read_stol("water", 1.0)
    table.write_text("".join(f"{float(4 * x)!r} {float(f)!r}\n" for x, f in zip(w.stol, w.F, strict=True)))
    one = floats(["-stol", "water"], "a.bin")
    np.testing.assert_allclose(floats(["-4stol", str(table)], "b.bin"), one, rtol=1e-6)
    np.testing.assert_allclose(floats(["-stol", "water", "-density", "2"], "c.bin"), 2 * one, rtol=1e-6)
    np.testing.assert_allclose(floats(["-stol", "water", "-bg_thick", "0.3"], "d.bin"), 3 * one, rtol=1e-6)


def test_bad_table_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.stol"
    bad.write_text("0 1\n0.1 nan\n")
    proc = run_cli([*SPOTS, "-stol", str(bad), *QUIET, "-floatfile", "f.bin"], tmp_path)
    assert proc.returncode == 1 and "line 2" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "f.bin").exists()
    proc = run_cli([*SPOTS, "-stol", "nowhere.stol", *QUIET], tmp_path)
    assert proc.returncode == 1 and "-stol" in proc.stderr and "no such file" in proc.stderr
