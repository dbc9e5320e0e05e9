"""The command's extras: --version, -q/--quiet, ``python -m pybragg``, the PNG preview; new outputs
leave the reference's SMV and PGM files byte for byte as they were; bad values of the new flags
are one-line errors that leave no file behind."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import pybragg
from golden import ROOT, pybragg_command
from pybragg.cli.main import main

SMALL = ["-cell", "100", "100", "100", "90", "90", "90", "-default_F", "100", "-N", "5", "-detpixels", "48",
         "-seed", "9", "--backend", "c", "-noprogress"]
README = ["-cell", "100", "100", "100", "90", "90", "90", "-default_F", "100", "-N", "5", "-lambda", "1.0",
          "-distance", "100", "-detpixels", "256", "-pixel", "0.1", "-floatfile", "quickstart.bin",
          "-intfile", "quickstart.img"]


def env() -> dict[str, str]:
    out = dict(os.environ)
    out["PYTHONPATH"] = os.pathsep.join([str(ROOT), *(p for p in out.get("PYTHONPATH", "").split(os.pathsep) if p)])
    out.setdefault("OMP_NUM_THREADS", "2")
    return out


def test_version_from_the_command_and_from_python_m(tmp_path) -> None:
    for command in (pybragg_command(), [sys.executable, "-m", "pybragg"]):
        proc = subprocess.run([*command, "--version"], cwd=tmp_path, capture_output=True, text=True, env=env(),
                              check=False)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.startswith(f"pybragg {pybragg.__version__}")
        assert os.listdir(tmp_path) == []


def test_python_m_pybragg_is_the_same_command(tmp_path) -> None:
    outputs = {}
    for name, command in (("script", pybragg_command()), ("module", [sys.executable, "-m", "pybragg"])):
        folder = tmp_path / name
        folder.mkdir()
        proc = subprocess.run([*command, *SMALL, "-floatfile", "f.bin", "-noisefile", "n.img"], cwd=folder,
                              capture_output=True, text=True, env=env(), check=False)
        assert proc.returncode == 0, proc.stderr
        outputs[name] = {p: (folder / p).read_bytes() for p in sorted(os.listdir(folder))}
        assert "wrote f.bin" in proc.stdout
    assert outputs["script"] == outputs["module"]


def test_quiet_prints_nothing_but_writes_the_files(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    assert main([*SMALL, "-q", "-floatfile", "f.bin", "-pngfile", "p.png"]) == 0
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""
    assert sorted(os.listdir(tmp_path)) == ["f.bin", "image.pgm", "intimage.img", "noiseimage.img", "p.png"]
    assert main([*SMALL, "--quiet", "-distance", "oops"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pybragg: error: -distance") and len(err.splitlines()) == 1


def test_readme_first_command_still_works(tmp_path) -> None:
    proc = subprocess.run([*pybragg_command(), *README], cwd=tmp_path, capture_output=True, text=True, env=env(),
                          check=False)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "quickstart.bin").stat().st_size == 4 * 256 * 256
    assert (tmp_path / "quickstart.img").stat().st_size == 512 + 2 * 256 * 256


def test_new_outputs_leave_smv_and_pgm_bytes_alone(tmp_path, monkeypatch) -> None:
    files = ["-floatfile", "f.bin", "-intfile", "i.img", "-noisefile", "n.img", "-pgmfile", "p.pgm"]
    monkeypatch.chdir(tmp_path)
    (tmp_path / "plain").mkdir()
    (tmp_path / "all").mkdir()
    os.chdir(tmp_path / "plain")
    assert main([*SMALL, *files]) == 0
    os.chdir(tmp_path / "all")
    assert main([*SMALL, *files, "-cbffile", "a.cbf", "-nexusfile", "a.nxs", "-exptfile", "a.expt",
                 "-pngfile", "a.png"]) == 0
    for name in ("f.bin", "i.img", "n.img", "p.pgm"):
        assert (tmp_path / "plain" / name).read_bytes() == (tmp_path / "all" / name).read_bytes(), name


@pytest.mark.parametrize("scale", ["linear", "sqrt", "log"])
@pytest.mark.parametrize("cmap", ["grey", "inverse", "heat", "viridis"])
def test_png_preview(scale: str, cmap: str, tmp_path, monkeypatch) -> None:
    if cmap == "viridis":
        import matplotlib  # noqa: F401
    monkeypatch.chdir(tmp_path)
    assert main([*SMALL, "-floatfile", "f.bin", "-pngfile", "a.png", "-png_scale", scale, "-png_cmap", cmap]) == 0
    image = np.fromfile(tmp_path / "f.bin", dtype="<f4").reshape(48, 48)
    with Image.open(tmp_path / "a.png") as png:
        assert png.format == "PNG" and png.size == (48, 48)
        assert png.mode == ("L" if cmap in ("grey", "inverse") else "RGB")
        pixels = np.asarray(png)
        assert png.text["Scale"] == scale
    brightest = np.unravel_index(np.argmax(image), image.shape)
    darkest = np.unravel_index(np.argmin(image), image.shape)
    if cmap == "grey":
        assert pixels[brightest] == 255 and pixels[darkest] == round(255 * {"linear": image.min() / image.max(),
                                                                             "sqrt": np.sqrt(image.min() / image.max()),
                                                                             "log": np.log1p(image.min()) /
                                                                             np.log1p(image.max())}[scale])
    if cmap == "inverse":
        assert pixels[brightest] == 0


def test_png_max_saturates(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert main([*SMALL, "-floatfile", "f.bin", "-pngfile", "a.png", "-png_scale", "linear", "-png_cmap", "grey",
                 "-png_max", "1"]) == 0
    image = np.fromfile(tmp_path / "f.bin", dtype="<f4").reshape(48, 48)
    pixels = np.asarray(Image.open(tmp_path / "a.png"))
    assert (pixels[image >= 1] == 255).all()


@pytest.mark.parametrize(
    ("args", "code", "names"),
    [
        (["-pngfile", "a.png", "-png_cmap", "nosuchmap"], 2, ["-png_cmap", "nosuchmap"]),
        (["-nexusfile", "a.nxs", "-nexus_compression", "zip"], 2, ["-nexus_compression"]),
        (["-png_scale", "cubic"], 2, ["-png_scale"]),
        (["-png_max", "0"], 2, ["-png_max"]),
        (["-hkl_column", "FP"], 2, ["-hkl_column"]),
        (["-pdb_anomalous"], 2, ["-pdb_anomalous"]),
        (["-cbffile", "nodir/a.cbf"], 1, ["nodir/a.cbf"]),
        (["-nexusfile", "nodir/a.nxs"], 1, ["nodir/a.nxs"]),
        (["-exptfile", "nodir/a.expt"], 1, ["nodir/a.expt"]),
    ],
    ids=["cmap", "compression", "png_scale", "png_max", "hkl_column_alone", "anomalous_alone", "cbf_folder",
         "nexus_folder", "expt_folder"],
)
def test_bad_new_flags_fail_cleanly(args, code, names, tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    assert main([*SMALL, "-floatfile", "f.bin", "-cbffile", "ok.cbf", *args]) == code
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if not line.startswith("warning: ")]
    assert len(lines) == 1 and lines[0].startswith("pybragg: error: "), err
    for name in names:
        assert name in lines[0]
    assert os.listdir(tmp_path) == []
