"""Geometry the C engine derives (``Plan(config).geometry``), checked against independent numbers.

Everything expected here is worked out in this file with numpy from the
conventions as ``shared/REFERENCE.md`` and the reference describe them: each
convention's beam, fast, slow, normal, polarization, spindle and two-theta axes;
how ``-Xbeam/-Ybeam`` map onto fast/slow coordinates; which pivot it imposes;
detector rotations about lab x, then y, then z, then about the two-theta axis.
Where the reference prints a derived number (``Fbeam=``, ``dials origin=``,
detector axes, cell vectors, sources, phi steps) for a golden case, that printed
number is checked too.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
from numpy.testing import assert_allclose

from golden import GOLDEN, load_case
from pybragg.config import Config, Convention, Pivot
from pybragg.flags.parse import parse_args
from pybragg.plan import Plan

DEG = math.pi / 180.0
CELL = ["-cell", "100", "100", "100", "90", "90", "90", "-default_F", "1"]


def geometry(args: list[str]):
    return Plan(config(args)).geometry


def config(args: list[str]) -> Config:
    """The configuration of a command line (input paths relative to the golden folder)."""
    fixed = [str(GOLDEN / a) if a.startswith("inputs/") else a for a in args if a != "@OUT"]
    return parse_args(fixed).config


def vec(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


# ---------------------------------------------------------------------------
# rotations, written out here (right-handed, active)


def rx(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


def ry(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def rz(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def about(axis, angle: float) -> np.ndarray:
    """Rotation by ``angle`` about the unit vector ``axis`` (Rodrigues)."""
    k = vec(axis) / np.linalg.norm(axis)
    K = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + math.sin(angle) * K + (1 - math.cos(angle)) * K @ K


def xyz(rotx: float, roty: float, rotz: float) -> np.ndarray:
    """About lab x first, then y, then z."""
    return rz(rotz) @ ry(roty) @ rx(rotx)


# ---------------------------------------------------------------------------
# the conventions (beam, fast, slow, normal, two-theta axis, polarization, spindle)

AXES = {
    "MOSFLM": ((1, 0, 0), (0, 0, 1), (0, -1, 0), (1, 0, 0), (0, 0, -1), (0, 0, 1), (0, 0, 1)),
    "DENZO": ((1, 0, 0), (0, 0, 1), (0, -1, 0), (1, 0, 0), (0, 0, -1), (0, 0, 1), (0, 0, 1)),
    "ADXV": ((0, 0, 1), (1, 0, 0), (0, -1, 0), (0, 0, 1), (-1, 0, 0), (1, 0, 0), (1, 0, 0)),
    "XDS": ((0, 0, 1), (1, 0, 0), (0, 1, 0), (0, 0, 1), (1, 0, 0), (1, 0, 0), (1, 0, 0)),
    "DIALS": ((0, 0, 1), (1, 0, 0), (0, 1, 0), (0, 0, 1), (0, 1, 0), (0, 1, 0), (0, 1, 0)),
}
IMPOSED_PIVOT = {"MOSFLM": Pivot.BEAM, "DENZO": Pivot.BEAM, "ADXV": Pivot.BEAM, "XDS": Pivot.SAMPLE,
                 "DIALS": Pivot.SAMPLE}


def model(conv: str, *, px: float, nf: int, ns: int, distance: float = 0.1, close: float | None = None,
          X: float | None = None, Y: float | None = None, orgx: float | None = None, orgy: float | None = None,
          xclose: float | None = None, yclose: float | None = None, rot=(0.0, 0.0, 0.0), twotheta: float = 0.0,
          pivot: Pivot | None = None, axes=None, pix0=None) -> dict:
    """The detector as the conventions define it (metres, radians)."""
    dsf, dss = nf * px, ns * px
    Fc = (orgx - 0.5) * px if orgx is not None else dsf / 2
    Sc = (orgy - 0.5) * px if orgy is not None else dss / 2
    xclose = Fc if xclose is None else xclose
    yclose = Sc if yclose is None else yclose
    if conv == "CUSTOM":
        beam, f, s, o, tt_axis, polar, spindle = (vec(a) for a in axes)
        X = xclose if X is None else X
        Y = yclose if Y is None else Y
        Fb, Sb, Fc, Sc = X, Y, X, Y
        assert pivot is not None
    else:
        beam, f, s, o, tt_axis, polar, spindle = (vec(a) for a in AXES[conv])
        pivot = IMPOSED_PIVOT[conv]
        if conv in ("MOSFLM", "DENZO"):
            X = (dss + px) / 2 if X is None else X
            Y = (dsf + px) / 2 if Y is None else Y
            half = px / 2 if conv == "MOSFLM" else 0.0
            Fb, Sb = Y + half, X + half
        elif conv == "ADXV":
            X = (dsf + px) / 2 if X is None else X
            Y = (dss - px) / 2 if Y is None else Y
            Fb, Sb = X, dss - Y
        else:
            X = xclose if X is None else X
            Y = yclose if Y is None else Y
            Fb, Sb = X, Y
    beam, f, s = beam / np.linalg.norm(beam), f / np.linalg.norm(f), s / np.linalg.norm(s)
    if np.linalg.norm(o) != 1.0:  # a normal that is not exactly a unit vector is rebuilt from fast x slow
        o = np.cross(f, s)
    o = o / np.linalg.norm(o)
    R = xyz(*rot)
    T = about(tt_axis, twotheta)
    # the reference relates its two distances with the normal turned by the x/y/z rotations only
    ratio = float(beam @ (R @ o))
    close = abs(ratio * distance) if close is None else close
    distance = close / ratio
    if pix0 is not None:
        p = T @ R @ vec(pix0)
    elif pivot == Pivot.SAMPLE:
        p = T @ R @ (-Fc * f - Sc * s + close * o)
    f, s, o = T @ R @ f, T @ R @ s, T @ R @ o
    if pix0 is None and pivot == Pivot.BEAM:
        p = -Fb * f - Sb * s + distance * beam
    close = float(p @ o)
    distance = close / ratio
    hit = distance * beam - p
    out = {
        "fdet": f, "sdet": s, "odet": o, "beam": beam, "pix0": p, "Fclose": -p @ f, "Sclose": -p @ s,
        "close_distance": close, "distance": distance, "Fbeam": hit @ f, "Sbeam": hit @ s,
        "Xbeam": X, "Ybeam": Y, "Xclose": xclose, "Yclose": yclose,
        "ORGX": -(p @ f) / px + 0.5, "ORGY": -(p @ s) / px + 0.5,
        "dials_origin": 1000 * vec([p[2], p[1], -p[0]]), "polar": polar / np.linalg.norm(polar),
        "spindle": spindle / np.linalg.norm(spindle), "twotheta_axis": tt_axis, "pivot": int(pivot),
        "fpixels": nf, "spixels": ns,
    }
    vert = np.cross(out["beam"], out["polar"])
    out["vert"] = vert / np.linalg.norm(vert)
    return out


def assert_geometry(g, expected: dict, atol: float = 1e-12) -> None:
    for key, want in expected.items():
        got = getattr(g, key)
        if isinstance(want, int):
            assert got == want, key
        else:
            assert_allclose(vec(got), want, rtol=1e-10, atol=atol, err_msg=key)


# ---------------------------------------------------------------------------
# the named conventions, with and without rotations

PX, NF, NS = 0.1e-3, 64, 48
DETECTOR = ["-pixel", "0.1", "-detpixels_x", str(NF), "-detpixels_y", str(NS)]


@pytest.mark.parametrize("conv", ["MOSFLM", "DENZO", "ADXV", "XDS", "DIALS"])
@pytest.mark.parametrize("beam_centre", [False, True], ids=["default_centre", "given_centre"])
@pytest.mark.parametrize("rotated", [False, True], ids=["flat", "rotated"])
def test_named_convention(conv: str, beam_centre: bool, rotated: bool) -> None:
    args = [*CELL, f"-{conv.lower()}", *DETECTOR, "-distance", "90"]
    kw: dict = {}
    if beam_centre:
        args += ["-Xbeam", "2.3", "-Ybeam", "3.1"]
        kw.update(X=2.3e-3, Y=3.1e-3)
        if conv in ("XDS", "DIALS"):
            args += ["-ORGX", "20.5", "-ORGY", "30.25"]
            kw.update(orgx=20.5, orgy=30.25)
    if rotated:
        args += ["-detector_rotx", "3", "-detector_roty", "-4", "-detector_rotz", "5", "-twotheta", "7"]
        kw.update(rot=(3 * DEG, -4 * DEG, 5 * DEG), twotheta=7 * DEG)
    g = geometry(args)
    assert g.convention == int(Convention[conv])
    assert_geometry(g, model(conv, px=PX, nf=NF, ns=NS, distance=0.09, **kw))


def test_mosflm_by_hand() -> None:
    """No rotation: origin = (distance, Sbeam, -Fbeam), beam centre + half a pixel."""
    g = geometry([*CELL, "-pixel", "0.1", "-detpixels", "24", "-distance", "100", "-Xbeam", "1", "-Ybeam", "2"])
    assert (g.Fbeam, g.Sbeam) == pytest.approx((2.05e-3, 1.05e-3), abs=1e-15)
    assert g.pix0 == pytest.approx((0.1, 1.05e-3, -2.05e-3), abs=1e-15)
    assert g.pivot == Pivot.BEAM
    # default centre: the middle of the detector, (24 + 1) / 2 pixels, then half a pixel more
    g = geometry([*CELL, "-pixel", "0.1", "-detpixels", "24"])
    assert (g.Xbeam, g.Ybeam) == pytest.approx((1.25e-3, 1.25e-3), abs=1e-15)
    assert (g.Fbeam, g.Sbeam) == pytest.approx((1.3e-3, 1.3e-3), abs=1e-15)
    assert (g.ORGX, g.ORGY) == pytest.approx((13.5, 13.5), abs=1e-9)


def test_denzo_adxv_xds_by_hand() -> None:
    base = [*CELL, "-pixel", "0.1", "-detpixels_x", "30", "-detpixels_y", "20", "-distance", "50"]
    g = geometry([*base, "-denzo", "-Xbeam", "1", "-Ybeam", "2"])
    assert (g.Fbeam, g.Sbeam) == pytest.approx((2e-3, 1e-3), abs=1e-15)
    g = geometry([*base, "-adxv", "-Xbeam", "1", "-Ybeam", "0.5"])
    # ADXV counts Y from the other edge of the 2 mm high detector; axes x, -y
    assert (g.Fbeam, g.Sbeam) == pytest.approx((1e-3, 1.5e-3), abs=1e-15)
    assert g.pix0 == pytest.approx((-1e-3, 1.5e-3, 0.05), abs=1e-15)
    g = geometry([*base, "-xds", "-ORGX", "10.5", "-ORGY", "4"])
    assert (g.Fclose, g.Sclose) == pytest.approx((1.0e-3, 0.35e-3), abs=1e-15)
    assert g.pix0 == pytest.approx((-1.0e-3, -0.35e-3, 0.05), abs=1e-15)
    assert (g.ORGX, g.ORGY) == pytest.approx((10.5, 4.0), abs=1e-9)
    assert g.pivot == Pivot.SAMPLE


@pytest.mark.parametrize("conv", ["MOSFLM", "XDS", "DIALS", "ADXV"])
def test_pivot_invariants(conv: str) -> None:
    """BEAM: the beam spot stays where it was put; SAMPLE: the near point and close distance stay."""
    sample = IMPOSED_PIVOT[conv] == Pivot.SAMPLE
    base = [*CELL, f"-{conv.lower()}", *DETECTOR, "-close_distance" if sample else "-distance", "80"]
    flat = geometry(base)
    turned = geometry([*base, "-detector_rotx", "6", "-detector_roty", "2", "-detector_rotz", "-3"])
    if IMPOSED_PIVOT[conv] == Pivot.BEAM:
        assert (turned.Fbeam, turned.Sbeam, turned.distance) == pytest.approx(
            (flat.Fbeam, flat.Sbeam, flat.distance), abs=1e-12)
        spot = vec(turned.pix0) + turned.Fbeam * vec(turned.fdet) + turned.Sbeam * vec(turned.sdet)
        assert_allclose(spot, turned.distance * vec(turned.beam), atol=1e-12)
    else:
        assert (turned.Fclose, turned.Sclose, turned.close_distance) == pytest.approx(
            (flat.Fclose, flat.Sclose, flat.close_distance), abs=1e-12)
        foot = vec(turned.pix0) + turned.Fclose * vec(turned.fdet) + turned.Sclose * vec(turned.sdet)
        assert_allclose(foot, turned.close_distance * vec(turned.odet), atol=1e-12)
    for g in (flat, turned):
        frame = np.array([g.fdet, g.sdet, g.odet])
        assert_allclose(frame @ frame.T, np.eye(3), atol=1e-12)


# ---------------------------------------------------------------------------
# CUSTOM convention: both pivots

CUSTOM_AXES = ((0.02, 0.01, -1), (1, 0.01, 0), (0.01, -1, 0), (0.03, 0.2, 7), (0, 1, 0), (0, 1, 0), (-1, 0, 0))


def custom_args() -> list[str]:
    beam, f, s, o, tt, polar, spindle = CUSTOM_AXES
    out = []
    for flag, v in (("-beam_vector", beam), ("-fdet_vector", f), ("-sdet_vector", s), ("-odet_vector", o),
                    ("-twotheta_axis", tt), ("-polar_vector", polar), ("-spindle_axis", spindle)):
        out += [flag, *(str(x) for x in v)]
    return out


@pytest.mark.parametrize("pivot", [Pivot.BEAM, Pivot.SAMPLE])
@pytest.mark.parametrize("rotated", [False, True], ids=["flat", "rotated"])
def test_custom_convention_pivots(pivot: Pivot, rotated: bool) -> None:
    # the normal given is not a unit vector: rebuilt from fast x slow
    args = [*CELL, *custom_args(), *DETECTOR, "-distance", "120", "-close_distance", "110",
            "-Xbeam", "3.3", "-Ybeam", "1.7"]
    kw: dict = {}
    if rotated:
        args += ["-detector_rotx", "-2", "-detector_roty", "3", "-detector_rotz", "1", "-twotheta", "12"]
        kw.update(rot=(-2 * DEG, 3 * DEG, 1 * DEG), twotheta=12 * DEG)
    args += ["-pivot", pivot.name.lower()]
    g = geometry(args)
    assert g.convention == Convention.CUSTOM
    want = model("CUSTOM", px=PX, nf=NF, ns=NS, distance=0.12, close=0.11, X=3.3e-3, Y=1.7e-3, pivot=pivot,
                 axes=CUSTOM_AXES, **kw)
    want["twotheta_axis"] = vec(CUSTOM_AXES[4])
    assert_geometry(g, want)


def test_pivot_flag_only_matters_in_custom() -> None:
    """Named conventions impose their pivot (as the reference does); CUSTOM obeys -pivot."""
    g = geometry([*CELL, *DETECTOR, "-close_distance", "95", "-pivot", "sample"])
    assert g.pivot == Pivot.BEAM
    g = geometry([*CELL, "-xds", *DETECTOR, "-distance", "95", "-pivot", "beam"])
    assert g.pivot == Pivot.SAMPLE
    g = geometry([*CELL, *custom_args(), *DETECTOR, "-close_distance", "95"])
    assert g.pivot == Pivot.SAMPLE
    g = geometry([*CELL, *custom_args(), *DETECTOR, "-close_distance", "95", "-Xbeam", "1"])
    assert g.pivot == Pivot.BEAM


# ---------------------------------------------------------------------------
# the detector origin given directly


@pytest.mark.parametrize("rotated", [False, True], ids=["flat", "rotated"])
def test_pix0_vector_metres_and_millimetres(rotated: bool) -> None:
    """-pix0_vector is in metres, -pix0_vector_mm in millimetres; rotations apply after either."""
    rot = ["-detector_rotx", "4", "-detector_roty", "-1", "-detector_rotz", "2", "-twotheta", "9"] if rotated else []
    in_m = geometry([*CELL, *DETECTOR, "-pix0_vector", "0.1", "0.0032", "-0.0021", *rot])
    in_mm = geometry([*CELL, *DETECTOR, "-pix0_vector_mm", "100", "3.2", "-2.1", *rot])
    for key in ("pix0", "fdet", "sdet", "odet", "Fbeam", "Sbeam", "Fclose", "Sclose", "distance",
                "close_distance", "ORGX", "ORGY", "dials_origin"):
        assert_allclose(vec(getattr(in_mm, key)), vec(getattr(in_m, key)), rtol=1e-12, atol=1e-15, err_msg=key)
    # the default CUSTOM axes are MOSFLM's; the origin is turned like the detector
    kw = {"rot": (4 * DEG, -DEG, 2 * DEG), "twotheta": 9 * DEG} if rotated else {}
    axes = (AXES["MOSFLM"][0], *AXES["MOSFLM"][1:4], (0, 1, 0), (0, 0, 1), (0, 0, 1))
    want = model("CUSTOM", px=PX, nf=NF, ns=NS, pivot=Pivot.BEAM, axes=axes, pix0=(0.1, 0.0032, -0.0021), **kw)
    assert in_m.convention == Convention.CUSTOM
    assert_geometry(in_m, {k: want[k] for k in ("pix0", "fdet", "sdet", "odet", "Fbeam", "Sbeam", "Fclose",
                                                "Sclose", "distance", "close_distance", "dials_origin")})
    if not rotated:
        # flat: the origin is (distance, Sclose, -Fclose) exactly as typed
        assert (in_m.Fclose, in_m.Sclose, in_m.close_distance) == pytest.approx((0.0021, 0.0032, 0.1), abs=1e-15)


def test_pix0_overrides_beam_centre_and_distance() -> None:
    a = geometry([*CELL, *DETECTOR, "-pix0_vector_mm", "100", "3.2", "-2.1", "-Xbeam", "9", "-distance", "300"])
    b = geometry([*CELL, *DETECTOR, "-pix0_vector_mm", "100", "3.2", "-2.1"])
    assert_allclose(vec(a.pix0), vec(b.pix0), atol=1e-15)
    assert a.distance == pytest.approx(0.1, abs=1e-15)


# ---------------------------------------------------------------------------
# what the reference printed for golden cases

_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"


def printed(case: str) -> dict[str, np.ndarray]:
    """``key=value`` facts from a golden case's stdout (vectors for the axis lines)."""
    text = (GOLDEN / case / "stdout.txt").read_text()
    facts: dict[str, np.ndarray] = {}
    for line in text.splitlines():
        m = re.match(rf"\s*([A-Za-z_ -]+?)=\s*((?:{_NUMBER}\s*)+)$", line)
        if m and len(m.group(2).split()) > 1:
            facts[m.group(1).strip()] = vec([float(x) for x in m.group(2).split()])
            continue
        for key, value in re.findall(rf"(\w+)=\s*({_NUMBER})", line):
            facts.setdefault(key, vec(float(value)))
    return facts


def close_to_print(got, want, key: str) -> None:
    """Within the rounding of %g: half a unit in the sixth significant digit of each printed number."""
    got, want = np.atleast_1d(vec(got)), np.atleast_1d(want)
    assert got.shape == want.shape, key
    for x, p in zip(got, want, strict=True):
        # a printed 0 (or a tiny number) carries the rounding of the vector's largest entry
        scale = max(abs(p), 1e-6 * float(np.abs(want).max()))
        ulp = 0.5 * 10.0 ** (math.floor(math.log10(scale)) - 5) if scale > 0 else 1e-12
        assert abs(x - p) <= ulp * 1.000001 + 1e-15, f"{key}: {x!r} vs printed {p!r}"


GOLDEN_GEOMETRY = ["pivot_sample_close", "dials_twotheta", "xds_orgx", "custom_vectors_pix0", "pilatus_roi",
                   "adxv_beam", "denzo_beam", "mosflm_rotations", "detsize_rect", "pilatus_beam_center"]


@pytest.mark.parametrize("case", GOLDEN_GEOMETRY)
def test_golden_printed_geometry(case: str) -> None:
    g = geometry(load_case(case).args)
    facts = printed(case)
    for key in ("Fbeam", "Sbeam", "Fclose", "Sclose", "distance", "Xbeam", "Ybeam", "Xclose", "Yclose"):
        close_to_print(getattr(g, key), facts[key], key)
    close_to_print(g.dials_origin, facts["dials origin"], "dials origin")
    close_to_print(g.fdet, facts["DIRECTION_OF_DETECTOR_X-AXIS"], "fdet")
    close_to_print(g.sdet, facts["DIRECTION_OF_DETECTOR_Y-AXIS"], "sdet")
    close_to_print(g.odet, facts["DIRECTION_OF_DETECTOR_Z-AXIS"], "odet")
    close_to_print(g.spindle, facts["spindle ROTATION_AXIS"], "spindle")
    close_to_print(g.beam, facts["INCIDENT_BEAM_DIRECTION"], "beam")


def test_golden_pivot_sample_close_numbers() -> None:
    g = geometry(load_case("pivot_sample_close").args)
    want = {"Fbeam": 0.012909, "Sbeam": 0.0130284, "Fclose": 0.0138223, "Sclose": 0.0260892,
            "distance": 0.0940755}
    for key, value in want.items():
        close_to_print(getattr(g, key), vec(value), key)
    # MOSFLM imposes the beam pivot: the model of the convention gives the same detector
    expected = model("MOSFLM", px=1e-4, nf=256, ns=256, close=0.095, xclose=0.011, yclose=0.013,
                     rot=(4 * DEG, 0, 0), twotheta=8 * DEG)
    assert_geometry(g, expected)


def test_golden_custom_vectors_normal_is_rebuilt() -> None:
    case = load_case("custom_vectors_pix0")
    g = geometry(case.args)
    f, s = vec(g.fdet), vec(g.sdet)
    normal = np.cross(vec([0.999982, -0.005998, -0.000118]), vec([-0.005998, -0.999970, -0.004913]))
    assert_allclose(vec(g.odet), normal / np.linalg.norm(normal), atol=1e-12)
    assert_allclose(np.cross(f, s) / np.linalg.norm(np.cross(f, s)), vec(g.odet), atol=1e-12)
    assert g.pix0 == pytest.approx((-0.0064, 0.0064, -0.1), abs=1e-15)
    assert g.dials_origin == pytest.approx((-100.0, 6.4, 6.4), abs=1e-12)


def test_golden_pilatus_roi_origin_from_mm() -> None:
    g = geometry(load_case("pilatus_roi").args)
    assert g.pix0 == pytest.approx((-0.216336293, 0.215205512, -0.230200866), abs=1e-15)
    assert g.convention == Convention.CUSTOM
    assert (g.fpixels, g.spixels) == (2463, 2527)
    assert tuple(g.roi) == (600, 800, 950, 1150)


def test_twotheta_about_the_convention_axis() -> None:
    """DIALS two-theta turns about +y; the sample pivot keeps the close distance."""
    g = geometry(load_case("dials_twotheta").args)
    t = 5 * DEG
    T = about((0, 1, 0), t)
    assert_allclose(vec(g.fdet), T @ vec([1, 0, 0]), atol=1e-15)
    assert_allclose(vec(g.odet), T @ vec([0, 0, 1]), atol=1e-15)
    assert g.close_distance == pytest.approx(0.08, abs=1e-15)
    assert_allclose(vec(g.pix0), T @ vec([-0.015, -0.015, 0.08]), atol=1e-15)


# ---------------------------------------------------------------------------
# crystal


def reciprocal_frame(a: float, b: float, c: float, al: float, be: float, ga: float) -> np.ndarray:
    """Rows a*, b*, c* (1/A): a* along x, b* in the x-y plane, from the metric tensor."""
    ca, cb, cg = (math.cos(x * DEG) for x in (al, be, ga))
    G = np.array([[a * a, a * b * cg, a * c * cb], [a * b * cg, b * b, b * c * ca], [a * c * cb, b * c * ca, c * c]])
    Gs = np.linalg.inv(G)  # metric of the reciprocal lattice
    la, lb, lc = np.sqrt(np.diag(Gs))
    cga = Gs[0, 1] / (la * lb)
    cbe = Gs[0, 2] / (la * lc)
    cal = Gs[1, 2] / (lb * lc)
    sga = math.sqrt(1 - cga * cga)
    cy = (cal - cbe * cga) / sga
    return np.array([[la, 0, 0], [lb * cga, lb * sga, 0],
                     [lc * cbe, lc * cy, lc * math.sqrt(1 - cbe * cbe - cy * cy)]])


def reference_frame(a: float, b: float, c: float, al: float, be: float, ga: float) -> np.ndarray:
    """Rows a*, b*, c* (1/A) as the reference builds its default orientation.

    Lengths |a*| = b c sin(alpha) / V and the cosines of the reciprocal angles are
    the textbook ones, but the z component of c* is taken as
    |c*| V / (a b c sin(gamma*)) where the lattice needs 1 / (V |a*| |b*| sin(gamma*)).
    The two agree when V = a b c sin(alpha) sin(beta) sin(gamma) (every cell with
    two right angles); a triclinic cell comes out slightly sheared.
    """
    al, be, ga = (x * DEG for x in (al, be, ga))
    ca, cb, cg = math.cos(al), math.cos(be), math.cos(ga)
    V = a * b * c * math.sqrt(1 - ca * ca - cb * cb - cg * cg + 2 * ca * cb * cg)
    la, lb, lc = b * c * math.sin(al) / V, c * a * math.sin(be) / V, a * b * math.sin(ga) / V
    sgs = c / V / la / lb
    cas = (cb * cg - ca) / (math.sin(be) * math.sin(ga))
    cbs = (cg * ca - cb) / (math.sin(ga) * math.sin(al))
    cgs = (ca * cb - cg) / (math.sin(al) * math.sin(be))
    return np.array([[la, 0, 0], [lb * cgs, lb * sgs, 0],
                     [lc * cbs, lc * (cas - cbs * cgs) / sgs, lc * V / (a * b * c * sgs)]])


def reference_axes(star: np.ndarray, cell: tuple) -> tuple[np.ndarray, np.ndarray]:
    """Real axes (A) along b* x c*, ... with the cell's lengths; reciprocal axes back from them
    with the volume of the cell's angles (as the reference completes a cell)."""
    a, b, c, al, be, ga = cell
    ca, cb, cg = (math.cos(x * DEG) for x in (al, be, ga))
    V = a * b * c * math.sqrt(1 - ca * ca - cb * cb - cg * cg + 2 * ca * cb * cg)
    dirs = np.array([np.cross(star[1], star[2]), np.cross(star[2], star[0]), np.cross(star[0], star[1])])
    real = dirs / np.linalg.norm(dirs, axis=1)[:, None] * np.array([a, b, c])[:, None]
    recip = np.array([np.cross(real[1], real[2]), np.cross(real[2], real[0]), np.cross(real[0], real[1])]) / V
    return real, recip


def angle(u: np.ndarray, v: np.ndarray) -> float:
    return math.degrees(math.acos(u @ v / np.linalg.norm(u) / np.linalg.norm(v)))


@pytest.mark.parametrize("cell", [(50.0, 60.0, 70.0, 90.0, 90.0, 90.0), (61.0, 71.0, 81.0, 90.0, 104.0, 90.0),
                                  (80.0, 80.0, 120.0, 90.0, 90.0, 120.0)],
                         ids=["orthorhombic", "monoclinic", "hexagonal"])
def test_cell_axes_textbook(cell: tuple) -> None:
    """Cells with two right angles: exact reciprocity, lengths, angles and volume."""
    g = geometry(["-cell", *(str(x) for x in cell), "-default_F", "1"])
    star = reciprocal_frame(*cell)
    assert_allclose(reference_frame(*cell), star, rtol=1e-12, atol=1e-17)
    assert_allclose(np.array([g.a_star, g.b_star, g.c_star]), star, rtol=1e-12, atol=1e-17)
    real = np.array([g.a, g.b, g.c]) * 1e10  # Angstrom
    assert_allclose(real @ star.T, np.eye(3), atol=1e-12)  # a.a* = 1, a.b* = 0, ...
    assert_allclose(real, np.linalg.inv(star).T, rtol=1e-10, atol=1e-10)
    assert_allclose(np.linalg.norm(real, axis=1), cell[:3], rtol=1e-12)
    assert angle(real[1], real[2]) == pytest.approx(cell[3], abs=1e-9)
    assert angle(real[0], real[2]) == pytest.approx(cell[4], abs=1e-9)
    assert angle(real[0], real[1]) == pytest.approx(cell[5], abs=1e-9)
    assert g.volume == pytest.approx(abs(np.linalg.det(real)), rel=1e-12)
    assert tuple(g.cell) == pytest.approx(cell, rel=1e-12)
    assert tuple(g.recip_cell[:3]) == pytest.approx(tuple(np.linalg.norm(star, axis=1)), rel=1e-12)
    assert g.recip_cell[3] == pytest.approx(angle(star[1], star[2]), abs=1e-9)
    assert g.recip_cell[4] == pytest.approx(angle(star[0], star[2]), abs=1e-9)
    assert g.recip_cell[5] == pytest.approx(angle(star[0], star[1]), abs=1e-9)
    assert not g.misset_applied


TRICLINIC = (70.0, 80.0, 90.0, 75.0, 85.0, 95.0)


def test_triclinic_cell_axes() -> None:
    """A triclinic cell as the reference builds it: lengths exact, angles slightly off (as it prints)."""
    g = geometry(["-cell", *(str(x) for x in TRICLINIC), "-default_F", "1"])
    real_want, star_want = reference_axes(reference_frame(*TRICLINIC), TRICLINIC)
    real = np.array([g.a, g.b, g.c]) * 1e10
    star = np.array([g.a_star, g.b_star, g.c_star])
    assert_allclose(real, real_want, rtol=1e-12, atol=1e-10)
    assert_allclose(star, star_want, rtol=1e-12, atol=1e-17)
    assert_allclose(np.linalg.norm(real, axis=1), TRICLINIC[:3], rtol=1e-12)
    # a* is perpendicular to b and c, ...; a.a* = b.b* = c.c* = det / V(angles), 1.0002 here
    dots = real @ star.T
    assert_allclose(dots - np.diag(np.diag(dots)), 0.0, atol=1e-14)
    ca, cb, cg = (math.cos(x * DEG) for x in TRICLINIC[3:])
    volume = 70 * 80 * 90 * math.sqrt(1 - ca * ca - cb * cb - cg * cg + 2 * ca * cb * cg)
    assert_allclose(np.diag(dots), abs(np.linalg.det(real)) / volume, rtol=1e-12)
    assert abs(np.diag(dots)[0] - 1) < 1e-3
    assert g.volume == pytest.approx(volume, rel=1e-12)
    # the reported cell is the cell the axes really span: what the reference printed
    assert g.cell[3] == pytest.approx(angle(real[1], real[2]), abs=1e-9)
    assert g.cell[4] == pytest.approx(angle(real[0], real[2]), abs=1e-9)
    assert g.cell[5] == pytest.approx(angle(real[0], real[1]), abs=1e-9)
    stdout = load_case("triclinic_misset").stdout()  # same cell
    for label, values in (("Unit Cell", g.cell), ("Recp Cell", g.recip_cell)):
        shown = vec([float(x) for x in re.search(rf"{label}: (.*)", stdout).group(1).split()])
        close_to_print(values, shown, label)
    assert all(abs(got - want) < 0.05 for got, want in zip(g.cell[3:], TRICLINIC[3:], strict=True))


def test_triclinic_misset_against_golden() -> None:
    """-misset rx ry rz turns the cell about lab x, then y, then z."""
    case = load_case("triclinic_misset")
    g = geometry(case.args)
    U = xyz(10 * DEG, 20 * DEG, 30 * DEG)
    real_want, star_want = reference_axes(reference_frame(*TRICLINIC) @ U.T, TRICLINIC)
    assert_allclose(np.array([g.a_star, g.b_star, g.c_star]), star_want, rtol=1e-10, atol=1e-16)
    assert_allclose(np.array([g.a, g.b, g.c]) * 1e10, real_want, rtol=1e-10, atol=1e-10)
    assert_allclose(vec(g.misset), vec([10, 20, 30]) * DEG, rtol=1e-12)
    assert g.misset_applied
    # the vectors the reference printed (8 decimals; columns a, b, c)
    text = case.stdout().splitlines()
    start = next(i for i, line in enumerate(text) if line.startswith("real-space cell vectors"))
    real_rows = [[float(x) for x in text[start + 2 + k].split()[1:]] for k in range(3)]
    recip_rows = [[float(x) for x in text[start + 7 + k].split()[1:]] for k in range(3)]
    assert_allclose(np.array([g.a, g.b, g.c]).T * 1e10, real_rows, atol=6e-9)
    assert_allclose(np.array([g.a_star, g.b_star, g.c_star]).T, recip_rows, atol=6e-9)


@pytest.mark.parametrize("cell", [(50.0, 60.0, 70.0, 90.0, 90.0, 90.0), TRICLINIC], ids=["orthorhombic", "triclinic"])
def test_random_misset_is_a_rotation_of_the_cell(cell: tuple) -> None:
    base = ["-cell", *(str(x) for x in cell), "-default_F", "1", "-misset", "random"]
    g = geometry([*base, "-misset_seed", "4242"])
    again = geometry([*base, "-misset_seed", "4242"])
    other = geometry([*base, "-misset_seed", "17"])
    star0 = reference_axes(reference_frame(*cell), cell)[1]
    star = np.array([g.a_star, g.b_star, g.c_star])
    U = np.linalg.solve(star0, star).T  # star = star0 @ U.T
    assert_allclose(U @ U.T, np.eye(3), atol=1e-12)
    assert np.linalg.det(U) == pytest.approx(1.0, abs=1e-12)
    assert_allclose(U, xyz(*g.misset), atol=1e-12)  # the reported angles describe the rotation
    assert g.misset_applied
    assert_allclose(vec(again.a_star), vec(g.a_star), rtol=0, atol=0)
    assert not np.allclose(vec(other.a_star), vec(g.a_star))


def test_matrix_file_gives_reciprocal_axes() -> None:
    A = np.loadtxt(GOLDEN / "inputs" / "A_hex.mat", max_rows=3)
    lam = 1.3
    g = geometry(["-mat", "inputs/A_hex.mat", "-lambda", str(lam), "-default_F", "1"])
    star = np.array([g.a_star, g.b_star, g.c_star])
    assert_allclose(star, (A / lam).T, rtol=1e-9)  # columns of A are a*, b*, c* times lambda
    real = np.array([g.a, g.b, g.c]) * 1e10
    assert_allclose(real @ star.T, np.eye(3), atol=1e-10)
    assert g.volume == pytest.approx(abs(np.linalg.det(real)), rel=1e-10)


def test_N_from_samplesize() -> None:
    g = geometry(load_case("samplesize").args)
    assert tuple(g.N) == (74.0, 74.0, 74.0)  # what the reference printed: 74x74x74 cells
    size = (0.5e-6, 0.61e-6, 0.77e-6)
    args = ["-cell", *(str(x) for x in TRICLINIC), "-default_F", "1", "-N", "3",
            "-sample_thick", str(size[0] * 1e3), "-sample_width", str(size[1] * 1e3),
            "-sample_height", str(size[2] * 1e3)]
    g = geometry(args)
    lengths = vec(TRICLINIC[:3]) * 1e-10
    want = np.ceil(vec(size) / lengths)
    assert_allclose(vec(g.N), want)
    assert_allclose(vec(g.xtal_size), want * lengths, rtol=1e-12)
    # a beam narrower than the crystal clips its height and width (b and c), not its thickness
    g = geometry([*args, "-beamsize", "0.0003"])
    assert_allclose(vec(g.N), np.ceil(vec([size[0], 0.3e-6, 0.3e-6]) / lengths))
    # without a size, -N rules; zero cells count as one
    g = geometry(["-cell", "50", "-default_F", "1", "-Na", "3", "-Nb", "0", "-Nc", "7"])
    assert tuple(g.N) == (3.0, 1.0, 7.0)


# ---------------------------------------------------------------------------
# sampling: sources and phi steps


def plan(args: list[str]) -> Plan:
    return Plan(config(args))


def expected_sources(hr, hs, hn, vr, vs, vn, disp, dstep, dn, lam, round_div, beam, polar):
    beam, polar = vec(beam), vec(polar)
    vert = np.cross(beam, polar)
    rows = []
    for i in range(hn):
        for j in range(vn):
            h = hs * i - hr / 2
            v = vs * j - vr / 2
            if round_div:
                t = (h * h - hs * hs / 4 * (1 - hn % 2)) / hr / hr + (v * v - vs * vs / 4 * (1 - vn % 2)) / vr / vr
                if t * 4 > 1.1:
                    continue
            d = about(vert, h) @ about(polar, v) @ (-beam)
            rows += [[*d, 0.0, lam * (1 + dstep * k - disp / 2)] for k in range(dn)]
    out = np.array(rows)
    out[:, 3] = 1.0 / len(rows)
    return out


def test_sources_square_divergence() -> None:
    p = plan(load_case("divergence_square").args)  # -divergence 1.5 -divsteps 3 -square_div
    step = 1.5e-3 / 2
    want = expected_sources(1.5e-3, step, 3, 1.5e-3, step, 3, 0.0, 0.0, 1, 1e-10, False, (1, 0, 0), (0, 0, 1))
    assert p.sources.shape == (9, 5)
    assert_allclose(p.sources, want, rtol=1e-12, atol=1e-15)
    g = p.geometry
    assert (g.hdivsteps, g.vdivsteps, g.divsteps, g.sources) == (3, 3, 9, 9)
    assert (g.hdivstep, g.vdivstep) == pytest.approx((step, step), rel=1e-12)


def test_sources_round_divergence_against_golden() -> None:
    case = load_case("divergence_round")  # -hdivrange 2 -vdivrange 2 -hdivsteps 5 -vdivsteps 5
    p = plan(case.args)
    want = expected_sources(2e-3, 0.5e-3, 5, 2e-3, 0.5e-3, 5, 0.0, 0.0, 1, 1e-10, True, (1, 0, 0), (0, 0, 1))
    assert len(want) == 13
    assert re.search(r"created a total of 13 sources", case.stdout())
    assert_allclose(p.sources, want, rtol=1e-12, atol=1e-15)


def test_sources_dispersion_against_golden() -> None:
    case = load_case("dispersion")  # -dispersion 5 -dispsteps 5
    p = plan(case.args)
    lam = 1e-10 * (1 + 0.05 / 4 * np.arange(5) - 0.05 / 2)
    assert_allclose(p.sources[:, 4], lam, rtol=1e-14)
    printed_lambdas = [float(x) for x in re.findall(r"lambda\d+ = (\S+)", case.stdout())]
    assert_allclose(p.sources[:, 4], printed_lambdas, rtol=1e-12)
    assert_allclose(p.sources[:, :3], np.tile([-1.0, 0.0, 0.0], (5, 1)), atol=0)
    assert_allclose(p.sources[:, 3], 0.2)
    # dispersion alone: two wavelengths at the edges of the band
    p = plan([*CELL, "-lambda", "1.5", "-dispersion", "2"])
    assert_allclose(p.sources[:, 4], 1.5e-10 * vec([0.99, 1.01]), rtol=1e-14)


def test_sources_divergence_alone_and_with_dispersion_in_xds() -> None:
    """-divergence alone: step = range, two steps each way; XDS beam along z, E-vector along x."""
    p = plan([*CELL, "-xds", "-divergence", "1", "-dispersion", "1", "-dispsteps", "3", "-lambda", "2"])
    want = expected_sources(1e-3, 1e-3, 2, 1e-3, 1e-3, 2, 0.01, 0.005, 3, 2e-10, True, (0, 0, 1), (1, 0, 0))
    assert p.sources.shape == (12, 5)
    assert_allclose(p.sources, want, rtol=1e-12, atol=1e-15)


def test_sources_from_an_array() -> None:
    """Missing entries of a source list take the defaults: opposite the beam, weight 1, lambda0."""
    from pybragg.inputs import Inputs

    src = vec([[0.0, 0.0, -10.0, np.nan, np.nan], [np.nan, np.nan, np.nan, 2.0, 1.1e-10], [3.0, 4.0, 0.0, 1, 9e-11]])
    p = Plan(config([*CELL, "-lambda", "1.2"]), Inputs(sources=src))
    want = vec([[0, 0, -1, 1, 1.2e-10], [-1, 0, 0, 2, 1.1e-10], [0.6, 0.8, 0, 1, 9e-11]])
    assert_allclose(p.sources, want, rtol=1e-14, atol=1e-16)
    assert p.geometry.sources == 3


PHI_RULES = [
    ([], 1, 0.0, 0.0),
    (["-phistep", "0.5"], 2, 0.5, 0.5),
    (["-osc", "3"], 2, 3.0, 1.5),
    (["-osc", "2.2", "-phistep", "0.5"], 5, 2.2, 0.5),
    (["-osc", "2", "-phistep", "0.5"], 4, 2.0, 0.5),
    (["-phisteps", "4"], 4, 1.0, 0.25),
    (["-phisteps", "4", "-phistep", "0.3"], 2, 0.3, 0.3),
    (["-phisteps", "4", "-osc", "2"], 4, 2.0, 0.5),
    (["-phisteps", "0"], 1, 1.0, 1.0),
    (["-phisteps", "3", "-osc", "2", "-phistep", "0.1"], 3, 2.0, 0.1),
]


@pytest.mark.parametrize("flags, steps, osc, step", PHI_RULES, ids=[" ".join(r[0]) or "none" for r in PHI_RULES])
def test_phi_steps(flags: list[str], steps: int, osc: float, step: float) -> None:
    g = geometry([*CELL, "-phi", "10", *flags])
    assert g.phisteps == steps
    assert g.osc == pytest.approx(osc * DEG, rel=1e-12, abs=1e-15)
    assert g.phistep == pytest.approx(step * DEG, rel=1e-12, abs=1e-15)
    assert g.phi0 == pytest.approx(10 * DEG, rel=1e-12)


@pytest.mark.parametrize("case", ["phi_osc", "phi0_steps"])
def test_phi_steps_against_golden(case: str) -> None:
    c = load_case(case)
    g = geometry(c.args)
    m = re.search(r"(\d+) phi steps from (\S+) to (\S+) degrees", c.stdout())
    assert g.phisteps == int(m.group(1))
    assert math.degrees(g.phi0) == pytest.approx(float(m.group(2)), abs=1e-9)
    assert math.degrees(g.phi0 + g.osc) == pytest.approx(float(m.group(3)), abs=1e-9)


def test_result_phi_angles_and_spindle() -> None:
    """The spindle angle of each phi step is phi0 + i * step; DIALS spins about +y."""
    from pybragg.simulator import Simulator

    sim = Simulator(config([*CELL, "-detpixels", "4", "-phi", "5", "-osc", "3", "-phisteps", "3", "-dials"]))
    result = sim.run()
    assert_allclose(result.phi_angles, vec([5, 6, 7]) * DEG, rtol=1e-12)
    assert_allclose(vec(result.geometry.spindle), vec([0, 1, 0]))
