"""Definition errors: every bad component or pipeline fails when built, with a message
that names the component, the input, what was expected and what was given."""

from __future__ import annotations

import pytest

from flywheel import (
    Dataset,
    Examples,
    ExampleStatistics,
    Input,
    Model,
    Output,
    Schema,
    component,
    latest,
    pipeline,
)
from flywheel.errors import ComponentDefinitionError, ParameterError, PipelineDefinitionError


@component
def make_examples(examples: Output[Examples], rows: int = 10) -> None:
    """Toy producer."""


@component
def stats(examples: Input[Examples], statistics: Output[ExampleStatistics], min_rows: int = 1) -> None:
    """Toy consumer."""


@component
def trainer(examples: Input[Examples], model: Output[Model], baseline: Input[Model] = None) -> None:
    """Toy trainer with an optional input."""


def _unknown_input():
    @pipeline
    def p():
        ex = make_examples()
        stats(exampels=ex.outputs["examples"])


def _type_mismatch():
    @pipeline
    def p():
        ex = make_examples()
        st = stats(examples=ex.outputs["examples"])
        trainer(examples=st.outputs["statistics"])


def _missing_input():
    @pipeline
    def p():
        make_examples()
        stats()


def _artifact_to_parameter():
    @pipeline
    def p():
        ex = make_examples()
        stats(examples=ex.outputs["examples"], min_rows=ex.outputs["examples"])


def _bad_constant():
    @pipeline
    def p():
        make_examples(rows="ten")


def _positional():
    @pipeline
    def p():
        ex = make_examples()
        stats(ex.outputs["examples"])


def _cycle():
    @pipeline
    def p():
        a = make_examples()
        b = stats(examples=a.outputs["examples"])
        a.after(b)


def _latest_to_required():
    @pipeline
    def p():
        stats(examples=latest(Examples, task="make_examples", output="examples"))


def _pipeline_param_type():
    @pipeline
    def p(rows: str = "3"):
        make_examples(rows=rows)


def _unannotated_pipeline_param():
    @pipeline
    def p(rows=3):
        make_examples(rows=rows)


WIRING_CASES = [
    (_unknown_input, ["component 'stats'", "no input or parameter 'exampels'", "examples (Examples)"]),
    (_type_mismatch, ["component 'trainer'", "input 'examples'", "expects Examples", "got ExampleStatistics", "task 'stats'"]),
    (_missing_input, ["component 'stats'", "missing its required input 'examples'", "Examples"]),
    (_artifact_to_parameter, ["parameter 'min_rows'", "expects int", "Examples"]),
    (_bad_constant, ["parameter 'rows'", "expects int", "'ten'"]),
    (_positional, ["component 'stats'", "positional"]),
    (_cycle, ["cycle", "make_examples", "stats"]),
    (_latest_to_required, ["input 'examples'", "latest(...)", "optional"]),
    (_pipeline_param_type, ["parameter 'rows'", "expects int", "pipeline parameter 'rows' of type str"]),
    (_unannotated_pipeline_param, ["Parameter 'rows'", "annotation"]),
]


@pytest.mark.parametrize("build, fragments", WIRING_CASES, ids=[c[0].__name__.strip("_") for c in WIRING_CASES])
def test_bad_wiring_fails_at_build_with_a_precise_message(build, fragments):
    with pytest.raises(PipelineDefinitionError) as info:
        build()
    for fragment in fragments:
        assert fragment in str(info.value)


COMPONENT_CASES = [
    ("def f(x, out: Output[Dataset]) -> None: ...", ["'x'", "no type annotation"]),
    ("def f(x: object, out: Output[Dataset]) -> None: ...", ["'x'", "neither an artifact"]),
    ("def f(out: Output[Dataset]) -> int: ...", ["returns"]),
    ("def f(x: Input[Dataset] = 3) -> None: ...", ["'x'", "may only default to None"]),
    ("def f(n: int = 'a') -> None: ...", ["'n'", "is a int", "'a'"]),
    ("def f(*args: int) -> None: ...", ["*args"]),
]


@pytest.mark.parametrize("source, fragments", COMPONENT_CASES)
def test_bad_component_fails_at_definition(source, fragments):
    namespace = {"Input": Input, "Output": Output, "Dataset": Dataset}
    exec(source, namespace)  # noqa: S102 - builds a throwaway function for the table
    with pytest.raises(ComponentDefinitionError) as info:
        component(namespace["f"])
    for fragment in fragments:
        assert fragment in str(info.value)


def test_output_type_must_be_an_artifact_or_an_output_parameter_type():
    with pytest.raises(ComponentDefinitionError, match="takes an artifact type.*or for an output parameter bool, int"):
        Output[dict]
    with pytest.raises(ComponentDefinitionError, match="takes an artifact type"):
        Input[int]  # output parameters are tested by If(...), never inputs


def test_good_pipeline_has_interface_order_and_parameters():
    @pipeline(name="good")
    def good(rows: int = 5, flag: bool = False):
        ex = make_examples(rows=rows)
        st = stats(examples=ex.outputs["examples"])
        tr = trainer(examples=ex.outputs["examples"], baseline=latest(Model, task="trainer", output="model"))
        tr.after(st)

    assert good.name == "good"
    assert good.topological_order() == ["make_examples", "stats", "trainer"]
    assert good.tasks["trainer"].upstream == ["make_examples", "stats"]
    assert good.resolve_parameters({"rows": "7", "flag": "yes"}) == {"rows": 7, "flag": True}
    assert good.task_parameters("make_examples", {"rows": 7, "flag": True}) == {"rows": 7}
    assert good.downstream_of({"stats"}) == {"stats", "trainer"}


@pytest.mark.parametrize(
    "overrides, fragment",
    [({"rows": "x"}, "is an int; got 'x'"), ({"nope": "1"}, "has no parameter 'nope'"), ({"flag": "maybe"}, "true or false")],
)
def test_bad_parameter_values_name_the_parameter(overrides, fragment):
    @pipeline(name="params")
    def params(rows: int = 5, flag: bool = False):
        make_examples(rows=rows)

    with pytest.raises(ParameterError) as info:
        params.resolve_parameters(overrides)
    assert fragment in str(info.value)


def test_component_called_outside_a_pipeline_runs_the_function(tmp_path):
    calls = []

    @component
    def record(schema: Output[Schema], value: int = 1) -> None:
        calls.append(value)
        schema.properties["value"] = value

    out = Schema(uri=str(tmp_path))
    record(schema=out, value=4)
    assert calls == [4]
    assert out.properties == {"value": 4}
