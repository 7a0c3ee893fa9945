"""Formatting helpers shared by the pages and templates (also jinja2 filters)."""

from __future__ import annotations

import datetime as dt
import json
import math
from typing import Any
from urllib.parse import quote


def fmt_ms(ms: int | float | None) -> str:
    """Epoch milliseconds as local ``YYYY-MM-DD HH:MM:SS``; "-" when unknown."""
    if not ms:
        return "-"
    return dt.datetime.fromtimestamp(ms / 1000).strftime("%Y-%m-%d %H:%M:%S")


def fmt_ts(seconds: int | float | None) -> str:
    """Epoch seconds as local ``YYYY-MM-DD HH:MM:SS``; "-" when unknown."""
    if seconds is None:
        return "-"
    return dt.datetime.fromtimestamp(seconds).strftime("%Y-%m-%d %H:%M:%S")


def fmt_duration(seconds: float | None) -> str:
    """``1.23s`` under a minute, ``2m03.4s`` under an hour, ``1h02m`` above; "-" when unknown."""
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.2f}s"
    if seconds < 3600:
        return f"{int(seconds // 60)}m{seconds % 60:04.1f}s"
    return f"{int(seconds // 3600)}h{int(seconds % 3600 // 60):02d}m"


def fmt_num(value: Any, digits: int = 4) -> str:
    """A metric value: floats with ``digits`` decimals, None as "-"."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return f"{value:.{digits}f}"
    return str(value)


def fmt_value(value: Any) -> str:
    """Any property or parameter value as short text (JSON for containers)."""
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, default=str)


def pretty_json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, default=str)


def url_part(value: Any) -> str:
    """One path segment, percent-encoded (run ids, node ids and names may hold anything)."""
    return quote(str(value), safe="")


def filters() -> dict[str, Any]:
    """The jinja2 filters of the dashboard's templates."""
    return {
        "ms": fmt_ms,
        "ts": fmt_ts,
        "duration": fmt_duration,
        "num": fmt_num,
        "value": fmt_value,
        "pretty": pretty_json,
        "u": url_part,
    }
