"""The torch engine's batch of shots (pybragg.engines.torch.batch): each shot equals its single render."""

from __future__ import annotations

import numpy as np
import pytest
import torch  # required here: the torch engine's tests are never skipped

import pybragg
from pybragg.engines.torch import batch
from pybragg.engines.torch.model import TorchModel

FLAGS = ["-cell", "70", "80", "90", "90", "95", "90", "-default_F", "100", "-N", "4", "-detpixels", "24",
         "-distance", "60", "-oversample", "2", "-mosaic", "0.2", "-mosaic_dom", "3", "-dispersion", "1",
         "-dispsteps", "2"]


def _shots(n: int) -> list[dict]:
    return [{"misset": torch.tensor([0.1 * i, 0.2, -0.3 * i]), "lambda0": torch.tensor(1e-10 * (1 + 0.01 * i)),
             "fluence": torch.tensor(1e24 * (1 + 0.1 * i)), "N": torch.tensor([4.0 + i, 4.0, 3.0 + 0.5 * i])}
            for i in range(n)]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("shape", ["-square_xtal", "-round_xtal", "-gauss_xtal"])
def test_batch_equals_singles(dtype: str, shape: str) -> None:
    sim = pybragg.from_args([*FLAGS, shape])
    model = TorchModel(sim.config, sim.inputs, dtype=dtype)
    shots = _shots(4)
    with torch.no_grad():
        images = model.images(shots)
        singles = [model.image(p) for p in shots]
    assert len(images) == 4
    for a, b in zip(images, singles, strict=True):
        assert a.dtype == b.dtype and torch.equal(a, b)  # bit for bit: the same operations per element
    assert not torch.equal(images[0], images[1])


def test_batch_with_a_structure_factor_table_equals_singles(tmp_path, monkeypatch) -> None:
    """With -hkl, shots whose reflections leave the table (and take the clamped look-up) too."""
    monkeypatch.chdir(tmp_path)
    rows = [f"{h} {k} {l} {10 + (h * 7 + k * 3 + l) % 50}" for h in range(-3, 4) for k in range(-3, 4)
            for l in range(-3, 4)]
    (tmp_path / "small.hkl").write_text("\n".join(rows) + "\n")
    sim = pybragg.from_args([*FLAGS, "-hkl", "small.hkl"])
    model = TorchModel(sim.config, sim.inputs)
    shots = _shots(3)
    with torch.no_grad():
        images = model.images(shots)
        singles = [model.image(p) for p in shots]
    assert all(torch.equal(a, b) for a, b in zip(images, singles, strict=True))
    assert float(images[0].max()) > 0


def test_memory_budget_splits_a_batch() -> None:
    sim = pybragg.from_args(FLAGS)
    model = TorchModel(sim.config, sim.inputs)
    from pybragg.engines.torch import driver

    panel = model.panels[0]
    one_shot = driver.pixel_bytes(model, panel, False, 1) * int(panel.selected.numel())
    model.memory_budget_gib = 2.5 * one_shot / 2**30  # the whole image in one chunk, about 2 shots a pass
    per_pass = batch.shots_per_pass(model, 5)
    assert 1 < per_pass < 5
    shots = _shots(5)
    with torch.no_grad():
        images, _, _, used = batch.render_batch([model] * 5, shots)
        singles = [model.image(p) for p in shots]
    assert used == per_pass
    assert all(torch.equal(a, b) for a, b in zip(images, singles, strict=True))


def test_gradients_flow_per_shot() -> None:
    sim = pybragg.from_args([*FLAGS, "-detpixels", "12"])
    model = TorchModel(sim.config, sim.inputs)
    shots = _shots(3)
    for p in shots:
        p["misset"].requires_grad_(True)
        p["fluence"].requires_grad_(True)
    images = model.images(shots)
    images[1].sum().backward()
    assert shots[0]["misset"].grad is None or not shots[0]["misset"].grad.any()
    assert shots[2]["fluence"].grad is None or shots[2]["fluence"].grad == 0
    got = shots[1]["misset"].grad.clone(), shots[1]["fluence"].grad.clone()
    one = {k: v.detach().clone().requires_grad_(True) for k, v in shots[1].items()}
    model.image(one).sum().backward()
    assert torch.allclose(got[0], one["misset"].grad, rtol=1e-12, atol=0)
    assert torch.allclose(got[1], one["fluence"].grad, rtol=1e-12, atol=0)


def test_shots_of_other_detectors_render_one_by_one() -> None:
    sim = pybragg.from_args(FLAGS)
    model = TorchModel(sim.config, sim.inputs)
    shots = [{"distance": torch.tensor(0.06)}, {"distance": torch.tensor(0.07)}]
    with torch.no_grad():
        images = model.images(shots)
        assert all(torch.equal(a, model.image(p)) for a, p in zip(images, shots, strict=True))


def test_dataset_worker_batch_equals_one_by_one() -> None:
    from pybragg import datasets
    from pybragg.datasets import worker
    from pybragg.datasets.draws import Variations

    flags = ["-cell", "70", "80", "90", "90", "95", "90", "-default_F", "100", "-N", "4", "-detpixels", "20",
             "-distance", "60", "-oversample", "1", "--backend", "torch"]
    for variations in (Variations(wavelength_jitter=0.02, fluence_jitter=0.1), Variations(sase=(0.01, 2)),
                       Variations(size_range_um=(0.1, 0.3))):
        job = datasets.Job("stills", flags, 3, seed=5, variations=variations)
        tasks = [job.frame(i)[0] for i in range(3)]
        shared = job.shared()
        batched = worker._render_batched(tasks, shared, 1, "cpu")
        assert batched is not None
        for a, task in zip(batched, tasks, strict=True):
            b = worker.render_one(task, shared, threads=1)
            assert a.index == b.index
            assert np.array_equal(a.data, b.data) and a.max_I == b.max_I
