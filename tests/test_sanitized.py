"""Placeholder: CI runs this file against the engine built with ASan and UBSan (see .ci/run)."""

import pybragg._native as native


def test_engine_loads_and_reports_version():
    version = native.ffi.string(native.lib.pb_version()).decode()
    assert version
