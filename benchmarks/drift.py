"""Drift check time: flywheel's drift tests next to Evidently's DataDriftPreset, same data, same run.

    python benchmarks/drift.py                     # 100k and 1M rows x 25 columns
    python benchmarks/drift.py --rows 100000       # one size
    python benchmarks/drift.py --skip-evidently    # flywheel only

Data: a reference and a current table of N rows each, 25 columns: 15 numeric
(12 continuous normal/lognormal/uniform, 3 integer with 4 values) and 10
categorical (strings, 3-8 categories). Shifted in the current table: 4
continuous columns (+0.3 std or scale x1.3), 1 integer column and 3
categorical columns (shares moved); the other 17 columns are drawn from the
same distributions as the reference. Both tables are written to Parquet under
benchmarks/out/ and each side reads them before its clock starts.

Flywheel side: ``flywheel.monitoring.drift.dataset_drift`` with ``test="auto"``,
i.e. Evidently's default test per column (Wasserstein normed >= 0.1 for
numeric columns with > 5 values, Jensen-Shannon >= 0.1 otherwise, at more than
1000 reference rows). Evidently side: ``Report([DataDriftPreset()]).run(...)``
in its own venv (benchmarks/.venv-evidently, created on first use from
benchmarks/requirements-evidently.txt: Evidently 0.7 needs pandas 2 / numpy 2,
the pinned stack has pandas 1.5.3 / numpy 1.26.4), in a subprocess. Only the
drift computation is timed on both sides. Printed: both times, the speed-up,
both detection sets and whether they agree.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np
from _venvs import venv_python

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "out")
VENV = os.path.join(HERE, ".venv-evidently")
REQUIREMENTS = os.path.join(HERE, "requirements-evidently.txt")

EVIDENTLY_SCRIPT = r"""
import json, sys, time
import pandas as pd
from evidently import DataDefinition, Dataset, Report
from evidently.presets import DataDriftPreset

ref_path, cur_path, kinds_json = sys.argv[1:4]
kinds = json.loads(kinds_json)
reference, current = pd.read_parquet(ref_path), pd.read_parquet(cur_path)
definition = DataDefinition(
    numerical_columns=[c for c, k in kinds.items() if k == "numeric"],
    categorical_columns=[c for c, k in kinds.items() if k == "categorical"],
)
started = time.perf_counter()
snapshot = Report([DataDriftPreset()]).run(
    Dataset.from_pandas(current, data_definition=definition),
    Dataset.from_pandas(reference, data_definition=definition),
)
seconds = time.perf_counter() - started
columns = {}
for metric in snapshot.dict()["metrics"]:
    config = metric["config"]
    if not config["type"].endswith("ValueDrift"):
        continue
    method, threshold, value = config["method"], config["threshold"], metric["value"]
    if "p_value" in method:
        drifted = value <= threshold if method.startswith("K-S") else value < threshold
    else:
        drifted = value >= threshold
    columns[config["column"]] = {"method": method, "value": value, "drifted": bool(drifted)}
print(json.dumps({"seconds": seconds, "columns": columns}))
"""


def make_tables(rows: int, seed: int = 0) -> tuple[object, object, dict[str, str], set[str]]:
    """(reference, current, kinds, columns shifted on purpose)."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    reference, current, kinds, shifted = {}, {}, {}, set()
    for i in range(12):
        name = f"num_{i:02d}"
        kinds[name] = "numeric"
        maker = [lambda n: rng.normal(50, 10, n), lambda n: rng.lognormal(3, 0.5, n), lambda n: rng.uniform(0, 100, n)][
            i % 3
        ]
        reference[name] = maker(rows)
        values = maker(rows)
        if i < 4:  # shifted: location by 0.3 std, or scale x1.3
            std = float(np.std(reference[name]))
            values = values + 0.3 * std if i % 2 == 0 else (values - values.mean()) * 1.3 + values.mean()
            shifted.add(name)
        current[name] = values
    for i in range(3):
        name = f"int_{i:02d}"
        kinds[name] = "numeric"
        reference[name] = rng.choice(4, rows, p=[0.4, 0.3, 0.2, 0.1]).astype(np.int64)
        p = [0.2, 0.2, 0.3, 0.3] if i == 0 else [0.4, 0.3, 0.2, 0.1]
        current[name] = rng.choice(4, rows, p=p).astype(np.int64)
        if i == 0:
            shifted.add(name)
    for i in range(10):
        name = f"cat_{i:02d}"
        kinds[name] = "categorical"
        k = 3 + i % 6
        labels = np.array([f"{name}_v{j}" for j in range(k)], dtype=object)
        p = np.linspace(2, 1, k)
        p /= p.sum()
        reference[name] = labels[rng.choice(k, rows, p=p)]
        q = p[::-1] if i < 3 else p  # shifted: shares reversed
        current[name] = labels[rng.choice(k, rows, p=q)]
        if i < 3:
            shifted.add(name)
    return pd.DataFrame(reference), pd.DataFrame(current), kinds, shifted


def evidently_python() -> str:
    """The Evidently venv's python, created on first use."""
    return venv_python(VENV, REQUIREMENTS, label="Evidently")


def run_flywheel(ref_path: str, cur_path: str, kinds: dict[str, str]) -> tuple[float, dict[str, dict]]:
    import pandas as pd

    from flywheel.monitoring.drift import dataset_drift

    reference, current = pd.read_parquet(ref_path), pd.read_parquet(cur_path)
    started = time.perf_counter()
    results = dataset_drift(reference, current, kinds)
    seconds = time.perf_counter() - started
    return seconds, {r.feature: {"method": r.test, "value": r.statistic, "drifted": r.drifted} for r in results}


def run_evidently(ref_path: str, cur_path: str, kinds: dict[str, str]) -> tuple[float, dict[str, dict]]:
    completed = subprocess.run(
        [evidently_python(), "-c", EVIDENTLY_SCRIPT, ref_path, cur_path, json.dumps(kinds)],
        check=True,
        capture_output=True,
        text=True,
    )
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    return result["seconds"], result["columns"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--skip-evidently", action="store_true")
    args = parser.parse_args()
    os.makedirs(OUT, exist_ok=True)
    for rows in args.rows:
        reference, current, kinds, shifted = make_tables(rows)
        ref_path, cur_path = os.path.join(OUT, f"drift-ref-{rows}.parquet"), os.path.join(
            OUT, f"drift-cur-{rows}.parquet"
        )
        reference.to_parquet(ref_path, index=False)
        current.to_parquet(cur_path, index=False)
        del reference, current
        fly_s, fly = run_flywheel(ref_path, cur_path, kinds)
        fly_set = sorted(c for c, r in fly.items() if r["drifted"])
        print(
            f"\n{rows:,} rows x {len(kinds)} columns (reference and current each); shifted on purpose: {sorted(shifted)}"
        )
        print(f"  flywheel   {fly_s:8.3f} s  drifted ({len(fly_set)}): {fly_set}")
        print(f"             tests: {sorted({r['method'] for r in fly.values()})}")
        if args.skip_evidently:
            continue
        evi_s, evi = run_evidently(ref_path, cur_path, kinds)
        evi_set = sorted(c for c, r in evi.items() if r["drifted"])
        print(f"  evidently  {evi_s:8.3f} s  drifted ({len(evi_set)}): {evi_set}")
        print(f"             tests: {sorted({r['method'] for r in evi.values()})}")
        worst = max(abs(fly[c]["value"] - evi[c]["value"]) for c in kinds)
        print(
            f"  speed-up {evi_s / fly_s:.1f}x; detections agree: {fly_set == evi_set}; "
            f"largest |statistic difference| over columns: {worst:.2e}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
