"""The command's time outside the render: what it imports, how it finds the C extension from a
source checkout, how it writes its images (from their arrays), the image check's fast path and the
garbage collector frozen at the end of the command's process; each gives what it gave before."""

from __future__ import annotations

import importlib.machinery
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from golden import ROOT
from pybragg import _native
from pybragg.errors import EngineError
from pybragg.io.atomic import write_buffers, write_bytes
from pybragg.io.floatimage import float_image_buffers, float_image_bytes
from pybragg.io.pgm import pgm_buffers, pgm_bytes
from pybragg.io.smv import format_smv_header, smv_buffers, smv_bytes
from pybragg.simulator import check_image
from pybragg.writers import smv32_buffers, smv32_bytes

SMALL = ["-cell", "100", "100", "100", "90", "90", "90", "-default_F", "100", "-N", "5", "-detpixels", "40",
         "-seed", "3", "--backend", "c", "-noprogress", "-floatfile", "f.bin", "-intfile", "i.img",
         "-pgmfile", "p.pgm", "-noisefile", "n.img"]


def _env() -> dict[str, str]:
    out = dict(os.environ)
    out["PYTHONPATH"] = os.pathsep.join([str(ROOT), *(p for p in out.get("PYTHONPATH", "").split(os.pathsep) if p)])
    out.setdefault("OMP_NUM_THREADS", "2")
    return out


def _python(code: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, env=_env(),
                          check=False, timeout=300)


def test_the_command_leaves_unused_modules_unimported(tmp_path) -> None:
    code = ("import sys, json\nbefore = set(sys.modules)\nimport pybragg.cli.main as m\n"
            f"code = m.main({SMALL!r})\n"
            "print(json.dumps([code, sorted(set(sys.modules) - before)]))")
    proc = _python(code, tmp_path)
    assert proc.returncode == 0, proc.stderr
    code, imported = json.loads(proc.stdout.strip().splitlines()[-1])
    assert code == 0
    assert sorted(os.listdir(tmp_path)) == ["f.bin", "i.img", "n.img", "p.pgm"]
    for name in ("importlib.metadata", "secrets", "hmac", "pathlib", "pybragg.io.crystfel", "pybragg.cli.help"):
        assert name not in imported, f"{name} is imported by a plain run"


def test_extension_found_beside_the_wheel_is_the_one_metadata_names() -> None:
    here = os.path.dirname(os.path.realpath(_native.__file__))
    found = _native._installed_wheel_extension(here)
    if found is None:
        pytest.skip("pybragg is not installed from a wheel beside this checkout")
    from importlib import metadata

    dist = metadata.distribution("pybragg")
    names = {"_pybragg_cffi" + s for s in importlib.machinery.EXTENSION_SUFFIXES}
    recorded = [os.path.realpath(str(dist.locate_file(r))) for r in dist.files or ()
                if r.name in names and r.parent.name == "pybragg"]
    assert os.path.realpath(found) in recorded
    assert os.path.realpath(sys.modules[_native._MODULE].__file__) == os.path.realpath(found)


def _site(tmp_path, meta: list[str], extension: bool = True):
    site = tmp_path / "site"
    (site / "pybragg").mkdir(parents=True)
    for name in meta:
        (site / name).mkdir()
    path = site / "pybragg" / ("_pybragg_cffi" + importlib.machinery.EXTENSION_SUFFIXES[0])
    if extension:
        path.write_bytes(b"")
    return site, path


def test_wheel_layout_lookup(tmp_path, monkeypatch) -> None:
    site, path = _site(tmp_path, ["pybragg-0.1.0.dist-info"])
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setattr(sys, "path", [str(tmp_path / "missing"), str(empty), str(site)])
    assert _native._installed_wheel_extension("/elsewhere") == str(path)
    # the checkout's own folder is never the installed copy
    assert _native._installed_wheel_extension(os.path.realpath(site / "pybragg")) is None


@pytest.mark.parametrize(("meta", "extension"), [
    (["pybragg.egg-info"], True),
    (["pybragg-0.1.0.dist-info", "pybragg-0.0.9.dist-info"], True),
    (["PyBragg-0.1.0.dist-info"], True),
    (["pybragg-0.1.0.dist-info"], False),
])
def test_other_layouts_are_left_to_importlib_metadata(tmp_path, monkeypatch, meta, extension) -> None:
    site, _ = _site(tmp_path, meta, extension)
    monkeypatch.setattr(sys, "path", [str(site)])
    assert _native._installed_wheel_extension("/elsewhere") is None


def test_buffers_are_the_bytes(tmp_path) -> None:
    rng = np.random.default_rng(2)
    image = rng.uniform(0, 100, (7, 9)).astype(np.float32)
    counts = rng.integers(0, 65535, (7, 9)).astype(np.uint16)
    fields = [("PIXEL_SIZE", "0.1"), ("BEAMLINE", "fake")]
    assert float_image_bytes(image) == np.ascontiguousarray(image, dtype="<f4").tobytes()
    assert float_image_buffers(image)[0] is image  # written from the array itself
    assert float_image_bytes(image.astype(np.float64)) == image.astype("<f4").tobytes()
    assert float_image_bytes(image.T) == np.ascontiguousarray(image.T, dtype="<f4").tobytes()
    header = format_smv_header(fields, shape=counts.shape)
    assert smv_bytes(counts, fields) == header + counts.astype("<u2").tobytes()
    assert smv_bytes(counts.astype(np.int32), fields) == header + counts.astype("<u2").tobytes()
    assert pgm_bytes(counts.astype(np.uint8), 1.5).endswith(counts.astype(np.uint8).tobytes())
    wide = counts.astype(np.uint32) * 3
    assert smv32_bytes(wide, fields).endswith(wide.astype("<u4").tobytes())
    assert len(smv32_bytes(wide, fields)) == len(header) + 4 * wide.size
    for parts in (float_image_buffers(image), smv_buffers(counts, fields), pgm_buffers(counts.astype(np.uint8), 2.0),
                  smv32_buffers(wide, fields)):
        write_buffers(str(tmp_path / "a"), parts)
        write_bytes(str(tmp_path / "b"), b"".join(parts))
        assert (tmp_path / "a").read_bytes() == (tmp_path / "b").read_bytes()


@pytest.mark.parametrize(("values", "message"), [
    ([[0.0, -0.0, 5.0]], None),
    ([[1.0, np.nan]], "1 pixel that are not a number"),
    ([[np.nan, -1.0]], "1 pixel that are not a number"),
    ([[np.inf, 1.0]], "1 infinite pixel:"),
    ([[-np.inf, 1.0]], "1 infinite pixel:"),
    ([[np.inf, np.nan, np.inf]], "2 infinite pixels:"),
    ([[-1e-30, 5.0, -2.0]], "2 negative pixels"),
])
def test_image_check(values, message) -> None:
    for dtype in (np.float32, np.float64):
        image = np.array(values, dtype=dtype)
        if message is None:
            check_image(image)
        else:
            with pytest.raises(EngineError, match=message):
                check_image(image)
    check_image(np.zeros((0, 3), dtype=np.float32))
    check_image(np.array([[1, 2]]))


def test_the_collector_is_frozen_only_when_a_render_ends_the_process(tmp_path) -> None:
    code = ("import gc, sys\nimport pybragg.cli.main as m\nm.main(['--version'])\nfirst = gc.get_freeze_count()\n"
            "sys.argv = ['pybragg', 'compare', '--help']\nm.main()\nsecond = gc.get_freeze_count()\n"
            "sys.argv = ['pybragg', '--version']\nm.main()\nprint(first, second, gc.get_freeze_count() > 0)")
    proc = _python(code, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "0 0 True"


def test_int_image_scaled_in_a_thread_is_written_as_computed(tmp_path, monkeypatch) -> None:
    from types import SimpleNamespace

    import pybragg
    from pybragg.io.smv import read_smv
    from pybragg.writers import int_image, int_scale, pgm_image, write_outputs

    result = pybragg.from_args(SMALL[:15] + ["-roi", "3", "30", "5", "36"]).run()
    monkeypatch.chdir(tmp_path)
    for given in (None, 0.0, 2.5):
        outputs = SimpleNamespace(floatfile="f.bin", intfile="i.img", write_pgm=True, pgmfile="p.pgm",
                                  write_noise=False, noisefile=None, intfile_scale=given, adc_offset=40.0,
                                  pgm_scale=None)
        written = write_outputs(result, outputs)
        counts, scale = int_image(result, given, 40.0)
        assert written.int_scale == scale == int_scale(result, given)
        assert np.array_equal(read_smv("i.img").data, counts)
        assert written.pgm_scale == pgm_image(result, None, scale)[1]
        assert written.files == ["f.bin", "i.img", "p.pgm"]
