"""Transform's full-pass analyzers three ways over a taxi-like train split in Parquet shards (issue 17).

    nice python benchmarks/transform_analyzers.py                    # 1,000,000 rows, 3 runs each
    nice python benchmarks/transform_analyzers.py --rows 100000
    nice python benchmarks/transform_analyzers.py --penguins         # the transform node on penguins

Each way computes transform's constants (per numeric feature mean, variance and missing count;
per string feature the top ``max_vocabulary`` vocabulary and missing count; the label
vocabulary) of the same train split, each run in a fresh process, the process tree sampled
every 20 ms for wall time and peak RSS:

* ``pandas``: the in-memory path, ``fit_spec`` over ``read_split`` (the whole split in memory);
* ``streamed``: the same ``fit_spec`` in one pass over the split's batches
  (``iter_split_batches``, ``STREAM_BATCH_ROWS`` rows each), what transform runs for a train
  split over ``STREAM_MIN_ROWS`` rows without ``beam_args``;
* ``tft-beam``: tf.Transform's analyzers on Beam's DirectRunner (``fit_spec_on_beam``), the
  Parquet shards read by Beam, what transform runs with ``beam_args``;
* ``keras-adapt``: Keras preprocessing layers ``adapt``ed over a streamed ``tf.data`` dataset
  (one ``Normalization`` and one ``StringLookup`` per feature, each adapted over its own column
  streamed from the shards; missing values counted in the same pass).

The table (medians of ``--repeat`` runs, ratios against ``pandas`` in the same run) and
how far each way's constants are from the pandas ones are printed with the load average, and
written to ``benchmarks/out/transform_analyzers.json`` (gitignored). The table is generated
with benchmarks/scale.py's taxi generator (18 columns, strings with rare values, missing
values, heavy tails); ``trip_start_timestamp`` (one value per trip) is excluded as an id.

``--penguins`` times the transform component on the penguins train split (258 rows; the
in-memory path) in fresh processes: small data must not get slower. To time another
checkout's transform, put its tree first on ``PYTHONPATH`` with ``flywheel/components``
linked to its ``components/`` (the line printed names the file that ran).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
OUT = os.path.join(HERE, "out")
WAYS = ("pandas", "streamed", "tft-beam", "keras-adapt")
LABEL = "tipped"
EXCLUDE = ("trip_start_timestamp",)
MAX_VOCABULARY = 1000


def write_train_split(root: str, rows: int) -> str:
    """A taxi-like ``rows``-row train split as Parquet shards (Examples artifact at ``root``)."""
    import pandas as pd

    from scale import CHUNK_ROWS, write_taxi_csv

    from flywheel.components import examples_io
    from flywheel.dsl.artifacts import Examples

    csv_path = os.path.join(root, "taxi.csv")
    write_taxi_csv(csv_path, rows)
    examples = Examples(uri=os.path.join(root, "examples"))
    os.makedirs(examples.uri)
    tracts = {"pickup_census_tract": str, "dropoff_census_tract": str}
    with examples_io.SplitWriter(examples, "train") as writer:
        for chunk in pd.read_csv(csv_path, chunksize=CHUNK_ROWS, dtype=tracts):
            writer.write(chunk)
    os.remove(csv_path)
    with open(os.path.join(root, "properties.json"), "w") as handle:
        json.dump({"label": LABEL, "row_counts": {"train": rows}}, handle)
    return examples.uri


def _examples(uri: str):
    from flywheel.dsl.artifacts import Examples

    examples = Examples(uri=uri)
    with open(os.path.join(os.path.dirname(uri), "properties.json")) as handle:
        examples.properties.update(json.load(handle))
    return examples


def _kinds(examples) -> dict[str, str]:
    from flywheel.components.transform import _feature_kinds
    from flywheel.components import examples_io

    return _feature_kinds(examples_io.empty_split_frame(examples, "train"), None, exclude={LABEL, *EXCLUDE})


def keras_adapt_spec(examples, kinds: dict[str, str], label: str, max_vocabulary: int) -> dict:
    """The constants from Keras layers adapted over each column streamed as a tf.data dataset."""
    import keras
    import numpy as np
    import pandas as pd
    import tensorflow as tf

    from flywheel.components import examples_io

    def stream(name: str, numeric: bool, missing: list[int]):
        def generate():
            for frame in examples_io.iter_split_batches(examples, "train", columns=[name]):
                column = frame[name]
                if numeric:
                    values = pd.to_numeric(column, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
                    missing[0] += int(np.isnan(values).sum())
                    yield values[~np.isnan(values)].astype("float32")[:, None]
                else:
                    missing[0] += int(column.isna().sum())
                    text = column.dropna().astype(str)
                    yield text[text != ""].to_numpy(dtype=object)[:, None]

        spec = tf.TensorSpec([None, 1], tf.float32 if numeric else tf.string)  # batches of one column
        return tf.data.Dataset.from_generator(generate, output_signature=spec)

    result = {"numeric": {}, "categorical": {}}
    for name, kind in kinds.items():
        missing = [0]
        if kind == "numeric":
            layer = keras.layers.Normalization(axis=None)
            layer.adapt(stream(name, True, missing))
            mean, variance = float(np.ravel(layer.mean)[0]), float(np.ravel(layer.variance)[0])
            result["numeric"][name] = {"mean": mean, "variance": variance, "missing_in_train": missing[0]}
        else:
            layer = keras.layers.StringLookup(max_tokens=max_vocabulary + 1, num_oov_indices=1)
            layer.adapt(stream(name, False, missing))
            result["categorical"][name] = {"vocabulary": layer.get_vocabulary()[1:], "missing_in_train": missing[0]}
    labels = keras.layers.StringLookup(num_oov_indices=1)
    labels.adapt(stream(label, False, [0]))
    result["label_vocabulary"] = sorted(labels.get_vocabulary()[1:])
    return result


def run_way(way: str, uri: str, out: str) -> None:
    """The child side: one way's constants, written to ``out`` as JSON (with the fit's own seconds)."""
    began = time.perf_counter()
    from flywheel.components import examples_io
    from flywheel.components.transform import STREAM_BATCH_ROWS, fit_spec
    from flywheel.components.transform import beam as transform_beam

    examples = _examples(uri)
    kinds = _kinds(examples)
    if way == "pandas":
        spec = fit_spec(examples_io.read_split(examples, "train"), kinds, LABEL, max_vocabulary=MAX_VOCABULARY)
    elif way == "streamed":
        batches = examples_io.iter_split_batches(
            examples, "train", batch_rows=STREAM_BATCH_ROWS, columns=list(dict.fromkeys([*kinds, LABEL]))
        )
        spec = fit_spec(batches, kinds, LABEL, max_vocabulary=MAX_VOCABULARY)
    elif way == "tft-beam":
        spec = transform_beam.fit_spec_on_beam(
            examples, "train", kinds, LABEL, max_vocabulary=MAX_VOCABULARY, beam_args=[],
            work_dir=tempfile.mkdtemp(prefix="tft-bench-"),
        )
    else:
        adapted = keras_adapt_spec(examples, kinds, LABEL, MAX_VOCABULARY)
        spec = {"features": {**adapted["numeric"], **adapted["categorical"]}, "label_vocabulary": adapted["label_vocabulary"]}
    spec["fit_s"] = time.perf_counter() - began
    with open(out, "w") as handle:
        json.dump(spec, handle)


def run_penguins(out: str) -> None:
    """The child side of --penguins: transform on penguins' train split as the runner calls it."""
    sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests", "components"))
    from model_fixtures import penguin_examples

    from flywheel.component_call import call_component
    from flywheel.components.transform import transform
    from flywheel.dsl.artifacts import TransformGraph

    began = time.perf_counter()
    root = tempfile.mkdtemp(prefix="tft-penguins-")
    examples = penguin_examples(os.path.join(root, "ex"))
    graph = TransformGraph(uri=os.path.join(root, "tg"))
    os.makedirs(graph.uri)
    called = time.perf_counter()
    call_component(transform, {"examples": examples}, {"transform_graph": graph}, {})
    with open(out, "w") as handle:
        json.dump({"fit_s": time.perf_counter() - began, "call_s": time.perf_counter() - called, "analyzers": graph.properties.get("analyzers", "in memory"),
                   "code": sys.modules[transform.fn.__module__].__file__}, handle)
    shutil.rmtree(root)


def _distance(spec: dict, reference: dict) -> dict:
    """Largest relative difference of means/variances, and whether vocabularies and counts match."""
    worst, vocab_same, sets_same, counts_same = 0.0, True, True, True
    for name, ref in reference["features"].items():
        got = spec["features"][name]
        for key in ("mean", "variance"):
            if key in ref:
                worst = max(worst, abs(got[key] - ref[key]) / max(abs(ref[key]), 1e-300))
        if "vocabulary" in ref:
            vocab_same &= got["vocabulary"] == ref["vocabulary"]
            sets_same &= set(got["vocabulary"]) == set(ref["vocabulary"])
        counts_same &= got["missing_in_train"] == ref["missing_in_train"]
    vocab_same &= spec["label_vocabulary"] == reference["label_vocabulary"]
    return {"max_rel_diff": worst, "vocabularies_equal": vocab_same, "vocabulary_sets_equal": sets_same,
            "missing_counts_equal": counts_same}


def measure(args_for, repeat: int, ways, label: str) -> dict:
    from pipeline_e2e import run_and_sample

    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    runs: dict[str, list] = {way: [] for way in ways}
    for index in range(repeat):
        for way in ways:  # alternated, so load drifts hit every way alike
            out = os.path.join(OUT, f"transform_analyzers-{way}.json")
            wall, rss, _, _ = run_and_sample(args_for(way, out), env, f"{way} ({label})")
            with open(out) as handle:
                spec = json.load(handle)
            runs[way].append({"wall_s": wall, "peak_rss_mb": rss, "fit_s": spec.pop("fit_s"), "spec": spec})
            print(f"  run {index + 1}: {way:<12} {wall:7.1f} s  {rss:7.0f} MB  load {_load()}", flush=True)
    return runs


def _load() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--ways", default=",".join(WAYS), help="comma-separated subset of " + ", ".join(WAYS))
    parser.add_argument("--penguins", action="store_true", help="time the transform node on penguins instead")
    parser.add_argument("--way", help=argparse.SUPPRESS)
    parser.add_argument("--uri", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.way == "penguins":
        run_penguins(args.out)
        return
    if args.way:
        run_way(args.way, args.uri, args.out)
        return
    os.makedirs(OUT, exist_ok=True)
    print(f"load average (1, 5, 15 min) at start: {_load()}; {os.cpu_count()} CPUs", flush=True)
    me = os.path.abspath(__file__)
    if args.penguins:
        runs = measure(lambda way, out: [sys.executable, me, "--way", "penguins", "--out", out], args.repeat,
                       ["penguins"], "penguins")["penguins"]
        print(f"\npenguins transform node, median of {args.repeat}: process {statistics.median(r['wall_s'] for r in runs):.2f} s, "
              f"in-process {statistics.median(r['fit_s'] for r in runs):.2f} s (the component call "
              f"{statistics.median(r['spec']['call_s'] for r in runs):.2f} s), peak "
              f"{statistics.median(r['peak_rss_mb'] for r in runs):.0f} MB ({runs[0]['spec']['analyzers']}, "
              f"{runs[0]['spec']['code']}); load {_load()}")
        return
    ways = [way for way in args.ways.split(",") if way]
    scratch = tempfile.mkdtemp(prefix="flywheel-tft-bench-")
    try:
        began = time.perf_counter()
        uri = write_train_split(scratch, args.rows)
        print(f"wrote {args.rows} rows as Parquet shards in {time.perf_counter() - began:.0f} s", flush=True)
        runs = measure(lambda way, out: [sys.executable, me, "--way", way, "--uri", uri, "--out", out],
                       args.repeat, ways, f"{args.rows} rows")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    table = {}
    for way in ways:
        table[way] = {key: statistics.median(r[key] for r in runs[way]) for key in ("wall_s", "fit_s", "peak_rss_mb")}
        if "pandas" in runs and way != "pandas":
            table[way].update(_distance(runs[way][0]["spec"], runs["pandas"][0]["spec"]))
    base = table.get("pandas")
    print(f"\n{args.rows} rows, median of {args.repeat}; load average at end: {_load()}")
    print(f"{'way':<12} {'wall s':>7} {'x pandas':>8} {'fit s':>7} {'peak MB':>8} {'x pandas':>8}  agreement with pandas")
    for way, row in table.items():
        ratio_t = row["wall_s"] / base["wall_s"] if base else float("nan")
        ratio_m = row["peak_rss_mb"] / base["peak_rss_mb"] if base else float("nan")
        agree = "" if way == "pandas" or not base else (
            f"means/vars max rel diff {row['max_rel_diff']:.1e}, vocabularies "
            f"{'equal' if row['vocabularies_equal'] else 'same sets, other order' if row['vocabulary_sets_equal'] else 'DIFFER'}, "
            f"missing counts {'equal' if row['missing_counts_equal'] else 'DIFFER'}"
        )
        print(f"{way:<12} {row['wall_s']:>7.1f} {ratio_t:>8.2f} {row['fit_s']:>7.1f} {row['peak_rss_mb']:>8.0f} {ratio_m:>8.2f}  {agree}")
    with open(os.path.join(OUT, "transform_analyzers.json"), "w") as handle:
        json.dump({"rows": args.rows, "repeat": args.repeat, "load_end": _load(), "table": table}, handle, indent=2)


if __name__ == "__main__":
    main()
