"""Command lines under the hardening rules of issue 10 (classes 2, 6 and the Python side of 7).

* every numeric value is range-checked when parsed, in every flag table: an integer beyond the C field
  it ends in (``int``; seeds ``long``) or a ``--threads`` beyond 4096 is a usage error naming the flag,
  before anything is read or rendered;
* the Python API raises :class:`~pybragg.errors.PybraggError` subclasses only;
* a table or a detector too large for the memory rule is refused with one line, exit 1, also under a
  hard address-space limit (``RLIMIT_AS`` in the child): the process is neither killed nor left to a
  ``MemoryError``;
* a rendered image with a non-finite or negative pixel is refused before anything is written, on both
  engines and in ``pybragg nonbragg``;
* the torch engine refuses work whose one pixel does not fit ``--memory-budget``.
"""

from __future__ import annotations

import os
import resource
import subprocess
from pathlib import Path

import numpy as np
import pytest

import pybragg
from golden import ROOT, pybragg_command
from pybragg.errors import PybraggError, ResourceLimitError, UsageError
from pybragg.flags.noisify import NOISIFY_FLAGS, parse_noisify
from pybragg.flags.nonbragg import FLAGS as NONBRAGG_FLAGS
from pybragg.flags.nonbragg import parse as parse_nonbragg
from pybragg.flags.parse import parse_args, value_range
from pybragg.flags.table import FLAGS, SEED_RANGE, Kind

SMALL = ["-cell", "100", "100", "100", "90", "90", "90", "-default_F", "100", "-N", "2", "-detpixels", "16"]
QUIET = ["-floatfile", "f.bin", "-intfile", "i.img", "-nopgm", "-nonoise", "-q", "--backend", "c"]
HARD_LIMIT = 3 << 30  # bytes of address space the child may map


def _numeric(flags) -> list:
    return [f for f in flags if f.kind in (Kind.INT, Kind.COUNT) and not f.keywords]


def _run(args: list[str], cwd: Path, limit: int | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """The checkout's ``pybragg`` in ``cwd``, optionally under a hard RLIMIT_AS."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="2")
    env.pop("PYBRAGG_MEMORY_LIMIT", None)

    def cap() -> None:
        if limit is not None:
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    return subprocess.run(pybragg_command() + args, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout, preexec_fn=cap, check=False)


def _one_error_line(proc: subprocess.CompletedProcess, code: int, *names: str) -> str:
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == code, (proc.returncode, proc.stderr[-2000:])
    assert len(lines) == 1 and lines[0].startswith("pybragg: error: "), proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    for name in names:
        assert name in lines[0], (name, lines[0])
    return lines[0]


# ---------------------------------------------------------------------- class 6: value ranges


@pytest.mark.parametrize("flag", _numeric(FLAGS), ids=lambda f: f.name)
def test_every_integer_flag_is_range_checked(flag) -> None:
    lo, hi = value_range(flag)
    assert hi <= 2**63 - 1 and lo >= -(2**63 - 1)
    for bad in (hi + 1, 10**20):
        with pytest.raises(UsageError, match=f"^{flag.name}: {bad} is too large"):
            parse_args(SMALL + [flag.name, *[str(bad)] * flag.nargs])


@pytest.mark.parametrize("flag", _numeric(NOISIFY_FLAGS) + _numeric(NONBRAGG_FLAGS),
                         ids=lambda f: f.name)
def test_every_integer_flag_of_the_subcommands_is_range_checked(flag) -> None:
    parse = parse_noisify if flag in NOISIFY_FLAGS else parse_nonbragg
    hi = value_range(flag)[1]
    with pytest.raises(UsageError, match=f"^{flag.name}: {hi + 1} is too large"):
        parse([flag.name, *[str(hi + 1)] * flag.nargs])


def test_seeds_take_the_range_of_a_c_long() -> None:
    assert SEED_RANGE == (-(2**63 - 1), 2**63 - 1)
    inv = parse_args(SMALL + ["-seed", str(2**63 - 1), "-mosaic_seed", str(-(2**63 - 1))])
    assert inv.outputs.noise_seed == 2**63 - 1 and inv.config.crystal.mosaic_seed == -(2**63 - 1)
    with pytest.raises(UsageError, match=r"^-seed: -9223372036854775808 is too small"):
        parse_args(SMALL + ["-seed", str(-(2**63))])  # its negation would overflow the engine's long
    with pytest.raises(UsageError, match=r"^-detpixels: 2147483648 is too large \(at most 2147483647\)"):
        parse_args(SMALL + ["-detpixels", str(2**31)])
    with pytest.raises(UsageError, match=r"^-seed: 12345678901234567890\.\.\.: the integer is out of range"):
        parse_args(SMALL + ["-seed", "1234567890" * 50])  # no slow int() of a huge string


@pytest.mark.parametrize("value, message", [("100000", "100000 is too large (at most 4096)"),
                                            ("-1", "-1 is too small (at least 0)")])
def test_threads_range(value, message) -> None:
    with pytest.raises(UsageError) as info:
        parse_args(SMALL + ["--threads", value])
    assert str(info.value) == f"--threads: {message}"
    assert parse_args(SMALL + ["--threads", "4096"]).threads == 4096


def test_huge_seed_is_refused_at_parse_time_not_after_the_render(tmp_path) -> None:
    proc = _run(SMALL + QUIET + ["-seed", "99999999999999999999", "-detpixels", "2000"], tmp_path)
    _one_error_line(proc, 2, "-seed", "too large")
    assert sorted(os.listdir(tmp_path)) == []


@pytest.mark.parametrize("value", ["1e308", "-1e101"])
def test_default_F_whose_square_overflows_is_refused(value) -> None:
    with pytest.raises(UsageError, match=r"^-default_F: \|F\| must be at most 1e\+100"):
        parse_args(SMALL + ["-default_F", value])


def test_python_api_raises_pybragg_errors_only() -> None:
    config = pybragg.from_args(SMALL).config
    bad_calls = [
        lambda: pybragg.from_args(" ".join(SMALL)),  # type: ignore[arg-type]
        lambda: pybragg.from_args(None),  # type: ignore[arg-type]
        lambda: pybragg.from_args(SMALL, thread=2),
        lambda: pybragg.Simulator("-cell 100")  ,  # type: ignore[arg-type]
        lambda: pybragg.Simulator(config, inputs=[1, 2]),  # type: ignore[arg-type]
        lambda: pybragg.Simulator(config, threads=100000),
        lambda: pybragg.Simulator(config, threads=2.5),  # type: ignore[arg-type]
        lambda: pybragg.Simulator(config, memory_budget_gib=float("nan")),
        lambda: pybragg.Simulator(config, dtype="float16"),
        lambda: pybragg.Simulator(config.replace(**{"detector.fpixels": 2**40})),
        lambda: pybragg.Simulator(config.replace(**{"crystal.mosaic_seed": 2**64})),
        lambda: pybragg.Simulator(config.replace(**{"beam.lambda0": float("inf")})),
        lambda: pybragg.Simulator(config.replace(**{"beam.fluence": "lots"})),
        lambda: pybragg.Inputs(sources=np.zeros((2, 3))),
        lambda: pybragg.Inputs(sources="abc"),  # type: ignore[arg-type]
        lambda: pybragg.Inputs(mask=np.zeros(4)),
    ]
    for call in bad_calls:
        with pytest.raises(PybraggError):
            call()
    sim = pybragg.Simulator(config)
    sim.config.detector.spixels = 2**35  # changed after construction: checked again by run()
    with pytest.raises(UsageError, match=r"config.detector.spixels"):
        sim.run()


# ---------------------------------------------------------------------- class 2: memory, hard limit


def test_wide_hkl_table_under_a_hard_address_space_limit(tmp_path) -> None:
    """A two-line table spanning -300..300 is a 601^3 grid: 1.7 GB, twice with the engine's copy, more
    than the child's 3 GiB address space (on any machine): one line, exit 1, not killed."""
    (tmp_path / "wide.hkl").write_text("-300 -300 -300 10\n300 300 300 10\n")
    args = [a for a in SMALL if a not in ("-default_F", "100")] + QUIET + ["-hkl", "wide.hkl"]
    proc = _run(args, tmp_path, limit=HARD_LIMIT)
    _one_error_line(proc, 1, "-hkl", "wide.hkl", "601 x 601 x 601", "h -300..300", "needs 3.2 GiB")
    assert sorted(os.listdir(tmp_path)) == ["wide.hkl"]


def test_huge_detector_under_a_hard_address_space_limit(tmp_path) -> None:
    proc = _run(SMALL + QUIET + ["-detpixels", "12000"], tmp_path, limit=HARD_LIMIT)
    _one_error_line(proc, 1, "-detpixels", "12000 x 12000 pixels", "needs 4.3 GiB")
    proc = _run(SMALL + QUIET + ["-detpixels", "10000000"], tmp_path, limit=HARD_LIMIT)
    _one_error_line(proc, 1, "-detpixels", "10000000 x 10000000")
    assert os.listdir(tmp_path) == []


def test_huge_geometry_file_panel_under_a_hard_address_space_limit(tmp_path) -> None:
    (tmp_path / "big.geom").write_text(
        "clen = 0.1\nres = 10000\nphoton_energy = 12398\n"
        "p0/min_fs = 0\np0/max_fs = 99999\np0/min_ss = 0\np0/max_ss = 99999\n"
        "p0/fs = x\np0/ss = -y\np0/corner_x = -50000\np0/corner_y = 50000\n")
    args = ["-cell", "100", "100", "100", "90", "90", "90", "-default_F", "100", "-N", "2"] + QUIET
    proc = _run(args + ["-geom", "big.geom"], tmp_path, limit=HARD_LIMIT)
    _one_error_line(proc, 1, "-geom big.geom", "100000 x 100000 pixels")
    assert os.listdir(tmp_path) == ["big.geom"]


def test_nonbragg_detector_is_checked_before_the_plan(monkeypatch) -> None:
    from pybragg.flags.nonbragg import resolve

    monkeypatch.setenv("PYBRAGG_MEMORY_LIMIT", "64M")
    with pytest.raises(ResourceLimitError, match=r"^-detpixels/-detsize/-pixel: the detector's 2000 x 2000 pixels"):
        resolve(parse_nonbragg(["-stol", "water", "-detpixels", "2000"]))
    assert resolve(parse_nonbragg(["-stol", "water", "-detpixels", "1000"]))[0].detector.fpixels == 1000


def test_hkl_from_dev_zero_is_refused_quickly(tmp_path) -> None:
    args = [a for a in SMALL if a not in ("-default_F", "100")] + QUIET + ["-hkl", "/dev/zero"]
    proc = _run(args, tmp_path, limit=HARD_LIMIT, timeout=60)
    _one_error_line(proc, 1, "/dev/zero", "a line is longer than 1.0 MiB")
    assert os.listdir(tmp_path) == []


def test_torch_engine_refuses_a_pixel_over_the_memory_budget() -> None:
    sim = pybragg.from_args(SMALL + ["--backend", "torch", "--memory-budget", "0.001", "-mosaic", "1",
                                     "-mosaic_domains", "300", "-oversample", "10"])
    with pytest.raises(ResourceLimitError) as info:
        sim.run()
    message = str(info.value)
    assert message.startswith("--memory-budget 0.001: one pixel's 100 sub-pixels x 1 sources x 300 orientations")
    assert "1.0 MiB budget" in message


def test_torch_engine_refuses_sub_pixel_tables_before_building_them() -> None:
    sim = pybragg.from_args(SMALL + ["--backend", "torch", "-oversample", "46341"])
    with pytest.raises(ResourceLimitError, match=r"^-oversample 46341: one pixel's 46341 x 46341 x 1 sub-pixels"):
        sim.run()  # at once, not after minutes of building 2^31 sub-pixel entries


# ---------------------------------------------------------------------- class 7: the catch-all


def _spoil(render, value: float):
    """An engine's ``render`` whose image gets ``value`` in one pixel."""
    def spoiled(*args, **kwargs):
        result = render(*args, **kwargs)
        result.image[3, 5] = value
        return result
    return spoiled


@pytest.mark.parametrize("backend", ["c", "torch"])
@pytest.mark.parametrize("value, what", [(np.inf, "1 infinite pixel: the intensity overflows (check -hkl"),
                                         (np.nan, "1 pixel that are not a number"),
                                         (-2.0, "1 negative pixel")])
def test_non_finite_or_negative_image_is_never_written(tmp_path, monkeypatch, capsys, backend, value, what) -> None:
    from pybragg.cli.main import main

    module = pybragg.engines.ENGINES[backend].load()
    monkeypatch.setattr(module, "render", _spoil(module.render, value))
    monkeypatch.chdir(tmp_path)
    code = main(SMALL + ["--backend", backend, "-floatfile", "f.bin", "-intfile", "i.img", "-noisefile", "n.img",
                         "-pgmfile", "p.pgm", "-q"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1, err
    assert err[0].startswith("pybragg: error: the rendered image has " + what), err[0]
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("backend", ["c", "torch"])
def test_nonbragg_image_is_checked_too(tmp_path, monkeypatch, capsys, backend) -> None:
    from pybragg import background
    from pybragg.cli.main import main

    original = background._onto_array

    def negative_start(onto, shape):
        image = original(onto, shape)
        image[2, 2] = -1e15  # far below the background (about 2e11 photons a pixel here)
        return image

    monkeypatch.setattr(background, "_onto_array", negative_start)
    monkeypatch.chdir(tmp_path)
    code = main(["nonbragg", "-stol", "water", "-detpixels", "16", "--backend", backend, "-floatfile", "f.bin",
                 "-intfile", "i.img", "-noisefile", "n.img", "-pgmfile", "p.pgm"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1, err
    assert "the image with the background has 1 negative pixel" in err[0]
    assert os.listdir(tmp_path) == []


def test_detector_response_is_checked_before_its_images(monkeypatch) -> None:
    from pybragg.response import ResponseConfig, respond

    image = np.ones((64, 64), dtype=np.float32)
    respond(image, ResponseConfig(psf="gauss"), seed=1)  # fits: renders
    # a 64 x 64 image with a kernel up to 64 pixels in radius needs 10 x 4096 + 8 x 4096 + 8 x 129^2 bytes
    monkeypatch.setenv("PYBRAGG_MEMORY_LIMIT", "150K")
    with pytest.raises(ResourceLimitError, match=r"the detector response \(-noisefile, -psf\) needs 202\.[0-9] KiB"):
        respond(image, ResponseConfig(psf="gauss"), seed=1)
    respond(image, ResponseConfig(), seed=1)  # without the spread 40 KiB: fits


@pytest.mark.parametrize("budget", ["1e300", "1e308"])
def test_memory_budget_whose_bytes_overflow_is_refused(budget) -> None:
    # 1e308 GiB in bytes is infinite: the torch engine's chunk sizes were an OverflowError
    with pytest.raises(UsageError, match=r"^--memory-budget: .* is too large"):
        pybragg.from_args(["-cell", "100", "100", "100", "90", "90", "90", "-default_F", "1",
                           "--memory-budget", budget])
    with pytest.raises(UsageError, match=r"^--memory-budget: .* is too large"):
        pybragg.Simulator(pybragg.Config(), memory_budget_gib=float(budget))


@pytest.mark.parametrize("flag", ["-pix0_vector", "-pix0_vector_mm"])
def test_detector_origin_error_names_the_flag_typed(flag, tmp_path) -> None:
    """A detector plane through the sample is reported under the flag the user gave."""
    proc = _run(["-cell", "100", "100", "100", "90", "90", "90", "-default_F", "100", "-N", "5", "-detpixels", "16",
                 flag, "0", "0", "0", "-floatfile", "f.bin"], tmp_path)
    line = _one_error_line(proc, 1, "the detector plane passes through the sample")
    assert line.startswith(f"pybragg: error: {flag}: "), line
    assert not (tmp_path / "f.bin").exists()
