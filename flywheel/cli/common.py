"""What every command module shares: the project home, --param parsing, plain tables."""

from __future__ import annotations

import argparse
from typing import Any

from flywheel.errors import ParameterError


def home_of(args: argparse.Namespace) -> Any:
    """The project home: --home (before or after the command), else $FLYWHEEL_HOME, else ~/.flywheel."""
    from flywheel.home import Home

    return Home.resolve(getattr(args, "home", None))


def parse_params(items: list[str] | None) -> dict[str, str]:
    """``["k=v", ...]`` -> ``{"k": "v"}`` (values stay strings; the pipeline coerces them).

    Raises:
        ParameterError: an item has no '=' or an empty name.
    """
    params: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ParameterError(f"--param takes NAME=VALUE (e.g. --param epochs=5); got {item!r}.")
        params[key.strip()] = value
    return params


def table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip()]
    for row in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
    return "\n".join(lines)
