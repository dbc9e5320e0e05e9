"""Structure factors from MTZ, structure-factor mmCIF and coordinate files (read with gemmi).

* An MTZ that gemmi writes from an asymmetric unit and the P1 text table made independently
  (every h k l of the sphere, its amplitude from the same symmetric formula, the centring's
  absences left out) give the same table and the same image; so does an sf-mmCIF.
* Intensities become amplitudes with a warning; F(+)/F(-) give Bijvoet mates; ``-hkl_column``
  chooses; the cell and space group come from the file (and reach the experiment list).
* A small PDB model's image equals the image of a text table computed here, independently, by
  direct summation over its atoms and their symmetry mates (IT92 form factors, occupancy,
  isotropic B); with ``-pdb_anomalous`` the Bijvoet mates differ by the anomalous terms.
* The text reader warns about an asymmetric unit; bad files are one-line errors.
"""

from __future__ import annotations

import math
import os

import gemmi
import numpy as np
import pytest

import pybragg
from pybragg.cli.main import main
from pybragg.flags import from_args
from pybragg.io.hkl import HKLWarning, read_fdump, read_hkl

CELL = (60.0, 70.0, 50.0, 90.0, 105.0, 90.0)
GROUP = "C 1 2 1"
DMIN = 4.0
DETECTOR = ["-N", "4", "-pixel", "0.4", "-detpixels", "48", "-distance", "60", "-misset", "10", "20", "30",
            "-lambda", "1.0", "--backend", "c", "-noprogress", "-oversample", "1"]
NO_FILES = ["-floatfile", "f.bin", "-intfile", "i.img", "-nopgm", "-nonoise"]


def amplitude(h: int, k: int, l_: int) -> float:
    """A value with the symmetry of 2/m (b unique): the same for (h,k,l), (-h,k,-l), (h,-k,l), (-h,-k,-l)."""
    return 10.0 + (3 * abs(k) + 5 * ((h * l_) % 7) + abs(h) + 2 * abs(l_)) % 17


def inverse_d2(h, k, l_, cell=CELL) -> np.ndarray:
    """1/d^2 from the reciprocal metric (computed here, not by gemmi)."""
    a, b, c = cell[:3]
    al, be, ga = (math.radians(x) for x in cell[3:])
    G = np.array([[a * a, a * b * math.cos(ga), a * c * math.cos(be)],
                  [a * b * math.cos(ga), b * b, b * c * math.cos(al)],
                  [a * c * math.cos(be), b * c * math.cos(al), c * c]])
    Gs = np.linalg.inv(G)
    hkl = np.stack([h, k, l_], axis=-1).astype(float)
    return np.einsum("...i,ij,...j->...", hkl, Gs, hkl)


def p1_sphere(dmin: float = DMIN) -> list[tuple[int, int, int]]:
    """Every reflection of C2 out to dmin but 0 0 0, h + k even (the C-centring's absences left out)."""
    n = 30
    h, k, l_ = np.meshgrid(*(np.arange(-n, n + 1),) * 3, indexing="ij")
    keep = (inverse_d2(h, k, l_) <= 1.0 / dmin**2) & ((h + k) % 2 == 0) & ((h != 0) | (k != 0) | (l_ != 0))
    return list(zip(h[keep].tolist(), k[keep].tolist(), l_[keep].tolist()))


def write_text_table(path, rows) -> None:
    path.write_text("".join(f"{h} {k} {l_} {F:g}\n" for (h, k, l_), F in rows))


def make_mtz(path, columns: dict[str, tuple[str, object]], dmin: float = DMIN):
    """An MTZ written by gemmi: the C2 asymmetric unit out to dmin, one column per entry (type, values(hkl))."""
    mtz = gemmi.Mtz(with_base=True)
    mtz.spacegroup = gemmi.SpaceGroup(GROUP)
    mtz.set_cell_for_all(gemmi.UnitCell(*CELL))
    mtz.add_dataset("sim")
    asu = gemmi.make_miller_array(mtz.cell, mtz.spacegroup, dmin)
    data = [asu.astype(np.float32)]
    for label, (kind, values) in columns.items():
        mtz.add_column(label, kind)
        data.append(np.array([values(*map(int, x)) for x in asu], dtype=np.float32)[:, None])
    mtz.set_data(np.hstack(data))
    mtz.write_to_file(str(path))
    return asu


def run(tmp_path, monkeypatch, args: list[str]) -> int:
    monkeypatch.chdir(tmp_path)
    return main(args)


def image(tmp_path) -> np.ndarray:
    return np.fromfile(tmp_path / "f.bin", dtype="<f4").reshape(48, 48)


def test_mtz_asu_and_independent_p1_table_give_the_same_image(tmp_path, monkeypatch) -> None:
    asu = make_mtz(tmp_path / "asu.mtz", {"FP": ("F", amplitude)})
    sphere = p1_sphere()
    assert len(sphere) > 3 * len(asu)
    write_text_table(tmp_path / "p1.hkl", [(x, amplitude(*x)) for x in sphere])
    write_text_table(tmp_path / "asu.hkl", [(tuple(map(int, x)), amplitude(*map(int, x))) for x in asu])
    with pytest.warns(HKLWarning, match="part of the sphere"):
        read_hkl(tmp_path / "asu.hkl")
    # the tables: the MTZ expanded to P1 holds exactly the independent table
    from_mtz = from_args(["-hkl", str(tmp_path / "asu.mtz"), *DETECTOR]).inputs
    text = read_hkl(tmp_path / "p1.hkl")
    assert from_mtz.hkl.count == text.count == len(sphere)
    assert (from_mtz.hkl.h_min, from_mtz.hkl.k_min, from_mtz.hkl.l_min) == (text.h_min, text.k_min, text.l_min)
    assert np.array_equal(from_mtz.hkl.F, text.F)
    assert from_mtz.space_group == GROUP and from_mtz.cell == pytest.approx(CELL)
    # the images: the MTZ gives the cell; the text table needs -cell
    assert run(tmp_path, monkeypatch, ["-hkl", "asu.mtz", *DETECTOR, *NO_FILES]) == 0
    mtz_image = image(tmp_path)
    cell = ["-cell", *(f"{x:g}" for x in CELL)]
    assert run(tmp_path, monkeypatch, ["-hkl", "p1.hkl", *cell, *DETECTOR, *NO_FILES]) == 0
    assert np.array_equal(mtz_image, image(tmp_path))
    assert mtz_image.max() > 0 and (mtz_image > 0.01 * mtz_image.max()).sum() > 20


def write_sf_cif(path, rows, label: str = "F_meas_au") -> None:
    lines = ["data_r1abcsf", "_cell.length_a 60", "_cell.length_b 70", "_cell.length_c 50", "_cell.angle_alpha 90",
             "_cell.angle_beta 105", "_cell.angle_gamma 90", "_symmetry.space_group_name_H-M 'C 1 2 1'", "loop_",
             "_refln.index_h", "_refln.index_k", "_refln.index_l", "_refln.status", f"_refln.{label}"]
    lines += [f"{h} {k} {l_} o {F:g}" for (h, k, l_), F in rows]
    path.write_text("\n".join(lines) + "\n")


def test_sf_mmcif_matches_the_mtz(tmp_path) -> None:
    asu = make_mtz(tmp_path / "asu.mtz", {"FP": ("F", amplitude)})
    write_sf_cif(tmp_path / "asu.cif", [(tuple(map(int, x)), amplitude(*map(int, x))) for x in asu])
    a = from_args(["-hkl", str(tmp_path / "asu.mtz"), *DETECTOR]).inputs.hkl
    b = from_args(["-hkl", str(tmp_path / "asu.cif"), *DETECTOR]).inputs.hkl
    assert np.array_equal(a.F, b.F) and a.count == b.count


def test_intensities_are_converted_with_a_warning(tmp_path) -> None:
    make_mtz(tmp_path / "i.mtz", {"IMEAN": ("J", lambda *x: amplitude(*x) ** 2)})
    make_mtz(tmp_path / "f.mtz", {"FP": ("F", amplitude)})
    with pytest.warns(HKLWarning, match="intensities"):
        from_i = from_args(["-hkl", str(tmp_path / "i.mtz"), *DETECTOR]).inputs.hkl
    from_f = from_args(["-hkl", str(tmp_path / "f.mtz"), *DETECTOR]).inputs.hkl
    assert np.allclose(from_i.F, from_f.F, rtol=1e-6)


def test_bijvoet_mates_from_f_plus_and_f_minus(tmp_path) -> None:
    make_mtz(tmp_path / "anom.mtz", {"F(+)": ("G", amplitude), "F(-)": ("G", lambda *x: amplitude(*x) + 0.25)})
    table = from_args(["-hkl", str(tmp_path / "anom.mtz"), *DETECTOR]).inputs.hkl

    def F(h, k, l_):
        return table.F[h - table.h_min, k - table.k_min, l_ - table.l_min]

    h, k, l_ = 3, 5, 2  # acentric in 2/m
    assert F(h, k, l_) == amplitude(h, k, l_) or F(h, k, l_) == amplitude(h, k, l_) + 0.25
    plus = F(h, k, l_)
    # the 2-fold (proper) keeps F(+); the Friedel mates and the mirror (improper) take F(-)
    assert F(-h, k, -l_) == plus
    assert F(-h, -k, -l_) == F(h, -k, l_) == pytest.approx(plus + 0.25 if plus == amplitude(h, k, l_) else plus - 0.25)


def test_hkl_column_chooses(tmp_path, monkeypatch, capsys) -> None:
    make_mtz(tmp_path / "two.mtz", {"FP": ("F", amplitude), "SIGFP": ("Q", lambda *x: 1.0),
                                    "FC": ("F", lambda *x: 2 * amplitude(*x))})
    fp = from_args(["-hkl", str(tmp_path / "two.mtz"), *DETECTOR]).inputs.hkl
    fc = from_args(["-hkl", str(tmp_path / "two.mtz"), "-hkl_column", "FC", *DETECTOR]).inputs.hkl
    present = fp.F != 0
    assert np.array_equal(fc.F[present], 2 * fp.F[present])
    assert run(tmp_path, monkeypatch, ["-hkl", "two.mtz", "-hkl_column", "FX", *DETECTOR, *NO_FILES]) == 1
    err = capsys.readouterr().err
    assert "FX" in err and "FP (F)" in err and "-hkl" in err
    assert run(tmp_path, monkeypatch, ["-hkl", "two.mtz", "-hkl_column", "SIGFP", *DETECTOR, *NO_FILES]) == 1
    assert "type Q" in capsys.readouterr().err


def test_cell_from_file_and_disagreeing_cell(tmp_path, monkeypatch, capsys) -> None:
    make_mtz(tmp_path / "asu.mtz", {"FP": ("F", amplitude)})
    result = from_args(["-hkl", str(tmp_path / "asu.mtz"), *DETECTOR]).run()
    assert result.geometry.cell == pytest.approx(CELL)
    rounded = from_args(["-hkl", str(tmp_path / "asu.mtz"), "-cell", "60.01", "70", "50", "90", "105", "90",
                         *DETECTOR]).run()
    assert rounded.geometry.cell[0] == pytest.approx(60.01)
    before = sorted(os.listdir(tmp_path))
    assert run(tmp_path, monkeypatch, ["-hkl", "asu.mtz", "-cell", "61", "70", "50", "90", "105", "90",
                                       *DETECTOR, *NO_FILES]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "-cell" in err[0] and "asu.mtz" in err[0]
    assert sorted(os.listdir(tmp_path)) == before


def test_space_group_reaches_the_experiment_list(tmp_path, monkeypatch) -> None:
    import json

    make_mtz(tmp_path / "asu.mtz", {"FP": ("F", amplitude)})
    assert run(tmp_path, monkeypatch, ["-hkl", "asu.mtz", *DETECTOR, *NO_FILES, "-exptfile", "a.expt"]) == 0
    doc = json.loads((tmp_path / "a.expt").read_text())
    assert doc["crystal"][0]["space_group_hall_symbol"] == " C 2y"
    lengths = sorted(np.linalg.norm(doc["crystal"][0][f"real_space_{x}"]) for x in "abc")
    assert lengths == pytest.approx(sorted(CELL[:3]))


# ---------------------------------------------------------------------------
# atomic models

MODEL_CELL = (20.0, 25.0, 30.0, 90.0, 90.0, 90.0)
P212121 = [  # (rotation rows, translation) of x, y, z: written out here, not taken from gemmi
    (np.eye(3), np.zeros(3)),
    (np.diag([-1.0, -1.0, 1.0]), np.array([0.5, 0.0, 0.5])),
    (np.diag([-1.0, 1.0, -1.0]), np.array([0.0, 0.5, 0.5])),
    (np.diag([1.0, -1.0, -1.0]), np.array([0.5, 0.5, 0.0])),
]
ATOMS = [  # element, fractional x y z, occupancy, B
    ("C", 0.11, 0.23, 0.05, 1.0, 12.0), ("N", 0.31, 0.07, 0.41, 1.0, 15.0), ("O", 0.42, 0.36, 0.22, 0.6, 20.0),
    ("S", 0.08, 0.44, 0.33, 1.0, 9.0), ("C", 0.27, 0.19, 0.29, 0.8, 30.0), ("SE", 0.19, 0.31, 0.13, 1.0, 18.0),
    ("O", 0.36, 0.12, 0.08, 1.0, 25.0),
]


def write_pdb(path, atoms=ATOMS) -> None:
    a, b, c, al, be, ga = MODEL_CELL
    lines = [f"CRYST1{a:9.3f}{b:9.3f}{c:9.3f}{al:7.2f}{be:7.2f}{ga:7.2f} P 21 21 21    4"]
    for i, (el, x, y, z, occ, bfac) in enumerate(atoms, start=1):
        X, Y, Z = x * a, y * b, z * c
        name = f" {el:<3s}" if len(el) == 1 else f"{el:<4s}"
        lines.append(f"HETATM{i:5d} {name} LIG A   1    {X:8.3f}{Y:8.3f}{Z:8.3f}{occ:6.2f}{bfac:6.2f}"
                     f"          {el:>2s}")
    lines.append("END")
    path.write_text("\n".join(lines) + "\n")


def direct_sum(hkl: np.ndarray, anomalous_energy: float | None = None) -> np.ndarray:
    """|F| by direct summation over the atoms and their P 21 21 21 mates (IT92 coefficients as tabulated)."""
    hkl = np.asarray(hkl, dtype=float)
    stol2 = inverse_d2(hkl[:, 0], hkl[:, 1], hkl[:, 2], MODEL_CELL) / 4.0
    total = np.zeros(len(hkl), dtype=complex)
    for el, x, y, z, occ, b in ATOMS:
        # the model's coordinates are written with three decimals in Angstrom
        frac = np.round(np.array([x, y, z]) * MODEL_CELL[:3], 3) / MODEL_CELL[:3]
        coef = gemmi.Element(el).it92
        f0 = sum(a * np.exp(-bb * stol2) for a, bb in zip(coef.a, coef.b)) + coef.c
        f = f0.astype(complex)
        if anomalous_energy is not None:
            fp, fpp = gemmi.cromer_liberman(gemmi.Element(el).atomic_number, anomalous_energy)
            f = f0 + fp + 1j * fpp
        dwf = np.exp(-b * stol2)
        for R, t in P212121:
            pos = R @ frac + t
            total += occ * f * dwf * np.exp(2j * np.pi * (hkl @ pos))
    return np.abs(total)


MODEL_DETECTOR = ["-N", "4", "-pixel", "0.4", "-detpixels", "48", "-distance", "50", "-misset", "10", "20", "30",
                  "-lambda", "1.0", "--backend", "c", "-noprogress", "-oversample", "1"]


def test_model_image_equals_an_independent_table(tmp_path, monkeypatch) -> None:
    write_pdb(tmp_path / "m.pdb")
    sim = from_args(["-pdb", str(tmp_path / "m.pdb"), *MODEL_DETECTOR])
    table = sim.inputs.hkl
    assert sim.inputs.space_group == "P 21 21 21"
    # the independent table: every h k l of a box well past the detector's corners
    n = 12
    h, k, l_ = (g.ravel() for g in np.meshgrid(*(np.arange(-n, n + 1),) * 3, indexing="ij"))
    keep = inverse_d2(h, k, l_, MODEL_CELL) <= 1.0 / 1.5**2
    absent = ((h == 0) & (k == 0) & (l_ % 2 == 1)) | ((h == 0) & (l_ == 0) & (k % 2 == 1)) | (
        (k == 0) & (l_ == 0) & (h % 2 == 1))
    keep &= ~absent & ((h != 0) | (k != 0) | (l_ != 0))  # F(000) is left out, as reflection files do
    hkl = np.stack([h[keep], k[keep], l_[keep]], axis=1)
    F = direct_sum(hkl)
    # the model's table agrees wherever it has reflections (it reaches past the corners)
    inside = ((hkl >= [table.h_min, table.k_min, table.l_min]) &
              (hkl <= [table.h_max, table.k_max, table.l_max])).all(axis=1)
    ours = table.F[tuple((hkl[inside] - [table.h_min, table.k_min, table.l_min]).T)]
    listed = ours != 0
    assert listed.sum() > 500
    # gemmi keeps occupancies, B and the IT92 coefficients in single precision: agreement to 1e-6
    assert np.abs(ours[listed] - F[inside][listed]).max() <= 1e-6 * F.max()
    (tmp_path / "direct.hkl").write_text("".join(f"{a} {b} {c} {v:.17g}\n" for (a, b, c), v in zip(hkl, F)))
    assert run(tmp_path, monkeypatch, ["-pdb", "m.pdb", *MODEL_DETECTOR, *NO_FILES]) == 0
    model_image = image(tmp_path)
    assert (tmp_path / "Fdump.bin").exists()
    cell = ["-cell", *(f"{x:g}" for x in MODEL_CELL)]
    assert run(tmp_path, monkeypatch, ["-hkl", "direct.hkl", *cell, *MODEL_DETECTOR, *NO_FILES, "-dump",
                                       "other.bin"]) == 0
    direct_image = image(tmp_path)
    assert model_image.max() > 0
    assert np.abs(model_image - direct_image).max() <= 1e-5 * model_image.max()
    # the cache of the model's table is read back without -pdb (as the reference does for -hkl)
    dumped = read_fdump(tmp_path / "Fdump.bin")
    assert np.array_equal(dumped.F, table.F)
    assert run(tmp_path, monkeypatch, [*cell, *MODEL_DETECTOR, *NO_FILES]) == 0
    assert np.array_equal(image(tmp_path), model_image)


def test_model_anomalous_terms(tmp_path) -> None:
    write_pdb(tmp_path / "m.pdb")
    table = from_args(["-pdb", str(tmp_path / "m.pdb"), "-pdb_anomalous", *MODEL_DETECTOR]).inputs.hkl

    def F(x):
        return table.F[x[0] - table.h_min, x[1] - table.k_min, x[2] - table.l_min]

    for x in ((1, 2, 3), (2, 1, 4), (3, 3, 1)):
        minus = tuple(-v for v in x)
        expected = direct_sum(np.array([x, minus]), anomalous_energy=12398.42)
        assert F(x) == pytest.approx(expected[0], rel=1e-6)
        assert F(minus) == pytest.approx(expected[1], rel=1e-6)
        assert abs(F(x) - F(minus)) > 1e-3
        # the 2-fold about z keeps F(+)
        assert F((-x[0], -x[1], x[2])) == pytest.approx(F(x), rel=1e-12)


@pytest.mark.parametrize(
    ("files", "args", "needle"),
    [
        ({"bad.mtz": b"MTZ \x00\x00garbage" * 20}, ["-hkl", "bad.mtz"], "not a readable MTZ"),
        ({"noamp.mtz": None}, ["-hkl", "noamp.mtz"], "no amplitude"),
        ({"empty.pdb": b"CRYST1   20.000   25.000   30.000  90.00  90.00  90.00 P 21 21 21    4\nEND\n"},
         ["-pdb", "empty.pdb"], "no atoms"),
        ({"coords.cif": None}, ["-hkl", "coords.cif"], "-pdb"),
        ({"g.hkl": b"1 2 3 4\n", "m.pdb": None}, ["-hkl", "g.hkl", "-pdb", "m.pdb"], "-pdb and -hkl"),
        ({"g.hkl": b"1 2 3 4\n"}, ["-hkl", "g.hkl", "-hkl_column", "F"], "text table"),
    ],
    ids=["garbled_mtz", "no_amplitude_column", "model_without_atoms", "coordinates_as_hkl", "pdb_and_hkl",
         "column_of_text_table"],
)
def test_bad_files_fail_cleanly(files, args, needle, tmp_path, monkeypatch, capsys) -> None:
    for name, content in files.items():
        if name == "noamp.mtz":
            mtz = gemmi.Mtz(with_base=True)
            mtz.spacegroup = gemmi.SpaceGroup("P 1")
            mtz.set_cell_for_all(gemmi.UnitCell(*MODEL_CELL))
            mtz.add_dataset("x")
            mtz.add_column("FREE", "I")
            mtz.set_data(np.array([[1, 2, 3, 0]], dtype=np.float32))
            mtz.write_to_file(str(tmp_path / name))
        elif name == "m.pdb":
            write_pdb(tmp_path / name)
        elif name == "coords.cif":
            write_pdb(tmp_path / "tmp.pdb")
            st = gemmi.read_structure(str(tmp_path / "tmp.pdb"))
            st.setup_entities()
            st.make_mmcif_document().write_file(str(tmp_path / name))
            os.unlink(tmp_path / "tmp.pdb")
        else:
            (tmp_path / name).write_bytes(content)
    before = sorted(os.listdir(tmp_path))
    cell = [] if args[0] == "-pdb" else ["-cell", "20", "25", "30", "90", "90", "90"]
    code = run(tmp_path, monkeypatch, [*args, *cell, *MODEL_DETECTOR, *NO_FILES])
    assert code in (1, 2)
    err = [line for line in capsys.readouterr().err.splitlines() if not line.startswith("warning: ")]
    assert len(err) == 1 and err[0].startswith("pybragg: error: ") and needle in err[0], err
    assert sorted(os.listdir(tmp_path)) == before


def test_text_table_of_an_asu_warns_on_the_command_line(tmp_path, monkeypatch, capsys) -> None:
    asu = gemmi.make_miller_array(gemmi.UnitCell(*CELL), gemmi.SpaceGroup(GROUP), DMIN)
    write_text_table(tmp_path / "asu.hkl", [(tuple(map(int, x)), amplitude(*map(int, x))) for x in asu])
    assert run(tmp_path, monkeypatch, ["-hkl", "asu.hkl", "-cell", *(f"{x:g}" for x in CELL), *DETECTOR,
                                       *NO_FILES]) == 0
    err = capsys.readouterr().err
    assert err.startswith("warning: ") and "asu.hkl" in err and "part of the sphere" in err


def test_golden_text_tables_do_not_warn(recwarn) -> None:
    from golden import GOLDEN

    for name in ("cubic6.hkl", "hex.hkl", "scaled.hkl", "tri8.hkl"):
        read_hkl(GOLDEN / "inputs" / name)
    assert not [w for w in recwarn if issubclass(w.category, HKLWarning)]
    assert pybragg  # the package imports with gemmi present
