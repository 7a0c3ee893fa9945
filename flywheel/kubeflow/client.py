"""Submitting, listing and scheduling runs on Kubeflow Pipelines.

A thin layer over ``kfp.Client`` (kfp 2.13, KFP API v2beta1) that adds what a
command line needs: pipelines given as a flywheel ``Pipeline``, a pipeline
file or a compiled YAML; parameters checked (and ``--param`` strings coerced)
before anything is sent; cron checked before a recurring run is created; and
every connection or API failure turned into one clear line
(``KubeflowConnectionError``) instead of a traceback.

Before the first call the client checks ``GET <host>/apis/v2beta1/healthz``
with a short timeout, so an unreachable host fails in seconds rather than
inside kfp's own retry loop.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import warnings
from typing import Any, Iterator, Mapping

from flywheel.dsl.pipeline import Pipeline
from flywheel.errors import ParameterError, PipelineFileError
from flywheel.kubeflow.cron import to_kfp_cron
from flywheel.kubeflow.errors import KubeflowConnectionError, ScheduleError

HEALTHZ_PATH = "/apis/v2beta1/healthz"
TOKEN_ENV = "FLYWHEEL_KFP_TOKEN"
HEALTHZ_TIMEOUT_S = 10.0
_COMPILED_SUFFIXES = (".yaml", ".yml", ".json")


def _normalise_host(host: str) -> str:
    if not host:
        raise KubeflowConnectionError("No Kubeflow Pipelines host given; pass --host URL (e.g. http://localhost:8080).")
    host = host.rstrip("/")
    if not host.startswith(("http://", "https://")):
        host = "https://" + host  # what kfp.Client does with a bare host name
    return host


def resolve_token(token: str | None = None, token_file: str | None = None) -> str | None:
    """The bearer token: ``--token``, else the contents of ``--token-file``, else ``$FLYWHEEL_KFP_TOKEN``.

    A file or the environment keeps the token out of ``ps`` and shell history.

    Raises:
        KubeflowConnectionError: the token file cannot be read or is empty.
    """
    if token:
        return token
    if token_file:
        try:
            with open(os.path.expanduser(token_file), encoding="utf-8") as handle:
                text = handle.read().strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise KubeflowConnectionError(
                f"Cannot read the KFP token file {token_file}: {getattr(exc, 'strerror', None) or exc}; "
                "pass a readable file holding the bearer token (e.g. a service account token)."
            ) from None
        if not text:
            raise KubeflowConnectionError(f"The KFP token file {token_file} is empty; write the bearer token into it.")
        return text
    return os.environ.get(TOKEN_ENV) or None


def _same_origin(first: str, second: str) -> bool:
    a, b = urllib.parse.urlsplit(first), urllib.parse.urlsplit(second)
    return (a.scheme, a.hostname, a.port) == (b.scheme, b.hostname, b.port)


class _TokenStaysHome(urllib.request.HTTPRedirectHandler):
    """Follows redirects, but the Authorization header only to the same scheme, host and port."""

    def redirect_request(self, req: Any, fp: Any, code: int, msg: str, headers: Any, newurl: str) -> Any:
        forwarded = super().redirect_request(req, fp, code, msg, headers, newurl)
        if forwarded is not None and not _same_origin(req.full_url, newurl):
            for key in [k for k in forwarded.headers if k.lower() == "authorization"]:
                del forwarded.headers[key]
        return forwarded


def check_health(
    host: str, *, existing_token: str | None = None, timeout: float = HEALTHZ_TIMEOUT_S
) -> dict[str, Any]:
    """Asks the KFP API whether it is up; returns its healthz answer.

    Raises:
        KubeflowConnectionError: the host cannot be reached or does not answer
            like the KFP v2beta1 API.
    """
    url = _normalise_host(host) + HEALTHZ_PATH
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    if existing_token:
        request.add_header("Authorization", f"Bearer {existing_token}")
    opener = urllib.request.build_opener(_TokenStaysHome())
    try:
        with opener.open(request, timeout=timeout) as response:  # noqa: S310 - user-given API host
            body = response.read()
    except urllib.error.HTTPError as exc:
        raise KubeflowConnectionError(
            f"Kubeflow Pipelines at {host} answered GET {HEALTHZ_PATH} with HTTP {exc.code} {exc.reason}; "
            "check --host (the KFP API, e.g. http://localhost:8080 after "
            "'kubectl port-forward svc/ml-pipeline-ui 8080:80 -n kubeflow') and --token."
        ) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise KubeflowConnectionError(
            f"Cannot reach Kubeflow Pipelines at {host}: GET {HEALTHZ_PATH} failed ({reason}); "
            "check --host and that the KFP API is reachable."
        ) from None
    try:
        answer = json.loads(body or b"{}")
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        raise KubeflowConnectionError(
            f"{host} is not a Kubeflow Pipelines API: GET {HEALTHZ_PATH} did not return JSON "
            "(a login page? pass --token, or point --host at the API)."
        )
    return answer


def _discard(*args: Any, **kwargs: Any) -> None:
    """Prints nothing."""


def _quiet_kfp_client() -> None:
    """kfp.Client prints links ("Run details: ...") itself; flywheel's callers print their own.

    Its module's ``print`` is shadowed, not ``sys.stdout`` swapped: ``sys.stdout`` is the whole
    process's, and another thread's output while a call ran (a server's, a scheduler's, the task
    logs of an in-process KFP) went into the swapped-in buffer or was left writing to it.
    """
    from kfp.client import client as kfp_client_module

    kfp_client_module.print = _discard  # module globals shadow builtins for that module only


@contextlib.contextmanager
def _api_call(host: str, what: str) -> Iterator[None]:
    """Turns kfp / HTTP failures of one API call into a one-line error."""
    import kfp_server_api
    import urllib3

    _quiet_kfp_client()
    try:
        yield
    except kfp_server_api.ApiException as exc:
        detail = _api_message(exc)
        raise KubeflowConnectionError(
            f"Kubeflow Pipelines at {host} refused to {what}: HTTP {exc.status} {exc.reason or ''}".rstrip()
            + (f": {detail}" if detail else "")
        ) from None
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        raise KubeflowConnectionError(f"Cannot reach Kubeflow Pipelines at {host} to {what}: {exc}") from None


def _api_message(exc: Any) -> str:
    body = getattr(exc, "body", None)
    if not body:
        return ""
    try:
        data = json.loads(body)
    except (TypeError, ValueError):
        return str(body).strip().splitlines()[0][:300]
    if isinstance(data, dict):
        return str(data.get("message") or data.get("error") or "")[:300]
    return ""


def connect(host: str, *, namespace: str | None = None, existing_token: str | None = None) -> Any:
    """A ``kfp.Client`` for ``host`` after a health check.

    Args:
        host: KFP API endpoint, e.g. ``http://localhost:8080``.
        namespace: Kubernetes namespace (multi-user Kubeflow); None for
            single-user deployments.
        existing_token: Bearer token passed to ``kfp.Client(existing_token=...)``.

    Raises:
        KubeflowConnectionError: the API cannot be reached.
    """
    host = _normalise_host(host)
    check_health(host, existing_token=existing_token)
    import kfp

    kwargs: dict[str, Any] = {"host": host, "existing_token": existing_token}
    if namespace:
        kwargs["namespace"] = namespace
    with warnings.catch_warnings(), _api_call(host, "connect"):
        warnings.simplefilter("ignore", FutureWarning)  # "only works with KFP v2.0.0-beta.2 and later"
        return kfp.Client(**kwargs)


def _resolve_params(pipeline: Pipeline | str, params: Mapping[str, Any] | None) -> dict[str, Any]:
    """Parameters to send: the given ones, checked and coerced when the pipeline is known."""
    params = dict(params or {})
    if not isinstance(pipeline, Pipeline):
        return params
    values = pipeline.resolve_parameters(params)  # raises ParameterError: unknown, missing, bad type
    return {name: values[name] for name in params}


def _bind_task_parameters(
    pipeline: Pipeline | str, params: Mapping[str, Any] | None
) -> tuple[Pipeline | str, dict[str, Any]]:
    """``TASK.PARAM`` values become constants of the compiled pipeline (KFP run parameters are the
    pipeline's own); the rest stay run parameters."""
    params = dict(params or {})
    if isinstance(pipeline, Pipeline):
        params = pipeline.expand_names(params)  # -p epochs=5 -> train.epochs when only train has it
    task_values = {name: value for name, value in params.items() if "." in name}
    if not task_values:
        return pipeline, params
    if not isinstance(pipeline, Pipeline):
        raise ParameterError(
            f"-p {next(iter(task_values))}: a task's parameter is set when compiling; a compiled package "
            "takes only its pipeline parameters. Pass the pipeline file, or compile with that -p."
        )
    rest = {name: value for name, value in params.items() if name not in task_values}
    return pipeline.bind(task_values), rest


def _load(pipeline: Pipeline | str, pipeline_name: str | None) -> Pipeline | str:
    """A ``Pipeline`` for a pipeline file; a compiled package path stays a path."""
    from flywheel.pipeline_file import load_pipeline

    if isinstance(pipeline, Pipeline):
        return pipeline
    if pipeline.endswith(_COMPILED_SUFFIXES):
        if not os.path.isfile(pipeline):
            raise PipelineFileError(
                f"Compiled pipeline not found: {pipeline}. Pass a .py pipeline file or a compiled .yaml."
            )
        return pipeline
    return load_pipeline(pipeline, pipeline_name)


@contextlib.contextmanager
def _package(
    pipeline: Pipeline | str, image: str | None, registry_pvc: str | None = None, object_store: Any = None,
    serving_image: str | None = None,
) -> Iterator[str]:
    """A compiled IR YAML for ``pipeline`` (compiled to a temporary file if it is a ``Pipeline``)."""
    from flywheel.kubeflow.compiler import DEFAULT_IMAGE, compile_pipeline

    if not isinstance(pipeline, Pipeline):
        yield pipeline
        return
    with tempfile.TemporaryDirectory(prefix="flywheel-kfp-") as tmp:
        path = os.path.join(tmp, f"{pipeline.name}.yaml")
        compile_pipeline(pipeline, path, image=image or DEFAULT_IMAGE, registry_pvc=registry_pvc,
                         object_store=object_store, serving_image=serving_image)
        yield path


def _pipeline_display_name(pipeline: Pipeline | str) -> str:
    if isinstance(pipeline, Pipeline):
        return pipeline.name
    return os.path.splitext(os.path.basename(pipeline))[0]


def _timestamp() -> str:
    return datetime.datetime.now().strftime("%Y-%m-%d %H-%M-%S")


def submit(
    pipeline: Pipeline | str,
    host: str,
    *,
    experiment: str | None = None,
    params: Mapping[str, Any] | None = None,
    namespace: str | None = None,
    existing_token: str | None = None,
    image: str | None = None,
    pipeline_name: str | None = None,
    run_name: str | None = None,
    service_account: str | None = None,
    pipeline_root: str | None = None,
    registry_pvc: str | None = None,
    object_store: Any = None,
    serving_image: str | None = None,
) -> tuple[str, str]:
    """Starts one run of a pipeline on Kubeflow Pipelines.

    Args:
        pipeline: A ``Pipeline``, a pipeline ``.py`` file, or a compiled
            ``.yaml`` package.
        host: KFP API endpoint.
        experiment: Experiment name (created if missing; KFP's "Default" if None).
        params: Pipeline parameter values; strings are coerced to the declared
            types when the pipeline is a flywheel pipeline.
        namespace: Kubernetes namespace (multi-user Kubeflow).
        existing_token: Bearer token.
        image: Component image used when compiling.
        pipeline_name: Which pipeline of a file that defines several.
        run_name: Display name of the run (default: pipeline name + time).
        service_account: Kubernetes service account the run's pods use
            (k8s/ sets up ``flywheel-pipeline-runner``); KFP's default if None.
        pipeline_root: Object-store URI for the run's artifacts; KFP's
            default (the ``kfp-launcher`` ConfigMap) if None.
        registry_pvc: PVC holding the model registry, mounted by the tasks
            that use it (see ``compiler.build_kfp_pipeline``).
        object_store: ``task_env.ObjectStoreEnv``: the Secret and endpoint every task gets.
        serving_image: Serving image used when compiling, for the tasks that run in it
            (None: derived from ``image``, see ``compiler.compile_pipeline``).

    Returns:
        ``(run_id, url)`` where url opens the run in the KFP dashboard.

    Raises:
        ParameterError: unknown, missing or ill-typed parameters.
        KubeflowConnectionError: the API cannot be reached or refused the run.
    """
    # Cheap checks first (parameters, reachability), then the ~3 s compile.
    pipe, params = _bind_task_parameters(_load(pipeline, pipeline_name), params)
    arguments = _resolve_params(pipe, params)
    client = connect(host, namespace=namespace, existing_token=existing_token)
    with _package(pipe, image, registry_pvc, object_store, serving_image) as path:
        name = run_name or f"{_pipeline_display_name(pipe)} {_timestamp()}"
        with _api_call(host, "create the run"):
            result = client.create_run_from_pipeline_package(
                pipeline_file=path,
                arguments=arguments,
                run_name=name,
                experiment_name=experiment,
                namespace=namespace,
                service_account=service_account,
                pipeline_root=pipeline_root,
            )
    run_id = getattr(result, "run_id", None)
    if not isinstance(run_id, str) or not run_id:
        raise KubeflowConnectionError(
            f"{host} accepted the run but returned no run id (got {run_id!r}); it does not behave like the "
            "Kubeflow Pipelines API. Check --host: it must be the KFP API (e.g. http://localhost:8080 after "
            "'kubectl port-forward svc/ml-pipeline-ui 8080:80 -n kubeflow')."
        )
    return run_id, f"{_normalise_host(host)}/#/runs/details/{run_id}"


def _iso(value: Any) -> str | None:
    if value is None:
        return None
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


def list_runs(
    host: str, *, limit: int = 20, namespace: str | None = None, existing_token: str | None = None
) -> list[dict[str, Any]]:
    """The newest runs, newest first.

    Returns:
        Dicts with keys id, name, state, created_at, finished_at.

    Raises:
        KubeflowConnectionError: the API cannot be reached.
    """
    client = connect(host, namespace=namespace, existing_token=existing_token)
    with _api_call(host, "list runs"):
        response = client.list_runs(page_size=limit, sort_by="created_at desc", namespace=namespace)
    return [
        {
            "id": run.run_id,
            "name": run.display_name,
            "state": run.state,
            "created_at": _iso(run.created_at),
            "finished_at": _iso(run.finished_at),
        }
        for run in (response.runs or [])
    ]


def _experiment_id(client: Any, host: str, experiment: str | None, namespace: str | None) -> str:
    with _api_call(host, f"find or create experiment '{experiment or 'Default'}'"):
        return client.create_experiment(name=experiment or "Default", namespace=namespace).experiment_id


def create_schedule(
    name: str,
    cron: str,
    pipeline: Pipeline | str,
    host: str,
    *,
    max_concurrency: int = 1,
    no_catchup: bool = True,
    params: Mapping[str, Any] | None = None,
    experiment: str | None = None,
    namespace: str | None = None,
    existing_token: str | None = None,
    image: str | None = None,
    pipeline_name: str | None = None,
    enabled: bool = True,
    service_account: str | None = None,
    pipeline_root: str | None = None,
    registry_pvc: str | None = None,
    object_store: Any = None,
    serving_image: str | None = None,
) -> tuple[str, str]:
    """Creates a KFP recurring run of a pipeline on a cron schedule.

    Args:
        name: Display name of the recurring run.
        cron: 6-field KFP cron (seconds first) or standard 5-field cron, which
            gets second 0 prefixed.
        pipeline: A ``Pipeline``, a pipeline file or a compiled package.
        host: KFP API endpoint.
        max_concurrency: Runs of this schedule allowed at the same time.
        no_catchup: If True, missed intervals (paused, scheduler down) are not
            back-filled; only the latest one runs.
        params, experiment, namespace, existing_token, image, pipeline_name,
        service_account, pipeline_root, registry_pvc, object_store, serving_image: As for ``submit``.
        enabled: Create it paused when False.

    Returns:
        ``(recurring_run_id, url)``.

    Raises:
        CronExpressionError: the cron expression is not valid (nothing is sent).
        ScheduleError: max_concurrency is not a positive int.
        ParameterError / KubeflowConnectionError: as for ``submit``.
    """
    kfp_cron = to_kfp_cron(cron)
    if not isinstance(max_concurrency, int) or isinstance(max_concurrency, bool) or not 1 <= max_concurrency <= 10:
        raise ScheduleError(
            f"max_concurrency must be an int from 1 to 10 (KFP's limit); got {max_concurrency!r}."
        )
    pipe, params = _bind_task_parameters(_load(pipeline, pipeline_name), params)
    arguments = _resolve_params(pipe, params)
    client = connect(host, namespace=namespace, existing_token=existing_token)
    experiment_id = _experiment_id(client, host, experiment, namespace)
    with _package(pipe, image, registry_pvc, object_store, serving_image) as path:
        with _api_call(host, f"create recurring run '{name}'"):
            recurring = client.create_recurring_run(
                experiment_id=experiment_id,
                job_name=name,
                description=f"flywheel schedule of pipeline {_pipeline_display_name(pipe)}",
                cron_expression=kfp_cron,
                max_concurrency=max_concurrency,
                no_catchup=bool(no_catchup),
                params=arguments,
                pipeline_package_path=path,
                enabled=enabled,
                service_account=service_account,
                pipeline_root=pipeline_root,
            )
    recurring_id = recurring.recurring_run_id
    return recurring_id, f"{_normalise_host(host)}/#/recurringrun/details/{recurring_id}"


def _schedule_dict(recurring: Any) -> dict[str, Any]:
    trigger = recurring.trigger
    cron = trigger.cron_schedule.cron if trigger is not None and trigger.cron_schedule is not None else None
    return {
        "id": recurring.recurring_run_id,
        "name": recurring.display_name,
        "cron": cron,
        "enabled": recurring.mode == "ENABLE",
        "status": recurring.status,
        "max_concurrency": int(recurring.max_concurrency) if recurring.max_concurrency is not None else None,
        "no_catchup": recurring.no_catchup,
        "created_at": _iso(recurring.created_at),
    }


def list_schedules(
    host: str, *, limit: int = 100, namespace: str | None = None, existing_token: str | None = None
) -> list[dict[str, Any]]:
    """Recurring runs, newest first.

    Returns:
        Dicts with keys id, name, cron, enabled, status, max_concurrency,
        no_catchup, created_at.
    """
    client = connect(host, namespace=namespace, existing_token=existing_token)
    with _api_call(host, "list recurring runs"):
        response = client.list_recurring_runs(page_size=limit, sort_by="created_at desc", namespace=namespace)
    return [_schedule_dict(r) for r in (response.recurring_runs or [])]


def _find_schedule_id(client: Any, host: str, name_or_id: str, namespace: str | None) -> str:
    """The id of the recurring run named ``name_or_id``; the argument itself if none has that name."""
    name_filter = json.dumps(
        {"predicates": [{"operation": "EQUALS", "key": "display_name", "stringValue": name_or_id}]}
    )
    with _api_call(host, f"look up recurring run '{name_or_id}'"):
        response = client.list_recurring_runs(page_size=2, filter=name_filter, namespace=namespace)
    matches = response.recurring_runs or []
    if len(matches) > 1:
        raise ScheduleError(
            f"Several recurring runs are named '{name_or_id}'; pass the id instead "
            "(see 'flywheel schedule list --host ...')."
        )
    return matches[0].recurring_run_id if matches else name_or_id


def _change_schedule(
    action: str, name_or_id: str, host: str, namespace: str | None, existing_token: str | None
) -> str:
    client = connect(host, namespace=namespace, existing_token=existing_token)
    recurring_id = _find_schedule_id(client, host, name_or_id, namespace)
    method = {
        "pause": client.disable_recurring_run,
        "resume": client.enable_recurring_run,
        "delete": client.delete_recurring_run,
    }[action]
    with _api_call(host, f"{action} recurring run '{name_or_id}'"):
        method(recurring_run_id=recurring_id)
    return recurring_id


def pause_schedule(
    name_or_id: str, host: str, *, namespace: str | None = None, existing_token: str | None = None
) -> str:
    """Disables a recurring run (by display name or id); returns its id."""
    return _change_schedule("pause", name_or_id, host, namespace, existing_token)


def resume_schedule(
    name_or_id: str, host: str, *, namespace: str | None = None, existing_token: str | None = None
) -> str:
    """Enables a recurring run (by display name or id); returns its id."""
    return _change_schedule("resume", name_or_id, host, namespace, existing_token)


def delete_schedule(
    name_or_id: str, host: str, *, namespace: str | None = None, existing_token: str | None = None
) -> str:
    """Deletes a recurring run (by display name or id); returns its id."""
    return _change_schedule("delete", name_or_id, host, namespace, existing_token)
