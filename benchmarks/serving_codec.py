"""The serving hot path's own CPU cost per request, lean path vs the one it replaced, in one process.

    .venv/bin/python benchmarks/serving_codec.py

What ``benchmarks/serving.py`` cannot show on a shared 2-core machine (there the load generator,
the model and other processes share the cores): the Python work a request costs the server, outside
the model. Measured on the penguins feature contract with real penguins rows, one instance and 64
instances per request:

* REST: body bytes -> checked model columns -> response bytes. Lean: ``decode_json`` (orjson) and
  ``parse_predict`` with its vectorized column conversion, response written by orjson. Baseline, in
  the same run: the stdlib ``json`` parser, the value-by-value checks alone (the fast column paths
  turned off) and ``json.dumps`` of the response, as before issue 20.
* gRPC: a ``PredictRequest``'s tensors -> checked model columns. Lean: ``grpc_api._values`` (float
  tensors read with ``np.frombuffer``) then ``parse_predict``. Baseline: ``tf.make_ndarray`` and lists
  (``_values_through_tf``), then the value-by-value checks.

Each figure is the median of ``--repeats`` (3) measurements of ``--seconds`` each; the ratio is
baseline time / lean time. The load average is printed before and after.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import time
from typing import Any, Callable, Iterator

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

NUMERIC = ("bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g", "year")
CATEGORICAL = {"island": ("Biscoe", "Dream", "Torgersen"), "sex": ("female", "male")}


def penguin_rows(n: int) -> list[dict[str, Any]]:
    """Rows of the penguins data as a client sends them (missing values as null)."""
    from serving import penguin_rows as rows

    return rows(n)


@contextlib.contextmanager
def value_by_value_checks() -> Iterator[None]:
    """Turns off the vectorized column paths: every value goes through the one-by-one check."""
    from flywheel.serving import inputs

    saved = inputs._numbers_at_once, inputs._strings_at_once  # noqa: SLF001
    inputs._numbers_at_once = lambda values: None  # noqa: SLF001
    inputs._strings_at_once = lambda values, accepted: None  # noqa: SLF001
    try:
        yield
    finally:
        inputs._numbers_at_once, inputs._strings_at_once = saved  # noqa: SLF001


def per_call_us(function: Callable[[], Any], seconds: float, repeats: int) -> float:
    """Median over ``repeats`` of the mean microseconds per call during ``seconds``."""
    measured = []
    for _ in range(repeats):
        calls, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            function()
            calls += 1
        measured.append((time.perf_counter() - started) / calls * 1e6)
    return statistics.median(measured)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)

    import numpy as np
    import orjson
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    from flywheel.serving.grpc_api import _values, _values_through_tf
    from flywheel.serving.inputs import FeatureSchema, decode_json, parse_predict

    schema = FeatureSchema(
        numeric=NUMERIC,
        categorical=tuple(CATEGORICAL),
        vocabularies=CATEGORICAL,
        label_vocabulary=("Adelie", "Chinstrap", "Gentoo"),
    )
    probabilities = {n: np.full((n, 3), 1 / 3, dtype=np.float32) for n in (1, 64)}

    def rest_lean(body: bytes, n: int) -> bytes:
        parse_predict(decode_json(body), schema)
        return orjson.dumps({"predictions": probabilities[n].tolist(), "model_version": 1})

    def rest_baseline(body: bytes, n: int) -> bytes:
        with value_by_value_checks():
            parse_predict(json.loads(body), schema)
        response = {"predictions": probabilities[n].tolist(), "model_version": 1}
        return json.dumps(response, separators=(",", ":")).encode()

    def grpc_request(rows: list[dict[str, Any]]) -> Any:
        request = predict_pb2.PredictRequest()
        for name in schema.names:
            values = [row[name] for row in rows]
            if name in CATEGORICAL:
                proto = tf.make_tensor_proto([(v or "").encode() for v in values], dtype=tf.string)
            else:
                proto = tf.make_tensor_proto(np.array([np.nan if v is None else v for v in values], np.float32))
            request.inputs[name].CopyFrom(proto)
        return request

    def grpc_lean(request: Any) -> None:
        parse_predict({"inputs": {k: _values(k, t) for k, t in request.inputs.items()}}, schema)

    def grpc_baseline(request: Any) -> None:
        with value_by_value_checks():
            parse_predict({"inputs": {k: _values_through_tf(k, t) for k, t in request.inputs.items()}}, schema)

    load_before = os.getloadavg()[0]
    print(f"machine: {os.cpu_count()} cores, load average {load_before:.2f}")
    print(f"{'request':28s} {'baseline us':>12s} {'lean us':>9s} {'baseline/lean':>14s}")
    for n in (1, 64):
        rows = penguin_rows(n)
        for label, body in ((f"REST rows x{n}", {"instances": rows}), (f"REST columns x{n}", None)):
            if body is None:
                body = {"inputs": {name: [row[name] for row in rows] for name in schema.names}}
            raw = json.dumps(body).encode()
            base = per_call_us(lambda: rest_baseline(raw, n), args.seconds, args.repeats)
            lean = per_call_us(lambda: rest_lean(raw, n), args.seconds, args.repeats)
            print(f"{label:28s} {base:12.1f} {lean:9.1f} {base / lean:14.2f}", flush=True)
        request = grpc_request(rows)
        base = per_call_us(lambda: grpc_baseline(request), args.seconds, args.repeats)
        lean = per_call_us(lambda: grpc_lean(request), args.seconds, args.repeats)
        print(f"{f'gRPC tensors x{n}':28s} {base:12.1f} {lean:9.1f} {base / lean:14.2f}", flush=True)
    print(f"medians of {args.repeats} runs of {args.seconds:g} s; load average {load_before:.2f} before, "
          f"{os.getloadavg()[0]:.2f} after")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
