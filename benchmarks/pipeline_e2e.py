"""The training pipeline on penguins end to end: wall clock and peak memory, cold and cached.

Runs ``flywheel run pipelines/training.py`` as a user would (a fresh process, a
fresh home for the cold run, the same home again for the cached run) and samples
the whole process tree every 20 ms: peak RSS summed over processes, and peak
PSS (proportional set size, which counts pages shared by the forked workers
once, so it is the honest total).

    .venv/bin/python benchmarks/pipeline_e2e.py [--repeat 3]

Anchor (issue 3, same machine class): TFX 1.16 LocalDagRunner with the equivalent
penguin pipeline took 66 s wall, 1.2 GB peak RSS, eval accuracy 0.98.
Goal: <= 15 s cold, <= 3 s cached, < 800 MB peak, accuracy no lower.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TFX_ANCHOR = {"wall_s": 66.0, "rss_mb": 1200.0, "accuracy": 0.98}


def _children(pid: int) -> list[int]:
    found = []
    try:
        with open(f"/proc/{pid}/task/{pid}/children", encoding="ascii") as handle:
            found = [int(c) for c in handle.read().split()]
    except OSError:
        return []
    for child in list(found):
        found.extend(_children(child))
    return found


def _memory_kb(pid: int) -> tuple[int, int]:
    rss = pss = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("Rss:"):
                    rss = int(line.split()[1])
                elif line.startswith("Pss:"):
                    pss = int(line.split()[1])
    except OSError:
        pass
    return rss, pss


def run_and_sample(args: list[str], env: dict[str, str]) -> tuple[float, float, float, str]:
    """Wall seconds, peak summed RSS MB, peak summed PSS MB, stdout."""
    peak = {"rss": 0, "pss": 0}
    began = time.perf_counter()
    proc = subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            rss = pss = 0
            for pid in [proc.pid, *_children(proc.pid)]:
                r, p = _memory_kb(pid)
                rss += r
                pss += p
            peak["rss"] = max(peak["rss"], rss)
            peak["pss"] = max(peak["pss"], pss)
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, _ = proc.communicate()
    wall = time.perf_counter() - began
    done.set()
    sampler.join()
    if proc.returncode != 0:
        raise SystemExit(f"pipeline failed:\n{out}")
    return wall, peak["rss"] / 1024, peak["pss"] / 1024, out


def accuracy(home: str) -> float:
    sys.path.insert(0, REPO)
    from flywheel.home import Home
    from flywheel.metadata import MetadataStore

    store = MetadataStore(Home(home))
    run = store.list_runs(1)[0]
    return float(store.latest_nodes(run)["evaluate"].outputs["evaluation"].properties["accuracy"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="cold/cached pairs to run (medians are reported)")
    args = parser.parse_args()
    flywheel = [sys.executable, "-m", "flywheel", "run", os.path.join(REPO, "pipelines", "training.py")]
    cold, cached, rss, pss, accs = [], [], [], [], []
    for i in range(args.repeat):
        with tempfile.TemporaryDirectory() as home:
            env = dict(os.environ, FLYWHEEL_HOME=home)
            wall, peak_rss, peak_pss, _ = run_and_sample(flywheel, env)
            cold.append(wall)
            rss.append(peak_rss)
            pss.append(peak_pss)
            accs.append(accuracy(home))
            wall, _, _, out = run_and_sample(flywheel, env)
            assert "6 cached" in out, out
            cached.append(wall)
        print(
            f"repeat {i + 1}: cold {cold[-1]:.2f} s, cached {cached[-1]:.2f} s, "
            f"peak RSS {rss[-1]:.0f} MB (sum), peak PSS {pss[-1]:.0f} MB, accuracy {accs[-1]:.3f}"
        )
    med = statistics.median
    print()
    print("training pipeline on penguins (6 nodes), whole `flywheel run` process tree, medians:")
    print(f"  cold     {med(cold):6.2f} s   (goal <= 15 s)   TFX LocalDagRunner anchor {TFX_ANCHOR['wall_s']:.0f} s -> {TFX_ANCHOR['wall_s'] / med(cold):.1f}x faster")
    print(f"  cached   {med(cached):6.2f} s   (goal <= 3 s)")
    print(f"  peak     {med(pss):6.0f} MB PSS, {med(rss):.0f} MB RSS summed (goal < 800 MB)   TFX anchor {TFX_ANCHOR['rss_mb']:.0f} MB RSS")
    print(f"  accuracy {med(accs):6.3f}        TFX anchor {TFX_ANCHOR['accuracy']:.2f}")


if __name__ == "__main__":
    main()
