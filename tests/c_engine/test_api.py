"""The Python API: a :class:`Config` built in Python, :class:`Inputs`, :class:`Simulator`, :class:`Result`.

No command line here (except to show that one gives the same image): the
configuration is made of dataclasses in SI units, and the inputs of arrays.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from numpy.testing import assert_allclose

from golden import compare_float
from pybragg import (
    BeamConfig,
    Config,
    CrystalConfig,
    DetectorConfig,
    Inputs,
    Misset,
    Result,
    Simulator,
    Stats,
    UsageError,
)
from pybragg.engines import torch_available
from pybragg.flags import from_args
from pybragg.io.hkl import HKLTable

FAST, SLOW = 40, 30
PX = 0.1e-3


def make_config(**detector: object) -> Config:
    """A small cubic crystal on a 40 x 30 detector, written out in SI units."""
    return Config(
        crystal=CrystalConfig(has_cell=True, cell=(100e-10, 100e-10, 100e-10, math.pi / 2, math.pi / 2, math.pi / 2),
                              misset_mode=Misset.ANGLES, misset=(0.03, 0.05, 0.07), N=(5.0, 5.0, 5.0), default_F=100.0),
        beam=BeamConfig(lambda0=1.0e-10),
        detector=DetectorConfig(fpixels=FAST, spixels=SLOW, pixel_size=PX, distance=0.05, oversample=1,
                                **detector),  # type: ignore[arg-type]
    )


def run(config: Config, inputs: Inputs | None = None, **kw: object) -> Result:
    return Simulator(config, inputs, **kw).run()  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def plain() -> Result:
    return run(make_config())


# ---------------------------------------------------------------------------
# the result


def test_image_shape_dtype_and_fields(plain: Result) -> None:
    assert isinstance(plain, Result)
    assert plain.image.shape == (SLOW, FAST)
    assert plain.image.dtype == np.float32
    assert np.isfinite(plain.image).all()
    assert plain.image.max() > 0 and plain.image.min() >= 0
    assert plain.backend == "c" and plain.device == "cpu"
    assert isinstance(plain.stats, Stats)
    g = plain.geometry
    assert (g.spixels, g.fpixels) == (SLOW, FAST)
    assert g.pixel_size == PX and g.distance == pytest.approx(0.05)
    assert plain.sources.shape == (1, 5)
    assert_allclose(plain.sources[0], [-1, 0, 0, 1, 1e-10])
    assert plain.mosaic.shape == (1, 3, 3)
    assert_allclose(plain.mosaic[0], np.eye(3))
    assert_allclose(plain.phi_angles, [0.0])
    assert plain.seconds >= 0
    assert plain.config.detector.fpixels == FAST


def test_stats_agree_with_numpy(plain: Result) -> None:
    img = plain.image.astype(np.float64)
    s = plain.stats
    n = img.size
    assert s.n == n
    assert s.max_I == pytest.approx(img.max(), rel=1e-12)
    flat = int(np.argmax(img))  # the first pixel holding the maximum, in file order
    assert s.max_I_pixel == (flat // FAST, flat % FAST)
    slow, fast = s.max_I_pixel
    # the reported position is the centre of the last sub-pixel (oversample 1: the pixel centre)
    assert (s.max_I_fast, s.max_I_slow) == pytest.approx(((fast + 0.5) * PX, (slow + 0.5) * PX), rel=1e-12)
    assert s.sum == pytest.approx(img.sum(), rel=1e-12)
    assert s.mean == pytest.approx(img.mean(), rel=1e-12)
    assert s.rms == pytest.approx(math.sqrt((img**2).sum() / (n - 1)), rel=1e-12)
    assert s.rmsd == pytest.approx(math.sqrt(((img - img.mean()) ** 2).sum() / (n - 1)), rel=1e-12)
    assert s.omega_sum > 0 and s.interpolation_fallbacks == 0


def test_stats_do_not_depend_on_the_thread_count(plain: Result) -> None:
    """Rows are summed in parallel but combined in order: the same numbers for 1 to 3 threads."""
    for threads in (1, 3):
        again = Simulator(make_config(), threads=threads).run()
        np.testing.assert_array_equal(again.image, plain.image)
        assert again.stats == plain.stats


def test_roi_and_mask(plain: Result) -> None:
    xmin, xmax, ymin, ymax = 4, 33, 2, 25
    mask = np.ones((SLOW, FAST), dtype=np.uint8)
    mask[10:14, :] = 0
    mask[:, 20] = 0
    result = run(make_config(roi=(xmin, xmax, ymin, ymax)), Inputs(mask=mask))
    img = result.image.astype(np.float64)
    inside = np.zeros((SLOW, FAST), dtype=bool)
    inside[ymin:ymax + 1, xmin:xmax + 1] = True
    rendered = inside & (mask != 0)
    assert (result.image[~rendered] == 0).all()  # masked and outside the ROI: exactly 0
    assert np.array_equal(result.image[rendered], plain.image[rendered])  # the rest as without them
    s = result.stats
    assert s.n == rendered.sum()
    assert s.mean == pytest.approx(img[rendered].mean(), rel=1e-12)
    assert s.rms == pytest.approx(math.sqrt((img[rendered] ** 2).sum() / (s.n - 1)), rel=1e-12)
    # rmsd runs over the whole ROI, masked pixels (0) included, about the mean of the rendered ones
    dev = img[inside] - img[rendered].mean()
    assert s.rmsd == pytest.approx(math.sqrt((dev**2).sum() / (inside.sum() - 1)), rel=1e-12)
    brightest = np.where(rendered, img, -1.0)
    flat = int(np.argmax(brightest))
    assert s.max_I == pytest.approx(brightest.max(), rel=1e-12)
    assert s.max_I_pixel == (flat // FAST, flat % FAST)


def test_mask_of_wrong_shape_is_an_error() -> None:
    from pybragg.errors import EngineError

    with pytest.raises(EngineError, match="mask"):
        run(make_config(), Inputs(mask=np.ones((FAST, SLOW), dtype=np.uint8)))
    with pytest.raises(ValueError, match="2-D"):
        Inputs(mask=np.ones(10))


# ---------------------------------------------------------------------------
# structure factors


def table(value: float, lo: int = -12, hi: int = 12) -> HKLTable:
    n = hi - lo + 1
    return HKLTable(F=np.full((n, n, n), value), h_min=lo, k_min=lo, l_min=lo, count=n**3)


def test_hkl_table_input(plain: Result) -> None:
    cfg = make_config()
    # the table holds every reflection the detector sees: same image as default_F alone
    same = run(cfg, Inputs(hkl=table(100.0)))
    assert_allclose(same.image, plain.image, rtol=1e-6, atol=0)
    # intensity goes as F squared
    double = run(cfg, Inputs(hkl=table(200.0)))
    assert_allclose(double.image, 4 * plain.image, rtol=1e-6, atol=0)
    # outside the table, default_F
    tiny = run(cfg.replace(**{"crystal.default_F": 200.0}), Inputs(hkl=table(100.0, 0, 0)))
    ratio = tiny.image[plain.image > 0] / plain.image[plain.image > 0]
    assert set(np.round(ratio, 4)) <= {1.0, 4.0} and 4.0 in set(np.round(ratio, 4))


def test_no_structure_factors_at_all_gives_a_dark_image() -> None:
    result = run(make_config().replace(**{"crystal.default_F": 0.0}))
    assert not result.image.any()
    assert result.stats.max_I == 0 and result.stats.max_I_pixel is None


# ---------------------------------------------------------------------------
# sources


def test_sources_array(plain: Result) -> None:
    cfg = make_config()
    # one source with every entry left to its default: the plain beam
    default = run(cfg, Inputs(sources=np.full((1, 5), np.nan)))
    assert np.array_equal(default.image, plain.image)
    assert_allclose(default.sources, plain.sources)
    # a source of another wavelength, straight up the beam: as if lambda0 were that wavelength
    other = run(cfg, Inputs(sources=np.array([[-10.0, 0.0, 0.0, 1.0, 1.1e-10]])))
    direct = run(cfg.replace(**{"beam.lambda0": 1.1e-10}))
    assert_allclose(other.image, direct.image, rtol=1e-5, atol=1e-6 * float(direct.image.max()))
    assert_allclose(other.sources, [[-1.0, 0.0, 0.0, 1.0, 1.1e-10]])
    # two sources: directions normalised, the image an average over them
    two = run(cfg, Inputs(sources=np.array([[-10.0, 0.0, 0.0, 1.0, 1e-10], [0.0, -3.0, -4.0, 1.0, 1e-10]])))
    assert_allclose(two.sources[:, :3], [[-1, 0, 0], [0, -0.6, -0.8]])
    assert two.geometry.sources == 2
    with pytest.raises(ValueError, match=r"\(n, 5\)"):
        Inputs(sources=np.zeros((2, 4)))


# ---------------------------------------------------------------------------
# configuration


def test_config_replace_is_a_copy() -> None:
    cfg = make_config()
    far = cfg.replace(**{"detector.distance": 0.2, "beam.lambda0": 1.5e-10})
    assert far is not cfg
    assert (far.detector.distance, far.beam.lambda0) == (0.2, 1.5e-10)
    assert (cfg.detector.distance, cfg.beam.lambda0) == (0.05, 1.0e-10)
    assert far.crystal == cfg.crystal and far.crystal is not cfg.crystal
    with pytest.raises(AttributeError, match="distanse"):
        cfg.replace(**{"detector.distanse": 0.2})
    assert run(far).geometry.distance == pytest.approx(0.2)
    copy = cfg.copy()
    copy.detector.pixel_size = 0.2e-3
    assert cfg.detector.pixel_size == PX


def test_python_config_equals_command_line(plain: Result) -> None:
    deg = 180 / math.pi
    args = ["-cell", "100", "100", "100", "90", "90", "90", "-misset", str(0.03 * deg), str(0.05 * deg),
            str(0.07 * deg), "-N", "5", "-default_F", "100", "-lambda", "1", "-detpixels_x", str(FAST),
            "-detpixels_y", str(SLOW), "-pixel", "0.1", "-distance", "50", "-oversample", "1"]
    sim = from_args(args, backend="c")
    assert sim.invocation is not None
    result = sim.run()
    assert_allclose(result.image, plain.image, rtol=1e-6, atol=0)


def test_threads_and_progress(plain: Result) -> None:
    seen: list[float] = []
    result = Simulator(make_config(), threads=1).run(progress=seen.append)
    assert np.array_equal(result.image, plain.image)
    assert seen and seen[-1] == 1.0
    assert all(0.0 <= x <= 1.0 for x in seen)
    assert seen == sorted(seen)


def test_engine_rejects_impossible_config() -> None:
    from pybragg.errors import EngineError

    with pytest.raises(EngineError, match="wavelength"):
        run(make_config().replace(**{"beam.lambda0": 0.0}))
    with pytest.raises(EngineError, match="cell"):
        run(make_config().replace(**{"crystal.has_cell": False}))


# ---------------------------------------------------------------------------
# backends


def test_backend_errors() -> None:
    cfg = make_config()
    with pytest.raises(UsageError, match="nope"):
        Simulator(cfg, backend="nope")
    with pytest.raises(UsageError, match="float16"):
        Simulator(cfg, dtype="float16")
    with pytest.raises(UsageError, match="memory"):
        Simulator(cfg, memory_budget_gib=0)
    assert UsageError("x").exit_code == 2


def test_c_backend_ignores_a_device_with_a_notice() -> None:
    notices: list[str] = []
    sim = Simulator(make_config(), backend="c", device="cuda:0", notice=notices.append)
    assert sim.backend == "c" and sim.device == "cpu"
    assert len(notices) == 1 and "cuda:0" in notices[0]


def test_torch_backend(plain: Result) -> None:
    """``backend="torch"`` renders with the torch engine where torch is installed (CI: torch 2.13).

    Without torch the request falls back to the C engine with one notice.
    """
    notices: list[str] = []
    sim = Simulator(make_config(), backend="torch", device="cpu", notice=notices.append)
    if not torch_available():
        assert sim.backend == "c"
        assert len(notices) == 1 and "torch" in notices[0]
        assert np.array_equal(sim.run().image, plain.image)
        return
    assert sim.backend == "torch", notices
    result = sim.run()
    assert result.backend == "torch"
    assert result.image.shape == (SLOW, FAST)
    compare_float(np.asarray(result.image, dtype=np.float64), plain.image.astype(np.float64))
    assert result.stats.max_I_pixel == plain.stats.max_I_pixel
    assert result.stats.mean == pytest.approx(plain.stats.mean, rel=1e-5)


def test_auto_backend_asks_torch_about_cuda_only_where_a_gpu_driver_is(monkeypatch, tmp_path) -> None:
    """``auto`` looks for a GPU driver's device files before importing torch (which takes seconds)."""
    import subprocess
    import sys

    from pybragg import engines

    code = ("import sys; from pybragg.engines import _gpu_driver_present, select_engine; "
            "name = select_engine('auto')[0]; print(name, _gpu_driver_present(), 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    driver = out[1] == "True"
    assert out[2] == str(driver)  # torch imported exactly when there is a driver to ask about
    if not driver:
        assert out[0] == "c"

    if not torch_available():
        return
    import torch

    asked: list[bool] = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: asked.append(True) or False)
    monkeypatch.setattr(engines, "_GPU_DEVICE_FILES", (str(tmp_path / "nvidiactl"),))
    monkeypatch.setattr(sys, "platform", "linux")
    assert engines.select_engine("auto")[0] == "c" and not asked
    (tmp_path / "nvidiactl").touch()
    assert engines.select_engine("auto")[0] == "c" and asked == [True]


def test_every_engine_renders_the_same_image(engine: str, plain: Result) -> None:
    """Each engine of the registry that runs here, through the one Simulator interface."""
    from golden import compare_float

    result = run(make_config(), backend=engine, device="cpu", threads=1)
    assert result.backend == engine and result.image.shape == plain.image.shape
    compare_float(result.image, plain.image, "float64")
