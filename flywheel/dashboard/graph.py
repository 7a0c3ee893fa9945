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

NODE_W, NODE_H, COL_GAP, ROW_GAP, PAD = 168, 50, 64, 18, 14


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


def render(nodes: Sequence[GraphNode], edges: Sequence[tuple[str, str]], *, css_class: str = "dag") -> Markup:
    """The graph as an SVG element (nodes link to their pages)."""
    if not nodes:
        return Markup('<p class="muted">Nothing to draw.</p>')
    places = layout(nodes, edges)
    rows_in_col: dict[int, int] = {}
    for col, row in places.values():
        rows_in_col[col] = max(rows_in_col.get(col, 0), row + 1)
    tallest = max(rows_in_col.values())
    width = PAD * 2 + (max(rows_in_col) + 1) * (NODE_W + COL_GAP) - COL_GAP
    height = PAD * 2 + tallest * (NODE_H + ROW_GAP) - ROW_GAP

    def origin(key: str) -> tuple[float, float]:
        col, row = places[key]
        # Centre short columns vertically against the tallest one.
        offset = (tallest - rows_in_col[col]) * (NODE_H + ROW_GAP) / 2
        return PAD + col * (NODE_W + COL_GAP), PAD + offset + row * (NODE_H + ROW_GAP)

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
        x1, y1, x2, y2 = sx + NODE_W, sy + NODE_H / 2, dx - 2, dy + NODE_H / 2
        bend = max(24.0, (x2 - x1) / 2)
        out.append(
            f'<path d="M{x1:.1f},{y1:.1f} C{x1 + bend:.1f},{y1:.1f} {x2 - bend:.1f},{y2:.1f} {x2:.1f},{y2:.1f}" '
            'class="edge" marker-end="url(#arrow)"/>'
        )
    for node in nodes:
        x, y = origin(node.key)
        classes = f"node {node.kind} state-{node.state}" + (" focus" if node.focus else "")
        data = f' data-node="{escape(node.data_node)}"' if node.data_node else ""
        radius = NODE_H / 2 if node.kind == "artifact" else 8
        tip = f"{node.label} — {node.sublabel}" if node.sublabel else node.label
        body = (
            f'<g class="{escape(classes)}"{data} transform="translate({x:.1f},{y:.1f})">'
            f"<title>{escape(tip)}</title>"
            f'<rect width="{NODE_W}" height="{NODE_H}" rx="{radius}" class="node-box"/>'
            f'<rect x="{3 if node.kind == "execution" else 10}" y="{8 if node.kind == "execution" else 14}" '
            f'width="5" height="{NODE_H - 16 if node.kind == "execution" else NODE_H - 28}" rx="2" class="node-mark"/>'
            f'<text x="16" y="21" class="node-label">{escape(_short(node.label, 20))}</text>'
            f'<text x="16" y="38" class="node-sub">{escape(_short(node.sublabel, 25))}</text>'
            "</g>"
        )
        if node.href:
            body = f'<a href="{escape(node.href)}">{body}</a>'
        out.append(body)
    out.append("</svg>")
    return Markup("".join(out))
