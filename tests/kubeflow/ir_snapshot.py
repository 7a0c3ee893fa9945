"""Compile every shipped pipeline to KFP IR, normalised, to diff a refactoring's effect on what Kubeflow runs.

::

    python tests/kubeflow/ir_snapshot.py snapshot DIR     # pipelines/*.py and the pipelines in examples/*.py
    python tests/kubeflow/ir_snapshot.py compare BEFORE AFTER

``snapshot`` runs ``flywheel compile`` (in this process, through the CLI's ``main``) on each pipeline
file into ``DIR/<file stem>.yaml``, then rewrites the values that legitimately change with any edit
to a component's code, the ``--code-fingerprint`` arguments, to ``<code-fingerprint>``. Nothing
else is touched: every other difference ``compare`` shows is a change in what the cluster runs.
``compare`` prints a unified diff per file (and files only one side has) and exits 1 when they differ.

Not a test (pytest does not collect it: no ``test_`` prefix); a developer tool for behaviour-preserving
changes (issue 16). Compiling imports kfp; the whole set takes about a minute.
"""

from __future__ import annotations

import difflib
import glob
import os
import re
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# The value after --code-fingerprint in a container's args (a YAML list item on the next line).
FINGERPRINT = re.compile(r"(- --code-fingerprint\n\s*- )[0-9a-f]{64}")
# Extra compilations of a file with other flags: (file stem, snapshot suffix, compile arguments). A
# constant random search fans tune's trials out as tasks (components/tune/fanout.py), a path no
# default compile takes.
VARIANTS = (("tuning", "fanout", ["-p", "strategy=random", "--fix-defaults"]),)


def pipeline_files() -> list[str]:
    """The shipped pipeline files: every pipelines/*.py but the package's __init__, and each
    examples/*.py that defines a @pipeline."""
    files = [p for p in sorted(glob.glob(os.path.join(REPO, "pipelines", "*.py"))) if not p.endswith("__init__.py")]
    for path in sorted(glob.glob(os.path.join(REPO, "examples", "*.py"))):
        with open(path, encoding="utf-8") as handle:
            if "@pipeline" in handle.read():
                files.append(path)
    return files


def normalise(text: str) -> str:
    return FINGERPRINT.sub(r"\1<code-fingerprint>", text)


def snapshot(out_dir: str) -> int:
    from flywheel.cli.main import main

    os.makedirs(out_dir, exist_ok=True)
    failed = []
    jobs = []
    for path in pipeline_files():
        stem = os.path.splitext(os.path.basename(path))[0]
        prefix = os.path.join(out_dir, f"{os.path.basename(os.path.dirname(path))}.{stem}")
        jobs.append((path, f"{prefix}.yaml", []))
        jobs += [(path, f"{prefix}.{suffix}.yaml", args) for name, suffix, args in VARIANTS if name == stem]
    for path, target, args in jobs:
        code = main(["compile", path, "-o", target, *args])
        if code != 0:
            failed.append(path)
            continue
        with open(target, encoding="utf-8") as handle:
            text = normalise(handle.read())
        with open(target, "w", encoding="utf-8") as handle:
            handle.write(text)
    if failed:
        print(f"compile failed for: {', '.join(failed)}", file=sys.stderr)
        return 1
    print(f"{len(jobs)} pipeline compilations written to {out_dir}")
    return 0


def compare(before: str, after: str) -> int:
    names = sorted(set(os.listdir(before)) | set(os.listdir(after)))
    differs = False
    for name in names:
        left, right = os.path.join(before, name), os.path.join(after, name)
        if not os.path.exists(left) or not os.path.exists(right):
            print(f"only in {before if os.path.exists(left) else after}: {name}")
            differs = True
            continue
        with open(left, encoding="utf-8") as a, open(right, encoding="utf-8") as b:
            diff = list(difflib.unified_diff(a.readlines(), b.readlines(), left, right))
        if diff:
            differs = True
            sys.stdout.writelines(diff)
    if not differs:
        print(f"{len(names)} IR files identical (fingerprints normalised)")
    return 1 if differs else 0


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "snapshot":
        return snapshot(argv[1])
    if len(argv) == 3 and argv[0] == "compare":
        return compare(argv[1], argv[2])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
