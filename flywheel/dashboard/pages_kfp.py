"""Kubeflow runs in the dashboard: rows for the runs table and one KFP run's page.

The runs table merges local runs (ML Metadata) with the KFP API's runs
(``Sources.kfp``); each page holds the next ``PAGE_SIZE`` of each source,
newest first, so the pager carries both positions (``before`` for the local
store, ``kfp_page`` for KFP's page token). A KFP API that cannot be read is a
banner above the local runs, never an error page.
"""

from __future__ import annotations

import concurrent.futures
import re
from typing import Any

from flywheel.dashboard import graph
from flywheel.dashboard.kfp import KfpNotFound, KfpReader, KfpUnavailable, epoch_ms, field
from flywheel.dashboard.sources import PageNotFound, Sources
from flywheel.dashboard.text import fmt_duration, url_part

MAX_TASKS = 200
MAX_ARTIFACT_LOOKUPS = 400
LOOKUP_THREADS = 8
# KFP run ids are UUIDs; anything path-like ("..", "a/b") never reaches the API.
RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def kfp_row(run: dict[str, Any]) -> dict[str, Any]:
    """What the runs table shows of a KFP run."""
    run_id = str(field(run, "run_id") or "")
    start, end = epoch_ms(field(run, "created_at")), epoch_ms(field(run, "finished_at"))
    duration = (end - start) / 1000 if start and end and end >= start else None
    return {
        "run_id": run_id,
        "name": str(field(run, "display_name") or run_id),
        "pipeline": str(field(run, "display_name") or ""),
        "state": str(field(run, "state") or "RUNTIME_STATE_UNSPECIFIED"),
        "trigger": "recurring" if field(run, "recurring_run_id") else "kubeflow",
        "trigger_reason": "",
        "start_ms": start,
        "duration_s": duration,
        "duration": fmt_duration(duration),
        "href": f"/kfp/runs/{url_part(run_id)}",
        "source": "kubeflow",
    }


def kfp_runs(sources: Sources, page_size: int, page_token: str) -> dict[str, Any]:
    """One page of KFP runs for the runs table: rows, the next page token, and a banner on failure."""
    reader: KfpReader | None = sources.kfp
    if reader is None:
        return {"rows": [], "next": "", "error": "", "host": ""}
    try:
        runs, token = reader.list_runs(page_size, page_token)
    except (KfpUnavailable, KfpNotFound) as exc:
        return {"rows": [], "next": "", "error": str(exc), "host": reader.host}
    return {"rows": [kfp_row(r) for r in runs if field(r, "run_id")], "next": token, "error": "", "host": reader.host}


def _artifact_ids(mapping: Any) -> list[tuple[str, str]]:
    """(name, artifact id) pairs of a task's ``inputs`` or ``outputs`` (name -> {artifact_ids: [...]})."""
    pairs = []
    if isinstance(mapping, dict):
        for name, entry in sorted(mapping.items()):
            for artifact_id in field(entry, "artifact_ids") or []:
                pairs.append((str(name), str(artifact_id)))
    return pairs


def _spec_edges(spec: Any) -> set[tuple[str, str]]:
    """(upstream, downstream) task names from the IR: ``dependentTasks``, and a condition's DAG to its tasks."""
    edges: set[tuple[str, str]] = set()
    if not isinstance(spec, dict):
        return edges
    components = spec.get("components") if isinstance(spec.get("components"), dict) else {}

    def walk(dag: Any, parent: str, seen: frozenset[str]) -> None:
        tasks = (dag or {}).get("tasks") if isinstance(dag, dict) else None
        if not isinstance(tasks, dict):
            return
        for name, task in tasks.items():
            if not isinstance(task, dict):
                continue
            for upstream in task.get("dependentTasks") or []:
                edges.add((str(upstream), str(name)))
            if parent:
                edges.add((parent, str(name)))
            ref = ((task.get("componentRef") or {}).get("name")) if isinstance(task.get("componentRef"), dict) else None
            inner = components.get(ref) if ref and ref not in seen else None
            if isinstance(inner, dict) and isinstance(inner.get("dag"), dict):
                walk(inner["dag"], str(name), seen | {ref})

    walk((spec.get("root") or {}).get("dag") if isinstance(spec.get("root"), dict) else None, "", frozenset())
    return edges


def _shown_tasks(details: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The tasks to draw: every task but the run's root DAG (the one parent without a parent)."""
    parents = {str(field(t, "parent_task_id") or "") for t in details}
    return [t for t in details
            if not (not field(t, "parent_task_id") and str(field(t, "task_id") or "") in parents)][:MAX_TASKS]


def _lookup_artifacts(reader: KfpReader, ids: list[str]) -> tuple[dict[str, dict[str, Any]], str]:
    """Artifact id -> {uri, type, error}, looked up in parallel (cached by the reader); the API's failure, if any.

    Once the API fails the reader answers the remaining lookups from that failure at once, so a
    dead or slow API costs one timeout per page, not one per artifact.
    """
    def one(artifact_id: str) -> tuple[dict[str, Any], str]:
        try:
            data = reader.artifact(artifact_id)
        except KfpNotFound as exc:
            return {"uri": "", "type": "", "error": str(exc)}, ""
        except KfpUnavailable as exc:
            return {"uri": "", "type": "", "error": "not looked up"}, str(exc)
        return {"uri": str(field(data, "uri") or ""), "type": str(field(data, "artifact_type") or ""), "error": ""}, ""

    ids = ids[:MAX_ARTIFACT_LOOKUPS]
    if not ids:
        return {}, ""
    with concurrent.futures.ThreadPoolExecutor(max_workers=min(LOOKUP_THREADS, len(ids))) as pool:
        answers = list(pool.map(one, ids))
    problem = next((p for _, p in answers if p), "")
    return {artifact_id: found for artifact_id, (found, _) in zip(ids, answers)}, problem


def kfp_run_page(sources: Sources, run_id: str) -> dict[str, Any]:
    """One KFP run: state, runtime parameters, the task graph with per-task state, each task's artifacts by URI."""
    reader = sources.kfp
    if reader is None:
        raise PageNotFound("This dashboard reads no Kubeflow Pipelines API; start it with --kfp-host URL.")
    if not RUN_ID.fullmatch(run_id):
        shown = run_id if len(run_id) <= 40 else f"{run_id[:20]}... ({len(run_id)} characters)"
        raise PageNotFound(f"{shown!r} is not a Kubeflow run id (letters, digits, '.', '_', '-'; at most 128).")
    try:
        run = reader.get_run(run_id)
    except KfpNotFound as exc:
        raise PageNotFound(f"No Kubeflow run {run_id!r}: {exc}") from exc
    except KfpUnavailable as exc:
        return {"run_id": run_id, "banner": str(exc), "host": reader.host, "row": None}
    row = kfp_row(run)
    config = field(run, "runtime_config") or {}
    parameters = field(config, "parameters") or {}
    details = [t for t in field(field(run, "run_details") or {}, "task_details") or [] if isinstance(t, dict)]
    tasks = _shown_tasks(details)
    ids = []
    for task in tasks:
        ids += [i for _, i in _artifact_ids(field(task, "outputs"))]
    artifacts, problem = _lookup_artifacts(reader, list(dict.fromkeys(ids)))
    rows = []
    for task in tasks:
        start, end = epoch_ms(field(task, "start_time")), epoch_ms(field(task, "end_time"))
        rows.append({
            "key": str(field(task, "task_id") or field(task, "display_name") or ""),
            "name": str(field(task, "display_name") or field(task, "task_id") or "?"),
            "state": str(field(task, "state") or "RUNTIME_STATE_UNSPECIFIED"),
            "start_ms": start,
            "duration": fmt_duration((end - start) / 1000 if start and end and end >= start else None),
            "error": str(field(field(task, "error") or {}, "message") or ""),
            "outputs": [{"name": name, "id": i, **artifacts.get(i, {"uri": "", "type": "", "error": ""})}
                        for name, i in _artifact_ids(field(task, "outputs"))],
            "inputs": [i for _, i in _artifact_ids(field(task, "inputs"))],
        })
    error = field(field(run, "error") or {}, "message") or ""
    return {
        "run_id": row["run_id"] or run_id,
        "row": row,
        "banner": problem,
        "host": reader.host,
        "run": run,
        "experiment_id": str(field(run, "experiment_id") or ""),
        "pipeline_root": str(field(config, "pipeline_root") or ""),
        "parameters": sorted(parameters.items()) if isinstance(parameters, dict) else [],
        "error": str(error),
        "tasks": rows,
        "graph": task_graph(rows, field(run, "pipeline_spec")),
        "kfp_url": f"{reader.host}/#/runs/details/{url_part(row['run_id'] or run_id)}",
    }


def task_graph(rows: list[dict[str, Any]], spec: Any) -> Any:
    """The tasks as a DAG: the IR's dependencies when the run carries its spec, plus the artifacts they pass."""
    by_name = {r["name"]: r["key"] for r in rows}
    producers = {o["id"]: r["key"] for r in rows for o in r["outputs"]}
    edges = {(by_name[a], by_name[b]) for a, b in _spec_edges(spec) if a in by_name and b in by_name}
    for r in rows:
        for artifact_id in r["inputs"]:
            if artifact_id in producers and producers[artifact_id] != r["key"]:
                edges.add((producers[artifact_id], r["key"]))
    boxes = [
        graph.GraphNode(key=r["key"], label=r["name"], sublabel=f"{r['state'].lower()} · {r['duration']}",
                        state=r["state"], href=f"#task-{url_part(r['key'])}", data_node=r["name"])
        for r in rows
    ]
    return graph.render(boxes, sorted(edges))
