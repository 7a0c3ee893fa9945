"""The dashboard's HTTP server: routes, templates, static files, security headers.

Standard library ``http.server`` (threads) plus jinja2 with autoescaping: every
string from a store is escaped when rendered. Only GET and HEAD exist; the
server never writes. Pages send a Content-Security-Policy that allows scripts
and styles from this server only (no inline script can run even if escaping
were missed), and artifact files are served sandboxed so a report cannot run
script in the dashboard's origin.
"""

from __future__ import annotations

import http.server
import ipaddress
import json
import os
import re
import socket
import traceback
from typing import Any, Callable
from urllib.parse import parse_qsl, unquote, urlsplit

from flywheel.dashboard import pages_kfp, pages_models, pages_monitoring, pages_runs
from flywheel.dashboard.sources import PageNotFound, Sources
from flywheel.dashboard.text import filters
from flywheel.errors import FlywheelError

PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
STATIC_DIR = os.path.join(PACKAGE_DIR, "static")
TEMPLATE_DIR = os.path.join(PACKAGE_DIR, "templates")
PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; frame-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'self'"
)
# Artifact files (reports written by components) run in an opaque origin without script.
FILE_CSP = "sandbox; default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'; font-src data:"
STATIC_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8", ".svg": "image/svg+xml"}


class Response:
    """What a route returns: a body with status and headers."""

    def __init__(self, body: bytes, *, status: int = 200, content_type: str = "text/html; charset=utf-8",
                 headers: dict[str, str] | None = None) -> None:
        self.body = body
        self.status = status
        self.content_type = content_type
        self.headers = headers or {}


class Dashboard:
    """Routes requests to page functions and renders their templates.

    Args:
        sources: The stores to show.
    """

    def __init__(self, sources: Sources) -> None:
        import jinja2

        self.sources = sources
        self.templates = jinja2.Environment(
            loader=jinja2.FileSystemLoader(TEMPLATE_DIR),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.templates.filters.update(filters())
        self.templates.globals["home_root"] = sources.home.root
        self.routes: list[tuple[re.Pattern[str], Callable[..., Response]]] = [
            (re.compile(r"/"), lambda q: self.redirect("/runs")),
            (re.compile(r"/runs"), lambda q: self.page("runs.html", pages_runs.runs_page(self.sources, q), "runs")),
            (re.compile(r"/runs/([^/]+)"), lambda q, r: self.page("run.html", pages_runs.run_page(self.sources, r), "runs")),
            (re.compile(r"/runs/([^/]+)/nodes/([^/]+)"),
             lambda q, r, n: self.page("node.html", pages_runs.node_page(self.sources, r, n), "runs")),
            (re.compile(r"/runs/([^/]+)/nodes/([^/]+)/log"),
             lambda q, r, n: self.text(pages_runs.node_log(self.sources, r, n))),
            (re.compile(r"/kfp/runs/([^/]+)"),
             lambda q, r: self.page("kfp_run.html", pages_kfp.kfp_run_page(self.sources, r), "runs")),
            (re.compile(r"/artifacts/(\d+)"),
             lambda q, a: self.page("artifact.html", pages_runs.artifact_page(self.sources, a), "runs")),
            (re.compile(r"/artifacts/(\d+)/lineage"),
             lambda q, a: self.page("lineage.html", pages_runs.lineage_page(self.sources, a), "runs")),
            (re.compile(r"/artifacts/(\d+)/files/(.+)"), self.artifact_file),
            (re.compile(r"/models"), lambda q: self.page("models.html", pages_models.models_page(self.sources), "models")),
            (re.compile(r"/models/([^/]+)"),
             lambda q, m: self.page("model.html", pages_models.model_page(self.sources, m, q), "models")),
            (re.compile(r"/models/([^/]+)/compare"),
             lambda q, m: self.page("compare.html", pages_models.compare_page(self.sources, m, q), "models")),
            (re.compile(r"/monitoring"),
             lambda q: self.page("monitoring.html", pages_monitoring.monitoring_index(self.sources), "monitoring")),
            (re.compile(r"/monitoring/([^/]+)"),
             lambda q, m: self.page("monitor.html", pages_monitoring.monitoring_page(self.sources, m, q), "monitoring")),
            (re.compile(r"/schedules"),
             lambda q: self.page("schedules.html", pages_monitoring.schedules_page(self.sources), "schedules")),
            (re.compile(r"/api/runs"), lambda q: self.json(pages_runs.runs_json(self.sources, q))),
            (re.compile(r"/api/runs/([^/]+)"), lambda q, r: self.json(pages_runs.run_json(self.sources, r))),
            (re.compile(r"/static/([A-Za-z0-9_.-]+)"), self.static),
            # For probes: answers without opening any store or calling the KFP API.
            (re.compile(r"/healthz"), lambda q: self.text("ok\n")),
        ]

    # -- responses -----------------------------------------------------------------

    def page(self, template: str, context: dict[str, Any], section: str) -> Response:
        html = self.templates.get_template(template).render(section=section, **context)
        return Response(html.encode("utf-8"), headers={"Content-Security-Policy": PAGE_CSP})

    def error_page(self, status: int, message: str) -> Response:
        html = self.templates.get_template("error.html").render(section="", status=status, message=message)
        return Response(html.encode("utf-8"), status=status, headers={"Content-Security-Policy": PAGE_CSP})

    @staticmethod
    def json(data: Any) -> Response:
        body = json.dumps(data, default=str).encode("utf-8")
        return Response(body, content_type="application/json", headers={"Cache-Control": "no-store"})

    @staticmethod
    def text(text: str) -> Response:
        return Response(text.encode("utf-8"), content_type="text/plain; charset=utf-8", headers={"Cache-Control": "no-store"})

    @staticmethod
    def redirect(location: str) -> Response:
        return Response(b"", status=302, headers={"Location": location})

    def static(self, query: dict[str, str], name: str) -> Response:
        path = os.path.join(STATIC_DIR, name)
        if not os.path.isfile(path):
            raise PageNotFound(f"No static file {name!r}.")
        with open(path, "rb") as handle:
            body = handle.read()
        content_type = STATIC_TYPES.get(os.path.splitext(name)[1], "application/octet-stream")
        return Response(body, content_type=content_type, headers={"Cache-Control": "max-age=300"})

    def artifact_file(self, query: dict[str, str], artifact_id: str, rel_path: str) -> Response:
        path, content_type = pages_runs.artifact_file(self.sources, artifact_id, rel_path)
        with open(path, "rb") as handle:
            body = handle.read()
        if content_type.startswith("text/"):
            content_type += "; charset=utf-8"
        return Response(body, content_type=content_type, headers={"Content-Security-Policy": FILE_CSP})

    # -- dispatch ------------------------------------------------------------------

    def handle(self, raw_path: str) -> Response:
        """The response to a GET of ``raw_path`` (path plus query)."""
        parts = urlsplit(raw_path)
        query = dict(parse_qsl(parts.query))
        path = parts.path.rstrip("/") or "/"
        for pattern, route in self.routes:
            match = pattern.fullmatch(path)
            if match:
                args = [unquote(g) for g in match.groups()]
                try:
                    return route(query, *args)
                except PageNotFound as exc:
                    return self.error_page(404, str(exc))
                except FlywheelError as exc:
                    return self.error_page(500, str(exc))
        return self.error_page(404, f"No page at {path}.")


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


class _Handler(http.server.BaseHTTPRequestHandler):
    server: DashboardServer
    protocol_version = "HTTP/1.1"

    def _send(self, response: Response, head: bool = False) -> None:
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        for key, value in response.headers.items():
            self.send_header(key, value)
        self.end_headers()
        if not head:
            self.wfile.write(response.body)

    def _respond(self, head: bool) -> None:
        dashboard = self.server.dashboard
        if self.server.loopback_only:
            # A page on another site cannot reach this server through DNS rebinding.
            host = (self.headers.get("Host") or "").rsplit(":", 1)[0].strip("[]")
            if not _loopback(host):
                self._send(dashboard.error_page(403, f"Host {host!r} is not this machine."), head)
                return
        try:
            response = dashboard.handle(self.path)
        except Exception:  # noqa: BLE001 - one broken page must not stop the server; the trace goes to stderr
            traceback.print_exc()
            response = dashboard.error_page(500, "The page failed to render; the server log has the details.")
        self._send(response, head)

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self._respond(head=False)

    def do_HEAD(self) -> None:  # noqa: N802
        self._respond(head=True)

    def _read_only(self) -> None:
        body = b"The dashboard is read-only.\n"
        self.send_response(405)
        self.send_header("Allow", "GET, HEAD")
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_PUT = do_DELETE = do_PATCH = _read_only  # noqa: N815

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's signature
        if self.server.quiet:
            return
        super().log_message(format, *args)


class DashboardServer(http.server.ThreadingHTTPServer):
    """A threaded HTTP server bound to one address, serving one ``Dashboard``."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], dashboard: Dashboard, *, quiet: bool = False) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)
        self.dashboard = dashboard
        self.quiet = quiet
        self.loopback_only = _loopback(address[0])

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        host = f"[{host}]" if ":" in str(host) else host
        return f"http://{host}:{port}"


def make_server(sources: Sources, *, host: str = "127.0.0.1", port: int = 8080, quiet: bool = False) -> DashboardServer:
    """A dashboard server bound to ``host:port`` (port 0 picks a free one); call ``serve_forever``."""
    return DashboardServer((host, port), Dashboard(sources), quiet=quiet)
