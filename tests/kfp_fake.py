"""A local HTTP server speaking the KFP v2beta1 REST API, for exactly the calls flywheel makes.

healthz, experiments (list by name, create), runs (create, list with page
tokens, get with ``run_details``), recurring runs (create, list, enable,
disable, delete) and artifacts (get by id: KFP's ArtifactService). Responses
are built from ``kfp_server_api`` models and serialised by its own
``ApiClient``, so their JSON field names are the real ones (e.g.
``recurringRuns``); kfp_server_api 2.4 has no Artifact model, so artifacts
are written with the field names of KFP's ``artifacts.proto``. Every request
is recorded (method, path, query, JSON body) for the tests to check.

Shared by tests/kubeflow (re-exported by its conftest) and tests/dashboard.
"""

from __future__ import annotations

import dataclasses
import datetime
import http.server
import json
import threading
import urllib.parse
from typing import Any

PREFIX = "/apis/v2beta1"


@dataclasses.dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    body: Any
    authorization: str | None = None


class FakeKfpState:
    """What the fake server has stored and seen."""

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.experiments: dict[str, dict] = {}
        self.runs: list[dict] = []
        self.recurring: dict[str, dict] = {}
        self.fail_next: tuple[int, str] | None = None  # (status, message) for the next non-healthz call
        self.artifacts: dict[str, dict] = {}  # id -> KFP Artifact fields (uri, artifact_type, ...)
        self.required_token: str | None = None  # when set, any other Authorization is answered 401
        self.lock = threading.Lock()

    def add_run(
        self,
        display_name: str,
        state: str,
        *,
        run_id: str | None = None,
        created_at: datetime.datetime | None = None,
        finished_at: datetime.datetime | None = None,
        parameters: dict | None = None,
        pipeline_root: str = "",
        tasks: list[dict] | None = None,
        pipeline_spec: dict | None = None,
        error: str = "",
    ) -> str:
        """Stores a run as KFP would report it; returns its id.

        ``tasks`` are dicts with ``name``, ``state`` and optionally ``task_id``, ``parent`` (a task id),
        ``outputs``/``inputs`` (name -> artifact ids), ``start``/``end`` (datetimes) and ``error``.
        """
        with self.lock:
            run_id = run_id or f"run-{len(self.runs) + 1}"
            self.runs.append({
                "run_id": run_id, "display_name": display_name, "state": state, "created_at": created_at,
                "finished_at": finished_at, "runtime_config": {"parameters": parameters or {}, "pipeline_root": pipeline_root},
                "tasks": tasks or [], "pipeline_spec": pipeline_spec, "error": error,
            })
        return run_id

    def add_artifact(self, artifact_id: str, uri: str, artifact_type: str = "system.Artifact") -> None:
        with self.lock:
            self.artifacts[artifact_id] = {"artifact_id": artifact_id, "uri": uri, "artifact_type": artifact_type,
                                           "storage_provider": "minio", "namespace": ""}

    def calls(self, method: str, path: str) -> list[Recorded]:
        return [r for r in self.requests if r.method == method and r.path == PREFIX + path]


def _serialise(model: Any) -> bytes:
    import kfp_server_api

    return json.dumps(kfp_server_api.ApiClient().sanitize_for_serialization(model)).encode()


def _now() -> datetime.datetime:
    return datetime.datetime(2024, 5, 1, 12, 0, 0, tzinfo=datetime.timezone.utc)


def _display_name_filter(query: dict[str, list[str]]) -> str | None:
    raw = (query.get("filter") or [None])[0]
    if not raw:
        return None
    for predicate in json.loads(raw).get("predicates", []):
        if predicate.get("key") == "display_name":
            return predicate.get("stringValue") or predicate.get("string_value")
    return None


class _Handler(http.server.BaseHTTPRequestHandler):
    server: Any

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        return None

    def _reply(self, status: int, body: bytes = b"{}") -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _handle(self, method: str) -> None:
        import kfp_server_api as api

        state: FakeKfpState = self.server.state
        parsed = urllib.parse.urlparse(self.path)
        query = urllib.parse.parse_qs(parsed.query)
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        path = parsed.path
        with state.lock:
            state.requests.append(Recorded(method, path, query, body, self.headers.get("Authorization")))
            if state.required_token is not None and self.headers.get("Authorization") != f"Bearer {state.required_token}":
                return self._reply(401, json.dumps({"error": "Unauthorized", "message": "Unauthorized", "code": 16}).encode())
            if path == PREFIX + "/healthz" and method == "GET":
                return self._reply(200, _serialise(api.V2beta1GetHealthzResponse(multi_user=False)))
            if state.fail_next is not None:
                status, message = state.fail_next
                state.fail_next = None
                return self._reply(status, json.dumps({"error": message, "message": message, "code": 3}).encode())
            return self._route(api, state, method, path, query, body)

    def _route(self, api: Any, state: FakeKfpState, method: str, path: str, query: dict, body: Any) -> None:
        if path == PREFIX + "/experiments" and method == "GET":
            name = _display_name_filter(query)
            found = [e for e in state.experiments.values() if name is None or e["display_name"] == name]
            experiments = [api.V2beta1Experiment(**e) for e in found]
            return self._reply(200, _serialise(api.V2beta1ListExperimentsResponse(experiments=experiments or None)))
        if path == PREFIX + "/experiments" and method == "POST":
            experiment_id = f"exp-{len(state.experiments) + 1}"
            state.experiments[experiment_id] = {"experiment_id": experiment_id, "display_name": body["display_name"]}
            return self._reply(200, _serialise(api.V2beta1Experiment(**state.experiments[experiment_id])))
        if path == PREFIX + "/runs" and method == "POST":
            run = dict(body, run_id=f"run-{len(state.runs) + 1}", state="PENDING")
            state.runs.append(run)
            reply = api.V2beta1Run(
                run_id=run["run_id"], display_name=run["display_name"], experiment_id=run["experiment_id"],
                state="PENDING", created_at=_now(),
            )
            return self._reply(200, _serialise(reply))
        if path == PREFIX + "/runs" and method == "GET":
            size = int((query.get("page_size") or ["10"])[0])
            start = int((query.get("page_token") or ["0"])[0] or 0)
            newest_first = list(reversed(state.runs))
            if (query.get("sort_by") or [""])[0] == "created_at desc":
                newest_first.sort(key=lambda r: r.get("created_at") or _now(), reverse=True)
            runs = [self._run_model(api, r, details=False) for r in newest_first[start:start + size]]
            token = str(start + size) if start + size < len(newest_first) else None
            reply = api.V2beta1ListRunsResponse(runs=runs or None, total_size=len(newest_first), next_page_token=token)
            return self._reply(200, _serialise(reply))
        if path.startswith(PREFIX + "/runs/") and method == "GET" and ":" not in path:
            run_id = urllib.parse.unquote(path[len(PREFIX + "/runs/"):])
            found = [r for r in state.runs if r["run_id"] == run_id]
            if not found:
                return self._reply(404, json.dumps({"error": "not found", "message": f"run {run_id} not found"}).encode())
            return self._reply(200, _serialise(self._run_model(api, found[0], details=True)))
        if path.startswith(PREFIX + "/artifacts/") and method == "GET":
            artifact_id = urllib.parse.unquote(path[len(PREFIX + "/artifacts/"):])
            if artifact_id not in state.artifacts:
                return self._reply(404, json.dumps({"error": "not found", "message": f"artifact {artifact_id} not found"}).encode())
            return self._reply(200, json.dumps(state.artifacts[artifact_id]).encode())
        if path == PREFIX + "/recurringruns" and method == "POST":
            recurring_id = f"rr-{len(state.recurring) + 1}"
            state.recurring[recurring_id] = dict(body, recurring_run_id=recurring_id)
            return self._reply(200, _serialise(self._recurring_model(api, state.recurring[recurring_id])))
        if path == PREFIX + "/recurringruns" and method == "GET":
            name = _display_name_filter(query)
            found = [r for r in state.recurring.values() if name is None or r["display_name"] == name]
            models = [self._recurring_model(api, r) for r in found]
            reply = api.V2beta1ListRecurringRunsResponse(recurring_runs=models or None, total_size=len(models))
            return self._reply(200, _serialise(reply))
        if path.startswith(PREFIX + "/recurringruns/"):
            recurring_id, _, action = path[len(PREFIX + "/recurringruns/"):].partition(":")
            if recurring_id not in state.recurring:
                missing = {"error": "not found", "message": f"{recurring_id} not found"}
                return self._reply(404, json.dumps(missing).encode())
            if method == "POST" and action in ("enable", "disable"):
                state.recurring[recurring_id]["mode"] = "ENABLE" if action == "enable" else "DISABLE"
                return self._reply(200)
            if method == "DELETE" and not action:
                del state.recurring[recurring_id]
                return self._reply(200)
        return self._reply(404, json.dumps({"error": "no route", "message": f"{method} {path}"}).encode())

    @staticmethod
    def _run_model(api: Any, r: dict, *, details: bool) -> Any:
        created = r.get("created_at") or _now()
        finished = r.get("finished_at") or (_now() if r["state"] == "SUCCEEDED" else None)
        run = api.V2beta1Run(run_id=r["run_id"], display_name=r["display_name"], state=r["state"],
                             experiment_id=r.get("experiment_id"), created_at=created, finished_at=finished)
        if not details:
            return run
        config = r.get("runtime_config") or {}
        run.runtime_config = api.V2beta1RuntimeConfig(parameters=config.get("parameters"),
                                                      pipeline_root=config.get("pipeline_root") or None)
        run.pipeline_spec = r.get("pipeline_spec")
        if r.get("error"):
            run.error = api.GooglerpcStatus(code=2, message=r["error"])
        tasks = []
        for index, task in enumerate(r.get("tasks") or []):
            def artifact_lists(mapping: dict | None) -> dict | None:
                return {name: api.V2beta1ArtifactList(artifact_ids=list(ids)) for name, ids in mapping.items()} if mapping else None

            tasks.append(api.V2beta1PipelineTaskDetail(
                run_id=r["run_id"], task_id=task.get("task_id") or f"{r['run_id']}-task-{index}",
                display_name=task["name"], state=task["state"], parent_task_id=task.get("parent"),
                create_time=task.get("start") or created, start_time=task.get("start") or created,
                end_time=task.get("end"), inputs=artifact_lists(task.get("inputs")),
                outputs=artifact_lists(task.get("outputs")),
                error=api.GooglerpcStatus(code=2, message=task["error"]) if task.get("error") else None,
            ))
        run.run_details = api.V2beta1RunDetails(task_details=tasks or None)
        return run

    @staticmethod
    def _recurring_model(api: Any, stored: dict) -> Any:
        trigger = stored.get("trigger") or {}
        cron = (trigger.get("cron_schedule") or {}).get("cron")
        return api.V2beta1RecurringRun(
            recurring_run_id=stored["recurring_run_id"],
            display_name=stored["display_name"],
            mode=stored.get("mode", "ENABLE"),
            max_concurrency=str(stored.get("max_concurrency", "1")),
            no_catchup=stored.get("no_catchup"),
            trigger=api.V2beta1Trigger(cron_schedule=api.V2beta1CronSchedule(cron=cron)),
            status="ENABLED" if stored.get("mode", "ENABLE") == "ENABLE" else "DISABLED",
            created_at=_now(),
        )

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        self._handle("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._handle("POST")

    def do_DELETE(self) -> None:  # noqa: N802
        self._handle("DELETE")


class FakeKfpServer:
    """Runs the fake API on 127.0.0.1 at a random port in a daemon thread (``handler``: the request handler)."""

    handler: type[http.server.BaseHTTPRequestHandler] = _Handler

    def __init__(self) -> None:
        self.state = FakeKfpState()
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self.handler)
        self._server.daemon_threads = True
        self._server.state = self.state  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> FakeKfpServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
