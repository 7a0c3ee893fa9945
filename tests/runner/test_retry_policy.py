"""Which failures the local runner retries, and what it records of Kubernetes-only options."""

from __future__ import annotations

import pytest

from flywheel import Resources, pipeline
from flywheel.metadata import MetadataStore
from flywheel.runner import LocalRunner
from tests.runner.toy import flaky


@pytest.mark.parametrize(
    ("raises", "attempts"),
    [
        ("ConnectionError", 3),  # transient I/O: retried up to retries=2
        ("RuntimeError", 3),  # a library's run-time error: retried
        ("ValueError", 1),  # bad code or data: the same again, not retried
        ("DataSanityError", 1),  # flywheel's own error names bad input: not retried
    ],
)
def test_only_failures_another_attempt_can_fix_are_retried(home, tmp_path, raises, attempts):
    counter = tmp_path / "count"

    @pipeline(name="retry-policy")
    def failing():
        flaky(counter=str(counter), raises=raises)

    result = LocalRunner(home, max_workers=0).run(failing)
    assert not result.ok
    assert counter.read_text().count("attempt") == attempts
    node = MetadataStore(home).latest_nodes(result.run)["flaky"]
    assert node.attempts == attempts and raises in node.error


def test_kubernetes_options_are_recorded_not_applied(home, tmp_path):
    counter = tmp_path / "count"

    @pipeline(name="placed-locally")
    def placed():
        (flaky(counter=str(counter), succeed_on=1)
         .set_resources(cpu="64", memory_limit="1Ti", accelerator="nvidia.com/gpu", accelerator_count=8)
         .set_placement(node_selector={"pool": "gpu"})
         .set_secret_env("WEBHOOK_URL", secret="alerts", key="url"))

    result = LocalRunner(home, max_workers=0).run(placed)
    assert result.ok  # 64 CPUs and 8 GPUs asked; this machine runs it anyway
    details = MetadataStore(home).latest_nodes(result.run)["flaky"].details
    assert details["kubernetes_only"] == {
        "cpu": "64", "memory_limit": "1Ti", "accelerator": "nvidia.com/gpu", "accelerator_count": 8,
        "node_selector": {"pool": "gpu"}, "secret_env": {"WEBHOOK_URL": "alerts/url"},
    }
    assert Resources().declared() == {}
