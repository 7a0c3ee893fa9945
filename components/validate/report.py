"""The browsable HTML report of the ``validate`` component.

Self-contained (inline CSS, no scripts, no CDN) so it opens offline and inside
dashboards; every string that comes from the data (feature names, values,
anomaly descriptions) goes through ``html.escape``.
"""

from __future__ import annotations

import html
from typing import Any

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:1.5em;color:#222}
h1{font-size:1.4em}h2{font-size:1.15em;margin-top:1.6em}
table{border-collapse:collapse;margin:.5em 0;font-size:.9em}
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:left;vertical-align:top}
th{background:#f3f3f3}td.num{text-align:right;font-variant-numeric:tabular-nums}
tr.bad td{background:#fdecea}.ok{color:#1b7a1b}.bad{color:#b00020}
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _num(value: float) -> str:
    return f"{value:.4g}"


def feature_summaries(stats: Any) -> tuple[int, list[dict[str, Any]]]:
    """Number of examples and one summary dict per feature of a statistics list.

    Each summary has ``name``, ``type``, ``count``, ``missing_pct`` and either
    ``mean``/``std``/``min``/``max`` (numeric) or ``unique``/``top`` (categorical).
    """
    from tensorflow_metadata.proto.v0 import statistics_pb2

    if not stats.datasets:
        return 0, []
    dataset = stats.datasets[0]
    total = int(dataset.num_examples)
    rows = []
    for feature in dataset.features:
        kind = feature.WhichOneof("stats")
        if kind not in ("num_stats", "string_stats"):
            continue
        block = getattr(feature, kind)
        common = block.common_stats
        row: dict[str, Any] = {
            "name": feature.name or ".".join(feature.path.step),
            "type": statistics_pb2.FeatureNameStatistics.Type.Name(feature.type),
            "count": int(common.num_non_missing),
            "missing_pct": 100.0 * common.num_missing / total if total else 0.0,
        }
        if kind == "num_stats":
            row.update(mean=block.mean, std=block.std_dev, min=block.min, max=block.max)
        else:
            row.update(unique=int(block.unique), top=[(v.value, int(v.frequency)) for v in block.top_values[:5]])
        rows.append(row)
    return total, rows


def _anomaly_table(anomalies: dict[str, dict[str, str]], severity: dict[str, dict[str, dict[str, Any]]]) -> str:
    rows = [
        f"<tr class=bad><td>{_e(scope)}</td><td>{_e(feature)}</td>"
        f"<td>{_e(severity.get(scope, {}).get(feature, {}).get('severity', 'error'))}</td><td>{_e(text)}</td></tr>"
        for scope, found in anomalies.items()
        for feature, text in found.items()
    ]
    if not rows:
        return "<p class=ok>No anomalies.</p>"
    return (
        "<table><tr><th>where</th><th>feature</th><th>severity</th><th>anomaly</th></tr>" + "".join(rows) + "</table>"
    )


def _split_table(stats: Any, anomalous: set[str]) -> str:
    total, rows = feature_summaries(stats)
    out = [
        f"<p>{total} examples.</p><table><tr><th>feature</th><th>type</th><th>count</th>"
        "<th>missing %</th><th>mean</th><th>std</th><th>min</th><th>max</th><th>top values (unique)</th></tr>"
    ]
    for row in rows:
        cls = " class=bad" if row["name"] in anomalous else ""
        if "mean" in row:
            cells = "".join(f"<td class=num>{_num(row[k])}</td>" for k in ("mean", "std", "min", "max")) + "<td></td>"
        else:
            top = ", ".join(f"{_e(v)} ({n})" for v, n in row["top"])
            cells = "<td></td>" * 4 + f"<td>{top} ({row['unique']} unique)</td>"
        out.append(
            f"<tr{cls}><td>{_e(row['name'])}</td><td>{_e(row['type'])}</td><td class=num>{row['count']}</td>"
            f"<td class=num>{row['missing_pct']:.1f}</td>{cells}</tr>"
        )
    return "".join(out) + "</table>"


def _measurement_table(title: str, found: dict[str, dict[str, Any]]) -> str:
    if not found:
        return ""
    rows = "".join(
        f"<tr{' class=bad' if m['value'] > m['threshold'] else ''}><td>{_e(f)}</td><td>{_e(m['type'])}</td>"
        f"<td class=num>{_num(m['value'])}</td><td class=num>{_num(m['threshold'])}</td></tr>"
        for f, m in sorted(found.items())
    )
    return (
        f"<h2>{_e(title)}</h2><table><tr><th>feature</th><th>measure</th><th>value</th><th>threshold</th></tr>"
        f"{rows}</table>"
    )


def render_report(
    *,
    split_stats: dict[str, Any],
    anomalies: dict[str, dict[str, str]],
    measurements: dict[str, dict[str, dict[str, Any]]],
    schema_source: str,
    examples_uri: str,
    severity: dict[str, dict[str, dict[str, Any]]] | None = None,
) -> str:
    """The whole report as one HTML document (``severity``: validate's graded anomalies)."""
    count = sum(len(found) for found in anomalies.values())
    status = f"<p class=bad>{count} anomalies.</p>" if count else "<p class=ok>No anomalies.</p>"
    parts = [
        "<!DOCTYPE html><html><head><meta charset=utf-8><title>Data validation</title>",
        f"<style>{_CSS}</style></head><body><h1>Data validation</h1>",
        f"<p>Examples: <code>{_e(examples_uri)}</code>; schema: {_e(schema_source)}.</p>",
        status,
        "<h2>Anomalies</h2>",
        _anomaly_table(anomalies, severity or {}),
    ]
    for split, stats in split_stats.items():
        anomalous = set(anomalies.get(split, {}))
        parts.append(f"<h2>Split {_e(split)}</h2>{_split_table(stats, anomalous)}")
    parts.append(_measurement_table("Train/eval skew", measurements.get("skew", {})))
    parts.append(_measurement_table("Drift against previous statistics", measurements.get("drift", {})))
    parts.append("</body></html>")
    return "\n".join(parts)
