"""The engine registry drives the command line and the tests (main environment: every engine runs)."""

from __future__ import annotations

import torch  # noqa: F401 - the main environment has every engine; this file never runs without torch

from pybragg.engines import BACKENDS, DEFAULT_BACKEND, ENGINES, available_engines, select_engine
from pybragg.flags.table import BY_NAME


def test_every_registered_engine_is_available_here() -> None:
    assert set(available_engines()) == set(ENGINES) == {"c", "torch"}


def test_backend_choices_and_default_come_from_the_registry() -> None:
    flag = BY_NAME["--backend"]
    assert tuple(k for k, _ in flag.keywords) == BACKENDS == ("auto", *ENGINES)
    assert flag.default == DEFAULT_BACKEND == "auto"


def test_fallback_follows_the_registry() -> None:
    notices: list[str] = []
    name, _, device = select_engine("torch", "no-such-device", notices.append)
    assert name == ENGINES["torch"].fallback == "c" and device == "cpu"
    assert len(notices) == 1 and "no-such-device" in notices[0] and "using the C engine" in notices[0]
    name, module, _ = select_engine("c")
    assert module.__name__ == ENGINES["c"].module
