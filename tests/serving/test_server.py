"""The REST API over HTTP on loopback, with a real penguins model."""

from __future__ import annotations

import concurrent.futures
import json
import math
import os

import numpy as np
import pytest

from flywheel.serving.logs import FEEDBACK, REQUESTS, log_dir, read_records
from flywheel.serving.background import BackgroundServer
from flywheel.serving.server import ServeConfig
from tests.serving.conftest import PENGUIN, call, push_copy

CONTRACT_KEYS = {"request_id", "index", "ts", "model", "version", "features", "prediction", "probabilities"}


@pytest.fixture(scope="module")
def served(tmp_path_factory, trained_model_dir):
    """A server on a random loopback port; version 1 serves, version 2 is in the registry but not serving."""
    from flywheel.registry import ModelRegistry

    root = tmp_path_factory.mktemp("served")
    registry = ModelRegistry(str(root / "registry"))
    registry.push("penguins", trained_model_dir)
    registry.set_serving("penguins", 1)
    push_copy(registry, trained_model_dir, "v2")
    config = ServeConfig(
        registry=registry.root, home=str(root / "home"), port=0, max_wait_ms=5.0, max_batch_size=32, logs_endpoint=True
    )
    with BackgroundServer(config) as background:
        yield background


def _url(served, suffix=""):
    return f"{served.url}/v1/models/penguins{suffix}"


def test_row_format_answers_like_tf_serving_plus_class_names_and_request_id(served):
    missing_values = {**PENGUIN, "sex": None, "bill_length_mm": None}
    status, body, headers = call(_url(served, ":predict"), {"instances": [PENGUIN, missing_values]})

    assert status == 200, body
    predictions = body["predictions"]
    assert len(predictions) == 2 and all(len(p) == 3 for p in predictions)
    assert all(math.isclose(sum(p), 1.0, rel_tol=1e-5) for p in predictions)
    assert body["class_names"] == ["Adelie", "Chinstrap", "Gentoo"]
    assert body["classes"] == [body["class_names"][p.index(max(p))] for p in predictions]
    assert body["model_version"] == 1
    assert headers["X-Request-Id"] == body["request_id"] and len(body["request_id"]) == 32


def test_columnar_format_gives_outputs_equal_to_row_format(served):
    rows = [PENGUIN, {**PENGUIN, "island": "Dream", "bill_length_mm": 38.0, "flipper_length_mm": 185.0}]
    columns = {name: [row[name] for row in rows] for name in PENGUIN}

    _, by_row, _ = call(_url(served, ":predict"), {"instances": rows})
    status, by_column, _ = call(_url(served, ":predict"), {"inputs": columns, "signature_name": "serving_default"})

    assert status == 200 and "predictions" not in by_column
    assert np.allclose(by_column["outputs"], by_row["predictions"], atol=1e-6)
    assert by_column["classes"] == by_row["classes"]


def test_a_client_request_id_header_is_kept(served):
    _, body, headers = call(_url(served, ":predict"), {"instances": [PENGUIN]}, headers={"X-Request-Id": "client-7"})
    assert body["request_id"] == "client-7" == headers["X-Request-Id"]


def test_version_endpoints_status_and_metadata(served):
    status, body, _ = call(_url(served))
    assert status == 200
    assert body["model_version_status"][0] == {
        "version": "1",
        "state": "AVAILABLE",
        "status": {"error_code": "OK", "error_message": ""},
    }
    assert body["serving_version"] == 1

    status, body, _ = call(_url(served, "/versions/2:predict"), {"instances": [PENGUIN]})
    assert status == 200 and body["model_version"] == 2  # loaded on demand
    _, body, _ = call(_url(served, "/versions/2"))
    assert body["model_version_status"][0]["state"] == "AVAILABLE"
    _, body, _ = call(_url(served))
    assert [e["version"] for e in body["model_version_status"]] == ["1", "2"]  # serving first

    status, body, _ = call(_url(served, "/versions/7"))
    assert status == 404 and "no version 7" in body["error"]
    status, body, _ = call(_url(served, "/versions/7:predict"), {"instances": [PENGUIN]})
    assert status == 404 and "no version 7" in body["error"]

    status, body, _ = call(_url(served, "/metadata"))
    assert status == 200 and body["model_spec"] == {"name": "penguins", "signature_name": "", "version": "1"}
    signature = body["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert set(signature["inputs"]) == set(PENGUIN)
    assert signature["inputs"]["island"]["dtype"] == "DT_STRING"
    assert signature["outputs"]["probabilities"]["tensor_shape"]["dim"][1]["size"] == "3"
    assert body["flywheel"]["features"]["island"]["vocabulary"] == ["Biscoe", "Dream", "Torgersen"]
    # string inputs: XLA cannot compile the model, which serves the plain function and says so
    assert body["flywheel"]["xla"]["jit_compile"] is False
    assert "XLA cannot compile this model's ops: string inputs ['island', 'sex']" in body["flywheel"]["xla"]["reason"]
    assert call(_url(served, "/versions/2/metadata"))[1]["model_spec"]["version"] == "2"


@pytest.mark.parametrize(
    ("instance", "field", "problem"),
    [
        ({k: v for k, v in PENGUIN.items() if k != "island"}, "island", "is missing the feature"),
        ({**PENGUIN, "body_mass_g": "heavy"}, "body_mass_g", "must be a number or null"),
        ({**PENGUIN, "sex": 1}, "sex", "must be a string or null"),
        ({**PENGUIN, "island": "Atlantis"}, "island", "not a category the model was trained on"),
        ({**PENGUIN, "species": "Adelie"}, "species", "unknown feature"),
    ],
)
def test_schema_errors_are_400_naming_the_field(served, instance, field, problem):
    status, body, _ = call(_url(served, ":predict"), {"instances": [PENGUIN, instance]})
    assert status == 400
    assert field in body["error"] and problem in body["error"] and "instances[1]" in body["error"]


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        (b'{"instances": [', 400, "not valid JSON"),
        (b"[1, 2]", 400, "must be a JSON object"),
        (b'{"instances": {}}', 400, "non-empty JSON list"),
        (json.dumps({"instances": [PENGUIN] * 20000}).encode(), 413, "over the limit of 1048576"),
    ],
)
def test_malformed_and_oversized_bodies(served, body, status, fragment):
    got, answer, _ = call(_url(served, ":predict"), body)
    assert got == status and fragment in answer["error"]


def test_oversized_chunked_body_without_content_length_is_413(served):
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", served.server.port, timeout=30)
    chunks = (b"x" * 65536 for _ in range(40))  # 2.5 MiB, sent chunked: no Content-Length to check up front
    connection.request("POST", "/v1/models/penguins:predict", body=chunks, encode_chunked=True)
    response = connection.getresponse()
    assert response.status == 413 and "over the limit" in json.loads(response.read())["error"]
    connection.close()


def test_unknown_model_path_and_method_are_json_errors(served):
    status, body, _ = call(f"{served.url}/v1/models/otter:predict", {"instances": [PENGUIN]})
    assert status == 404 and "Servable not found" in body["error"]
    status, body, _ = call(f"{served.url}/v2/anything")
    assert status == 404 and "error" in body
    status, body, _ = call(_url(served, ":predict"))  # GET on a POST route
    assert status == 405 and "error" in body


def test_concurrent_load_is_batched_without_errors(served):
    metrics = served.server.metrics
    calls_before = metrics.sample("flywheel_serving_batch_size_count", {"model": "penguins"}) or 0.0
    rows_before = metrics.sample("flywheel_serving_batch_size_sum", {"model": "penguins"}) or 0.0
    islands = ["Biscoe", "Dream", "Torgersen"]
    rows = [{**PENGUIN, "bill_length_mm": 35.0 + i % 20, "island": islands[i % 3]} for i in range(400)]

    def one(row):
        status, body, _ = call(_url(served, ":predict"), {"instances": [row]})
        return status, body

    with concurrent.futures.ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(one, rows))

    assert [s for s, _ in results] == [200] * 400
    assert len({b["request_id"] for _, b in results}) == 400
    calls = metrics.sample("flywheel_serving_batch_size_count", {"model": "penguins"}) - calls_before
    instances = metrics.sample("flywheel_serving_batch_size_sum", {"model": "penguins"}) - rows_before
    assert instances == 400
    assert calls < 400, "no two requests ever shared a model call"
    # Same answer as a lone request: batching does not change predictions.
    _, alone, _ = call(_url(served, ":predict"), {"instances": [rows[7]]})
    assert alone["predictions"][0] == pytest.approx(results[7][1]["predictions"][0], abs=1e-6)


def test_request_log_lines_match_the_contract_and_feedback_is_appended(served):
    home = served.config.home
    status, body, _ = call(_url(served, ":predict"), {"instances": [PENGUIN, {**PENGUIN, "sex": None}]})
    request_id = body["request_id"]
    assert call(_url(served, ":feedback"), {"request_id": request_id, "labels": ["Gentoo", "Adelie"]})[0] == 200
    assert call(_url(served, ":feedback"), {"request_id": request_id, "index": 1, "label": "Chinstrap"})[0] == 200
    status, bad, _ = call(_url(served, ":feedback"), {"request_id": request_id, "labels": ["Gentoo", "Walrus"]})
    assert status == 400 and "labels[1]" in bad["error"] and "Walrus" in bad["error"]
    status, bad, _ = call(_url(served, ":feedback"), {"labels": ["Gentoo"]})
    assert status == 400 and "request_id" in bad["error"]
    assert served.server.log.flush()

    lines = [r for r in read_records(log_dir(home, "penguins", REQUESTS)) if r["request_id"] == request_id]
    assert [r["index"] for r in lines] == [0, 1]
    for line, probabilities, cls in zip(lines, body["predictions"], body["classes"]):
        assert set(line) == CONTRACT_KEYS
        assert line["model"] == "penguins" and line["version"] == 1
        assert line["prediction"] == cls and line["probabilities"] == pytest.approx(probabilities)
    assert lines[0]["features"] == PENGUIN and lines[1]["features"]["sex"] is None
    feedback = [r for r in read_records(log_dir(home, "penguins", FEEDBACK)) if r["request_id"] == request_id]
    assert [(r["index"], r["label"]) for r in feedback] == [(0, "Gentoo"), (1, "Adelie"), (1, "Chinstrap")]
    assert all(set(r) == {"request_id", "index", "ts", "label"} for r in feedback)


def test_logs_endpoint_serves_json_lines_since_a_time(served):
    import time as _time

    started = _time.time()
    _, body, _ = call(_url(served, ":predict"), {"instances": [PENGUIN, PENGUIN]})
    call(_url(served, ":feedback"), {"request_id": body["request_id"], "labels": ["Adelie", "Gentoo"]})

    status, text, headers = call(_url(served, f"/logs/requests?since={started - 1:.3f}"))
    assert status == 200 and headers["Content-Type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in text.splitlines()]
    assert [(r["request_id"], r["index"]) for r in lines if r["request_id"] == body["request_id"]] == [
        (body["request_id"], 0),
        (body["request_id"], 1),
    ]
    assert all(r["ts"] >= started - 1 and set(r) == CONTRACT_KEYS for r in lines)
    _, text, _ = call(_url(served, f"/logs/feedback?since={started - 1:.3f}"))
    assert [json.loads(line)["label"] for line in text.splitlines()][-2:] == ["Adelie", "Gentoo"]
    assert call(_url(served, f"/logs/requests?since={_time.time() + 3600:.3f}"))[1] == ""
    status, error, _ = call(_url(served, "/logs/requests?since=yesterday"))
    assert status == 400 and "'since' must be a Unix time" in error["error"]
    assert call(_url(served, "/logs/secrets"))[0] == 404


def test_health_readiness_and_metrics(served):
    assert call(f"{served.url}/healthz")[:2] == (200, {"status": "alive"})
    status, body, _ = call(f"{served.url}/readyz")
    assert status == 200 and body["version"] == 1
    call(_url(served, ":predict"), {"instances": [{**PENGUIN, "island": "Atlantis"}]})

    status, text, headers = call(f"{served.url}/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    assert 'flywheel_serving_requests_total{code="200",endpoint="predict",model="penguins"}' in text
    assert 'flywheel_serving_requests_total{code="400",endpoint="predict",model="penguins"}' in text
    assert 'flywheel_serving_errors_total{kind="bad_request",model="penguins"}' in text
    assert 'flywheel_serving_request_latency_seconds_bucket{endpoint="predict"' in text
    assert "flywheel_serving_batch_size_bucket" in text
    assert 'flywheel_serving_model_version{model="penguins"} 1.0' in text


def test_sample_rate_zero_logs_no_predictions_but_still_records_feedback(registry_with_model):
    registry, home = registry_with_model
    config = ServeConfig(registry=registry.root, home=home, port=0, log_sample_rate=0.0, batching=False)
    with BackgroundServer(config) as background:
        _, body, _ = call(f"{background.url}/v1/models/penguins:predict", {"instances": [PENGUIN]})
        call(f"{background.url}/v1/models/penguins:feedback", {"request_id": body["request_id"], "labels": ["Gentoo"]})
        assert background.server.log.flush()
    assert not os.path.isdir(log_dir(home, "penguins", REQUESTS))
    assert [r["label"] for r in read_records(log_dir(home, "penguins", FEEDBACK))] == ["Gentoo"]


def test_extreme_inputs_give_a_readable_error_never_invalid_json(served):
    numeric = ("bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g", "year")
    extreme = {**PENGUIN, **{name: 3e38 for name in numeric}}  # finite float32, but it overflows the network
    status, body, headers = call(_url(served, ":predict"), {"instances": [PENGUIN, extreme]})
    assert headers["Content-Type"].startswith("application/json")  # call() parsed it as strict JSON
    assert status == 422, body
    assert "instance(s) [1]" in body["error"] and "3e+38" in body["error"] and "range" in body["error"]
    status, body, _ = call(_url(served, ":predict"), {"instances": [PENGUIN]})
    assert status == 200 and all(math.isfinite(p) for p in body["predictions"][0])


@pytest.mark.parametrize("suffix", ["/versions/{v}:predict", "/versions/{v}", "/versions/{v}/metadata"])
def test_a_5000_digit_version_is_404_not_500(served, suffix):
    method_body = {"instances": [PENGUIN]} if suffix.endswith(":predict") else None
    status, body, _ = call(_url(served, suffix.format(v="9" * 5000)), method_body)
    assert status == 404 and "at most 18 digits" in body["error"]
    status, body, _ = call(_url(served, suffix.format(v="9" * 18)), method_body)
    assert status == 404 and "no version 999999999999999999" in body["error"]


def test_the_remote_monitor_reads_the_logs_endpoint(served):
    from flywheel.monitoring.monitor import HttpLogSource

    _, answer, _ = call(_url(served, ":predict"), {"instances": [PENGUIN]})
    call(_url(served, ":feedback"), {"request_id": answer["request_id"], "labels": ["Adelie"]})
    source = HttpLogSource(served.url)
    assert answer["request_id"] in {r["request_id"] for r in source.requests("penguins", 0.0)}
    assert answer["request_id"] in {j.request_id for j in source.labeled("penguins", 0.0)}
