"""The HTML report and PNG plots of the ``explain`` component.

Self-contained HTML (inline CSS, no scripts, no CDN) that links PNGs written
beside it; every string from the data goes through ``html.escape``.
"""

from __future__ import annotations

import html
import os
from typing import Any

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:1.5em;color:#222}
h1{font-size:1.4em}h2{font-size:1.15em;margin-top:1.6em}
table{border-collapse:collapse;margin:.5em 0;font-size:.9em}
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:left}
th{background:#f3f3f3}td.num{text-align:right;font-variant-numeric:tabular-nums}
.ok{color:#1b7a1b}.bad{color:#b00020}img{max-width:100%;margin:.4em 0}
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _verdict(good: bool) -> str:
    return '<span class="ok">pass</span>' if good else '<span class="bad">fail</span>'


def _page(title: str, body: list[str]) -> str:
    return (f"<!doctype html><html><head><meta charset=\"utf-8\"><title>{_e(title)}</title><style>{_CSS}</style>"
            f"</head><body><h1>{_e(title)}</h1>{''.join(body)}</body></html>\n")


def _table(header: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    cells = "".join(
        "<tr>" + "".join(f'<td class="num">{v:.4g}</td>' if isinstance(v, float) else f"<td>{v}</td>" for v in row) + "</tr>"
        for row in rows
    )
    return f"<table><tr>{head}</tr>{cells}</table>"


def _figure(width: float, height: float) -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.figure(figsize=(width, height), dpi=90)


def _save(figure: Any, directory: str, name: str) -> str:
    import matplotlib.pyplot as plt

    figure.tight_layout()
    figure.savefig(os.path.join(directory, name))
    plt.close(figure)
    return f'<img src="{_e(name)}" alt="{_e(name)}">'


def table_report(directory: str, results: dict[str, Any], vocabulary: list[str]) -> str:
    """Writes the PNGs of a tabular explanation into ``directory``; returns the HTML page."""
    import numpy as np

    names, values, summary = results["names"], results["values"], results["summary"]
    shap, lime, k = summary["shap"], summary["lime"], summary["top_k"]

    figure = _figure(7, 0.4 * len(names) + 1.5)
    axis = figure.add_subplot(1, 1, 1)
    importance = np.abs(values).mean(axis=0)  # (d, k)
    order = np.argsort(importance.sum(axis=1))
    left = np.zeros(len(names))
    for c, label in enumerate(vocabulary):
        axis.barh([names[i] for i in order], importance[order, c], left=left, label=str(label))
        left += importance[order, c]
    axis.set_xlabel("mean |SHAP value| (stacked over classes)")
    axis.set_title("SHAP global importance")
    axis.legend(fontsize=8)
    global_png = _save(figure, directory, "shap_global.png")

    shown = min(4, len(results["labels"]))
    figure = _figure(11, 2.2 * shown + 0.5)
    for i in range(shown):
        label = int(results["labels"][i])
        for j, (attr, title) in enumerate(
            [(results["shap_attr"][i], f"SHAP: base {results['base'][label]:.3f} -> output {results['outputs'][i, label]:.3f}"),
             (results["lime_weights"][i], f"LIME contribution vs baseline: R\u00b2 {results['lime_r2'][i]:.3f}")]
        ):
            axis = figure.add_subplot(shown, 2, 2 * i + j + 1)
            colours = ["#c0392b" if v > 0 else "#2471a3" for v in attr]
            axis.barh(names, attr, color=colours)
            axis.axvline(0, color="#444", linewidth=0.8)
            axis.set_title(f"row {i}, class {vocabulary[label]}: {title}", fontsize=9)
            axis.tick_params(labelsize=8)
    local_png = _save(figure, directory, "per_prediction.png")

    checks = _table(
        ["explainer", "check", "value", "random baseline", "verdict"],
        [
            ["SHAP", "max |sum(SHAP) + base - output|", shap["max_additivity_error"], "-",
             _verdict(shap["additive_within_1e-4"])],
            ["SHAP", f"mean |change| of p(class), top-{k} features removed", shap["deletion_top_k_change"],
             shap["deletion_random_change"], _verdict(shap["deletion_top_k_change"] > shap["deletion_random_change"])],
            ["LIME", "mean surrogate R\u00b2 (min)", lime["mean_r2"], f"{lime['min_r2']:.3g}", "-"],
            ["LIME", f"mean |change| of p(class), top-{k} features removed", lime["deletion_top_k_change"],
             lime["deletion_random_change"], _verdict(lime["deletion_top_k_change"] > lime["deletion_random_change"])],
        ],
    )
    rows = _table(
        ["row", "predicted", "p", "SHAP additivity error", "LIME R\u00b2", "top SHAP feature", "top LIME feature"],
        [
            [i, _e(r["predicted"]), r["probability"], r["shap_additivity_error"], r["lime_r2"],
             _e(max(r["shap"], key=lambda n: abs(r["shap"][n]))), _e(max(r["lime"], key=lambda n: abs(r["lime"][n])))]
            for i, r in enumerate(results["rows_json"])
        ],
    )
    return _page("Explanations (table)", [
        f"<p>{summary['rows_explained']} predictions explained. Removing a feature replaces it with the train mean "
        "(numbers) or the most common value (categories); random baseline: k random features, 10 draws per row.</p>",
        "<h2>Faithfulness</h2>", checks, "<h2>SHAP global importance</h2>", global_png,
        "<h2>Per prediction (SHAP and LIME)</h2>", local_png, "<h2>Rows</h2>", rows,
    ])


def image_report(directory: str, results: dict[str, Any], vocabulary: list[str]) -> str:
    """Writes the PNGs of an image explanation into ``directory``; returns the HTML page."""
    summary, images = results["summary"], results["images"]
    shown = min(8, len(images))
    figure = _figure(1.6 * shown, 5.2)
    for i in range(shown):
        label = vocabulary[int(results["labels"][i])]
        picture = images[i].mean(axis=-1)
        for row, (overlay, title) in enumerate(
            [(None, f"pred {label}"), (results["cams"][i], "Grad-CAM"),
             (results["lime_maps"][i], f"LIME R\u00b2 {results['lime_r2'][i]:.2f}")]
        ):
            axis = figure.add_subplot(3, shown, row * shown + i + 1)
            axis.imshow(picture, cmap="gray_r")
            if overlay is not None:
                axis.imshow(overlay, cmap="jet" if row == 1 else "RdBu_r", alpha=0.55)
            axis.set_title(title, fontsize=8)
            axis.axis("off")
    maps_png = _save(figure, directory, "heat_maps.png")

    figure = _figure(9, 3.2)
    for j, kind in enumerate(["deletion", "insertion"]):
        axis = figure.add_subplot(1, 2, j + 1)
        for name, curves in results["curves"].items():
            curve = getattr(curves, f"{kind}_curve")
            axis.plot([s / (len(curve) - 1) for s in range(len(curve))], curve, label=name)
        axis.set_xlabel(f"share of pixels {'removed' if kind == 'deletion' else 'inserted'}")
        axis.set_ylabel("p(predicted class)")
        axis.set_title(f"{kind} curve ({'lower' if kind == 'deletion' else 'higher'} is better)")
        axis.legend(fontsize=8)
    curves_png = _save(figure, directory, "deletion_insertion.png")

    ink = summary["ink_share_of_area"]
    noise = summary["random_map"]
    rows = []
    for name in ("grad_cam", "lime_image", "random_map"):
        measured = summary[name]
        rows.append([
            _e(name), measured["mass_on_ink"], ink, measured["deletion_auc"], measured["insertion_auc"],
            "-" if name == "random_map" else _verdict(
                measured["mass_on_ink"] > ink and measured["deletion_auc"] < noise["deletion_auc"]
                and measured["insertion_auc"] > noise["insertion_auc"]),
        ])
    checks = _table(["map", "mass on ink", "ink share of area", "deletion AUC", "insertion AUC", "beats random"], rows)
    return _page("Explanations (images)", [
        f"<p>{summary['images_explained']} images explained; ink = pixel value &gt; {summary['ink_threshold']:.3g}. "
        f"Grad-CAM on layer {_e(summary['grad_cam']['layer'])}; LIME surrogate mean R\u00b2 "
        f"{summary['lime_image']['mean_r2']:.3f}.</p>",
        "<h2>Faithfulness</h2>", checks, "<h2>Heat maps</h2>", maps_png, "<h2>Deletion and insertion</h2>", curves_png,
    ])
