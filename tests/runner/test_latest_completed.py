"""latest() inputs come only from runs that completed: a failed run's outputs (its
inferred schema, say) never become what later runs are checked against."""

from __future__ import annotations

import os

from flywheel import Dataset, Input, Output, component, latest, pipeline
from flywheel.runner import LocalRunner
from tests.runner.toy import consume, produce


@component
def keep_schema(data: Input[Dataset], schema: Output[Dataset], previous: Input[Dataset] = None) -> None:
    """Toy validate: keeps the previous schema when there is one, else infers one from the data."""
    source = previous if previous is not None else data
    with open(source.path("data.txt"), encoding="utf-8") as handle:
        text = handle.read()
    with open(schema.path("data.txt"), "w", encoding="utf-8") as handle:
        handle.write(text)
    schema.properties["kept_from"] = "previous" if previous is not None else "inferred"


def _pipeline(flag: str):
    @pipeline(name="kept")
    def kept(text: str = "good"):
        data = produce(text=text)
        schema = keep_schema(data=data.output, previous=latest(Dataset, task="keep_schema", output="schema"))
        consume(data=schema.outputs["schema"], fail_if_exists=flag)  # the "train" that may refuse the data

    return kept


def test_a_failed_runs_output_is_never_the_kept_one(home, tmp_path):
    flag = str(tmp_path / "refuse")
    runner = LocalRunner(home, max_workers=0)
    open(flag, "w").close()  # the first data is refused downstream of keep_schema (one class, say)
    refused = runner.run(_pipeline(flag), {"text": "one-class"})
    assert refused.run.state == "FAILED" and refused.states["keep_schema"] == "COMPLETE"
    os.remove(flag)

    good = runner.run(_pipeline(flag), {"text": "good"})

    assert good.ok
    schema = good.outputs["keep_schema"]["schema"]
    assert schema.properties["kept_from"] == "inferred"  # the failed run's schema was not taken
    with open(os.path.join(schema.uri, "data.txt"), encoding="utf-8") as handle:
        assert handle.read() == "good"

    later = runner.run(_pipeline(flag), {"text": "newer"})
    assert later.ok
    assert later.outputs["keep_schema"]["schema"].properties["kept_from"] == "previous"  # a completed run's is kept
    with open(os.path.join(later.outputs["keep_schema"]["schema"].uri, "data.txt"), encoding="utf-8") as handle:
        assert handle.read() == "good"
