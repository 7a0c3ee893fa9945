"""Parameter rules declared once, in a component's signature (``Annotated[float, Interval(...)]``),
and checked wherever a value arrives: a constant when the pipeline is built, a pipeline default,
a run's or compile's ``-p`` value, and a value given at run time (Kubeflow)."""

from __future__ import annotations

import subprocess
from typing import Annotated

import pytest

from flywheel import Dataset, Output, component, pipeline
from flywheel.dsl.artifacts import Artifact
from flywheel.dsl.constraints import Interval, Options, positive_int_list
from flywheel.errors import ComponentDefinitionError, ParameterError
from flywheel.component_call import call_component


@component
def fit(
    out: Output[Dataset],
    rate: Annotated[float, Interval(float, 0, 1, closed="neither")] = 0.1,
    mode: Annotated[str, Options({"fast", "slow"})] = "fast",
    units: Annotated[list, positive_int_list] = [4],  # noqa: B006 - never mutated
    seed: int = 0,
) -> None:
    with open(out.path("x.txt"), "w", encoding="utf-8") as handle:
        handle.write(f"{rate} {mode} {units}")


def test_the_rules_are_part_of_the_interface():
    assert fit.parameters["rate"].type is float and fit.parameters["rate"].rules == (Interval(float, 0, 1, closed="neither"),)
    assert fit.parameters["seed"].rules == ()


def test_a_constant_that_breaks_a_rule_fails_when_the_pipeline_is_built():
    with pytest.raises(ParameterError, match=r"In pipeline 'p', component 'fit': The 'rate' parameter of fit must be a float in \(0, 1\)\. Got 1\.5 instead\."):
        @pipeline(name="p")
        def p():
            fit(rate=1.5)
    with pytest.raises(ParameterError, match=r"The 'mode' parameter of fit must be one of 'fast', 'slow'\. Got 'medium'"):
        @pipeline(name="p")
        def q():
            fit(mode="medium")
    with pytest.raises(ParameterError, match=r"The 'units' parameter of fit must be a list of positive ints"):
        @pipeline(name="p")
        def r():
            fit(units=[4, 0])


def test_a_pipeline_default_that_breaks_a_task_rule_fails_when_built():
    with pytest.raises(ParameterError, match=r"Pipeline 'p', parameter 'lr' \(task 'fit'\): The 'rate' parameter of fit must be"):
        @pipeline(name="p")
        def p(lr: float = 0.0):
            fit(rate=lr)


def test_run_and_compile_values_are_checked_before_anything_runs():
    @pipeline(name="p")
    def p(lr: float = 0.5):
        fit(rate=lr)

    assert p.resolve_parameters({"lr": "0.25"})["lr"] == 0.25
    with pytest.raises(ParameterError, match=r"Pipeline 'p', parameter 'lr' \(task 'fit'\): The 'rate' parameter of fit must be a float in \(0, 1\)\. Got 2\.0"):
        p.resolve_parameters({"lr": "2"})
    with pytest.raises(ParameterError, match="Got 0.0 instead"):
        p.bind({"lr": 0.0})


def test_a_value_given_at_run_time_is_checked_when_the_component_runs(tmp_path):
    out = Dataset(uri=str(tmp_path / "out"))
    with pytest.raises(ParameterError, match="The 'rate' parameter of fit must be"):
        call_component(fit, {}, {"out": out}, {"rate": -1.0})
    assert not (tmp_path / "out" / "x.txt").exists()
    call_component(fit, {}, {"out": out}, {"rate": 0.5})
    assert (tmp_path / "out" / "x.txt").read_text() == "0.5 fast [4]"


def test_a_plain_call_checks_them_too(tmp_path):
    with pytest.raises(ParameterError, match="The 'mode' parameter of fit must be one of"):
        fit(out=Artifact(uri=str(tmp_path)), mode="turbo")


def test_a_default_that_breaks_its_own_rule_is_a_definition_error():
    with pytest.raises(ComponentDefinitionError, match=r"breaks its own rule: The 'rate' parameter of bad must be a float in \(0, 1\)"):
        @component
        def bad(out: Output[Dataset], rate: Annotated[float, Interval(float, 0, 1, closed="neither")] = 0.0) -> None:
            pass


def test_flywheel_compile_refuses_a_bad_value_for_the_shipped_train(tmp_path, flywheel_cmd):
    target = tmp_path / "training.yaml"
    result = subprocess.run(
        [*flywheel_cmd, "compile", "pipelines/training.py", "-o", str(target), "-p", "epochs=0"],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode != 0
    assert "The 'epochs' parameter of train must be an int in [1, inf). Got 0 instead." in result.stderr
    assert not target.exists()


def test_loop_items_meet_the_rules_at_build_for_literals_and_at_run_for_parameters(home):
    from flywheel import ParallelFor
    from flywheel.runner import LocalRunner

    with pytest.raises(ParameterError, match=r"takes the value 0\.0: The 'rate' parameter of fit must be a float in \(0, 1\)"):
        @pipeline(name="sweep")
        def literal():
            with ParallelFor([0.5, 0.0]) as rate:
                fit(rate=rate)

    @pipeline(name="sweep")
    def sweep(rates: list = [0.5]):  # noqa: B006
        with ParallelFor(rates) as rate:
            fit(rate=rate)

    result = LocalRunner(home, max_workers=0).run(sweep, {"rates": "[0.5, 3.0]"})
    assert not result.ok
    assert "item 1 of ParallelFor over pipeline parameter 'rates' for parameter 'rate' of 'fit': The 'rate' parameter of fit must be" \
        in result.errors["fit"]


def test_the_shipped_evaluate_declares_its_metric_rules(tmp_path, flywheel_cmd):
    from flywheel.components.evaluate import evaluate
    from flywheel.components.infra_validate import infra_validate

    with pytest.raises(ParameterError, match=r"The 'compare_metrics' parameter of evaluate must be a list of metric names from \['accuracy'"):
        evaluate.check_parameters({"compare_metrics": ["accuracy", "auc"]})
    with pytest.raises(ParameterError, match=r"The 'max_latency_ms' parameter of infra_validate must be a float in \(0, inf\)"):
        infra_validate.check_parameters({"max_latency_ms": 0})
    result = subprocess.run(
        [*flywheel_cmd, "compile", "pipelines/training.py", "-o", str(tmp_path / "t.yaml"), "-p", 'thresholds={"acc": 0.5}'],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode != 0
    assert "The 'thresholds' parameter of evaluate must be a dict of metric name -> minimum number" in result.stderr
