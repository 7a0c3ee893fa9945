"""Charts as server-rendered SVG: line charts, horizontal bars, a confusion matrix.

Every label that reaches the SVG goes through ``markupsafe.escape``; the
result is ``Markup`` so templates embed it as is. No script, no inline
``style`` attribute (the dashboard's Content-Security-Policy forbids both):
colours are SVG presentation attributes or CSS classes from style.css.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from typing import Sequence

from markupsafe import Markup, escape

PALETTE = ("#2563eb", "#f97316", "#16a34a", "#9333ea", "#dc2626", "#0891b2", "#ca8a04", "#db2777", "#4b5563")
BAD = "#dc2626"


@dataclasses.dataclass
class Series:
    """One line of a line chart.

    Attributes:
        name: Legend text.
        xs: X values (numbers; epoch seconds when the chart's x axis is time).
        ys: Y values; None leaves a gap.
        color: Stroke colour; picked from the palette when empty.
        dashed: Draw dashed (e.g. validation curves).
        flagged: Per point, True marks it in red (a drifted check).
    """

    name: str
    xs: Sequence[float]
    ys: Sequence[float | None]
    color: str = ""
    dashed: bool = False
    flagged: Sequence[bool] = ()


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """About ``count`` round tick values covering [low, high]."""
    if not math.isfinite(low) or not math.isfinite(high):
        return [0.0]
    if high <= low:
        return [low]
    raw = (high - low) / max(1, count)
    magnitude = 10 ** math.floor(math.log10(raw))
    # The finest round step that needs at most count + 1 intervals.
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10, 20) if (high - low) / (m * magnitude) <= count + 1)
    first = math.ceil(low / step - 1e-9) * step
    ticks = []
    value = first
    while value <= high + step * 1e-9:
        ticks.append(round(value, 12))
        value += step
    return ticks


def _fmt(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 10000 or abs(value) < 0.001:
        return f"{value:.2g}"
    return f"{value:.4g}"


def _time_label(epoch: float, span: float) -> str:
    moment = dt.datetime.fromtimestamp(epoch)
    if span <= 2 * 86400:
        return moment.strftime("%H:%M")
    return moment.strftime("%m-%d %H:%M") if span <= 14 * 86400 else moment.strftime("%Y-%m-%d")


def _color(index: int, color: str) -> str:
    return color or PALETTE[index % len(PALETTE)]


def empty_chart(message: str, *, width: int = 560, height: int = 120) -> Markup:
    """A placeholder box with a message (no data yet)."""
    return Markup(
        f'<svg class="chart empty" viewBox="0 0 {width} {height}" role="img">'
        f'<rect x="1" y="1" width="{width - 2}" height="{height - 2}" rx="8" fill="#f8fafc" stroke="#e2e8f0"/>'
        f'<text x="{width / 2}" y="{height / 2 + 4}" text-anchor="middle" class="muted">{escape(message)}</text></svg>'
    )


def line_chart(
    series: Sequence[Series],
    *,
    title: str = "",
    x_label: str = "",
    y_label: str = "",
    x_time: bool = False,
    y_range: tuple[float, float] | None = None,
    x_range: tuple[float, float] | None = None,
    hlines: Sequence[tuple[float, str]] = (),
    vlines: Sequence[tuple[float, str]] = (),
    diagonal: bool = False,
    width: int = 560,
    height: int = 280,
    show_points: bool = False,
) -> Markup:
    """A line chart with axes, ticks, a legend and optional reference lines.

    Args:
        series: The lines.
        x_time: X values are epoch seconds; ticks show clock times.
        y_range, x_range: Fixed axis ranges; derived from the data otherwise.
        hlines, vlines: Reference lines as (value, label), drawn dashed.
        diagonal: Draw the y = x chance line (ROC curves).
        show_points: Draw a dot on every point (always drawn for flagged points).
    """
    xs = [x for s in series for x, y in zip(s.xs, s.ys) if y is not None]
    ys = [y for s in series for y in s.ys if y is not None]
    if not xs:
        return empty_chart(f"{title}: no data" if title else "no data", width=width)
    left, right, top, bottom = 58, 16, 30 if title else 12, 44
    legend_rows = math.ceil(len(series) / 3) if len(series) > 1 else 0
    bottom += legend_rows * 18
    x0, x1 = x_range or (min(xs), max(xs))
    y0, y1 = y_range or (min(ys + [v for v, _ in hlines]), max(ys + [v for v, _ in hlines]))
    if x1 == x0:
        x0, x1 = x0 - 1, x1 + 1
    if y1 == y0:
        pad = abs(y0) * 0.1 or 1.0
        y0, y1 = y0 - pad, y1 + pad
    elif y_range is None:
        pad = (y1 - y0) * 0.06
        y0, y1 = (0.0 if y0 >= 0 and y0 - pad < 0 else y0 - pad), y1 + pad
    plot_w, plot_h = width - left - right, height - top - bottom

    def sx(x: float) -> float:
        return left + (x - x0) / (x1 - x0) * plot_w

    def sy(y: float) -> float:
        return top + plot_h - (y - y0) / (y1 - y0) * plot_h

    out = [f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}">']
    if title:
        out.append(f'<text x="{left}" y="18" class="chart-title">{escape(title)}</text>')
    for tick in nice_ticks(y0, y1):
        y = sy(tick)
        out.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>')
        out.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" class="tick">{escape(_fmt(tick))}</text>')
    span = x1 - x0
    if x_time:
        ticks = [x0 + span * i / 4 for i in range(5)] if span >= 300 else [(x0 + x1) / 2]
    else:
        ticks = nice_ticks(x0, x1, 6)
    for tick in ticks:
        x = sx(tick)
        label = _time_label(tick, span) if x_time else _fmt(tick)
        out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top + plot_h}" y2="{top + plot_h + 4}" class="axis"/>')
        out.append(f'<text x="{x:.1f}" y="{top + plot_h + 16}" text-anchor="middle" class="tick">{escape(label)}</text>')
    out.append(f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" class="frame"/>')
    if diagonal:
        out.append(f'<line x1="{sx(0):.1f}" y1="{sy(0):.1f}" x2="{sx(1):.1f}" y2="{sy(1):.1f}" class="refline"/>')
    for value, label in hlines:
        if y0 <= value <= y1:
            y = sy(value)
            out.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{y:.1f}" y2="{y:.1f}" class="threshold"/>')
            out.append(f'<text x="{left + plot_w - 4}" y="{y - 4:.1f}" text-anchor="end" class="threshold-label">{escape(label)}</text>')
    for value, label in vlines:
        if x0 <= value <= x1:
            x = sx(value)
            out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{top + plot_h}" class="threshold"/>')
            out.append(f'<text x="{x - 4:.1f}" y="{top + plot_h - 6}" text-anchor="end" class="threshold-label">{escape(label)}</text>')
    for index, s in enumerate(series):
        color = _color(index, s.color)
        segments: list[list[str]] = [[]]
        for x, y in zip(s.xs, s.ys):
            if y is None:
                segments.append([])
                continue
            segments[-1].append(f"{sx(x):.1f},{sy(y):.1f}")
        dash = ' stroke-dasharray="6 4"' if s.dashed else ""
        for points in segments:
            if len(points) > 1:
                out.append(f'<polyline points="{" ".join(points)}" fill="none" stroke="{color}" stroke-width="2"{dash}/>')
        flagged = list(s.flagged) + [False] * (len(s.xs) - len(s.flagged))
        for x, y, bad in zip(s.xs, s.ys, flagged):
            if y is None or not (show_points or bad or len(s.xs) == 1):
                continue
            fill = BAD if bad else color
            tip = f"{s.name}: {_fmt(y)}" + (" (drifted)" if bad else "")
            out.append(
                f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="{4 if bad else 3}" fill="{fill}">'
                f"<title>{escape(tip)}</title></circle>"
            )
    if x_label:
        out.append(f'<text x="{left + plot_w / 2}" y="{top + plot_h + 32}" text-anchor="middle" class="axis-label">{escape(x_label)}</text>')
    if y_label:
        cy = top + plot_h / 2
        out.append(f'<text x="14" y="{cy}" text-anchor="middle" transform="rotate(-90 14 {cy})" class="axis-label">{escape(y_label)}</text>')
    if legend_rows:
        for index, s in enumerate(series):
            row, col = divmod(index, 3)
            lx = left + col * (plot_w / 3)
            ly = height - legend_rows * 18 + row * 18 + 4
            dash = ' stroke-dasharray="6 4"' if s.dashed else ""
            out.append(f'<line x1="{lx:.1f}" x2="{lx + 18:.1f}" y1="{ly:.1f}" y2="{ly:.1f}" stroke="{_color(index, s.color)}" stroke-width="3"{dash}/>')
            out.append(f'<text x="{lx + 24:.1f}" y="{ly + 4:.1f}" class="legend">{escape(s.name)}</text>')
    out.append("</svg>")
    return Markup("".join(out))


def bar_chart(
    labels: Sequence[str],
    values: Sequence[float],
    *,
    title: str = "",
    width: int = 560,
    value_format: str = "{:g}",
    colors: Sequence[str] = (),
) -> Markup:
    """Horizontal bars, one per label, with the value written at the end."""
    if not labels:
        return empty_chart(f"{title}: no data" if title else "no data", width=width)
    bar_h, gap, label_w, top = 22, 8, 150, 30 if title else 8
    height = top + len(labels) * (bar_h + gap) + 4
    high = max(max(values), 1e-12)
    plot_w = width - label_w - 70
    out = [f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}">']
    if title:
        out.append(f'<text x="8" y="18" class="chart-title">{escape(title)}</text>')
    for index, (label, value) in enumerate(zip(labels, values)):
        y = top + index * (bar_h + gap)
        w = max(1.0, value / high * plot_w)
        color = colors[index] if index < len(colors) and colors[index] else _color(index, "")
        text = label if len(label) <= 22 else label[:21] + "…"
        out.append(f'<text x="{label_w - 8}" y="{y + 15}" text-anchor="end" class="tick"><title>{escape(label)}</title>{escape(text)}</text>')
        out.append(f'<rect x="{label_w}" y="{y}" width="{w:.1f}" height="{bar_h}" rx="3" fill="{color}"/>')
        out.append(f'<text x="{label_w + w + 6:.1f}" y="{y + 15}" class="bar-value">{escape(value_format.format(value))}</text>')
    out.append("</svg>")
    return Markup("".join(out))


def confusion_matrix(labels: Sequence[str], matrix: Sequence[Sequence[float]], *, title: str = "") -> Markup:
    """A heat map of a confusion matrix: rows are true labels, columns predictions.

    Cell shade is the share of its row (recall), the number is the count.
    """
    n = len(labels)
    if not n:
        return empty_chart("no confusion matrix")
    cell, label_w, top = 56 if n <= 6 else 36, 110, 70 if title else 52
    width, height = label_w + n * cell + 10, top + n * cell + 30
    out = [f'<svg class="chart cm" viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title or "confusion matrix")}">']
    if title:
        out.append(f'<text x="4" y="18" class="chart-title">{escape(title)}</text>')
    out.append(f'<text x="{label_w + n * cell / 2}" y="{top - 34}" text-anchor="middle" class="axis-label">predicted</text>')
    for j, label in enumerate(labels):
        text = label if len(label) <= 9 else label[:8] + "…"
        out.append(f'<text x="{label_w + j * cell + cell / 2}" y="{top - 8}" text-anchor="middle" class="tick"><title>{escape(label)}</title>{escape(text)}</text>')
    for i, row in enumerate(matrix):
        total = sum(row) or 1
        text = labels[i] if len(labels[i]) <= 14 else labels[i][:13] + "…"
        out.append(f'<text x="{label_w - 8}" y="{top + i * cell + cell / 2 + 4}" text-anchor="end" class="tick"><title>{escape(labels[i])}</title>{escape(text)}</text>')
        for j, value in enumerate(row):
            share = value / total
            fill = f"rgba(37,99,235,{0.08 + 0.85 * share:.3f})" if i == j else f"rgba(220,38,38,{0.06 + 0.8 * share:.3f})" if value else "#f8fafc"
            ink = "#ffffff" if share > 0.55 else "#0f172a"
            x, y = label_w + j * cell, top + i * cell
            out.append(
                f'<rect x="{x}" y="{y}" width="{cell - 2}" height="{cell - 2}" rx="4" fill="{fill}" class="cm-cell">'
                f"<title>{escape(f'true {labels[i]}, predicted {labels[j]}: {value:g} ({share:.0%} of row)')}</title></rect>"
            )
            out.append(f'<text x="{x + cell / 2 - 1}" y="{y + cell / 2 + 4}" text-anchor="middle" fill="{ink}" class="cm-value">{escape(f"{value:g}")}</text>')
    out.append(f'<text x="12" y="{top + n * cell / 2}" text-anchor="middle" transform="rotate(-90 12 {top + n * cell / 2})" class="axis-label">true</text>')
    out.append("</svg>")
    return Markup("".join(out))
