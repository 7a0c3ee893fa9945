"""Layered drawing of directed acyclic graphs (a run's DAG, an artifact's lineage) as SVG.

Layout: a node's column is the length of the longest path that reaches it;
inside a column nodes are ordered by the mean row of their predecessors
(one barycentre sweep), which keeps pipelines like ingest -> validate ->
transform -> train mostly straight. Good enough for the tens of nodes a
pipeline or a lineage has; no JavaScript involved.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

from markupsafe import Markup, escape

NODE_W, NODE_H, COL_GAP, ROW_GAP, PAD = 156, 50, 46, 16, 14
# Top-down layouts (long lineages) stack layers as rows, so they need more room between rows.
DOWN_COL_GAP, DOWN_ROW_GAP = 18, 40


@dataclasses.dataclass
class GraphNode:
    """A box in the graph.

    Attributes:
        key: Unique id within the graph.
        label: First line (bold).
        sublabel: Second line.
        kind: "execution" (a box) or "artifact" (a pill).
        state: CSS state class suffix (COMPLETE, CACHED, RUNNING, FAILED, LIVE, ...).
        href: Link target, or "".
        focus: Highlighted (the artifact a lineage is about).
        data_node: Value of a ``data-node`` attribute the live script updates by.
    """

    key: str
    label: str
    sublabel: str = ""
    kind: str = "execution"
    state: str = ""
    href: str = ""
    focus: bool = False
    data_node: str = ""


def layout(nodes: Sequence[GraphNode], edges: Sequence[tuple[str, str]]) -> dict[str, tuple[int, int]]:
    """(column, row) of every node; edges that would close a cycle are ignored."""
    keys = [n.key for n in nodes]
    preds: dict[str, list[str]] = {k: [] for k in keys}
    for src, dst in edges:
        if src in preds and dst in preds and src != dst:
            preds[dst].append(src)
    column: dict[str, int] = {}
    visiting: set[str] = set()

    def depth(key: str) -> int:
        if key in column:
            return column[key]
        if key in visiting:
            return 0
        visiting.add(key)
        column[key] = max((depth(p) + 1 for p in preds[key]), default=0)
        visiting.discard(key)
        return column[key]

    for key in keys:
        depth(key)
    columns: dict[int, list[str]] = {}
    for key in keys:  # keys keep the caller's order (execution order) as a tie-breaker
        columns.setdefault(column[key], []).append(key)
    row: dict[str, float] = {}
    for col in sorted(columns):
        members = columns[col]
        if col > 0:
            order = {key: index for index, key in enumerate(members)}

            def centre(key: str) -> tuple[float, int]:
                placed = [row[p] for p in preds[key] if p in row]
                return (sum(placed) / len(placed) if placed else float(len(order)), order[key])

            members.sort(key=centre)
        for index, key in enumerate(members):
            row[key] = index
    return {k: (column[k], int(row[k])) for k in keys}


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def render(
    nodes: Sequence[GraphNode], edges: Sequence[tuple[str, str]], *, css_class: str = "dag", down: bool = False
) -> Markup:
    """The graph as an SVG element (nodes link to their pages).

    Args:
        down: Lay layers out top to bottom (long lineages) instead of left to right (a run's DAG).
    """
    if not nodes:
        return Markup('<p class="muted">Nothing to draw.</p>')
    places = layout(nodes, edges)
    in_layer: dict[int, int] = {}
    for layer, slot in places.values():
        in_layer[layer] = max(in_layer.get(layer, 0), slot + 1)
    widest = max(in_layer.values())
    layers = max(in_layer) + 1
    if down:
        step_slot, step_layer = NODE_W + DOWN_COL_GAP, NODE_H + DOWN_ROW_GAP
        width = PAD * 2 + widest * step_slot - DOWN_COL_GAP
        height = PAD * 2 + layers * step_layer - DOWN_ROW_GAP
    else:
        step_slot, step_layer = NODE_H + ROW_GAP, NODE_W + COL_GAP
        width = PAD * 2 + layers * step_layer - COL_GAP
        height = PAD * 2 + widest * step_slot - ROW_GAP

    def origin(key: str) -> tuple[float, float]:
        layer, slot = places[key]
        # Centre short layers against the widest one.
        offset = (widest - in_layer[layer]) * step_slot / 2
        if down:
            return PAD + offset + slot * step_slot, PAD + layer * step_layer
        return PAD + layer * step_layer, PAD + offset + slot * step_slot

    out = [
        f'<svg class="{escape(css_class)}" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto">'
        '<path d="M0,0 L10,5 L0,10 z" class="arrowhead"/></marker></defs>',
    ]
    for src, dst in edges:
        if src not in places or dst not in places:
            continue
        sx, sy = origin(src)
        dx, dy = origin(dst)
        if down:
            x1, y1, x2, y2 = sx + NODE_W / 2, sy + NODE_H, dx + NODE_W / 2, dy - 2
            bend = max(16.0, (y2 - y1) / 2)
            path = f"M{x1:.1f},{y1:.1f} C{x1:.1f},{y1 + bend:.1f} {x2:.1f},{y2 - bend:.1f} {x2:.1f},{y2:.1f}"
        else:
            x1, y1, x2, y2 = sx + NODE_W, sy + NODE_H / 2, dx - 2, dy + NODE_H / 2
            bend = max(24.0, (x2 - x1) / 2)
            path = f"M{x1:.1f},{y1:.1f} C{x1 + bend:.1f},{y1:.1f} {x2 - bend:.1f},{y2:.1f} {x2:.1f},{y2:.1f}"
        out.append(f'<path d="{path}" class="edge" marker-end="url(#arrow)"/>')
    for node in nodes:
        x, y = origin(node.key)
        classes = f"node {node.kind} state-{node.state}" + (" focus" if node.focus else "")
        data = f' data-node="{escape(node.data_node)}"' if node.data_node else ""
        pill = node.kind == "artifact"
        tip = f"{node.label} — {node.sublabel}" if node.sublabel else node.label
        mark = (
            f'<rect x="12" y="15" width="5" height="{NODE_H - 30}" rx="2" class="node-mark"/>'
            if pill
            else f'<rect x="3" y="8" width="5" height="{NODE_H - 16}" rx="2" class="node-mark"/>'
        )
        text_x = 24 if pill else 16
        body = (
            f'<g class="{escape(classes)}"{data} transform="translate({x:.1f},{y:.1f})">'
            f"<title>{escape(tip)}</title>"
            f'<rect width="{NODE_W}" height="{NODE_H}" rx="{NODE_H / 2 if pill else 8}" class="node-box"/>'
            f"{mark}"
            f'<text x="{text_x}" y="21" class="node-label">{escape(_short(node.label, 18))}</text>'
            f'<text x="{text_x}" y="38" class="node-sub">{escape(_short(node.sublabel, 22 if pill else 24))}</text>'
            "</g>"
        )
        if node.href:
            body = f'<a href="{escape(node.href)}">{body}</a>'
        out.append(body)
    out.append("</svg>")
    return Markup("".join(out))
