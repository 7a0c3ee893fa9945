"""flywheel's own small SQLite databases (schedules, monitor history).

Autocommit connections (explicit BEGIN where several statements must be one
transaction), WAL so readers (the dashboard, ``flywheel alerts``) never block
the writer, and a 30 s busy timeout for concurrent processes.
"""

from __future__ import annotations

import contextlib
import sqlite3
from typing import Iterator


@contextlib.contextmanager
def connect(path: str) -> Iterator[sqlite3.Connection]:
    """A connection to the database at ``path``, closed on exit."""
    db = sqlite3.connect(path, timeout=30, isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        yield db
    finally:
        db.close()
