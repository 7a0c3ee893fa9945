"""Checking predict requests against the model's feature contract before the model sees them.

The contract is the version's ``model.json`` (written by transform and train,
see ``flywheel.models.features``). Rules, applied to every instance:

* every feature of the model must be present (a missing key is an error);
* a numeric feature takes a JSON number (not a bool, not a string); ``null``
  (or a ``NaN`` literal) means "missing" and reaches the model as NaN, which
  the model imputes with the training mean; infinities are refused;
* a categorical feature takes a JSON string from the categories the model was
  trained on (``model.json`` ``vocabulary``); ``null`` or ``""`` means
  "missing" and reaches the model as ``""`` (the out-of-vocabulary slot, as in
  training); any other value is refused, naming the allowed categories;
* a key that is not a feature of the model is refused (as TF Serving refuses
  an input its signature lacks), unless the server runs with
  ``ignore_unknown_features``, which drops such keys.

Speed: a column of ``VECTORIZE_FROM`` values or more is converted in one numpy
call when every value passes (``_numbers_at_once``, ``_strings_at_once``); the
value-by-value check runs for short columns and to name the first bad value,
so the messages are the same either way. Bodies are parsed by orjson, by the
stdlib parser for what orjson refuses (``decode_json``).

Two request shapes, as in TF Serving's REST API: row (``{"instances": [{feature:
value}, ...]}``) and columnar (``{"inputs": {feature: [values]}}``), plus an
optional ``"signature_name"`` that must be ``serving_default``.

An image model (``model.json`` ``modality: "image"``) has one input, ``image``:
raw pixels as nested JSON lists of numbers in the training source's range, of
exactly the model's ``image_shape`` (H, W, C; for one channel, H x W is taken
too). As in TF Serving, a single-input model also takes bare tensors:
``{"instances": [pixels, ...]}`` and ``{"inputs": [pixels, ...]}``.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from typing import Any

from flywheel.serving.errors import RequestError

SIGNATURE = "serving_default"
_TOP_LEVEL = ("instances", "inputs", "signature_name")
_MAX_SHOWN = 12
_FLOAT32_MAX = 3.4028234e38
_NUMBER_TYPES = frozenset((float, int, type(None)))
VECTORIZE_FROM = 8  # shorter columns are cheaper checked value by value than converted at once (measured)


@dataclasses.dataclass(frozen=True)
class FeatureSchema:
    """The raw features a model takes, read from its ``model.json``.

    Attributes:
        numeric: Numeric feature names (float32 inputs, NaN for missing).
        categorical: String feature names ("" for missing).
        vocabularies: Allowed values of each categorical feature.
        label_vocabulary: Class names, in the order of the model's probabilities.
        label: Name of the label column.
    """

    numeric: tuple[str, ...]
    categorical: tuple[str, ...]
    vocabularies: dict[str, tuple[str, ...]]
    label_vocabulary: tuple[str, ...]
    label: str = ""
    image_input: str = ""
    image_shape: tuple[int, ...] = ()

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> FeatureSchema:
        """Builds the schema from a ``model.json`` document."""
        if spec.get("modality") == "image":
            return cls(
                numeric=(),
                categorical=(),
                vocabularies={},
                label_vocabulary=tuple(spec["label_vocabulary"]),
                label=str(spec.get("label", "")),
                image_input=str(spec["image_input"]),
                image_shape=tuple(int(d) for d in spec["image_shape"]),
            )
        categorical = tuple(spec["categorical_features"])
        return cls(
            numeric=tuple(spec["numeric_features"]),
            categorical=categorical,
            vocabularies={name: tuple(spec["features"][name].get("vocabulary") or ()) for name in categorical},
            label_vocabulary=tuple(spec["label_vocabulary"]),
            label=str(spec.get("label", "")),
        )

    @property
    def is_image(self) -> bool:
        """Whether the model takes one image tensor instead of named features."""
        return bool(self.image_input)

    @property
    def names(self) -> tuple[str, ...]:
        """All input names, numeric first (the order of ``model.json``)."""
        if self.is_image:
            return (self.image_input,)
        return self.numeric + self.categorical

    @functools.cached_property
    def allowed(self) -> dict[str, frozenset[str]]:
        """The vocabularies as sets, for fast membership checks."""
        return {name: frozenset(values) for name, values in self.vocabularies.items()}

    @functools.cached_property
    def accepted(self) -> dict[str, frozenset[str | None]]:
        """Every value a categorical column takes as is: its vocabulary, "" and None (missing)."""
        return {name: values | {"", None} for name, values in self.allowed.items()}


@dataclasses.dataclass
class ParsedRequest:
    """A checked predict request: model-ready columns plus what was sent, for the request log.

    Attributes:
        columnar: True for ``inputs`` (columnar) requests, False for ``instances``.
        size: Number of instances.
        columns: One 1-D numpy array per feature (float32, or object of str).
        sent_rows: The instances as sent (row requests), features only.
        sent_columns: The columns as sent (columnar requests), features only.
    """

    columnar: bool
    size: int
    columns: dict[str, Any]
    sent_rows: list[dict[str, Any]] | None = None
    sent_columns: dict[str, list[Any]] | None = None

    def rows(self) -> list[dict[str, Any]]:
        """The instances as sent, one dict per instance (built lazily, off the request path)."""
        if self.sent_rows is not None:
            return self.sent_rows
        columns = {  # gRPC tensors arrive as arrays: their values as JSON numbers
            name: values.tolist() if hasattr(values, "tolist") else values
            for name, values in (self.sent_columns or {}).items()
        }
        return [{name: values[i] for name, values in columns.items()} for i in range(self.size)]


def decode_json(body: bytes) -> Any:
    """Parses a request body as JSON: orjson first (several times faster), the stdlib parser
    for what orjson refuses, so the accepted bodies and the error messages stay those of ``json``
    (``NaN`` literals, integers beyond 64 bits, nesting deeper than orjson's limit).

    Raises:
        RequestError: the body is empty, not UTF-8 or not JSON (400).
    """
    import orjson

    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        pass
    if not body.strip():
        raise RequestError("The request body is empty; send a JSON object such as {\"instances\": [...]}.")
    try:
        return json.loads(body)
    except RecursionError as exc:
        raise RequestError("The request body nests JSON too deeply; send instances of plain values.") from exc
    except UnicodeDecodeError as exc:
        raise RequestError(f"The request body is not UTF-8 text ({exc.reason}); send JSON.") from exc
    except ValueError as exc:
        raise RequestError(f"The request body is not valid JSON: {exc}.") from exc


def parse_predict(payload: Any, schema: FeatureSchema, *, ignore_unknown: bool = False) -> ParsedRequest:
    """Checks a decoded predict body and converts it into model inputs.

    Args:
        payload: The decoded JSON body.
        schema: The features of the model that will answer.
        ignore_unknown: Drop keys that are not features instead of refusing them.

    Returns:
        The parsed request.

    Raises:
        RequestError: the body breaks a rule of the module docstring; the
            message names the instance, the feature and the problem (400).
    """
    if not isinstance(payload, dict):
        raise RequestError(
            f"The request body must be a JSON object with 'instances' or 'inputs'; got a JSON {_json_type(payload)}."
        )
    unknown = sorted(set(payload) - set(_TOP_LEVEL))
    if unknown:
        raise RequestError(
            f"Unknown top-level key(s) {unknown}; a predict body holds 'instances' or 'inputs' "
            "(and optionally 'signature_name')."
        )
    signature = payload.get("signature_name", SIGNATURE)
    if signature != SIGNATURE:
        raise RequestError(f"'signature_name' must be '{SIGNATURE}' (the only signature); got {signature!r}.")
    if ("instances" in payload) == ("inputs" in payload):
        raise RequestError("A predict body must hold exactly one of 'instances' (rows) or 'inputs' (columns).")
    if schema.is_image:
        if "instances" in payload:
            return _parse_image_rows(payload["instances"], schema, ignore_unknown)
        return _parse_image_columns(payload["inputs"], schema, ignore_unknown)
    if "instances" in payload:
        return _parse_rows(payload["instances"], schema, ignore_unknown)
    return _parse_columns(payload["inputs"], schema, ignore_unknown)


def _parse_image_rows(instances: Any, schema: FeatureSchema, ignore_unknown: bool) -> ParsedRequest:
    name = schema.image_input
    if not isinstance(instances, list) or not instances:
        raise RequestError(
            f"'instances' must be a non-empty JSON list with one image per instance ({{\"{name}\": pixels}} "
            f"or bare pixels); got {_describe(instances)}."
        )
    sent = []
    for i, row in enumerate(instances):
        if isinstance(row, dict):
            row = _check_keys(row, {name}, (name,), f"instances[{i}]", ignore_unknown)
            sent.append(row[name])
        else:
            sent.append(row)
    images = _image_batch(sent, schema, "instances[{i}]")
    return ParsedRequest(columnar=False, size=len(sent), columns={name: images}, sent_rows=[{name: v} for v in sent])


def _parse_image_columns(inputs: Any, schema: FeatureSchema, ignore_unknown: bool) -> ParsedRequest:
    name = schema.image_input
    if isinstance(inputs, dict):
        inputs = _check_keys(inputs, {name}, (name,), "inputs", ignore_unknown)[name]
        where = f"inputs['{name}'][{{i}}]"
    else:
        where = "inputs[{i}]"
    if not isinstance(inputs, list) or not inputs:
        raise RequestError(
            f"'inputs' must be {{\"{name}\": [image, ...]}} or a non-empty JSON list of images; got {_describe(inputs)}."
        )
    images = _image_batch(inputs, schema, where)
    return ParsedRequest(columnar=True, size=len(inputs), columns={name: images}, sent_columns={name: inputs})


def _image_batch(values: list[Any], schema: FeatureSchema, where: str) -> Any:
    """Checks each image's shape and values; returns a float32 (batch, *image_shape) array."""
    import numpy as np

    shape = schema.image_shape
    accepted = [shape] + ([shape[:-1]] if len(shape) == 3 and shape[-1] == 1 else [])
    shown = " or ".join("x".join(str(d) for d in s) for s in accepted)
    out = np.empty((len(values), *shape), dtype=np.float32)
    for i, value in enumerate(values):
        location = where.format(i=i)
        try:
            array = np.array(value)
        except (ValueError, TypeError):
            array = None
        if array is None or array.dtype == object or array.dtype.kind not in "iuf":
            raise RequestError(
                f"{location} must be nested JSON lists of numbers of shape {shown} (raw pixels); got {_describe(value)}."
            )
        if array.shape not in accepted:
            raise RequestError(
                f"{location} has shape {'x'.join(str(d) for d in array.shape) or 'scalar'}; "
                f"the model takes images of shape {shown}."
            )
        if not np.isfinite(array).all() or np.abs(array).max(initial=0) > _FLOAT32_MAX:
            raise RequestError(f"{location} holds a value that is not a finite number; send finite pixel values.")
        out[i] = array.reshape(shape)
    return out


def _parse_rows(instances: Any, schema: FeatureSchema, ignore_unknown: bool) -> ParsedRequest:
    if not isinstance(instances, list) or not instances:
        raise RequestError(
            "'instances' must be a non-empty JSON list of objects, one {feature: value} per instance; "
            f"got {_describe(instances)}."
        )
    names = schema.names
    expected = set(names)
    sent: list[dict[str, Any]] = []
    for i, row in enumerate(instances):
        if not isinstance(row, dict):
            raise RequestError(f"instances[{i}] must be a JSON object {{feature: value}}; got {_describe(row)}.")
        if row.keys() != expected:
            row = _check_keys(row, expected, names, f"instances[{i}]", ignore_unknown)
        sent.append(row)
    columns = {}
    for name in schema.numeric:
        columns[name] = _numeric_column(name, [row[name] for row in sent], "instances[{i}]")
    for name in schema.categorical:
        columns[name] = _string_column(
            name, [row[name] for row in sent], schema, "instances[{i}]"
        )
    return ParsedRequest(columnar=False, size=len(sent), columns=columns, sent_rows=sent)


def _parse_columns(inputs: Any, schema: FeatureSchema, ignore_unknown: bool) -> ParsedRequest:
    if not isinstance(inputs, dict):
        raise RequestError(
            "'inputs' must be a JSON object {feature: [values]} (the columnar format); "
            f"got {_describe(inputs)}."
        )
    import numpy as np

    names = schema.names
    inputs = _check_keys(inputs, set(names), names, "inputs", ignore_unknown)
    size = None
    for name in names:
        values = inputs[name]  # a JSON list, or a 1-D array decoded from a gRPC tensor
        if not isinstance(values, (list, np.ndarray)) or not len(values):
            raise RequestError(
                f"inputs['{name}'] must be a non-empty JSON list with one value per instance; got {_describe(values)}."
            )
        if size is None:
            size = len(values)
        elif len(values) != size:
            raise RequestError(
                f"inputs['{name}'] has {len(values)} values but inputs['{names[0]}'] has {size}; "
                "every feature needs one value per instance."
            )
    columns = {}
    for name in schema.numeric:
        columns[name] = _numeric_column(name, inputs[name], f"inputs['{name}'][{{i}}]", prefix_has_name=True)
    for name in schema.categorical:
        columns[name] = _string_column(
            name, inputs[name], schema, f"inputs['{name}'][{{i}}]", prefix_has_name=True
        )
    sent = {name: inputs[name] for name in names}
    return ParsedRequest(columnar=True, size=int(size or 0), columns=columns, sent_columns=sent)


def _check_keys(
    given: dict[str, Any], expected: set[str], names: tuple[str, ...], where: str, ignore_unknown: bool
) -> dict[str, Any]:
    missing = [name for name in names if name not in given]
    if missing:
        raise RequestError(
            f"{where} is missing the feature(s) {missing}; the model needs {list(names)} "
            "(send null for a missing value)."
        )
    extra = sorted(set(given) - expected)
    if extra and not ignore_unknown:
        raise RequestError(
            f"{where} has unknown feature(s) {extra[:_MAX_SHOWN]}; the model takes only {list(names)}. "
            "Remove them (or start the server with --ignore-unknown-features)."
        )
    return {name: given[name] for name in names} if extra else given


def _numeric_column(name: str, values: Any, where: str, *, prefix_has_name: bool = False) -> Any:
    """A float32 column: one vectorized conversion when every value passes, else the
    value-by-value check that names the first bad instance."""
    import numpy as np

    column = _numbers_at_once(values) if len(values) >= VECTORIZE_FROM else None
    if column is not None:
        return column
    if isinstance(values, np.ndarray):
        values = values.tolist()
    out = np.empty(len(values), dtype=np.float32)
    for i, value in enumerate(values):
        kind = type(value)
        if kind is float or kind is int:
            if abs(value) > _FLOAT32_MAX:  # also infinities; compared before any float() of a huge int
                raise RequestError(
                    f"{_at(where, i, name, prefix_has_name)} must be a finite number; got {value!r}."
                )
            out[i] = value
        elif value is None:
            out[i] = np.nan
        else:
            hint = " (send the number without quotes)" if kind is str else ""
            raise RequestError(
                f"{_at(where, i, name, prefix_has_name)} must be a number or null; "
                f"got {_describe(value)}{hint}."
            )
    return out


def _numbers_at_once(values: Any) -> Any:
    """The float32 column of numbers, nulls (NaN) or NaNs all within float32's range; None otherwise."""
    import numpy as np

    if isinstance(values, np.ndarray):
        if values.dtype.kind != "f":
            return None
        if values.dtype == np.float32:  # a gRPC tensor: beyond float32's range means infinite
            return None if np.isinf(values).any() else values
        array = values
    else:
        if not set(map(type, values)) <= _NUMBER_TYPES:  # a bool, str, list or dict: checked one by one
            return None
        try:
            array = np.array(values, dtype=np.float64)  # None becomes NaN
        except OverflowError:  # an integer beyond float64
            return None
    if (np.abs(array) > _FLOAT32_MAX).any():  # also infinities; NaN compares False, without a warning
        return None
    return array.astype(np.float32, copy=False)


def _strings_at_once(values: list[Any], accepted: frozenset[str | None]) -> Any:
    """The object column of values all in ``accepted`` (None becomes ""); None when one is not."""
    import numpy as np

    try:
        distinct = set(values)
    except TypeError:  # a list or object among the values: checked one by one
        return None
    if not distinct <= accepted or not all(v is None or type(v) is str for v in distinct):
        return None
    return np.array(["" if v is None else v for v in values] if None in distinct else values, dtype=object)


def _string_column(
    name: str, values: list[Any], schema: FeatureSchema, where: str, *, prefix_has_name: bool = False
) -> Any:
    import numpy as np

    column = _strings_at_once(values, schema.accepted[name]) if len(values) >= VECTORIZE_FROM else None
    if column is not None:
        return column
    allowed = schema.allowed[name]
    out = np.empty(len(values), dtype=object)
    for i, value in enumerate(values):
        if value is None or value == "":
            out[i] = ""
        elif type(value) is not str:
            raise RequestError(
                f"{_at(where, i, name, prefix_has_name)} must be a string or null; got {_describe(value)}."
            )
        elif value not in allowed:
            vocabulary = schema.vocabularies[name]
            shown = list(vocabulary[:_MAX_SHOWN]) + (["..."] if len(vocabulary) > _MAX_SHOWN else [])
            raise RequestError(
                f"{_at(where, i, name, prefix_has_name)} is {value!r}, which is not a category the model "
                f"was trained on; allowed: {shown} (or null for missing)."
            )
        else:
            out[i] = value
    return out


def _at(where: str, i: int, name: str, prefix_has_name: bool) -> str:
    location = where.format(i=i)
    return location if prefix_has_name else f"{location} feature '{name}'"


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    return "object"


def _describe(value: Any) -> str:
    try:
        text = json.dumps(value, default=str)
    except (ValueError, RecursionError):  # nested close to the parser's limit: the type says enough
        return f"a deeply nested JSON {_json_type(value)}"
    if len(text) > 60:
        text = text[:57] + "..."
    return f"the {_json_type(value)} {text}"
