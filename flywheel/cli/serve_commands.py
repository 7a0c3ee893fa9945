"""``flywheel serve``: a TF-Serving-compatible REST endpoint for a registry model."""

from __future__ import annotations

import argparse
import logging
from typing import Any

from flywheel.cli.common import home_of


def register(subparsers: Any) -> None:
    """Adds the ``serve`` command."""
    parser = subparsers.add_parser(
        "serve",
        help="serve a registry model over TF Serving's REST and gRPC APIs",
        description="Serve the version the registry's serving alias names, over TF Serving's REST API "
        "(POST /v1/models/NAME:predict) and its gRPC API (tensorflow.serving.PredictionService). New versions and alias changes are picked up without a restart; "
        "SIGTERM finishes in-flight requests, then exits 0.",
    )
    parser.add_argument(
        "--registry", help="registry directory or object-store URI (s3://, minio://, gs://; default: <home>/registry)"
    )
    parser.add_argument("--model", default="penguins", help="model name in the registry (default: penguins)")
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default: 127.0.0.1, loopback only)")
    parser.add_argument("--port", type=int, default=8501, help="port (default: 8501, TF Serving's REST port; 0: any)")
    parser.add_argument(
        "--grpc-port",
        type=int,
        default=8500,
        help="port of TF Serving's gRPC API (PredictionService, ModelService) on --host "
        "(default: 8500, TF Serving's gRPC port; 0: any)",
    )
    parser.add_argument("--no-grpc", action="store_true", help="serve REST only (default: gRPC too)")
    batching = parser.add_argument_group("batching")
    batching.add_argument("--no-batching", action="store_true", help="one model call per request (for comparison)")
    batching.add_argument(
        "--max-batch-size",
        type=int,
        default=256,
        help="most instances per model call: concurrent requests merge up to it (default 256)",
    )
    batching.add_argument(
        "--max-wait-ms", type=float, default=1.0, help="longest a batch waits for more requests (default 1.0)"
    )
    batching.add_argument(
        "--predict-threads", type=int, default=2, help="concurrent model calls with --no-batching (default 2)"
    )
    inputs = parser.add_argument_group("requests")
    inputs.add_argument(
        "--max-body-bytes", type=int, default=1024 * 1024, help="larger bodies get HTTP 413 (default 1 MiB)"
    )
    inputs.add_argument(
        "--ignore-unknown-features",
        action="store_true",
        help="drop input keys the model does not take (default: refuse them with HTTP 400)",
    )
    access = parser.add_argument_group("access")
    access.add_argument(
        "--allowed-host",
        action="append",
        default=[],
        metavar="NAME",
        help="a Host name clients use (repeatable; IP addresses and localhost always work; '*': any)",
    )
    access.add_argument(
        "--allowed-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="a web app origin allowed to call from a browser, e.g. https://app.example.com "
        "(repeatable; loopback origins always work; '*': any)",
    )
    access.add_argument(
        "--enable-logs-endpoint",
        action="store_true",
        help="serve GET .../logs/<requests|feedback> (every logged feature row) for a remote monitor (default: off)",
    )
    access.add_argument(
        "--idle-timeout",
        type=float,
        default=15.0,
        help="close a connection that sends no complete request head for this many seconds (default 15)",
    )
    access.add_argument(
        "--body-timeout", type=float, default=30.0, help="seconds a request body may take to arrive (default 30)"
    )
    logs = parser.add_argument_group("request log")
    logs.add_argument(
        "--log-sample-rate",
        type=float,
        default=1.0,
        help="share of predict requests logged for the monitor, 0..1 (default 1.0)",
    )
    logs.add_argument(
        "--log-max-mb", type=float, default=16.0, help="rotate a log file at this size in MiB (default 16)"
    )
    logs.add_argument(
        "--log-retention-mb",
        type=float,
        default=1024.0,
        help="keep at most this many MiB per log directory, oldest files deleted first (default 1024; 0: no limit)",
    )
    logs.add_argument(
        "--log-retention-days",
        type=float,
        default=30.0,
        help="delete log files last written more than this many days ago (default 30; 0: keep forever)",
    )
    reload = parser.add_argument_group("versions")
    reload.add_argument(
        "--poll-seconds", type=float, default=1.0, help="how often to check for a new serving version (default 1)"
    )
    reload.add_argument(
        "--max-loaded-versions", type=int, default=2, help="versions kept in memory, serving one included (default 2)"
    )
    batching.add_argument(
        "--tf-threads",
        type=int,
        default=1,
        help="TensorFlow intra/inter-op threads; 1 suits small models, 0 = TensorFlow's default (default 1)",
    )
    batching.add_argument(
        "--xla",
        choices=("auto", "on", "off"),
        default="auto",
        help="compile the model with XLA: auto = when it measures faster at load, on = whenever it compiles "
        "(default auto; /v1/models/NAME/metadata says which)",
    )
    logs.add_argument(
        "--log-queue-requests",
        type=int,
        default=10000,
        help="predict requests waiting for the log writer at most; past it their log lines are dropped "
        "and counted in flywheel_serving_log_dropped_requests (default 10000)",
    )
    parser.add_argument(
        "--shutdown-timeout", type=float, default=30.0, help="seconds in-flight requests get after SIGTERM (default 30)"
    )
    parser.set_defaults(handler=run_serve)


def config_from_args(args: argparse.Namespace) -> Any:
    """The ``ServeConfig`` the arguments describe (checked).

    Raises:
        ServingError: an option is out of range.
    """
    from flywheel.serving.config import ServeConfig

    home = home_of(args)
    return ServeConfig(
        registry=args.registry or home.registry,
        home=home.root,
        model=args.model,
        host=args.host,
        port=args.port,
        batching=not args.no_batching,
        max_batch_size=args.max_batch_size,
        max_wait_ms=args.max_wait_ms,
        predict_threads=args.predict_threads,
        max_body_bytes=args.max_body_bytes,
        log_sample_rate=args.log_sample_rate,
        log_max_bytes=int(args.log_max_mb * 1024 * 1024),
        poll_seconds=args.poll_seconds,
        max_loaded_versions=args.max_loaded_versions,
        ignore_unknown_features=args.ignore_unknown_features,
        shutdown_timeout_s=args.shutdown_timeout,
        tf_threads=args.tf_threads,
        allowed_hosts=("localhost", *args.allowed_host),
        allowed_origins=tuple(args.allowed_origin),
        logs_endpoint=args.enable_logs_endpoint,
        idle_timeout_s=args.idle_timeout,
        body_timeout_s=args.body_timeout,
        log_retention_bytes=int(args.log_retention_mb * 1024 * 1024),
        log_retention_s=args.log_retention_days * 24 * 3600.0,
        grpc_port=None if args.no_grpc else args.grpc_port,
        xla=args.xla,
        log_queue_requests=args.log_queue_requests,
    ).check()


def run_serve(args: argparse.Namespace) -> int:
    """Runs the server in the foreground until SIGTERM/SIGINT; returns 0 after a clean shutdown."""
    import sys

    from flywheel.registry import ModelRegistry
    from flywheel.serving.server import serve

    config = config_from_args(args)
    ModelRegistry(config.registry).model_dir(config.model)  # a bad model name fails before TensorFlow loads
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    def announce(line: str) -> None:
        print(line, flush=True)

    try:
        return serve(config, announce=announce)
    finally:
        sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    """``python -m flywheel.cli.serve_commands [--home H] serve ...``, usable before main.py registers ``serve``."""
    import sys

    from flywheel.errors import FlywheelError

    parser = argparse.ArgumentParser(prog="flywheel")
    parser.add_argument("--home", help="project home (default: $FLYWHEEL_HOME or ~/.flywheel)")
    register(parser.add_subparsers(dest="command", metavar="COMMAND", required=True))
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except FlywheelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
