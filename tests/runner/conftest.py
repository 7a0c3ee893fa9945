"""Runner tests exercise real forked workers.

Other test modules import TensorFlow into this pytest process, and the runner
then refuses to fork (a child that used TF could deadlock). The toy components
here never touch TF, so forking for them is safe, and these tests need real
worker processes; the guard itself is tested explicitly in test_runner.py.
"""

from __future__ import annotations

import pytest

import flywheel.runner.runner as runner_module


@pytest.fixture(autouse=True)
def allow_fork_for_toy_components(monkeypatch):
    monkeypatch.setattr(runner_module, "fork_unsafe_modules", lambda: [])
