"""The lean serving paths: vectorized column checks, orjson with the stdlib's rules, gRPC tensors read
without TensorFlow, the bounded request-log queue, XLA chosen or refused at load, and the model's flat call."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest

from flywheel.serving.errors import RequestError
from flywheel.serving.inputs import FeatureSchema, decode_json, parse_predict

SCHEMA = FeatureSchema(
    numeric=("x", "y"),
    categorical=("c",),
    vocabularies={"c": ("red", "blue")},
    label_vocabulary=("no", "yes"),
)


@pytest.mark.parametrize("repeat", [1, 4])  # 3 values are checked one by one, 12 converted at once
def test_a_columnar_body_becomes_arrays_with_missing_values_in_place(repeat):
    body = {"inputs": {"x": [1, None, 2.5] * repeat, "y": [3, 4, 5] * repeat, "c": ["red", None, ""] * repeat}}
    parsed = parse_predict(decode_json(json.dumps(body).encode()), SCHEMA)
    np.testing.assert_array_equal(parsed.columns["x"], np.array([1.0, np.nan, 2.5] * repeat, dtype=np.float32))
    assert parsed.columns["x"].dtype == np.float32 and parsed.columns["c"].dtype == object
    assert parsed.columns["c"].tolist() == ["red", "", ""] * repeat
    assert parsed.rows()[1] == {"x": None, "y": 4, "c": None}


@pytest.mark.parametrize(
    "body, message",
    [
        # one bad value deep in a long column: the message still names its index
        (b'{"inputs": {"x": [' + b"1," * 50 + b'"3"], "y": [' + b"1," * 50 + b'1], "c": [' + b'"red",' * 50
         + b'"red"]}}',
         "inputs['x'][50] must be a number or null; got the string \"3\" (send the number without quotes)"),
        (b'{"inputs": {"x": [1, true], "y": [1, 1], "c": ["red", "red"]}}', "inputs['x'][1] must be a number or null"),
        (b'{"inputs": {"x": [1, 1e39], "y": [1, 1], "c": ["red", "red"]}}', "inputs['x'][1] must be a finite number"),
        (b'{"inputs": {"x": [1, 1], "y": [1, 1], "c": ["red", "green"]}}', "inputs['c'][1] is 'green', which is not"),
        (b'{"inputs": {"x": [1, 1], "y": [1, 1], "c": ["red", ["red"]]}}', "inputs['c'][1] must be a string or null"),
        # bodies orjson refuses go through the stdlib parser: its rules and messages hold
        (b'{"inputs": {"x": [1, Infinity], "y": [1, 1], "c": ["red", "red"]}}', "must be a finite number; got inf"),
        (b'{"inputs": {"x": [1, 1' + b"0" * 400 + b'], "y": [1, 1], "c": ["red", "red"]}}', "must be a finite number"),
        (b'{"instances": [{"x": 1, "y": 2, "c": "red"}', "The request body is not valid JSON"),
        (b'{"instances": ["\xff"]}', "not UTF-8"),
        (b"[" * 100000, "nests JSON too deeply"),
    ],
)
def test_bad_values_get_the_message_of_the_value_by_value_check(body, message):
    with pytest.raises(RequestError) as caught:
        parse_predict(decode_json(body), SCHEMA)
    assert message in str(caught.value)


def test_a_nan_literal_is_a_missing_value_as_with_the_stdlib_parser():
    parsed = parse_predict(decode_json(b'{"instances": [{"x": NaN, "y": 1, "c": "blue"}]}'), SCHEMA)
    assert np.isnan(parsed.columns["x"][0]) and parsed.columns["c"].tolist() == ["blue"]


def test_grpc_tensors_become_columns_without_tensorflow_and_keep_the_checks():
    from tensorflow.core.framework import tensor_pb2

    from flywheel.serving.grpc_api import _values

    content = tensor_pb2.TensorProto(dtype=1, tensor_content=np.array([1.5, 2.0], dtype="<f4").tobytes())
    content.tensor_shape.dim.add().size = 2
    content.tensor_shape.dim.add().size = 1  # [N, 1], as many TF Serving clients send
    assert _values("x", content).tolist() == [1.5, 2.0]
    filled = tensor_pb2.TensorProto(dtype=1, float_val=[7.0])  # TensorFlow's compact form
    filled.tensor_shape.dim.add().size = 3
    assert _values("y", filled).tolist() == [7.0, 7.0, 7.0]
    strings = tensor_pb2.TensorProto(dtype=7, string_val=[b"red", b""])
    strings.tensor_shape.dim.add().size = 2
    assert _values("c", strings) == ["red", ""]
    columns = {"x": _values("x", content), "y": _values("y", filled)[:2], "c": ["red", ""]}
    parsed = parse_predict({"inputs": columns}, SCHEMA)
    assert parsed.columns["x"].tolist() == [1.5, 2.0] and parsed.rows()[0] == {"x": 1.5, "y": 7.0, "c": "red"}
    for size in (2, 10):  # checked one by one, and converted at once
        infinite = tensor_pb2.TensorProto(dtype=1, float_val=[1.0] * (size - 1) + [np.inf])
        infinite.tensor_shape.dim.add().size = size
        with pytest.raises(RequestError, match=rf"inputs\['x'\]\[{size - 1}\] must be a finite number; got inf"):
            parse_predict({"inputs": {"x": _values("x", infinite), "y": [1] * size, "c": ["red"] * size}}, SCHEMA)
    bad_text = tensor_pb2.TensorProto(dtype=7, string_val=[b"\xff"])
    bad_text.tensor_shape.dim.add().size = 1
    with pytest.raises(RequestError, match="not UTF-8"):
        _values("c", bad_text)


def test_a_full_log_queue_drops_request_lines_counts_them_and_a_clean_close_writes_the_rest(tmp_path):
    from flywheel.serving.logs import FEEDBACK, REQUESTS, log_dir, read_records
    from flywheel.serving.requestlog import PredictionLog

    writing, release = threading.Event(), threading.Event()

    def stall_after_first_write(kind: str, lines: int) -> None:
        writing.set()
        release.wait(30)

    dropped = []
    log = PredictionLog(
        str(tmp_path), "m", max_queued_requests=3, on_written=stall_after_first_write, on_dropped=dropped.append
    )
    probabilities = np.array([[0.25, 0.75]], dtype=np.float32)

    def predict(request_id: str) -> None:
        parsed = parse_predict({"instances": [{"x": 1, "y": 2, "c": "red"}]}, SCHEMA)
        log.predictions(request_id, 1.0, 1, parsed, probabilities, SCHEMA.label_vocabulary)

    predict("first")
    assert writing.wait(30)  # the writer is busy: what comes now waits in the queue
    for i in range(5):
        predict(f"queued-{i}")
    log.feedback([{"request_id": "first", "index": 0, "ts": 2.0, "label": "yes"}])  # past the bound: kept
    assert log.dropped == 2 and dropped == [1, 1]
    release.set()
    log.close()
    written = [r["request_id"] for r in read_records(log_dir(str(tmp_path), "m", REQUESTS))]
    assert written == ["first", "queued-0", "queued-1", "queued-2"]
    assert [r["label"] for r in read_records(log_dir(str(tmp_path), "m", FEEDBACK))] == ["yes"]


def test_lines_logged_on_an_event_loop_are_encoded_there_after_the_handler_in_order(tmp_path, monkeypatch):
    import asyncio

    from flywheel.serving import requestlog
    from flywheel.serving.logs import REQUESTS, log_dir, read_records

    encoded_on = []
    real_line = requestlog.request_line

    def recording_line(model, request_id, *rest):
        encoded_on.append((request_id, threading.get_ident()))
        if request_id == "broken":
            raise ValueError("cannot encode")
        return real_line(model, request_id, *rest)

    monkeypatch.setattr(requestlog, "request_line", recording_line)
    dropped = []
    log = requestlog.PredictionLog(str(tmp_path), "m", on_dropped=dropped.append)
    probabilities = np.array([[0.25, 0.75]], dtype=np.float32)
    parsed = parse_predict({"instances": [{"x": 1, "y": 2, "c": "red"}]}, SCHEMA)

    async def handlers():
        for request_id in ("a", "broken", "b", "c"):
            log.predictions(request_id, 1.0, 1, parsed, probabilities, SCHEMA.label_vocabulary)
            assert request_id not in [r for r, _ in encoded_on]  # not while the handler still runs
        await asyncio.sleep(0)
        return threading.get_ident()

    loop_thread = asyncio.run(handlers())
    log.predictions("off-loop", 1.0, 1, parsed, probabilities, SCHEMA.label_vocabulary)  # no loop: the writer
    log.close()
    written = [r["request_id"] for r in read_records(log_dir(str(tmp_path), "m", REQUESTS))]
    assert written == ["a", "b", "c", "off-loop"]
    threads = dict(encoded_on)
    assert {threads[r] for r in ("a", "broken", "b", "c")} == {loop_thread}
    assert threads["off-loop"] == log._thread.ident
    assert log.dropped == 1 and dropped == [1]  # the line that failed to encode, counted; the loop went on


@pytest.mark.parametrize("finish", ["flush", "close"])
def test_a_flush_or_close_from_another_thread_waits_for_the_lines_the_loop_has_yet_to_encode(tmp_path, finish):
    import asyncio

    from flywheel.serving.logs import REQUESTS, log_dir, read_records
    from flywheel.serving.requestlog import PredictionLog

    log = PredictionLog(str(tmp_path), "m")
    probabilities = np.array([[0.25, 0.75]], dtype=np.float32)
    parsed = parse_predict({"instances": [{"x": 1, "y": 2, "c": "red"}]}, SCHEMA)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    answered = threading.Event()

    def handler():  # answers, then the loop is busy for a while before it runs the line's encoding
        log.predictions("just-answered", 1.0, 1, parsed, probabilities, SCHEMA.label_vocabulary)
        answered.set()
        time.sleep(0.3)

    try:
        loop.call_soon_threadsafe(handler)
        assert answered.wait(10)
        if finish == "flush":
            assert log.flush(timeout=10)
        else:
            log.close(timeout=10)  # a server's shutdown right after its last answer
        written = [r["request_id"] for r in read_records(log_dir(str(tmp_path), "m", REQUESTS))]
        assert written == ["just-answered"]
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
        log.close()


def _numeric_model():
    import keras

    a, b = keras.Input(shape=(), name="a"), keras.Input(shape=(), name="b")
    joined = keras.layers.Concatenate()([keras.layers.Reshape((1,))(a), keras.layers.Reshape((1,))(b)])
    hidden = keras.layers.Dense(4, activation="relu", kernel_initializer="ones")(joined)
    spec = {
        "features": {"a": {"dtype": "float"}, "b": {"dtype": "float"}},
        "numeric_features": ["a", "b"],
        "categorical_features": [],
        "label_vocabulary": ["p", "q", "r"],
    }
    return keras.Model({"a": a, "b": b}, keras.layers.Dense(3, activation="softmax")(hidden)), spec


def test_xla_serves_a_model_it_compiles_with_padded_batches_and_the_same_answers():
    from flywheel.serving.models import compile_fastest, compile_predict

    net, spec = _numeric_model()
    schema = FeatureSchema.from_spec(spec)
    compiled, record = compile_fastest(net, spec, schema, xla="on")
    plain = compile_predict(net, spec)
    assert record["jit_compile"] is True
    rng = np.random.default_rng(0)
    for size in (3, 64, 100):  # 3 and 100 are padded to 4 and 128; the padding's rows are cut
        columns = {"a": rng.normal(size=size).astype(np.float32), "b": rng.normal(size=size).astype(np.float32)}
        got = compiled(columns)
        assert got.shape == (size, 3)
        np.testing.assert_allclose(got, plain(columns), rtol=1e-5, atol=1e-6)
    _, measured = compile_fastest(net, spec, schema, xla="auto")
    assert measured["jit_compile"] == (measured["xla_ms"] < 0.9 * measured["plain_ms"])
    assert compile_fastest(net, spec, schema, xla="off")[1]["jit_compile"] is False


def test_a_model_xla_cannot_compile_falls_back_to_the_plain_function_and_says_why():
    import keras

    from flywheel.serving.models import compile_fastest

    colour = keras.Input(shape=(), dtype="string", name="c")
    encoded = keras.layers.StringLookup(vocabulary=["red", "blue"], output_mode="one_hot")(colour)
    net = keras.Model({"c": colour}, keras.layers.Dense(2, activation="softmax")(encoded))
    spec = {
        "features": {"c": {"dtype": "string", "vocabulary": ["red", "blue"]}},
        "numeric_features": [],
        "categorical_features": ["c"],
        "label_vocabulary": ["no", "yes"],
    }
    predict, record = compile_fastest(net, spec, FeatureSchema.from_spec(spec), xla="on")
    assert record["jit_compile"] is False and "string inputs ['c']" in record["reason"]
    assert predict({"c": np.array(["red", "blue", ""], dtype=object)}).shape == (3, 2)


def test_a_numeric_model_with_an_op_xla_cannot_compile_falls_back_when_the_compile_fails():
    import keras
    import tensorflow as tf

    from flywheel.serving.models import compile_fastest

    class ThroughText(keras.layers.Layer):  # string ops inside: XLA refuses them at the first call
        def call(self, x):
            return tf.strings.to_number(tf.strings.as_string(x))

    net, spec = _numeric_model()
    wrapped = keras.Model(net.inputs, ThroughText()(net.outputs[0]))
    predict, record = compile_fastest(wrapped, spec, FeatureSchema.from_spec(spec), xla="on")
    assert record["jit_compile"] is False and record["reason"].startswith("XLA cannot compile this model's ops: ")
    got = predict({"a": np.array([0.5, 1.0], dtype=np.float32), "b": np.array([2.0, 3.0], dtype=np.float32)})
    np.testing.assert_allclose(got.sum(axis=1), [1.0, 1.0], rtol=1e-4)


def test_cli_passes_xla_and_the_log_queue_bound_and_the_config_refuses_bad_values(tmp_path):
    import argparse

    from flywheel.cli import serve_commands
    from flywheel.serving.errors import ServingError
    from flywheel.serving.server import ServeConfig

    parser = argparse.ArgumentParser()
    parser.add_argument("--home")
    serve_commands.register(parser.add_subparsers(dest="command"))
    home = ["--home", str(tmp_path)]
    default = serve_commands.config_from_args(parser.parse_args([*home, "serve"]))
    assert (default.xla, default.log_queue_requests) == ("auto", 10000)
    chosen = serve_commands.config_from_args(
        parser.parse_args([*home, "serve", "--xla", "off", "--log-queue-requests", "50"])
    )
    assert (chosen.xla, chosen.log_queue_requests) == ("off", 50)
    with pytest.raises(ServingError, match=r"'xla' serving option must be one of 'auto', 'on', 'off'\. Got 'fast'"):
        ServeConfig(registry="r", home="h", xla="fast").check()
    with pytest.raises(ServingError, match=r"'log_queue_requests' serving option must be >= 1\. Got 0"):
        ServeConfig(registry="r", home="h", log_queue_requests=0).check()


def test_the_flat_call_feeds_each_feature_to_its_own_input_whatever_the_order_of_model_json():
    import keras

    from flywheel.serving.models import compile_predict

    z, a = keras.Input(shape=(), name="z"), keras.Input(shape=(), name="a")
    c = keras.Input(shape=(), dtype="string", name="c")
    coded = keras.layers.StringLookup(vocabulary=["red", "blue"], output_mode="one_hot")(c)
    numbers = keras.layers.Concatenate()([keras.layers.Reshape((1,))(z), keras.layers.Reshape((1,))(a)])
    joined = keras.layers.Concatenate()([numbers, coded])
    weights = keras.initializers.RandomNormal(seed=1)
    out = keras.layers.Dense(3, activation="softmax", kernel_initializer=weights)(joined)
    net = keras.Model({"z": z, "c": c, "a": a}, out)
    spec = {  # model.json's order is neither the inputs' nor the sorted one
        "features": {
            "z": {"dtype": "float"},
            "c": {"dtype": "string", "vocabulary": ["red", "blue"]},
            "a": {"dtype": "float"},
        },
        "label_vocabulary": ["p", "q", "r"],
    }
    predict = compile_predict(net, spec)
    columns = {
        "z": np.array([0.0, 3.0, -2.0], dtype=np.float32),
        "c": np.array(["red", "blue", ""], dtype=object),
        "a": np.array([5.0, -1.0, 0.5], dtype=np.float32),
    }
    expected = net({**columns, "c": columns["c"].astype(str)}).numpy()
    np.testing.assert_allclose(predict(columns), expected, rtol=1e-5, atol=1e-6)
    swapped = {**columns, "z": columns["a"], "a": columns["z"]}  # a wrong order would answer this instead
    assert not np.allclose(predict(swapped), expected)


def _instances_as_sent(body: dict) -> list[dict]:
    if "instances" in body:
        return body["instances"]
    columns = body["inputs"]
    size = len(next(iter(columns.values())))
    return [{name: values[i] for name, values in columns.items()} for i in range(size)]


def _same_value(read, sent) -> bool:
    if isinstance(sent, (float, np.floating)) and np.isnan(sent):
        return read is None  # NaN is written as null: missing either way
    if isinstance(sent, np.floating):
        return np.float32(read) == sent  # a float32 is written with the digits that give it back
    return read == sent and type(read) is type(sent)


@pytest.mark.parametrize(
    "body",
    [
        {"instances": [{"x": 1.5, "y": None, "c": "red"}, {"x": -2.0, "y": 3.25, "c": "é blue \"q\""}]},
        {"inputs": {"x": [0.1, 7.0, None], "y": [1.0, 2.0, 3.0], "c": ["blue", "", "red"]}},
        {"instances": [{"x": 2**70, "y": 1.0, "c": "red"}]},  # beyond 64 bits: orjson refuses, the fallback writes it
        {"inputs": {"x": [2007, float("nan"), -0.0], "y": [1e-30, 3.4e38, 5], "c": [None, "é blue \"q\"", "red"]}},
        {"instances": [{"x": 1.5, "y": None, "c": "red"}, {"c": "blue", "y": 3.25, "x": -2.0}]},  # keys in any order
        {"inputs": {"x": np.array([1.1, np.nan, -3e38], dtype=np.float32),  # a gRPC tensor's column
                    "y": np.array([0.0, 2.5, 1e-7], dtype=np.float32), "c": ["%s", "red", None]}},
    ],
)
def test_a_request_is_one_log_line_that_reads_back_as_a_record_per_instance(body):
    from flywheel.serving.logs import parse_lines
    from flywheel.serving.requestlog import request_line

    schema = FeatureSchema(
        numeric=("x", "y"), categorical=("c",), vocabularies={"c": ("red", "blue", 'é blue "q"', "%s")},
        label_vocabulary=("no", "yes"),
    )
    parsed = parse_predict(body, schema)
    probabilities = np.random.default_rng(3).random((parsed.size, 2)).astype(np.float32)
    data = request_line("m", "rid-1", 1764300000.123456, 7, parsed, probabilities, ("no", "yes"))
    assert data.endswith(b"\n") and data.count(b"\n") == 1
    records = list(parse_lines(data.decode().splitlines()))
    sent = _instances_as_sent(body)
    assert [r["index"] for r in records] == list(range(parsed.size)) == list(range(len(sent)))
    keys = {"request_id", "index", "ts", "model", "version", "features", "prediction", "probabilities"}
    for record, instance, row in zip(records, sent, probabilities):
        assert set(record) == keys
        assert (record["request_id"], record["ts"], record["model"], record["version"]) == (
            "rid-1", 1764300000.123456, "m", 7,
        )  # fmt: skip
        assert record["features"].keys() == instance.keys()
        assert all(_same_value(record["features"][name], value) for name, value in instance.items()), record
        assert record["prediction"] == ("no", "yes")[int(row.argmax())]
        assert np.array_equal(np.float32(record["probabilities"]), row)


def test_request_lines_that_do_not_hold_one_value_per_instance_are_skipped_not_fatal():
    from flywheel.serving.logs import parse_lines

    good = {"request_id": "ok", "ts": 1.0, "model": "m", "version": 1, "instances": 1,
            "features": {"x": [1.0]}, "predictions": ["a"], "probabilities": [[1.0]]}  # fmt: skip
    damaged = [
        {**good, "request_id": "short", "instances": 2},
        {**good, "request_id": "count-as-text", "instances": "1"},
        {**good, "request_id": "not-a-column", "features": {"x": 1.0}},
        {**good, "request_id": "no-predictions", "predictions": None},
        {**good, "request_id": "ragged", "probabilities": [[1.0], [0.0]]},
        {**good, "request_id": "features-not-an-object", "features": [1.0]},
    ]
    lines = [json.dumps(record) for record in [*damaged, good]]
    assert [r["request_id"] for r in parse_lines(lines)] == ["ok"]
    old = {"request_id": "old", "index": 0, "ts": 1.0, "model": "m", "version": 1, "features": {"x": 1.0},
           "prediction": "a", "probabilities": [1.0]}  # fmt: skip
    assert list(parse_lines([json.dumps(old)])) == [old]  # a line per instance, as written before, reads as it is
