"""Prometheus metrics of the serving endpoint, in a registry of their own.

Each server owns a ``prometheus_client.CollectorRegistry`` (no process-global
state, so several servers in one process, as in the tests, do not collide).
Names follow Prometheus conventions (``_total`` counters, ``_seconds``).
"""

from __future__ import annotations

from typing import Any

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class ServingMetrics:
    """The counters, histograms and gauges of one server.

    Args:
        model: Model name, a label on every series.
    """

    def __init__(self, model: str) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        self.model = model
        self.requests = Counter(
            "flywheel_serving_requests",
            "HTTP requests answered, by endpoint and status code.",
            ["model", "endpoint", "code"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "flywheel_serving_request_latency_seconds",
            "Time from receiving a request to its response being ready, by endpoint.",
            ["model", "endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.errors = Counter(
            "flywheel_serving_errors",
            "Requests that failed, by kind (bad_request, not_found, too_large, unavailable, internal).",
            ["model", "kind"],
            registry=self.registry,
        )
        self.instances = Counter(
            "flywheel_serving_instances",
            "Instances predicted, by model version.",
            ["model", "version"],
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "flywheel_serving_batch_size",
            "Instances per model call.",
            ["model"],
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self.model_seconds = Histogram(
            "flywheel_serving_model_call_seconds",
            "Duration of one model call (one batch).",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.version = Gauge(
            "flywheel_serving_model_version",
            "Version that serves requests without an explicit version (0 before the first load).",
            ["model"],
            registry=self.registry,
        )
        self.reloads = Counter(
            "flywheel_serving_reloads",
            "Times a new serving version was swapped in.",
            ["model"],
            registry=self.registry,
        )
        self.reload_errors = Counter(
            "flywheel_serving_reload_errors",
            "Polls of the serving alias that failed (a damaged registry file, a version that cannot load); "
            "each is logged and retried at the next poll.",
            ["model"],
            registry=self.registry,
        )
        self.logged = Counter(
            "flywheel_serving_logged_records",
            "Lines written to the request and feedback logs, by log.",
            ["model", "log"],
            registry=self.registry,
        )
        self.log_dropped = Counter(
            "flywheel_serving_log_dropped_requests",
            "Predict requests whose request-log lines were dropped because the log writer's queue was full.",
            ["model"],
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "flywheel_serving_in_flight_requests", "Requests being handled now.", ["model"], registry=self.registry
        )
        self.version.labels(model).set(0)
        self.log_dropped.labels(model)
        self.reload_errors.labels(model)  # exported as 0 from the start, so a rate() sees the first error
        self._batch = self.batch_size.labels(model)
        self._model_seconds = self.model_seconds.labels(model)
        self.in_flight_now = self.in_flight.labels(model)
        # the labelled children of the per-request series, looked up once each (labels() takes a lock)
        self._per_request: dict[tuple[str, int], tuple[Any, Any, Any]] = {}
        self._per_version: dict[int, Any] = {}

    def observe_batch(self, size: int, seconds: float) -> None:
        """Records one model call (called by the batcher's worker)."""
        self._batch.observe(size)
        self._model_seconds.observe(seconds)

    def observe_request(self, endpoint: str, code: int, seconds: float) -> None:
        children = self._per_request.get((endpoint, code))
        if children is None:
            kind = _error_kind(code)
            children = self._per_request[(endpoint, code)] = (
                self.requests.labels(self.model, endpoint, str(code)),
                self.latency.labels(self.model, endpoint),
                self.errors.labels(self.model, kind) if kind else None,
            )
        count, latency, errors = children
        count.inc()
        latency.observe(seconds)
        if errors is not None:
            errors.inc()

    def count_instances(self, version: int, instances: int) -> None:
        """Adds the instances one predict request answered with ``version``."""
        child = self._per_version.get(version)
        if child is None:
            child = self._per_version[version] = self.instances.labels(self.model, str(version))
        child.inc(instances)

    def serving_version(self, version: int) -> None:
        self.version.labels(self.model).set(version)

    def exposition(self) -> bytes:
        """The Prometheus text format of every metric."""
        from prometheus_client import generate_latest

        return generate_latest(self.registry)

    def sample(self, name: str, labels: dict[str, str] | None = None) -> Any:
        """One sample's value by its full name (e.g. ``flywheel_serving_requests_total``), or None."""
        return self.registry.get_sample_value(name, labels or {})


def _error_kind(code: int) -> str:
    if code < 400:
        return ""
    return {404: "not_found", 413: "too_large", 503: "unavailable"}.get(
        code, "bad_request" if code < 500 else "internal"
    )
