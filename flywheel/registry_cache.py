"""Local copies of an object-store registry's versions, for loaders that need files (Keras, TF).

The one place a registry version is materialised on local disk
(``ModelRegistry.local_version_dir`` calls it; serving and evaluate load
through that). Layout under a cache directory::

    <cache>/<sha256(registry root)[:16]>/<model>/<version>/     a complete copy
    <cache>/<...>/<model>/<version>.tmp-<host>-<pid>-<uuid>/    a download in progress

* **Streamed**: every file is copied in 8 MiB chunks (``storage.get_tree``);
  no file is held whole in memory.
* **Atomic**: files land in the staging directory, which is renamed to
  ``<version>`` only once every file is down. A download that fails midway
  (the store goes away, the process dies) leaves at most a staging
  directory, which nobody loads; the next call downloads again. A version is
  visible in the registry only once its ``version.json`` (written last by
  push) exists, so a published version's files are all there to copy.
* **Bounded** (``prune``): a long-running reader (``flywheel serve``) keeps
  only the versions it serves or is about to load; copies of other versions
  and staging directories of dead processes are removed. A server gets a
  cache directory of its own (``process_cache_dir``), so its pruning never
  removes a copy another process is loading.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import uuid
from typing import Iterable

from flywheel import storage

STAGING_MARK = ".tmp-"
PROCESS_PREFIX = "serve-"


def model_cache_dir(cache_dir: str, registry_root: str, model: str) -> str:
    """Where the copies of one model of one registry live under ``cache_dir``."""
    key = hashlib.sha256(registry_root.encode()).hexdigest()[:16]
    return os.path.join(cache_dir, key, model)


def materialise(source_uri: str, model_dir: str, version: int) -> str:
    """A complete local copy of the version stored at ``source_uri``; downloaded now unless present.

    Args:
        source_uri: The version's directory in the registry (``s3://.../<model>/<version>``).
        model_dir: The model's cache directory (``model_cache_dir``).
        version: The version number (the copy's directory name).

    Raises:
        StorageError: the store cannot be read; nothing partial is left in place of the copy.
    """
    target = os.path.join(model_dir, str(int(version)))
    if os.path.isdir(target):
        return target
    os.makedirs(model_dir, exist_ok=True)
    staging = f"{target}{STAGING_MARK}{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex}"
    try:
        storage.get_tree(source_uri, staging)
        try:
            os.rename(staging, target)
        except OSError:
            if not os.path.isdir(target):  # another process renamed its complete copy first: use that one
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def cached_versions(model_dir: str) -> list[int]:
    """Versions with a complete copy in a model's cache directory, ascending."""
    if not os.path.isdir(model_dir):
        return []
    return sorted(int(entry) for entry in os.listdir(model_dir) if entry.isdigit())


def prune(model_dir: str, keep: Iterable[int]) -> list[int]:
    """Removes the copies of versions not in ``keep`` and staging left by dead processes; returns the versions removed.

    Staging directories of live processes (downloads in progress) are left alone.
    """
    from flywheel.metadata.store import process_alive

    if not os.path.isdir(model_dir):
        return []
    kept = {int(v) for v in keep}
    removed = []
    host_mark = f"{STAGING_MARK}{socket.gethostname()}-"
    for entry in os.listdir(model_dir):
        path = os.path.join(model_dir, entry)
        if entry.isdigit() and int(entry) not in kept:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(int(entry))
        elif host_mark in entry:
            pid_text = entry.split(host_mark, 1)[1].split("-", 1)[0]
            if pid_text.isdigit() and not process_alive(int(pid_text), ""):
                shutil.rmtree(path, ignore_errors=True)
    return sorted(removed)


def process_cache_dir(base: str) -> str:
    """A cache directory for this process only (``<base>/serve-<host>-<pid>``).

    Directories that processes of this host left behind when they died are
    removed first, so restarts do not pile up copies.
    """
    from flywheel.metadata.store import process_alive

    host_prefix = f"{PROCESS_PREFIX}{socket.gethostname()}-"
    if os.path.isdir(base):
        for entry in os.listdir(base):
            pid_text = entry[len(host_prefix):] if entry.startswith(host_prefix) else ""
            if pid_text.isdigit() and int(pid_text) != os.getpid() and not process_alive(int(pid_text), ""):
                shutil.rmtree(os.path.join(base, entry), ignore_errors=True)
    return os.path.join(base, f"{host_prefix}{os.getpid()}")
