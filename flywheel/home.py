"""Where flywheel keeps its state on one machine.

The project home defaults to ``~/.flywheel``; ``FLYWHEEL_HOME`` or the CLI's
``--home`` flag override it. Layout::

    <home>/metadata.sqlite   ML Metadata store (lineage)
    <home>/metadata.lock     inter-process lock serialising MLMD access
    <home>/artifacts/        published artifacts, <pipeline>/<run>/<node>/<output>/
    <home>/staging/          outputs being written (never read by anyone else)
    <home>/logs/             one log per node and run
    <home>/registry/         model registry, <model>/<version>/ (TF Serving layout)
"""

from __future__ import annotations

import dataclasses
import os

HOME_ENV = "FLYWHEEL_HOME"
REGISTRY_ENV = "FLYWHEEL_REGISTRY"


@dataclasses.dataclass(frozen=True)
class Home:
    """Paths of one flywheel home directory."""

    root: str

    @classmethod
    def resolve(cls, path: str | None = None) -> Home:
        """The home given explicitly, else ``$FLYWHEEL_HOME``, else ``~/.flywheel``."""
        root = path or os.environ.get(HOME_ENV) or os.path.join(os.path.expanduser("~"), ".flywheel")
        return cls(os.path.abspath(os.path.expanduser(root)))

    @property
    def metadata_db(self) -> str:
        return os.path.join(self.root, "metadata.sqlite")

    @property
    def metadata_lock(self) -> str:
        return os.path.join(self.root, "metadata.lock")

    @property
    def artifacts(self) -> str:
        return os.path.join(self.root, "artifacts")

    @property
    def staging(self) -> str:
        return os.path.join(self.root, "staging")

    @property
    def logs(self) -> str:
        return os.path.join(self.root, "logs")

    @property
    def registry(self) -> str:
        """``$FLYWHEEL_REGISTRY`` if set (a mounted volume, e.g. on Kubeflow), else ``<home>/registry``."""
        return os.environ.get(REGISTRY_ENV) or os.path.join(self.root, "registry")

    def ensure(self) -> Home:
        for path in (self.root, self.artifacts, self.staging, self.logs):
            os.makedirs(path, exist_ok=True)
        return self
