"""Predict bodies are checked against the model's features before the model sees them."""

from __future__ import annotations

import math

import numpy as np
import pytest

from flywheel.serving.errors import RequestError
from flywheel.serving.inputs import FeatureSchema, decode_json, parse_predict

SPEC = {
    "label": "species",
    "label_vocabulary": ["Adelie", "Chinstrap", "Gentoo"],
    "numeric_features": ["bill_length_mm", "year"],
    "categorical_features": ["island"],
    "features": {
        "bill_length_mm": {"kind": "numeric", "dtype": "float32"},
        "year": {"kind": "numeric", "dtype": "float32"},
        "island": {"kind": "categorical", "dtype": "string", "vocabulary": ["Biscoe", "Dream", "Torgersen"]},
    },
}
SCHEMA = FeatureSchema.from_spec(SPEC)
ROW = {"bill_length_mm": 39.5, "year": 2008, "island": "Dream"}


def _error(payload, **kwargs) -> str:
    with pytest.raises(RequestError) as caught:
        parse_predict(payload, SCHEMA, **kwargs)
    assert caught.value.status == 400
    return str(caught.value)


def test_row_format_becomes_typed_columns_and_keeps_what_was_sent():
    parsed = parse_predict({"instances": [ROW, {**ROW, "island": "Biscoe", "year": 2009}]}, SCHEMA)

    assert not parsed.columnar and parsed.size == 2
    assert parsed.columns["bill_length_mm"].dtype == np.float32
    assert parsed.columns["year"].tolist() == [2008.0, 2009.0]
    assert parsed.columns["island"].tolist() == ["Dream", "Biscoe"]
    assert parsed.rows() == [ROW, {**ROW, "island": "Biscoe", "year": 2009}]


def test_columnar_format_and_rows_built_from_columns():
    parsed = parse_predict(
        {
            "signature_name": "serving_default",
            "inputs": {"bill_length_mm": [1, 2], "year": [3, 4], "island": ["Dream", None]},
        },
        SCHEMA,
    )

    assert parsed.columnar and parsed.size == 2
    assert parsed.columns["island"].tolist() == ["Dream", ""]
    assert parsed.rows()[1] == {"bill_length_mm": 2, "year": 4, "island": None}


def test_null_is_missing_numeric_nan_and_categorical_empty():
    parsed = parse_predict({"instances": [{"bill_length_mm": None, "year": 2008, "island": None}]}, SCHEMA)

    assert math.isnan(parsed.columns["bill_length_mm"][0])
    assert parsed.columns["island"].tolist() == [""]
    assert parse_predict({"instances": [{**ROW, "island": ""}]}, SCHEMA).columns["island"].tolist() == [""]


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        ({"year": 2008, "island": "Dream"}, "instances[0] is missing the feature(s) ['bill_length_mm']"),
        (
            {**ROW, "bill_length_mm": "39.5"},
            "instances[0] feature 'bill_length_mm' must be a number or null; got the string",
        ),
        ({**ROW, "bill_length_mm": True}, "feature 'bill_length_mm' must be a number or null; got the boolean true"),
        ({**ROW, "bill_length_mm": [39.5]}, "feature 'bill_length_mm' must be a number or null; got the list"),
        ({**ROW, "bill_length_mm": float("inf")}, "feature 'bill_length_mm' must be a finite number"),
        ({**ROW, "bill_length_mm": 10**400}, "feature 'bill_length_mm' must be a finite number"),
        ({**ROW, "bill_length_mm": 1e39}, "feature 'bill_length_mm' must be a finite number"),
        ({**ROW, "island": 3}, "instances[0] feature 'island' must be a string or null; got the number 3"),
        ({**ROW, "island": "Mars"}, "feature 'island' is 'Mars', which is not a category the model was trained on"),
        ({**ROW, "flipper": 1}, "instances[0] has unknown feature(s) ['flipper']"),
    ],
)
def test_each_bad_instance_is_a_400_naming_the_field(row, expected):
    message = _error({"instances": [ROW, ROW, row]}).replace("instances[2]", "instances[0]")
    assert expected in message


def test_out_of_domain_message_lists_the_allowed_categories():
    assert "['Biscoe', 'Dream', 'Torgersen']" in _error({"instances": [{**ROW, "island": "Mars"}]})


def test_values_nested_near_the_parser_limit_are_described_not_crashed_on():
    deep = decode_json(b"[" * 900 + b"]" * 900)
    assert "must be a number or null" in _error({"instances": [{**ROW, "year": deep}]})


def test_unknown_features_are_dropped_when_asked():
    parsed = parse_predict({"instances": [{**ROW, "species": "Adelie"}]}, SCHEMA, ignore_unknown=True)
    assert parsed.rows() == [ROW]


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ([ROW], "must be a JSON object with 'instances' or 'inputs'; got a JSON list"),
        ({}, "exactly one of 'instances' (rows) or 'inputs' (columns)"),
        ({"instances": [ROW], "inputs": {}}, "exactly one of 'instances'"),
        ({"instances": ROW}, "'instances' must be a non-empty JSON list of objects"),
        ({"instances": []}, "'instances' must be a non-empty JSON list"),
        ({"instances": [[1, 2, "Dream"]]}, "instances[0] must be a JSON object"),
        ({"instances": [ROW], "extra": 1}, "Unknown top-level key(s) ['extra']"),
        ({"instances": [ROW], "signature_name": "classify"}, "'signature_name' must be 'serving_default'"),
        ({"inputs": [1, 2]}, "'inputs' must be a JSON object {feature: [values]}"),
        ({"inputs": {"bill_length_mm": [1], "year": [1, 2], "island": ["Dream"]}}, "inputs['year'] has 2 values"),
        (
            {"inputs": {"bill_length_mm": 1, "year": [1], "island": ["Dream"]}},
            "inputs['bill_length_mm'] must be a non-empty JSON list",
        ),
        ({"inputs": {"bill_length_mm": [1], "year": ["x"], "island": ["Dream"]}}, "inputs['year'][0] must be a number"),
        ({"inputs": {"bill_length_mm": [1], "year": [1]}}, "inputs is missing the feature(s) ['island']"),
    ],
)
def test_wrong_shapes_are_a_400_that_says_what_is_wrong(payload, expected):
    assert expected in _error(payload)


@pytest.mark.parametrize(
    ("body", "expected"),
    [(b"", "empty"), (b"{nope", "not valid JSON"), (b"\xff\xfe", "not"), (b"[" * 100000, "too deeply")],
)
def test_bodies_that_are_not_json(body, expected):
    with pytest.raises(RequestError) as caught:
        decode_json(body)
    assert caught.value.status == 400 and expected in str(caught.value)
