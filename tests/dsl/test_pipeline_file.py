"""Loading pipeline files: by path, by installed module name, and the errors."""

from __future__ import annotations

import pytest

from flywheel.errors import DefinitionError, PipelineFileError
from flywheel.pipeline_file import load_pipeline


def test_an_installed_module_name_loads_like_a_file():
    pipe = load_pipeline("flywheel.pipelines.training")
    assert pipe.name == "training"
    assert pipe.source_file.endswith("training.py")
    assert list(pipe.tasks) == ["ingest", "validate", "transform", "train", "infra_validate", "evaluate", "is_blessed", "push"]


@pytest.mark.parametrize(
    "source, error, message",
    [
        ("x = 1\n", PipelineFileError, "defines no pipeline"),
        ("raise RuntimeError('boom')\n", PipelineFileError, "failed to load: RuntimeError: boom"),
        (
            "from flywheel import pipeline\n@pipeline\ndef p(n=1):\n    pass\n",
            DefinitionError,
            "Parameter 'n' of pipeline 'p'",
        ),
    ],
)
def test_bad_pipeline_files(tmp_path, source, error, message):
    path = tmp_path / "bad.py"
    path.write_text(source)
    with pytest.raises(error, match=message):
        load_pipeline(str(path))


def test_missing_file_and_unknown_module_say_what_to_pass(tmp_path):
    with pytest.raises(PipelineFileError, match="installed module such as flywheel.pipelines.training"):
        load_pipeline("flywheel.pipelines.nope")
    with pytest.raises(PipelineFileError, match="Pipeline file not found"):
        load_pipeline(str(tmp_path / "none.py"))


def test_several_pipelines_need_a_name(tmp_path):
    path = tmp_path / "two.py"
    path.write_text(
        "from flywheel import pipeline, component, Output, Dataset\n"
        "@component\ndef c(out: Output[Dataset]) -> None: ...\n"
        "@pipeline(name='a')\ndef a():\n    c()\n"
        "@pipeline(name='b')\ndef b():\n    c()\n"
    )
    with pytest.raises(PipelineFileError, match="several pipelines"):
        load_pipeline(str(path))
    assert load_pipeline(str(path), "b").name == "b"
