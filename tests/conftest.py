"""Shared fixtures: every test gets its own flywheel home."""

from __future__ import annotations

import os
import sys

import pytest

from flywheel.home import Home

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def home(tmp_path, monkeypatch) -> Home:
    """A fresh project home, also exported as FLYWHEEL_HOME for subprocesses."""
    root = tmp_path / "flywheel-home"
    monkeypatch.setenv("FLYWHEEL_HOME", str(root))
    return Home(str(root)).ensure()


@pytest.fixture
def flywheel_cmd() -> list[str]:
    """The CLI as a subprocess command of this interpreter."""
    return [sys.executable, "-m", "flywheel"]
