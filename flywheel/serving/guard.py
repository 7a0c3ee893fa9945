"""Who may call the serving API: Host and Origin allow-lists, and JSON-only state changes.

Three browser attacks are closed here:

* **DNS rebinding**: a page on ``evil.example`` re-points its own name at
  127.0.0.1 and reads the API as same-origin. Its requests carry
  ``Host: evil.example``, so the API answers only Host names on the allow-list
  (``localhost`` by default) or IP literals, which rebinding cannot forge.
* **Cross-site requests**: a browser sends ``Origin`` on every cross-origin
  POST; any origin that is not loopback or allowed gets 403.
* **Simple requests** that skip CORS preflight (``Content-Type: text/plain``
  or a form post): calls that change state (``:feedback``) must say
  ``Content-Type: application/json``, which a page cannot send cross-site
  without a preflight that this server never grants.
"""

from __future__ import annotations

import ipaddress
import urllib.parse
from typing import Any

from flywheel.serving.errors import RequestError

ANY = "*"
LOOPBACK_NAMES = ("localhost",)
JSON_TYPES = ("application/json",)


def host_name(value: str) -> str:
    """The host part of a ``Host`` header or URL authority (port and IPv6 brackets removed), lowercase."""
    value = value.strip().lower()
    if value.startswith("["):  # [::1]:8501
        return value[1 : value.find("]")] if "]" in value else value
    if value.count(":") == 1:
        value = value.split(":", 1)[0]
    return value.rstrip(".")


def is_ip_literal(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _is_loopback(name: str) -> bool:
    if name in LOOPBACK_NAMES or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def host_allowed(header: str | None, allowed: tuple[str, ...]) -> bool:
    """Whether a ``Host`` header names this server: an IP literal, or a name on the allow-list."""
    if ANY in allowed:
        return True
    if not header:
        return False
    name = host_name(header)
    return is_ip_literal(name) or name in LOOPBACK_NAMES or name in {host_name(a) for a in allowed}


def origin_allowed(origin: str | None, allowed: tuple[str, ...]) -> bool:
    """Whether a browser ``Origin`` may call: none sent (not a browser), loopback, or on the allow-list."""
    if origin is None or ANY in allowed:
        return True
    parsed = urllib.parse.urlsplit(origin.strip())
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        return False  # "null" (sandboxed frames, file://) and anything odd
    normalized = f"{parsed.scheme}://{parsed.netloc}".lower()
    return _is_loopback(parsed.hostname) or normalized in {a.rstrip("/").lower() for a in allowed}


def check_caller(request: Any, config: Any) -> None:
    """Refuses a request whose Host or Origin is not allowed.

    Raises:
        RequestError: 421 for a Host that is not this server's, 403 for a foreign Origin.
    """
    host = request.headers.get("Host")
    if not host_allowed(host, config.allowed_hosts):
        raise RequestError(
            f"This server does not answer for Host {host!r}; allowed: IP addresses, localhost and "
            f"{list(config.allowed_hosts)}. Add the name the clients use with --allowed-host NAME.",
            status=421,
        )
    origin = request.headers.get("Origin")
    if not origin_allowed(origin, config.allowed_origins):
        raise RequestError(
            f"Cross-site requests from origin {origin!r} are refused; allowed: loopback origins and "
            f"{list(config.allowed_origins)}. Add a trusted web app with --allowed-origin https://host[:port].",
            status=403,
        )


def require_json_content_type(request: Any) -> None:
    """Refuses a state-changing call whose body is not declared JSON (what a cross-site form can send).

    Raises:
        RequestError: 415 naming the content type received.
    """
    if request.content_type not in JSON_TYPES:
        raise RequestError(
            f"This call changes state, so its body must be sent with Content-Type: application/json; "
            f"got {request.headers.get('Content-Type', 'none')!r}.",
            status=415,
        )
