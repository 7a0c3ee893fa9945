"""``flywheel serve``'s options (``ServeConfig``) and the rules each must keep."""

from __future__ import annotations

import dataclasses

from flywheel.serving.errors import ServingError


@dataclasses.dataclass(frozen=True)
class ServeConfig:
    """Everything ``flywheel serve`` can be told.

    Attributes:
        registry: Registry directory (``<home>/registry`` from the CLI) or object-store URI
            (``s3://``, ``minio://``, ``gs://``; versions are loaded from a private local copy).
        home: flywheel home; request and feedback logs go under it.
        model: Model name in the registry.
        host: Interface to bind (loopback unless told otherwise).
        port: TCP port (0 picks a free one).
        batching: Micro-batch concurrent requests (False: one model call each).
        max_batch_size: Most instances per model call.
        max_wait_ms: Longest a batch waits for more requests.
        predict_threads: Model calls at once without batching.
        max_body_bytes: Larger request bodies get HTTP 413.
        log_sample_rate: Share of predict requests logged for the monitor.
        log_max_bytes: Rotation size of the log files.
        poll_seconds: How often the serving alias is checked for a new version.
        max_loaded_versions: Versions kept in memory (serving one included).
        ignore_unknown_features: Drop unknown input keys instead of refusing them.
        shutdown_timeout_s: Longest in-flight requests may take after SIGTERM.
        tf_threads: TensorFlow intra/inter-op threads (0: TensorFlow's default);
            applied only if TensorFlow has not run yet in this process.
        allowed_hosts: Host header names the API answers besides IP literals
            (a DNS-rebinding page sends its own name); ``*`` allows any.
        allowed_origins: Browser origins (``https://app.example.com``) allowed to
            call the API besides loopback ones; a request with any other
            ``Origin`` header is refused (403). ``*`` allows any.
        logs_endpoint: Serve ``GET .../logs/<kind>`` (every logged feature row);
            off by default, on for a monitor that reads over HTTP.
        idle_timeout_s: A connection that sends no complete request head for
            this long (idle keep-alive, or headers trickling in) is closed.
        body_timeout_s: Longest a request body may take to arrive (408 after).
        log_retention_bytes: Most bytes kept per log directory (0: no limit).
        log_retention_s: Log files older than this are deleted (0: kept forever).
        grpc_port: Port of TF Serving's gRPC API on ``host`` (None: no gRPC
            server; 0 picks a free one). ``flywheel serve`` uses 8500.
        xla: Compile the model with XLA: ``auto`` (when it measures faster at
            load), ``on`` (whenever it compiles) or ``off``
            (``flywheel.serving.models.compile_fastest``).
        log_queue_requests: Most predict requests waiting for the request-log
            writer; past it a request's log lines are dropped and counted
            (``flywheel.serving.requestlog``), the response is unaffected.
    """

    registry: str
    home: str
    model: str = "penguins"
    host: str = "127.0.0.1"
    port: int = 8501
    batching: bool = True
    max_batch_size: int = 256
    max_wait_ms: float = 1.0
    predict_threads: int = 2
    max_body_bytes: int = 1024 * 1024
    log_sample_rate: float = 1.0
    log_max_bytes: int = 16 * 1024 * 1024
    poll_seconds: float = 1.0
    max_loaded_versions: int = 2
    ignore_unknown_features: bool = False
    shutdown_timeout_s: float = 30.0
    tf_threads: int = 1
    allowed_hosts: tuple[str, ...] = ("localhost",)
    allowed_origins: tuple[str, ...] = ()
    logs_endpoint: bool = False
    idle_timeout_s: float = 15.0
    body_timeout_s: float = 30.0
    log_retention_bytes: int = 1024 * 1024 * 1024
    log_retention_s: float = 30 * 24 * 3600.0
    grpc_port: int | None = None
    xla: str = "auto"
    log_queue_requests: int = 10000

    def check(self) -> ServeConfig:
        """Returns self; raises ServingError naming the first option out of range."""
        rules = [
            ("port", 0 <= self.port <= 65535, "in [0, 65535]"),
            ("max_batch_size", self.max_batch_size >= 1, ">= 1"),
            ("max_wait_ms", 0 <= self.max_wait_ms <= 1000, "in [0, 1000]"),
            ("predict_threads", self.predict_threads >= 1, ">= 1"),
            ("max_body_bytes", self.max_body_bytes >= 1024, ">= 1024"),
            ("log_sample_rate", 0.0 <= self.log_sample_rate <= 1.0, "in [0, 1]"),
            ("poll_seconds", self.poll_seconds > 0, "> 0"),
            ("max_loaded_versions", self.max_loaded_versions >= 1, ">= 1"),
            ("shutdown_timeout_s", self.shutdown_timeout_s >= 0, ">= 0"),
            ("tf_threads", self.tf_threads >= 0, ">= 0"),
            ("idle_timeout_s", self.idle_timeout_s > 0, "> 0"),
            ("body_timeout_s", self.body_timeout_s > 0, "> 0"),
            ("log_retention_bytes", self.log_retention_bytes >= 0, ">= 0 (0: no limit)"),
            ("log_retention_s", self.log_retention_s >= 0, ">= 0 (0: no limit)"),
            ("xla", self.xla in ("auto", "on", "off"), "one of 'auto', 'on', 'off'"),
            ("log_queue_requests", self.log_queue_requests >= 1, ">= 1"),
        ]
        if self.grpc_port is not None:
            rules.append(("grpc_port", 0 <= self.grpc_port <= 65535, "in [0, 65535] (or None for no gRPC)"))
            rules.append(("grpc_port", self.grpc_port == 0 or self.grpc_port != self.port, "another port than 'port'"))
        for name, ok, rule in rules:
            if not ok:
                raise ServingError(f"The '{name}' serving option must be {rule}. Got {getattr(self, name)!r} instead.")
        return self
