"""Content fingerprints of artifacts and cache keys of node executions."""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any, Mapping

_CHUNK = 1 << 20


def directory_summary(path: str) -> tuple[str, int, int]:
    """Fingerprint, file count and total bytes of everything under ``path``.

    The fingerprint covers relative paths and file contents, so the same
    content gives the same fingerprint wherever it lives.
    """
    digest = hashlib.sha256()
    count = 0
    total = 0
    if os.path.isfile(path):
        entries = [("", path)]
    else:
        entries = []
        for root, dirs, files in os.walk(path):
            dirs.sort()
            for name in sorted(files):
                full = os.path.join(root, name)
                entries.append((os.path.relpath(full, path), full))
    for rel, full in entries:
        digest.update(rel.encode() + b"\0")
        with open(full, "rb") as handle:
            while chunk := handle.read(_CHUNK):
                digest.update(chunk)
                total += len(chunk)
        digest.update(b"\0")
        count += 1
    return digest.hexdigest(), count, total


def quick_summary(path: str) -> tuple[int, int]:
    """File count and total bytes, without reading contents (cache checks)."""
    if os.path.isfile(path):
        return 1, os.path.getsize(path)
    count = 0
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            count += 1
            total += os.path.getsize(os.path.join(root, name))
    return count, total


def cache_key(code_fingerprint: str, input_fingerprints: Mapping[str, str], parameters: Mapping[str, Any]) -> str:
    """Identity of an execution: component code + input contents + parameters."""
    payload = json.dumps(
        {
            "code": code_fingerprint,
            "inputs": dict(sorted(input_fingerprints.items())),
            "parameters": parameters,
        },
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(payload.encode()).hexdigest()
