"""The one rule for names that become paths: pipelines, runs, tasks, artifacts, models.

Every name flywheel turns into a directory or file name (``<home>/artifacts/
<pipeline>/<run>/<task>/<output>``, ``<home>/logs/<run>/``, ``<registry>/
<model>/``) is checked here, once, before any path is built from it, so a name
such as ``../../escaped`` or ``a/b`` can never point outside its parent.
"""

from __future__ import annotations

import re
from typing import Any

from flywheel.errors import FlywheelError

MAX_NAME_LENGTH = 128
NAME_RULE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


class InvalidNameError(FlywheelError):
    """A pipeline, run, task, artifact or model name cannot be used as a path component."""


def is_valid_name(value: Any) -> bool:
    """Whether ``value`` may be used as one path component (see ``check_name``)."""
    return isinstance(value, str) and len(value) <= MAX_NAME_LENGTH and bool(NAME_RULE.match(value))


def safe_name(value: str) -> str:
    """A valid name close to ``value`` (unsafe characters become '-'), for suggestions."""
    candidate = _UNSAFE.sub("-", str(value)).lstrip("-_.")[:MAX_NAME_LENGTH].rstrip("-")
    return candidate or "unnamed"


def check_name(kind: str, value: Any) -> str:
    """Returns ``value`` if it is a valid ``kind`` name, else raises.

    A valid name starts with a letter or digit, holds only letters, digits,
    '_', '.' and '-', and has at most ``MAX_NAME_LENGTH`` characters: it is
    one plain path component (no '/', no '..', no leading '.').

    Args:
        kind: What the name names ("pipeline", "run", "model", ...), for the message.
        value: The name.

    Raises:
        InvalidNameError: the name breaks the rule; the message says which
            rule, the value received and a valid name to use instead.
    """
    if is_valid_name(value):
        return value
    if not isinstance(value, str):
        raise InvalidNameError(f"A {kind} name must be a string. Got {type(value).__name__} {value!r} instead.")
    if len(value) > MAX_NAME_LENGTH:
        problem = f"has {len(value)} characters (at most {MAX_NAME_LENGTH} are allowed)"
    else:
        problem = "is not one plain path component"
    raise InvalidNameError(
        f"A {kind} name must start with a letter or digit and hold only letters, digits, '_', '.' and '-' "
        f"(at most {MAX_NAME_LENGTH} characters), because it becomes a directory name. "
        f"Got {value[:200]!r} instead, which {problem}. Use a name such as {safe_name(value)!r}."
    )
