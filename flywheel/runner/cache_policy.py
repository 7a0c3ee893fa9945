"""What goes into a node's cache key beyond code, inputs and parameters, and why a node hit or missed.

* Data read from outside the store (a component's ``reads``) is described and
  fingerprinted before the node runs (``node_data_sources``); its content, span
  and version join the cache key, timestamps do not (touching a file without
  changing it is still a hit).
* ``explain_miss`` compares a node with its previous execution in the same
  pipeline and scope and says, in one line, what changed: the data (``data.csv
  size 8.1 kB -> 13.9 kB``), the code, a parameter, an upstream input, or the
  cached outputs that are gone. ``runs show`` prints it.
"""

from __future__ import annotations

from typing import Any

from flywheel.data_sources import cache_identity, describe_change, describe_source, uncacheable
from flywheel.dsl.component import Component
from flywheel.errors import FlywheelError
from flywheel.metadata.store import ArtifactRecord, ExecutionRecord

SCOPE_PARAMETER = "model_name"
# Files listed one by one in an execution's record (all of them are in the source's sha256).
RECORDED_FILES = 100


def node_data_sources(component: Component, parameters: dict[str, Any]) -> list[dict[str, Any]]:
    """Source records of the outside data a node reads (empty for most components).

    A source that cannot be described (a pattern that matches nothing) is
    recorded with its error and no fingerprint: the node then runs, and the
    component reports the problem in its own words.
    """
    reads = component.reads
    try:
        if callable(reads):
            return list(reads(dict(parameters)))
        return [describe_source(parameters[name], parameter=name) for name in reads if parameters.get(name)]
    except (FlywheelError, OSError) as exc:
        return [{"parameter": ",".join(reads) if not callable(reads) else "data", "kind": "error", "error": str(exc)}]


def for_record(sources: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Sources as stored on an execution: a directory of many files lists the first ``RECORDED_FILES``."""
    return [{**s, "files": s["files"][:RECORDED_FILES]} if len(s.get("files", [])) > RECORDED_FILES else s for s in sources]


def data_key(sources: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The cache-key part of the sources (content identity, never timestamps)."""
    return [cache_identity(s) for s in sources]


def any_uncacheable(sources: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The first source without a content fingerprint, if any."""
    return next((s for s in sources if uncacheable(s)), None)


def run_scope(pipeline_parameters: dict[str, Any], values: dict[str, Any]) -> str:
    """What ``latest()`` looks back within: ``model_name=<value>`` when the pipeline has that parameter."""
    if SCOPE_PARAMETER in pipeline_parameters:
        return f"{SCOPE_PARAMETER}={values.get(SCOPE_PARAMETER)}"
    return ""


def explain_hit(source: ExecutionRecord, sources: list[dict[str, Any]]) -> str:
    """Why a node was served from the cache."""
    data = "; ".join(
        f"{s.get('uri')} unchanged (sha256 {str(s.get('sha256'))[:10]}"
        + (f", span {s['span']}" if s.get("span") is not None else "")
        + ")"
        for s in sources
    )
    return f"same code, parameters and inputs as execution #{source.id} of run {source.run_id}" + (
        f"; input data {data}" if data else ""
    )


def explain_miss(
    previous: ExecutionRecord | None,
    *,
    code_fingerprint: str,
    inputs: dict[str, ArtifactRecord],
    parameters: dict[str, Any],
    sources: list[dict[str, Any]],
    cache_enabled: bool,
    node_cache: bool,
) -> str:
    """Why a node runs instead of being served from the cache (one line, most telling change first)."""
    if not cache_enabled:
        return "caching off for this run (--no-cache or --rerun)"
    if not node_cache:
        return "caching off for this node (its cache policy)"
    blocked = any_uncacheable(sources)
    if blocked is not None:
        why = blocked.get("error") or f"{blocked.get('uri')} has no content fingerprint (ETag or sha256)"
        return f"input data cannot be fingerprinted, so the node always runs: {why}"
    if previous is None:
        return "no earlier execution of this node"
    reasons = []
    before_sources = {s.get("parameter"): s for s in previous.details.get("data_sources", [])}
    for source in sources:
        before = before_sources.get(source.get("parameter"))
        if before is None:
            reasons.append(f"input data new: {source.get('uri')}")
        elif cache_identity(before) != cache_identity(source):
            reasons.append(f"input data changed: {describe_change(before, source)}")
    if previous.code_fingerprint != code_fingerprint:
        reasons.append("component code changed")
    changed = sorted(k for k in set(parameters) | set(previous.parameters) if parameters.get(k) != previous.parameters.get(k))
    if changed:
        shown = ", ".join(f"{k} {previous.parameters.get(k)!r} -> {parameters.get(k)!r}" for k in changed[:3])
        reasons.append(f"parameters changed: {shown}" + (" ..." if len(changed) > 3 else ""))
    for name, artifact in sorted(inputs.items()):
        before_input = previous.inputs.get(name)
        fingerprint = artifact.properties.get("fingerprint", artifact.id)
        if before_input is None or before_input.properties.get("fingerprint", before_input.id) != fingerprint:
            reasons.append(f"input '{name}' changed (new {artifact.type} #{artifact.id})")
    if not reasons:
        return f"cached outputs of execution #{previous.id} are gone or altered"
    return "; ".join(reasons)
