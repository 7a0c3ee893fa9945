"""DSL options for data: a component's ``reads`` and a pipeline's derived parameter defaults."""

from __future__ import annotations

import pytest

from flywheel import Dataset, Output, component, pipeline
from flywheel.errors import ComponentDefinitionError, PipelineDefinitionError


def test_reads_must_name_str_parameters():
    def read(out: Output[Dataset], path: str = "", rows: int = 1) -> None: ...

    assert component(reads=("path",))(read).reads == ("path",)
    with pytest.raises(ComponentDefinitionError, match="names 'rows', which must be a str parameter"):
        component(reads=("rows",))(read)
    with pytest.raises(ComponentDefinitionError, match="its str parameters are: path"):
        component(reads=("nope",))(read)


@component
def make(out: Output[Dataset], name: str = "") -> None:
    out.properties["name"] = name


def test_a_derived_default_fills_an_empty_parameter_from_the_others():
    @pipeline(name="derived", derived_defaults={"model_name": lambda v: v["data_path"].rsplit("/", 1)[-1].split(".")[0]})
    def derived(data_path: str = "data/own.csv", model_name: str = ""):
        make(name=model_name)

    assert derived.resolve_parameters()["model_name"] == "own"
    assert derived.resolve_parameters({"data_path": "x/sales.csv"})["model_name"] == "sales"
    assert derived.resolve_parameters({"model_name": "chosen"})["model_name"] == "chosen"
    with pytest.raises(PipelineDefinitionError, match="derived_defaults of pipeline 'broken' names 'nope'"):
        pipeline(name="broken", derived_defaults={"nope": lambda v: ""})(lambda: make())
