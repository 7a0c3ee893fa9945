"""``flywheel ui``: the dashboard (read-only, bound to 127.0.0.1 by default; Kubeflow runs with --kfp-host)."""

from __future__ import annotations

import argparse
import os
from typing import Any

from flywheel.cli.common import home_of

KFP_HOST_ENV = "FLYWHEEL_KFP_HOST"


def register(subparsers: Any) -> None:
    """Adds ``ui`` to the CLI."""
    ui = subparsers.add_parser(
        "ui",
        help="open the dashboard: runs, lineage, models, drift, schedules",
        description="Serve the read-only dashboard over the project home's ML Metadata store, model registry, "
        "monitor history and schedules, and with --kfp-host the runs of a Kubeflow Pipelines API. Works offline; "
        "binds 127.0.0.1 unless told otherwise.",
    )
    ui.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    ui.add_argument("--port", type=int, default=8080, help="port (default 8080; 0 picks a free one)")
    ui.add_argument("--registry", metavar="DIR_OR_URI",
                    help="model registry: a directory or an object-store URI such as s3://bucket/registry "
                    "(default: $FLYWHEEL_REGISTRY, else <home>/registry)")
    # --host is the address to bind (as for `flywheel serve`); the KFP API gets its own names.
    ui.add_argument("--kfp-host", metavar="URL", default=os.environ.get(KFP_HOST_ENV) or None,
                    help="also list Kubeflow runs from this KFP API (e.g. http://ml-pipeline.kubeflow:8888; "
                    f"default ${KFP_HOST_ENV})")
    ui.add_argument("--kfp-namespace", metavar="NS", help="Kubernetes namespace of the runs (multi-user Kubeflow)")
    ui.add_argument("--kfp-token-file", metavar="PATH",
                    help="read the KFP API's bearer token from this file (default: $FLYWHEEL_KFP_TOKEN)")
    ui.add_argument("--kfp-timeout", type=float, default=4.0, metavar="SECONDS",
                    help="how long one KFP API call may take before the page shows a banner (default 4)")
    ui.add_argument("--open", action="store_true", help="open the dashboard in a web browser")
    ui.set_defaults(handler=serve_ui)


def serve_ui(args: argparse.Namespace) -> int:
    """Serves until interrupted."""
    from flywheel.dashboard import Sources, make_server
    from flywheel.errors import FlywheelError

    if not 0 <= args.port <= 65535:
        raise FlywheelError(f"--port must be between 0 and 65535; got {args.port}.")
    home = home_of(args)
    kfp = None
    if args.kfp_host:
        from flywheel.dashboard.kfp import KfpReader
        from flywheel.kubeflow.client import resolve_token

        if not 0 < args.kfp_timeout <= 120:
            raise FlywheelError(f"--kfp-timeout must be between 0 and 120 seconds; got {args.kfp_timeout}.")
        token = resolve_token(None, args.kfp_token_file)  # an unreadable or empty file stops here, named
        kfp = KfpReader(args.kfp_host, token=token, token_file=args.kfp_token_file,
                        namespace=args.kfp_namespace, timeout=args.kfp_timeout)
    elif args.kfp_namespace or args.kfp_token_file:
        raise FlywheelError("--kfp-namespace and --kfp-token-file need --kfp-host URL (the KFP API to read).")
    try:
        server = make_server(Sources(home, args.registry or "", kfp=kfp), host=args.host, port=args.port)
    except OSError as exc:
        raise FlywheelError(
            f"Cannot listen on {args.host}:{args.port}: {exc.strerror or exc}. Pick another --port (0 picks a free one)."
        ) from exc
    print(f"flywheel dashboard for {home.root} at {server.url}/ (Ctrl-C stops)", flush=True)
    if kfp is not None:
        print(f"Kubeflow runs from {kfp.host}", flush=True)
    if not server.loopback_only:
        print(f"warning: bound to {args.host}, so other machines can read this dashboard", flush=True)
    if args.open:
        import webbrowser

        webbrowser.open(f"{server.url}/")
    try:
        server.serve_forever()
    finally:
        server.server_close()
    return 0
