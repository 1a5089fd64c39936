"""Engines, sessions and migrations of the state store, for SQLite and PostgreSQL (psycopg 3).

Every part of billsync gets its engine from :func:`make_engine`, so the connection settings that
keep the store correct (SQLite foreign keys, WAL, a busy timeout, ``BEGIN IMMEDIATE``; a short
PostgreSQL connect timeout) are set in one place. The schema is changed only by Alembic, run
programmatically through :func:`upgrade_database`; there is no ``alembic.ini`` to keep in sync.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event, make_url, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import StaticPool

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

#: How long a SQLite writer waits for the write lock before giving up ("database is locked").
SQLITE_BUSY_TIMEOUT_MS = 30_000
#: Seconds to wait for a PostgreSQL server before reporting it unreachable.
PG_CONNECT_TIMEOUT_S = 5
# Any constant works; it only has to be the same in every billsync process.
_MIGRATION_LOCK_KEY = 0x62696C6C73796E63  # "billsync"
_READ_ONLY = "billsync_read_only"
# Alembic keeps the running migration in module globals (alembic.context, alembic.op).
_ALEMBIC_LOCK = threading.Lock()


class StoreError(Exception):
    """The state store cannot be used (unreachable, unknown URL, not migrated). The URL is redacted."""


def redact(url: str | URL) -> str:
    """The URL with its password masked, safe for logs and error messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # an unparsable URL may still contain a secret: show at most its scheme
        scheme = re.match(r"[A-Za-z][A-Za-z0-9+.-]*(?=://)", str(url))
        return f"{scheme.group(0)}://<unparsable URL>" if scheme else "<unparsable URL>"


def _normalise(url: str | URL) -> URL:
    try:
        parsed = make_url(url)
    except Exception:
        raise StoreError(f"not a database URL: {redact(url)}") from None
    # psycopg 3 is the only PostgreSQL driver installed; plain postgresql:// would pick psycopg2.
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)  # a JSON number would be read back as float by most consumers
    if isinstance(value, dt.date | dt.datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


# JSON columns: Decimal and dates are written as strings, and JSON numbers with a fraction are read
# back as Decimal, so money inside payloads (dead letters, canonical data) never becomes a float.
# One encoder for every value (json.dumps with options builds one per call); the same text.
_json_serializer = json.JSONEncoder(default=_json_default, ensure_ascii=False).encode
# One decoder for every value: json.loads with an option builds a new decoder per call.
_JSON_DECODER = json.JSONDecoder(parse_float=Decimal)


def decode_json(text: str | bytes | bytearray | memoryview) -> Any:
    """A JSON column's stored text as the column reads it (decimals as ``Decimal``)."""
    if not isinstance(text, str):  # psycopg hands over the raw bytes
        text = bytes(text).decode()
    return _JSON_DECODER.decode(text)


def make_engine(url: str | URL, *, echo: bool = False, _enforce_foreign_keys: bool = True) -> Engine:
    """An engine for ``sqlite:///path`` or ``postgresql+psycopg://...`` with the store's settings.

    SQLite paths stay relative to the working directory (``sqlite:///billsync.db``). Every SQLite
    transaction starts with ``BEGIN IMMEDIATE``: SQLite has one writer, and a deferred transaction
    that reads and then writes fails at once with "database is locked" if another thread wrote in
    between (busy_timeout does not cover that case); taking the lock up front makes writers queue.
    The price: a transaction holds the lock until it ends, so never keep one open across a network
    call (see :func:`session_factory` for read-only sessions).
    Connection failures surface as :class:`StoreError` naming the redacted URL.
    """
    parsed = _normalise(url)
    kwargs: dict[str, Any] = {
        "echo": echo,
        "pool_pre_ping": True,
        # a failed statement's error text must not carry its parameters (rotated OAuth tokens, payloads)
        "hide_parameters": True,
        "json_serializer": _json_serializer,
        "json_deserializer": decode_json,
    }
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        memory = parsed.database in (None, "", ":memory:")
        kwargs["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}
        if memory:  # one shared connection, or every thread would see its own empty database
            kwargs["connect_args"]["check_same_thread"] = False
            kwargs["poolclass"] = StaticPool
    elif backend == "postgresql":
        if "connect_timeout" not in parsed.query:
            kwargs["connect_args"] = {"connect_timeout": PG_CONNECT_TIMEOUT_S}
    else:
        raise StoreError(f"unsupported database (use sqlite or postgresql): {redact(parsed)}")
    try:
        engine = create_engine(parsed, **kwargs)
    except Exception as exc:  # missing driver, bad option: say which URL, never its password
        raise StoreError(f"cannot create an engine for {redact(parsed)}: {exc}") from None
    if backend == "sqlite":
        _configure_sqlite(engine, enforce_foreign_keys=_enforce_foreign_keys)
    _redact_connect_errors(engine)
    return engine


def _configure_sqlite(engine: Engine, *, enforce_foreign_keys: bool) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # SQLAlchemy emits BEGIN itself (below)
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA foreign_keys = {'ON' if enforce_foreign_keys else 'OFF'}")
            cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = FULL")  # a committed token rotation survives power loss
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        read_only = connection.get_execution_options().get(_READ_ONLY, False)
        connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


def _redact_connect_errors(engine: Engine) -> None:
    @event.listens_for(engine, "handle_error")
    def _on_error(context: Any) -> None:
        # Only failures to open a connection; pre-ping and statement errors keep their usual types.
        if context.is_pre_ping or context.connection is not None:
            return
        if isinstance(context.sqlalchemy_exception, OperationalError):
            raise StoreError(
                f"cannot connect to the state store at {redact(engine.url)}: {_first_line(context)}"
            ) from context.original_exception


def _first_line(context: Any) -> str:
    message = str(context.original_exception).strip().splitlines()
    line = message[0] if message else type(context.original_exception).__name__
    password = context.engine.url.password if context.engine is not None else None
    return line.replace(str(password), "***") if password else line


def session_factory(engine: Engine, *, read_only: bool = False) -> sessionmaker[Session]:
    """Sessions that keep loaded attributes after commit (objects stay usable when handed on).

    On SQLite a session's transaction holds the database write lock from its first statement until
    commit, rollback or close, so close sessions before any network call. ``read_only=True`` (admin
    pages, reports) starts deferred transactions that never block writers on SQLite and are
    ``READ ONLY`` on PostgreSQL.
    """
    if read_only:
        engine = engine.execution_options(**{_READ_ONLY: True, "postgresql_readonly": True})
    return sessionmaker(bind=engine, expire_on_commit=False)


def check_connection(engine: Engine) -> None:
    """Connect once, so a wrong URL or a stopped server is reported at start-up, not mid-sync."""
    with _connect(engine) as connection:
        connection.execute(text("SELECT 1"))


@contextmanager
def _connect(engine: Engine) -> Iterator[Connection]:
    try:
        with engine.connect() as connection:
            yield connection
    except StoreError:
        raise
    except DBAPIError as exc:
        raise StoreError(f"state store error at {redact(engine.url)}: {exc.orig}") from exc


def _alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The newest migration shipped with this version of billsync."""
    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    if head is None:  # pragma: no cover - the package always ships migrations
        raise StoreError("no migrations found")
    return head


def upgrade_database(url: str | URL, revision: str = "head") -> None:
    """Migrate the database at ``url`` to ``revision``; a no-op when it is already there.

    Safe to call from several processes at once (every worker may do it at start-up): PostgreSQL
    serialises them with an advisory lock, SQLite with its write lock. On SQLite foreign keys are
    off while migrating (batch migrations copy tables) and checked afterwards.
    """
    engine = make_engine(url, _enforce_foreign_keys=False)
    try:
        with _ALEMBIC_LOCK, _connect(engine) as connection:
            with connection.begin():
                if connection.dialect.name == "postgresql":
                    connection.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _MIGRATION_LOCK_KEY})
                command.upgrade(_alembic_config(connection), revision)
                if connection.dialect.name == "sqlite":
                    broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                    if broken:
                        raise StoreError(f"migration left rows with broken foreign keys: {broken[:5]}")
    finally:
        engine.dispose()


def current_revision(url: str | URL) -> str | None:
    """The revision the database at ``url`` is at, or ``None`` if it was never migrated."""
    engine = make_engine(url)
    try:
        with _connect(engine) as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()
