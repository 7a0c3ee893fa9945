"""Compile every shipped pipeline to KFP IR, normalised, to diff a refactoring's effect on what Kubeflow runs.

::

    python tests/kubeflow/ir_snapshot.py snapshot DIR     # pipelines/*.py and the pipelines in examples/*.py
    python tests/kubeflow/ir_snapshot.py compare BEFORE AFTER
    python tests/kubeflow/ir_snapshot.py resolved BEFORE AFTER   # what each task runs with, see below

``snapshot`` runs ``flywheel compile`` (in this process, through the CLI's ``main``) on each pipeline
file into ``DIR/<file stem>.yaml``, then rewrites the values that legitimately change with any edit
to a component's code, the ``--code-fingerprint`` arguments, to ``<code-fingerprint>`` (and a loose
pipeline file's module name, which hashes the file's path, to ``<path-hash>``). Nothing
else is touched: every other difference ``compare`` shows is a change in what the cluster runs.
``compare`` prints a unified diff per file (and files only one side has) and exits 1 when they differ.

``resolved`` compares what each leaf task runs with rather than the text: every task input is
resolved through the DAGs to its value (a pipeline parameter's default, a constant, the component's
own default when the task leaves it unset, or "output K of task T"), beside the task's container command and arguments. A refactoring that turns a pipeline
parameter into a constant the task gets anyway (issue 16's pipelines that declare only what they
add) shows no difference there; a task that now runs with another value does.

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


# A loose pipeline file's module is named after its path (flywheel_pipeline_<stem>_<hash of the path>):
# the same file in another checkout gets another name.
LOOSE_MODULE = re.compile(r"(flywheel_pipeline_\w+?_)[0-9a-f]{12}\b")


def normalise(text: str) -> str:
    return LOOSE_MODULE.sub(r"\1<path-hash>", FINGERPRINT.sub(r"\1<code-fingerprint>", text))


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


def _parameter_value(spec: dict, env: dict) -> object:
    if "componentInputParameter" in spec:
        name = spec["componentInputParameter"]
        return env.get(name, f"<unresolved {name}>")
    if "runtimeValue" in spec:
        return spec["runtimeValue"].get("constant")
    if "taskOutputParameter" in spec:
        out = spec["taskOutputParameter"]
        return f"<output {out.get('outputParameterKey')} of {out.get('producerTask')}>"
    return f"<{sorted(spec)}>"


def resolved_tasks(path: str) -> dict[str, dict]:
    """Leaf task path -> {"inputs": resolved parameter values, "artifacts": sources, "container": ...}."""
    import yaml

    with open(path, encoding="utf-8") as handle:
        documents = [d for d in yaml.safe_load_all(handle) if d and "root" in d]
    ir = documents[0]
    components, executors = ir.get("components", {}), ir.get("deploymentSpec", {}).get("executors", {})
    defaults = {
        name: definition.get("defaultValue")
        for name, definition in ir["root"].get("inputDefinitions", {}).get("parameters", {}).items()
    }
    leaves: dict[str, dict] = {}

    def walk(dag: dict, env: dict, prefix: str) -> None:
        for task_name, task in dag.get("tasks", {}).items():
            params = {k: _parameter_value(v, env) for k, v in task.get("inputs", {}).get("parameters", {}).items()}
            artifacts = {
                k: (v.get("taskOutputArtifact") or v.get("componentInputArtifact"))
                for k, v in task.get("inputs", {}).get("artifacts", {}).items()
            }
            component = components.get(task["componentRef"]["name"], {})
            where = f"{prefix}{task_name}"
            if "dag" in component:
                walk(component["dag"], params, where + "/")
                continue
            container = executors.get(component.get("executorLabel", ""), {}).get("container", {})
            # An input the task leaves unset runs with the component's own default (KFP fills it in).
            for k, definition in component.get("inputDefinitions", {}).get("parameters", {}).items():
                if k not in params and "defaultValue" in definition:
                    params[k] = definition["defaultValue"]
            leaves[where] = {
                "inputs": {k: params[k] for k in sorted(params) if not k.startswith("pipelinechannel--")},
                "artifacts": artifacts,
                "container": normalise(" ".join(container.get("command", []) + container.get("args", []))),
                "image": container.get("image"),
            }

    walk(ir["root"]["dag"], defaults, "")
    return leaves


def compare_resolved(before: str, after: str) -> int:
    import json

    differ = 0
    for name in sorted(set(os.listdir(before)) | set(os.listdir(after))):
        a_path, b_path = os.path.join(before, name), os.path.join(after, name)
        if not (os.path.isfile(a_path) and os.path.isfile(b_path)):
            print(f"{name}: only in {'after' if os.path.isfile(b_path) else 'before'}")
            differ += 1
            continue
        a, b = resolved_tasks(a_path), resolved_tasks(b_path)
        for task in sorted(set(a) | set(b)):
            if a.get(task) == b.get(task):
                continue
            differ += 1
            if task not in a or task not in b:
                print(f"{name}: task {task} only {'after' if task in b else 'before'}")
                continue
            for key in ("inputs", "artifacts", "container", "image"):
                x, y = a[task][key], b[task][key]
                if x == y:
                    continue
                if isinstance(x, dict):
                    for k in sorted(set(x) | set(y)):
                        if x.get(k, "<absent>") != y.get(k, "<absent>"):
                            print(f"{name}: {task} {key}.{k}: {json.dumps(x.get(k, '<absent>'))} -> {json.dumps(y.get(k, '<absent>'))}")
                else:
                    print(f"{name}: {task} {key}: {x!r} -> {y!r}")
    print(f"{differ} task(s) differ" if differ else "every task runs with the same inputs, command and image")
    return 1 if differ else 0


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "snapshot":
        return snapshot(argv[1])
    if len(argv) == 3 and argv[0] == "compare":
        return compare(argv[1], argv[2])
    if len(argv) == 3 and argv[0] == "resolved":
        return compare_resolved(argv[1], argv[2])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
