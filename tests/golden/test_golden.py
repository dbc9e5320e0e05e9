"""Every reference case through the real command line, held to the golden bars."""

from __future__ import annotations

import numpy as np
import pytest

from golden import (
    case_names,
    compare_float,
    compare_header,
    compare_int_pixels,
    compare_noise,
    load_case,
    run_cli,
    scratch,
    smv_pixels,
)


@pytest.mark.parametrize("name", case_names())
def test_golden_case_c_engine(name: str, tmp_path) -> None:
    case = load_case(name)
    work = scratch(tmp_path)
    proc = run_cli(["--backend", "c", *case.full_args()], work)
    assert proc.returncode == 0, proc.stderr

    ref_float = np.frombuffer(case.reference("float.bin"), dtype="<f4")
    ref_header, ref_int = smv_pixels(case.reference("int.img"))
    shape = ref_int.shape
    ours_float = np.fromfile(work / "float.bin", dtype="<f4")
    assert ours_float.size == ref_float.size
    compare_float(ours_float.reshape(shape), ref_float.reshape(shape))

    header, ours_int = smv_pixels((work / "int.img").read_bytes())
    compare_header(header, ref_header)
    compare_int_pixels(ours_int, ref_int)

    if case.has("image.pgm"):
        ref_pgm = case.reference("image.pgm")
        ours_pgm = (work / "image.pgm").read_bytes()
        assert ours_pgm.split(b"\n")[:2] == ref_pgm.split(b"\n")[:2]
        a = np.frombuffer(ours_pgm[-ref_int.size:], np.uint8).astype(int)
        b = np.frombuffer(ref_pgm[-ref_int.size:], np.uint8).astype(int)
        assert np.abs(a - b).max() <= 1 and (a != b).mean() <= 0.001
    else:
        assert not (work / "image.pgm").exists()

    if case.has("noise.img"):
        _, ref_noise = smv_pixels(case.reference("noise.img"))
        _, ours_noise = smv_pixels((work / "noise.img").read_bytes())
        adc = float(case.full_args()[case.full_args().index("-adc") + 1]) if "-adc" in case.args else 40.0
        roi = np.zeros(shape, dtype=bool)
        if "-roi" in case.args:
            i = case.args.index("-roi")
            xmin, xmax, ymin, ymax = (int(v) for v in case.args[i + 1:i + 5])
            roi[ymin:ymax + 1, xmin:xmax + 1] = True
        else:
            roi[:] = True
        compare_noise(ours_noise, ref_noise, ours_float.reshape(shape), ref_float.reshape(shape), adc, roi)
    else:
        assert not (work / "noise.img").exists()
