"""The state store: schema (models), engines and migrations (db), gapless numbers, OAuth tokens."""

from __future__ import annotations

from sync_engine.store.db import (
    StoreError,
    check_connection,
    current_revision,
    head_revision,
    make_engine,
    redact,
    session_factory,
    upgrade_database,
)
from sync_engine.store.sequences import next_number
from sync_engine.store.tokens import DbTokenStore

__all__ = [
    "DbTokenStore",
    "StoreError",
    "check_connection",
    "current_revision",
    "head_revision",
    "make_engine",
    "next_number",
    "redact",
    "session_factory",
    "upgrade_database",
]
