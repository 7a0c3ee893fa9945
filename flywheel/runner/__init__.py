"""Executing pipelines on this machine."""

from flywheel.runner.runner import LocalRunner, NodeEvent, RunResult

__all__ = ["LocalRunner", "NodeEvent", "RunResult"]
