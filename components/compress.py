"""compress: Deep Compression (prune -> share -> Huffman) and int8 quantization of a trained Model.

The output is a Model that ``evaluate`` and ``push`` take unchanged, written
like ``train`` writes one (``model.keras``, ``serving/``, ``model.json``), plus:

* ``model.fwz``: the Huffman-coded file (``flywheel.techniques.compression``);
  ``model.keras`` is that file decoded, so what serves is what was compressed;
* ``stages/<stage>.fwz``: the real file of every stage (dense, pruned, shared);
* ``report.json`` / ``report.html``: per stage the file size, the ratio to the
  float32 weights, parameters, non-zero parameters, accuracy on the ``split``
  split and the p50 latency of one fixed batch (also copied to the ``report``
  HTML artifact).

Post-training int8 uses Keras 3's ``model.quantize("int8")`` (Dense layers get
int8 kernels with per-channel float scales; Keras 3.15 has no int8 Conv2D, so
convolutions stay float32). It was chosen over the TFLite converter because
the result is still a ``.keras`` model that loads with ``safe_mode=True``, so
evaluate, push and serving take it unchanged; a ``.tflite`` file would need a
second serving path. With ``quantize_int8`` the served model is the int8 one.

The accuracy gate is ``gate_compression`` (below): it combines evaluate's
blessing with "accuracy dropped by at most ``max_accuracy_drop`` against the
original" (both measured here on the same split), so push sees one blessing.
"""

from __future__ import annotations

import html
import os
import time
from typing import Annotated, Any

from flywheel.dsl.artifacts import HTML, Examples, Model, ModelBlessing
from flywheel.dsl.component import Input, Output, component
from flywheel.dsl.constraints import Interval, Options

from flywheel.components import examples_io
from flywheel.models import images as image_models
from flywheel.models import features

COMPRESSED_FILE = "model.fwz"
REPORT_JSON = "report.json"
REPORT_HTML = "report.html"


@component
def compress(
    model: Input[Model],
    examples: Input[Examples],
    compressed: Output[Model],
    report: Output[HTML],
    sparsity: Annotated[float, Interval(float, 0, 1, closed="left")] = 0.9,
    pruning_scope: Annotated[str, Options({"global", "layer"})] = "global",
    pruning_steps: Annotated[int, Interval(int, 1, None)] = 3,
    bits: Annotated[int, Interval(int, 1, 16)] = 4,
    fine_tune_epochs: Annotated[int, Interval(int, 0, None)] = 5,
    learning_rate: Annotated[float, Interval(float, 0, None, closed="neither")] = 0.001,
    batch_size: Annotated[int, Interval(int, 1, None)] = 32,
    quantize_int8: bool = False,
    latency_batch: Annotated[int, Interval(int, 1, None)] = 256,
    latency_repeats: Annotated[int, Interval(int, 1, None)] = 20,
    split: str = "eval",
    seed: int = 0,
) -> None:
    """Prunes, weight-shares and Huffman-codes ``model``; reports every stage.

    Fine-tuning (after pruning, and of the shared centroids) uses the
    ``train`` split; accuracy and latency are measured on ``split``.

    Args:
        model: Output of ``train``.
        examples: Examples with a ``train`` split and the ``split`` split.
        compressed: Receives the compressed model (see the module docstring).
        report: Receives ``report.html``.
        sparsity: Share of the Dense/Conv2D kernel weights pruned, in [0, 1).
        pruning_scope: ``"global"`` (one magnitude threshold over all kernels)
            or ``"layer"`` (every kernel pruned to ``sparsity``).
        pruning_steps: Iterative pruning: sparsity reaches its target in this
            many steps, each followed by ``fine_tune_epochs`` of fine-tuning.
        bits: Bits per shared-weight index (``2**bits`` centroids per layer).
        fine_tune_epochs: Epochs of fine-tuning after each pruning step, and of the centroids.
        learning_rate: Adam learning rate of both fine-tunings.
        batch_size: Examples per fine-tuning step.
        quantize_int8: Also quantize the decoded model to int8 and serve that.
        latency_batch: Rows in the fixed batch whose prediction time is measured.
        latency_repeats: Timed predictions per stage (the p50 is reported).
        split: Split on which accuracy and latency are measured.
        seed: Seeds the fine-tuning.

    Raises:
        ParameterError: a parameter is out of range.
        FlywheelError: the model has no Dense/Conv2D layer.
    """
    import keras
    import numpy as np

    from flywheel.models import layers as model_layers
    from flywheel.techniques import compression as dc

    keras.utils.set_random_seed(seed)
    spec = features.read_json(model.path(features.MODEL_JSON))
    original = model_layers.load_model(model.path(features.MODEL_FILE))
    x_train, y_train = _rows(examples, spec, "train")
    x_eval, y_eval = _rows(examples, spec, split)
    timing_batch = _fixed_batch(x_eval, latency_batch)
    stages_dir = compressed.path("stages")
    os.makedirs(stages_dir, exist_ok=True)

    pruner = dc.MagnitudePruner(
        sparsity=float(sparsity), scope=pruning_scope, steps=pruning_steps, fine_tune_epochs=fine_tune_epochs, learning_rate=float(learning_rate),
        batch_size=batch_size, random_state=seed,
    ).fit(original, x_train, y_train)
    sharer = dc.WeightSharer(
        bits=bits, fine_tune_epochs=fine_tune_epochs, learning_rate=float(learning_rate), batch_size=batch_size,
        random_state=seed,
    ).fit(pruner.model_, x_train, y_train)

    reference = dc.float32_bytes(original)
    rows, decoded = [], None
    plan = [("original", original, "dense", None), ("pruned", pruner.model_, "pruned", None),
            ("shared", sharer.model_, "shared", sharer.codes_), ("huffman", sharer.model_, "huffman", sharer.codes_)]
    for name, net, stage, codes in plan:
        path = compressed.path(COMPRESSED_FILE) if stage == "huffman" else os.path.join(stages_dir, f"{stage}.fwz")
        size = dc.write_compressed(net, path, stage=stage, codes=codes)
        decoded = dc.read_compressed(path)  # every stage is scored as decoded from its file
        rows.append(_measure(name, decoded, size, reference, x_eval, y_eval, timing_batch, latency_repeats, path))
    served = decoded
    if quantize_int8:
        served = keras.models.clone_model(decoded)
        served.set_weights(decoded.get_weights())
        served.quantize("int8")
        served.save(compressed.path("int8.keras"))
        # The int8 model's size is its weights' bytes (int8 kernels, float32 scales and biases); the .keras zip adds config.
        size = int(sum(int(np.prod(w.shape)) * np.dtype(w.dtype).itemsize for w in served.weights))
        rows.append(_measure("int8", served, size, reference, x_eval, y_eval, timing_batch, latency_repeats,
                             compressed.path("int8.keras")))

    served.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    served.save(compressed.path(features.MODEL_FILE))
    if image_models.is_image_spec(spec):
        image_models.export_image_serving(served, spec, compressed.path(features.SERVING_DIR))
    else:
        from flywheel.components.train import export_serving

        export_serving(served, spec, compressed.path(features.SERVING_DIR))
    features.write_json(compressed.path(features.MODEL_JSON), spec)

    final = rows[-1]
    document = {
        "source_model": model.uri,
        "split": split,
        "float32_weight_bytes": reference,
        "settings": {"sparsity": sparsity, "bits": bits, "fine_tune_epochs": fine_tune_epochs,
                     "learning_rate": learning_rate, "quantize_int8": quantize_int8, "seed": seed},
        "achieved_sparsity": pruner.sparsity_,
        "stages": rows,
        "accuracy_original": rows[0]["accuracy"],
        "accuracy_compressed": final["accuracy"],
        "accuracy_drop": rows[0]["accuracy"] - final["accuracy"],
        "compression_ratio": reference / next(r["bytes"] for r in rows if r["stage"] == "huffman"),
        # The .fwz header holds the architecture (zlib'd Keras config); the weights alone compress by this much.
        "weights_compression_ratio": reference / next(r["weight_bytes"] for r in rows if r["stage"] == "huffman"),
        "int8": "keras model.quantize('int8') (Dense kernels int8; Conv2D stays float32 in Keras 3.15)",
    }
    features.write_json(compressed.path(REPORT_JSON), document)
    page = render_html(document)
    for target in (compressed.path(REPORT_HTML), report.path(REPORT_HTML)):
        with open(target, "w", encoding="utf-8") as handle:
            handle.write(page)
    compressed.properties.update(
        {
            **{k: v for k, v in spec.items() if k in ("label", "label_vocabulary", "modality")},
            "parameters": int(served.count_params()),
            "accuracy_original": document["accuracy_original"],
            "accuracy_compressed": document["accuracy_compressed"],
            "accuracy_drop": document["accuracy_drop"],
            "compression_ratio": round(document["compression_ratio"], 3),
            "compressed_bytes": next(r["bytes"] for r in rows if r["stage"] == "huffman"),
            "float32_weight_bytes": reference,
            "sparsity": pruner.sparsity_,
            "bits": bits,
            "int8": quantize_int8,
            "source_model": model.uri,
        }
    )
    report.properties.update({"compression_ratio": document["compression_ratio"], "accuracy_drop": document["accuracy_drop"]})


@component
def gate_compression(
    blessing: Input[ModelBlessing],
    compressed: Input[Model],
    gated: Output[ModelBlessing],
    max_accuracy_drop: Annotated[float, Interval(float, 0, None)] = 0.01,
) -> None:
    """Blesses a compressed model only if evaluate blessed it and it lost at most ``max_accuracy_drop``.

    The drop is ``compress``'s ``accuracy_original - accuracy_compressed`` on
    the same split; pass ``gated`` to ``push`` instead of evaluate's blessing.

    Raises:
        ParameterError: ``max_accuracy_drop`` is negative.
    """
    document = features.read_json(compressed.path(REPORT_JSON))
    evaluated = features.read_json(blessing.path("blessing.json"))
    drop = float(document["accuracy_drop"])
    reasons = list(evaluated.get("reasons") or [])
    within = drop <= max_accuracy_drop + 1e-12
    check = (
        f"accuracy {document['accuracy_compressed']:.4f} vs original {document['accuracy_original']:.4f}: "
        f"drop {drop:.4f} {'<=' if within else 'exceeds'} max_accuracy_drop {max_accuracy_drop}"
    )
    blessed = bool(evaluated.get("blessed")) and within
    if blessed:
        reasons.append(check)
    else:
        reasons = ([check] if not within else []) + ([] if evaluated.get("blessed") else reasons)
    decision = {**evaluated, "blessed": blessed, "reasons": reasons, "accuracy_drop": drop,
                "max_accuracy_drop": max_accuracy_drop, "model_uri": compressed.uri}
    features.write_json(gated.path("blessing.json"), decision)
    gated.properties.update(
        {"blessed": blessed, "reasons": reasons, "metrics": evaluated.get("metrics", {}), "accuracy_drop": drop,
         "baseline_version": evaluated.get("baseline_version"), "model_uri": compressed.uri}
    )


def _rows(examples: Examples, spec: dict[str, Any], split: str) -> tuple[Any, Any]:
    """(model inputs, integer labels) of one split, without rows whose label is missing."""
    label, vocabulary = spec["label"], spec["label_vocabulary"]
    if image_models.is_image_spec(spec):
        pixels, frame = examples_io.read_images(examples, split)
        present = frame[label].notna().to_numpy()
        return image_models.pixels(pixels[present]), features.encode_labels(frame[label][present], vocabulary)
    frame = examples_io.read_split(examples, split)
    frame = frame[frame[label].notna()].reset_index(drop=True)
    return features.raw_inputs(frame, spec), features.encode_labels(frame[label], vocabulary)


def _fixed_batch(x: Any, rows: int) -> Any:
    """The first ``rows`` inputs, repeated cyclically when the split is smaller (the same batch for every stage)."""
    import numpy as np

    def take(array: Any) -> Any:
        index = np.arange(rows) % len(array)
        return np.asarray(array)[index]

    return {name: take(v) for name, v in x.items()} if isinstance(x, dict) else take(x)


def _measure(
    stage: str, net: Any, size: int, reference: int, x: Any, y: Any, batch: Any, repeats: int, path: str
) -> dict[str, Any]:
    """One report row: size, ratio, parameters, non-zeros, accuracy and p50 latency of ``net``."""
    import numpy as np

    proba = net.predict(x, batch_size=1024, verbose=0)
    net.predict_on_batch(batch)  # warm-up: the first call traces the graph
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        net.predict_on_batch(batch)
        times.append(time.perf_counter() - started)
    weights = [np.asarray(w.numpy()) for w in net.weights]
    return {
        "stage": stage,
        "file": os.path.basename(path),
        "bytes": int(size),
        "weight_bytes": int(size) - _header_bytes(path),
        "ratio": reference / size,
        "parameters": int(sum(w.size for w in weights)),
        "nonzero_parameters": int(sum(np.count_nonzero(w) for w in weights)),
        "accuracy": float(np.mean(np.argmax(proba, axis=1) == np.asarray(y))),
        "latency_p50_ms": 1000 * float(np.median(times)),
        "latency_batch": int(len(next(iter(batch.values())) if isinstance(batch, dict) else batch)),
    }


def _header_bytes(path: str) -> int:
    """Bytes of a .fwz file's header (magic, length, zlib'd architecture); 0 for other files."""
    import struct

    with open(path, "rb") as handle:
        start = handle.read(8)
    from flywheel.techniques.compression import MAGIC

    return 8 + struct.unpack_from("<I", start, 4)[0] if start[:4] == MAGIC else 0


def render_html(document: dict[str, Any]) -> str:
    """The compression report as a self-contained HTML page (every value escaped)."""
    columns = ["stage", "file", "bytes", "weight_bytes", "ratio", "parameters", "nonzero_parameters", "accuracy", "latency_p50_ms"]

    def cell(value: Any) -> str:
        text = f"{value:.4g}" if isinstance(value, float) else str(value)
        return f"<td>{html.escape(text)}</td>"

    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(cell(row[c]) for c in columns) + "</tr>" for row in document["stages"])
    return (
        "<!DOCTYPE html><html><head><meta charset=utf-8><title>Model compression</title></head><body>"
        f"<h1>Model compression</h1><p>float32 weights: {document['float32_weight_bytes']} bytes; "
        f"full pipeline: {document['compression_ratio']:.1f}x smaller file "
        f"({document['weights_compression_ratio']:.1f}x on the weights alone); accuracy drop on "
        f"{html.escape(document['split'])}: {100 * document['accuracy_drop']:.2f} points.</p>"
        f"<table border=1><tr>{head}</tr>{body}</table>"
        f"<p>Settings: {html.escape(str(document['settings']))}</p></body></html>"
    )
