"""Fixtures and rules shared by every test folder.

The folders follow the package's layers: ``c_engine/`` (runs without torch: CI runs it a second
time against a C library built with AddressSanitizer and UBSan), ``torch_engine/`` (requires
torch), ``cli/``, ``formats/``, ``golden/`` (the reference programs' own images) and
``datasets/``.  ``tests/golden.py`` reads the golden data in place; this folder is on
``sys.path`` (pytest puts a root ``conftest.py``'s folder there), so every test imports it as
``golden``.

Rules:

* Under ``CI=true`` a skipped test is a failure: CI installs everything the suite needs, so a
  skip there can only mean something is missing.
* ``engine`` runs a test once per engine of the registry (:data:`pybragg.engines.ENGINES`) that
  can run here: in the main environment every engine, in the torch-free sanitizer environment
  the C engine.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pybragg.engines import available_engines

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
#: small input files of the tests themselves
DATA = TESTS / "data"


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if _in_ci() and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped under CI=true, where nothing may be skipped: {reason}"


@pytest.fixture(params=available_engines())
def engine(request) -> str:
    """The name of each engine that can run here."""
    return request.param
