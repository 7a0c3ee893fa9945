"""The webhook alert sink: which URLs it may call, and the POST itself.

A rules file can be written by someone other than the person who runs the
monitor (a shared repository, a ConfigMap), and the monitor often runs where
a cloud metadata service answers on a link-local address. So a webhook URL:

* must be ``http://`` or ``https://`` with a host, and carry no user name or
  password (they would be sent in clear to whatever the URL names; put a token
  in the path, as Slack and Teams webhooks do);
* may not name a link-local or metadata address (``169.254.0.0/16``,
  ``fe80::/10``, ``fd00:ec2::254``, ``metadata.google.internal``, ...) unless
  the rules file says ``allow_link_local: true``; a host name is resolved when
  the alert is sent and every address it resolves to is checked;
* is called without following redirects (a redirect could point anywhere,
  including the addresses refused above): a 3xx answer is a failed send.
"""

from __future__ import annotations

import ipaddress
import json
import socket
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from flywheel.errors import FlywheelError

METADATA_NAMES = ("metadata.google.internal", "metadata.goog", "metadata", "instance-data", "instance-data.ec2.internal")
METADATA_ADDRESSES = (
    ipaddress.ip_address("169.254.169.254"),
    ipaddress.ip_address("fd00:ec2::254"),
    ipaddress.ip_address("100.100.100.200"),  # Alibaba Cloud
)


class WebhookError(FlywheelError):
    """A webhook URL is not allowed, or the endpoint answered with a redirect."""


def _forbidden_address(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    mapped = getattr(address, "ipv4_mapped", None)
    if mapped is not None:
        address = mapped
    return address.is_link_local or address in METADATA_ADDRESSES or address.is_unspecified or address.is_multicast


def check_url(url: Any, *, allow_link_local: bool = False, where: str = "sinks.webhook.url") -> str:
    """Returns the URL if a webhook may call it (the rules of the module docstring).

    Raises:
        WebhookError: naming the rule broken, the value and how to fix it.
    """
    if not isinstance(url, str) or not url.strip():
        raise WebhookError(f"'{where}' must be an http:// or https:// URL. Got {url!r} instead.")
    try:
        parts = urllib.parse.urlsplit(url.strip())
        port = parts.port  # raises on a port that is not a number or out of range
    except ValueError as exc:
        raise WebhookError(f"'{where}' is not a valid URL ({exc}). Got {url!r} instead.") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise WebhookError(f"'{where}' must be an http:// or https:// URL with a host. Got {url!r} instead.")
    if parts.username is not None or parts.password is not None:
        raise WebhookError(
            f"'{where}' must not carry a user name or password (they would be sent to that host in clear text "
            "and logged with the URL); use a webhook URL whose path holds its token. Got a URL with credentials "
            f"for host {parts.hostname!r} instead."
        )
    del port
    if not allow_link_local:
        host = parts.hostname.rstrip(".").lower()
        try:
            literal = ipaddress.ip_address(host)
        except ValueError:
            literal = None
        if host in METADATA_NAMES or (literal is not None and _forbidden_address(literal)):
            raise WebhookError(
                f"'{where}' points at {host}, a link-local or cloud metadata address, which a webhook may not "
                "call; use another host, or set 'sinks.webhook.allow_link_local: true' if this is intended."
            )
    return url.strip()


def check_resolved(url: str, *, allow_link_local: bool = False) -> None:
    """Refuses a host name that resolves to a link-local or metadata address (checked at send time).

    Raises:
        WebhookError: one of its addresses is refused.
        OSError: the name does not resolve.
    """
    if allow_link_local:
        return
    parts = urllib.parse.urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    for *_, sockaddr in socket.getaddrinfo(parts.hostname, port, proto=socket.IPPROTO_TCP):
        address = ipaddress.ip_address(sockaddr[0].split("%", 1)[0])
        if _forbidden_address(address):
            raise WebhookError(
                f"The webhook host {parts.hostname!r} resolves to {address}, a link-local or cloud metadata "
                "address, so the alert was not sent; fix the name or set 'sinks.webhook.allow_link_local: true'."
            )


class _RefuseRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req: Any, fp: Any, code: int, msg: str, headers: Any, newurl: str) -> None:
        raise WebhookError(
            f"The webhook {req.full_url} answered {code} with a redirect to {newurl}; redirects are not followed "
            "(they could lead anywhere). Put the final URL in 'sinks.webhook.url'."
        )


def post_json(url: str, document: dict[str, Any], *, timeout_s: float, allow_link_local: bool = False) -> int:
    """POSTs a JSON document without following redirects; returns the HTTP status.

    Raises:
        WebhookError: the URL or its resolved address is refused, or the answer is a redirect.
        OSError: connection refused, timeout, or a non-2xx answer
            (``urllib.error.HTTPError`` is an ``OSError``).
    """
    check_url(url, allow_link_local=allow_link_local)
    check_resolved(url, allow_link_local=allow_link_local)
    body = json.dumps(document, default=str).encode()
    request = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": "application/json"})
    opener = urllib.request.build_opener(_RefuseRedirects())
    with opener.open(request, timeout=timeout_s) as response:  # noqa: S310 - URL checked above
        return int(response.status)
