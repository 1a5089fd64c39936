"""Who runs the scheduled work (DESIGN.md §5), chosen by ``executor:`` in billsync.yaml.

- ``embedded`` (default): a thread pool inside ``billsync daemon``; works on SQLite and PostgreSQL.
- ``procrastinate``: the daemon only enqueues; ``billsync worker`` processes on any number of
  machines run the jobs from procrastinate's queue in the same PostgreSQL database.

Either way APScheduler in the daemon decides *when*; the executor decides *where*.
"""

from __future__ import annotations

from sync_engine.executors.base import Executor, make_executor

__all__ = ["Executor", "make_executor"]
