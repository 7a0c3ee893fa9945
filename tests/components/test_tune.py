"""tune: four strategies within their budgets, the best trial it reports, seeds, search spaces, into train."""

from __future__ import annotations

import json
import math
import os
import time

import pytest

try:
    from tests.components.model_fixtures import penguin_examples, run
except ImportError:  # tests/ is not a package: pytest put this directory on sys.path
    from model_fixtures import penguin_examples, run

from flywheel.components.tune import search as tune_search
from flywheel.components.tune import space as tune_space
from flywheel.components.train import train
from flywheel.components.transform import transform
from flywheel.components.tune import tune
from flywheel.dsl.artifacts import HyperParameters, Model, TransformGraph
from flywheel.errors import ParameterError
from flywheel.pipeline_file import load_pipeline
from flywheel.runner import LocalRunner
from tests.conftest import REPO

SPACE = {
    "learning_rate": {"type": "float", "min": 1e-3, "max": 1e-1, "log": True},
    "hidden_units": {"type": "choice", "values": [[8], [16, 8]]},
    "dropout": {"type": "float", "min": 0.0, "max": 0.3},
}


@pytest.fixture(scope="module")
def penguins(tmp_path_factory):
    """Penguins Examples and their transform graph, built once (TensorFlow is the slow part)."""
    root = tmp_path_factory.mktemp("tune")
    examples = penguin_examples(str(root / "ex"))
    graph = run(transform, {"examples": examples}, {"transform_graph": TransformGraph(uri=str(root / "tg"))})
    return examples, graph["transform_graph"]


def _tune(penguins, uri, **params):
    examples, graph = penguins
    params = {"search_space": SPACE, "max_trials": 3, "epochs": 2, **params}
    out = run(tune, {"examples": examples, "transform_graph": graph}, {"hyperparameters": HyperParameters(uri=str(uri))},
              **params)
    artifact = out["hyperparameters"]
    with open(artifact.path("trials.json"), encoding="utf-8") as handle:
        trials = json.load(handle)["trials"]
    with open(artifact.path("best_hyperparameters.json"), encoding="utf-8") as handle:
        best = json.load(handle)
    return artifact, trials, best


@pytest.mark.parametrize("strategy", ["random", "grid", "bayesian", "hyperband"])
def test_each_strategy_stays_in_budget_and_returns_the_best_trial_it_reports(penguins, tmp_path, strategy):
    artifact, trials, best = _tune(penguins, tmp_path / strategy, strategy=strategy, initial_points=2)
    props = artifact.properties
    # The budget of 3 is spent exactly; Hyperband's schedule for 2 epochs (factor 3) ends after 2 trials.
    expected = 2 if strategy == "hyperband" else 3
    assert len(trials) == expected and props["trials_run"] == expected
    done = [t for t in trials if t["status"] == "COMPLETED"]
    winner = max(done, key=lambda t: t["score"])
    assert best == winner["hyperparameters"] == props["best_hyperparameters"]
    assert props["best_score"] == winner["score"] and props["best_trial_id"] == winner["trial_id"]
    assert all(0.0 <= t["score"] <= 1.0 and t["seconds"] > 0 for t in done)
    assert [t["trial_id"] for t in props["trials"]] == [t["trial_id"] for t in trials]  # every trial in MLMD
    for t in trials:
        assert set(t["hyperparameters"]) == set(SPACE)
        assert 1e-3 <= t["hyperparameters"]["learning_rate"] <= 1e-1
        assert t["hyperparameters"]["hidden_units"] in ([8], [16, 8])
        assert t["epochs"] <= 2
    assert os.path.getsize(artifact.path("trials.png")) > 1000
    with open(artifact.path("index.html"), encoding="utf-8") as handle:
        report = handle.read()
    assert f"{len(trials)} trials" in report and 'class="best"' in report


def test_grid_walks_the_grid_in_order(penguins, tmp_path):
    _, trials, _ = _tune(penguins, tmp_path / "grid", strategy="grid", max_trials=3, grid_points=2)
    assert [t["hyperparameters"] for t in trials] == [
        {"learning_rate": 1e-3, "hidden_units": [8], "dropout": 0.0},
        {"learning_rate": 1e-3, "hidden_units": [8], "dropout": 0.3},
        {"learning_rate": 1e-3, "hidden_units": [16, 8], "dropout": 0.0},
    ]


def test_hyperband_promotes_trials_to_more_epochs():
    space = {"x": {"type": "float", "min": 0.0, "max": 1.0}, "y": {"type": "float", "min": 0.0, "max": 1.0}}
    trials = tune_search.search(
        lambda v, e: {"val_accuracy": e - (v["x"] - 0.5) ** 2}, space, strategy="hyperband", objective="val_accuracy",
        max_trials=30, max_seconds=0, epochs=9, seed=0, directory=_tmp(),
    )
    epochs = [t["epochs"] for t in trials]
    assert min(epochs) == 1 and max(epochs) == 9
    promoted = [t for t in trials if t["round"] > 0]
    first_round = [t["hyperparameters"] for t in trials if t["round"] == 0]
    assert promoted and all(t["hyperparameters"] in first_round for t in promoted)


def _tmp():
    import tempfile

    return tempfile.mkdtemp(prefix="tune-test-")


def test_time_budget_stops_starting_trials():
    now = [0.0]

    def slow(values, epochs):  # each trial "takes" 0.2 s on the search's clock
        now[0] += 0.2
        return {"val_accuracy": values["x"]}

    space = {"x": {"type": "float", "min": 0.0, "max": 1.0}}
    for strategy in ("random", "bayesian"):
        now[0] = 0.0
        lines = []
        trials = tune_search.search(slow, space, strategy=strategy, objective="val_accuracy", max_trials=50,
                                     max_seconds=0.5, epochs=1, seed=0, directory=_tmp(), initial_points=10,
                                     clock=lambda: now[0], progress=lines.append)
        # trials start at 0.0, 0.2 and 0.4; at 0.6 the budget is spent and no fourth one starts
        assert len(trials) == 3, (strategy, len(trials))
        assert [line.split(":")[0] for line in lines] == [f"trial {i}/50 (id {t['trial_id']})" for i, t in
                                                          enumerate(trials, 1)]
        best = tune_search.best_trial(trials, "val_accuracy")
        assert f"best {best['score']:.4f} (id {best['trial_id']})" in lines[-1]


def test_component_time_budget(penguins, tmp_path):
    artifact, trials, _ = _tune(penguins, tmp_path / "budget", max_trials=40, max_seconds=1.0)
    assert 1 <= len(trials) < 40  # stopped by the 1 s budget, long before 40 trials (each takes longer than that)
    assert sum(t["seconds"] for t in trials[:-1]) < 1.0  # the last trial started before the budget ran out


def test_same_seed_same_trials(penguins, tmp_path):
    _, first, _ = _tune(penguins, tmp_path / "a", strategy="random", seed=3)
    _, again, _ = _tune(penguins, tmp_path / "b", strategy="random", seed=3)
    _, other, _ = _tune(penguins, tmp_path / "c", strategy="random", seed=4)
    assert [t["hyperparameters"] for t in first] == [t["hyperparameters"] for t in again]
    assert [t["score"] for t in first] == pytest.approx([t["score"] for t in again], abs=1e-6)
    assert [t["hyperparameters"] for t in first] != [t["hyperparameters"] for t in other]


@pytest.mark.parametrize("strategy", ["bayesian", "hyperband"])
def test_same_seed_same_trials_for_the_adaptive_oracles(strategy):
    space = {
        "x": {"type": "float", "min": 0.0, "max": 1.0},
        "n": {"type": "int", "min": 1, "max": 64, "log": True},
        "c": {"type": "choice", "values": ["a", [1, 2], 3.5]},
    }

    def objective(values, epochs):
        return {"val_loss": (values["x"] - 0.3) ** 2 + abs(math.log2(values["n"]) - 3) / epochs}

    def once(seed, trials):
        return tune_search.search(objective, space, strategy=strategy, objective="val_loss", max_trials=trials,
                                   max_seconds=0, epochs=9, seed=seed, directory=_tmp(), initial_points=2)

    # Bayesian: trials 3-4 come from the GP (about 2 s each on a shared CPU); seed 1 differs from the start.
    first, again, other = once(0, 4), once(0, 4), once(1, 2)
    strip = lambda trials: [(t["hyperparameters"], t["epochs"], t["score"]) for t in trials]  # noqa: E731
    assert strip(first) == strip(again) and strip(first)[:2] != strip(other)
    assert tune_search.best_trial(first, "val_loss")["score"] == min(t["score"] for t in first)  # minimised


@pytest.mark.parametrize(
    ("space", "fragment"),
    [
        ({}, "non-empty dict"),
        ({"epochs": {"type": "int", "min": 1, "max": 5}}, "may only tune"),
        ({"dropout": {"type": "uniform", "min": 0, "max": 1}}, "'dropout' must be a dict with \"type\" one of"),
        ({"dropout": {"type": "float", "min": 0.5}}, "missing ['max']"),
        ({"dropout": {"type": "float", "min": 0, "max": 0.5, "lg": True}}, "unknown ['lg']"),
        ({"dropout": {"type": "float", "min": 0.5, "max": 0.1}}, "\"min\" < \"max\""),
        ({"learning_rate": {"type": "float", "min": 0, "max": 0.1, "log": True}}, "log-scale range with \"min\" > 0"),
        ({"batch_size": {"type": "int", "min": 16.5, "max": 64}}, "are ints"),
        ({"batch_size": {"type": "int", "min": 16, "max": 64, "step": 0}}, "positive int"),
        ({"hidden_units": {"type": "choice", "values": []}}, "non-empty list"),
        ({"hidden_units": {"type": "choice", "values": [[8], [8]]}}, "distinct"),
    ],
)
def test_bad_search_spaces_get_clear_errors(space, fragment):
    from flywheel.components.tune.objective import TUNABLE

    with pytest.raises(ParameterError) as caught:
        tune_space.check_space(space, allowed=TUNABLE)
    assert fragment in str(caught.value) and "Got" in str(caught.value)


def test_bad_parameters_fail_before_any_trial(penguins, tmp_path):
    with pytest.raises(ParameterError, match="'strategy' parameter of tune must be one of"):
        _tune(penguins, tmp_path / "s", strategy="annealing")
    with pytest.raises(ParameterError, match="'objective' parameter of tune"):
        _tune(penguins, tmp_path / "o", objective="accuracy")
    with pytest.raises(ParameterError, match="'fixed' parameter of tune"):
        _tune(penguins, tmp_path / "f", fixed={"mixup_alpha": 0.2})
    with pytest.raises(ParameterError, match=r"'dropout' parameter of train must be a float in \[0, 1\)"):
        _tune(penguins, tmp_path / "d", search_space={"dropout": {"type": "float", "min": 0.5, "max": 1.5}})


def test_train_takes_tuned_values_and_rejects_unknown_names(penguins, tmp_path):
    examples, graph = penguins
    tuned = HyperParameters(uri=str(tmp_path / "hp"))
    os.makedirs(tuned.uri)
    values = {"hidden_units": [5], "learning_rate": 0.02, "dropout": 0.0}
    with open(tuned.path("best_hyperparameters.json"), "w", encoding="utf-8") as handle:
        json.dump(values, handle)
    model = run(train, {"examples": examples, "transform_graph": graph, "hyperparameters": tuned},
                {"model": Model(uri=str(tmp_path / "model"))}, epochs=2, hidden_units=[64])["model"]
    assert model.properties["tuned_hyperparameters"] == values
    assert model.properties["epochs_run"] == 2
    from flywheel.models import layers as model_layers

    net = model_layers.load_model(model.path("model.keras"))
    assert net.get_layer("hidden_0").units == 5 and "hidden_1" not in [layer.name for layer in net.layers]

    with open(tuned.path("best_hyperparameters.json"), "w", encoding="utf-8") as handle:
        json.dump({"hiden_units": [5]}, handle)
    with pytest.raises(ParameterError, match=r"may only set its parameters \[.*'hidden_units'.*\]. Got unknown name\(s\) \['hiden_units'\]"):
        run(train, {"examples": examples, "transform_graph": graph, "hyperparameters": tuned},
            {"model": Model(uri=str(tmp_path / "model2"))}, epochs=1)


def test_tuning_pipeline_runs_end_to_end_and_train_uses_the_tuned_values(home):
    pipe = load_pipeline(os.path.join(REPO, "pipelines", "tuning.py"))
    result = LocalRunner(home, max_workers=0).run(
        pipe, {"max_trials": 2, "tune.epochs": 2, "train.epochs": 3, "strategy": "random", "thresholds": {}},
    )
    assert result.ok, result.errors
    tuned = result.outputs["tune"]["hyperparameters"]
    model = result.outputs["train"]["model"].properties
    with open(os.path.join(tuned.uri, "best_hyperparameters.json"), encoding="utf-8") as handle:
        best = json.load(handle)
    assert model["tuned_hyperparameters"] == best == tuned.properties["best_hyperparameters"]
    assert model["hyperparameters_uri"] == tuned.uri and tuned.properties["trials_run"] == 2
    assert result.outputs["push"]["pushed_model"].properties["pushed"] is True

    # Viewable: the dashboard's artifact page previews the report and the plot, and lists the trials.
    from flywheel.dashboard.pages_runs import artifact_page
    from flywheel.dashboard.sources import Sources

    page = artifact_page(Sources(home), str(tuned.id))
    previews = {(p["kind"], p["path"]) for p in page["previews"]}
    assert {("html", "index.html"), ("image", "trials.png")} <= previews
    shown = dict(page["properties"])
    assert [t["trial_id"] for t in shown["trials"]] == ["0", "1"] and shown["strategy"] == "random"
    assert [a.uri for a in page["consumers"][0].outputs.values()] == [result.outputs["train"]["model"].uri]


def test_the_model_family_is_tunable_and_train_builds_the_chosen_one(tmp_path):
    from flywheel.components.ingest import ingest
    from flywheel.dsl.artifacts import Examples

    examples = run(ingest, {}, {"examples": Examples(uri=str(tmp_path / "ex"))}, path="sklearn-digits")["examples"]
    graph = run(transform, {"examples": examples}, {"transform_graph": TransformGraph(uri=str(tmp_path / "tg"))})
    inputs = {"examples": examples, "transform_graph": graph["transform_graph"]}
    space = {"architecture": {"type": "choice", "values": ["cnn", "resnet"]}}
    tuned = run(tune, inputs, {"hyperparameters": HyperParameters(uri=str(tmp_path / "hp"))},
                search_space=space, strategy="grid", max_trials=2, epochs=1,
                fixed={"conv_widths": [4, 8], "hidden_units": [8]})["hyperparameters"]
    with open(tuned.path("trials.json"), encoding="utf-8") as handle:
        trials = json.load(handle)["trials"]
    assert sorted(t["hyperparameters"]["architecture"] for t in trials) == ["cnn", "resnet"]
    with open(tuned.path("best_hyperparameters.json"), encoding="utf-8") as handle:
        best = json.load(handle)

    model = run(train, {**inputs, "hyperparameters": tuned}, {"model": Model(uri=str(tmp_path / "m"))},
                epochs=1, conv_widths=[4, 8], hidden_units=[8])["model"]
    assert model.properties["architecture"] == best["architecture"]
