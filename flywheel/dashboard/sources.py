"""Read-only access to the stores the dashboard shows.

* ML Metadata is opened with SQLite's READONLY connection mode: the
  dashboard can never write lineage (and does not reconcile orphaned runs the
  way ``flywheel runs`` does; it shows them as LOST instead).
* The monitor and schedule stores are opened only when their files exist, so
  looking never creates them.
* The registry and artifact files are only read. The registry may be a
  directory or an object-store URI (``s3://``, ``minio://``, ``gs://``).
* Kubeflow runs come from the KFP API when a ``KfpReader`` is given.
"""

from __future__ import annotations

import dataclasses
import os
import threading
from typing import Any

from flywheel.errors import FlywheelError, MetadataError
from flywheel.home import Home
from flywheel.metadata.store import RUNNING, MetadataStore, RunRecord, process_alive


def run_state(run: RunRecord) -> str:
    """The run's state, or LOST for a RUNNING run whose runner process on this host is gone."""
    import socket

    if run.state == RUNNING and run.host == socket.gethostname() and not process_alive(run.pid, run.pid_start):
        return "LOST"
    return run.state


@dataclasses.dataclass
class Sources:
    """Everything the dashboard reads, for one project home.

    Args:
        home: The project home (metadata, artifacts, logs, monitor and schedule stores).
        registry_root: The model registry: a directory or an object-store URI (default ``<home>/registry``).
        kfp: The Kubeflow Pipelines API to list runs from, or None.
    """

    home: Home
    registry_root: str = ""
    kfp: Any = None
    # MLMD's client is not thread-safe: one request at a time talks to it.
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock, repr=False)
    _metadata: MetadataStore | None = dataclasses.field(default=None, repr=False)

    def __post_init__(self) -> None:
        from flywheel import storage

        root = self.registry_root or self.home.registry
        self.registry_root = root if storage.is_object_uri(root) else os.path.abspath(os.path.expanduser(root.removeprefix("file://")))

    @property
    def has_metadata(self) -> bool:
        return os.path.isfile(self.home.metadata_db)

    def metadata(self) -> MetadataStore:
        """The read-only metadata store (callers hold ``lock``).

        Raises:
            MetadataError: no store exists yet in the home.
        """
        if not self.has_metadata:
            raise MetadataError(f"No ML Metadata store in {self.home.root} yet. Start a run with: flywheel run PIPELINE_FILE")
        if self._metadata is None:
            self._metadata = MetadataStore(self.home, read_only=True)
        return self._metadata

    def registry(self) -> Any:
        from flywheel.registry import ModelRegistry

        return ModelRegistry(self.registry_root)

    def monitor(self) -> Any | None:
        """The monitor's store, or None when the monitor never wrote one."""
        if not os.path.isfile(os.path.join(self.home.root, "monitor.sqlite")):
            return None
        from flywheel.monitoring.store import MonitorStore

        return MonitorStore(self.home)

    def schedules(self) -> Any | None:
        """The local schedule store, or None when no schedule was ever created."""
        if not os.path.isfile(os.path.join(self.home.root, "schedules.sqlite")):
            return None
        from flywheel.scheduling import ScheduleStore

        return ScheduleStore(self.home)


class PageNotFound(FlywheelError):
    """A dashboard page names something (a run, node, artifact, model, file) that does not exist."""


MAX_ID_DIGITS = 18


def id_number(text: str, what: str) -> int:
    """A numeric id from a URL (ASCII digits, at most ``MAX_ID_DIGITS``).

    Raises:
        PageNotFound: anything else (a 5,000-digit number, Unicode digits, a sign).
    """
    if not (text.isascii() and text.isdigit()) or len(text) > MAX_ID_DIGITS:
        shown = text if len(text) <= 40 else f"{text[:20]}... ({len(text)} characters)"
        raise PageNotFound(f"{what} are whole numbers of at most {MAX_ID_DIGITS} digits; got {shown!r}.")
    return int(text)


def model_name(sources: Sources, name: str) -> str:
    """``name`` if it is a valid model name (the registry's rule), so no path built from it leaves the home.

    Raises:
        PageNotFound: the name could leave its directory ('..', '/', NUL) or breaks the rule.
    """
    try:
        sources.registry().model_dir(name)
    except FlywheelError as exc:
        raise PageNotFound(str(exc)) from exc
    return name


def serving_version(registry: Any, name: str) -> tuple[int | None, str]:
    """(the serving version or None, the reason it cannot be read or ""): a damaged alias never fails a page."""
    try:
        return registry.serving_version(name), ""
    except (FlywheelError, OSError) as exc:
        return None, str(exc)
