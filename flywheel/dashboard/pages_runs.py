"""Runs, one run's DAG, one node, one artifact and its lineage: page data from ML Metadata.

Each page function takes the ``Sources`` and the request's arguments and
returns the template context (plain data; templates escape it). The JSON
endpoints the live script polls live here too.
"""

from __future__ import annotations

import json
import mimetypes
import os
from typing import Any

from flywheel.dashboard import graph
from flywheel.dashboard.sources import PageNotFound, Sources, id_number, run_state
from flywheel.dashboard.text import fmt_duration, url_part
from flywheel.errors import MetadataError
from flywheel.metadata.store import ArtifactRecord, ExecutionRecord, RunRecord

PAGE_SIZE = 50
LOG_TAIL_BYTES = 256 * 1024
PREVIEW_BYTES = 64 * 1024
MAX_FILES = 200
MAX_LINEAGE = 80
REPORT_TYPES = ("HTML", "Markdown")


def run_row(run: RunRecord) -> dict[str, Any]:
    """What the runs table (and its JSON endpoint) shows of a run."""
    return {
        "run_id": run.run_id,
        "pipeline": run.pipeline,
        "state": run_state(run),
        "trigger": run.trigger or "manual",
        "trigger_reason": run.trigger_reason,
        "start_ms": run.start_ms,
        "duration_s": run.duration_s,
        "duration": fmt_duration(run.duration_s),
        "href": f"/runs/{url_part(run.run_id)}",
        "source": "local",
    }


END = "end"  # a pager position: this source has no more runs


def runs_page(sources: Sources, args: dict[str, str]) -> dict[str, Any]:
    """The runs table, newest first: ``PAGE_SIZE`` local runs (keyset paging on start time) merged with
    ``PAGE_SIZE`` Kubeflow runs (KFP's page token) when the dashboard reads a KFP API and no pipeline is picked."""
    from flywheel.dashboard import pages_kfp

    pipeline = args.get("pipeline") or None
    before = args.get("before") or ""
    kfp_page = args.get("kfp_page") or ""
    before_ms = int(before) if before.isdigit() else None
    first_page = not before and not kfp_page
    local: list[RunRecord] = []
    pipelines: list[str] = []
    more = False
    if sources.has_metadata and before != END:
        with sources.lock:
            store = sources.metadata()
            local = store.list_runs(PAGE_SIZE + 1, before_ms=before_ms, pipeline=pipeline)
            pipelines = store.pipelines()
        more = len(local) > PAGE_SIZE
        local = local[:PAGE_SIZE]
    cluster = {"rows": [], "next": "", "error": "", "host": ""}
    if sources.kfp is not None and pipeline is None and kfp_page != END:
        cluster = pages_kfp.kfp_runs(sources, PAGE_SIZE, kfp_page)
    rows = [run_row(r) for r in local] + cluster["rows"]
    rows.sort(key=lambda r: r["start_ms"] or 0, reverse=True)
    next_before = str(local[-1].start_ms) if more and local else END
    next_kfp = cluster["next"] or END
    return {
        "runs": rows,
        "local_count": len(local),
        "pipelines": pipelines,
        "pipeline": pipeline,
        "next_page": {"before": next_before, "kfp_page": next_kfp} if (next_before, next_kfp) != (END, END) else None,
        "first_page": first_page,
        "kfp_host": sources.kfp.host if sources.kfp is not None else "",
        "kfp_error": cluster["error"],
    }


def runs_json(sources: Sources, args: dict[str, str]) -> dict[str, Any]:
    """``/api/runs``: the newest runs' states and durations (polled by the runs page)."""
    limit = max(1, min(int(args["limit"]), 200)) if args.get("limit", "").isdigit() else PAGE_SIZE
    if not sources.has_metadata:
        return {"runs": []}
    with sources.lock:
        runs = sources.metadata().list_runs(limit, pipeline=args.get("pipeline") or None)
    return {"runs": [run_row(r) for r in runs]}


def _get_run(sources: Sources, run_id: str) -> tuple[RunRecord, list[ExecutionRecord]]:
    with sources.lock:
        store = sources.metadata()
        try:
            run = store.get_run(run_id)
        except MetadataError as exc:
            raise PageNotFound(str(exc)) from exc
        return run, store.run_executions(run)


def _latest(executions: list[ExecutionRecord]) -> dict[str, ExecutionRecord]:
    latest: dict[str, ExecutionRecord] = {}
    for record in executions:
        latest[record.node_id] = record
    return latest


def run_graph(run: RunRecord, nodes: dict[str, ExecutionRecord]) -> Any:
    """The run's DAG: its nodes, plus artifacts it took from earlier runs (``latest(...)``)."""
    produced = {a.id: node_id for node_id, e in nodes.items() for a in e.outputs.values()}
    boxes, edges = [], []
    for node_id, e in nodes.items():
        word = "cache hit" if e.cached else e.state.lower()
        boxes.append(
            graph.GraphNode(
                key=f"n:{node_id}",
                label=node_id,
                sublabel=f"{word} · {fmt_duration(e.duration_s if e.end_ms else None)}",
                state=e.state,
                href=f"/runs/{url_part(run.run_id)}/nodes/{url_part(node_id)}",
                data_node=node_id,
            )
        )
    external: dict[int, ArtifactRecord] = {}
    for node_id, e in nodes.items():
        for artifact in e.inputs.values():
            producer = produced.get(artifact.id)
            if producer is not None and producer != node_id:
                edges.append((f"n:{producer}", f"n:{node_id}"))
            elif producer is None:
                external[artifact.id] = artifact
                edges.append((f"a:{artifact.id}", f"n:{node_id}"))
    for artifact in external.values():
        boxes.insert(
            0,
            graph.GraphNode(
                key=f"a:{artifact.id}",
                label=artifact.type,
                sublabel=f"#{artifact.id} from an earlier run",
                kind="artifact",
                state=artifact.state,
                href=f"/artifacts/{artifact.id}",
            ),
        )
    return graph.render(boxes, sorted(set(edges)))


def node_row(run: RunRecord, e: ExecutionRecord) -> dict[str, Any]:
    return {
        "node_id": e.node_id,
        "component": e.component,
        "state": e.state,
        "cached": e.cached,
        "duration_s": e.duration_s,
        "duration": fmt_duration(e.duration_s),
        "attempts": e.attempts,
        "start_ms": e.start_ms,
        "href": f"/runs/{url_part(run.run_id)}/nodes/{url_part(e.node_id)}",
    }


def run_page(sources: Sources, run_id: str) -> dict[str, Any]:
    """One run: parameters, trigger, the DAG, the node table and every output artifact."""
    run, executions = _get_run(sources, run_id)
    nodes = _latest(executions)
    outputs = [
        {"node_id": node_id, "name": name, "artifact": artifact}
        for node_id, e in nodes.items()
        for name, artifact in e.outputs.items()
    ]
    return {
        "run": run,
        "run_row": run_row(run),
        "graph": run_graph(run, nodes),
        "nodes": [node_row(run, e) for e in nodes.values()],
        "outputs": outputs,
        "reports": [o | {"path": report_file(o["artifact"].uri)} for o in outputs if o["artifact"].type in REPORT_TYPES],
        "parameters": sorted(run.parameters.items()),
    }


def run_json(sources: Sources, run_id: str) -> dict[str, Any]:
    """``/api/runs/<id>``: the run's and its nodes' states (polled by the run page)."""
    run, executions = _get_run(sources, run_id)
    return {
        "run": run_row(run),
        "nodes": {node_id: node_row(run, e) for node_id, e in _latest(executions).items()},
    }


def report_file(uri: str) -> str:
    """The page of a report artifact to show: index.html, else its first .html/.md file, else ""."""
    files = [f["path"] for f in artifact_files(uri)]
    for wanted in ("index.html", "index.md"):
        if wanted in files:
            return wanted
    return next((f for f in files if f.endswith((".html", ".htm", ".md"))), "")


def read_tail(path: str, limit: int = LOG_TAIL_BYTES) -> tuple[str, bool]:
    """The last ``limit`` bytes of a text file and whether it was cut; ("", False) if unreadable."""
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as handle:
            if size > limit:
                handle.seek(size - limit)
            data = handle.read()
    except OSError:
        return "", False
    return data.decode("utf-8", errors="replace"), size > limit


def node_page(sources: Sources, run_id: str, node_id: str) -> dict[str, Any]:
    """One node of a run: every attempt series, parameters, log, inputs and outputs."""
    run, executions = _get_run(sources, run_id)
    mine = [e for e in executions if e.node_id == node_id]
    if not mine:
        raise PageNotFound(f"Run {run.run_id} has no node '{node_id}'.")
    execution = mine[-1]
    log, cut = read_tail(execution.log_path) if execution.log_path else ("", False)
    return {
        "run": run,
        "run_row": run_row(run),
        "execution": execution,
        "row": node_row(run, execution),
        "history": [node_row(run, e) | {"id": e.id, "error": e.error} for e in mine],
        "parameters": sorted(execution.parameters.items()),
        "inputs": sorted(execution.inputs.items()),
        "outputs": sorted(execution.outputs.items()),
        "reports": [
            {"name": name, "artifact": a, "path": report_file(a.uri)}
            for name, a in sorted(execution.outputs.items())
            if a.type in REPORT_TYPES
        ],
        "log": log,
        "log_cut": cut,
        "log_url": f"/runs/{url_part(run.run_id)}/nodes/{url_part(node_id)}/log",
    }


def node_log(sources: Sources, run_id: str, node_id: str) -> str:
    """The tail of a node's log as plain text (polled while the node runs)."""
    _run, executions = _get_run(sources, run_id)
    mine = [e for e in executions if e.node_id == node_id]
    if not mine:
        raise PageNotFound(f"Run {run_id} has no node '{node_id}'.")
    return read_tail(mine[-1].log_path)[0] if mine[-1].log_path else ""


def _artifact(sources: Sources, artifact_id: str) -> ArtifactRecord:
    id_number(artifact_id, "Artifact ids")
    with sources.lock:
        try:
            return sources.metadata().get_artifact(artifact_id)
        except MetadataError as exc:
            raise PageNotFound(str(exc)) from exc


def artifact_files(uri: str) -> list[dict[str, Any]]:
    """Up to ``MAX_FILES`` files under an artifact directory, with sizes and a preview kind."""
    found: list[dict[str, Any]] = []
    if not os.path.isdir(uri):
        return found
    root = os.path.realpath(uri)
    for directory, subdirs, files in os.walk(uri):
        subdirs.sort()
        for name in sorted(files):
            path = os.path.join(directory, name)
            if _outside(root, path):  # a link out of the artifact (or dangling) is never listed nor previewed
                continue
            rel = os.path.relpath(path, uri)
            kind = mimetypes.guess_type(name)[0] or ""
            found.append({"path": rel, "size": os.path.getsize(path), "type": kind})
            if len(found) >= MAX_FILES:
                return found
    return found


def _outside(root: str, path: str) -> bool:
    """Whether ``path`` is not a regular file inside ``root`` once links are resolved."""
    if "\x00" in path:
        return True
    resolved = os.path.realpath(path)
    return os.path.commonpath([root, resolved]) != root or not os.path.isfile(resolved)


def _preview(uri: str, files: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Inline previews: HTML reports (sandboxed iframe), images, small JSON and text files."""
    previews = []
    for f in files:
        if f["path"].endswith((".html", ".htm")):
            previews.append({"kind": "html", "path": f["path"]})
        elif f["type"] in ("image/png", "image/jpeg", "image/gif", "image/svg+xml"):
            previews.append({"kind": "image", "path": f["path"]})
        elif f["size"] <= PREVIEW_BYTES and f["path"].endswith((".json", ".txt", ".pbtxt", ".md", ".csv")):
            text, _ = read_tail(os.path.join(uri, f["path"]), PREVIEW_BYTES)
            if f["path"].endswith(".json"):
                try:
                    text = json.dumps(json.loads(text), indent=2, sort_keys=True)
                except ValueError:
                    pass
            previews.append({"kind": "text", "path": f["path"], "text": text})
        if len(previews) >= 8:
            break
    return previews


def artifact_page(sources: Sources, artifact_id: str) -> dict[str, Any]:
    """One artifact: type, state, URI, properties, producer, consumers, files and previews."""
    artifact = _artifact(sources, artifact_id)
    with sources.lock:
        store = sources.metadata()
        producers = store.lineage(artifact.id, direction="upstream", max_depth=1)
        consumers = store.lineage(artifact.id, direction="downstream", max_depth=1)
    files = artifact_files(artifact.uri)
    return {
        "artifact": artifact,
        "properties": sorted(artifact.properties.items()),
        "producers": producers,
        "consumers": consumers,
        "files": files,
        "previews": _preview(artifact.uri, files),
    }


def lineage_page(sources: Sources, artifact_id: str) -> dict[str, Any]:
    """An artifact's lineage as one graph: everything upstream and everything downstream."""
    artifact = _artifact(sources, artifact_id)
    with sources.lock:
        store = sources.metadata()
        upstream = store.lineage(artifact.id, direction="upstream")
        downstream = store.lineage(artifact.id, direction="downstream")
    executions: dict[int, ExecutionRecord] = {}
    for e in upstream + downstream:
        executions.setdefault(e.id, e)
    shown = list(executions.values())[:MAX_LINEAGE]
    artifacts: dict[int, ArtifactRecord] = {artifact.id: artifact}
    edges = []
    for e in shown:
        for a in e.inputs.values():
            artifacts.setdefault(a.id, a)
            edges.append((f"a:{a.id}", f"e:{e.id}"))
        for a in e.outputs.values():
            artifacts.setdefault(a.id, a)
            edges.append((f"e:{e.id}", f"a:{a.id}"))
    boxes = [
        graph.GraphNode(
            key=f"e:{e.id}",
            label=e.node_id or e.component,
            sublabel=f"{e.state.lower()} · {e.run_id}",
            state=e.state,
            href=f"/runs/{url_part(e.run_id)}/nodes/{url_part(e.node_id)}" if e.run_id else "",
        )
        for e in shown
    ]
    boxes += [
        graph.GraphNode(
            key=f"a:{a.id}",
            label=a.type,
            sublabel=f"#{a.id} {a.state.lower()}",
            kind="artifact",
            state=a.state,
            href=f"/artifacts/{a.id}/lineage",
            focus=a.id == artifact.id,
        )
        for a in artifacts.values()
    ]
    return {
        "artifact": artifact,
        "graph": graph.render(boxes, sorted(set(edges)), css_class="dag lineage", down=True),
        "upstream": upstream,
        "downstream": downstream,
        "truncated": len(executions) - len(shown),
    }


def artifact_file(sources: Sources, artifact_id: str, rel_path: str) -> tuple[str, str]:
    """(absolute path, content type) of a file inside an artifact's directory.

    Raises:
        PageNotFound: no such artifact or file, or the path leaves the artifact directory.
    """
    artifact = _artifact(sources, artifact_id)
    root = os.path.realpath(artifact.uri)
    path = os.path.join(root, rel_path)
    if _outside(root, path):
        raise PageNotFound(f"Artifact #{artifact.id} has no file {rel_path!r}.")
    path = os.path.realpath(path)
    return path, mimetypes.guess_type(path)[0] or "application/octet-stream"
