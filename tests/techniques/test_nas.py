"""Architecture search: the Pareto front, counting, building, budgets and seeds."""

from __future__ import annotations

import time

import numpy as np
import pytest

from flywheel.errors import FlywheelError, ParameterError
from flywheel.models import architectures
from flywheel.techniques import nas

TINY_SPACE = {
    "kinds": ["cnn", "mlp"], "stages": [1, 2], "layers_per_stage": [1, 2], "widths": [2, 4],
    "kernel_sizes": [3], "skip": [False, True], "dense_units": [0, 8], "mlp_layers": [1, 2], "mlp_units": [8, 16],
}


@pytest.fixture(scope="module")
def blobs():
    """Two learnable classes of 8x8 one-channel images (bright top half vs bright bottom half)."""
    rng = np.random.default_rng(0)
    x = rng.random((80, 8, 8, 1)).astype("float32") * 0.5
    y = np.tile([0, 1], 40)
    x[y == 0, :4] += 1.0
    x[y == 1, 4:] += 1.0
    return x[:60], y[:60], x[60:], y[60:]


def test_pareto_front_on_hand_made_points():
    # (accuracy max, params min)
    points = [(0.90, 100), (0.95, 1000), (0.85, 50), (0.80, 200), (0.95, 2000), (0.90, 100), (0.97, 5000)]
    assert nas.pareto_front(points, ("max", "min")) == [0, 1, 2, 5, 6]
    # A single objective keeps only the best values (ties all kept).
    assert nas.pareto_front([(1,), (3,), (3,), (2,)], ("max",)) == [1, 2]
    # Three objectives: point 1 is worse than 0 in two, better in latency, so it stays.
    assert nas.pareto_front([(0.9, 10, 5.0), (0.8, 20, 1.0), (0.8, 20, 6.0)], ("max", "min", "min")) == [0, 1]
    assert nas.pareto_front([], ("max", "min")) == []
    with pytest.raises(FlywheelError, match="'max' or 'min'"):
        nas.pareto_front([(1, 2)], ("max", "least"))
    with pytest.raises(FlywheelError, match="2 objective values per point"):
        nas.pareto_front([(1, 2, 3)], ("max", "min"))


@pytest.mark.parametrize(
    "arch",
    [
        {"kind": "cnn", "stages": [[8, 8], [16]], "kernel_size": 3, "skip": True, "dense_units": [32]},
        {"kind": "cnn", "stages": [[4], [8, 8]], "kernel_size": 5, "skip": False, "dense_units": [], "resolution": 12},
        {"kind": "mlp", "units": [32, 32, 16], "skip": True},
        {"kind": "mlp", "units": [16], "skip": False, "resolution": 6},
    ],
    ids=["cnn-skip-head", "cnn-k5-resized", "mlp-skip", "mlp-resized"],
)
def test_analytic_params_match_keras_and_flops_match_hand_count(arch):
    net = architectures.build_network(arch, (8, 8, 1), 10)
    params, flops = architectures.architecture_cost(arch, (8, 8, 1), 10)
    assert params == net.count_params()
    plan = architectures.layer_plan(arch, (8, 8, 1), 10)
    assert sum(1 for layer in plan if layer.get("skip")) == sum(1 for lay in net.layers if lay.__class__.__name__ == "Add")
    if arch["kind"] == "cnn" and arch["kernel_size"] == 3:
        # conv 1->8 at 8x8, conv 8->8 at 8x8, pool, conv 8->16 at 4x4, pool, flatten 2*2*16=64, dense 64->32, 32->10
        hand = 2 * (64 * 9 * 1 * 8 + 64 * 9 * 8 * 8 + 16 * 9 * 8 * 16 + 64 * 32 + 32 * 10)
        assert flops == hand
    assert net.output_shape == (None, 10) and net.input_shape == (None, 8, 8, 1)


def test_skip_connections_add_only_where_shapes_match():
    plan = architectures.layer_plan({"kind": "cnn", "stages": [[4, 4, 8], [8]], "kernel_size": 3, "skip": True}, (8, 8, 1), 3)
    convs = [layer for layer in plan if layer["op"] == "conv"]
    assert [c["skip"] for c in convs] == [False, True, False, False]  # the pooled stage's first layer never skips


def test_samples_and_mutations_stay_in_the_space():
    space = architectures.check_space(TINY_SPACE)
    rng = np.random.default_rng(3)
    for _ in range(50):
        arch = architectures.sample_architecture(space, rng)
        child = architectures.mutate_architecture(arch, space, rng)
        assert child != arch
        if {**child, "skip": arch["skip"]} == arch:  # only the skip flag changed: it must change the network
            assert len(architectures.layer_plan(child, (8, 8, 1), 3)) == len(architectures.layer_plan(arch, (8, 8, 1), 3))
            assert architectures.layer_plan(child, (8, 8, 1), 3) != architectures.layer_plan(arch, (8, 8, 1), 3)
        for a in (arch, child):
            if a["kind"] == "cnn":
                assert len(a["stages"]) in space["stages"]
                assert all(len(s) in space["layers_per_stage"] and set(s) <= set(space["widths"]) for s in a["stages"])
                assert a["kernel_size"] in space["kernel_sizes"] and (a["dense_units"] or [0])[0] in space["dense_units"]
            else:
                assert len(a["units"]) in space["mlp_layers"] and set(a["units"]) <= set(space["mlp_units"])


def test_search_space_is_checked_with_the_uniform_message(blobs):
    with pytest.raises(ParameterError, match=r"The 'search_space' parameter of ArchitectureSearch must only use the keys"):
        nas.ArchitectureSearch(search_space={"depth": [1]}).fit(*blobs)
    with pytest.raises(ParameterError, match=r"valid 'kernel_sizes' choices.*Got \[2\] instead"):
        nas.ArchitectureSearch(search_space={"kernel_sizes": [2]}).fit(*blobs)


def test_search_respects_its_trial_budget_and_returns_the_best_it_reports(blobs):
    search = nas.ArchitectureSearch(
        search_space=TINY_SPACE, strategy="evolution", n_trials=5, population_size=3, sample_size=2,
        epochs=2, random_state=0,
    ).fit(*blobs)
    trials = search.trials_
    assert len(trials) == 5 and search.stopped_by_ == "trials"
    assert [t["origin"] for t in trials[:3]] == ["random"] * 3
    assert all(t["origin"].startswith("mutation of ") for t in trials[3:])
    scores = [t["score"] for t in trials]
    assert search.best_index_ == int(np.argmax(scores)) and search.best_score_ == max(scores)
    assert search.best_architecture_ == trials[search.best_index_]["architecture"]
    for t in trials:
        assert t["score"] == pytest.approx(t["val_accuracy"] - 0.01 * np.log10(t["params"]))
        assert t["params"] == architectures.architecture_cost(t["architecture"], (8, 8, 1), 2)[0] and t["latency_ms"] > 0
    assert max(t["val_accuracy"] for t in trials) >= 0.9  # the task is learnable: the search found a model that learnt it
    front = search.pareto_params_
    assert front and search.best_index_ in nas.pareto_front([(t["val_accuracy"], t["params"]) for t in trials], ("max", "min"))
    assert front == nas.pareto_front([(t["val_accuracy"], t["params"]) for t in trials], ("max", "min"))


def test_search_stops_at_its_time_budget(blobs):
    budget = 2.0
    started = time.perf_counter()
    lines = []
    search = nas.ArchitectureSearch(
        search_space=TINY_SPACE, strategy="random", n_trials=500, time_budget_s=budget, epochs=200, random_state=0
    ).fit(*blobs, progress=lines.append)
    elapsed = time.perf_counter() - started
    assert search.stopped_by_ == "time" and 1 <= len(search.trials_) < 500
    assert len(lines) == len(search.trials_) and lines[0].startswith("trial 1/500 (random): ")
    # A running trial stops after the batch that passes the deadline; only its scoring follows.
    assert search.trials_[-1]["epochs_run"] < 200
    assert elapsed < budget + 30.0  # stopped at its budget: 500 trials of 200 epochs would take many minutes


def test_same_seed_same_candidates_other_seed_other_candidates(blobs):
    def names(seed: int) -> list[str]:
        search = nas.ArchitectureSearch(
            search_space=TINY_SPACE, strategy="random", n_trials=2, epochs=1, random_state=seed
        ).fit(*blobs)
        return [t["name"] for t in search.trials_]

    first = names(0)
    assert first == names(0)
    assert first != names(1)


def test_max_params_is_a_hard_constraint(blobs):
    search = nas.ArchitectureSearch(
        search_space=TINY_SPACE, strategy="random", n_trials=4, epochs=1, max_params=300, random_state=0
    ).fit(*blobs)
    assert all(t["params"] <= 300 for t in search.trials_) and search.rejected_ > 0
    with pytest.raises(FlywheelError, match="above max_params=5"):
        nas.ArchitectureSearch(search_space=TINY_SPACE, n_trials=1, epochs=1, max_params=5).fit(*blobs)
