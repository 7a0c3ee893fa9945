"""The local runner: executes a pipeline on this machine and records lineage.

The algorithm (what runs when, caching, retries, atomic publishing, lineage)
lives here; an executor (``executors.py``) only runs jobs. Nodes start as soon
as their upstream nodes are done, up to the executor's capacity; a failed node
stops its downstream nodes, while independent branches go on.

Outputs are written to ``<home>/staging/<run>/...`` and moved to their
published URI (``<home>/artifacts/<pipeline>/<run>/<node>/<output>``)
with one ``rename`` only after the node succeeded; only then are they marked
LIVE. A node killed mid-write therefore publishes nothing.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import shutil
import signal
import time
import warnings
from typing import Any, Callable

from flywheel.dsl.pipeline import LatestRef, OutputRef, Pipeline
from flywheel.errors import ParameterError, RunError
from flywheel.home import Home
from flywheel.metadata.skipped import record_skipped
from flywheel.metadata.store import (
    COMPLETE,
    FAILED,
    ArtifactRecord,
    MetadataStore,
    RunRecord,
    now_ms,
)
from flywheel.runner.cache_policy import (
    any_uncacheable,
    data_key,
    explain_hit,
    explain_miss,
    for_record,
    node_data_sources,
    run_scope,
)
from flywheel.runner import loops, warm
from flywheel.runner.executors import (
    Executor, ForkPoolExecutor, InProcessExecutor, Job, JobResult, worker_main, fork_unsafe_modules,
)
from flywheel.runner.fingerprint import cache_key, directory_summary, quick_summary

# Node states shown to users.
WAITING = "WAITING"
RUNNING = "RUNNING"
RETRYING = "RETRYING"
CACHED = "CACHED"
SKIPPED = "SKIPPED"
REUSED = "REUSED"  # completed in the run being resumed


@dataclasses.dataclass
class NodeEvent:
    """A change of one node's state, for progress displays."""

    run_id: str
    node_id: str
    state: str
    elapsed_s: float = 0.0
    attempt: int = 0
    error: str = ""
    log_path: str = ""


@dataclasses.dataclass
class RunResult:
    """What a run did."""

    run: RunRecord
    states: dict[str, str]
    outputs: dict[str, dict[str, ArtifactRecord]]
    errors: dict[str, str]
    log_paths: dict[str, str]

    @property
    def ok(self) -> bool:
        return self.run.state == COMPLETE


@dataclasses.dataclass
class _Node:
    task_id: str  # the node id: a pipeline task, or one iteration of a loop ("train[0]")
    state: str = WAITING
    execution_id: int | None = None
    output_ids: dict[str, int] = dataclasses.field(default_factory=dict)
    attempt: int = 0
    retry_at: float | None = None
    started: float = 0.0
    job: Job | None = None
    inputs: dict[str, ArtifactRecord] = dataclasses.field(default_factory=dict)
    outputs: dict[str, ArtifactRecord] = dataclasses.field(default_factory=dict)
    values: dict[str, Any] = dataclasses.field(default_factory=dict)  # output parameters
    error: str = ""
    task: str = ""  # the pipeline task it runs (task_id unless an iteration)
    index: int | None = None  # the iteration of its loop, and its item
    item: Any = None
    iterations: list[str] | None = None  # of a loop template, once expanded (runner/loops.py)

    def __post_init__(self) -> None:
        self.task = self.task or self.task_id


def new_run_id(pipeline_name: str) -> str:
    return f"{pipeline_name}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"


def outputs_intact(outputs: dict[str, ArtifactRecord]) -> bool:
    """Whether every cached output is LIVE and still on disk as recorded."""
    for record in outputs.values():
        if record.state != "LIVE" or not os.path.exists(record.uri):
            return False
        count, total = quick_summary(record.uri)
        if count != record.properties.get("file_count") or total != record.properties.get("total_bytes"):
            return False
    return True


class LocalRunner:
    """Runs pipelines on this machine, with lineage in ML Metadata.

    Args:
        home: Where metadata, artifacts, logs and staging live.
        max_workers: Nodes that may run at once (forked worker processes);
            0 runs every node in this process, one at a time (for debugging).
        listener: Called with a ``NodeEvent`` on every node state change.
        on_tick: Called about twice a second while a run is going (progress
            displays refresh their clocks).
    """

    def __init__(
        self,
        home: Home | None = None,
        *,
        max_workers: int | None = None,
        listener: Callable[[NodeEvent], None] | None = None,
        on_tick: Callable[[], None] | None = None,
    ) -> None:
        self.home = (home or Home.resolve()).ensure()
        self.store = MetadataStore(self.home)
        self.max_workers = (os.cpu_count() or 2) if max_workers is None else max_workers
        self.listener = listener or (lambda event: None)
        self.on_tick = on_tick or (lambda: None)

    # -- public API -------------------------------------------------------------

    def run(
        self,
        pipeline: Pipeline,
        parameters: dict[str, Any] | None = None,
        *,
        cache: bool = True,
        retries: int | None = None,
        trigger: str = "manual",
        trigger_reason: str = "",
        run_id: str | None = None,
        rerun: frozenset[str] | set[str] = frozenset(),
    ) -> RunResult:
        """Runs ``pipeline`` with parameter overrides; returns when it ends.

        ``cache=False`` runs every node; ``rerun`` names nodes that run even if
        an identical execution exists (the others may still be cached).

        Raises:
            ParameterError: a parameter is unknown, missing or mistyped.
        """
        values = pipeline.resolve_parameters(parameters)
        pipeline = pipeline.with_task_overrides(values)  # -p TASK.PARAM=...; recorded with the run
        unknown = sorted(set(rerun) - set(pipeline.tasks))
        if unknown:
            raise ParameterError(
                f"--rerun names node {unknown[0]!r}, which pipeline '{pipeline.name}' does not have. "
                f"Its nodes are: {', '.join(pipeline.tasks)}."
            )
        self.store.reconcile_orphans()
        run = self.store.create_run(
            run_id or new_run_id(pipeline.name),
            pipeline.name,
            parameters=values,
            pipeline_file=pipeline.source_file or "",
            trigger=trigger,
            trigger_reason=trigger_reason,
        )
        nodes = {task_id: _Node(task_id) for task_id in pipeline.topological_order()}
        return self._execute(pipeline, run, values, nodes, cache=cache, retries=retries, rerun=frozenset(rerun))

    def resume(self, pipeline: Pipeline, run_id: str, *, cache: bool = True, retries: int | None = None) -> RunResult:
        """Re-runs the failed nodes of a run and what depends on them.

        Nodes that completed (or were cached) in that run keep their outputs,
        as long as those are still intact.

        Raises:
            RunNotFoundError: no such run.
            RunError: the run is still running or already complete, or belongs
                to another pipeline.
        """
        run = self.store.get_run(run_id)
        if run.state != FAILED:
            raise RunError(
                f"Run {run.run_id} is {run.state}; only a FAILED run can be resumed."
                + (" Start a new run instead." if run.state == COMPLETE else "")
            )
        if run.pipeline != pipeline.name:
            raise RunError(
                f"Run {run.run_id} belongs to pipeline '{run.pipeline}', not '{pipeline.name}'."
            )
        previous = self.store.latest_nodes(run)
        nodes: dict[str, _Node] = {}
        for task_id in pipeline.topological_order():
            node = _Node(task_id)
            record = previous.get(task_id)
            if (
                record is not None
                and record.state in ("COMPLETE", "CACHED")
                and set(record.outputs) == set(pipeline.tasks[task_id].outputs)
                and outputs_intact(record.outputs)
            ):
                node.state = REUSED
                node.outputs = dict(record.outputs)
                node.values = dict(record.details.get("output_values") or {})
            nodes[task_id] = node
        # Anything downstream of a node that must run again runs again too.
        rerun = pipeline.downstream_of({t for t, n in nodes.items() if n.state != REUSED})
        if pipeline.exit_scope is not None and rerun & pipeline.exit_scope.guarded:
            rerun.add(pipeline.exit_scope.exit_task)  # it reports the state of the resumed run
        for task_id in rerun:
            nodes[task_id] = _Node(task_id)
        try:
            pipeline = pipeline.with_task_overrides(run.parameters)  # the run's own TASK.PARAM values
        except ParameterError as exc:  # recorded before the pipeline changed which parameters it declares
            raise RunError(
                f"Run {run.run_id} cannot be resumed with this pipeline file: its recorded parameters no longer "
                f"fit it ({exc}). Start a new run."
            ) from exc
        run = self.store.claim_run(run.run_id)
        return self._execute(pipeline, run, run.parameters, nodes, cache=cache, retries=retries)

    # -- the algorithm --------------------------------------------------------------

    def _execute(
        self,
        pipeline: Pipeline,
        run: RunRecord,
        values: dict[str, Any],
        nodes: dict[str, _Node],
        *,
        cache: bool,
        retries: int | None,
        rerun: frozenset[str] = frozenset(),
    ) -> RunResult:
        executor: Executor
        unsafe = fork_unsafe_modules() if self.max_workers != 0 else []
        if unsafe:
            warnings.warn(
                f"{', '.join(unsafe)} is already imported in this process, and forking it can deadlock "
                "worker processes, so nodes run here, one at a time. For parallel workers, run the "
                "pipeline from the CLI (flywheel run) or before importing it.",
                RuntimeWarning,
                stacklevel=3,
            )
        if self.max_workers == 0 or unsafe:
            executor = InProcessExecutor(pipeline)
        else:
            executor = self._fork_pool(pipeline, run)
        by_key: dict[int, _Node] = {}
        keys = iter(range(1, 1 << 62))
        for node in nodes.values():
            if node.state == REUSED:
                self._emit(run, node, REUSED)
        previous_term = signal.signal(signal.SIGTERM, _raise_interrupt)
        interrupted = False
        try:
            while True:
                now = time.monotonic()
                for task_id, node in list(nodes.items()):
                    if executor.capacity <= 0:
                        break
                    if node.state == RETRYING and node.retry_at is not None and node.retry_at <= now:
                        self._dispatch(pipeline, run, node, executor, by_key, next(keys))
                        continue
                    if node.state != WAITING:
                        continue
                    if _exit_task_waits(pipeline, nodes, task_id):
                        continue
                    template = pipeline.tasks[node.task].loop is not None and node.index is None
                    up_ids = loops.gate(pipeline, task_id) if template else [
                        loops.node_for(pipeline, node, u) for u in pipeline.tasks[node.task].upstream]
                    if any(u not in nodes for u in up_ids):
                        continue  # an iteration of a template not expanded yet
                    ups = [nodes[u] for u in up_ids]
                    if any(u.state in (FAILED, SKIPPED) for u in ups):
                        skipped_by_condition = [u for u in ups if u.state == SKIPPED and u.execution_id is not None]
                        if skipped_by_condition and not any(u.state == FAILED for u in ups):
                            # Downstream of a task an If skipped: recorded SKIPPED too (KFP's semantics).
                            self._skip(pipeline, run, values, node, f"skipped: upstream '{skipped_by_condition[0].task_id}' was skipped")
                        else:
                            node.state = SKIPPED  # after a failure: not recorded, the run fails anyway
                            self._emit(run, node, SKIPPED)
                        continue
                    if not all(u.state in (COMPLETE, CACHED, REUSED) for u in ups):
                        continue
                    false = _false_condition(pipeline, nodes, node)
                    if false:
                        self._skip(pipeline, run, values, node, false)
                        continue
                    if template:
                        self._expand(pipeline, run, values, nodes, node)
                        continue
                    if not loops.parallelism_allows(pipeline, nodes, node):
                        continue
                    node_cache = cache and node.task not in rerun
                    self._start(pipeline, run, values, nodes, node, executor, by_key, next(keys), node_cache, retries)
                for template_node in loops.settled(nodes):
                    self._emit(run, template_node, template_node.state)
                pending = [n for n in nodes.values() if n.state in (WAITING, RUNNING, RETRYING, loops.EXPANDED)]
                if not pending:
                    break
                timeout = 0.5
                retry_times = [n.retry_at for n in pending if n.state == RETRYING and n.retry_at]
                if retry_times:
                    timeout = max(0.0, min(min(retry_times) - time.monotonic(), timeout))
                self.on_tick()
                for result in executor.wait(timeout):
                    node = by_key.pop(result.key)
                    self._finish(pipeline, run, node, result, retries)
        except KeyboardInterrupt:
            interrupted = True
        finally:
            signal.signal(signal.SIGTERM, previous_term)
            executor.shutdown()
        return self._close(run, nodes, interrupted)

    def _expand(self, pipeline: Pipeline, run: RunRecord, values: dict[str, Any], nodes: dict[str, _Node],
                node: _Node) -> None:
        """Gives loop template ``node`` one node per item (``runner/loops.py``), or fails it naming the bad item."""
        try:
            items = loops.loop_items(pipeline, node.task, values, nodes)
        except ValueError as exc:
            node.state = FAILED
            node.error = f"{exc}; fix the items or the parameter's type"
            self._emit(run, node, FAILED, error=node.error)
            return
        node.iterations = []
        for index, item in enumerate(items):
            node_id = loops.iteration_id(node.task, index)
            nodes[node_id] = _Node(node_id, task=node.task, index=index, item=item)
            node.iterations.append(node_id)
        node.state = loops.EXPANDED
        self._emit(run, node, loops.EXPANDED, error=f"{len(items)} iteration(s)")

    def _skip(self, pipeline: Pipeline, run: RunRecord, values: dict[str, Any], node: _Node, reason: str) -> None:
        """Records ``node`` SKIPPED (a false condition, or downstream of one) in the store."""
        task = pipeline.tasks[node.task]
        node.execution_id = record_skipped(
            self.store, run, node.task_id, task.component.name, parameters=_parameters(pipeline, node, values, {}),
            code_fingerprint=task.component.code_fingerprint, reason=reason,
        )
        node.state = SKIPPED
        node.error = reason
        self._emit(run, node, SKIPPED, error=reason)

    def _start(
        self,
        pipeline: Pipeline,
        run: RunRecord,
        values: dict[str, Any],
        nodes: dict[str, _Node],
        node: _Node,
        executor: Executor,
        by_key: dict[int, _Node],
        key: int,
        cache: bool,
        retries: int | None,
    ) -> None:
        task = pipeline.tasks[node.task]
        params = _parameters(pipeline, node, values, loops.collected_parameters(pipeline, nodes, node.task))
        if pipeline.exit_scope is not None and node.task_id == pipeline.exit_scope.exit_task:
            status = task.component.final_status_parameter
            if status:
                params[status] = _final_status(pipeline, run, nodes)
        inputs: dict[str, ArtifactRecord] = {}
        scope = run_scope(pipeline.parameters, values)
        for name, ref in task.inputs.items():
            if isinstance(ref, OutputRef):
                inputs[name] = nodes[loops.node_for(pipeline, node, ref.task_id)].outputs[ref.output]
        collected = loops.collected_inputs(pipeline, nodes, node.task)
        for name, records in collected.items():  # recorded one by one: "models[0]", "models[1]", ...
            inputs.update({f"{name}[{i}]": record for i, record in enumerate(records)})
        for name, ref in task.inputs.items():
            if isinstance(ref, LatestRef):
                found = self._resolve_latest(pipeline, run, node.task_id, ref, inputs, scope)
                if found is not None:
                    inputs[name] = found
        node.inputs = inputs
        sources = node_data_sources(task.component, params)
        key_value = cache_key(
            task.component.code_fingerprint,
            {n: _fingerprint_of(a) for n, a in inputs.items()},
            {**params, **({"__data__": data_key(sources)} if sources else {})},
        )
        if cache and task.options.cache and any_uncacheable(sources) is None:
            for candidate in self.store.find_cached(key_value):
                values = candidate.details.get("output_values") or {}
                if (set(candidate.outputs) == set(task.outputs) and set(values) == set(task.values)
                        and outputs_intact(candidate.outputs)):
                    node.execution_id = self.store.record_cached(
                        run,
                        node.task_id,
                        task.component.name,
                        parameters=params,
                        cache_key=key_value,
                        code_fingerprint=task.component.code_fingerprint,
                        source=candidate,
                        inputs=inputs,
                        scope=scope,
                        details={"cache_reason": explain_hit(candidate, sources), "data_sources": for_record(sources),
                                 **({"output_values": values} if values else {}), **_iteration(node)},
                    )
                    node.outputs = dict(candidate.outputs)
                    node.values = dict(values)
                    node.state = CACHED
                    self._emit(run, node, CACHED)
                    return
        history = self.store.node_history(pipeline.name, node.task_id, exclude_run=run.run_id, limit=1, scope=scope or None)
        reason = explain_miss(
            history[0] if history else None,
            code_fingerprint=task.component.code_fingerprint,
            inputs=inputs,
            parameters=params,
            sources=sources,
            cache_enabled=cache,
            node_cache=task.options.cache,
        )
        log_path = os.path.join(self.home.logs, run.run_id, f"{node.task_id}.log")
        final_uris = {
            name: (ref.type.TYPE_NAME, self._final_uri(pipeline, run, node.task_id, name))
            for name, ref in task.outputs.items()
        }
        execution_id, output_ids = self.store.start_execution(
            run,
            node.task_id,
            task.component.name,
            parameters=params,
            cache_key=key_value,
            code_fingerprint=task.component.code_fingerprint,
            log_path=log_path,
            inputs=inputs,
            outputs=final_uris,
            scope=scope,
            details={"cache_reason": reason, "data_sources": for_record(sources), **_cluster_only(task),
                     **_iteration(node)},
        )
        node.execution_id = execution_id
        node.output_ids = output_ids
        node.job = Job(
            key=0,
            task_id=node.task_id,
            attempt=0,
            inputs={
                **{n: _job_input(a) for n, a in inputs.items() if n in task.inputs},
                **{n: [_job_input(a) for a in records] for n, records in collected.items()},
            },
            outputs={n: {"type": t, "uri": u, "properties": {}, "id": output_ids[n], "name": n} for n, (t, u) in final_uris.items()},
            parameters=params,
            log_path=log_path,
            env={
                "FLYWHEEL_HOME": self.home.root,
                "FLYWHEEL_RUN_ID": run.run_id,
                "FLYWHEEL_NODE_ID": node.task_id,
                "FLYWHEEL_PIPELINE": pipeline.name,
            },
            isolated=task.options.isolated,
            task=node.task,
        )
        node.started = time.monotonic()
        self._dispatch(pipeline, run, node, executor, by_key, key)

    def _resolve_latest(
        self,
        pipeline: Pipeline,
        run: RunRecord,
        task_id: str,
        ref: LatestRef,
        data: dict[str, ArtifactRecord],
        scope: str,
    ) -> ArtifactRecord | None:
        """The artifact a ``latest(...)`` input stands for in this run.

        Only earlier runs for the same model (``scope``: the run's ``model_name``)
        count, so a new dataset trained under its own name never inherits another
        model's schema or statistics.

        For a node's own earlier output (validate's previous statistics, say),
        earlier runs on the same data are passed over: comparing data with
        itself says nothing, and skipping them makes a re-run on identical data
        resolve exactly as before, so it is served from the cache.

        Only runs that completed count: a run that failed later on (say train
        refused its one-class data) must not hand its schema or statistics to
        the runs after it.
        """
        current = {n: _fingerprint_of(a) for n, a in data.items()}
        for record in self.store.node_history(pipeline.name, ref.task_id, exclude_run=run.run_id, scope=scope or None):
            artifact = record.outputs.get(ref.output)
            if artifact is None or artifact.state != "LIVE" or not os.path.exists(artifact.uri):
                continue
            if not self._run_completed(record.run_id):
                continue
            if ref.task_id == task_id and current:
                previous = {n: _fingerprint_of(a) for n, a in record.inputs.items() if n in current}
                if previous == current:
                    continue
            return artifact
        return None

    def _run_completed(self, run_id: str) -> bool:
        """Whether a run ended COMPLETE (what a ``latest()`` input may be taken from)."""
        return self.store.get_run(run_id).state == COMPLETE

    def _final_uri(self, pipeline: Pipeline, run: RunRecord, task_id: str, output: str) -> str:
        """A fresh published location; a resumed node never reuses an old one."""
        uri = os.path.join(self.home.artifacts, pipeline.name, run.run_id, task_id, output)
        while os.path.exists(uri):
            uri = os.path.join(self.home.artifacts, pipeline.name, run.run_id, task_id, f"{output}.{secrets.token_hex(3)}")
        return uri

    def _staging_dir(self, run: RunRecord, node: _Node) -> str:
        return os.path.join(self.home.staging, run.run_id, f"{node.execution_id}-{node.attempt}")

    def _dispatch(
        self, pipeline: Pipeline, run: RunRecord, node: _Node, executor: Executor, by_key: dict[int, _Node], key: int
    ) -> None:
        assert node.job is not None
        node.attempt += 1
        staging = self._staging_dir(run, node)
        shutil.rmtree(staging, ignore_errors=True)
        job = dataclasses.replace(
            node.job,
            key=key,
            attempt=node.attempt,
            outputs={n: {**d, "uri": os.path.join(staging, n)} for n, d in node.job.outputs.items()},
        )
        for spec in job.outputs.values():
            os.makedirs(spec["uri"], exist_ok=True)
        node.state = RUNNING
        node.retry_at = None
        by_key[key] = node
        self._emit(run, node, RUNNING)
        executor.submit(job)

    def _finish(self, pipeline: Pipeline, run: RunRecord, node: _Node, result: JobResult, retries: int | None) -> None:
        assert node.job is not None and node.execution_id is not None
        task = pipeline.tasks[node.task]
        staging = self._staging_dir(run, node)
        if result.ok:
            try:
                published = self._publish(node, staging, result)
            except OSError as exc:
                result = JobResult(result.key, False, error=f"publishing outputs failed: {exc}")
            else:
                self.store.complete_execution(node.execution_id, outputs=published, attempts=node.attempt,
                                              values=result.values)
                node.values = dict(result.values)
                node.outputs = {
                    name: ArtifactRecord(
                        id=node.output_ids[name],
                        type=node.job.outputs[name]["type"],
                        uri=node.job.outputs[name]["uri"],
                        state="LIVE",
                        name=name,
                        properties=published[node.output_ids[name]],
                        create_ms=now_ms(),
                    )
                    for name in node.output_ids
                }
                node.state = COMPLETE
                self._emit(run, node, COMPLETE)
                shutil.rmtree(staging, ignore_errors=True)
                return
        shutil.rmtree(staging, ignore_errors=True)
        allowed = task.options.retries if retries is None else retries
        node.error = result.error
        if node.attempt <= allowed and result.retryable:
            node.state = RETRYING
            node.retry_at = time.monotonic() + task.options.retry_backoff_s * (2 ** (node.attempt - 1))
            self._emit(run, node, RETRYING, error=result.error)
            return
        self.store.fail_execution(node.execution_id, error=result.error, attempts=node.attempt)
        node.state = FAILED
        self._emit(run, node, FAILED, error=result.error)

    def _publish(self, node: _Node, staging: str, result: JobResult) -> dict[int, dict[str, Any]]:
        """Moves each output from staging to its final URI; returns their properties."""
        assert node.job is not None
        published: dict[int, dict[str, Any]] = {}
        for name, spec in node.job.outputs.items():
            source = os.path.join(staging, name)
            final = spec["uri"]
            os.makedirs(os.path.dirname(final), exist_ok=True)
            if os.path.exists(final):
                shutil.rmtree(final)  # left by a crash between rename and LIVE: never LIVE, safe to replace
            os.rename(source, final)
            fingerprint, count, total = directory_summary(final)
            props = dict(result.properties.get(name) or {})
            props.update(fingerprint=fingerprint, file_count=count, total_bytes=total)
            published[node.output_ids[name]] = props
        return published

    def _close(self, run: RunRecord, nodes: dict[str, _Node], interrupted: bool) -> RunResult:
        # A loop template fails with its iterations, whose errors are already there.
        failed = {t: n.error for t, n in nodes.items() if n.state == FAILED and n.iterations is None}
        for node in nodes.values():
            if node.state in (RUNNING, RETRYING) and node.execution_id is not None:
                self.store.fail_execution(node.execution_id, error="run interrupted", attempts=node.attempt)
                node.state = FAILED
                failed[node.task_id] = "run interrupted"
                self._emit(run, node, FAILED, error="run interrupted")
        if interrupted:
            error = "interrupted"
        elif failed:
            error = "; ".join(f"{t}: {e}" for t, e in failed.items())
        else:
            error = ""
        # A node SKIPPED by a false condition leaves the run COMPLETE; one skipped after a failure comes with it.
        state = COMPLETE if not error and all(n.state in (COMPLETE, CACHED, REUSED, SKIPPED) for n in nodes.values()) else FAILED
        run = self.store.update_run(run.run_id, state=state, end_ms=now_ms(), error=error[-2000:] or None)
        shutil.rmtree(os.path.join(self.home.staging, run.run_id), ignore_errors=True)
        log_paths = {t: n.job.log_path for t, n in nodes.items() if n.job is not None}
        if interrupted:
            raise KeyboardInterrupt
        return RunResult(
            run=run,
            # An expanded loop template is its iterations ("fit[0]", ...), which are listed instead.
            states={t: n.state for t, n in nodes.items() if n.iterations is None},
            outputs={t: n.outputs for t, n in nodes.items() if n.iterations is None},
            errors=failed,
            log_paths=log_paths,
        )

    def _fork_pool(self, pipeline: Pipeline, run: RunRecord) -> ForkPoolExecutor:
        """Forked workers; from a warm parent that imports TensorFlow meanwhile when the pipeline uses it."""
        components = {id(t.component): t.component for t in pipeline.tasks.values()}
        modules = warm.modules_for(components.values())
        if not modules:
            return ForkPoolExecutor(pipeline, self.max_workers)

        def start() -> warm.WarmParent:
            return warm.WarmParent(
                lambda conn, parent_pid: worker_main(pipeline, conn, parent_pid),
                modules,
                os.path.join(self.home.logs, run.run_id, "warm-parent.log"),
            )

        # A task that may use TensorFlow waits for the warm parent, unless it is a source task (no
        # upstream: ingest, a query): those start at once, in a worker forked from the runner, while
        # the warm parent imports, and import what they need themselves.
        waits = {n: bool(t.upstream) and warm.uses_tensorflow(t.component) for n, t in pipeline.tasks.items()}
        return ForkPoolExecutor(
            pipeline, self.max_workers, start_warm=start, waits_for_warm=lambda job: waits.get(job.task or job.task_id, True)
        )

    def _emit(self, run: RunRecord, node: _Node, state: str, *, error: str = "") -> None:
        elapsed = time.monotonic() - node.started if node.started else 0.0
        self.listener(
            NodeEvent(
                run_id=run.run_id,
                node_id=node.task_id,
                state=state,
                elapsed_s=elapsed,
                attempt=node.attempt,
                error=error,
                log_path=node.job.log_path if node.job else "",
            )
        )


def _fingerprint_of(artifact: ArtifactRecord) -> str:
    return str(artifact.properties.get("fingerprint", artifact.id))


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _cluster_only(task: Any) -> dict[str, Any]:
    """What the task asks of a Kubernetes cluster, recorded; the local runner applies none of it.

    Every local task runs on this machine with what it has (no requests, limits,
    accelerator assignment, node selector or tolerations); a secret's variable is
    whatever the runner's own environment holds.
    """
    declared = {**task.options.resources.declared(), **task.options.placement.declared()}
    return {"kubernetes_only": declared} if declared else {}


def _exit_task_waits(pipeline: Pipeline, nodes: dict[str, _Node], task_id: str) -> bool:
    """Whether ``task_id`` is the exit task and a task it guards has not finished yet."""
    scope = pipeline.exit_scope
    if scope is None or task_id != scope.exit_task:
        return False
    return any(nodes[g].state in (WAITING, RUNNING, RETRYING, loops.EXPANDED) for g in scope.guarded if g in nodes)


def _final_status(pipeline: Pipeline, run: RunRecord, nodes: dict[str, _Node]) -> dict[str, Any]:
    """What the exit task's FinalStatus parameter receives, in the shape of KFP's PipelineTaskFinalStatus."""
    assert pipeline.exit_scope is not None
    guarded = [nodes[g] for g in sorted(pipeline.exit_scope.guarded) if g in nodes]
    # A loop's task stands for its iterations (those name what failed).
    guarded = [nodes[i] for n in guarded for i in n.iterations or ()] + [n for n in guarded if n.iterations is None]
    failed = [n for n in guarded if n.state not in (COMPLETE, CACHED, REUSED)]
    message = "; ".join(f"{n.task_id}: {n.error or n.state.lower()}" for n in failed)
    return {
        "state": "FAILED" if failed else "SUCCEEDED",
        "pipelineJobResourceName": run.run_id,
        "pipelineTaskName": pipeline.name,
        "error": {"code": 1 if failed else 0, "message": message[-2000:]},
    }


def _false_condition(pipeline: Pipeline, nodes: dict[str, _Node], node: _Node) -> str:
    """Why ``node`` is skipped by an ``If``/``Elif``/``Else`` arm that does not run, or "" when all run."""
    task = pipeline.tasks[node.task]
    # A loop template is tested only by the conditions around its loop (its iterations by the rest).
    scopes = task.scopes[: task.scopes.index(task.loop)] if task.loop is not None and node.index is None else task.scopes
    for branch in scopes:
        if hasattr(branch, "false_because"):
            reason = branch.false_because(lambda ref: nodes[loops.node_for(pipeline, node, ref.task_id)].values.get(ref.name))
            if reason:
                return reason
    return ""


def _parameters(pipeline: Pipeline, node: _Node, values: dict[str, Any], collected: dict[str, list]) -> dict[str, Any]:
    """The node's parameter values: an iteration's loop item and a fan-in's collected lists filled in."""
    if node.index is None:
        return pipeline.task_parameters(node.task, values, collected=collected)
    return pipeline.task_parameters(node.task, values, item=node.item, collected=collected)


def _iteration(node: _Node) -> dict[str, Any]:
    """What the execution of a loop iteration records about it."""
    return {"loop": {"task": node.task, "index": node.index, "item": node.item}} if node.index is not None else {}


def _job_input(artifact: ArtifactRecord) -> dict[str, Any]:
    return {"type": artifact.type, "uri": artifact.uri, "properties": artifact.properties, "id": artifact.id,
            "name": artifact.name}

