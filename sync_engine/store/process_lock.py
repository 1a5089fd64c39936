"""A lock shared by every billsync process on one state store, released when its holder dies.

Why: ``Runtime.lock`` serialises runs inside one process; a daemon, a support engineer's CLI
command and a second daemon are different processes. Work that must not run twice at once (sending
mail: SMTP cannot be asked whether it already took a message) takes this lock too.

- PostgreSQL: a session-level advisory lock (``pg_try_advisory_lock``) on a connection of its own;
  the server drops it when that connection ends, so a killed process never leaves it behind.
- SQLite: ``flock`` on a file next to the database; the kernel drops it when the process ends.
"""

from __future__ import annotations

import fcntl
import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, text

__all__ = ["process_lock"]


def _key(name: str) -> int:
    """A stable signed 64-bit key for ``name`` (what advisory locks take)."""
    return int.from_bytes(hashlib.sha256(f"billsync:{name}".encode()).digest()[:8], "big", signed=True)


@contextmanager
def process_lock(engine: Engine, name: str, *, shared: bool = False) -> Iterator[bool]:
    """Try to take the lock ``name``; yields whether it was taken (never waits).

    ``shared``: any number of shared holders at once, but none while someone holds it exclusively
    (a push of one part of a destination vs. a push of the whole destination)."""
    if engine.dialect.name == "postgresql":
        suffix = "_shared" if shared else ""
        with engine.connect() as connection:
            # advisory locks are per database: the schema keeps two billsync installations apart
            schema = connection.execute(text("SELECT current_schema()")).scalar()
            key = _key(f"{schema}:{name}")
            taken = bool(
                connection.execute(text(f"SELECT pg_try_advisory_lock{suffix}(:k)"), {"k": key}).scalar()
            )
            connection.commit()
            try:
                yield taken
            finally:
                if taken:
                    connection.execute(text(f"SELECT pg_advisory_unlock{suffix}(:k)"), {"k": key})
                    connection.commit()
        return
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:":
        yield True  # one process owns an in-memory database
        return
    path = Path(f"{database}.{name}.lock")
    with path.open("a+b") as handle:
        try:
            fcntl.flock(handle.fileno(), (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
