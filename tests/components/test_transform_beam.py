"""transform's analyzers on Beam (tf.Transform): the same transform.json as the in-memory path over
sharded data; the user's Beam options reach the pipeline, locally and in the compiled Kubeflow IR."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest

try:
    from tests.components.model_fixtures import run, write_examples
except ImportError:  # tests/ is not a package: pytest put this directory on sys.path
    from model_fixtures import run, write_examples

from flywheel.components import examples_io
from flywheel.components.transform import beam as transform_beam
from flywheel.components.transform import fit_spec, transform
from flywheel.dsl.artifacts import TransformGraph
from flywheel.errors import ParameterError
from flywheel.models import features

REPO = os.path.join(os.path.dirname(__file__), "..", "..")
KINDS = {"count": "numeric", "fare": "numeric", "flag": "numeric", "empty": "numeric", "company": "categorical",
         "tied": "categorical"}
# The analyzers' sums run in another order than pandas': means and variances agree to this relative
# tolerance (the module's docstring); counts, vocabularies and their order are exact.
REL = 1e-9


def _frame(rows: int, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    companies = ["Flash Cab", "Taxi Affiliation", "Sun Taxi", "rare one", "", "line\nbreak"]
    # Four values 1/4 of the rows each: a tie that max_vocabulary=3 cuts through (kept: a, b, c).
    tied = np.array(["d", "b", "c", "a"] * (rows // 4) + ["a", "b", "c", "d"][: rows % 4], dtype=object)
    rng.shuffle(tied)
    return pd.DataFrame(
        {
            "count": rng.integers(0, 9, rows),
            "fare": np.where(rng.random(rows) < 0.1, np.nan, rng.pareto(2.0, rows) * 1e4),
            "flag": pd.array(np.where(rng.random(rows) < 0.05, None, rng.random(rows) < 0.3), dtype="boolean"),
            "empty": np.full(rows, np.nan),
            "company": np.where(
                rng.random(rows) < 0.2, None, rng.choice(companies, rows, p=[0.5, 0.3, 0.1, 0.002, 0.05, 0.048])
            ),
            "tied": tied,
            "label": rng.choice(["tip", "no tip", "large tip"], rows),
        }
    )


def _sharded(tmp_path, monkeypatch, rows: int = 3000, seed: int = 3):
    monkeypatch.setattr(examples_io, "SHARD_ROWS", 700)
    frame = _frame(rows, seed)
    examples = write_examples(str(tmp_path / "ex"), {"train": frame}, label="label")
    assert len(examples_io.shard_paths(examples, "train")) == -(-rows // 700)
    return examples, frame


def _assert_same_spec(got: dict, expected: dict) -> None:
    """Equal documents, means and variances to REL."""
    assert got.keys() == expected.keys()
    assert list(got["features"]) == list(expected["features"])
    for name, info in expected["features"].items():
        for key, value in info.items():
            if key in ("mean", "variance"):
                assert got["features"][name][key] == pytest.approx(value, rel=REL), (name, key)
            else:
                assert got["features"][name][key] == value, (name, key)
    rest = [key for key in expected if key != "features"]
    assert {key: got[key] for key in rest} == {key: expected[key] for key in rest}


def test_tf_transform_on_sharded_data_gives_fit_specs_document(tmp_path, monkeypatch):
    examples, frame = _sharded(tmp_path, monkeypatch)
    expected = fit_spec(examples_io.read_split(examples, "train"), KINDS, "label", max_vocabulary=3)
    work = str(tmp_path / "work")
    got = transform_beam.fit_spec_on_beam(
        examples, "train", KINDS, "label", max_vocabulary=3, beam_args=["--direct_num_workers=1"], work_dir=work
    )

    _assert_same_spec(got, expected)
    assert not os.path.exists(work)  # tf.Transform's files are gone
    # What both must be, from the frame itself:
    assert got["fitted_on"] == {"split": "train", "rows": 3000}
    assert got["features"]["fare"]["missing_in_train"] == int(frame["fare"].isna().sum()) > 0
    assert got["features"]["fare"]["mean"] == pytest.approx(frame["fare"].mean(), rel=REL)
    assert got["features"]["flag"]["mean"] == pytest.approx(frame["flag"].dropna().astype(float).mean(), rel=REL)
    empty = got["features"]["empty"]  # all missing: normalized to 0
    assert (empty["mean"], empty["variance"], empty["missing_in_train"]) == (0.0, 1.0, 3000)
    assert got["features"]["tied"]["vocabulary"] == ["a", "b", "c"]  # 750 each: ties by value
    assert got["features"]["company"]["vocabulary"] == ["Flash Cab", "Taxi Affiliation", "Sun Taxi"]
    assert got["features"]["company"]["missing_in_train"] == int(frame["company"].isna().sum())
    assert got["label_vocabulary"] == ["large tip", "no tip", "tip"]


def test_rare_and_odd_strings_are_counted_exactly(tmp_path, monkeypatch):
    """Every value, a newline in it or seen once, counted as pandas counts it ("" is missing), with
    each 700-row shard cut into record batches of 128 rows (the last one shorter)."""
    examples, frame = _sharded(tmp_path, monkeypatch, rows=1200, seed=5)
    monkeypatch.setattr(transform_beam, "BATCH_ROWS", 128)
    sizes = []
    real = transform_beam._record_batch
    monkeypatch.setattr(transform_beam, "_record_batch", lambda table, *a: sizes.append(table.num_rows) or real(table, *a))
    got = transform_beam.fit_spec_on_beam(
        examples, "train", {"company": "categorical"}, "label", max_vocabulary=100, beam_args=[],
        work_dir=str(tmp_path / "work"),
    )
    assert sorted(sizes) == sorted([128] * 8 + [60, 116])  # shards of 700 = 5 x 128 + 60 and 500 = 3 x 128 + 116 rows
    counts = frame["company"].dropna()
    counts = counts[counts != ""].value_counts()
    assert got["features"]["company"]["vocabulary"] == sorted(counts.index, key=lambda v: (-counts[v], v))
    assert "line\nbreak" in got["features"]["company"]["vocabulary"] and "" not in got["features"]["company"]["vocabulary"]


def _transform(examples, root, **params):
    graph = TransformGraph(uri=str(root))
    os.makedirs(graph.uri)
    run(transform, {"examples": examples}, {"transform_graph": graph}, **params)
    return graph, features.read_json(graph.path(features.TRANSFORM_JSON))


def test_user_beam_args_reach_transforms_pipeline_and_give_the_in_memory_result(tmp_path, monkeypatch, beam_pipeline_options):
    from apache_beam.options.pipeline_options import PipelineOptions

    class FlywheelTestOptions(PipelineOptions):
        @classmethod
        def _add_argparse_args(cls, parser):
            parser.add_argument("--flywheel_test_option")

    examples, _ = _sharded(tmp_path, monkeypatch, rows=1400)
    seen = beam_pipeline_options
    args = ["--runner=DirectRunner", "--direct_num_workers=1", "--job_name=taxi-transform", "--flywheel_test_option=xyz"]
    on_beam, beam_spec = _transform(examples, tmp_path / "beam", beam_args=args, max_vocabulary=3)
    in_memory, memory_spec = _transform(examples, tmp_path / "memory", max_vocabulary=3)

    assert len(seen) == 1  # only the beam_args run built a pipeline
    options = seen[0]
    assert options.get_all_options()["runner"] == "DirectRunner" and options.get_all_options()["job_name"] == "taxi-transform"
    assert options.view_as(FlywheelTestOptions).flywheel_test_option == "xyz"
    _assert_same_spec(beam_spec, memory_spec)
    assert on_beam.properties["analyzers"] == "tf.Transform on Beam" and in_memory.properties["analyzers"] == "in memory"
    for key in ("numeric_features", "categorical_features", "label_vocabulary", "output_dim", "train_rows"):
        assert on_beam.properties[key] == in_memory.properties[key], key
    assert sorted(os.listdir(on_beam.uri)) == sorted(os.listdir(in_memory.uri))  # tf.Transform's work dir removed


def test_a_train_split_over_the_row_threshold_is_streamed_in_batches_with_the_in_memory_result(tmp_path, monkeypatch):
    from flywheel.components import transform as transform_module

    examples, frame = _sharded(tmp_path, monkeypatch, rows=800)
    calls = []
    monkeypatch.setattr(transform_beam, "fit_spec_on_beam", lambda *a, **k: calls.append(k["beam_args"]))
    read = []
    real_read = examples_io.read_split
    monkeypatch.setattr(examples_io, "read_split", lambda *a, **k: read.append(a[1]) or real_read(*a, **k))
    monkeypatch.setattr(transform_module, "STREAM_MIN_ROWS", 799)
    monkeypatch.setattr(transform_module, "STREAM_BATCH_ROWS", 96)  # 800 rows in 700-row shards: 10 batches
    streamed, spec = _transform(examples, tmp_path / "tg")
    assert calls == [] and read == [] and streamed.properties["analyzers"] == "streamed in batches"

    monkeypatch.setattr(transform_module, "STREAM_MIN_ROWS", 800)  # not above it: in memory
    in_memory, expected = _transform(examples, tmp_path / "tg2")
    assert calls == [] and read == ["train"] and in_memory.properties["analyzers"] == "in memory"
    _assert_same_spec(spec, expected)
    assert spec["fitted_on"]["rows"] == len(frame)


def test_fit_spec_over_batches_equals_fit_spec_over_the_frame():
    frame = _frame(5000, seed=11)
    whole = fit_spec(frame, KINDS, "label", max_vocabulary=3)
    batches = (frame.iloc[start:start + 333] for start in range(0, len(frame), 333))
    _assert_same_spec(fit_spec(batches, KINDS, "label", max_vocabulary=3), whole)
    assert whole["features"]["tied"]["vocabulary"] == ["a", "b", "c"]  # the tie cut by name, in both


@pytest.mark.parametrize("bad", ["--runner=DirectRunner", ["runner=DirectRunner"], [3]])
def test_beam_args_that_are_not_a_list_of_options_are_refused_naming_the_fix(tmp_path, bad):
    examples = write_examples(str(tmp_path / "ex"), {"train": _frame(40)}, label="label")
    with pytest.raises(ParameterError, match=r"'beam_args' parameter of transform must be a list of Beam options.*e\.g\. \['--runner=FlinkRunner'"):
        _transform(examples, tmp_path / "tg", beam_args=bad)


def _tasks(path):
    import yaml

    doc = yaml.safe_load(open(path, encoding="utf-8"))
    return doc, {t["taskInfo"]["name"]: t for t in doc["root"]["dag"]["tasks"].values()}


def test_beam_args_are_a_pipeline_parameter_that_reaches_validate_and_transform(tmp_path):
    from flywheel.cli.main import main

    training = os.path.join(REPO, "pipelines", "training.py")
    args = ["--runner=FlinkRunner", "--flink_master=host:8081", "--flywheel_test_option=xyz"]
    # Locally: -p beam_args=... is the pipeline's parameter, both tasks get it.
    from flywheel.pipeline_file import load_pipeline

    pipe = load_pipeline(training)
    values = pipe.resolve_parameters({"beam_args": '["--runner=FlinkRunner", "--flink_master=host:8081", "--flywheel_test_option=xyz"]'})
    assert pipe.task_parameters("validate", values)["beam_args"] == args
    assert pipe.task_parameters("transform", values)["beam_args"] == args

    # Kubeflow IR: a run parameter (LIST) both tasks read, or, given at compile time, both tasks' constant.
    assert main(["compile", training, "-o", str(tmp_path / "open.yaml")]) in (0, None)
    doc, tasks = _tasks(tmp_path / "open.yaml")
    assert doc["root"]["inputDefinitions"]["parameters"]["beam_args"] == {
        "defaultValue": [], "isOptional": True, "parameterType": "LIST"
    }
    for task in ("validate", "transform"):
        assert tasks[task]["inputs"]["parameters"]["beam_args"] == {"componentInputParameter": "beam_args"}, task
    assert main(["compile", training, "-o", str(tmp_path / "set.yaml"), "-p", f"beam_args={args!r}".replace("'", '"')]) in (0, None)
    _, tasks = _tasks(tmp_path / "set.yaml")
    for task in ("validate", "transform"):
        assert tasks[task]["inputs"]["parameters"]["beam_args"]["runtimeValue"]["constant"] == args, task


def test_beam_arg_flags_are_the_beam_args_parameter_for_run_and_compile(tmp_path, capsys):
    from flywheel.cli.main import main

    training = os.path.join(REPO, "pipelines", "training.py")
    args = ["--runner=FlinkRunner", "--flink_master=host:8081", "--flywheel_test_option=xyz"]
    flags = [word for option in args for word in ("--beam-arg", option)]  # as a user types them: no '='
    assert main(["run", training, *flags, "--list-params"]) == 0
    listed = [line.split() for line in capsys.readouterr().out.splitlines() if "beam_args" in line]
    assert {row[0] for row in listed} >= {"beam_args", "validate", "transform"}
    assert all(row[-3:] == ['["--runner=FlinkRunner",', '"--flink_master=host:8081",', '"--flywheel_test_option=xyz"]']
               for row in listed), listed

    # Compiled: both Beam tasks get the options as their constant, in the order given.
    assert main(["compile", training, "-o", str(tmp_path / "flags.yaml"), *flags[:2], f"--beam-arg={args[1]}",
                 *flags[4:]]) == 0
    _, tasks = _tasks(tmp_path / "flags.yaml")
    for task in ("validate", "transform"):
        assert tasks[task]["inputs"]["parameters"]["beam_args"]["runtimeValue"]["constant"] == args, task

    # Given both ways: refused, naming both and the fix; nothing is written.
    assert main(["compile", training, "-o", str(tmp_path / "both.yaml"), *flags[:2], "-p", 'beam_args=["--a=b"]']) == 1
    err = capsys.readouterr().err
    assert "--beam-arg" in err and "-p beam_args" in err and "one way" in err
    assert not (tmp_path / "both.yaml").exists()


USER_PIPELINE = """
from flywheel import pipeline
from flywheel.components.ingest import ingest
from flywheel.components.transform import transform
from flywheel.components.validate import validate


@pipeline(name="mine")
def mine(data_path: str = "rows.csv") -> None:
    rows = ingest(path=data_path, label="y")
    checked = validate(examples=rows.outputs["examples"])
    transform(examples=rows.outputs["examples"], schema=checked.outputs["schema"], label="y")


@pipeline(name="no_beam")
def no_beam(data_path: str = "rows.csv") -> None:
    ingest(path=data_path, label="y")
"""


def test_beam_arg_flags_reach_every_beam_task_of_a_users_pipeline_without_a_beam_args_parameter(tmp_path, capsys):
    from flywheel.cli.main import main

    source = tmp_path / "mine.py"
    source.write_text(USER_PIPELINE)
    args = ["--runner=FlinkRunner", "--flink_master=host:8081"]
    flags = [word for option in args for word in ("--beam-arg", option)]
    # -p beam_args is ambiguous here (two tasks have it); --beam-arg means every task that runs Beam.
    assert main(["compile", str(source), "--pipeline", "mine", "-o", str(tmp_path / "mine.yaml"), *flags]) == 0
    _, tasks = _tasks(tmp_path / "mine.yaml")
    for task in ("validate", "transform"):
        assert tasks[task]["inputs"]["parameters"]["beam_args"]["runtimeValue"]["constant"] == args, task
    assert "beam_args" not in tasks["ingest"]["inputs"]["parameters"]

    assert main(["run", str(source), "--pipeline", "mine", *flags, "-p", 'validate.beam_args=["--a=b"]']) == 1
    assert "given twice" in capsys.readouterr().err
    assert main(["run", str(source), "--pipeline", "no_beam", *flags]) == 1
    err = capsys.readouterr().err
    assert "no task of pipeline 'no_beam' runs Beam" in err and "drop --beam-arg" in err


def test_join_beam_args_joins_only_beam_arg_values_before_a_double_dash():
    from flywheel.cli.common import join_beam_args

    assert join_beam_args(["run", "f.py", "--beam-arg", "--runner=X", "-p", "a=1", "--beam-arg=--y=2"]) == [
        "run", "f.py", "--beam-arg=--runner=X", "-p", "a=1", "--beam-arg=--y=2"
    ]
    assert join_beam_args(["run", "--", "--beam-arg", "--x"]) == ["run", "--", "--beam-arg", "--x"]
    assert join_beam_args(["run", "--beam-arg"]) == ["run", "--beam-arg"]  # argparse says what is missing


def test_a_string_feature_with_more_distinct_values_than_the_summary_keeps_its_heavy_hitters(monkeypatch):
    from flywheel.components import transform as transform_module

    monkeypatch.setattr(transform_module, "STREAM_DISTINCT", 50)
    rng = np.random.default_rng(5)
    rows = 6000
    # 3 values hold 30% of the rows between them; the rest are ids seen once (5,400 distinct).
    heavy = rng.choice(["A", "B", "C"], rows, p=[0.5, 0.3, 0.2])
    ids = np.array([f"id-{i}" for i in range(rows)], dtype=object)
    frame = pd.DataFrame({"trip": np.where(rng.random(rows) < 0.3, heavy, ids), "x": rng.normal(size=rows),
                          "label": rng.choice(["p", "q"], rows)})
    kinds = {"trip": "categorical", "x": "numeric"}
    batches = (frame.iloc[start:start + 500] for start in range(0, rows, 500))
    spec = fit_spec(batches, kinds, "label", max_vocabulary=3)
    exact = fit_spec(frame, kinds, "label", max_vocabulary=3)
    info = spec["features"]["trip"]
    assert exact["features"]["trip"]["vocabulary"] == ["A", "B", "C"] == info["vocabulary"]
    assert "vocabulary_count_error" not in exact["features"]["trip"]  # one frame: exact
    assert 0 < info["vocabulary_count_error"] <= rows / (50 + 1)  # the Misra-Gries bound, stated
    assert info["missing_in_train"] == 0 and spec["fitted_on"]["rows"] == rows
    assert spec["features"]["x"]["mean"] == pytest.approx(exact["features"]["x"]["mean"], rel=REL)
