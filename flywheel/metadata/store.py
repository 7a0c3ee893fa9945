"""Lineage in ML Metadata (MLMD) on SQLite, safe for concurrent processes.

Model (TFX's): a ``pipeline`` context and a ``pipeline_run`` context; one
execution per node attempt series (type = component name) with its state,
parameters, timestamps and fingerprints; artifacts typed by TFX's names with
state PENDING -> LIVE (or ABANDONED); INPUT/OUTPUT events between them.

MLMD's SQLite backend aborts the whole process on "database is locked"
(tensorflow/tfx#199), so every MLMD call here runs under an exclusive
``flock`` on ``<home>/metadata.lock``: one writer (and reader) at a time,
across all processes that share the home.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import socket
import time
import uuid
from typing import Any, Iterator

from flywheel.errors import MetadataError, RunNotFoundError
from flywheel.home import Home
from flywheel.metadata.failures import metadata_failure
from flywheel.names import check_name
from flywheel.metadata.values import set_value, to_dict

PIPELINE_CONTEXT = "pipeline"
RUN_CONTEXT = "pipeline_run"

# Run states (a run context's custom property "state").
RUNNING = "RUNNING"
COMPLETE = "COMPLETE"
FAILED = "FAILED"


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclasses.dataclass
class ArtifactRecord:
    """An artifact as recorded in MLMD."""

    id: int
    type: str
    uri: str
    state: str
    name: str
    properties: dict[str, Any]
    create_ms: int


@dataclasses.dataclass
class RunRecord:
    """A pipeline run (an MLMD ``pipeline_run`` context)."""

    run_id: str
    context_id: int
    pipeline: str
    state: str
    start_ms: int
    end_ms: int | None
    parameters: dict[str, Any]
    pipeline_file: str
    trigger: str
    trigger_reason: str
    error: str
    pid: int
    host: str
    pid_start: str

    @property
    def duration_s(self) -> float | None:
        end = self.end_ms if self.end_ms is not None else (now_ms() if self.state == RUNNING else None)
        return None if end is None else max(0.0, (end - self.start_ms) / 1000)


@dataclasses.dataclass
class ExecutionRecord:
    """One execution of a node (possibly a cache hit)."""

    id: int
    node_id: str
    component: str
    run_id: str
    state: str
    start_ms: int
    end_ms: int | None
    parameters: dict[str, Any]
    cache_key: str
    code_fingerprint: str
    log_path: str
    attempts: int
    error: str
    cached_from: int | None
    inputs: dict[str, ArtifactRecord]
    outputs: dict[str, ArtifactRecord]
    scope: str = ""
    details: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def cached(self) -> bool:
        return self.state == "CACHED"

    @property
    def duration_s(self) -> float | None:
        if self.end_ms is None:
            return None
        return max(0.0, (self.end_ms - self.start_ms) / 1000)


def _process_start(pid: int) -> str:
    """Start time of a process (clock ticks since boot), to tell reused pids apart."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return fields[19]
    except (OSError, IndexError):
        return ""


def process_alive(pid: int, start: str) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not start or _process_start(pid) in ("", start)


class MetadataStore:
    """flywheel's view of one MLMD SQLite store (see the module docstring).

    Args:
        home: The project home holding ``metadata.sqlite``.
        read_only: Open SQLite read-only (the dashboard): nothing can be
            written, and orphaned runs are not reconciled.
    """

    def __init__(self, home: Home, *, read_only: bool = False) -> None:
        self.home = home
        self.read_only = read_only
        self._store: Any = None
        self._pb: Any = None
        self._type_ids: dict[tuple[str, str], int] = {}

    # -- plumbing -----------------------------------------------------------------

    @contextlib.contextmanager
    def locked(self) -> Iterator[Any]:
        """Holds the inter-process lock and yields the MLMD store."""
        os.makedirs(self.home.root, exist_ok=True)
        fd = os.open(self.home.metadata_lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            store = self._open()
            from ml_metadata import errors as mlmd_errors

            try:
                yield store
            except mlmd_errors.StatusError as exc:
                raise metadata_failure(self.home.metadata_db, exc) from exc
        finally:
            os.close(fd)  # closing the descriptor releases the flock

    def _open(self) -> Any:
        if self._store is None:
            from ml_metadata.metadata_store import metadata_store
            from ml_metadata.proto import metadata_store_pb2

            modes = metadata_store_pb2.SqliteMetadataSourceConfig
            config = metadata_store_pb2.ConnectionConfig()
            config.sqlite.filename_uri = self.home.metadata_db
            config.sqlite.connection_mode = modes.READONLY if self.read_only else modes.READWRITE_OPENCREATE
            try:
                self._store = metadata_store.MetadataStore(config)
            except Exception as exc:  # noqa: BLE001 - MLMD raises its own error types
                raise MetadataError(
                    f"Cannot open the ML Metadata store {self.home.metadata_db}"
                    f"{' read-only' if self.read_only else ''}: {exc}. "
                    "Check the path and its permissions, or use another --home."
                ) from exc
            self._pb = metadata_store_pb2
        return self._store

    def _type_id(self, store: Any, kind: str, name: str) -> int:
        key = (kind, name)
        if key not in self._type_ids:
            pb = self._pb
            if kind == "artifact":
                type_id = store.put_artifact_type(pb.ArtifactType(name=name))
            elif kind == "execution":
                type_id = store.put_execution_type(pb.ExecutionType(name=name))
            else:
                type_id = store.put_context_type(pb.ContextType(name=name))
            self._type_ids[key] = type_id
        return self._type_ids[key]

    def _artifact_record(self, store: Any, artifact: Any, type_names: dict[int, str] | None = None) -> ArtifactRecord:
        if type_names is not None and artifact.type_id in type_names:
            type_name = type_names[artifact.type_id]
        else:
            type_name = store.get_artifact_types_by_id([artifact.type_id])[0].name
            if type_names is not None:
                type_names[artifact.type_id] = type_name
        return ArtifactRecord(
            id=artifact.id,
            type=type_name,
            uri=artifact.uri,
            state=self._pb.Artifact.State.Name(artifact.state),
            name=artifact.name,
            properties=to_dict(artifact.custom_properties),
            create_ms=artifact.create_time_since_epoch,
        )

    # -- runs ---------------------------------------------------------------------

    def create_run(
        self,
        run_id: str,
        pipeline: str,
        *,
        parameters: dict[str, Any],
        pipeline_file: str,
        trigger: str = "manual",
        trigger_reason: str = "",
    ) -> RunRecord:
        """Records a new RUNNING run owned by this process.

        Raises:
            InvalidNameError: the run id or pipeline name cannot be a directory name.
            MetadataError: a run with this id exists, or the store cannot be written.
        """
        check_name("run", run_id)
        check_name("pipeline", pipeline)
        with self.locked() as store:
            pb = self._pb
            pipeline_ctx = store.get_context_by_type_and_name(PIPELINE_CONTEXT, pipeline)
            if pipeline_ctx is None:
                pipeline_ctx = pb.Context(type_id=self._type_id(store, "context", PIPELINE_CONTEXT), name=pipeline)
                pipeline_ctx.id = store.put_contexts([pipeline_ctx])[0]
            ctx = pb.Context(type_id=self._type_id(store, "context", RUN_CONTEXT), name=run_id)
            props = {
                "pipeline": pipeline,
                "state": RUNNING,
                "start_ms": now_ms(),
                "parameters": json.dumps(parameters, sort_keys=True, default=str),
                "pipeline_file": pipeline_file,
                "trigger": trigger,
                "trigger_reason": trigger_reason,
                "pid": os.getpid(),
                "host": socket.gethostname(),
                "pid_start": _process_start(os.getpid()),
            }
            for key, value in props.items():
                set_value(ctx.custom_properties, key, value)
            from ml_metadata import errors as mlmd_errors

            try:
                ctx.id = store.put_contexts([ctx])[0]
            except mlmd_errors.AlreadyExistsError as exc:
                raise MetadataError(f"A run named {run_id} already exists; pass another --run-id.") from exc
            store.put_parent_contexts([pb.ParentContext(child_id=ctx.id, parent_id=pipeline_ctx.id)])
            return self._run_record(ctx)

    def _run_record(self, ctx: Any) -> RunRecord:
        props = to_dict(ctx.custom_properties)
        try:
            params = json.loads(props.get("parameters") or "{}")
        except ValueError:
            params = {}
        return RunRecord(
            run_id=ctx.name,
            context_id=ctx.id,
            pipeline=props.get("pipeline", ""),
            state=props.get("state", ""),
            start_ms=int(props.get("start_ms") or ctx.create_time_since_epoch),
            end_ms=props.get("end_ms"),
            parameters=params,
            pipeline_file=props.get("pipeline_file", ""),
            trigger=props.get("trigger", "manual"),
            trigger_reason=props.get("trigger_reason", ""),
            error=props.get("error", ""),
            pid=int(props.get("pid") or 0),
            host=props.get("host", ""),
            pid_start=props.get("pid_start", ""),
        )

    def update_run(self, run_id: str, **changes: Any) -> RunRecord:
        """Updates run properties (state, end_ms, error, pid, ...)."""
        with self.locked() as store:
            ctx = store.get_context_by_type_and_name(RUN_CONTEXT, run_id)
            if ctx is None:
                raise RunNotFoundError(f"No run with id '{run_id}'.")
            for key, value in changes.items():
                if value is None:
                    if key in ctx.custom_properties:
                        del ctx.custom_properties[key]
                else:
                    set_value(ctx.custom_properties, key, value)
            store.put_contexts([ctx])
            return self._run_record(ctx)

    def claim_run(self, run_id: str) -> RunRecord:
        """Makes this process the owner of a run again (for --resume)."""
        return self.update_run(
            run_id,
            state=RUNNING,
            end_ms=None,
            error=None,
            pid=os.getpid(),
            host=socket.gethostname(),
            pid_start=_process_start(os.getpid()),
        )

    def get_run(self, run_id: str) -> RunRecord:
        """The run with this id or unique id prefix.

        Raises:
            RunNotFoundError: no run (or several runs) match.
        """
        self.reconcile_orphans()
        with self.locked() as store:
            ctx = store.get_context_by_type_and_name(RUN_CONTEXT, run_id)
            if ctx is not None:
                return self._run_record(ctx)
            from ml_metadata.metadata_store import metadata_store

            safe = run_id.replace("'", "''")
            matches = store.get_contexts(
                list_options=metadata_store.ListOptions(
                    limit=3, filter_query=f"type = '{RUN_CONTEXT}' AND name LIKE '{safe}%'"
                ),
            )
        if len(matches) == 1:
            return self._run_record(matches[0])
        if not matches:
            raise RunNotFoundError(f"No run with id '{run_id}'. List runs with: flywheel runs")
        raise RunNotFoundError(
            f"Run id '{run_id}' is ambiguous ({', '.join(m.name for m in matches)}, ...); give more of it."
        )

    def list_runs(self, limit: int = 20, *, before_ms: int | None = None, pipeline: str | None = None) -> list[RunRecord]:
        """Newest runs first; page with ``before_ms`` (a previous page's oldest start)."""
        self.reconcile_orphans()
        from ml_metadata.metadata_store import metadata_store

        filters = [f"type = '{RUN_CONTEXT}'"]
        if before_ms is not None:
            filters.append(f"create_time_since_epoch < {int(before_ms)}")
        if pipeline:
            safe = pipeline.replace("'", "''")
            filters.append(f"custom_properties.pipeline.string_value = '{safe}'")
        options = metadata_store.ListOptions(
            limit=limit,
            order_by=metadata_store.OrderByField.CREATE_TIME,
            is_asc=False,
            filter_query=" AND ".join(filters),
        )
        with self.locked() as store:
            contexts = store.get_contexts(list_options=options)
        return [self._run_record(ctx) for ctx in contexts]

    def pipelines(self) -> list[str]:
        """Names of the pipelines that have runs."""
        with self.locked() as store:
            return sorted(ctx.name for ctx in store.get_contexts_by_type(PIPELINE_CONTEXT))

    def reconcile_orphans(self) -> list[str]:
        """Marks RUNNING runs whose runner process died as FAILED; returns their ids.

        A runner killed with SIGKILL cannot record its own end; whoever looks
        next records it, so lineage shows the executions as failed. A
        read-only store leaves that to a writer and returns [].
        """
        if self.read_only:
            return []
        from ml_metadata.metadata_store import metadata_store

        host = socket.gethostname()
        with self.locked() as store:
            running = store.get_contexts(
                list_options=metadata_store.ListOptions(
                    filter_query=f"type = '{RUN_CONTEXT}' AND custom_properties.state.string_value = '{RUNNING}'"
                ),
            )
            dead = []
            for ctx in running:
                run = self._run_record(ctx)
                if run.host == host and not process_alive(run.pid, run.pid_start):
                    dead.append(ctx)
            for ctx in dead:
                self._fail_run_locked(store, ctx, f"runner process {to_dict(ctx.custom_properties).get('pid')} ended without finishing (killed?)")
        for ctx in dead:
            staging = os.path.join(self.home.staging, ctx.name)
            if os.path.isdir(staging):
                import shutil

                shutil.rmtree(staging, ignore_errors=True)
        return [ctx.name for ctx in dead]

    def _fail_run_locked(self, store: Any, ctx: Any, error: str) -> None:
        pb = self._pb
        end = now_ms()
        for execution in store.get_executions_by_context(ctx.id):
            if execution.last_known_state in (pb.Execution.RUNNING, pb.Execution.NEW):
                execution.last_known_state = pb.Execution.FAILED
                set_value(execution.custom_properties, "end_ms", end)
                set_value(execution.custom_properties, "error", error)
                store.put_executions([execution])
                events = store.get_events_by_execution_ids([execution.id])
                out_ids = [e.artifact_id for e in events if e.type == pb.Event.OUTPUT]
                abandoned = []
                for artifact in store.get_artifacts_by_id(out_ids):
                    if artifact.state == pb.Artifact.PENDING:
                        artifact.state = pb.Artifact.ABANDONED
                        abandoned.append(artifact)
                if abandoned:
                    store.put_artifacts(abandoned)
        set_value(ctx.custom_properties, "state", FAILED)
        set_value(ctx.custom_properties, "end_ms", end)
        set_value(ctx.custom_properties, "error", error)
        store.put_contexts([ctx])

    # -- executions ---------------------------------------------------------------

    def start_execution(
        self,
        run: RunRecord,
        node_id: str,
        component: str,
        *,
        parameters: dict[str, Any],
        cache_key: str,
        code_fingerprint: str,
        log_path: str,
        inputs: dict[str, ArtifactRecord],
        outputs: dict[str, tuple[str, str]],
        scope: str = "",
        details: dict[str, Any] | None = None,
    ) -> tuple[int, dict[str, int]]:
        """Records a RUNNING execution with PENDING output artifacts.

        Args:
            outputs: output name -> (artifact type name, final URI).
            scope: What ``latest()`` looks back within (e.g. ``model_name=churn``).
            details: JSON-able notes shown by ``runs show`` (cache reason, data sources).

        Returns:
            The execution id and the output artifact ids by output name.
        """
        with self.locked() as store:
            pb = self._pb
            execution = self._new_execution(
                store,
                run,
                node_id,
                component,
                pb.Execution.RUNNING,
                parameters=parameters,
                cache_key=cache_key,
                code_fingerprint=code_fingerprint,
                log_path=log_path,
                scope=scope,
                details=details,
            )
            pairs = self._input_events(store, inputs)
            names = []
            for name, (type_name, uri) in outputs.items():
                artifact = pb.Artifact(
                    type_id=self._type_id(store, "artifact", type_name),
                    uri=uri,
                    name=f"{run.run_id}/{node_id}/{name}/{uuid.uuid4().hex[:8]}",
                    state=pb.Artifact.PENDING,
                )
                pairs.append((artifact, self._event(pb.Event.OUTPUT, name)))
                names.append(name)
            execution_id, artifact_ids, _ = store.put_execution(execution, pairs, self._run_contexts(store, run))
        out_ids = dict(zip(names, artifact_ids[len(inputs):]))
        return execution_id, out_ids

    def _event(self, kind: int, name: str) -> Any:
        pb = self._pb
        event = pb.Event(type=kind)
        event.path.steps.add().key = name
        return event

    def complete_execution(
        self,
        execution_id: int,
        *,
        outputs: dict[int, dict[str, Any]],
        attempts: int,
        values: dict[str, Any] | None = None,
    ) -> None:
        """Marks an execution COMPLETE and its outputs LIVE with their properties.

        Args:
            outputs: artifact id -> properties (including ``fingerprint``).
            values: The node's output parameter values, kept as ``details.output_values``.
        """
        with self.locked() as store:
            pb = self._pb
            artifacts = store.get_artifacts_by_id(list(outputs))
            for artifact in artifacts:
                artifact.state = pb.Artifact.LIVE
                for key, value in outputs[artifact.id].items():
                    set_value(artifact.custom_properties, key, value)
            if artifacts:
                store.put_artifacts(artifacts)
            execution = store.get_executions_by_id([execution_id])[0]
            execution.last_known_state = pb.Execution.COMPLETE
            if values:
                details = json.loads(to_dict(execution.custom_properties).get("details") or "{}")
                details["output_values"] = values
                set_value(execution.custom_properties, "details", json.dumps(details, sort_keys=True, default=str))
            set_value(execution.custom_properties, "end_ms", now_ms())
            set_value(execution.custom_properties, "attempts", attempts)
            store.put_executions([execution])

    def fail_execution(self, execution_id: int, *, error: str, attempts: int) -> None:
        """Marks an execution FAILED and its PENDING outputs ABANDONED."""
        with self.locked() as store:
            pb = self._pb
            execution = store.get_executions_by_id([execution_id])[0]
            execution.last_known_state = pb.Execution.FAILED
            set_value(execution.custom_properties, "end_ms", now_ms())
            set_value(execution.custom_properties, "attempts", attempts)
            set_value(execution.custom_properties, "error", error[-2000:])
            store.put_executions([execution])
            events = store.get_events_by_execution_ids([execution_id])
            ids = [e.artifact_id for e in events if e.type == pb.Event.OUTPUT]
            pending = [a for a in store.get_artifacts_by_id(ids) if a.state == pb.Artifact.PENDING]
            for artifact in pending:
                artifact.state = pb.Artifact.ABANDONED
            if pending:
                store.put_artifacts(pending)

    def record_cached(
        self,
        run: RunRecord,
        node_id: str,
        component: str,
        *,
        parameters: dict[str, Any],
        cache_key: str,
        code_fingerprint: str,
        source: ExecutionRecord,
        inputs: dict[str, ArtifactRecord],
        scope: str = "",
        details: dict[str, Any] | None = None,
    ) -> int:
        """Records a CACHED execution whose outputs are a previous execution's."""
        with self.locked() as store:
            pb = self._pb
            execution = self._new_execution(
                store,
                run,
                node_id,
                component,
                pb.Execution.CACHED,
                parameters=parameters,
                cache_key=cache_key,
                code_fingerprint=code_fingerprint,
                log_path=source.log_path,
                scope=scope,
                details=details,
            )
            set_value(execution.custom_properties, "end_ms", now_ms())
            set_value(execution.custom_properties, "cached_from", source.id)
            pairs = self._input_events(store, inputs)
            for name, record in source.outputs.items():
                pairs.append((store.get_artifacts_by_id([record.id])[0], self._event(pb.Event.OUTPUT, name)))
            execution_id, _, _ = store.put_execution(execution, pairs, self._run_contexts(store, run))
            return execution_id

    def _new_execution(
        self,
        store: Any,
        run: RunRecord,
        node_id: str,
        component: str,
        state: int,
        *,
        parameters: dict[str, Any],
        cache_key: str,
        code_fingerprint: str,
        log_path: str,
        scope: str = "",
        details: dict[str, Any] | None = None,
    ) -> Any:
        execution = self._pb.Execution(
            type_id=self._type_id(store, "execution", component),
            name=f"{run.run_id}/{node_id}/{uuid.uuid4().hex[:8]}",
            last_known_state=state,
        )
        for key, value in {
            "node_id": node_id,
            "component": component,
            "run_id": run.run_id,
            "start_ms": now_ms(),
            "parameters": json.dumps(parameters, sort_keys=True, default=str),
            "cache_key": cache_key,
            "code_fingerprint": code_fingerprint,
            "log_path": log_path,
            "attempts": 0,
            "scope": scope,
            "details": json.dumps(details or {}, sort_keys=True, default=str),
        }.items():
            set_value(execution.custom_properties, key, value)
        return execution

    def _input_events(self, store: Any, inputs: dict[str, ArtifactRecord]) -> list[tuple[Any, Any]]:
        if not inputs:
            return []
        by_id = {a.id: a for a in store.get_artifacts_by_id([r.id for r in inputs.values()])}
        return [(by_id[record.id], self._event(self._pb.Event.INPUT, name)) for name, record in inputs.items()]

    def _run_contexts(self, store: Any, run: RunRecord) -> list[Any]:
        """The run context and its pipeline context, to attribute an execution to both."""
        return store.get_contexts_by_id([run.context_id]) + store.get_parent_contexts_by_context(run.context_id)

    def _execution_records(self, store: Any, executions: list[Any]) -> list[ExecutionRecord]:
        pb = self._pb
        if not executions:
            return []
        events = store.get_events_by_execution_ids([e.id for e in executions])
        artifact_ids = sorted({e.artifact_id for e in events})
        type_names: dict[int, str] = {}
        artifacts = {
            a.id: self._artifact_record(store, a, type_names) for a in store.get_artifacts_by_id(artifact_ids)
        }
        by_execution: dict[int, list[Any]] = {}
        for event in events:
            by_execution.setdefault(event.execution_id, []).append(event)
        records = []
        for execution in executions:
            props = to_dict(execution.custom_properties)
            inputs: dict[str, ArtifactRecord] = {}
            outputs: dict[str, ArtifactRecord] = {}
            for event in by_execution.get(execution.id, []):
                name = event.path.steps[0].key if event.path.steps else str(event.artifact_id)
                if event.artifact_id not in artifacts:
                    continue
                if event.type == pb.Event.INPUT:
                    inputs[name] = artifacts[event.artifact_id]
                elif event.type == pb.Event.OUTPUT:
                    outputs[name] = artifacts[event.artifact_id]
            try:
                params = json.loads(props.get("parameters") or "{}")
                details = json.loads(props.get("details") or "{}")
            except ValueError:
                params, details = {}, {}
            records.append(
                ExecutionRecord(
                    id=execution.id,
                    node_id=props.get("node_id", ""),
                    component=props.get("component", ""),
                    run_id=props.get("run_id", ""),
                    state="SKIPPED" if props.get("skipped") else pb.Execution.State.Name(execution.last_known_state),
                    start_ms=int(props.get("start_ms") or execution.create_time_since_epoch),
                    end_ms=props.get("end_ms"),
                    parameters=params,
                    cache_key=props.get("cache_key", ""),
                    code_fingerprint=props.get("code_fingerprint", ""),
                    log_path=props.get("log_path", ""),
                    attempts=int(props.get("attempts") or 0),
                    error=props.get("error", ""),
                    cached_from=props.get("cached_from"),
                    inputs=inputs,
                    outputs=outputs,
                    scope=props.get("scope", ""),
                    details=details,
                )
            )
        return records

    def find_cached(self, cache_key: str) -> list[ExecutionRecord]:
        """COMPLETE executions with this cache key, newest first."""
        from ml_metadata.metadata_store import metadata_store

        options = metadata_store.ListOptions(
            order_by=metadata_store.OrderByField.ID,
            is_asc=False,
            limit=5,
            filter_query=(
                f"custom_properties.cache_key.string_value = '{cache_key}' AND last_known_state = COMPLETE"
            ),
        )
        with self.locked() as store:
            return self._execution_records(store, store.get_executions(list_options=options))

    def run_executions(self, run: RunRecord) -> list[ExecutionRecord]:
        """All executions of a run, oldest first."""
        with self.locked() as store:
            executions = sorted(store.get_executions_by_context(run.context_id), key=lambda e: e.id)
            return self._execution_records(store, executions)

    def latest_nodes(self, run: RunRecord) -> dict[str, ExecutionRecord]:
        """The newest execution of each node of a run."""
        latest: dict[str, ExecutionRecord] = {}
        for record in self.run_executions(run):
            latest[record.node_id] = record
        return latest

    def node_history(
        self, pipeline: str, node_id: str, *, exclude_run: str, limit: int = 50, scope: str | None = None
    ) -> list[ExecutionRecord]:
        """Completed (or cached) executions of ``node_id`` in earlier runs of ``pipeline``, newest first.

        ``scope`` (e.g. ``model_name=churn``) keeps only executions recorded with that scope.
        """
        from ml_metadata.metadata_store import metadata_store

        safe_pipeline = pipeline.replace("'", "''")
        safe_node = node_id.replace("'", "''")
        options = metadata_store.ListOptions(
            order_by=metadata_store.OrderByField.ID,
            is_asc=False,
            limit=limit,
            filter_query=(
                f"custom_properties.node_id.string_value = '{safe_node}' AND "
                f"contexts_a.type = '{PIPELINE_CONTEXT}' AND contexts_a.name = '{safe_pipeline}' AND "
                "(last_known_state = COMPLETE OR last_known_state = CACHED)"
                + ("" if scope is None else f" AND custom_properties.scope.string_value = '{scope.replace(chr(39), chr(39) * 2)}'")
            ),
        )
        with self.locked() as store:
            records = self._execution_records(store, store.get_executions(list_options=options))
        return [r for r in records if r.run_id != exclude_run]

    # -- artifacts and lineage ----------------------------------------------------

    def get_artifact(self, id_or_uri: str) -> ArtifactRecord:
        """An artifact by numeric id or by URI (the newest with that URI).

        Raises:
            MetadataError: nothing matches.
        """
        with self.locked() as store:
            found = []
            if id_or_uri.isdigit():
                found = store.get_artifacts_by_id([int(id_or_uri)])
            if not found:
                uri = os.path.abspath(id_or_uri) if os.path.exists(id_or_uri) else id_or_uri
                found = sorted(store.get_artifacts_by_uri(uri), key=lambda a: a.id)
                found = found[-1:]
            if not found:
                raise MetadataError(
                    f"No artifact with id or URI '{id_or_uri}'. Output URIs are listed by: flywheel runs show RUN"
                )
            return self._artifact_record(store, found[0])

    def lineage(self, artifact_id: int, *, direction: str = "upstream", max_depth: int = 50) -> list[ExecutionRecord]:
        """Executions upstream (producers, transitively) or downstream (consumers) of an artifact.

        Returns executions in discovery order (nearest first). A CACHED
        execution is followed to the execution that really produced its outputs.
        """
        pb_input, pb_output = None, None
        seen_artifacts = {artifact_id}
        frontier = [artifact_id]
        seen_executions: set[int] = set()
        ordered: list[Any] = []
        with self.locked() as store:
            pb = self._pb
            pb_input, pb_output = pb.Event.INPUT, pb.Event.OUTPUT
            link, follow = (pb_output, pb_input) if direction == "upstream" else (pb_input, pb_output)
            depth = 0
            while frontier and depth < max_depth:
                depth += 1
                events = store.get_events_by_artifact_ids(frontier)
                execution_ids = sorted({e.execution_id for e in events if e.type == link} - seen_executions)
                if not execution_ids:
                    break
                executions = store.get_executions_by_id(execution_ids)
                # Prefer the execution that really ran over CACHED ones that re-recorded it.
                real = [e for e in executions if e.last_known_state != pb.Execution.CACHED] or executions
                for execution in executions:
                    seen_executions.add(execution.id)
                ordered.extend(real)
                next_events = store.get_events_by_execution_ids([e.id for e in real])
                frontier = sorted({e.artifact_id for e in next_events if e.type == follow} - seen_artifacts)
                seen_artifacts.update(frontier)
            return self._execution_records(store, ordered)
