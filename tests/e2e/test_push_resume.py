"""`flywheel run --resume` after push died between the registry write and the alias
update ends with the new version serving (#15 item 3), driven through the CLI."""

from __future__ import annotations

import subprocess
import sys

from flywheel.registry import ModelRegistry
from tests.conftest import REPO

PIPELINE = '''
import os

from flywheel import Model, ModelBlessing, Output, component, pipeline
from flywheel import registry as registry_module
from flywheel.components.push import push

CRASH_FLAG = {crash_flag!r}
if os.path.exists(CRASH_FLAG):
    # The process dies right after the version directory is renamed into place, before the alias moves.
    original_push = registry_module.ModelRegistry.push

    def push_then_die(self, *args, **kwargs):
        original_push(self, *args, **kwargs)
        os._exit(9)

    registry_module.ModelRegistry.push = push_then_die


@component
def fake_train(model: Output[Model], content: str = "v") -> None:
    os.makedirs(model.path("serving"))
    with open(model.path("serving/saved_model.pb"), "w") as handle:
        handle.write(content)


@component
def fake_bless(blessing: Output[ModelBlessing]) -> None:
    blessing.properties.update({{"blessed": True, "reasons": ["ok"], "metrics": {{}}}})


@pipeline(name="deploy")
def deploy(content: str = "v", registry: str = ""):
    model = fake_train(content=content)
    blessing = fake_bless()
    push(model=model.output, blessing=blessing.output, registry=registry, model_name="m")
'''


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "flywheel", *args], cwd=REPO, capture_output=True, text=True, timeout=120)


def test_resume_after_a_crash_between_registry_write_and_alias_serves_the_new_version(home, tmp_path):
    crash_flag = tmp_path / "crash"
    pipeline_file = tmp_path / "deploy.py"
    pipeline_file.write_text(PIPELINE.format(crash_flag=str(crash_flag)))
    registry = str(tmp_path / "registry")
    store = ModelRegistry(registry)
    first = _cli("run", str(pipeline_file), "--param", "content=one", "--param", f"registry={registry}")
    assert first.returncode == 0, first.stdout + first.stderr
    assert store.serving_version("m") == 1

    crash_flag.write_text("die")
    crashed = _cli("run", str(pipeline_file), "--param", "content=two", "--param", f"registry={registry}")
    assert crashed.returncode == 1, crashed.stdout + crashed.stderr
    assert store.versions("m") == [1, 2] and store.serving_version("m") == 1  # the deployment is half done
    run_id = crashed.stdout.split("flywheel run --resume ")[1].split()[0]

    crash_flag.unlink()
    resumed = _cli("run", "--resume", run_id)

    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert store.versions("m") == [1, 2]
    assert store.serving_version("m") == 2
    assert store.serving_info("m")["served_versions"] == [1, 2]
