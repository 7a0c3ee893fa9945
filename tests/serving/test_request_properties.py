"""Property-based search over the serving request schema.

Any JSON body is either turned into model-ready columns that keep the
contract, or refused with a 4xx ``RequestError`` naming the problem; never
another exception (which the server would answer with a 500). Bodies are
drawn near the schema: the real keys and features with values of every JSON
type, plus arbitrary JSON. The last property sends such bodies over HTTP to a
real model and checks that every answer is a 2xx/4xx with a strict-JSON body.
Deterministic (``derandomize``) and sized to take a few seconds each.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flywheel.serving.documents import feedback_records
from flywheel.serving.errors import RequestError
from flywheel.serving.inputs import FeatureSchema, decode_json, parse_predict
from tests.serving.conftest import PENGUIN, call, serving_one_version

SETTINGS = settings(
    max_examples=150, derandomize=True, database=None, deadline=None, suppress_health_check=list(HealthCheck)
)
SCHEMA = FeatureSchema(
    numeric=("size", "weight"),
    categorical=("color",),
    vocabularies={"color": ("red", "blue")},
    label_vocabulary=("a", "b"),
)
IMAGE_SCHEMA = FeatureSchema(
    numeric=(), categorical=(), vocabularies={}, label_vocabulary=("a", "b"), image_input="image", image_shape=(2, 2, 1)
)

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**400), max_value=10**400),  # past float range and Python's int-to-str limit
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
    st.sampled_from(["red", "blue", "", "3.5", "NaN"]),
    st.sampled_from([3e38, -3e38, 3.5e38, 1e-45, -0.0]),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=4)),
    max_leaves=12,
)
feature_names = st.sampled_from(["size", "weight", "color", "image", "extra"])
rows = st.dictionaries(feature_names, json_values, max_size=5)
columns = st.dictionaries(feature_names, st.one_of(st.lists(json_scalars, max_size=4), json_values), max_size=5)
predict_bodies = st.one_of(
    st.fixed_dictionaries(
        {},
        optional={
            "instances": st.one_of(st.lists(st.one_of(rows, json_values), max_size=4), json_values),
            "inputs": st.one_of(columns, json_values),
            "signature_name": st.one_of(st.just("serving_default"), json_values),
        },
    ),
    st.dictionaries(st.text(max_size=10), json_values, max_size=3),
    json_values,
)


def _check_parsed(parsed, schema: FeatureSchema) -> None:
    assert parsed.size >= 1
    assert set(parsed.columns) == set(schema.names)
    for name, column in parsed.columns.items():
        assert len(column) == parsed.size
        if name in schema.numeric:
            assert column.dtype == np.float32 and not np.isinf(column).any()  # NaN only for a missing value
        elif name in schema.categorical:
            assert all(v == "" or v in schema.vocabularies[name] for v in column)
        else:
            assert column.dtype == np.float32 and np.isfinite(column).all()
    assert len(parsed.rows()) == parsed.size


def _parse_or_refuse(body, schema: FeatureSchema, ignore_unknown: bool) -> None:
    try:
        parsed = parse_predict(body, schema, ignore_unknown=ignore_unknown)
    except RequestError as error:
        assert error.status == 400 and str(error)
        return
    _check_parsed(parsed, schema)


@SETTINGS
@given(predict_bodies, st.booleans())
def test_any_predict_body_is_parsed_into_the_contract_or_refused_with_400(body, ignore_unknown):
    _parse_or_refuse(body, SCHEMA, ignore_unknown)


@SETTINGS
@given(predict_bodies)
def test_any_predict_body_for_an_image_model_is_parsed_or_refused_with_400(body):
    _parse_or_refuse(body, IMAGE_SCHEMA, ignore_unknown=False)


@SETTINGS
@given(st.binary(max_size=64) | st.text(max_size=64).map(str.encode))
def test_any_bytes_are_json_or_a_400(raw):
    try:
        decode_json(raw)
    except RequestError as error:
        assert error.status == 400


feedback_bodies = st.one_of(
    st.fixed_dictionaries(
        {},
        optional={
            "request_id": st.one_of(st.just("req-1"), json_values),
            "labels": st.one_of(st.lists(st.sampled_from(["a", "b", "c"]), max_size=3), json_values),
            "label": st.one_of(st.sampled_from(["a", "b"]), json_values),
            "index": st.one_of(st.integers(min_value=-2, max_value=5), json_values),
        },
    ),
    json_values,
)


@SETTINGS
@given(feedback_bodies)
def test_any_feedback_body_is_log_lines_or_a_400(body):
    try:
        records = feedback_records(body, ("a", "b"), 1.0)
    except RequestError as error:
        assert error.status == 400
        return
    assert records and all(r["label"] in ("a", "b") and r["index"] >= 0 for r in records)
    json.dumps(records, allow_nan=False)


@pytest.fixture(scope="module")
def served_model(tmp_path_factory, trained_model_dir):
    with serving_one_version(tmp_path_factory.mktemp("properties"), trained_model_dir) as background:
        yield background


penguin_rows = st.fixed_dictionaries(
    {name: st.one_of(st.just(PENGUIN[name]), json_scalars) for name in PENGUIN},
)


@settings(max_examples=60, derandomize=True, database=None, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.one_of(st.lists(penguin_rows, min_size=1, max_size=3).map(lambda r: {"instances": r}), predict_bodies))
def test_over_http_every_answer_is_2xx_or_4xx_with_strict_json(served_model, body):
    status, answer, headers = call(
        f"{served_model.url}/v1/models/penguins:predict", json.dumps(body, allow_nan=True).encode()
    )
    assert status in (200, 400, 422), (status, answer)
    assert headers["Content-Type"].startswith("application/json") and isinstance(answer, dict)
    if status == 200:
        assert all(math.isfinite(p) for row in answer["predictions"] for p in row)
    else:
        assert answer["error"]
