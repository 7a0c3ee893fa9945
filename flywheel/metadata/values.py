"""Converting between Python values and ML Metadata property values."""

from __future__ import annotations

import json
from typing import Any


def set_value(target: Any, key: str, value: Any) -> None:
    """Stores ``value`` in an MLMD properties map (``custom_properties``)."""
    if value is None:
        return
    slot = target[key]
    if isinstance(value, bool):
        slot.bool_value = value
    elif isinstance(value, int):
        slot.int_value = value
    elif isinstance(value, float):
        slot.double_value = value
    elif isinstance(value, str):
        slot.string_value = value
    else:
        # Lists and dicts keep their JSON form; MLMD's struct_value loses ints.
        slot.string_value = _JSON_PREFIX + json.dumps(value, sort_keys=True, default=str)


_JSON_PREFIX = "json:"


def get_value(slot: Any) -> Any:
    """Reads one MLMD ``Value`` back into a Python value."""
    kind = slot.WhichOneof("value")
    if kind == "bool_value":
        return slot.bool_value
    if kind == "int_value":
        return slot.int_value
    if kind == "double_value":
        return slot.double_value
    if kind == "string_value":
        text = slot.string_value
        if text.startswith(_JSON_PREFIX):
            try:
                return json.loads(text[len(_JSON_PREFIX):])
            except ValueError:
                return text
        return text
    return None


def to_dict(properties: Any) -> dict[str, Any]:
    """An MLMD properties map as a plain dict."""
    return {key: get_value(slot) for key, slot in properties.items()}
