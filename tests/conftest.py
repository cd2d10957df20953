"""Shared fixtures. Every test runs with its own config, state and data dirs,
so nothing touches the user's real files."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest_keyring import fail_keyring, memory_keyring  # noqa: F401
from hypothesis import settings

# No wall-clock deadline per example: on a shared two-core machine a config
# load can take longer than Hypothesis's default 200 ms without anything wrong.
settings.register_profile("traywire", deadline=None)
settings.load_profile("traywire")


@pytest.fixture(autouse=True)
def _isolated_dirs(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("xdg")
    for var in ("XDG_CONFIG_HOME", "XDG_STATE_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME"):
        d = root / var.lower()
        d.mkdir()
        monkeypatch.setenv(var, str(d))
    # Keep every test, and every process a test starts, off the user's real
    # keyring: tests that need one install an in-memory or a throw-away one.
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.fail.Keyring")
    yield root


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    """Under CI (TRAYWIRE_STRICT_SKIPS=1) a skipped test is a failed test: CI installs
    every tool the suite needs, so a skip there means a missing install step."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and os.environ.get("TRAYWIRE_STRICT_SKIPS") == "1":
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped under CI (TRAYWIRE_STRICT_SKIPS=1): {reason}"
