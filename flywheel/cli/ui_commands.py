"""``flywheel ui``: the local dashboard (read-only, offline, bound to 127.0.0.1 by default)."""

from __future__ import annotations

import argparse
from typing import Any

from flywheel.cli.common import home_of


def register(subparsers: Any) -> None:
    """Adds ``ui`` to the CLI."""
    ui = subparsers.add_parser(
        "ui",
        help="open the dashboard: runs, lineage, models, drift, schedules",
        description="Serve the read-only dashboard over the project home's ML Metadata store, model registry, "
        "monitor history and schedules. Works offline; binds 127.0.0.1 unless told otherwise.",
    )
    ui.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    ui.add_argument("--port", type=int, default=8080, help="port (default 8080; 0 picks a free one)")
    ui.add_argument("--registry", metavar="DIR", help="model registry directory (default: <home>/registry)")
    ui.add_argument("--open", action="store_true", help="open the dashboard in a web browser")
    ui.set_defaults(handler=serve_ui)


def serve_ui(args: argparse.Namespace) -> int:
    """Serves until interrupted."""
    from flywheel.dashboard import Sources, make_server
    from flywheel.errors import FlywheelError

    if not 0 <= args.port <= 65535:
        raise FlywheelError(f"--port must be between 0 and 65535; got {args.port}.")
    home = home_of(args)
    try:
        server = make_server(Sources(home, args.registry or ""), host=args.host, port=args.port)
    except OSError as exc:
        raise FlywheelError(
            f"Cannot listen on {args.host}:{args.port}: {exc.strerror or exc}. Pick another --port (0 picks a free one)."
        ) from exc
    print(f"flywheel dashboard for {home.root} at {server.url}/ (Ctrl-C stops)", flush=True)
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
