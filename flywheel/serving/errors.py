"""Errors of the serving endpoint.

``ServingError`` is a startup or configuration problem the CLI prints as one
line. ``RequestError`` is a client's mistake in one request: the server turns
it into an HTTP status and a JSON ``{"error": "..."}`` body, never a 500.
"""

from __future__ import annotations

from flywheel.errors import FlywheelError


class ServingError(FlywheelError):
    """The server cannot start or serve as configured (no such model, bad option)."""


class RequestError(ServingError):
    """A request the server refuses; ``status`` is the HTTP status to answer with.

    Args:
        message: Names the field and the problem, and says how to fix it.
        status: HTTP status code (400 by default; 404, 413, 503 where they fit).
    """

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status
