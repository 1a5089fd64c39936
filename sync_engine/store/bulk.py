"""Inserting many new rows at the database's bulk-load rate: COPY on PostgreSQL, executemany on SQLite.

The ORM's unit of work builds an object per row, tracks every attribute and, on PostgreSQL, sends
multi-row ``INSERT ... VALUES`` statements that psycopg re-parses in Python: a billing run spent
most of its time there. The hot write paths (pulled records and their bindings, invoices and their
lines, outbox rows) hand plain rows to :func:`insert_rows` instead, inside the caller's transaction,
so atomicity is unchanged: the rows commit or roll back with everything else the transaction did.

What the ORM did for those rows is kept: Python-side column defaults are filled in, and values go
through the columns' own types (``ExactDecimal`` still refuses to round money, ``UTCDateTime`` still
refuses naive timestamps, JSON is serialised as the engine serialises it). Constraints are the
database's, so a duplicate key fails the whole statement (and the transaction) as it did before.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

from sqlalchemy import JSON, Column, Connection, Date, Engine, Table, event, inspect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session
from sqlalchemy.sql.schema import ColumnDefault
from sqlalchemy.types import TypeDecorator

from sync_engine.logging import get_logger
from sync_engine.store.types import ExactDecimal, money_text

Row = Mapping[str, Any]
log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class JSONText:
    """A JSON column's value already serialised by the caller (who hashed that same text), written
    as it is instead of being serialised a second time."""

    text: str


def _default(column: Column[Any]) -> Callable[[], Any] | None:
    """The column's Python-side default as a function of nothing (None: the database fills it)."""
    default = column.default
    if not isinstance(default, ColumnDefault):
        return None
    if default.is_callable:
        fn = default.arg
        return lambda: fn(None)  # SQLAlchemy wraps a zero-argument callable to take a context
    if default.is_scalar:
        value = default.arg
        return lambda: value
    return None  # a SQL expression default: left to an INSERT, which COPY cannot carry


def _columns(table: Table, rows: Sequence[Row]) -> tuple[list[Column[Any]], set[str]]:
    """The columns to write: those the rows name plus those with a Python-side default; and the keys
    the rows name.

    An autoincrement primary key the rows leave out is left to the database (a sequence, or
    SQLite's rowid)."""
    named: set[str] = set().union(*rows)
    unknown = named - set(table.c.keys())
    if unknown:
        raise ValueError(f"{table.name} has no column {', '.join(sorted(unknown))}")
    return [c for c in table.columns if c.key in named or _default(c) is not None], named


@dataclass(frozen=True)
class _Field:
    """One column of the statement: its key, how a value is converted, what a row that leaves it
    out gets (its Python-side default or NULL, converted once per batch: a batch shares one
    ``created_at``, as the rows of one statement share PostgreSQL's ``now()``), and whether any row
    names it."""

    key: str
    convert: Callable[[Any], Any]
    missing: Any
    named: bool


def _fields(
    table: Table, rows: Sequence[Row], converter: Callable[[Column[Any]], Callable[[Any], Any]]
) -> list[_Field]:
    """The statement's fields, those the rows name first. A column with only a server-side default
    cannot be left out of some rows and not others (one statement names it or not): refused rather
    than written as NULL."""
    fields = []
    columns, named = _columns(table, rows)
    for column in columns:
        convert = converter(column)
        default = _default(column)
        if default is None and column.server_default is not None and any(column.key not in r for r in rows):
            raise ValueError(f"{table.name}.{column.key}: name it in every row or in none (server default)")
        missing = convert(None if default is None else default())
        fields.append(_Field(column.key, convert, missing, column.key in named))
    return sorted(fields, key=lambda f: not f.named)


def _values(fields: list[_Field], row: Row) -> list[Any]:
    return [
        f.convert(value) if (value := row.get(f.key, _MISSING)) is not _MISSING else f.missing for f in fields
    ]


_MISSING = object()


def _value_rows(fields: list[_Field], batch: Sequence[Row]) -> list[tuple[Any, ...]]:
    """Every row's values in the fields' order (those the rows name first), converted.

    A row that names every field the batch names is read with one ``itemgetter`` call and converted
    only where the column's type converts (most columns pass their value through); the fields no row
    names are the same constants in every row. Per-field Python work was most of what a bulk insert
    spent before the database saw a row."""
    named = [f for f in fields if f.named]
    constants = tuple(f.missing for f in fields if not f.named)
    if len(named) < 2:  # itemgetter of one key returns the value, not a tuple
        return [tuple(_values(fields, row)) for row in batch]
    read = itemgetter(*(f.key for f in named))
    converted = [(i, f.convert) for i, f in enumerate(named) if f.convert is not _identity]
    out: list[tuple[Any, ...]] = []
    for row in batch:
        try:
            values: tuple[Any, ...] = read(row)
        except KeyError:  # a field this row leaves to its default
            out.append(tuple(_values(fields, row)))
            continue
        if converted:
            mutable = list(values)
            for i, convert in converted:
                mutable[i] = convert(mutable[i])
            values = tuple(mutable)
        out.append(values + constants if constants else values)
    return out


def insert_rows(session: Session, target: Table | type[Any], rows: Iterable[Row]) -> int:
    """Insert ``rows`` (dicts keyed by column name) into ``target`` (a table or a mapped class) in the
    session's transaction.

    Pending ORM objects are flushed first, so rows may refer to them. Returns the number of rows."""
    batch = list(rows)
    if not batch:
        return 0
    table = target if isinstance(target, Table) else inspect(target).local_table
    assert isinstance(table, Table)
    session.flush()
    connection = session.connection()
    dialect = connection.dialect
    preparer = dialect.identifier_preparer
    if dialect.name != "postgresql":
        # One executemany of plain tuples, converted by the columns' own bind processors: SQLAlchemy's
        # per-row parameter handling cost several times what SQLite spends inserting the rows.
        fields = _fields(table, batch, lambda c: _to_sqlite(c, dialect))
        names = ", ".join(preparer.quote(table.c[f.key].name) for f in fields)
        marks = ", ".join("?" for _ in fields)
        connection.exec_driver_sql(
            f"INSERT INTO {preparer.format_table(table)} ({names}) VALUES ({marks})",
            _value_rows(fields, batch),
        )
        return len(batch)
    fields = _fields(table, batch, lambda c: _to_copy(c, dialect))
    names = ", ".join(preparer.quote(table.c[f.key].name) for f in fields)
    driver = connection.connection.driver_connection
    assert driver is not None
    statement = f"COPY {preparer.format_table(table)} ({names}) FROM STDIN"
    try:
        with driver.cursor() as cursor, cursor.copy(statement) as copy:
            for values in _value_rows(fields, batch):
                copy.write_row(values)
    except driver.Error as exc:  # as SQLAlchemy's own (IntegrityError...), which callers handle
        raise DBAPIError.instance(statement, None, exc, type(driver).Error) from exc
    _note_growth(session, connection, table, len(batch))
    return len(batch)


#: Rows a batch must add (and at least as many as the table held) to have the table analysed.
ANALYZE_AFTER = 1000
_GROWN = "billsync_grown_tables"


def _note_growth(session: Session, connection: Connection, table: Table, added: int) -> None:
    """Remember a table this transaction at least doubled, to ``ANALYZE`` it after the commit.

    PostgreSQL plans from statistics that autovacuum refreshes about once a minute. A first import
    fills empty tables faster than that, and with the statistics of an empty table the planner
    answered "which of these 500 ids exist?" by reading every row of the table, so each page took
    longer than the last. The analysis runs on its own connection once the rows are committed, so
    no lock is held in the caller's transaction."""
    if added < ANALYZE_AFTER:
        return
    known = connection.exec_driver_sql(
        "SELECT reltuples FROM pg_class WHERE oid = %(name)s::regclass",
        {"name": connection.dialect.identifier_preparer.format_table(table)},
    ).scalar()
    if known is None or added > known:  # -1: never analysed
        session.info.setdefault(_GROWN, set()).add(table)


@event.listens_for(Session, "after_commit")
def _analyze_grown(session: Session) -> None:
    tables: set[Table] = session.info.pop(_GROWN, set())
    if not tables:
        return
    bind = session.get_bind()
    engine = bind if isinstance(bind, Engine) else bind.engine
    try:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            preparer = connection.dialect.identifier_preparer
            for table in sorted(tables, key=lambda t: t.name):
                # the columns lookups use (indexed ones): a JSON document column is costly to sample
                names = ", ".join(preparer.quote(name) for name in _indexed_columns(table))
                connection.exec_driver_sql(f"ANALYZE {preparer.format_table(table)} ({names})")
    except DBAPIError as exc:  # statistics are an optimisation: never fail the work that was committed
        log.warning("analyze_failed", tables=sorted(t.name for t in tables), error=str(exc))


def _indexed_columns(table: Table) -> list[str]:
    names = {c.name for c in table.primary_key.columns}
    for index in table.indexes:
        names.update(c.name for c in index.columns)
    for constraint in table.constraints:
        names.update(c.name for c in getattr(constraint, "columns", ()))
    return sorted(names)


@event.listens_for(Session, "after_rollback")
def _forget_grown(session: Session) -> None:
    session.info.pop(_GROWN, None)


def _to_copy(column: Column[Any], dialect: Any) -> Callable[[Any], Any]:
    """How one column's Python value becomes what COPY sends: the column type's own bind conversion,
    JSON serialised with the engine's serializer."""
    type_ = column.type
    if isinstance(type_, TypeDecorator):
        process = type_.process_bind_param
        return lambda value: process(value, dialect)
    if isinstance(type_, JSON):
        serialize = getattr(dialect, "_json_serializer", None) or json.dumps
        return lambda value: (
            value.text if type(value) is JSONText else None if value is None else serialize(value)
        )
    return _identity


def _to_sqlite(column: Column[Any], dialect: Any) -> Callable[[Any], Any]:
    """The column's own bind processor (what SQLAlchemy would apply), JSONText as it is.

    Two shortcuts with the same results: money goes straight to ``ExactDecimal``'s check and text
    form (SQLite's storage for it, text, has no processor of its own to wrap it in), and a date is written by
    ``date.isoformat`` (the ``YYYY-MM-DD`` SQLite's DATE spells with a format and a dict per value)."""
    type_ = column.type
    if isinstance(type_, ExactDecimal):
        return money_text
    process = type_.dialect_impl(dialect).bind_processor(dialect) or _identity
    if isinstance(type_, JSON):
        return lambda value: value.text if type(value) is JSONText else process(value)
    if type(type_) is Date:
        return lambda value: value.isoformat() if type(value) is dt.date else process(value)
    return process


def _identity(value: Any) -> Any:
    return value
