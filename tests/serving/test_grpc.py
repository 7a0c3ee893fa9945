"""TF Serving's gRPC API, called with the tensorflow-serving-api package's own stubs against a real small model."""

from __future__ import annotations

import time

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from flywheel.errors import FlywheelError
from flywheel.serving.logs import REQUESTS, log_dir, read_records
from flywheel.serving.server import ServeConfig
from tests.serving.conftest import PENGUIN, call, push_copy, serving_one_version

NUMERIC = ("bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g", "year")
ROWS = [
    PENGUIN,
    {**PENGUIN, "island": "Dream", "bill_length_mm": 38.0, "flipper_length_mm": 185.0, "body_mass_g": 3400.0},
    {**PENGUIN, "island": "Torgersen", "sex": "female", "bill_depth_mm": 19.0, "flipper_length_mm": 190.0},
]


@pytest.fixture(scope="module")
def served(tmp_path_factory, trained_model_dir):
    with serving_one_version(tmp_path_factory.mktemp("grpc"), trained_model_dir, grpc_port=0, max_wait_ms=2.0) as bg:
        yield bg


@pytest.fixture(scope="module")
def stubs(served):
    channel = grpc.insecure_channel(served.grpc_target)
    yield prediction_service_pb2_grpc.PredictionServiceStub(channel), model_service_pb2_grpc.ModelServiceStub(channel)
    channel.close()


def _request(rows, name="penguins", version=None, **overrides):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = name
    request.model_spec.signature_name = "serving_default"
    if version is not None:
        request.model_spec.version.value = version
    columns = {feature: [row[feature] for row in rows] for feature in PENGUIN}
    columns.update(overrides)
    for feature, values in columns.items():
        dtype = tf.string if isinstance(values[0], str) else tf.float32
        request.inputs[feature].CopyFrom(tf.make_tensor_proto(values, dtype=dtype))
    return request


def _error(call_fn, request):
    with pytest.raises(grpc.RpcError) as raised:
        call_fn(request, timeout=30)
    return raised.value.code(), raised.value.details()


def test_predict_answers_equal_rest_and_the_model_itself(served, stubs):
    prediction, _ = stubs
    response, grpc_call = prediction.Predict.with_call(_request(ROWS), timeout=30, metadata=(("x-request-id", "r-1"),))
    probabilities = tf.make_ndarray(response.outputs["probabilities"])

    status, rest, _ = call(f"{served.url}/v1/models/penguins:predict", {"instances": ROWS})
    assert status == 200
    np.testing.assert_allclose(probabilities, rest["predictions"], rtol=1e-6)
    model = served.server.store.serving()
    columns = {f: np.array([r[f] for r in ROWS], dtype=np.float32 if f in NUMERIC else object) for f in PENGUIN}
    np.testing.assert_allclose(probabilities, model.predict(columns), rtol=1e-6)
    assert probabilities.shape == (3, 3) and np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    assert response.model_spec.name == "penguins" and response.model_spec.version.value == 1
    assert dict(grpc_call.trailing_metadata())["x-request-id"] == "r-1"


def test_predict_takes_n_by_1_tensors_and_logs_and_counts_like_rest(served, stubs):
    prediction, _ = stubs
    request = _request(ROWS[:1])
    for feature in PENGUIN:
        values = np.array([[PENGUIN[feature]]], dtype=np.float32 if feature in NUMERIC else object)
        request.inputs[feature].CopyFrom(tf.make_tensor_proto(values))
    before = served.server.metrics.sample(
        "flywheel_serving_requests_total", {"model": "penguins", "endpoint": "grpc_predict", "code": "200"}
    )
    response, grpc_call = prediction.Predict.with_call(request, timeout=30)

    request_id = dict(grpc_call.trailing_metadata())["x-request-id"]
    assert len(request_id) == 32
    after = served.server.metrics.sample(
        "flywheel_serving_requests_total", {"model": "penguins", "endpoint": "grpc_predict", "code": "200"}
    )
    assert after == (before or 0) + 1
    assert served.server.log.flush()
    lines = [r for r in read_records(log_dir(served.config.home, "penguins", REQUESTS)) if r["request_id"] == request_id]
    assert len(lines) == 1 and lines[0]["features"]["island"] == "Biscoe"
    assert lines[0]["probabilities"] == pytest.approx(tf.make_ndarray(response.outputs["probabilities"])[0].tolist())


def test_bad_inputs_are_invalid_argument_naming_the_field(served, stubs):
    prediction, _ = stubs
    instances = {"model": "penguins", "version": "1"}
    predicted_before = served.server.metrics.sample("flywheel_serving_instances_total", instances)
    code, details = _error(prediction.Predict, _request(ROWS, sex=["male", "walrus", "female"]))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "inputs['sex'][1]" in details and "walrus" in details

    missing = _request(ROWS)
    del missing.inputs["island"]
    code, details = _error(prediction.Predict, missing)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "island" in details

    code, details = _error(prediction.Predict, _request(ROWS, year=["2008", "2008", "2008"]))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "inputs['year'][0]" in details

    short = _request(ROWS)
    short.inputs["body_mass_g"].CopyFrom(tf.make_tensor_proto([5200.0], dtype=tf.float32))
    code, details = _error(prediction.Predict, short)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "body_mass_g" in details

    bad_signature = _request(ROWS)
    bad_signature.model_spec.signature_name = "classify"
    code, details = _error(prediction.Predict, bad_signature)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "signature_name" in details

    bad_filter = _request(ROWS)
    bad_filter.output_filter.append("logits")
    code, details = _error(prediction.Predict, bad_filter)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "logits" in details and "probabilities" in details
    errors = served.server.metrics.sample("flywheel_serving_errors_total", {"model": "penguins", "kind": "bad_request"})
    assert errors >= 6
    assert served.server.metrics.sample("flywheel_serving_instances_total", instances) == predicted_before


def test_unknown_model_or_version_is_not_found(stubs):
    prediction, models = stubs
    code, details = _error(prediction.Predict, _request(ROWS, name="walrus"))
    assert code == grpc.StatusCode.NOT_FOUND and "walrus" in details
    code, details = _error(prediction.Predict, _request(ROWS, version=99))
    assert code == grpc.StatusCode.NOT_FOUND and "99" in details
    status_request = get_model_status_pb2.GetModelStatusRequest()
    status_request.model_spec.name = "penguins"
    status_request.model_spec.version.value = 99
    assert _error(models.GetModelStatus, status_request)[0] == grpc.StatusCode.NOT_FOUND
    code, details = _error(prediction.Classify, _classify_request())
    assert code == grpc.StatusCode.UNIMPLEMENTED and "Predict" in details


def test_predict_of_bytes_that_are_no_predict_request_is_invalid_argument_and_the_server_serves_on(served, stubs):
    channel = grpc.insecure_channel(served.grpc_target)
    try:
        raw_predict = channel.unary_unary("/tensorflow.serving.PredictionService/Predict")  # bytes in, bytes out
        with pytest.raises(grpc.RpcError) as raised:
            raw_predict(b"\x0a\xff\xff\xff", timeout=30)  # model_spec whose length never ends
        answer = predict_pb2.PredictResponse.FromString(raw_predict(_request(ROWS).SerializeToString(), timeout=30))
    finally:
        channel.close()
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "not a serialized tensorflow.serving.PredictRequest" in raised.value.details()
    assert tf.make_ndarray(answer.outputs["probabilities"]).shape == (3, 3)
    prediction, _ = stubs
    assert tf.make_ndarray(prediction.Predict(_request(ROWS), timeout=30).outputs["probabilities"]).shape == (3, 3)


def _classify_request():
    from tensorflow_serving.apis import classification_pb2

    request = classification_pb2.ClassificationRequest()
    request.model_spec.name = "penguins"
    return request


def test_metadata_is_the_signature_def_of_the_rest_metadata(served, stubs):
    prediction, _ = stubs
    request = get_model_metadata_pb2.GetModelMetadataRequest()
    request.model_spec.name = "penguins"
    request.metadata_field.append("signature_def")
    response = prediction.GetModelMetadata(request, timeout=30)

    signatures = get_model_metadata_pb2.SignatureDefMap()
    assert response.metadata["signature_def"].Unpack(signatures)
    signature = signatures.signature_def["serving_default"]
    assert set(signature.inputs) == set(PENGUIN)
    assert signature.inputs["island"].dtype == tf.string.as_datatype_enum
    assert signature.inputs["year"].dtype == tf.float32.as_datatype_enum
    assert [d.size for d in signature.outputs["probabilities"].tensor_shape.dim] == [-1, 3]
    assert response.model_spec.version.value == 1

    request.metadata_field[:] = ["something_else"]
    code, details = _error(prediction.GetModelMetadata, request)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "metadata_field" in details


def test_hot_reloaded_version_is_served_over_grpc(tmp_path, trained_model_dir):
    from flywheel.registry import ModelRegistry

    with serving_one_version(tmp_path, trained_model_dir, grpc_port=0, poll_seconds=0.1) as served:
        channel = grpc.insecure_channel(served.grpc_target)
        prediction = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        models = model_service_pb2_grpc.ModelServiceStub(channel)
        assert prediction.Predict(_request(ROWS), timeout=30).model_spec.version.value == 1
        registry = ModelRegistry(served.config.registry)
        registry.set_serving("penguins", push_copy(registry, trained_model_dir, "v2"), reason="test")

        deadline = time.monotonic() + 60
        while prediction.Predict(_request(ROWS), timeout=30).model_spec.version.value != 2:
            assert time.monotonic() < deadline, "version 2 was never served over gRPC"
            time.sleep(0.1)
        status_request = get_model_status_pb2.GetModelStatusRequest()
        status_request.model_spec.name = "penguins"
        statuses = models.GetModelStatus(status_request, timeout=30).model_version_status
        assert statuses[0].version == 2
        assert statuses[0].state == get_model_status_pb2.ModelVersionStatus.AVAILABLE
        channel.close()


def test_grpc_port_rules_and_a_taken_port_is_a_clear_error(tmp_path, trained_model_dir, served):
    with pytest.raises(FlywheelError, match="grpc_port"):
        ServeConfig(registry="r", home="h", port=8600, grpc_port=8600).check()
    with pytest.raises(FlywheelError, match="grpc_port"):
        ServeConfig(registry="r", home="h", grpc_port=70000).check()
    taken = served.server.grpc_port
    with pytest.raises(FlywheelError, match=f"gRPC on 127.0.0.1:{taken}.*--grpc-port"):
        with serving_one_version(tmp_path, trained_model_dir, grpc_port=taken):
            pass


def test_cli_serves_grpc_on_8500_by_default_and_no_grpc_turns_it_off(tmp_path):
    import argparse

    from flywheel.cli import serve_commands

    parser = argparse.ArgumentParser()
    parser.add_argument("--home")
    serve_commands.register(parser.add_subparsers(dest="command"))
    home = ["--home", str(tmp_path)]
    assert serve_commands.config_from_args(parser.parse_args([*home, "serve"])).grpc_port == 8500
    assert serve_commands.config_from_args(parser.parse_args([*home, "serve", "--grpc-port", "9000"])).grpc_port == 9000
    assert serve_commands.config_from_args(parser.parse_args([*home, "serve", "--no-grpc"])).grpc_port is None


def test_flywheel_serve_answers_grpc_next_to_rest_and_exits_0_on_sigterm(registry_with_model):
    import re
    import signal

    from tests.serving.conftest import start_serve_cli

    registry, home = registry_with_model
    process, port, lines = start_serve_cli(registry.root, home)  # a fresh process: TensorFlow is imported by the server
    try:
        grpc_port = int(re.search(r"gRPC API on 127\.0\.0\.1:(\d+)", "".join(lines)).group(1))
        with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            response = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(_request(ROWS), timeout=30)
        _, rest, _ = call(f"http://127.0.0.1:{port}/v1/models/penguins:predict", {"instances": ROWS})
        np.testing.assert_allclose(tf.make_ndarray(response.outputs["probabilities"]), rest["predictions"], rtol=1e-6)
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0
