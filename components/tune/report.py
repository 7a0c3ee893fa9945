"""The plot and HTML report of ``tune``: score per trial and best so far.

Self-contained HTML (inline CSS, no scripts, no CDN) that links the PNG written
beside it; every string from the data goes through ``html.escape``.
"""

from __future__ import annotations

import html
import json
import os
from typing import Any

from flywheel.components.tune import search as tune_search

PLOT_FILE = "trials.png"
REPORT_FILE = "index.html"
_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:1.5em;color:#222}
h1{font-size:1.4em}table{border-collapse:collapse;margin:.5em 0;font-size:.9em}
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:left}th{background:#f3f3f3}
td.num{text-align:right;font-variant-numeric:tabular-nums}tr.best{background:#e7f5e7;font-weight:600}
img{max-width:100%;margin:.4em 0}
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _value(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else json.dumps(value)


def plot_trials(trials: list[dict[str, Any]], objective: str, path: str, *, title: str) -> None:
    """Writes a PNG: each trial's score (dots) and the best score so far (a step line)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure = plt.figure(figsize=(6.4, 3.6), dpi=90)
    axes = figure.add_subplot(1, 1, 1)
    xs = [i + 1 for i, t in enumerate(trials) if t["status"] == "COMPLETED"]
    ys = [t["score"] for t in trials if t["status"] == "COMPLETED"]
    axes.scatter(xs, ys, s=18, color="#4c72b0", label="trial")
    curve = tune_search.best_so_far(trials, objective)
    steps = [(i + 1, v) for i, v in enumerate(curve) if v is not None]
    if steps:
        axes.step([s[0] for s in steps], [s[1] for s in steps], where="post", color="#dd8452", label="best so far")
    axes.set_xlabel("trial")
    axes.set_ylabel(objective)
    axes.set_title(title)
    axes.legend(loc="best")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def render_report(trials: list[dict[str, Any]], summary: dict[str, Any]) -> str:
    """The HTML page: the summary, the plot and one row per trial (the best one highlighted)."""
    names = list(trials[0]["hyperparameters"]) if trials else []
    head = "".join(f"<th>{_e(h)}</th>" for h in ["trial", "status", summary["objective"], "epochs", "seconds", *names])
    rows = []
    for t in trials:
        cells = [t["trial_id"], t["status"]]
        score = "" if t["score"] is None else f"{t['score']:.4g}"
        values = "".join(f"<td>{_e(_value(t['hyperparameters'][n]))}</td>" for n in names)
        best = ' class="best"' if t["trial_id"] == summary.get("best_trial_id") else ""
        rows.append(
            f"<tr{best}><td>{_e(cells[0])}</td><td>{_e(cells[1])}</td><td class=\"num\">{score}</td>"
            f"<td class=\"num\">{t['epochs']}</td><td class=\"num\">{t['seconds']:.2f}</td>{values}</tr>"
        )
    facts = "".join(
        f"<tr><th>{_e(k)}</th><td>{_e(json.dumps(v) if isinstance(v, (dict, list)) else v)}</td></tr>"
        for k, v in summary.items()
    )
    title = f"tune: {summary['strategy']} search, {len(trials)} trials"
    return (
        f"<!doctype html><html><head><meta charset=\"utf-8\"><title>{_e(title)}</title><style>{_CSS}</style></head>"
        f"<body><h1>{_e(title)}</h1><table>{facts}</table>"
        f'<img src="{PLOT_FILE}" alt="score per trial and best so far">'
        f"<table><tr>{head}</tr>{''.join(rows)}</table></body></html>\n"
    )


def write_report(directory: str, trials: list[dict[str, Any]], summary: dict[str, Any]) -> None:
    """Writes ``trials.png`` and ``index.html`` into ``directory``."""
    plot_trials(trials, summary["objective"], os.path.join(directory, PLOT_FILE),
                title=f"{summary['strategy']}: {summary['objective']} per trial")
    with open(os.path.join(directory, REPORT_FILE), "w", encoding="utf-8") as handle:
        handle.write(render_report(trials, summary))
