"""Fixtures of the monitoring tests: the fake KFP API of the Kubeflow tests (retraining runs are submitted to it)."""

from tests.kubeflow.conftest import kfp_server  # noqa: F401 - a fixture, used by name
