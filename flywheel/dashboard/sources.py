"""Read-only access to the stores the dashboard shows.

* ML Metadata is opened with SQLite's READONLY connection mode: the
  dashboard can never write lineage (and does not reconcile orphaned runs the
  way ``flywheel runs`` does; it shows them as LOST instead).
* The monitor and schedule stores are opened only when their files exist, so
  looking never creates them.
* The registry and artifact files are only read.
"""

from __future__ import annotations

import dataclasses
import os
import threading
from typing import Any

from flywheel.errors import FlywheelError, MetadataError
from flywheel.home import Home
from flywheel.metadata.store import RUNNING, MetadataStore, RunRecord, process_alive


class ReadOnlyMetadataStore(MetadataStore):
    """A ``MetadataStore`` whose SQLite connection is read-only."""

    def _open(self) -> Any:
        if self._store is None:
            from ml_metadata.metadata_store import metadata_store
            from ml_metadata.proto import metadata_store_pb2

            config = metadata_store_pb2.ConnectionConfig()
            config.sqlite.filename_uri = self.home.metadata_db
            config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
            try:
                self._store = metadata_store.MetadataStore(config)
            except Exception as exc:  # noqa: BLE001 - MLMD raises its own error types
                raise MetadataError(
                    f"Cannot open the ML Metadata store {self.home.metadata_db} read-only: {exc}. "
                    "Check the path and its permissions, or point --home at another project home."
                ) from exc
            self._pb = metadata_store_pb2
        return self._store

    def reconcile_orphans(self) -> list[str]:
        """Does nothing: the dashboard never writes (see ``run_state``)."""
        return []

    def pipelines(self) -> list[str]:
        """Names of the pipelines that have runs."""
        with self.locked() as store:
            return sorted(ctx.name for ctx in store.get_contexts_by_type("pipeline"))


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
        registry_root: The model registry directory (default ``<home>/registry``).
    """

    home: Home
    registry_root: str = ""
    # MLMD's client is not thread-safe: one request at a time talks to it.
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock, repr=False)
    _metadata: ReadOnlyMetadataStore | None = dataclasses.field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.registry_root = os.path.abspath(self.registry_root or self.home.registry)

    @property
    def has_metadata(self) -> bool:
        return os.path.isfile(self.home.metadata_db)

    def metadata(self) -> ReadOnlyMetadataStore:
        """The read-only metadata store (callers hold ``lock``).

        Raises:
            MetadataError: no store exists yet in the home.
        """
        if not self.has_metadata:
            raise MetadataError(f"No ML Metadata store in {self.home.root} yet. Start a run with: flywheel run PIPELINE_FILE")
        if self._metadata is None:
            self._metadata = ReadOnlyMetadataStore(self.home)
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
