"""Runner behaviour on tiny pipelines, over both executors (forked pool, in-process)."""

from __future__ import annotations

import os
import shutil
import time

import pytest

from flywheel import pipeline
from flywheel.metadata import MetadataStore
from flywheel.runner import LocalRunner
from tests.runner.toy import consume, flaky, produce, relay

EXECUTORS = pytest.mark.parametrize("workers", [2, 0], ids=["fork-pool", "in-process"])


def chain_pipeline(flag: str = ""):
    @pipeline(name="chain")
    def chain(text: str = "hello"):
        data = produce(text=text)
        consume(data=data.output, fail_if_exists=flag)

    return chain


@EXECUTORS
def test_run_publishes_outputs_and_records_lineage(home, workers):
    result = LocalRunner(home, max_workers=workers).run(chain_pipeline(), {"text": "abc"})

    assert result.ok, result.errors
    metrics = result.outputs["consume"]["out"]
    assert metrics.uri.startswith(home.artifacts)
    with open(os.path.join(metrics.uri, "metrics.txt"), encoding="utf-8") as handle:
        assert handle.read() == "ABC"
    assert metrics.properties["upper"] == "ABC"
    assert os.listdir(home.staging) == []

    store = MetadataStore(home)
    run = store.get_run(result.run.run_id)
    assert run.state == "COMPLETE" and run.parameters == {"text": "abc"}
    nodes = store.latest_nodes(run)
    assert {n: e.state for n, e in nodes.items()} == {"produce": "COMPLETE", "consume": "COMPLETE"}
    assert nodes["consume"].inputs["data"].id == nodes["produce"].outputs["out"].id
    assert nodes["produce"].parameters == {"text": "abc", "sleep_s": 0.0}
    assert nodes["produce"].outputs["out"].state == "LIVE"
    assert nodes["produce"].outputs["out"].properties["length"] == 3
    assert nodes["produce"].code_fingerprint and nodes["produce"].cache_key
    upstream = store.lineage(metrics.id)
    assert [e.node_id for e in upstream] == ["consume", "produce"]
    with open(result.log_paths["produce"], encoding="utf-8") as log:
        assert "attempt 1" in log.read()


@EXECUTORS
def test_identical_second_run_is_fully_cached(home, workers):
    runner = LocalRunner(home, max_workers=workers)
    first = runner.run(chain_pipeline())
    second = runner.run(chain_pipeline())

    assert second.states == {"produce": "CACHED", "consume": "CACHED"}
    assert second.outputs["consume"]["out"].uri == first.outputs["consume"]["out"].uri
    nodes = MetadataStore(home).latest_nodes(second.run)
    assert all(e.cached for e in nodes.values())
    # A cached execution still records its inputs and outputs in the new run.
    assert nodes["consume"].inputs["data"].id == first.outputs["produce"]["out"].id


def test_changed_parameter_misses_the_cache_for_that_node_and_downstream(home):
    runner = LocalRunner(home)
    runner.run(chain_pipeline(), {"text": "a"})
    changed = runner.run(chain_pipeline(), {"text": "b"})
    assert changed.states == {"produce": "COMPLETE", "consume": "COMPLETE"}


@pytest.mark.parametrize("damage", ["delete", "empty", "truncate"])
def test_damaged_cached_output_is_a_miss_not_a_failure(home, damage):
    runner = LocalRunner(home)
    first = runner.run(chain_pipeline())
    uri = first.outputs["produce"]["out"].uri
    if damage == "delete":
        shutil.rmtree(uri)
    elif damage == "empty":
        os.remove(os.path.join(uri, "data.txt"))
    else:
        with open(os.path.join(uri, "data.txt"), "w", encoding="utf-8") as handle:
            handle.write("h")

    second = runner.run(chain_pipeline())

    assert second.ok
    assert second.states["produce"] == "COMPLETE"
    assert second.outputs["produce"]["out"].uri != uri


def test_no_cache_runs_everything(home):
    runner = LocalRunner(home)
    runner.run(chain_pipeline())
    again = runner.run(chain_pipeline(), cache=False)
    assert again.states == {"produce": "COMPLETE", "consume": "COMPLETE"}


def test_parallel_branches_overlap_in_time(home):
    @pipeline(name="fan")
    def fan():
        data = produce()
        consume(data=data.output, sleep_s=0.6)
        consume(data=data.output, sleep_s=0.6)

    result = LocalRunner(home, max_workers=2).run(fan)

    assert result.ok
    nodes = MetadataStore(home).latest_nodes(result.run)
    a, b = nodes["consume"], nodes["consume-2"]
    # Each branch sleeps 0.6 s; their recorded execution intervals overlap only if they ran at once.
    assert a.start_ms < b.end_ms and b.start_ms < a.end_ms, "branches did not overlap"


@EXECUTORS
def test_retries_make_exactly_retries_plus_one_attempts(home, tmp_path, workers):
    counter = tmp_path / "count"

    @pipeline(name="retry")
    def retry():
        flaky(counter=str(counter))  # component default: retries=2, never succeeds

    result = LocalRunner(home, max_workers=workers).run(retry)

    assert not result.ok
    assert counter.read_text().count("attempt") == 3
    execution = MetadataStore(home).latest_nodes(result.run)["flaky"]
    assert execution.state == "FAILED" and execution.attempts == 3
    assert "failing on attempt 3" in execution.error


def test_run_level_retry_override_and_eventual_success(home, tmp_path):
    counter = tmp_path / "count"

    @pipeline(name="retry")
    def once():
        flaky(counter=str(counter), succeed_on=2)

    assert not LocalRunner(home).run(once, retries=0).ok
    assert counter.read_text().count("attempt") == 1
    counter.unlink()
    result = LocalRunner(home).run(once)
    assert result.ok
    assert MetadataStore(home).latest_nodes(result.run)["flaky"].attempts == 2


def test_retry_backoff_doubles(home, tmp_path):
    counter = tmp_path / "count"

    @pipeline(name="backoff")
    def backoff():
        flaky(counter=str(counter)).set_retries(2, backoff_s=0.2)

    started = time.monotonic()
    LocalRunner(home).run(backoff)
    assert time.monotonic() - started >= 0.2 + 0.4


@EXECUTORS
def test_failure_skips_downstream_but_independent_branch_finishes(home, tmp_path, workers):
    flag = tmp_path / "fail"
    flag.write_text("x")

    @pipeline(name="branches")
    def branches():
        data = produce()
        bad = consume(data=data.output, fail_if_exists=str(flag))
        consume(data=data.output).after(bad)
        consume(data=data.output)

    result = LocalRunner(home, max_workers=workers).run(branches)

    assert result.run.state == "FAILED"
    assert result.states == {"produce": "COMPLETE", "consume": "FAILED", "consume-2": "SKIPPED", "consume-3": "COMPLETE"}
    assert "flag file" in result.errors["consume"]
    failed = MetadataStore(home).latest_nodes(result.run)["consume"]
    assert failed.state == "FAILED"
    assert all(a.state == "ABANDONED" for a in failed.outputs.values())
    assert not any(os.path.exists(a.uri) for a in failed.outputs.values())


def test_resume_reruns_only_the_failed_node_and_its_downstream(home, tmp_path):
    flag = tmp_path / "fail"
    flag.write_text("x")

    @pipeline(name="resumable")
    def resumable():
        data = produce()
        bad = consume(data=data.output, fail_if_exists=str(flag))
        consume(data=data.output).after(bad)
        consume(data=data.output, sleep_s=0.01)

    runner = LocalRunner(home)
    first = runner.run(resumable)
    assert first.states["consume"] == "FAILED"
    flag.unlink()

    resumed = runner.resume(resumable, first.run.run_id)

    assert resumed.run.run_id == first.run.run_id
    assert resumed.ok
    assert resumed.states == {"produce": "REUSED", "consume": "COMPLETE", "consume-2": "COMPLETE", "consume-3": "REUSED"}
    assert MetadataStore(home).get_run(first.run.run_id).state == "COMPLETE"


def test_resume_refuses_a_complete_run(home):
    from flywheel.errors import RunError

    runner = LocalRunner(home)
    done = runner.run(chain_pipeline())
    with pytest.raises(RunError, match="only a FAILED run can be resumed"):
        runner.resume(chain_pipeline(), done.run.run_id)


def test_lineage_returns_the_full_upstream_chain(home):
    @pipeline(name="long")
    def long_chain():
        a = produce()
        b = relay(data=a.output)
        c = relay(data=b.output)
        consume(data=c.output)
        produce(text="unrelated")

    runner = LocalRunner(home)
    runner.run(long_chain)
    result = runner.run(long_chain)  # all cached: lineage follows to the executions that really ran
    store = MetadataStore(home)
    final = result.outputs["consume"]["out"]
    chain = store.lineage(final.id)
    assert [e.node_id for e in chain] == ["consume", "relay-2", "relay", "produce"]
    assert all(e.state == "COMPLETE" for e in chain)
    first = result.outputs["produce"]["out"]
    assert [e.node_id for e in store.lineage(first.id, direction="downstream")][:1] == ["relay"]


def test_a_loaded_threaded_runtime_means_in_process_execution_not_a_fork(home, monkeypatch):
    import sys
    import types

    import flywheel.runner.runner as runner_module
    from flywheel.runner import executors

    monkeypatch.setattr(runner_module, "fork_unsafe_modules", executors.fork_unsafe_modules)

    def no_fork(*args, **kwargs):
        raise AssertionError("the runner forked workers although TensorFlow was loaded")

    monkeypatch.setitem(sys.modules, "tensorflow", types.ModuleType("tensorflow"))
    monkeypatch.setattr(runner_module, "ForkPoolExecutor", no_fork)
    with pytest.warns(RuntimeWarning, match="tensorflow is already imported"):
        result = LocalRunner(home, max_workers=2).run(chain_pipeline())
    assert result.ok and result.states == {"produce": "COMPLETE", "consume": "COMPLETE"}


def test_the_worker_that_ran_an_isolated_component_exits_afterwards(home):
    from tests.runner.toy import note_pid, note_pid_isolated

    @pipeline(name="isolation")
    def isolation():
        first = note_pid(after="start")  # distinct parameters: no node is a cache hit of another
        second = note_pid(after="first").after(first)
        alone = note_pid_isolated().after(second)
        note_pid(after="isolated").after(alone)

    result = LocalRunner(home, max_workers=1).run(isolation)

    assert result.ok, result.errors
    pids = {task: outputs["out"].properties["pid"] for task, outputs in result.outputs.items()}
    assert set(pids) == {"note_pid", "note_pid-2", "note_pid_isolated", "note_pid-3"}
    assert pids["note_pid"] == pids["note_pid-2"] == pids["note_pid_isolated"]  # ordinary nodes share a worker
    assert pids["note_pid-3"] != pids["note_pid_isolated"]  # that worker exited after the isolated node


def test_the_isolated_option_must_be_a_bool():
    from flywheel import component
    from flywheel.errors import ComponentDefinitionError

    with pytest.raises(ComponentDefinitionError, match="The 'isolated' option must be True or False"):
        component(isolated="yes")


def test_both_executors_meet_the_executor_protocol_the_runner_types_against():
    from flywheel.runner.executors import Executor, ForkPoolExecutor, InProcessExecutor

    pipe = chain_pipeline()
    for executor in (InProcessExecutor(pipe), ForkPoolExecutor(pipe, 2)):
        assert isinstance(executor, Executor)
        assert executor.capacity >= 1 and executor.running() == 0
        executor.shutdown()
