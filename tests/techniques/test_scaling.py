"""Compound scaling: the constraint grid, the scaling rules, counting, and the fitted coefficients."""

from __future__ import annotations

import math

import numpy as np
import pytest

from flywheel.errors import FlywheelError
from flywheel.models import architectures
from flywheel.techniques import scaling


@pytest.fixture(scope="module")
def blobs():
    rng = np.random.default_rng(1)
    x = rng.random((60, 8, 8, 1)).astype("float32") * 0.5
    y = np.tile([0, 1, 2], 20)
    for c in range(3):
        x[y == c, :, 2 * c:2 * c + 3] += 1.0  # a bright column band per class
    return x[:45], y[:45], x[45:], y[45:]


def test_constraint_grid_holds_exactly_the_combinations_within_tolerance():
    grid = scaling.constraint_grid([1.0, 1.2, 1.4, 2.0], target=2.0, tolerance=0.1)
    assert set(grid) == {(2.0, 1.0, 1.0), (1.0, 1.4, 1.0), (1.0, 1.0, 1.4), (1.4, 1.2, 1.0), (1.4, 1.0, 1.2), (1.0, 1.2, 1.2)}
    for alpha, beta, gamma in scaling.constraint_grid(scaling.GRID_VALUES):
        assert min(alpha, beta, gamma) >= 1.0 and abs(alpha * beta**2 * gamma**2 - 2.0) <= 0.1 + 1e-12
    with pytest.raises(FlywheelError, match="must be >= 1"):
        scaling.constraint_grid([0.5, 1.0])
    with pytest.raises(FlywheelError, match="within 0.01 of 2"):
        scaling.constraint_grid([1.0, 1.3], tolerance=0.01)


def test_scaling_rules_for_depth_width_and_resolution():
    base = {"kind": "cnn", "stages": [[8, 8], [16]], "kernel_size": 3, "skip": False, "dense_units": [10]}
    same = scaling.scale_architecture(base, 8, depth=1.0, width=1.0, resolution=1.0)
    assert same == {**base, "resolution": 8}
    deeper = scaling.scale_architecture(base, 8, depth=1.2, width=1.0, resolution=1.0)
    assert deeper["stages"] == [[8, 8, 8], [16, 16]]  # ceil(1.2 * 2) = 3, ceil(1.2 * 1) = 2
    wider = scaling.scale_architecture(base, 8, depth=1.0, width=1.5, resolution=1.0)
    assert wider["stages"] == [[12, 12], [24]] and wider["dense_units"] == [15]
    sharper = scaling.scale_architecture(base, 8, depth=1.0, width=1.0, resolution=1.4)
    assert sharper["resolution"] == 11 and architectures.layer_plan(sharper, (8, 8, 1), 10)[0] == {"op": "resize", "height": 11, "width": 11}
    assert scaling.method_multipliers("depth", 2, (1.2, 1.1, 1.15)) == (4.0, 1.0, 1.0)
    assert scaling.method_multipliers("width", 2, (1.2, 1.1, 1.15))[1] == pytest.approx(2.0)
    assert scaling.method_multipliers("compound", 2, (1.2, 1.1, 1.15)) == pytest.approx((1.44, 1.21, 1.3225))
    with pytest.raises(FlywheelError, match="must be >= 1"):
        scaling.scale_architecture(base, 8, depth=0.5, width=1.0, resolution=1.0)


@pytest.mark.parametrize("method", scaling.METHODS)
def test_scaled_networks_count_like_keras_and_grow_flops_about_2_to_the_phi(method):
    base = {"kind": "cnn", "stages": [[16, 16], [32, 32]], "kernel_size": 3, "skip": False, "dense_units": []}
    base_flops = architectures.architecture_cost({**base, "resolution": 16}, (16, 16, 1), 10)[1]
    d, w, r = scaling.method_multipliers(method, 1, (1.4, 1.0, 1.2))
    arch = scaling.scale_architecture(base, 16, depth=d, width=w, resolution=r)
    params, flops = architectures.architecture_cost(arch, (16, 16, 1), 10)
    assert params == architectures.build_network(arch, (16, 16, 1), 10).count_params()
    # Conv FLOPs scale as d * w^2 * r^2 = 2 up to rounding of layers, filters and pixels (and the first layer's 1 input channel).
    assert 1.5 <= flops / base_flops <= 2.6


def test_fit_picks_the_best_grid_point_and_the_constraint_holds(blobs):
    search = scaling.CompoundScaling(
        base={"kind": "cnn", "stages": [[4], [8]], "kernel_size": 3, "skip": False, "dense_units": []},
        grid_values=[1.0, 1.4, 2.0], epochs=2, random_state=0,
    ).fit(*blobs, progress=(lines := []).append)
    assert len(search.grid_) == 3
    assert [line.split(":")[0] for line in lines] == ["grid point 1/3", "grid point 2/3", "grid point 3/3"]
    best = search.grid_[search.best_index_]
    assert best["val_accuracy"] == max(g["val_accuracy"] for g in search.grid_)
    assert (search.alpha_, search.beta_, search.gamma_) == (best["alpha"], best["beta"], best["gamma"])
    assert abs(search.alpha_ * search.beta_**2 * search.gamma_**2 - 2.0) <= 0.1
    assert min(search.alpha_, search.beta_, search.gamma_) >= 1.0
    two = search.scaled(2)
    expected = scaling.scale_architecture(search.base, 8, depth=search.alpha_**2, width=search.beta_**2, resolution=search.gamma_**2)
    assert two == expected and two["resolution"] == round(8 * search.gamma_**2)
    with pytest.raises(FlywheelError, match="call fit first"):
        scaling.CompoundScaling().scaled(1)


def test_compare_scaling_trains_every_method_at_every_phi(blobs):
    base = {"kind": "cnn", "stages": [[4]], "kernel_size": 3, "skip": False, "dense_units": []}
    lines = []
    rows = scaling.compare_scaling(base, (1.4, 1.0, 1.2), [1], blobs, eval_data=blobs[2:], epochs=1, seed=0,
                                   progress=lines.append)
    assert len(lines) == len(rows) and lines[0].startswith("phi 0 baseline: ")
    assert [(r["phi"], r["method"]) for r in rows] == [(0.0, "baseline")] + [(1.0, m) for m in scaling.METHODS]
    by = {r["method"]: r for r in rows}
    assert by["baseline"]["flops_ratio"] == 1.0
    assert by["depth"]["layers"] == 2 and by["resolution"]["resolution"] == 11 and by["width"]["widths"] == [6]
    assert by["compound"]["d"] == 1.4 and by["compound"]["r"] == 1.2
    assert all(0.0 <= r["val_accuracy"] <= 1.0 and "eval_accuracy" in r for r in rows)
    assert all(math.isclose(r["flops_ratio"], r["flops"] / by["baseline"]["flops"], rel_tol=1e-3) for r in rows)
