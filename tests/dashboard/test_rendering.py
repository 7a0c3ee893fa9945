"""Server-side rendering pieces: PR curves from ROC points, DAG layout, chart escaping and ticks."""

from __future__ import annotations

import numpy as np

from flywheel.dashboard import charts, graph
from flywheel.dashboard.pages_models import _pr_points


def test_precision_recall_from_roc_points_matches_scikit_learn():
    from sklearn.metrics import precision_recall_curve, roc_curve

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400)
    score = np.clip(y * 0.35 + rng.normal(0.4, 0.25, 400), 0, 1)
    fpr, tpr, thresholds = roc_curve(y, score, drop_intermediate=False)
    points = [{"recall": float(r), "falsePositiveRate": float(f)} for r, f in zip(tpr, fpr)]
    recall, precision = _pr_points(points, positives=int(y.sum()), negatives=int(len(y) - y.sum()))
    want_p, want_r, want_t = precision_recall_curve(y, score)
    expected = {round(float(t), 12): float(p) for p, t in zip(want_p[:-1], want_t)}
    compared = 0
    for threshold, r, p in zip(thresholds, recall, precision):
        key = round(float(threshold), 12)
        if key in expected:
            assert abs(p - expected[key]) < 1e-9
            compared += 1
    assert compared > 100


def test_layout_puts_each_node_after_its_inputs():
    nodes = [graph.GraphNode(key=k, label=k) for k in ("ingest", "validate", "transform", "train", "evaluate")]
    edges = [("ingest", "validate"), ("ingest", "transform"), ("validate", "transform"),
             ("transform", "train"), ("ingest", "train"), ("train", "evaluate"), ("ingest", "evaluate")]
    places = graph.layout(nodes, edges)
    assert [places[n.key][0] for n in nodes] == [0, 1, 2, 3, 4]
    for src, dst in edges:
        assert places[src][0] < places[dst][0]
    # Siblings share a column in distinct rows.
    fan = graph.layout([graph.GraphNode(key=k, label=k) for k in "abc"], [("a", "b"), ("a", "c")])
    assert fan["b"][0] == fan["c"][0] == 1 and fan["b"][1] != fan["c"][1]


def test_svg_escapes_every_label():
    evil = "<script>alert(1)</script>"
    svg = str(charts.line_chart([charts.Series(evil, [0, 1], [0.2, 0.4])], title=evil, x_label=evil, y_label=evil,
                                hlines=[(0.3, evil)]))
    svg += str(charts.bar_chart([evil], [3], title=evil))
    svg += str(charts.confusion_matrix([evil, "b"], [[1, 0], [0, 1]], title=evil))
    svg += str(graph.render([graph.GraphNode(key=evil, label=evil, sublabel=evil, href=f"/x?{evil}", data_node=evil)], []))
    assert "<script" not in svg and "&lt;script&gt;" in svg


def test_nice_ticks_are_round_and_cover_the_range():
    assert charts.nice_ticks(0, 1) == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    ticks = charts.nice_ticks(0.013, 0.27)
    assert ticks[0] >= 0.013 and ticks[-1] <= 0.27 and len(ticks) >= 3
    assert all(abs(t * 100 - round(t * 100)) < 1e-6 for t in ticks)
