"""The retraining trigger: a ``retrain`` alert starts the training pipeline, debounced.

Two brakes keep one drift from starting a storm of runs: the rule's cool-down
(the rule does not fire again within it, see ``monitor``) and
``retrain.max_runs`` per ``retrain.period`` for the model
(``MonitorStore.count_retrains``), counted over every rule.

Locally the run is ``flywheel run <pipeline> --trigger alert --trigger-reason
"<rule>: <evidence>" --run-id <id> -p k=v`` in its own process (the
scheduler's pattern; values other than strings travel as JSON), and the
launch counts only once the run is recorded in the metadata store; with a
Kubeflow host it is ``kubeflow.client.submit``, and every ``newest:`` value
must resolve to an object-store URI (``s3://``, ``minio://``, ``gs://``), the
one kind of path every pod can read. A launch that fails is
recorded on the alert as ``{"failed": why}``, claims no run id and does not
count against ``max_runs``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import subprocess
import sys
import time
from typing import Any, Callable, Mapping

from flywheel import storage
from flywheel.data_sources import DataSourceError, is_pattern, resolve_pattern
from flywheel.dsl.parameters import param_argument
from flywheel.errors import FlywheelError, PipelineFileError, RunError, RunNotFoundError
from flywheel.home import Home
from flywheel.monitoring.rules import RetrainSettings
from flywheel.monitoring.store import Alert, MonitorStore
from flywheel.names import check_name

NEWEST_PREFIX = "newest:"
START_TIMEOUT_S = 120.0  # pipeline files that import TensorFlow at load take a few seconds
START_POLL_S = 0.2


@dataclasses.dataclass(frozen=True)
class RetrainRequest:
    """What one retraining run is started with."""

    model: str
    alert_id: int
    rule: str
    reason: str
    run_id: str
    settings: RetrainSettings
    parameters: Mapping[str, Any]


Launcher = Callable[[RetrainRequest], str]  # starts the run; returns its run id


def _modified(uri: str) -> float:
    """Last modification of a file, or of the newest object under a prefix."""
    if not storage.is_object_uri(uri):
        return os.path.getmtime(uri)
    entry = storage.info(uri)
    return entry.mtime if entry is not None else max((e.mtime for e in storage.list_files(uri, recursive=True)), default=0.0)


def resolve_parameters(parameters: Mapping[str, Any], *, pods_read: bool = False) -> dict[str, Any]:
    """Replaces ``"newest:<glob or span pattern>"`` values with the newest matching path or URI.

    A glob (local or ``s3://b/incoming/*.csv``) takes the match modified last;
    a span pattern (``s3://b/data/span-{SPAN}/``) takes the newest span.

    Args:
        parameters: The retrain section's parameters.
        pods_read: The run goes to Kubeflow: a value must resolve to an object-store URI.

    Raises:
        FlywheelError: nothing matches, or a Kubeflow run would get a local path.
    """
    resolved = {}
    for key, value in parameters.items():
        if isinstance(value, str) and value.startswith(NEWEST_PREFIX):
            pattern = value[len(NEWEST_PREFIX) :]
            if is_pattern(pattern):
                try:
                    value = resolve_pattern(pattern)["paths"][-1]
                except DataSourceError as exc:
                    raise FlywheelError(f"Retrain parameter '{key}': {exc}") from exc
            else:
                matches = storage.glob(pattern)
                if not matches:
                    raise FlywheelError(
                        f"Retrain parameter '{key}': nothing matches {pattern!r}; put the newest data there or fix the glob."
                    )
                value = max(matches, key=_modified)
            if pods_read and not storage.is_object_uri(value):
                raise FlywheelError(
                    f"Retrain parameter '{key}' resolved to the local path {value!r}, which Kubeflow pods cannot "
                    "read; point it at object storage (newest:s3://BUCKET/data/span-{SPAN}/)."
                )
        resolved[key] = value
    return resolved


def local_launcher(home: Home, *, start_timeout_s: float = START_TIMEOUT_S) -> Launcher:
    """Starts ``flywheel run`` in its own process; returns the run id once the run is recorded.

    It does not wait for the run to finish, only for it to exist (see ``wait_until_recorded``).
    """

    def launch(request: RetrainRequest) -> str:
        from flywheel.pipeline_file import pipeline_path

        settings = request.settings
        try:
            path = pipeline_path(settings.pipeline)
        except PipelineFileError as exc:
            raise PipelineFileError(f"retrain.pipeline {settings.pipeline!r}: {exc}") from exc
        args = [sys.executable, "-m", "flywheel", "--home", home.root, "run", path]
        if settings.pipeline_name:
            args += ["--pipeline", settings.pipeline_name]
        args += ["--run-id", request.run_id, "--trigger", "alert", "--trigger-reason", request.reason]
        for key, value in request.parameters.items():
            args += ["--param", param_argument(key, value)]
        log_dir = os.path.join(home.logs, "monitor")
        os.makedirs(log_dir, exist_ok=True)
        log_path = os.path.join(log_dir, f"{check_name('run', request.run_id)}.out")
        with open(log_path, "wb") as log:
            process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)  # noqa: S603
        wait_until_recorded(process, home, request.run_id, log_path, timeout_s=start_timeout_s)
        return request.run_id

    return launch


def wait_until_recorded(process: subprocess.Popen, home: Home, run_id: str, log_path: str, *, timeout_s: float) -> None:
    """Returns once run ``run_id`` is in the metadata store; raises if its process ends or stalls first.

    A ``flywheel run`` that exits before recording its run (a bad parameter,
    a pipeline file that does not load) never existed, so the alert must not
    claim it and it must not count against ``retrain.max_runs``.

    Raises:
        RunError: the process exited, or did not record the run within
            ``timeout_s`` (it is then stopped, so no unrecorded run goes on).
    """
    from flywheel.metadata.store import MetadataStore

    store = MetadataStore(home)
    deadline = time.monotonic() + timeout_s
    while True:
        exit_status = process.poll()
        if _recorded(store, run_id):
            return
        if exit_status is not None:
            raise RunError(
                f"The retraining run {run_id} did not start: `flywheel run` exited with status {exit_status}: "
                f"{_last_line(log_path)} (full output: {log_path}). Fix the retrain section of the rules file."
            )
        if time.monotonic() >= deadline:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            process.wait()
            raise RunError(
                f"The retraining run {run_id} did not record itself within {timeout_s:g}s, so it was stopped "
                f"(output: {log_path}). Check that the pipeline file loads quickly with `flywheel run`."
            )
        time.sleep(START_POLL_S)


def _recorded(store: Any, run_id: str) -> bool:
    try:
        store.get_run(run_id)
    except RunNotFoundError:
        return False
    return True


def _last_line(log_path: str) -> str:
    with open(log_path, encoding="utf-8", errors="replace") as log:
        lines = [line.strip() for line in log if line.strip()]
    return lines[-1] if lines else "(no output)"


def kubeflow_launcher(host: str) -> Launcher:
    """Submits the run to Kubeflow Pipelines; the KFP run name carries the alert."""

    def launch(request: RetrainRequest) -> str:
        from flywheel.kubeflow.client import submit
        from flywheel.kubeflow.task_env import ObjectStoreEnv

        settings = request.settings
        object_store = ObjectStoreEnv(settings.object_store_secret, settings.object_store_endpoint)
        run_id, _url = submit(
            settings.pipeline,
            host,
            params=dict(request.parameters),
            experiment=settings.experiment,
            namespace=settings.namespace,
            image=settings.image,
            pipeline_name=settings.pipeline_name,
            run_name=f"{request.run_id} ({request.reason})"[:250],
            service_account=settings.service_account,
            pipeline_root=settings.pipeline_root,
            registry_pvc=settings.registry_pvc,
            object_store=object_store or None,
        )
        return run_id

    return launch


def trigger_retrain(
    store: MonitorStore,
    alert: Alert,
    settings: RetrainSettings,
    launcher: Launcher,
    *,
    now: float,
) -> dict[str, Any]:
    """Starts a retraining run for a stored alert unless the rate limit says no.

    Records the run id on the alert (``set_alert_run``) when a run starts.

    Returns:
        What happened, for the alert's evidence: ``{"started": run_id}``,
        ``{"suppressed": why}`` or ``{"failed": error}``.
    """
    if alert.id is None:
        raise FlywheelError(
            "trigger_retrain needs a stored alert (with an id); add it with MonitorStore.add_alert first."
        )
    recent = store.count_retrains(alert.model, now - settings.period_s)
    if recent >= settings.max_runs:
        return {
            "suppressed": f"{recent} retraining run(s) for '{alert.model}' in the last {settings.period_s / 3600:g}h "
            f"(retrain.max_runs = {settings.max_runs})"
        }
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(now))
    run_id = f"retrain-{alert.model}-{stamp}-a{alert.id}"
    reason = f"alert #{alert.id} {alert.rule}: {alert.message}"
    try:
        parameters = resolve_parameters(settings.parameters, pods_read=bool(settings.host))
        request = RetrainRequest(alert.model, alert.id, alert.rule, reason, run_id, settings, parameters)
        run_id = launcher(request)
    except (FlywheelError, OSError) as exc:
        return {"failed": f"{type(exc).__name__}: {exc}"}
    store.set_alert_run(alert.id, run_id)
    return {"started": run_id, "parameters": parameters, "pipeline": settings.pipeline, "host": settings.host}
