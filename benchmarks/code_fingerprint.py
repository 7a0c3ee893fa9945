"""What a component's code fingerprint costs, and how many components an edit invalidates.

Each repeat runs in a fresh interpreter (nothing cached) and times, for every shipped component:

* **closure** (current): ``Component.code_fingerprint``, the component's module plus the project
  modules it imports (``flywheel/dsl/code_fingerprint.py``);
* **folder** (baseline, the previous rule, reimplemented here): sha256 over every ``.py`` file in
  the component's folder.

Then it counts, for each module in ``components/``, how many components' keys an edit to it
changes under each rule (the folder rule: all of them).

    .venv/bin/python benchmarks/code_fingerprint.py --repeat 5
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

CHILD = r"""
import hashlib, importlib, json, os, pkgutil, sys, time
import flywheel.components as package
from flywheel.dsl.component import Component
from flywheel.dsl import code_fingerprint

components = []
for info in pkgutil.iter_modules(package.__path__):
    module = importlib.import_module(f"{package.__name__}.{info.name}")
    components += [v for v in vars(module).values() if isinstance(v, Component) and v.fn.__module__ == module.__name__]
components = sorted({c.name: c for c in components}.values(), key=lambda c: c.name)

def folder_hash(directory):
    digest = hashlib.sha256()
    for name in sorted(os.listdir(directory)):
        if name.endswith(".py"):
            digest.update(name.encode())
            with open(os.path.join(directory, name), "rb") as handle:
                digest.update(handle.read())
    return digest.hexdigest()

started = time.perf_counter()
for c in components:
    c.code_fingerprint
closure_s = time.perf_counter() - started
started = time.perf_counter()
for c in components:
    folder_hash(os.path.dirname(sys.modules[c.fn.__module__].__file__))
folder_s = time.perf_counter() - started
covers = {c.name: code_fingerprint.project_modules(c.fn.__module__) for c in components}
print(json.dumps({"closure_s": closure_s, "folder_s": folder_s, "covers": covers}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    runs = []
    for _ in range(args.repeat):
        out = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, check=True)
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    closure = statistics.median(r["closure_s"] for r in runs)
    folder = statistics.median(r["folder_s"] for r in runs)
    covers = runs[0]["covers"]
    print(f"load average at end: {os.getloadavg()[0]:.2f}; {len(covers)} components; medians of {args.repeat} fresh processes")
    print(f"{'rule':<10}{'all fingerprints':>18}{'per component':>16}")
    print(f"{'closure':<10}{closure * 1000:>15.1f} ms{closure / len(covers) * 1000:>13.2f} ms")
    print(f"{'folder':<10}{folder * 1000:>15.1f} ms{folder / len(covers) * 1000:>13.2f} ms")
    print(f"closure / folder: {closure / folder:.2f}x")
    modules = sorted({m for mods in covers.values() for m in mods if m.startswith("flywheel.components.")})
    hits = {m: sum(m in mods for mods in covers.values()) for m in modules}
    print(f"\ncomponents whose cache an edit to a module invalidates (folder rule: all {len(covers)}):")
    for module, count in sorted(hits.items(), key=lambda kv: (-kv[1], kv[0])):
        print(f"  {module.removeprefix('flywheel.components.'):<24}{count:>3}")
    print(f"median over modules: {statistics.median(hits.values()):.0f} of {len(covers)}")


if __name__ == "__main__":
    main()
