"""The model registry: versioned models laid out the way TF Serving reads them.

Layout::

    <root>/<model_name>/1/saved_model.pb    TF Serving loads <model_name>/<int>/
    <root>/<model_name>/1/variables/...
    <root>/<model_name>/1/model.keras       the Keras model (load_keras)
    <root>/<model_name>/1/model.json        feature contract (from train)
    <root>/<model_name>/1/version.json      source uri, fingerprint, metrics, pushed_at
    <root>/<model_name>/serving.json        which version serves (the alias)
    <root>/<model_name>/.lock               serialises version allocation

Guarantees:

* A version directory appears whole or not at all: files are copied into
  ``.tmp-<host>-<pid>-<uuid>/`` beside the versions and renamed into place (a
  directory rename is atomic). A crash leaves at most a ``.tmp-*``
  directory, which no reader looks at and the next push from the same host
  removes once its process is gone.
* Concurrent pushes (threads or processes) never get the same version: the
  number is chosen and the rename done while holding ``fcntl.flock`` on
  ``.lock``.
* Pushing content whose fingerprint an existing version already has returns
  that version and changes nothing.
* ``serving.json`` is replaced atomically (write a temp file, ``os.replace``).
* ``publish`` (push, then move the alias) is one recoverable step: after a
  crash at any point, calling it again ends with the newest pushed version
  serving (``tests/test_registry_faults.py`` crashes it at every line).

On an object store (``s3://``, ``minio://``, ``gs://``; ``flywheel.storage``)
there is no directory rename, so a push writes the version's files first and
its manifest ``version.json`` LAST: a version without its manifest is
invisible (``versions`` ignores it) and the next push of the model deletes it
and reuses its number. A crash mid-push therefore leaves no visible partial
version (``tests/test_registry_objects.py`` raises between files). Pushes
and alias moves of one model are serialised by a lease object
``<model>/.lock.json`` (owner, expiry; written, then read back after a short
settle). pyarrow 10 cannot make a conditional PUT, so two writers that take
the lease within the settle time of each other are not excluded: object-store
registries assume one pusher per model at a time (one KFP pipeline pushing a
model), which the lease makes safe against a crashed pusher, not against a
deliberate race. ``serving.json`` is one PUT (atomic: readers see the old or
the new alias). A lease left by a killed pusher expires after ``lease_s``.

Each version is self-describing: besides the model, ``reference/`` holds the
training reference of drift checks (``monitoring.reference``) and
``version.json`` the data (span, fingerprint, URI), evaluation, blessing, run
id and where that run's lineage lives, so the loop needs no metadata store.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import fcntl
import hashlib
import json
import os
import shutil
import socket
import uuid
from typing import Any, Iterable, Iterator, NamedTuple

from flywheel import storage
from flywheel.errors import FlywheelError
from flywheel.metadata.store import process_alive
from flywheel.names import check_name, is_valid_name

SERVING_FILE = "serving.json"
VERSION_FILE = "version.json"
LOCK_FILE = ".lock"
TMP_PREFIX = ".tmp-"
SAVED_MODEL_FILE = "saved_model.pb"
SAVED_MODEL_SUBDIR = "serving"
KERAS_FILE = "model.keras"
SERVING_HISTORY_LIMIT = 50
REMOTE_LOCK_FILE = ".lock.json"
LEASE_S = 600.0
LOCK_WAIT_S = 120.0
CACHE_ENV = "FLYWHEEL_REGISTRY_CACHE"


class PushResult(NamedTuple):
    """Outcome of ``ModelRegistry.push``: the version and whether it was created now."""

    version: int
    created: bool


class PublishResult(NamedTuple):
    """Outcome of ``ModelRegistry.publish``.

    Attributes:
        version: The version holding the model.
        created: Whether the version was created by this call.
        serving_set: Whether this call pointed the alias at ``version``.
        serving_version: The version that serves after the call.
    """

    version: int
    created: bool
    serving_set: bool
    serving_version: int | None


def _as_version(value: Any) -> int | None:
    """``value`` if it is a positive whole version number, else None (a damaged alias entry)."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 1 else None


def _alias_version(alias: dict[str, Any] | None) -> int | None:
    return _as_version(alias.get("version")) if isinstance(alias, dict) else None


def _served_versions(alias: dict[str, Any] | None) -> set[int]:
    """Every version the alias has pointed at (older aliases lack the list: their history stands in).

    Damaged entries are left out, so ``rollback --to`` can repair a hand-edited alias.
    """
    if not isinstance(alias, dict):
        return set()
    history = alias.get("history") if isinstance(alias.get("history"), list) else []
    served_list = alias.get("served_versions") if isinstance(alias.get("served_versions"), list) else []
    candidates = [entry.get("version") for entry in history if isinstance(entry, dict)]
    candidates += served_list + [alias.get("version")]
    return {v for v in map(_as_version, candidates) if v is not None}


def is_unreachable(exc: BaseException) -> bool:
    """Whether ``exc`` (or an error it was raised from) is the store failing to answer, not a missing or bad file.

    A passing outage is worth retrying at once; a missing or damaged file is not.
    """
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, storage.StorageError):
            cause = exc.__cause__
            return isinstance(cause, OSError) and not isinstance(cause, (FileNotFoundError, PermissionError))
        exc, seen = exc.__cause__, seen + 1
    return False


def _staging_owner() -> str:
    """The staging directory prefix of this process: ``.tmp-<host>-<pid>-``."""
    return f"{TMP_PREFIX}{socket.gethostname()}-{os.getpid()}-"


def _remove_dead_staging(model_root: str) -> None:
    """Removes staging directories left by processes of this host that died mid-push (SIGKILL, OOM)."""
    host_prefix = f"{TMP_PREFIX}{socket.gethostname()}-"
    for entry in os.listdir(model_root):
        pid_text = entry[len(host_prefix):].split("-", 1)[0] if entry.startswith(host_prefix) else ""
        if pid_text.isdigit() and not process_alive(int(pid_text), ""):
            shutil.rmtree(os.path.join(model_root, entry), ignore_errors=True)


def fingerprint_dir(path: str) -> str:
    """SHA-256 over the relative paths and bytes of every file under ``path``."""
    digest = hashlib.sha256()
    for directory, subdirs, files in os.walk(path):
        subdirs.sort()
        for name in sorted(files):
            full = os.path.join(directory, name)
            digest.update(os.path.relpath(full, path).encode() + b"\0")
            with open(full, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    digest.update(block)
            digest.update(b"\0")
    return digest.hexdigest()


def _copy_file(src: str, dst: str) -> str:
    # One indirection so tests can make a copy fail midway (a simulated crash).
    return shutil.copy2(src, dst)


def _upload_file(src: str, uri: str) -> None:
    # One indirection so tests can make an upload fail midway (a simulated crash).
    storage.upload_file(src, uri)


def version_files(model_dir: str, saved_model: str, extra_trees: dict[str, str] | None = None) -> list[tuple[str, str]]:
    """(local file, path relative to the version) of everything a push publishes, sorted.

    The SavedModel lands at the version root, every other top-level file of
    ``model_dir`` beside it, and each ``extra_trees`` directory under its key.
    """
    found: list[tuple[str, str]] = []

    def walk(directory: str, prefix: str) -> None:
        for parent, subdirs, files in os.walk(directory):
            subdirs.sort()
            for file_name in sorted(files):
                full = os.path.join(parent, file_name)
                found.append((full, prefix + os.path.relpath(full, directory).replace(os.sep, "/")))

    walk(saved_model, "")
    if os.path.abspath(saved_model) != os.path.abspath(model_dir):
        for entry in sorted(os.listdir(model_dir)):
            source = os.path.join(model_dir, entry)
            if entry not in (SAVED_MODEL_SUBDIR, VERSION_FILE) and os.path.isfile(source):
                found.append((source, entry))
    for key, directory in sorted((extra_trees or {}).items()):
        walk(directory, f"{check_name('attachment', key)}/")
    return found


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _write_json_atomic(path: str, data: Any) -> None:
    tmp = f"{path}.{uuid.uuid4().hex}.tmp"
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2, sort_keys=True)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


class ModelRegistry:
    """A directory of versioned models (see the module docstring for the layout).

    Args:
        root: Registry directory or object-store URI (``s3://bucket/registry``);
            created on the first push.
        lease_s: How long an object-store push lease lasts without renewal.
        lock_wait_s: How long to wait for another pusher's lease.
        cache_dir: Where versions of an object-store registry are copied for
            loading (default ``$FLYWHEEL_REGISTRY_CACHE`` or ``~/.cache/flywheel/registry``).
    """

    def __init__(
        self,
        root: str,
        *,
        lease_s: float = LEASE_S,
        lock_wait_s: float = LOCK_WAIT_S,
        cache_dir: str | None = None,
    ) -> None:
        root = os.fspath(root)
        self.remote = storage.is_object_uri(root)
        if self.remote:
            self.root = storage.locate(root).uri
        else:
            self.root = os.path.abspath(os.path.expanduser(root.removeprefix("file://")))
        self.lease_s = lease_s
        self.lock_wait_s = lock_wait_s
        self.cache_dir = cache_dir or os.environ.get(CACHE_ENV) or os.path.expanduser("~/.cache/flywheel/registry")

    def __repr__(self) -> str:
        return f"ModelRegistry({self.root!r})"

    # -- paths ---------------------------------------------------------------

    def model_dir(self, name: str) -> str:
        """Directory of one model (TF Serving's ``model_base_path``).

        Raises:
            InvalidNameError: the name is not a plain directory name (``flywheel.names``).
        """
        return storage.join(self.root, check_name("model", name))

    def version_dir(self, name: str, version: int) -> str:
        """Directory (or object-store prefix) of one version (a SavedModel at its root)."""
        return storage.join(self.model_dir(name), str(int(version)))

    def version_file(self, name: str, version: int, relative: str) -> str:
        """URI (or local path) of a file inside a version, e.g. ``reference/reference.json``."""
        return storage.join(self.version_dir(name, version), *relative.split("/"))

    def reference_uri(self, name: str, part: str = "schema", version: int | None = None) -> str:
        """URI of a part of a version's training reference (default: the serving version's kept schema).

        ``part`` is ``schema`` (validate's ``schema.pbtxt``), ``statistics``
        (``FeatureStats.pb``) or ``reference.json``: what a cluster run imports
        for schema continuity instead of a metadata-store lookup.

        Raises:
            FlywheelError: no version serves (and none is given), or the version carries no such part.
        """
        version = version if version is not None else self.serving_version(name)
        if version is None:
            raise FlywheelError(f"No version of model '{name}' serves in {self.root}; pass a version or push one first.")
        uri = self.version_file(name, version, f"reference/{part}")
        if not storage.exists(uri):
            raise FlywheelError(
                f"Version {version} of model '{name}' carries no reference/{part} ({uri}); push it again with "
                "this flywheel (push stores the reference), or pass the data's schema explicitly."
            )
        return uri

    def local_version_dir(self, name: str, version: int) -> str:
        """A local directory holding the version's files (object stores: a cached copy).

        The copy is made once per (registry, model, version), streamed into a
        temporary directory renamed into place, so a crashed download is never
        used (``flywheel.registry_cache``).

        Raises:
            FlywheelError: the version does not exist.
            StorageError: the store cannot be read (``is_unreachable`` tells a passing outage).
        """
        directory = self._existing_version_dir(name, version)
        if not self.remote:
            return directory
        from flywheel import registry_cache

        return registry_cache.materialise(directory, self._model_cache_dir(name), version)

    def prune_cache(self, name: str, keep: Iterable[int]) -> list[int]:
        """Drops the local copies of a model's versions not in ``keep``; returns those dropped ([] locally)."""
        if not self.remote:
            return []
        from flywheel import registry_cache

        return registry_cache.prune(self._model_cache_dir(name), keep)

    def cached_versions(self, name: str) -> list[int]:
        """Versions of a model with a complete local copy ([] for a local registry, which needs none)."""
        if not self.remote:
            return []
        from flywheel import registry_cache

        return registry_cache.cached_versions(self._model_cache_dir(name))

    def read_version_json(self, name: str, version: int, relative: str) -> Any:
        """A JSON file of a version (``model.json``, ``history.json``), read through the storage layer.

        Raises:
            FlywheelError: the file is missing or not JSON (the message names it).
            StorageError: the store cannot be reached (``is_unreachable`` is true for it).
        """
        path = self.version_file(name, version, relative)
        try:
            data = storage.read_bytes(path)
        except storage.StorageError as exc:
            if is_unreachable(exc):
                raise
            raise FlywheelError(f"Version {version} of model '{name}' has no readable {relative} ({path}).") from exc
        try:
            return json.loads(data.decode("utf-8"))
        except ValueError as exc:
            raise FlywheelError(f"{relative} of version {version} of model '{name}' is not JSON ({path}: {exc}).") from exc

    def _model_cache_dir(self, name: str) -> str:
        from flywheel import registry_cache

        return registry_cache.model_cache_dir(self.cache_dir, self.root, check_name("model", name))

    # -- reading -------------------------------------------------------------

    def models(self) -> list[str]:
        """Names of the models that have at least one version."""
        if self.remote:
            return sorted(n for n in storage.list_dir(self.root) if is_valid_name(n) and self.versions(n))
        if not os.path.isdir(self.root):
            return []
        return sorted(n for n in os.listdir(self.root) if is_valid_name(n) and self.versions(n))

    def versions(self, name: str) -> list[int]:
        """Published versions of a model, ascending.

        Local ``.tmp-*`` directories are ignored; on an object store a version
        counts only once its ``version.json`` (written last) exists.
        """
        directory = self.model_dir(name)
        if self.remote:
            manifests = storage.glob(storage.join(directory, "*", VERSION_FILE))
            return sorted(int(m.split("/")[-2]) for m in manifests if m.split("/")[-2].isdigit())
        if not os.path.isdir(directory):
            return []
        return sorted(
            int(entry)
            for entry in os.listdir(directory)
            if entry.isdigit() and os.path.isdir(os.path.join(directory, entry))
        )

    def version_info(self, name: str, version: int) -> dict[str, Any]:
        """The ``version.json`` of a version.

        Raises:
            FlywheelError: the version does not exist.
        """
        path = storage.join(self._existing_version_dir(name, version), VERSION_FILE)
        return storage.read_json(path)

    def find_version(self, name: str, fingerprint: str) -> int | None:
        """The version whose content has this fingerprint, or None."""
        for version in self.versions(name):
            path = storage.join(self.version_dir(name, version), VERSION_FILE)
            if not self.remote and not os.path.isfile(path):
                continue  # placed by hand, not by push: it has no fingerprint to match
            if storage.read_json(path).get("fingerprint") == fingerprint:
                return version
        return None

    def serving_info(self, name: str) -> dict[str, Any] | None:
        """The ``serving.json`` alias document of a model, or None if nothing serves."""
        path = storage.join(self.model_dir(name), SERVING_FILE)
        if self.remote:
            return storage.read_json(path) if storage.info(path) is not None else None
        if not os.path.isfile(path):
            return None
        with open(path, encoding="utf-8") as f:
            return json.load(f)

    def serving_version(self, name: str) -> int | None:
        """The version that serves, or None.

        Raises:
            FlywheelError: ``serving.json`` is not JSON, or its ``version`` is not
                a positive whole number (a damaged or hand-edited alias).
        """
        path = storage.join(self.model_dir(name), SERVING_FILE)
        if not (storage.info(path) is not None if self.remote else os.path.lexists(path)):
            return None
        try:
            if self.remote:
                info = json.loads(storage.read_bytes(path).decode("utf-8"))
            else:
                with open(path, encoding="utf-8") as f:
                    info = json.load(f)
        except (OSError, ValueError) as exc:  # not UTF-8, not JSON, or a number past the int-digit limit
            raise FlywheelError(
                f"The serving alias {path} is not a JSON document ({exc}); point it at a version again "
                f"with `flywheel rollback {name} --to VERSION` (versions: {self.versions(name) or 'none'})."
            ) from exc
        version = info.get("version") if isinstance(info, dict) else None
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise FlywheelError(
                f"The serving alias {path} must hold a positive whole 'version'. Got "
                f"{(version if isinstance(info, dict) else info)!r} instead; point it at a version again with "
                f"`flywheel rollback {name} --to VERSION` (versions: {self.versions(name) or 'none'})."
            )
        return version

    def load_keras(self, name: str, version: int | None = None) -> Any:
        """Loads a version's ``model.keras`` with ``safe_mode=True`` (default: the serving one).

        Raises:
            FlywheelError: no version is given and none serves, or the version
                does not exist or holds no Keras model.
        """
        if version is None:
            version = self.serving_version(name)
            if version is None:
                raise FlywheelError(
                    f"No version of model '{name}' serves in {self.root}; pass a version "
                    f"(one of {self.versions(name)}) or push a blessed model first."
                )
        path = os.path.join(self.local_version_dir(name, version), KERAS_FILE)
        if not os.path.isfile(path):
            raise FlywheelError(f"Version {version} of model '{name}' has no {KERAS_FILE} (looked for {path}).")
        # Registers flywheel's Keras classes (imputation layers, focal loss) before loading.
        from flywheel.models import layers as model_layers

        return model_layers.load_model(path)

    # -- writing -------------------------------------------------------------

    def push(
        self,
        name: str,
        model_dir: str,
        *,
        fingerprint: str | None = None,
        metadata: dict[str, Any] | None = None,
        extra_trees: dict[str, str] | None = None,
    ) -> PushResult:
        """Publishes a model directory as the next version, atomically.

        ``model_dir`` is either a train output (a SavedModel under ``serving/``
        plus files such as ``model.keras``) or a SavedModel itself. The
        SavedModel lands at the version root, every other top-level file
        beside it.

        Args:
            name: Model name.
            model_dir: Directory to publish.
            fingerprint: Identity of the content; computed from the files when
                omitted. An existing version with the same fingerprint is
                returned instead of creating a new one.
            metadata: JSON-compatible facts stored in ``version.json``; a
                ``metrics`` key is stored as the version's metrics.
            extra_trees: Local directories published inside the version under
                their key (``{"reference": dir}`` -> ``<version>/reference/``).

        Returns:
            ``PushResult(version, created)``.

        Raises:
            FlywheelError: ``model_dir`` holds no SavedModel.
        """
        saved_model = self._saved_model_root(model_dir)
        fingerprint = fingerprint or fingerprint_dir(model_dir)
        existing = self.find_version(name, fingerprint)
        if existing is not None:
            return PushResult(existing, False)
        files = version_files(model_dir, saved_model, extra_trees)
        extra = dict(metadata or {})
        info = {
            "model_name": name,
            "source_uri": os.path.abspath(model_dir),
            "fingerprint": fingerprint,
            "metrics": extra.pop("metrics", {}),
            "metadata": extra,
        }
        if self.remote:
            return self._push_to_object_store(name, files, info)
        model_root = self.model_dir(name)
        os.makedirs(model_root, exist_ok=True)
        staging = os.path.join(model_root, f"{_staging_owner()}{uuid.uuid4().hex}")
        try:
            for source, relative in files:
                target = os.path.join(staging, *relative.split("/"))
                os.makedirs(os.path.dirname(target), exist_ok=True)
                _copy_file(source, target)
            with self._locked(name):
                _remove_dead_staging(model_root)
                existing = self.find_version(name, fingerprint)
                if existing is not None:
                    return PushResult(existing, False)
                version = max(self.versions(name), default=0) + 1
                info.update(version=version, pushed_at=_now())
                with open(os.path.join(staging, VERSION_FILE), "w", encoding="utf-8") as f:
                    json.dump(info, f, indent=2, sort_keys=True)
                    f.write("\n")
                os.rename(staging, self.version_dir(name, version))
                return PushResult(version, True)
        finally:
            if os.path.isdir(staging):
                shutil.rmtree(staging, ignore_errors=True)

    def _push_to_object_store(self, name: str, files: list[tuple[str, str]], info: dict[str, Any]) -> PushResult:
        """Files first, manifest last, under the model's lease (see the module docstring)."""
        with self._locked(name) as lease:
            existing = self.find_version(name, info["fingerprint"])
            if existing is not None:
                return PushResult(existing, False)
            published = set(self.versions(name))
            for entry in storage.list_dir(self.model_dir(name)):
                if entry.isdigit() and int(entry) not in published:  # a crashed push's files, never visible
                    storage.delete(storage.join(self.model_dir(name), entry))
            version = max(published, default=0) + 1
            target = self.version_dir(name, version)
            for source, relative in files:
                _upload_file(source, storage.join(target, *relative.split("/")))
                lease.renew()
            info.update(version=version, pushed_at=_now())
            storage.write_json(storage.join(target, VERSION_FILE), info)
            return PushResult(version, True)

    def publish(
        self,
        name: str,
        model_dir: str,
        *,
        fingerprint: str | None = None,
        metadata: dict[str, Any] | None = None,
        reason: str = "",
        extra_trees: dict[str, str] | None = None,
    ) -> PublishResult:
        """Pushes a model and points the serving alias at it, as one recoverable step.

        The two writes (the version directory, then ``serving.json``) cannot be
        one atomic rename, so the step is made idempotent instead: calling it
        again after a crash anywhere in between finishes what is missing. The
        alias moves to the pushed version when that version has never served
        and is newer than the one serving now. A version that served before
        and was rolled back is left alone (the rollback was on purpose), and
        an older version never displaces a newer one.

        Args:
            name: Model name.
            model_dir: Directory to publish (see ``push``).
            fingerprint: Identity of the content (see ``push``).
            metadata: Facts stored in ``version.json`` (see ``push``).
            reason: Why the alias moves, kept in its history.
            extra_trees: Directories published inside the version (see ``push``).

        Returns:
            ``PublishResult(version, created, serving_set, serving_version)``.

        Raises:
            FlywheelError: ``model_dir`` holds no SavedModel, or ``serving.json``
                is damaged (repair it with ``flywheel rollback NAME --to VERSION``).
        """
        self.serving_version(name)  # a damaged alias is a clear error before anything is written
        pushed = self.push(name, model_dir, fingerprint=fingerprint, metadata=metadata, extra_trees=extra_trees)
        with self._locked(name):
            current = self.serving_info(name)
            serving_set = self._should_serve(current, pushed.version)
            if serving_set:
                current = self._write_alias(name, pushed.version, reason, current)
        return PublishResult(pushed.version, pushed.created, serving_set, _alias_version(current))

    def set_serving(self, name: str, version: int, *, reason: str = "") -> dict[str, Any]:
        """Points the serving alias at ``version`` (atomic replace); returns the new alias.

        Raises:
            FlywheelError: the version does not exist.
        """
        self._existing_version_dir(name, version)
        with self._locked(name):
            return self._write_alias(name, version, reason, self.serving_info(name))

    # -- internals -----------------------------------------------------------

    @staticmethod
    def _should_serve(current: dict[str, Any] | None, version: int) -> bool:
        """Whether a just-pushed ``version`` takes the alias (see ``publish``)."""
        serving = _alias_version(current)
        if serving is None:
            return True
        return version > serving and version not in _served_versions(current)

    def _write_alias(self, name: str, version: int, reason: str, current: dict[str, Any] | None) -> dict[str, Any]:
        """Writes ``serving.json`` (the caller holds the lock); returns the new alias."""
        current = current if isinstance(current, dict) else {}
        history = [e for e in current.get("history", []) if isinstance(e, dict)] if isinstance(current.get("history"), list) else []
        entry = {"version": int(version), "at": _now(), "reason": reason}
        history = (history + [entry])[-SERVING_HISTORY_LIMIT:]
        alias = {
            "model_name": name,
            "version": int(version),
            "previous_version": _alias_version(current),
            "updated_at": entry["at"],
            "reason": reason,
            "history": history,
            "served_versions": sorted(_served_versions(current) | {int(version)}),
        }
        model_root = self.model_dir(name)
        if self.remote:
            storage.write_json(storage.join(model_root, SERVING_FILE), alias)  # one PUT: old or new, never a part
            return alias
        for leftover in os.listdir(model_root):
            # A crash between writing and renaming the alias leaves its temp file; none is in use under the lock.
            if leftover.startswith(f"{SERVING_FILE}.") and leftover.endswith(".tmp"):
                os.remove(os.path.join(model_root, leftover))
        _write_json_atomic(os.path.join(model_root, SERVING_FILE), alias)
        return alias

    def _existing_version_dir(self, name: str, version: int) -> str:
        directory = self.version_dir(name, version)
        present = int(version) in self.versions(name) if self.remote else os.path.isdir(directory)
        if not present:
            raise FlywheelError(
                f"Model '{name}' has no version {version} in {self.root}; versions: {self.versions(name) or 'none'}."
            )
        return directory

    @staticmethod
    def _saved_model_root(model_dir: str) -> str:
        for candidate in (os.path.join(model_dir, SAVED_MODEL_SUBDIR), model_dir):
            if os.path.isfile(os.path.join(candidate, SAVED_MODEL_FILE)):
                return candidate
        raise FlywheelError(
            f"No SavedModel in {model_dir}: expected {SAVED_MODEL_SUBDIR}/{SAVED_MODEL_FILE} or "
            f"{SAVED_MODEL_FILE}. Push the output of train (or a directory written by model.export)."
        )

    @contextlib.contextmanager
    def _locked(self, name: str) -> Iterator[Any]:
        if self.remote:
            lease = storage.Lease(storage.join(self.model_dir(name), REMOTE_LOCK_FILE), self.lease_s, self.lock_wait_s)
            lease.acquire()
            try:
                yield lease
            finally:
                lease.release()
            return
        model_root = self.model_dir(name)
        os.makedirs(model_root, exist_ok=True)
        with open(os.path.join(model_root, LOCK_FILE), "a+") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield None
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

