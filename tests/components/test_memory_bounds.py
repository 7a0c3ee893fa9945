"""Train and evaluate keep their memory flat in the data size (issue 17).

Each measurement runs one component in a fresh interpreter and reads that
process's peak RSS (``VmHWM``): the same component on the same kind of
table at ``SMALL`` and at 8x the rows. TensorFlow's footprint is the same in
both, so the difference is what the data costs. The in-memory train path is
measured the same way as a control: it must grow, which shows the measurement
can see data held in memory at this size.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

try:
    from tests.components.model_fixtures import run, write_examples
except ImportError:  # tests/ is not a package: pytest put this directory on sys.path
    from model_fixtures import run, write_examples

SMALL, LARGE = 25_000, 200_000
COLUMNS = 32
# Streamed train and batched evaluate may grow this much for 8x the rows (measured: +14 to +29 MB for
# train, +21 MB for evaluate, which keeps 2 floats per row for the exact ROC-AUC). The in-memory path
# grows by ~700 MB at LARGE (its table, tensors and a shuffle buffer as large as the data), so the
# measurement sees data held in memory at this size. Before row groups were capped
# (examples_io.ROW_GROUP_ROWS), a split written in one call was one row group, which readers decode
# whole: streamed train then grew by 180 MB and evaluate by 231 MB here.
FLAT_MB = 60
IN_MEMORY_GROWTH_MB = 400
EVAL_BATCH_ROWS = READ_ROWS = 8_192  # evaluate's batch, and the row groups: SMALL is already several of them

CHILD = r"""
import json, sys
from flywheel.dsl import artifacts
from flywheel.component_call import call_component

job = json.load(open(sys.argv[1]))
def artifact(doc):
    return getattr(artifacts, doc["type"])(uri=doc["uri"], properties=doc["properties"])
if job["component"] == "train":
    from flywheel.components import train as module
    module.STREAM_ROWS = job["stream_rows"]
    comp = module.train
else:
    from flywheel.components import evaluate as module
    module.EVAL_BATCH_ROWS = job["eval_batch_rows"]
    comp = module.evaluate
inputs = {name: artifact(doc) for name, doc in job["inputs"].items()}
outputs = {name: artifact(doc) for name, doc in job["outputs"].items()}
call_component(comp, inputs, outputs, job["parameters"])
# VmHWM: this process's own peak. ru_maxrss would not do: Linux carries it across execve, so a child
# of a large pytest process reports the parent's size.
print("MAXRSS_KB", [line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM:")][0])
"""


def _table(rows: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    values = rng.normal(size=(rows, COLUMNS)).astype("float64")
    frame = pd.DataFrame(values, columns=[f"x{i:02d}" for i in range(COLUMNS)])
    frame["y"] = np.where(values[:, 0] + 0.5 * values[:, 1] + rng.normal(0, 0.5, rows) > 0, "yes", "no")
    return frame


def _doc(artifact) -> dict:
    return {"type": type(artifact).__name__, "uri": artifact.uri, "properties": dict(artifact.properties)}


def _peak_mb(tmp: str, name: str, component: str, inputs: dict, outputs: dict, parameters: dict,
             stream_rows: int = 0) -> float:
    job = {
        "component": component, "stream_rows": stream_rows, "eval_batch_rows": EVAL_BATCH_ROWS, "parameters": parameters,
        "inputs": {k: _doc(v) for k, v in inputs.items()}, "outputs": {k: _doc(v) for k, v in outputs.items()},
    }
    path = os.path.join(tmp, f"{name}.json")
    with open(path, "w") as f:
        json.dump(job, f)
    done = subprocess.run([sys.executable, "-c", CHILD, path], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    line = [ln for ln in done.stdout.splitlines() if ln.startswith("MAXRSS_KB")][-1]
    return int(line.split()[1]) / 1024


@pytest.fixture(scope="module")
def tables(tmp_path_factory):
    """Examples at SMALL and LARGE train rows (eval the same size), and one transform graph fitted on a sample."""
    from flywheel.components.transform import transform
    from flywheel.dsl.artifacts import TransformGraph

    from flywheel.components import examples_io

    root = tmp_path_factory.mktemp("memory")
    made = {}
    # Readers decode a row group at a time: with row groups of READ_ROWS, SMALL is already many of them.
    row_group_rows, examples_io.ROW_GROUP_ROWS = examples_io.ROW_GROUP_ROWS, READ_ROWS
    try:
        for rows in (SMALL, LARGE):
            made[rows] = write_examples(
                str(root / f"ex{rows}"), {"train": _table(rows, 1), "eval": _table(rows, 2)}, label="y"
            )
    finally:
        examples_io.ROW_GROUP_ROWS = row_group_rows
    sample = write_examples(str(root / "sample"), {"train": _table(2_000, 1)}, label="y")
    graph = run(transform, {"examples": sample}, {"transform_graph": TransformGraph(uri=str(root / "tg"))})
    return root, made, graph["transform_graph"]


def _train(tmp, examples, graph, name: str, stream_rows: int) -> tuple[float, object]:
    from flywheel.dsl.artifacts import Model

    model = Model(uri=os.path.join(tmp, name))
    peak = _peak_mb(
        tmp, name, "train", {"examples": examples, "transform_graph": graph}, {"model": model},
        {"epochs": 1, "batch_size": 1024, "hidden_units": [16], "early_stopping_patience": 0},
        stream_rows=stream_rows,
    )
    return peak, model


def test_streamed_train_and_batched_evaluate_stay_flat_where_the_in_memory_path_grows(tables):
    from flywheel.dsl.artifacts import ClassificationMetrics, Markdown, ModelBlessing, ModelEvaluation

    root, examples, graph = tables
    tmp = str(root)
    streamed = {rows: _train(tmp, examples[rows], graph, f"streamed{rows}", stream_rows=0) for rows in (SMALL, LARGE)}
    in_memory = {rows: _train(tmp, examples[rows], graph, f"memory{rows}", stream_rows=10**9)[0] for rows in (SMALL, LARGE)}

    def evaluate(rows: int) -> float:
        model = streamed[SMALL][1]
        outputs = {
            "evaluation": ModelEvaluation(uri=os.path.join(tmp, f"ev{rows}")),
            "blessing": ModelBlessing(uri=os.path.join(tmp, f"bl{rows}")),
            "metrics": ClassificationMetrics(uri=os.path.join(tmp, f"cm{rows}")),
            "summary": Markdown(uri=os.path.join(tmp, f"md{rows}")),
        }
        return _peak_mb(tmp, f"evaluate{rows}", "evaluate", {"examples": examples[rows], "model": model}, outputs,
                        {"label": "y", "slice_features": [], "registry": os.path.join(tmp, "registry"),
                         "model_name": "memory-bounds"})

    evaluated = {rows: evaluate(rows) for rows in (SMALL, LARGE)}
    report = {
        "streamed train": (streamed[SMALL][0], streamed[LARGE][0]),
        "in-memory train": (in_memory[SMALL], in_memory[LARGE]),
        "batched evaluate": (evaluated[SMALL], evaluated[LARGE]),
    }
    print({k: f"{a:.0f} -> {b:.0f} MB" for k, (a, b) in report.items()})
    assert in_memory[LARGE] - in_memory[SMALL] > IN_MEMORY_GROWTH_MB, report
    assert streamed[LARGE][0] - streamed[SMALL][0] < FLAT_MB, report
    assert evaluated[LARGE] - evaluated[SMALL] < FLAT_MB, report
